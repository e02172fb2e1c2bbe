"""A run sensor waiting for the runs of a data interval does not poll before the interval ended plus one
``poke_interval``: PostHog starts the run of the interval's last period only when the interval ends, so a
check before that could never find the interval complete. Every mode (poke, reschedule, deferrable) follows
the same rule (``tasks.waiting.Wait.before_first_poll``); a sensor started later polls at once, and a wait for
one ``run_id`` always polls at once. The request log (the fake's, the emulator's) is the evidence."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from unittest import mock

import pytest
from fake_posthog import EXPORT, FakePostHog, run_row, with_async_hook, with_hook

from airflow_provider_posthog.compat import AirflowRescheduleException, TaskDeferred
from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor
from airflow_provider_posthog.triggers.batch_export import PostHogBatchExportRunTrigger

UTC = dt.timezone.utc
POKE = 0.4
FIRST_CHECK = "PostHog starts the last run of"
#: One check of an interval by a wait's first poll: the export, then (the fake lists no latest runs with
#: it, as a PostHog that would not) the runs.
FIRST_CHECK_PATHS = [f"batch_exports/{EXPORT}/", f"batch_exports/{EXPORT}/runs/"]


class Clocked:
    """A :class:`FakePostHog` whose every interval has landed, with the time of each request it answered."""

    def __init__(self, start: dt.datetime, end: dt.datetime) -> None:
        self.fake = FakePostHog()
        self.fake.run_list = [
            run_row("Completed", start=start.isoformat(), end=end.isoformat(), backfill_id=None)
        ]
        self.times: list[float] = []
        answer = self.fake.answer

        def timed(spec: Any) -> Any:
            self.times.append(time.time())
            return answer(spec)

        self.fake.answer = timed  # type: ignore[method-assign]


def _interval(ended_ago: float) -> tuple[dt.datetime, dt.datetime]:
    end = dt.datetime.now(UTC) - dt.timedelta(seconds=ended_ago)
    return end - dt.timedelta(hours=1), end


def _sensor(
    clocked: Clocked, start: dt.datetime, end: dt.datetime, **kwargs: Any
) -> tuple[PostHogBatchExportRunSensor, mock.MagicMock]:
    sensor = PostHogBatchExportRunSensor(
        task_id="wait",
        batch_export_id=EXPORT,
        data_interval_start=start.isoformat(),
        data_interval_end=end.isoformat(),
        poke_interval=POKE,
        timeout=60,
        **kwargs,
    )
    with_hook(sensor, clocked.fake)
    log = mock.MagicMock()
    sensor._cached_logger = log
    return sensor, log


def _context() -> dict[str, Any]:
    ti = mock.MagicMock()
    ti.get_first_reschedule_date.return_value = None
    return {"ti": ti}


def _said_first_check(log: mock.MagicMock) -> bool:
    return any(FIRST_CHECK in str(c.args) for c in log.info.call_args_list)


def test_a_poke_at_the_interval_end_sends_no_request_and_keeps_waiting() -> None:
    start, end = _interval(0)
    clocked = Clocked(start, end)
    sensor, log = _sensor(clocked, start, end)
    context = _context()
    assert sensor.poke(context) is False
    assert clocked.fake.sent == []
    assert _said_first_check(log)
    keys = {c.kwargs["key"] for c in context["ti"].xcom_push.call_args_list}
    assert "runs_url" in keys  # the links are there while it waits


def test_poke_mode_polls_first_one_poke_interval_after_the_interval_ends() -> None:
    start, end = _interval(0)
    clocked = Clocked(start, end)
    sensor, _ = _sensor(clocked, start, end)
    assert sensor.execute(_context()) is None
    assert clocked.times, "it never polled"
    assert min(clocked.times) >= end.timestamp() + POKE
    # One check found it complete: the export (the fake lists no latest runs with it), then the runs.
    assert clocked.fake.paths() == FIRST_CHECK_PATHS


def test_reschedule_mode_reschedules_without_a_request_then_polls_when_due() -> None:
    start, end = _interval(0)
    clocked = Clocked(start, end)
    sensor, _ = _sensor(clocked, start, end, mode="reschedule")
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(_context())
    assert clocked.fake.sent == []
    time.sleep(max(0.0, end.timestamp() + POKE - time.time()))
    again, _ = _sensor(clocked, start, end, mode="reschedule")  # a rescheduled poke is a new process
    assert again.execute({**_context(), "task_reschedule_count": 1}) is None
    # A rescheduled poke lists the runs: only a try's first poke reads the export first.
    assert clocked.fake.paths() == [f"batch_exports/{EXPORT}/runs/"]
    assert min(clocked.times) >= end.timestamp() + POKE


async def test_a_deferrable_sensor_defers_at_once_and_its_trigger_polls_first_when_due() -> None:
    start, end = _interval(0)
    clocked = Clocked(start, end)
    sensor, _ = _sensor(clocked, start, end, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(_context())
    assert clocked.fake.sent == []  # execute itself did not poll
    trigger = deferred.value.trigger
    assert isinstance(trigger, PostHogBatchExportRunTrigger)
    assert trigger.first_poll_at == pytest.approx(end.timestamp() + POKE)
    with_async_hook(trigger, clocked.fake)
    events = [event async for event in trigger.run()]
    assert [e.payload["status"] for e in events] == ["success"]
    assert len(clocked.times) == len(FIRST_CHECK_PATHS) and min(clocked.times) >= end.timestamp() + POKE


@pytest.mark.parametrize("how", ["poke", "reschedule", "deferrable"])
def test_a_sensor_started_late_polls_at_once(how: str) -> None:
    """A late or re-run DAG run: the interval ended long ago, the first check is the first thing it does."""
    start, end = _interval(3600)
    clocked = Clocked(start, end)
    kwargs: dict[str, Any] = {"deferrable": True} if how == "deferrable" else {"mode": how}
    # A long poke interval: a first poke that skipped its check would make the next one come 10 s later.
    sensor, log = _sensor(clocked, start, end, **kwargs)
    sensor.poke_interval = 10.0
    before = time.time()
    with mock.patch.object(PostHogBatchExportRunSensor, "defer") as defer:
        assert sensor.execute(_context()) is None
    defer.assert_not_called()
    assert clocked.fake.paths() == FIRST_CHECK_PATHS and max(clocked.times) - before < 10.0
    assert not _said_first_check(log)


async def test_a_late_deferrable_sensor_reads_the_export_once_in_all() -> None:
    """Its first poke reads the export and lists the runs, then defers with the export's identity: the
    trigger only lists the runs, and its success event names the export the task read."""
    start, end = _interval(3600)
    clocked = Clocked(start, end)
    done = clocked.fake.run_list[0]
    clocked.fake.run_list = [[{**done, "status": "Running", "records_completed": None}], [done]]
    sensor, _ = _sensor(clocked, start, end, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(_context())
    assert clocked.fake.paths() == FIRST_CHECK_PATHS
    trigger = deferred.value.trigger
    assert isinstance(trigger, PostHogBatchExportRunTrigger)
    assert trigger.serialize()[1]["export"]["id"] == EXPORT
    trigger.first_poll_at = None  # poll now rather than one poke interval later
    with_async_hook(trigger, clocked.fake)
    events = [event async for event in trigger.run()]
    assert [e.payload["status"] for e in events] == ["success"]
    assert clocked.fake.paths() == [*FIRST_CHECK_PATHS, f"batch_exports/{EXPORT}/runs/"]
    assert events[0].payload["export"] == trigger.serialize()[1]["export"]


def test_a_wait_for_one_run_polls_at_once_whatever_its_interval() -> None:
    start, end = _interval(0)
    clocked = Clocked(start, end)
    clocked.fake.run("Completed")
    sensor, _ = _sensor(clocked, start, end, run_id="run-1")
    assert sensor.poke(_context()) is True
    assert clocked.fake.paths() == [f"batch_exports/{EXPORT}/runs/run-1/"]


def test_against_the_emulator_no_request_comes_before_the_first_check_is_due(posthog_conn: Any) -> None:
    """Poke mode through the real hook over HTTP: the emulator's request log starts one poke interval after
    the interval's end, with the one list that finds the interval complete."""
    control = posthog_conn.control
    assert abs((control.now() - dt.datetime.now(UTC)).total_seconds()) < 1  # the emulator runs on real time
    export = control.seed_export()
    start, end = _interval(0)
    control.seed_run(export["id"], start, end, status="Completed", records_completed=5)
    control.clear_request_log()
    sensor = PostHogBatchExportRunSensor(
        task_id="wait",
        batch_export_id=export["id"],
        data_interval_start=start.isoformat(),
        data_interval_end=end.isoformat(),
        poke_interval=POKE,
        timeout=60,
    )
    assert sensor.execute(_context()) is None
    log = control.request_log
    # One read: the export, whose latest runs (PostHog lists the 10 newest) show the interval complete.
    assert [e.method for e in log] == ["GET"]
    assert log[0].path.endswith(f"/batch_exports/{export['id']}/")
    assert log[0].timestamp.timestamp() >= end.timestamp() + POKE
