"""The waiting core (``tasks.waiting``) driven directly: decisions, the poll step, events, the completion
switch. No HTTP, no hook, no Airflow DAG; the clock is a number passed in."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest

from airflow_provider_posthog.api.statuses import BACKFILL_STATUSES, RUN_STATUSES, Outcome
from airflow_provider_posthog.exceptions import PostHogTriggerError
from airflow_provider_posthog.tasks import decisions, waiting
from airflow_provider_posthog.tasks.decisions import Decision, decide_interval
from airflow_provider_posthog.tasks.waiting import Wait

UTC = dt.timezone.utc
EXPORT = "0190-export"
BACKFILL = "0190-backfill"
RUNNING = Decision(Outcome.RUNNING, "Backfill b is Running (1/4 runs finished).", "Running")
DONE = Decision(
    Outcome.SUCCEEDED, "Backfill b completed.", "Completed", runs_completed=4, records_completed=9
)
FAILED = Decision(
    Outcome.FAILED,
    "Backfill b is Completed but 1 of its run(s) failed.",
    "Completed",
    ({"id": "r1", "status": "Failed", "latest_error": "S3 denied"},),
)


class Boom(Exception):
    """Stands for the task's own failure exception."""


class TooLate(Exception):
    """Stands for the task's own timeout exception."""


# ---------------------------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("status", [*BACKFILL_STATUSES, "NewThing", ""])
def test_backfill_decision_follows_the_status_table_and_fails_closed(factories: Any, status: str) -> None:
    decision = decisions.decide_backfill(factories.backfill(status), [factories.run("Completed")])
    assert decision.outcome is BACKFILL_STATUSES.get(status, Outcome.FAILED)


def test_completed_backfill_with_a_failed_run_of_its_own_fails(factories: Any) -> None:
    runs = [
        factories.run("Completed"),
        factories.run("Failed", run_id="bad", latest_error="disk full"),
        factories.run("Failed", run_id="other", backfill_id="another-backfill"),
    ]
    decision = decisions.decide_backfill(factories.backfill("Completed"), runs)
    assert decision.outcome is Outcome.FAILED
    assert [r["id"] for r in decision.failed_runs] == ["bad"]
    assert decision.runs_completed == 1 and decision.records_completed == 10


@pytest.mark.parametrize("status", [*RUN_STATUSES, "NewThing"])
def test_run_decision_follows_the_status_table_and_fails_closed(factories: Any, status: str) -> None:
    assert decisions.decide_run(factories.run(status)).outcome is RUN_STATUSES.get(status, Outcome.FAILED)


T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def _r(
    factories: Any, status: str, hour: int, *, created: str = "2024-01-02T00:00:00Z", rid: str = ""
) -> Any:
    return factories.run(
        status,
        run_id=rid or f"run-{hour}-{status}",
        start=(T0 + dt.timedelta(hours=hour)).isoformat(),
        end=(T0 + dt.timedelta(hours=hour + 1)).isoformat(),
        backfill_id=None,
        created_at=created,
    )


def test_interval_needs_full_coverage(factories: Any) -> None:
    end = T0 + dt.timedelta(hours=3)
    runs = [_r(factories, "Completed", 0), _r(factories, "Completed", 2)]
    assert decide_interval(runs, T0, end).outcome is Outcome.RUNNING  # hour 1 missing
    runs.append(_r(factories, "Completed", 1))
    decision = decide_interval(runs, T0, end)
    assert decision.outcome is Outcome.SUCCEEDED and decision.runs_completed == 3


def test_interval_newest_run_per_window_wins(factories: Any) -> None:
    end = T0 + dt.timedelta(hours=1)
    failed = _r(factories, "Failed", 0, created="2024-01-02T00:00:00Z")
    retried = _r(factories, "Completed", 0, created="2024-01-02T05:00:00Z")
    assert decide_interval([failed], T0, end).outcome is Outcome.FAILED
    assert decide_interval([retried, failed], T0, end).outcome is Outcome.SUCCEEDED
    assert decide_interval([], T0, end).outcome is Outcome.RUNNING
    running = _r(factories, "Running", 0, created="2024-01-02T06:00:00Z")
    assert decide_interval([running, retried, failed], T0, end).outcome is Outcome.RUNNING


# ------------------------------------------------------------------------------------------- the poll step


def _wait(**kwargs: Any) -> Wait:
    params: dict[str, Any] = {
        "what": waiting.describe_backfill(EXPORT, BACKFILL),
        "batch_export_id": EXPORT,
        "backfill_id": BACKFILL,
        "poll_interval": 10.0,
    }
    return Wait(**{**params, **kwargs})


def test_a_running_poll_sleeps_one_interval_and_reports_progress() -> None:
    step = _wait().step(RUNNING, now=1_000.0)
    assert step.event is None and step.sleep == 10.0 and step.progress == RUNNING.message


def test_the_sleep_is_clamped_to_the_deadline() -> None:
    step = _wait(end_time=1_004.0).step(RUNNING, now=1_000.0)
    assert step.event is None and step.sleep == 4.0


def test_past_the_deadline_a_running_poll_ends_in_a_timeout_event() -> None:
    step = _wait(end_time=1_000.0).step(RUNNING, now=1_000.0)
    assert step.progress == RUNNING.message  # the last state is still logged
    assert step.event is not None and step.event["status"] == waiting.TIMEOUT
    assert step.event["message"].startswith(
        f"Stopped waiting for backfill {BACKFILL} of batch export {EXPORT}"
    )
    assert step.event["backfill_id"] == BACKFILL


