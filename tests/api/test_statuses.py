"""The one status table (``api/statuses.py``): each status has one outcome, anything else fails closed."""

from __future__ import annotations

import pytest

from airflow_provider_posthog.api.statuses import (
    BACKFILL_STATUSES,
    CANCELLABLE_STATUSES,
    RUN_STATUSES,
    Outcome,
    backfill_outcome,
    run_outcome,
)

#: PostHog's statuses and what a task waiting on them must do (written out, not derived from the table).
EXPECTED = {
    "Starting": Outcome.RUNNING,
    "Running": Outcome.RUNNING,
    "ContinuedAsNew": Outcome.RUNNING,
    "Completed": Outcome.SUCCEEDED,
    "Failed": Outcome.FAILED,
    "FailedRetryable": Outcome.FAILED,
    "Cancelled": Outcome.FAILED,
    "Terminated": Outcome.FAILED,
    "TimedOut": Outcome.FAILED,
}


def test_every_run_status_maps_to_exactly_one_outcome() -> None:
    assert RUN_STATUSES == {**EXPECTED, "FailedBilling": Outcome.FAILED}
    for status, outcome in RUN_STATUSES.items():
        assert run_outcome(status) is outcome


def test_every_backfill_status_maps_to_exactly_one_outcome() -> None:
    assert BACKFILL_STATUSES == EXPECTED
    for status, outcome in BACKFILL_STATUSES.items():
        assert backfill_outcome(status) is outcome


def test_only_completed_is_a_success() -> None:
    for table in (RUN_STATUSES, BACKFILL_STATUSES):
        assert [s for s, o in table.items() if o is Outcome.SUCCEEDED] == ["Completed"]


@pytest.mark.parametrize("status", [None, "", "completed", "COMPLETED", "Succeeded", "Paused", " Running"])
def test_unknown_or_missing_statuses_fail_closed(status: str | None) -> None:
    assert run_outcome(status) is Outcome.FAILED
    assert backfill_outcome(status) is Outcome.FAILED


def test_only_starting_and_running_jobs_can_be_cancelled() -> None:
    assert frozenset({"Starting", "Running"}) == CANCELLABLE_STATUSES
    # Everything cancellable is still running; a status PostHog never sets (ContinuedAsNew) is not sent.
    assert all(RUN_STATUSES[s] is Outcome.RUNNING for s in CANCELLABLE_STATUSES)
    assert all(BACKFILL_STATUSES[s] is Outcome.RUNNING for s in CANCELLABLE_STATUSES)


def test_outcomes_are_plain_strings_for_events() -> None:
    assert [o.value for o in Outcome] == ["succeeded", "failed", "running"]
    assert Outcome.SUCCEEDED == "succeeded"
