"""One "already finished" rule for every cancel path (``tasks.cancel``), sync and async. No HTTP."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from airflow_provider_posthog.api.statuses import BACKFILL_STATUSES, CANCELLABLE_STATUSES
from airflow_provider_posthog.exceptions import PostHogCancelNotEffectiveError, PostHogValidationError
from airflow_provider_posthog.tasks.cancel import Cancel, acancel_if_active, cancel_if_active, log_best_effort

WHAT = "backfill b1 of batch export e1"


def _sync(statuses: list[str], cancel: Any) -> tuple[Cancel, mock.Mock]:
    read = mock.Mock(side_effect=statuses)
    cancel_mock = mock.Mock(
        side_effect=cancel if isinstance(cancel, Exception) else None, return_value=cancel
    )
    return cancel_if_active(WHAT, read, cancel_mock), cancel_mock


async def _async(statuses: list[str], cancel: Any) -> tuple[Cancel, mock.AsyncMock]:
    read = mock.AsyncMock(side_effect=statuses)
    cancel_mock = mock.AsyncMock(
        side_effect=cancel if isinstance(cancel, Exception) else None, return_value=cancel
    )
    return await acancel_if_active(WHAT, read, cancel_mock), cancel_mock


@pytest.mark.parametrize("status", sorted(BACKFILL_STATUSES))
async def test_only_starting_or_running_jobs_are_cancelled(status: str) -> None:
    for result, cancel in (_sync([status], "Cancelled"), await _async([status], "Cancelled")):
        active = status in CANCELLABLE_STATUSES
        assert result.already_finished is not active
        assert cancel.call_count == (1 if active else 0)
        assert result.status == ("Cancelled" if active else status)


async def test_a_cancel_refused_because_the_job_just_finished_is_no_error() -> None:
    refused = PostHogValidationError("Cannot cancel a backfill that is Completed")
    for result, _ in (
        _sync(["Running", "Completed"], refused),
        await _async(["Running", "Completed"], refused),
    ):
        assert result == Cancel(WHAT, "Completed", already_finished=True)
        assert result.message == "Backfill b1 of batch export e1 is already Completed; nothing to cancel."


async def test_a_refused_cancel_of_a_job_still_running_is_raised() -> None:
    refused = PostHogValidationError("no")
    with pytest.raises(PostHogValidationError):
        _sync(["Running", "Running"], refused)
    with pytest.raises(PostHogValidationError):
        await _async(["Running", "Running"], refused)


def test_best_effort_logging_never_raises_and_names_the_job() -> None:
    log = mock.Mock()
    log_best_effort(log, WHAT, Cancel(WHAT, "Cancelled", already_finished=False))
    assert log.warning.call_args.args == ("%s", "Cancelled backfill b1 of batch export e1 (now Cancelled).")
    log_best_effort(log, WHAT, Cancel(WHAT, "Completed", already_finished=True))
    assert "nothing to cancel" in log.info.call_args.args[1]
    not_effective = PostHogCancelNotEffectiveError(
        "still Running", kind="backfill", object_id="b1", status="Running"
    )
    log_best_effort(log, WHAT, not_effective)
    assert log.warning.call_args.args[1] == "Backfill b1 of batch export e1"
    log_best_effort(log, WHAT, RuntimeError("boom"))
    assert log.warning.call_args.args == ("Could not cancel %s: %s", WHAT, log.warning.call_args.args[2])
