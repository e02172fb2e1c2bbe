"""Triggers against a scripted PostHog: events, deadlines, outages, serde, on_kill. They run the real poll and
cancel operations through a real async hook (``fake_posthog``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
from fake_posthog import (
    BACKFILL,
    EXPORT,
    FakeAsyncHook,
    FakePostHog,
    dropped,
    http_error,
    run_row,
    with_async_hook,
)

from airflow_provider_posthog.api.retry import RetryPolicy
from airflow_provider_posthog.api.statuses import RUN_STATUSES, Outcome
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook
from airflow_provider_posthog.triggers.batch_export import (
    PostHogBackfillTrigger,
    PostHogBatchExportRunTrigger,
)

if TYPE_CHECKING:
    from airflow.triggers.base import TriggerEvent

BACKFILL_PATH = f"batch_exports/{EXPORT}/backfills/{BACKFILL}/"
RUN_PATH = f"batch_exports/{EXPORT}/runs/run-1/"
RUNS_PATH = f"batch_exports/{EXPORT}/runs/"
INTERVAL = {
    "data_interval_start": "2024-01-01T00:00:00+00:00",
    "data_interval_end": "2024-01-02T00:00:00+00:00",
}


def _backfill_trigger(fake: FakePostHog, **kwargs: Any) -> PostHogBackfillTrigger:
    trigger = PostHogBackfillTrigger(
        batch_export_id=EXPORT, backfill_id=BACKFILL, poll_interval=0.01, **kwargs
    )
    with_async_hook(trigger, fake)
    return trigger


def _run_trigger(fake: FakePostHog, **kwargs: Any) -> PostHogBatchExportRunTrigger:
    params: dict[str, Any] = {"batch_export_id": EXPORT, "poll_interval": 0.01, **kwargs}
    trigger = PostHogBatchExportRunTrigger(**params)
    with_async_hook(trigger, fake)
    return trigger


async def _events(trigger: Any) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


def _logged(log: mock.MagicMock) -> list[str]:
    return [c[1][0] % c[1][1:] for c in log.method_calls if c[0] in ("info", "warning", "error")]


# ------------------------------------------------------------------------------------------------- serde

CASES = pytest.mark.parametrize(
    "cls_kwargs",
    [
        (PostHogBackfillTrigger, {"backfill_id": BACKFILL}),
        (PostHogBatchExportRunTrigger, {"run_id": "run-1"}),
        (PostHogBatchExportRunTrigger, INTERVAL),
    ],
    ids=["backfill", "run", "interval"],
)


@CASES
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
        unreachable_timeout=300,
        first_poll_at=1_899_999_000.0,
        **extra,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == f"airflow_provider_posthog.triggers.batch_export.{cls.__name__}"
    assert kwargs["unreachable_timeout"] == 300.0
    assert "max_poll_errors" not in kwargs  # accepted for stored triggers, but no longer part of the state
    stored = Trigger(classpath=classpath, kwargs=kwargs).kwargs
    assert stored == kwargs
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in kwargs.values())
    rebuilt = cls(**stored)
    assert rebuilt.serialize() == (classpath, kwargs)


@CASES
def test_a_trigger_stored_by_the_previous_version_still_loads(
    cls_kwargs: tuple[type, dict[str, Any]],
) -> None:
    """The kwargs an earlier provider wrote to the trigger table (with ``max_poll_errors``, without
    ``unreachable_timeout``): the triggerer must still build the trigger, which then waits until end_time."""
    from airflow.models.trigger import Trigger

    cls, extra = cls_kwargs
    if cls is PostHogBatchExportRunTrigger:
        extra = {"run_id": None, "data_interval_start": None, "data_interval_end": None, **extra}
    old = {
        "batch_export_id": EXPORT,
        "posthog_conn_id": "ph",
        "project_id": 7,
        "poll_interval": 60.0,
        "end_time": 1_900_000_000.5,
        "cancel_on_kill": False,
        "max_poll_errors": 5,
        "first_poll_at": None,
        **extra,
    }
    classpath = f"airflow_provider_posthog.triggers.batch_export.{cls.__name__}"
    trigger = cls(**Trigger(classpath=classpath, kwargs=old).kwargs)
    _, kwargs = trigger.serialize()
    new = ("unreachable_timeout", "unreachable_since")
    assert all(kwargs[k] is None for k in new) and "max_poll_errors" not in kwargs
    assert {k: v for k, v in kwargs.items() if k not in new} == {
        k: v for k, v in old.items() if k != "max_poll_errors"
    }


def test_constructor_rejects_non_plain_values() -> None:
    with pytest.raises(ValueError, match="end_time"):
        PostHogBackfillTrigger(batch_export_id=EXPORT, backfill_id=BACKFILL, end_time="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unreachable_timeout"):
        PostHogBackfillTrigger(batch_export_id=EXPORT, backfill_id=BACKFILL, unreachable_timeout="1h")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_id"):
        PostHogBatchExportRunTrigger(batch_export_id=EXPORT)


# ------------------------------------------------------------------------------------------------ events


async def test_backfill_success_after_polling() -> None:
    fake = FakePostHog().backfill("Running", "Completed", end_at="2024-01-01T02:00:00Z")
    fake.run_list = [
        run_row("Completed"),
        run_row("Completed", run_id="run-2", start="2024-01-01T01:00:00Z", end="2024-01-01T02:00:00Z"),
        run_row("Failed", run_id="other", backfill_id="another-backfill"),
    ]
    events = await _events(_backfill_trigger(fake))
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success"
    assert payload["backfill_id"] == BACKFILL and payload["batch_export_id"] == EXPORT
    assert payload["runs_completed"] == 2 and payload["records_completed"] == 20
    assert fake.paths().count(BACKFILL_PATH) == 2
    # The runs of the backfill are listed once, when it is terminal, by data interval: from one export
    # interval before its (aligned-down) start to its end, so its first run is included.
    assert fake.paths().count(RUNS_PATH) == 1
    (runs,) = [s for s in fake.sent if s.path == RUNS_PATH]
    assert dict(runs.params) == {
        "ordering": "data_interval_start",
        "start": "2023-12-31T23:00:00+00:00",
        "end": "2024-01-01T02:00:00+00:00",
    }


async def test_completed_backfill_with_a_failed_run_is_a_failure() -> None:
    fake = FakePostHog().backfill("Completed")
    fake.run_list = [run_row("Completed"), run_row("Failed", run_id="bad", latest_error="disk full")]
    (event,) = await _events(_backfill_trigger(fake))
    assert event.payload["status"] == "failed"
    assert event.payload["failed_runs"][0]["id"] == "bad"
    assert event.payload["failed_runs"][0]["latest_error"] == "disk full"


@pytest.mark.parametrize(
    "status", ["Failed", "Cancelled", "Terminated", "TimedOut", "FailedRetryable", "Bogus", ""]
)
async def test_failed_or_unknown_backfill_status_fails(status: str) -> None:
    (event,) = await _events(_backfill_trigger(FakePostHog().backfill(status)))
    assert event.payload["status"] == "failed"


async def test_deadline_passed_sends_timeout() -> None:
    (event,) = await _events(_backfill_trigger(FakePostHog().backfill("Running"), end_time=time.time() - 1))
    assert event.payload["status"] == "timeout"
    assert "deadline" in event.payload["message"]


async def test_trigger_error_does_not_claim_the_export_failed() -> None:
    not_found = http_error(404)
    (event,) = await _events(_backfill_trigger(FakePostHog().backfill(not_found)))
    assert event.payload["status"] == "error"
    message = event.payload["message"]
    assert "may still be running" in message and str(not_found) in message
    # Only the quoted HTTP error may say "failed"; the trigger's own words never claim the export did.
    assert "failed" not in message.replace(str(not_found), "").lower()


async def test_still_running_does_not_fire() -> None:
    fake = FakePostHog().backfill("Running")
    task = asyncio.create_task(_backfill_trigger(fake).run().__anext__())
    await asyncio.sleep(0.2)
    assert not task.done()
    assert fake.paths().count(BACKFILL_PATH) >= 2
    task.cancel()


@pytest.mark.parametrize("status", [*RUN_STATUSES, "SomethingNew"])
async def test_run_trigger_maps_every_status(status: str) -> None:
    trigger = _run_trigger(FakePostHog().run(status), run_id="run-1", end_time=time.time() - 1)
    (event,) = await _events(trigger)
    expected = {Outcome.SUCCEEDED: "success", Outcome.FAILED: "failed", Outcome.RUNNING: "timeout"}
    assert event.payload["status"] == expected[RUN_STATUSES.get(status, Outcome.FAILED)]
    assert event.payload["run_id"] == "run-1"


async def test_interval_trigger_waits_for_full_coverage() -> None:
    first = run_row("Completed", backfill_id=None)
    second = run_row(
        "Completed",
        run_id="run-2",
        backfill_id=None,
        start="2024-01-01T01:00:00Z",
        end="2024-01-01T02:00:00Z",
    )
    fake = FakePostHog()
    fake.run_list = [[first], [second, first]]
    trigger = _run_trigger(
        fake, data_interval_start="2024-01-01T00:00:00+00:00", data_interval_end="2024-01-01T02:00:00+00:00"
    )
    (event,) = await _events(trigger)
    assert event.payload["status"] == "success"
    assert event.payload["runs_completed"] == 2
    # The first poll reads the export (it names what a success exported, and a paused export would never
    # fill the gap), then the runs, as the fake lists no latest runs with the export; the second the runs.
    assert fake.paths() == [f"batch_exports/{EXPORT}/", RUNS_PATH, RUNS_PATH]
    params = dict(fake.sent[-1].params)
    assert params["ordering"] == "-data_interval_start"
    assert params["start"].startswith("2024-01-01T00:00:00") and params["end"].startswith(
        "2024-01-01T02:00:00"
    )


def _identity() -> dict[str, Any]:
    from fake_posthog import export_row

    from airflow_provider_posthog.api.models import BatchExport

    return BatchExport.from_api(export_row()).identity()


def test_the_export_a_task_read_round_trips_through_the_trigger_table_and_is_left_out_when_unknown() -> None:
    from airflow.models.trigger import Trigger

    identity = _identity()
    classpath, kwargs = PostHogBatchExportRunTrigger(
        batch_export_id=EXPORT, export=identity, **INTERVAL
    ).serialize()
    stored = Trigger(classpath=classpath, kwargs=kwargs).kwargs
    assert stored["export"] == identity
    assert PostHogBatchExportRunTrigger(**stored).serialize() == (classpath, kwargs)
    # Unknown: not in the kwargs at all, so the trigger still loads in a triggerer of an earlier version.
    assert "export" not in PostHogBatchExportRunTrigger(batch_export_id=EXPORT, **INTERVAL).serialize()[1]


@pytest.mark.parametrize("export", [{"id": "another-export"}, "events to S3", [EXPORT]])
def test_an_export_that_is_not_the_identity_of_the_waited_export_is_refused(export: Any) -> None:
    with pytest.raises(ValueError, match="export must be the identity of batch export batch_export_id"):
        PostHogBatchExportRunTrigger(batch_export_id=EXPORT, export=export, **INTERVAL)


async def test_an_interval_trigger_given_the_export_its_task_read_only_lists_the_runs() -> None:
    """The deferring task's first poll read the export: its trigger does not read it again, and its success
    event still names it (lineage reads nothing after the resume)."""
    fake = FakePostHog()
    fake.run_list = [[run_row("Running", backfill_id=None)], [run_row("Completed", backfill_id=None)]]
    identity = _identity()
    trigger = _run_trigger(
        fake,
        export=identity,
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-01T01:00:00+00:00",
    )
    (event,) = await _events(trigger)
    assert event.payload["status"] == "success"
    assert fake.paths() == [RUNS_PATH, RUNS_PATH]
    assert event.payload["export"] == identity


async def test_an_interval_wait_announces_its_range_before_its_first_poll() -> None:
    """While it waits for its first poll, an interval trigger has already told its triggerer's shared
    reads which runs it will list (so waits polling before it list them too), without a request."""
    from airflow_provider_posthog.hooks import shared_polls

    fake = FakePostHog()
    trigger = _run_trigger(fake, **INTERVAL, first_poll_at=time.time() + 60)
    task = asyncio.ensure_future(_events(trigger))
    try:
        for _ in range(100):
            if shared_polls.loop_table().interest_count:
                break
            await asyncio.sleep(0.01)
        assert shared_polls.loop_table().interest_count == 1
        assert fake.sent == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_first_poll_waits_until_first_poll_at_but_not_past_the_deadline() -> None:
    calls: list[float] = []

    def timed(fake: FakePostHog) -> FakePostHog:
        answer = fake.answer

        def record(spec: Any) -> Any:
            calls.append(time.time())
            return answer(spec)

        fake.answer = record  # type: ignore[method-assign]
        return fake

    start = time.time()
    trigger = _backfill_trigger(timed(FakePostHog().backfill(http_error(404))), first_poll_at=start + 0.3)
    await _events(trigger)  # the 404 ends the trigger after its first poll
    assert len(calls) == 1 and calls[0] - start >= 0.29

    calls.clear()
    start = time.time()
    late = _backfill_trigger(
        timed(FakePostHog().backfill(http_error(404))), first_poll_at=start + 60, end_time=start + 0.2
    )
    await asyncio.wait_for(_events(late), timeout=5)
    assert len(calls) == 1 and 0.19 <= calls[0] - start < 5


# --------------------------------------------------------------------------------- PostHog unreachable


async def test_the_trigger_rides_out_more_failed_polls_than_the_old_budget() -> None:
    """Eight failed polls (503, dropped connections, 429) in a row, more than the old ``max_poll_errors=5``
    (still passed here, as an old stored trigger would): the wait goes on and ends in success."""
    outage = [http_error(503), dropped(), http_error(429)] * 2 + [http_error(503), dropped()]
    fake = FakePostHog().backfill(*outage, "Completed")
    fake.run_list = [run_row("Completed")]
    events = await _events(_backfill_trigger(fake, max_poll_errors=5, end_time=time.time() + 60))
    assert [e.payload["status"] for e in events] == ["success"]
    assert fake.paths().count(BACKFILL_PATH) == len(outage) + 1


async def test_an_outage_ends_in_a_timeout_at_the_deadline() -> None:
    fake = FakePostHog().backfill("Running").fail_next(10_000)
    (event,) = await _events(_backfill_trigger(fake, end_time=time.time() + 0.2))
    assert event.payload["status"] == "timeout"
    assert "while PostHog was unreachable" in event.payload["message"]
    assert "HTTP 503" in event.payload["message"]
    assert fake.paths().count(BACKFILL_PATH) > 2


async def test_a_final_error_after_transient_ones_yields_one_error_event() -> None:
    fake = FakePostHog().backfill(http_error(503), dropped(), http_error(401), "Completed")
    events = await _events(_backfill_trigger(fake))
    assert [e.payload["status"] for e in events] == ["error"]
    assert "PostHogAuthError" in events[0].payload["message"]
    assert fake.paths().count(BACKFILL_PATH) == 3  # no poll after the final error


async def test_unreachable_timeout_yields_an_error_event_naming_it() -> None:
    fake = FakePostHog().run("Running").fail_next(10_000, dropped())
    trigger = _run_trigger(fake, run_id="run-1", unreachable_timeout=0.15, end_time=time.time() + 60)
    started = time.monotonic()
    (event,) = await _events(trigger)
    assert time.monotonic() - started >= 0.15
    assert event.payload["status"] == "error"
    assert "PostHogUnreachableError" in event.payload["message"]
    assert "unreachable_timeout=0.15s" in event.payload["message"]
    assert event.payload["run_id"] == "run-1"


async def test_the_unreachable_count_goes_on_from_the_deferring_task() -> None:
    """The task found PostHog unreachable 100 s ago and deferred: with unreachable_timeout=50 the trigger's
    first failed poll ends the wait, instead of counting 50 s from zero again."""
    fake = FakePostHog().run("Running").fail_next(10_000, dropped())
    trigger = _run_trigger(
        fake,
        run_id="run-1",
        unreachable_timeout=50,
        unreachable_since=time.time() - 100,
        end_time=time.time() + 600,
    )
    (event,) = await _events(trigger)
    assert event.payload["status"] == "error" and "unreachable for 1 min" in event.payload["message"]
    assert len(fake.sent) == 1


@pytest.mark.parametrize(
    ("cls", "extra"),
    [
        (PostHogBackfillTrigger, {"backfill_id": BACKFILL}),
        (PostHogBatchExportRunTrigger, {"run_id": "run-1"}),
    ],
    ids=["backfill", "run"],
)
async def test_every_poll_is_bounded_by_the_end_time(cls: type, extra: dict[str, Any]) -> None:
    end_time = time.time() + 60
    fake = FakePostHog().backfill("Running", "Running", "Completed").run("Running", "Running", "Completed")
    fake.run_list = [run_row("Completed")]
    trigger = cls(batch_export_id=EXPORT, poll_interval=0.01, end_time=end_time, **extra)
    hook: FakeAsyncHook = with_async_hook(trigger, fake)
    (event,) = await _events(trigger)
    assert event.payload["status"] == "success"
    assert hook.deadlines == [end_time] * 3


async def test_a_poll_due_at_or_after_the_end_time_still_gets_a_short_grace() -> None:
    """A trigger that starts after its end_time (a triggerer that was down) still asks PostHog once, with a
    deadline just past now rather than one already passed, and reports what PostHog said."""
    end_time = time.time() - 10
    trigger = _backfill_trigger(FakePostHog().backfill("Running"), end_time=end_time)
    hook: FakeAsyncHook = trigger._hook()  # type: ignore[assignment]
    before = time.time()
    (event,) = await _events(trigger)
    assert event.payload["status"] == "timeout"
    assert "still reported it as running" in event.payload["message"]
    (deadline,) = hook.deadlines
    assert deadline is not None and deadline >= before + 1.0


# --------------------------------------------------------------------------------------------- on_kill


@pytest.fixture(autouse=True)
def task_state(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``on_kill`` reads as its task's state (``states[0]``, or an exception to raise)."""
    from airflow_provider_posthog import compat

    states: list[Any] = ["failed"]

    async def atask_state(ti: Any) -> str | None:
        if isinstance(states[0], BaseException):
            raise states[0]
        return states[0]

    monkeypatch.setattr(compat, "atask_state", atask_state)
    return states