def test_a_terminal_poll_ends_with_its_event_even_past_the_deadline() -> None:
    step = _wait(end_time=0.0).step(DONE, now=1_000.0)
    assert step.event is not None and step.event["status"] == waiting.SUCCESS
    assert step.event["runs_completed"] == 4 and step.event["records_completed"] == 9
    failed = _wait().step(FAILED, now=1.0).event
    assert (
        failed is not None and failed["status"] == waiting.FAILED and failed["failed_runs"][0]["id"] == "r1"
    )


def test_a_failed_poll_logs_nothing_and_polls_again_unless_the_deadline_passed() -> None:
    step = _wait(end_time=1_030.0).step(None, now=1_000.0)
    assert step.event is None and step.progress is None and step.sleep == 10.0
    late = _wait(end_time=1_000.0).step(None, now=1_001.0)
    assert late.event is not None and late.event["status"] == waiting.TIMEOUT


def test_sleep_until_never_goes_negative_or_past_the_deadline() -> None:
    assert _wait().sleep_until(1_060.0, now=1_000.0) == 60.0
    assert _wait(end_time=1_010.0).sleep_until(1_060.0, now=1_000.0) == 10.0
    assert _wait(end_time=900.0).sleep_until(1_060.0, now=1_000.0) == 0.0


def test_error_event_says_the_wait_failed_not_the_export() -> None:
    event = _wait().error_event(RuntimeError("DNS down"))
    assert event["status"] == waiting.ERROR
    assert "RuntimeError: DNS down" in event["message"] and "may still be running" in event["message"]


def test_deadline_is_the_earlier_of_timeout_and_execution_timeout_in_epoch_seconds() -> None:
    assert waiting.deadline(1_000.0, None, None) is None
    assert waiting.deadline(1_000.0, 600, dt.timedelta(seconds=300)) == 1_300.0
    assert waiting.deadline(1_000.0, 60, None) == 1_060.0
    assert waiting.deadline(1_000.0, None, 5.0) == 1_005.0


# ---------------------------------------------------------------------------------------------- events


def test_make_event_refuses_unknown_statuses_and_running_decisions() -> None:
    with pytest.raises(ValueError, match="unknown event status"):
        waiting.make_event("cancelled", "x", batch_export_id=EXPORT)
    with pytest.raises(ValueError, match="running decision"):
        waiting.decision_event(RUNNING, batch_export_id=EXPORT)


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {},
        {"status": "cancelled", "message": "x", "batch_export_id": EXPORT},
        {"status": "success", "batch_export_id": EXPORT},
        {"status": "success", "message": "ok"},
        {"status": "failed", "message": "x", "batch_export_id": EXPORT, "failed_runs": "r1"},
    ],
    ids=["none", "string", "empty", "unknown-status", "no-message", "no-export", "bad-failed-runs"],
)
def test_validate_event_fails_closed(event: Any) -> None:
    with pytest.raises(PostHogTriggerError):
        waiting.validate_event(event)


def test_validate_event_checks_required_ids() -> None:
    event = waiting.make_event("success", "ok", batch_export_id=EXPORT)
    assert waiting.validate_event(event) == event
    with pytest.raises(PostHogTriggerError, match="names no backfill_id"):
        waiting.validate_event(event, require=("backfill_id",))


# ----------------------------------------------------------------------------------- the completion switch


def _complete(event: Any, **kwargs: Any) -> dict[str, Any]:
    return waiting.complete(event, failure=Boom, timeout=TooLate, **kwargs)


def test_success_returns_the_event_and_touches_nothing_else() -> None:
    on_timeout, tails = mock.Mock(), mock.Mock()
    event = waiting.make_event("success", "done", batch_export_id=EXPORT, backfill_id=BACKFILL)
    assert _complete(event, on_timeout=on_timeout, log_tails=tails) == event
    on_timeout.assert_not_called()
    tails.assert_not_called()


def test_failure_raises_the_tasks_error_quoting_runs_and_their_log_tails() -> None:
    event = _wait().event(FAILED)
    with pytest.raises(Boom) as err:
        _complete(event, log_tails=lambda e: {"r1": ["2024-01-02T00:00:00 ERROR upload failed: 403"]})
    text = str(err.value)
    assert (
        FAILED.message in text and "S3 denied" in text and "| 2024-01-02T00:00:00 ERROR upload failed" in text
    )


def test_timeout_runs_on_timeout_first_then_raises() -> None:
    order: list[str] = []
    with pytest.raises(TooLate, match="Stopped waiting"):
        _complete(_wait().timeout_event(), on_timeout=lambda e: order.append(e["backfill_id"]))
    assert order == [BACKFILL]


@pytest.mark.parametrize(
    "event",
    [
        {"status": "error", "message": "trigger broke", "batch_export_id": EXPORT},
        {"status": "unknown", "message": "x", "batch_export_id": EXPORT},
        None,
    ],
)
def test_trigger_errors_and_unknown_events_are_never_a_success_or_a_job_failure(event: Any) -> None:
    with pytest.raises(PostHogTriggerError) as err:
        _complete(event)
    assert not isinstance(err.value, (Boom, TooLate))


def test_tail_lines_keep_the_last_lines_oldest_first() -> None:
    entries = [
        mock.Mock(
            timestamp=dt.datetime(2024, 1, 1, 0, minute, tzinfo=UTC), level="INFO", message=f"m{minute}"
        )
        for minute in reversed(range(15))
    ]
    lines = waiting.tail_lines(entries)
    assert len(lines) == waiting.LOG_TAIL_LINES
    assert lines[0].endswith("INFO m5") and lines[-1].endswith("INFO m14")
