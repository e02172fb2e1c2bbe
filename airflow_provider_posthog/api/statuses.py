"""The one status table: every PostHog run/backfill status maps to exactly one outcome.

Operators, sensors and triggers decide success, failure or "keep waiting" only through this module, so a
status PostHog adds later can never be mistaken for success: anything not listed here is a failure.
"""

from __future__ import annotations

import enum


class Outcome(str, enum.Enum):
    """What a remote status means for a task that waits on it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RUNNING = "running"


RUN_STATUSES: dict[str, Outcome] = {
    "Starting": Outcome.RUNNING,
    "Running": Outcome.RUNNING,
    # In the enum (mirrors Temporal) but never set by PostHog; not terminal.
    "ContinuedAsNew": Outcome.RUNNING,
    "Completed": Outcome.SUCCEEDED,
    "Failed": Outcome.FAILED,
    # PostHog's own health check counts it as a failure; activities normally retry forever before it surfaces.
    "FailedRetryable": Outcome.FAILED,
    "FailedBilling": Outcome.FAILED,
    "Cancelled": Outcome.FAILED,
    "Terminated": Outcome.FAILED,
    "TimedOut": Outcome.FAILED,
}

BACKFILL_STATUSES: dict[str, Outcome] = {
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

#: Statuses PostHog lets a client cancel.
CANCELLABLE_STATUSES: frozenset[str] = frozenset({"Starting", "Running"})


def run_outcome(status: str | None) -> Outcome:
    """Outcome of a run status; unknown or missing statuses fail closed."""
    return RUN_STATUSES.get(status or "", Outcome.FAILED)


def backfill_outcome(status: str | None) -> Outcome:
    """Outcome of a backfill status; unknown or missing statuses fail closed."""
    return BACKFILL_STATUSES.get(status or "", Outcome.FAILED)