async def test_on_kill_does_not_cancel_when_the_trigger_only_moved(task_state: list[Any]) -> None:
    """Airflow 3.3.2 calls on_kill also when a trigger moves to another triggerer: the task is still
    deferred there, and its backfill must go on."""
    task_state[0] = "deferred"
    fake = FakePostHog().backfill("Running")
    trigger = _backfill_trigger(fake, cancel_on_kill=True)
    trigger._log = log = mock.MagicMock()
    await trigger.on_kill()
    assert fake.sent == []
    assert "still deferred (its trigger moved): not cancelling" in _logged(log)[0]


async def test_on_kill_does_not_cancel_when_the_task_state_is_unknown(task_state: list[Any]) -> None:
    task_state[0] = RuntimeError("no supervisor")
    fake = FakePostHog().backfill("Running")
    trigger = _backfill_trigger(fake, cancel_on_kill=True)
    trigger._log = log = mock.MagicMock()
    await trigger.on_kill()
    assert fake.sent == []
    (warning,) = [c.args[0] % c.args[1:] for c in log.warning.call_args_list]
    assert warning.startswith(f"Not cancelling backfill {BACKFILL} of batch export {EXPORT}")
    assert "cancel it in PostHog" in warning


@pytest.mark.parametrize(("map_index", "key"), [(-1, "wait"), (3, "wait_3")])
async def test_the_task_state_is_read_through_the_triggerers_sdk_channel(
    monkeypatch: pytest.MonkeyPatch, map_index: int, key: str
) -> None:
    """``compat.atask_state`` asks the triggerer's supervisor (GetTaskStates) for exactly this task
    instance and reads Airflow's answer, keyed ``task_id`` or ``task_id_mapindex``."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

    from airflow_provider_posthog import compat

    monkeypatch.undo()  # the real compat.atask_state, not the autouse fixture's
    sent: list[Any] = []

    class Comms:
        async def asend(self, msg: Any) -> Any:
            sent.append(msg)
            return TaskStatesResult(task_states={"run-1": {key: "deferred", "other": "failed"}})

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Comms(), raising=False)
    ti = SimpleNamespace(dag_id="d", task_id="wait", run_id="run-1", map_index=map_index)
    assert await compat.atask_state(ti) == "deferred"
    (msg,) = sent
    assert isinstance(msg, GetTaskStates)
    assert (msg.dag_id, msg.task_ids, msg.run_ids) == ("d", ["wait"], ["run-1"])
    assert msg.map_index == (map_index if map_index >= 0 else None)


async def test_a_triggerer_reads_a_task_state_once_before_any_on_kill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow 3.3's triggerer builds what answers a trigger's requests at the first request (13-35 s on
    two cores), longer than ``on_kill`` may take when that first request is ``on_kill``'s own: so the first
    wait that can be cancelled reads its task's state in the background when it starts, once per process;
    waits with nothing to cancel, and processes that are not a triggerer, never ask."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time import task_runner

    from airflow_provider_posthog import compat

    read: list[str] = []

    async def atask_state(ti: Any) -> str:
        read.append(ti.task_id)
        return "deferred"

    monkeypatch.setattr(compat, "atask_state", atask_state)
    monkeypatch.setattr(compat, "TRIGGER_ON_KILL_SUPPORTED", True)
    monkeypatch.setattr(compat, "_warmed", False)

    def started(trigger: Any, task_id: str) -> Any:
        trigger.task_instance = SimpleNamespace(task_id=task_id, dag_id="d", run_id="r", map_index=-1)
        return trigger

    fake = FakePostHog().backfill("Completed").run("Completed")
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", None, raising=False)
    await _events(started(_backfill_trigger(fake, cancel_on_kill=True), "not_in_a_triggerer"))
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", object(), raising=False)
    await _events(started(_backfill_trigger(fake, cancel_on_kill=False), "nothing_to_cancel"))
    await _events(
        started(_run_trigger(fake, **INTERVAL, cancel_on_kill=True, end_time=time.time()), "interval_wait")
    )
    assert read == []
    await _events(started(_backfill_trigger(fake, cancel_on_kill=True), "first"))
    await _events(started(_run_trigger(fake, run_id="run-1", cancel_on_kill=True), "second"))
    await asyncio.sleep(0)
    assert read == ["first"]


async def test_on_kill_cancels_only_when_asked() -> None:
    """The cancel is POSTed, then the backfill is read back to report what PostHog really did."""
    fake = FakePostHog().backfill("Running")
    trigger = _backfill_trigger(fake, cancel_on_kill=True)
    trigger._log = log = mock.MagicMock()
    await trigger.on_kill()
    assert [(s.method, s.path) for s in fake.sent] == [
        ("POST", f"{BACKFILL_PATH}cancel/"),
        ("GET", BACKFILL_PATH),
    ]
    assert _logged(log) == [f"Cancelled backfill {BACKFILL} of batch export {EXPORT} (now Cancelled)."]

    other = FakePostHog().backfill("Running")
    await _backfill_trigger(other, cancel_on_kill=False).on_kill()
    assert other.sent == []


async def test_on_kill_of_a_finished_backfill_reports_that_nothing_was_left_to_cancel() -> None:
    """PostHog refuses (400) to cancel a finished backfill; the trigger reads it back and says so."""
    fake = FakePostHog().backfill("Completed")
    fake.cancels[BACKFILL] = http_error(400, "Cannot cancel", method="POST")
    trigger = _backfill_trigger(fake, cancel_on_kill=True)
    trigger._log = log = mock.MagicMock()
    await trigger.on_kill()
    assert [s.method for s in fake.sent] == ["POST", "GET"]
    assert _logged(log) == [
        f"Backfill {BACKFILL} of batch export {EXPORT} is already Completed; nothing to cancel."
    ]
    log.warning.assert_not_called()


async def test_on_kill_cancels_a_single_run_but_never_an_interval() -> None:
    fake = FakePostHog().run("Running")
    await _run_trigger(fake, run_id="run-1", cancel_on_kill=True).on_kill()
    assert [(s.method, s.path) for s in fake.sent] == [("POST", f"{RUN_PATH}cancel/"), ("GET", RUN_PATH)]

    other = FakePostHog().run("Running")
    await _run_trigger(other, cancel_on_kill=True, **INTERVAL).on_kill()
    assert other.sent == []


async def test_on_kill_swallows_errors() -> None:
    fake = FakePostHog().backfill("Running")
    fake.cancels[BACKFILL] = http_error(500, "boom", method="POST")
    trigger = _backfill_trigger(fake, cancel_on_kill=True)
    trigger._log = log = mock.MagicMock()
    await trigger.on_kill()  # no exception
    assert fake.paths("POST") == [f"{BACKFILL_PATH}cancel/"]
    (warning,) = _logged(log)
    assert warning.startswith(f"Could not cancel backfill {BACKFILL} of batch export {EXPORT}: ")
    assert "HTTP 500" in warning


async def test_on_kill_warns_when_posthog_accepted_the_cancel_but_the_backfill_still_runs() -> None:
    fake = FakePostHog().backfill("Running")
    fake.cancels[BACKFILL] = "ignore"
    trigger = _backfill_trigger(fake, cancel_on_kill=True)
    trigger._log = log = mock.MagicMock()
    await trigger.on_kill()
    (warning,) = [c.args[0] % c.args[1:] for c in log.warning.call_args_list]
    assert "is still running after the cancel" in warning and "cancel it in PostHog" in warning


# ------------------------------------------------------ against the emulator: the real hook and transport

#: Two quick attempts per request, so an outage spans several polls.
TWO_QUICK_ATTEMPTS = RetryPolicy(max_attempts=2, backoff_initial=0.001, backoff_max=0.01)


def _emulated(emulator: Any, status: str, **kwargs: Any) -> PostHogBackfillTrigger:
    """A trigger on a backfill seeded in the emulator, polling through a real ``PostHogAsyncHook``."""
    export = emulator.control.seed_export()
    backfill = emulator.control.seed_backfill(
        export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", status=status
    )
    if status == "Completed":  # a completed backfill has a completed run of each interval of its range
        for start, end in (("00", "01"), ("01", "02")):
            emulator.control.seed_run(
                export["id"],
                f"2024-01-01T{start}:00:00Z",
                f"2024-01-01T{end}:00:00Z",
                backfill_id=backfill["id"],
            )
    trigger = PostHogBackfillTrigger(batch_export_id=export["id"], backfill_id=backfill["id"], **kwargs)
    hook = PostHogAsyncHook(posthog_conn_id="posthog_default", retry_policy=TWO_QUICK_ATTEMPTS)
    trigger._hook = lambda: hook  # type: ignore[method-assign]
    return trigger


async def test_the_trigger_rides_out_an_outage_on_the_wire(posthog_conn: Any) -> None:
    posthog_conn.control.add_fault("/backfills/", count=6)
    posthog_conn.control.add_fault("/backfills/", count=6, drop_connection=True)
    trigger = _emulated(posthog_conn, "Completed", poll_interval=0.01, end_time=time.time() + 30)
    assert [e.payload["status"] for e in await _events(trigger)] == ["success"]
    assert posthog_conn.control.count_requests("GET", f"/backfills/{trigger.backfill_id}") == 13


async def test_a_trigger_that_times_out_on_a_running_backfill_blames_the_deadline(posthog_conn: Any) -> None:
    """The last poll's sleep ends on the wait's end: the poll is still sent (with a short grace) and
    answered, so the timeout says the backfill was still running, not that PostHog was unreachable."""
    trigger = _emulated(posthog_conn, "Running", poll_interval=0.1, end_time=time.time() + 0.35)
    trigger._log = log = mock.MagicMock()
    (event,) = await _events(trigger)
    assert event.payload["status"] == "timeout"
    assert "still reported it as running" in event.payload["message"]
    log.warning.assert_not_called()


async def test_a_trickling_server_cannot_hold_a_trigger_past_its_deadline(posthog_conn: Any) -> None:
    """PostHog answers every poll one byte every 2 s (a whole answer would take minutes): with a 3 s
    timeout and the connection's default 10 + 30 s request timeouts, the wait still ends within one poll
    interval after its deadline, with a timeout event."""
    trigger = _emulated(posthog_conn, "Running", poll_interval=1.0)
    posthog_conn.control.add_fault("/backfills/", method="GET", count=None, trickle=2.0)
    started = time.time()
    trigger.end_time = started + 3.0
    (event,) = await _events(trigger)
    took = time.time() - started
    assert event.payload["status"] == "timeout"
    assert 3.0 <= took < 3.0 + 1.0 + 0.5  # the deadline, plus at most one poll interval (and scheduling)


async def test_on_kill_gets_its_cancel_through_airflows_repeated_cancels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow 3.3.2's triggerer runs ``on_kill`` in the trigger's cancelled task, inside
    ``asyncio.wait_for``, and sends the same cancel again with every sync until the trigger has finished:
    an ``on_kill`` that needs more than one sync (here a task-state lookup of 0.3 s, syncs every 0.05 s)
    must still cancel the backfill."""
    from airflow_provider_posthog import compat

    async def slow_state(ti: Any) -> str:
        await asyncio.sleep(0.3)
        return "failed"

    monkeypatch.setattr(compat, "atask_state", slow_state)
    fake = FakePostHog().backfill("Running")
    trigger = _backfill_trigger(fake, cancel_on_kill=True)

    async def run_trigger() -> None:  # the shape of the triggerer's run_trigger
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError as cancelled:
            if cancelled.args and cancelled.args[0] == "user action":
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(trigger.on_kill(), timeout=30)
            raise

    task = asyncio.create_task(run_trigger())
    await asyncio.sleep(0)
    for _ in range(12):  # the first cancel, then one with every sync
        task.cancel("user action")
        await asyncio.sleep(0.05)
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(40):  # the cancel may outlive the trigger's own task (wait_for runs it in a task)
        if fake.paths("POST"):
            break
        await asyncio.sleep(0.05)
    assert fake.paths("POST") == [f"{BACKFILL_PATH}cancel/"]
