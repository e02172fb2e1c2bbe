"""The summary XCom (``tasks/summary.py``) and the end of a wait that pushes it and checks completeness
(``PostHogTaskMixin.finish_wait``). A tiny task over a real hook answered by an in-memory PostHog."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from unittest import mock

import pytest
from fake_posthog import BACKFILL, EXPORT, FakePostHog, with_hook

from airflow_provider_posthog.api import decisions
from airflow_provider_posthog.exceptions import (
    PostHogConfigError,
    PostHogIncompleteExportError,
    PostHogJobFailedError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.tasks.mixin import PostHogTaskMixin
from airflow_provider_posthog.tasks.summary import SUMMARY_KEYS, SUMMARY_XCOM_KEY, build_summary
from airflow_provider_posthog.tasks.waiting import decision_event, make_event

LOGGER = "tests.tasks.test_summary"
START = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.timezone.utc)


class Task(PostHogTaskMixin):
    log = logging.getLogger(LOGGER)

    def __init__(self, completeness: Any = "warn") -> None:
        self.posthog_conn_id = "posthog_fake"
        self.project_id = None
        self.completeness = completeness
        self.succeeded: list[dict[str, Any]] = []

    def on_wait_succeeded(self, context: Any, event: Any, completed_runs: Any) -> None:
        self.succeeded.append(dict(event))


def _task(completeness: Any = "warn") -> Task:
    task = Task(completeness)
    with_hook(task, FakePostHog())
    return task


def _context() -> Any:
    ti = mock.Mock(start_date=START)
    return {"ti": ti}


def _pushed(context: Any) -> dict[str, Any]:
    calls = [c for c in context["ti"].xcom_push.call_args_list if c.kwargs["key"] == SUMMARY_XCOM_KEY]
    assert len(calls) == 1, calls
    return dict(calls[0].kwargs["value"])


def _backfill_event(factories: Any, *counts: tuple[int, int], failed: bool = False) -> dict[str, Any]:
    hours = ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"]
    runs = [
        factories.run(
            "Completed",
            run_id=f"run-{i}",
            start=hours[i],
            end=hours[i + 1],
            records_completed=done,
            records_total_count=total,
            bytes_exported=done * 2,
        )
        for i, (done, total) in enumerate(counts)
    ]
    if failed:
        runs.append(
            factories.run("Failed", run_id="bad", start=hours[1], end=hours[2], latest_error="disk full")
        )
    intervals = sorted({(r.data_interval_start, r.data_interval_end) for r in runs})
    backfill = factories.backfill("Completed", end_at=hours[len(intervals)])
    decision = decisions.decide_backfill(backfill, runs, intervals=intervals)
    return decision_event(decision, batch_export_id=EXPORT, backfill_id=BACKFILL)


# -- build_summary ------------------------------------------------------------------------------------------


def test_a_success_summary_has_every_key_and_the_runs_counts(factories: Any) -> None:
    event = _backfill_event(factories, (100, 100), (80, 100))
    started = START.timestamp()
    summary = build_summary(
        event, completeness="warn", started_at=started, finished_at=started + 90.5, url="https://ph/x"
    )
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["status"] == "success"
    assert (summary["batch_export_id"], summary["backfill_id"], summary["run_id"]) == (EXPORT, BACKFILL, None)
    assert summary["run_ids"] == ["run-0", "run-1"]
    assert summary["runs_total"] == 2 and summary["runs_by_status"] == {"Completed": 2}
    assert (summary["records_exported"], summary["records_expected"], summary["bytes_exported"]) == (
        180,
        200,
        360,
    )
    assert summary["complete"] is False
    assert [r["id"] for r in summary["incomplete_runs"]] == ["run-1"]
    assert summary["data_interval_start"] == "2024-01-01T00:00:00+00:00"
    assert summary["data_interval_end"] == "2024-01-01T02:00:00+00:00"
    assert summary["started_at"] == "2026-01-05T12:00:00+00:00"
    assert summary["duration_seconds"] == 90.5
    assert summary["url"] == "https://ph/x"


@pytest.mark.parametrize(
    ("counts", "mode", "complete"),
    [(((5, 5),), "warn", True), (((4, 5),), "warn", False), (((4, 5),), "off", None)],
    ids=["complete", "incomplete", "not-checked"],
)
def test_complete_says_whether_the_check_found_a_loss(
    factories: Any, counts: Any, mode: str, complete: bool | None
) -> None:
    summary = build_summary(
        _backfill_event(factories, *counts), completeness=mode, started_at=None, finished_at=0.0, url=None
    )
    assert summary["complete"] is complete
    assert summary["completeness"] == mode
    assert summary["started_at"] is None and summary["duration_seconds"] is None


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_an_event_that_judged_no_run_keeps_the_same_keys(status: str) -> None:
    event = make_event(status, "stopped", batch_export_id=EXPORT, backfill_id=BACKFILL)
    summary = build_summary(event, completeness="warn", started_at=1.0, finished_at=2.0, url="u")
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["status"] == status and summary["runs_total"] == 0 and summary["complete"] is None
    assert summary["records_exported"] == 0 and summary["records_expected"] is None


def test_values_of_the_wrong_type_are_left_out_not_guessed() -> None:
    event = {
        "status": "success",
        "message": "ok",
        "batch_export_id": EXPORT,
        "runs_by_status": {"Completed": "2", "Failed": -1, "Running": 1},
        "records_completed": True,
        "records_expected": "10",
        "incomplete_runs": "nope",
        "run_ids": "r1",
    }
    summary = build_summary(event, completeness="warn", started_at=None, finished_at=0.0, url=None)
    assert summary["runs_by_status"] == {"Running": 1}
    assert summary["records_exported"] == 0 and summary["records_expected"] is None
    assert summary["incomplete_runs"] == [] and summary["run_ids"] == []


# -- finish_wait: the push and the completeness check -------------------------------------------------------


def test_a_success_pushes_one_summary_and_warns_about_incomplete_runs(
    factories: Any, caplog: pytest.LogCaptureFixture
) -> None:
    task, context = _task("warn"), _context()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        task.finish_wait(context, _backfill_event(factories, (100, 100), (80, 100)))
    summary = _pushed(context)
    assert summary["complete"] is False and summary["status"] == "success"
    assert summary["url"].endswith(f"{EXPORT}?tab=backfills")
    assert summary["started_at"] == START.isoformat()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "run run-1" in warnings[0] and "80 of 100 record(s)" in warnings[0]
    assert len(task.succeeded) == 1  # a warning does not stop the success (lineage still runs)


def test_fail_fails_the_task_naming_the_runs_after_pushing_the_summary(factories: Any) -> None:
    task, context = _task("fail"), _context()
    with pytest.raises(PostHogIncompleteExportError, match=r"run run-1 .*80 of 100 record\(s\)"):
        task.finish_wait(context, _backfill_event(factories, (100, 100), (80, 100)))
    assert _pushed(context)["complete"] is False
    assert task.succeeded == []  # no asset event for an incomplete export


def test_off_neither_warns_nor_fails(factories: Any, caplog: pytest.LogCaptureFixture) -> None:
    task, context = _task("off"), _context()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        task.finish_wait(context, _backfill_event(factories, (80, 100)))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _pushed(context)["complete"] is None and len(task.succeeded) == 1


def test_a_complete_export_passes_fail(factories: Any) -> None:
    task, context = _task("fail"), _context()
    task.finish_wait(context, _backfill_event(factories, (100, 100), (100, 100)))
    assert _pushed(context)["complete"] is True


def test_a_failed_job_pushes_its_summary_before_failing(factories: Any) -> None:
    task, context = _task(), _context()
    task.hook.get_run_logs = mock.Mock(return_value=[])  # type: ignore[method-assign]
    with pytest.raises(PostHogJobFailedError, match="disk full"):
        task.finish_wait(context, _backfill_event(factories, (100, 100), failed=True))
    summary = _pushed(context)
    assert summary["status"] == "failed"
    assert summary["runs_by_status"] == {"Completed": 1, "Failed": 1}
    assert [r["latest_error"] for r in summary["failed_runs"]] == ["disk full"]


def test_a_timeout_pushes_its_summary_too() -> None:
    task, context = _task(), _context()
    with pytest.raises(PostHogWaitTimeoutError):
        task.finish_wait(context, make_event("timeout", "deadline", batch_export_id=EXPORT, run_id="r"))
    summary = _pushed(context)
    assert summary["status"] == "timeout" and summary["run_id"] == "r"
    assert summary["url"].endswith("?tab=runs")


def test_a_broken_event_pushes_nothing(factories: Any) -> None:
    task, context = _task(), _context()
    with pytest.raises(Exception, match="unknown status"):
        task.finish_wait(context, {"status": "weird", "message": "?", "batch_export_id": EXPORT})
    context["ti"].xcom_push.assert_not_called()


def test_a_rescheduled_sensor_counts_from_its_first_poke() -> None:
    task = _task()
    task.reschedule = True  # type: ignore[attr-defined]
    first = START - dt.timedelta(minutes=10)
    ti = mock.Mock(start_date=START)
    ti.get_first_reschedule_date.return_value = first
    started = task._task_started_at({"ti": ti, "task_reschedule_count": 3})
    assert started == first.timestamp()


def test_a_bad_completeness_is_an_argument_error() -> None:
    with pytest.raises(PostHogConfigError, match="completeness='sometimes'"):
        _task("sometimes").completeness_mode()
