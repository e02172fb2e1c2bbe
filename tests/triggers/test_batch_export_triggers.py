"""Triggers with a mocked async hook: events, deadlines, transient errors, serde, on_kill."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

from airflow_provider_posthog.api.statuses import RUN_STATUSES, Outcome
from airflow_provider_posthog.exceptions import PostHogNotFoundError, PostHogServerError
from airflow_provider_posthog.triggers.batch_export import (
    PostHogBackfillTrigger,
    PostHogBatchExportRunTrigger,
)

if TYPE_CHECKING:
    from airflow.triggers.base import TriggerEvent

EXPORT = "0190-export"
BACKFILL = "0190-backfill"


def _hook(**methods: Any) -> mock.MagicMock:
    hook = mock.MagicMock()
    for name, value in methods.items():
        setattr(
            hook,
            name,
            mock.AsyncMock(side_effect=value)
            if callable(value) or isinstance(value, list)
            else mock.AsyncMock(return_value=value),
        )
    return hook


def _backfill_trigger(hook: mock.MagicMock, **kwargs: Any) -> PostHogBackfillTrigger:
    trigger = PostHogBackfillTrigger(
        batch_export_id=EXPORT, backfill_id=BACKFILL, poll_interval=0.01, **kwargs
    )
    trigger._hook = lambda: hook  # type: ignore[method-assign]
    return trigger


async def _events(trigger: Any) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


@pytest.mark.parametrize(
    "cls_kwargs",
    [
        (PostHogBackfillTrigger, {"backfill_id": BACKFILL}),
        (PostHogBatchExportRunTrigger, {"run_id": "run-1"}),
        (
            PostHogBatchExportRunTrigger,
            {
                "data_interval_start": "2024-01-01T00:00:00+00:00",
                "data_interval_end": "2024-01-02T00:00:00+00:00",
            },
        ),
    ],
    ids=["backfill", "run", "interval"],
)
def test_serialize_round_trips_through_the_trigger_table(cls_kwargs: tuple[type, dict[str, Any]]) -> None:
    """Through the ``Trigger`` row the triggerer stores: serde on 3.2+, ``BaseSerialization`` on 3.1."""
    from airflow.models.trigger import Trigger

    cls, extra = cls_kwargs
    trigger = cls(
        batch_export_id=EXPORT,
        posthog_conn_id="ph",
        project_id=7,
        poll_interval=5,
        end_time=1_900_000_000.5,
        cancel_on_kill=True,
        **extra,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == f"airflow_provider_posthog.triggers.batch_export.{cls.__name__}"
    stored = Trigger(classpath=classpath, kwargs=kwargs).kwargs
    assert stored == kwargs
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in kwargs.values())
    rebuilt = cls(**stored)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_constructor_rejects_non_plain_values() -> None:
    with pytest.raises(ValueError, match="end_time"):
        PostHogBackfillTrigger(batch_export_id=EXPORT, backfill_id=BACKFILL, end_time="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_id"):
        PostHogBatchExportRunTrigger(batch_export_id=EXPORT)


async def test_backfill_success_after_polling(factories: Any) -> None:
    hook = _hook(
        get_backfill=[factories.backfill("Running"), factories.backfill("Completed")],
        list_backfill_runs=[
            [
                factories.run("Completed"),
                factories.run(
                    "Completed", run_id="run-2", start="2024-01-01T01:00:00Z", end="2024-01-01T02:00:00Z"
                ),
                factories.run("Failed", run_id="other", backfill_id="another-backfill"),
            ]
        ],
    )
    events = await _events(_backfill_trigger(hook))
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success"
    assert payload["backfill_id"] == BACKFILL and payload["batch_export_id"] == EXPORT
    assert payload["runs_completed"] == 2 and payload["records_completed"] == 20
    assert hook.get_backfill.await_count == 2
    # The runs of the backfill are listed once, when it is terminal, with a created_at window.
    assert hook.list_backfill_runs.await_count == 1
    # The backfill itself is handed to the hook, which knows how to list all of its runs.
    assert hook.list_backfill_runs.await_args.args[0] == EXPORT
    assert hook.list_backfill_runs.await_args.args[1].id == BACKFILL


async def test_completed_backfill_with_a_failed_run_is_a_failure(factories: Any) -> None:
    hook = _hook(
        get_backfill=factories.backfill("Completed"),
        list_backfill_runs=[
            [factories.run("Completed"), factories.run("Failed", run_id="bad", latest_error="disk full")]
        ],
    )
    (event,) = await _events(_backfill_trigger(hook))
    assert event.payload["status"] == "failed"
    assert event.payload["failed_runs"][0]["id"] == "bad"
    assert event.payload["failed_runs"][0]["latest_error"] == "disk full"


@pytest.mark.parametrize(
    "status", ["Failed", "Cancelled", "Terminated", "TimedOut", "FailedRetryable", "Bogus", ""]
)
async def test_failed_or_unknown_backfill_status_fails(factories: Any, status: str) -> None:
    hook = _hook(get_backfill=factories.backfill(status), list_backfill_runs=[[]])
    (event,) = await _events(_backfill_trigger(hook))
    assert event.payload["status"] == "failed"


async def test_deadline_passed_sends_timeout(factories: Any) -> None:
    hook = _hook(get_backfill=factories.backfill("Running"))
    (event,) = await _events(_backfill_trigger(hook, end_time=time.time() - 1))
    assert event.payload["status"] == "timeout"
    assert "deadline" in event.payload["message"]


async def test_transient_errors_are_retried_inside_the_trigger(factories: Any) -> None:
    hook = _hook(
        get_backfill=[PostHogServerError("503"), PostHogServerError("503"), factories.backfill("Completed")],
        list_backfill_runs=[[factories.run("Completed")]],
    )
    (event,) = await _events(_backfill_trigger(hook))
    assert event.payload["status"] == "success"
    assert hook.get_backfill.await_count == 3


async def test_persistent_transient_errors_become_a_trigger_error(factories: Any) -> None:
    hook = _hook(get_backfill=[PostHogServerError("503")] * 3)
    (event,) = await _events(_backfill_trigger(hook, max_poll_errors=3))
    assert event.payload["status"] == "error"


async def test_trigger_error_does_not_claim_the_export_failed() -> None:
    hook = _hook(get_backfill=PostHogNotFoundError("GET ... 404"))
    (event,) = await _events(_backfill_trigger(hook))
    assert event.payload["status"] == "error"
    message = event.payload["message"]
    assert "may still be running" in message
    assert "failed" not in message.lower().replace("trigger", "")


async def test_still_running_does_not_fire(factories: Any) -> None:
    hook = _hook(get_backfill=lambda *a, **k: factories.backfill("Running"))
    task = asyncio.create_task(_backfill_trigger(hook).run().__anext__())
    await asyncio.sleep(0.2)
    assert not task.done()
    assert hook.get_backfill.await_count >= 2
    task.cancel()


async def test_on_kill_cancels_only_when_asked(factories: Any) -> None:
    hook = _hook(get_backfill=factories.backfill("Running"), cancel_backfill="Cancelled")
    await _backfill_trigger(hook, cancel_on_kill=True).on_kill()
    hook.cancel_backfill.assert_awaited_once_with(EXPORT, BACKFILL)
    other = _hook(get_backfill=factories.backfill("Running"), cancel_backfill="Cancelled")
    await _backfill_trigger(other, cancel_on_kill=False).on_kill()
    other.cancel_backfill.assert_not_awaited()
    other.get_backfill.assert_not_awaited()


async def test_on_kill_leaves_a_finished_backfill_alone(factories: Any) -> None:
    """The same "already finished" rule as the operators: read first, cancel only Starting/Running."""
    hook = _hook(get_backfill=factories.backfill("Completed"), cancel_backfill="Cancelled")
    await _backfill_trigger(hook, cancel_on_kill=True).on_kill()
    hook.cancel_backfill.assert_not_awaited()


async def test_on_kill_cancels_a_single_run_but_never_an_interval(factories: Any) -> None:
    hook = _hook(get_run=factories.run("Running"), cancel_run="Cancelled")
    run = PostHogBatchExportRunTrigger(batch_export_id=EXPORT, run_id="run-1", cancel_on_kill=True)
    run._hook = lambda: hook  # type: ignore[method-assign]
    await run.on_kill()
    hook.cancel_run.assert_awaited_once_with(EXPORT, "run-1")
    interval = PostHogBatchExportRunTrigger(
        batch_export_id=EXPORT,
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-02T00:00:00+00:00",
        cancel_on_kill=True,
    )
    other = _hook(get_run=factories.run("Running"), cancel_run="Cancelled")
    interval._hook = lambda: other  # type: ignore[method-assign]
    await interval.on_kill()
    assert other.mock_calls == []


async def test_on_kill_swallows_errors(factories: Any) -> None:
    hook = _hook(get_backfill=factories.backfill("Running"), cancel_backfill=PostHogServerError("boom"))
    await _backfill_trigger(hook, cancel_on_kill=True).on_kill()  # no exception
    hook.cancel_backfill.assert_awaited_once()


@pytest.mark.parametrize("status", [*RUN_STATUSES, "SomethingNew"])
async def test_run_trigger_maps_every_status(factories: Any, status: str) -> None:
    hook = _hook(get_run=factories.run(status))
    trigger = PostHogBatchExportRunTrigger(
        batch_export_id=EXPORT, run_id="run-1", poll_interval=0.01, end_time=time.time() - 1
    )
    trigger._hook = lambda: hook  # type: ignore[method-assign]
    (event,) = await _events(trigger)
    expected = {Outcome.SUCCEEDED: "success", Outcome.FAILED: "failed", Outcome.RUNNING: "timeout"}
    assert event.payload["status"] == expected[RUN_STATUSES.get(status, Outcome.FAILED)]
    assert event.payload["run_id"] == "run-1"


async def test_interval_trigger_waits_for_full_coverage(factories: Any) -> None:
    first = factories.run("Completed", backfill_id=None)
    second = factories.run(
        "Completed",
        run_id="run-2",
        backfill_id=None,
        start="2024-01-01T01:00:00Z",
        end="2024-01-01T02:00:00Z",
    )
    hook = _hook(list_runs=[[first], [second, first]])
    trigger = PostHogBatchExportRunTrigger(
        batch_export_id=EXPORT,
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-01T02:00:00+00:00",
        poll_interval=0.01,
    )
    trigger._hook = lambda: hook  # type: ignore[method-assign]
    (event,) = await _events(trigger)
    assert event.payload["status"] == "success"
    assert event.payload["runs_completed"] == 2
    kwargs = hook.list_runs.await_args.kwargs
    assert kwargs["ordering"] == "-data_interval_start"
    assert kwargs["start"].startswith("2024-01-01T00:00:00") and kwargs["end"].startswith(
        "2024-01-01T02:00:00"
    )


async def test_first_poll_waits_until_first_poll_at_but_not_past_the_deadline() -> None:
    calls: list[float] = []

    async def get_backfill(*_: Any) -> Any:
        calls.append(time.time())
        raise PostHogNotFoundError("gone")  # ends the trigger after its first poll

    start = time.time()
    trigger = _backfill_trigger(_hook(get_backfill=get_backfill), first_poll_at=start + 0.3)
    await _events(trigger)
    assert len(calls) == 1 and calls[0] - start >= 0.29

    calls.clear()
    start = time.time()
    late = _backfill_trigger(_hook(get_backfill=get_backfill), first_poll_at=start + 60, end_time=start + 0.2)
    await asyncio.wait_for(_events(late), timeout=5)
    assert len(calls) == 1 and 0.19 <= calls[0] - start < 5
