"""Finding failed runs and retrying only those (``api.retries``), and the wait on retried runs (``RunsJob``),
against a small stateful PostHog answered through the op driver (no HTTP, no Airflow)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from op_driver import drive
from retry_server import DAY, EXPORT, RetryServer, _iso, hour

from airflow_provider_posthog.api.backfills import BackfillLookup
from airflow_provider_posthog.api.decisions import RetriedInterval, decide_retried
from airflow_provider_posthog.api.jobs import RunsJob
from airflow_provider_posthog.api.models import BatchExportRun
from airflow_provider_posthog.api.retries import (
    failed_runs_between,
    failed_runs_by_id,
    failed_runs_of_backfill,
    plan_retries,
    retry_failed,
)
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import PostHogError, PostHogUnexpectedResponseError

LOOKUP = BackfillLookup(timeout=5, poll_initial=0.1, poll_max=0.1)


def run_of(server: RetryServer, op: Any) -> Any:
    return drive(op, server.answer)[0]


# ------------------------------------------------------------------------------------------------ finding


def test_a_backfills_failed_runs_are_retried_and_its_completed_ones_are_not() -> None:
    server = RetryServer()
    backfill_id = server.backfill(0, 3)
    server.run(0, "Completed", backfill=backfill_id)
    failed = server.run(1, "Failed", backfill=backfill_id)
    timed_out = server.run(2, "TimedOut", backfill=backfill_id)
    server.run(3, "Completed", backfill=backfill_id)
    plan = run_of(server, failed_runs_of_backfill(EXPORT, backfill_id))
    assert [r.id for r in plan.to_retry] == [failed, timed_out]
    assert plan.under_way == () and plan.missing == () and plan.backfill_id == backfill_id


def test_an_interval_retried_since_counts_by_its_newest_run() -> None:
    server = RetryServer()
    backfill_id = server.backfill(0, 2)
    server.run(0, "Failed", backfill=backfill_id)
    server.run(0, "Completed")  # retried since: fixed
    server.run(1, "Cancelled", backfill=backfill_id)
    running = server.run(1, "Running")  # being retried: waited for, never retried
    again = server.run(2, "Failed", backfill=backfill_id)
    plan = run_of(server, failed_runs_of_backfill(EXPORT, backfill_id))
    assert [r.id for r in plan.to_retry] == [again]
    assert [r.id for r in plan.under_way] == [running]
    assert plan.fixed == 1


def test_a_backfill_still_running_is_refused_before_anything_else() -> None:
    server = RetryServer()
    backfill_id = server.backfill(0, 2, status="Running")
    with pytest.raises(PostHogError, match="is Running: its runs are retried once it has finished"):
        run_of(server, failed_runs_of_backfill(EXPORT, backfill_id))
    assert len(server.sent) == 1


def test_intervals_a_cancelled_backfill_never_ran_are_missing() -> None:
    server = RetryServer()
    backfill_id = server.backfill(0, 3, status="Cancelled")
    server.run(0, "Failed", backfill=backfill_id)
    plan = run_of(server, failed_runs_of_backfill(EXPORT, backfill_id))
    assert plan.missing == (hour(1), hour(2), hour(3))


def test_a_range_finds_failed_runs_whoever_ran_them_and_only_inside_it() -> None:
    server = RetryServer()
    scheduled = server.run(1, "Failed")
    server.run(2, "Completed")
    server.run(5, "Failed")  # outside the range
    plan = run_of(server, failed_runs_between(EXPORT, hour(0)[0], hour(3)[1]))
    assert [r.id for r in plan.to_retry] == [scheduled]


def test_named_runs_are_judged_by_the_newest_run_of_their_interval() -> None:
    server = RetryServer()
    old_failed = server.run(0, "Failed")
    fixed = server.run(1, "Failed")
    server.run(1, "Completed")
    running = server.run(2, "Running")
    plan = run_of(server, failed_runs_by_id(EXPORT, [old_failed, fixed, running, old_failed]))
    assert [r.id for r in plan.to_retry] == [old_failed]
    assert [r.id for r in plan.under_way] == [running]  # named but running: waited for, not retried


def test_a_newest_run_of_unknown_status_fails_closed() -> None:
    server = RetryServer()
    server.run(0, "Failed")
    server.run(0, "Exploded")
    with pytest.raises(PostHogUnexpectedResponseError, match="'Exploded'"):
        run_of(server, failed_runs_between(EXPORT, hour(0)[0], hour(1)[1]))


def test_plan_without_failures_is_empty() -> None:
    runs = [BatchExportRun.from_api(r) for r in _rows(("Completed", 0), ("Running", 1))]
    assert plan_retries(EXPORT, runs).empty


def _rows(*specs: tuple[str, int]) -> list[dict[str, Any]]:
    server = RetryServer()
    for status, n in specs:
        server.run(n, status)
    return server.runs


# ------------------------------------------------------------------------------------------------ retrying


def test_retry_posts_once_per_failed_run_and_the_wait_succeeds_on_their_new_runs() -> None:
    server = RetryServer()
    backfill_id = server.backfill(0, 3)
    for n, status in enumerate(("Completed", "Failed", "Failed", "Completed")):
        server.run(n, status, backfill=backfill_id)
    plan = run_of(server, failed_runs_of_backfill(EXPORT, backfill_id))
    retried = run_of(server, retry_failed(plan, lookup=LOOKUP))
    assert len(server.posts()) == 2 and all(p.endswith("/retry/") for p in server.posts())
    assert len(retried.backfill_ids) == 2 and retried.retried_run_ids == tuple(r.id for r in plan.to_retry)
    assert retried.job.backfill_id == backfill_id
    decision = run_of(server, retried.job.poll())
    assert decision.outcome is Outcome.SUCCEEDED
    assert decision.runs_completed == 2 and decision.records_completed == 10


def test_the_wait_fails_when_a_retry_fails_again() -> None:
    server = RetryServer()
    failed = server.run(4, "Failed")
    server.retry_outcomes = ["Failed"]
    plan = run_of(server, failed_runs_by_id(EXPORT, [failed]))
    retried = run_of(server, retry_failed(plan, lookup=LOOKUP))
    decision = run_of(server, retried.job.poll())
    assert decision.outcome is Outcome.FAILED
    assert "1 of the 1 retried interval(s) failed again" in decision.message
    assert decision.failed_runs[0]["id"] != failed  # the retry's run, not the one it replaced


def test_nothing_failed_means_no_post_and_an_immediate_success() -> None:
    server = RetryServer()
    server.run(0, "Completed")
    plan = run_of(server, failed_runs_between(EXPORT, hour(0)[0], hour(1)[1]))
    retried = run_of(server, retry_failed(plan, lookup=LOOKUP))
    before = len(server.sent)
    decision = run_of(server, retried.job.poll())
    assert server.posts() == [] and len(server.sent) == before  # the poll sends nothing
    assert decision.outcome is Outcome.SUCCEEDED and "nothing was retried" in decision.message


# ---------------------------------------------------------------------------------------- the decision


def _run(status: str, n: int, created: int, run_id: str) -> BatchExportRun:
    start, end = hour(n)
    return BatchExportRun.from_api(
        {
            "id": run_id,
            "status": status,
            "data_interval_start": _iso(start),
            "data_interval_end": _iso(end),
            "created_at": _iso(DAY + dt.timedelta(days=1, seconds=created)),
            "records_completed": 3 if status == "Completed" else None,
        }
    )


def test_the_replaced_run_and_older_runs_never_count() -> None:
    replaced = _run("Failed", 0, 10, "r1")
    interval = RetriedInterval(*hour(0), replaces="r1", since=replaced.created_at)
    older = _run("Failed", 0, 5, "r0")
    assert decide_retried([replaced, older], [interval]).outcome is Outcome.RUNNING  # retry not there yet
    assert decide_retried([replaced, _run("Running", 0, 11, "r2")], [interval]).outcome is Outcome.RUNNING
    done = decide_retried([replaced, _run("Completed", 0, 11, "r2")], [interval])
    assert done.outcome is Outcome.SUCCEEDED and [r.id for r in done.completed_runs] == ["r2"]


def test_runs_job_lists_nearby_intervals_together_and_distant_ones_apart() -> None:
    far = DAY + dt.timedelta(days=30)
    job = RunsJob(
        EXPORT,
        (
            RetriedInterval(*hour(0)),
            RetriedInterval(*hour(3)),
            RetriedInterval(far, far + dt.timedelta(hours=1)),
        ),
    )
    assert job.windows() == [(hour(0)[0], hour(3)[1]), (far, far + dt.timedelta(hours=1))]
    again = RunsJob.from_plain(EXPORT, job.to_plain(), "bf")
    assert again.intervals == job.intervals and again.job_id == "bf" and again.kind == "runs"
