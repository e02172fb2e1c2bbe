"""Cancelling a run or backfill, one way for every path: the cancel operators, a sync wait that times out or
is killed, and a deferred wait whose trigger is killed.

PostHog cancels only ``Starting``/``Running`` jobs and answers 400 for any other; so the status is read
first, and a 400 to the cancel itself means the job finished in between (read again to report how).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.statuses import CANCELLABLE_STATUSES
from airflow_provider_posthog.exceptions import PostHogCancelNotEffectiveError, PostHogValidationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@dataclasses.dataclass(frozen=True)
class Cancel:
    """The result of a cancel: the status afterwards, and whether the job had already finished."""

    what: str
    status: str
    already_finished: bool

    @property
    def message(self) -> str:
        if self.already_finished:
            return f"{_capitalized(self.what)} is already {self.status}; nothing to cancel."
        return f"Cancelled {self.what} (now {self.status})."


def _capitalized(what: str) -> str:
    return what[:1].upper() + what[1:]


def finished(status: str | None) -> bool:
    """Whether PostHog no longer lets anyone cancel a job with this status."""
    return status not in CANCELLABLE_STATUSES


def cancel_if_active(what: str, read: Callable[[], str], cancel: Callable[[], str]) -> Cancel:
    """Read the status, cancel only an active job; a cancel refused because it just finished is no error."""
    status = read()
    if finished(status):
        return Cancel(what, status, already_finished=True)
    try:
        return Cancel(what, cancel(), already_finished=False)
    except PostHogValidationError:
        status = read()
        if finished(status):
            return Cancel(what, status, already_finished=True)
        raise


async def acancel_if_active(
    what: str, read: Callable[[], Awaitable[str]], cancel: Callable[[], Awaitable[str]]
) -> Cancel:
    """:func:`cancel_if_active` for the triggerer."""
    status = await read()
    if finished(status):
        return Cancel(what, status, already_finished=True)
    try:
        return Cancel(what, await cancel(), already_finished=False)
    except PostHogValidationError:
        status = await read()
        if finished(status):
            return Cancel(what, status, already_finished=True)
        raise


def log_best_effort(log: Any, what: str, result: Cancel | BaseException) -> None:
    """Log a cancel sent because a wait ended badly or was killed: it must never raise."""
    if isinstance(result, Cancel):
        (log.info if result.already_finished else log.warning)("%s", result.message)
    elif isinstance(result, PostHogCancelNotEffectiveError):
        log.warning(
            "%s is still running after the cancel (%s); cancel it in PostHog.", _capitalized(what), result
        )
    else:
        log.warning("Could not cancel %s: %s", what, result)
