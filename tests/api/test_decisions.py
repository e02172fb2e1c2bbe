"""Remote state to one decision (``api/decisions.py``): backfills, runs, intervals of a schedule. Pure."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from airflow_provider_posthog.api import decisions
from airflow_provider_posthog.api.decisions import Decision, decide_interval, newest_per_interval
from airflow_provider_posthog.api.statuses import BACKFILL_STATUSES, RUN_STATUSES, Outcome

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("status", [*BACKFILL_STATUSES, "NewThing", ""])
def test_backfill_decision_follows_the_status_table_and_fails_closed(factories: Any, status: str) -> None:
    decision = decisions.decide_backfill(factories.backfill(status), [factories.run("Completed")])
    assert decision.outcome is BACKFILL_STATUSES.get(status, Outcome.FAILED)
    assert decision.done is (decision.outcome is not Outcome.RUNNING)


def test_completed_backfill_with_a_failed_run_of_its_own_fails(factories: Any) -> None:
    runs = [
        factories.run("Completed"),
        factories.run("Failed", run_id="bad", latest_error="disk full"),
        factories.run("Failed", run_id="other", backfill_id="another-backfill"),
    ]
    decision = decisions.decide_backfill(factories.backfill("Completed"), runs)
    assert decision.outcome is Outcome.FAILED
    assert [r["id"] for r in decision.failed_runs] == ["bad"]
    assert decision.failed_runs[0]["latest_error"] == "disk full"
    assert decision.runs_completed == 1 and decision.records_completed == 10
    assert decision.completed_runs == ()  # a failure reports no lineage


def test_a_successful_backfill_keeps_the_runs_it_counted(factories: Any) -> None:
    mine = [
        factories.run("Completed", run_id="a"),
        factories.run("Completed", run_id="b", records_completed=5),
    ]
    others = [
        factories.run("Completed", run_id="scheduled", backfill_id=None),
        factories.run("Cancelled", run_id="theirs", backfill_id="another-backfill"),
    ]
    decision = decisions.decide_backfill(factories.backfill("Completed"), [*mine, *others])
    assert decision.outcome is Outcome.SUCCEEDED
    assert decision.completed_runs == tuple(mine)
    assert (decision.runs_completed, decision.records_completed) == (2, 15)


def test_a_running_backfill_counts_nothing_yet(factories: Any) -> None:
    decision = decisions.decide_backfill(factories.backfill("Running"), [factories.run("Completed")])
    assert decision.outcome is Outcome.RUNNING and decision.completed_runs == ()
    assert decision.runs_completed == 0 and decision.message == "Backfill 0190-backfill is Running."


def test_completed_runs_never_make_two_decisions_differ(factories: Any) -> None:
    """They stay in the polling process: equality (and an event) is about the outcome and its facts."""
    with_runs = Decision(Outcome.SUCCEEDED, "ok", "Completed", completed_runs=(factories.run("Completed"),))
    assert with_runs == dataclasses.replace(with_runs, completed_runs=())
    assert "completed_runs" not in repr(with_runs)


@pytest.mark.parametrize("status", [*RUN_STATUSES, "NewThing"])
def test_run_decision_follows_the_status_table_and_fails_closed(factories: Any, status: str) -> None:
    run = factories.run(status)
    decision = decisions.decide_run(run)
    assert decision.outcome is RUN_STATUSES.get(status, Outcome.FAILED)
    assert decision.completed_runs == ((run,) if decision.outcome is Outcome.SUCCEEDED else ())
    if decision.outcome is Outcome.FAILED:
        assert [r["id"] for r in decision.failed_runs] == [run.id]


# -- intervals of a schedule --------------------------------------------------------------------------------


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
    assert [r.id for r in decision.completed_runs] == [
        "run-0-Completed",
        "run-1-Completed",
        "run-2-Completed",
    ]


def test_interval_newest_run_per_window_wins(factories: Any) -> None:
    end = T0 + dt.timedelta(hours=1)
    failed = _r(factories, "Failed", 0, created="2024-01-02T00:00:00Z")
    retried = _r(factories, "Completed", 0, created="2024-01-02T05:00:00Z")
    assert decide_interval([failed], T0, end).outcome is Outcome.FAILED
    success = decide_interval([retried, failed], T0, end)
    assert success.outcome is Outcome.SUCCEEDED and success.completed_runs == (retried,)
    assert decide_interval([], T0, end).outcome is Outcome.RUNNING
    running = _r(factories, "Running", 0, created="2024-01-02T06:00:00Z")
    assert decide_interval([running, retried, failed], T0, end).outcome is Outcome.RUNNING


def test_a_failed_interval_counts_its_completed_runs_but_reports_no_lineage(factories: Any) -> None:
    end = T0 + dt.timedelta(hours=2)
    decision = decide_interval([_r(factories, "Completed", 0), _r(factories, "Failed", 1)], T0, end)
    assert decision.outcome is Outcome.FAILED and decision.runs_completed == 1
    assert decision.completed_runs == ()


def test_newest_per_interval_keeps_one_run_per_window_inside_the_range_oldest_first(factories: Any) -> None:
    end = T0 + dt.timedelta(hours=3)
    old = _r(factories, "Failed", 1, created="2024-01-02T00:00:00Z", rid="old")
    new = _r(factories, "Completed", 1, created="2024-01-02T01:00:00Z", rid="new")
    first = _r(factories, "Completed", 0, rid="first")
    before = _r(factories, "Completed", -1, rid="before")  # starts before the range
    after = _r(factories, "Completed", 3, rid="after")  # ends after the range
    undated = factories.run("Completed", run_id="undated", start=None, end=None)
    got = newest_per_interval([new, after, old, undated, first, before], T0, end)
    assert [r.id for r in got] == ["first", "new"]
    # Equal creation times: the one listed last wins.
    twin = _r(factories, "Running", 1, created="2024-01-02T01:00:00Z", rid="twin")
    assert [r.id for r in newest_per_interval([new, twin], T0, end)] == ["twin"]
