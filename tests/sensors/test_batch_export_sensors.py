"""Backfill and run sensors against a scripted PostHog: poke, reschedule, deferrable, soft_fail, intervals,
outages and deadlines. The sensors run the real poll operations through a real hook (``fake_posthog``)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from unittest import mock

import pytest
from fake_posthog import (
    BACKFILL,
    EXPORT,
    SETTINGS,
    FakeHook,
    FakePostHog,
    dropped,
    http_error,
    run_row,
    with_hook,
)

from airflow_provider_posthog.api.models import LogEntry
from airflow_provider_posthog.api.retry import RetryPolicy
from airflow_provider_posthog.api.statuses import BACKFILL_STATUSES, RUN_STATUSES, Outcome
from airflow_provider_posthog.compat import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_provider_posthog.exceptions import (
    PostHogAuthError,
    PostHogConfigError,
    PostHogNotFoundError,
    PostHogRemoteFailureError,
    PostHogTriggerError,
    PostHogUnreachableError,
)
from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor, PostHogBatchExportRunSensor
from airflow_provider_posthog.tasks.waiting import make_event
from airflow_provider_posthog.triggers.batch_export import (
    PostHogBackfillTrigger,
    PostHogBatchExportRunTrigger,
)

UTC = dt.timezone.utc
BACKFILL_PATH = f"batch_exports/{EXPORT}/backfills/{BACKFILL}/"
RUN_PATH = f"batch_exports/{EXPORT}/runs/run-1/"
RUNS_PATH = f"batch_exports/{EXPORT}/runs/"


def _sensor(cls: type[Any], fake: FakePostHog, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"task_id": "wait", "batch_export_id": EXPORT, "poke_interval": 0, "timeout": 60}
    params.update(kwargs)
    sensor = cls(**params)
    with_hook(sensor, fake)
    return sensor


def _context() -> dict[str, Any]:
    ti = mock.MagicMock()
    ti.get_first_reschedule_date.return_value = None
    return {"ti": ti}


def _params(fake: FakePostHog, path: str) -> dict[str, str]:
    """The query of the last request sent to ``path``."""
    return dict([s for s in fake.sent if s.path == path][-1].params)


@pytest.mark.parametrize("status", [*BACKFILL_STATUSES, "NewThing"])
def test_backfill_sensor_poke_maps_every_status(status: str) -> None:
    fake = FakePostHog().backfill(status)
    fake.run_list = [run_row("Completed")]
    sensor = _sensor(PostHogBackfillSensor, fake, backfill_id=BACKFILL)
    outcome = BACKFILL_STATUSES.get(status, Outcome.FAILED)
    if outcome is Outcome.FAILED:
        with pytest.raises(PostHogRemoteFailureError):
            sensor.poke(_context())
    else:
        assert sensor.poke(_context()) is (outcome is Outcome.SUCCEEDED)


@pytest.mark.parametrize("status", [*RUN_STATUSES, "NewThing"])
def test_run_sensor_poke_maps_every_status(status: str) -> None:
    fake = FakePostHog().run(status, latest_error="oops")
    sensor = _sensor(PostHogBatchExportRunSensor, fake, run_id="run-1")
    outcome = RUN_STATUSES.get(status, Outcome.FAILED)
    if outcome is Outcome.FAILED:
        with pytest.raises(PostHogRemoteFailureError, match="oops"):
            sensor.poke(_context())
    else:
        assert sensor.poke(_context()) is (outcome is Outcome.SUCCEEDED)


@pytest.mark.parametrize("where", ["latest_error", "logs"])
def test_a_failed_run_quoting_the_key_leaves_no_key_in_the_sync_failure(where: str) -> None:
    """The poll ran in this process (no trigger scrubbed its event): the failure names the run and quotes
    its error and log tail, without the key."""
    fake = FakePostHog().backfill("Completed")
    key = SETTINGS.api_key
    error, line = (
        (f"auth {key} refused", "ok") if where == "latest_error" else ("refused", f"token {key} bad")
    )
    fake.run_list = [run_row("Failed", run_id="bad", latest_error=error)]
    sensor = _sensor(PostHogBackfillSensor, fake, backfill_id=BACKFILL)
    entry = {"timestamp": "2026-01-01T00:00:00Z", "level": "ERROR", "message": line}
    sensor.hook.get_run_logs = lambda *_a, **_k: [LogEntry.from_api(entry)]
    sensor.hook._settings_cache = SETTINGS  # as the real hook holds them once it read its connection
    with pytest.raises(PostHogRemoteFailureError) as exc:
        sensor.poke(_context())
    message = str(exc.value)
    assert "bad" in message and key not in message and "***" in message


def test_remote_failure_is_a_fail_exception_so_soft_fail_skips_in_poke_mode() -> None:
    fake = FakePostHog().run("Failed")
    assert issubclass(PostHogRemoteFailureError, AirflowFailException)
    with pytest.raises(AirflowSkipException):
        _sensor(PostHogBatchExportRunSensor, fake, run_id="run-1", soft_fail=True).execute(_context())
    with pytest.raises(PostHogRemoteFailureError):
        _sensor(PostHogBatchExportRunSensor, fake, run_id="run-1").execute(_context())


def test_poke_mode_timeout() -> None:
    fake = FakePostHog().run("Running")
    with pytest.raises(AirflowSensorTimeout):
        _sensor(PostHogBatchExportRunSensor, fake, run_id="run-1", timeout=0).execute(_context())


def test_reschedule_mode_reschedules_while_running() -> None:
    fake = FakePostHog().run("Running")
    with pytest.raises(AirflowRescheduleException):
        _sensor(PostHogBatchExportRunSensor, fake, run_id="run-1", mode="reschedule").execute(_context())
    assert fake.paths() == [RUN_PATH]


def test_deferrable_sensor_defers_while_running_and_succeeds_at_once_when_done() -> None:
    fake = FakePostHog().backfill("Running")
    sensor = _sensor(
        PostHogBackfillSensor,
        fake,
        backfill_id=BACKFILL,
        deferrable=True,
        poke_interval=3,
        unreachable_timeout=90,
    )
    with pytest.raises(TaskDeferred) as excinfo:
        sensor.execute(_context())
    assert isinstance(excinfo.value.trigger, PostHogBackfillTrigger)
    assert excinfo.value.timeout is None
    _, kwargs = excinfo.value.trigger.serialize()
    assert kwargs["poll_interval"] == 3.0 and kwargs["end_time"] is not None
    assert kwargs["unreachable_timeout"] == 90.0
    # The sensor just poked: the trigger's first poll waits one interval instead of repeating it at once.
    assert kwargs["first_poll_at"] == pytest.approx(time.time() + 3.0, abs=2.0)

    failed = FakePostHog().backfill("Failed")
    with pytest.raises(TaskDeferred) as excinfo:
        _sensor(PostHogBackfillSensor, failed, backfill_id=BACKFILL, deferrable=True).execute(_context())
    assert excinfo.value.trigger.serialize()[1]["first_poll_at"] is None  # a failure resumes at once

    done = FakePostHog().backfill("Completed")
    done.run_list = [run_row("Completed")]
    with mock.patch.object(PostHogBackfillSensor, "defer") as defer:
        _sensor(PostHogBackfillSensor, done, backfill_id=BACKFILL, deferrable=True).execute(_context())
    defer.assert_not_called()


def test_deferrable_sensor_defers_through_an_outage_at_its_first_poll() -> None:
    """A 503 at the first poll is no failure: the trigger takes over the wait one interval later."""
    fake = FakePostHog().backfill("Running").fail_next(1)
    sensor = _sensor(PostHogBackfillSensor, fake, backfill_id=BACKFILL, deferrable=True, poke_interval=5)
    with pytest.raises(TaskDeferred) as excinfo:
        sensor.execute(_context())
    assert excinfo.value.trigger.serialize()[1]["first_poll_at"] == pytest.approx(time.time() + 5.0, abs=2.0)


def test_deferrable_interval_sensor_passes_the_window() -> None:
    fake = FakePostHog()
    sensor = _sensor(
        PostHogBatchExportRunSensor,
        fake,
        deferrable=True,
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-02T00:00:00+00:00",
    )
    with pytest.raises(TaskDeferred) as excinfo:
        sensor.execute(_context())
    trigger = excinfo.value.trigger
    assert isinstance(trigger, PostHogBatchExportRunTrigger)
    assert trigger.data_interval_start == "2024-01-01T00:00:00+00:00"
    assert _params(fake, RUNS_PATH)["ordering"] == "-data_interval_start"


def _event(status: str) -> dict[str, Any]:
    return make_event(status, f"it is {status}", batch_export_id=EXPORT, backfill_id=BACKFILL)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("failed", PostHogRemoteFailureError),
        ("timeout", AirflowSensorTimeout),
        ("error", PostHogTriggerError),
    ],
)
def test_resume_fails_on_non_success_and_soft_fail_skips(status: str, error: type) -> None:
    sensor = _sensor(PostHogBackfillSensor, FakePostHog(), backfill_id=BACKFILL, deferrable=True)
    with pytest.raises(error):
        sensor.resume_execution("execute_complete", {"event": _event(status)}, _context())
    soft = _sensor(
        PostHogBackfillSensor, FakePostHog(), backfill_id=BACKFILL, deferrable=True, soft_fail=True
    )
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": _event(status)}, _context())


def test_resume_success_and_unknown_events() -> None:
    sensor = _sensor(PostHogBackfillSensor, FakePostHog(), backfill_id=BACKFILL)
    assert sensor.execute_complete(_context(), _event("success")) is None
    for bad in (None, {"status": "cancelled", "message": "", "batch_export_id": EXPORT}):
        with pytest.raises(PostHogTriggerError):
            sensor.execute_complete(_context(), bad)


def test_interval_sensor_validates_arguments_before_calling_the_api() -> None:
    fake = FakePostHog()
    sensor = _sensor(
        PostHogBatchExportRunSensor, fake, data_interval_start="2024-01-02T00:00:00", data_interval_end="x"
    )
    context = _context()
    with pytest.raises(PostHogConfigError, match="data_interval_start"):
        sensor.poke(context)
    assert fake.sent == []
    context["ti"].xcom_push.assert_not_called()


def test_sensor_pushes_links_before_waiting() -> None:
    context = _context()
    _sensor(PostHogBatchExportRunSensor, FakePostHog().run("Running"), run_id="run-1").poke(context)
    keys = {c.kwargs["key"] for c in context["ti"].xcom_push.call_args_list}
    assert {"batch_export_id", "batch_export_url", "backfills_url", "runs_url"} <= keys


T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def _r(status: str, hour: int) -> dict[str, Any]:
    return run_row(
        status,
        run_id=f"run-{hour}-{status}",
        start=(T0 + dt.timedelta(hours=hour)).isoformat(),
        end=(T0 + dt.timedelta(hours=hour + 1)).isoformat(),
        backfill_id=None,
    )


@pytest.mark.parametrize(
    ("value", "match"),
    [(-1, "poke_interval must be a non-negative number"), ("often", "poke_interval='often' is not a number")],
)
def test_poke_interval_is_validated_naming_it(value: Any, match: str) -> None:
    with pytest.raises(PostHogConfigError, match=match):
        PostHogBackfillSensor(task_id="w", batch_export_id=EXPORT, backfill_id=BACKFILL, poke_interval=value)
    sensor = PostHogBackfillSensor(
        task_id="w", batch_export_id=EXPORT, backfill_id=BACKFILL, poke_interval=dt.timedelta(minutes=1)
    )
    assert sensor.poke_interval == 60.0


def test_interval_sensor_refuses_a_reversed_window_before_calling_the_api() -> None:
    fake = FakePostHog()
    sensor = _sensor(
        PostHogBatchExportRunSensor,
        fake,
        data_interval_start="2024-01-02T00:00:00+00:00",
        data_interval_end="2024-01-01T00:00:00+00:00",
    )
    context = _context()
    with pytest.raises(PostHogConfigError, match=r"data_interval_start .* must be before data_interval_end"):
        sensor.execute(context)
    assert fake.sent == []
    context["ti"].xcom_push.assert_not_called()


# ------------------------------------------------------------------- zero-width intervals (Airflow 3 cron)


def _daily_context(schedule: Any = "@daily") -> dict[str, Any]:
    import pendulum
    from airflow.sdk import DAG

    dag = DAG("d", schedule=schedule, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
    return {**_context(), "dag": dag}


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_zero_width_interval_waits_for_the_schedules_last_period(deferrable: bool) -> None:
    """``schedule="@daily"`` on Airflow 3: data_interval_start == data_interval_end == the tick."""
    fake = FakePostHog()
    fake.run_list = [_r("Completed", h) for h in range(24)]
    tick = "2024-01-02T00:00:00+00:00"
    sensor = _sensor(
        PostHogBatchExportRunSensor,
        fake,
        data_interval_start=tick,
        data_interval_end=tick,
        deferrable=deferrable,
    )
    assert sensor.execute(_daily_context()) is None
    params = _params(fake, RUNS_PATH)
    assert (params["start"], params["end"]) == (T0.isoformat(), "2024-01-02T00:00:00+00:00")


def test_zero_width_interval_without_a_schedule_fails_at_once_even_with_soft_fail() -> None:
    fake = FakePostHog()
    tick = "2024-01-02T00:00:00+00:00"
    sensor = _sensor(
        PostHogBatchExportRunSensor, fake, data_interval_start=tick, data_interval_end=tick, soft_fail=True
    )
    context = _daily_context(None)
    with pytest.raises(PostHogConfigError, match=r"zero-width range.*schedule=None.*explicit bounds"):
        sensor.execute(context)
    assert fake.sent == []
    context["ti"].xcom_push.assert_not_called()
    assert issubclass(PostHogConfigError, AirflowFailException)


def test_zero_width_interval_deferral_passes_the_derived_window() -> None:
    tick = "2024-01-02T00:00:00+00:00"
    sensor = _sensor(
        PostHogBatchExportRunSensor,
        FakePostHog(),
        data_interval_start=tick,
        data_interval_end=tick,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(_daily_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, PostHogBatchExportRunTrigger)
    assert (trigger.data_interval_start, trigger.data_interval_end) == (T0.isoformat(), tick)


# ---------------------------------------------------------------------- PostHog unreachable, final errors

SENSORS = pytest.mark.parametrize(
    ("cls", "kwargs", "script"),
    [
        (PostHogBackfillSensor, {"backfill_id": BACKFILL}, FakePostHog.backfill),
        (PostHogBatchExportRunSensor, {"run_id": "run-1"}, FakePostHog.run),
    ],
    ids=["backfill", "run"],
)


@SENSORS
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_sensor_rides_out_eight_failed_polls_in_a_row(
    cls: type[Any], kwargs: dict[str, Any], script: Any, mode: str
) -> None:
    """Eight failed polls in a row (503, dropped connections, 429) do not fail the sensor before its timeout.

    Poke mode: ``execute`` pokes until PostHog answers. Reschedule mode: each failed poke reschedules.
    """
    outage = [http_error(503), dropped(), http_error(429)] * 2 + [http_error(503), dropped()]
    fake = script(FakePostHog(), *outage, "Completed", **kwargs)
    fake.run_list = [run_row("Completed")]
    sensor = _sensor(cls, fake, mode=mode, **kwargs)
    if mode == "poke":
        assert sensor.execute(_context()) is None
    else:
        for _ in outage:
            with pytest.raises(AirflowRescheduleException):
                _sensor(cls, fake, mode=mode, **kwargs).execute(_context())
        assert sensor.execute(_context()) is None
    job_path = BACKFILL_PATH if cls is PostHogBackfillSensor else RUN_PATH
    assert fake.paths().count(job_path) == len(outage) + 1


@SENSORS
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
@pytest.mark.parametrize(
    ("status", "error"), [(404, PostHogNotFoundError), (401, PostHogAuthError)], ids=["404", "401"]
)
def test_a_final_error_fails_the_first_poke_and_soft_fail_skips_it(
    cls: type[Any], kwargs: dict[str, Any], script: Any, mode: str, status: int, error: type
) -> None:
    assert issubclass(error, AirflowFailException)
    fake = script(FakePostHog(), http_error(status), **kwargs)
    with pytest.raises(error):
        _sensor(cls, fake, mode=mode, **kwargs).execute(_context())
    assert len(fake.sent) == 1  # no second poke, no retry
    with pytest.raises(AirflowSkipException):
        _sensor(cls, fake, mode=mode, soft_fail=True, **kwargs).execute(_context())


@SENSORS
def test_unreachable_timeout_fails_a_poke_sensor_once_exceeded(
    cls: type[Any], kwargs: dict[str, Any], script: Any
) -> None:
    fake = script(FakePostHog(), "Running", **kwargs).fail_next(10_000)
    sensor = _sensor(cls, fake, poke_interval=0.02, unreachable_timeout=0.2, **kwargs)
    started = time.monotonic()
    with pytest.raises(PostHogUnreachableError, match=r"unreachable_timeout=0\.2s.*HTTP 503"):
        sensor.execute(_context())
    assert time.monotonic() - started >= 0.2
    assert len(fake.sent) > 2  # it kept poking before giving up


@SENSORS
def test_the_sensors_deadline_bounds_each_poll(cls: type[Any], kwargs: dict[str, Any], script: Any) -> None:
    """Poke mode: the deadline is the first poke + ``timeout``; every poll's request is bounded by it."""
    fake = script(FakePostHog(), "Running", "Running", "Completed", **kwargs)
    fake.run_list = [run_row("Completed")]
    sensor = _sensor(cls, fake, timeout=600, **kwargs)
    before = time.time()
    context = _context()
    assert [sensor.poke(context) for _ in range(3)] == [False, False, True]
    after = time.time()
    hook: FakeHook = sensor.hook
    assert len(hook.deadlines) == 3 and len(set(hook.deadlines)) == 1
    assert before + 600 <= (hook.deadlines[0] or 0) <= after + 600


@SENSORS
def test_a_rescheduled_sensor_counts_its_deadline_from_its_first_poke(
    cls: type[Any], kwargs: dict[str, Any], script: Any
) -> None:
    fake = script(FakePostHog(), "Running", **kwargs)
    sensor = _sensor(cls, fake, mode="reschedule", timeout=600, **kwargs)
    first_poke = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    context = {**_context(), "task_reschedule_count": 3}
    context["ti"].get_first_reschedule_date.return_value = first_poke
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(context)
    context["ti"].get_first_reschedule_date.assert_called_with(context)
    assert sensor.hook.deadlines == [pytest.approx(first_poke.timestamp() + 600, abs=1e-3)]


# ------------------------------------------------------ against the emulator: the real hook and transport

#: Two quick attempts per request, so an outage spans several polls.
TWO_QUICK_ATTEMPTS = RetryPolicy(max_attempts=2, backoff_initial=0.001, backoff_max=0.01)


def _seed_backfill(emulator: Any, status: str) -> tuple[str, str]:
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
    return export["id"], backfill["id"]


def test_a_poke_sensor_rides_out_an_outage_on_the_wire(posthog_conn: Any) -> None:
    """503s and dropped connections past the hook's own retries: the poke sensor keeps waiting and succeeds
    once PostHog answers again."""
    export_id, backfill_id = _seed_backfill(posthog_conn, "Completed")
    posthog_conn.control.add_fault("/backfills/", count=6)
    posthog_conn.control.add_fault("/backfills/", count=6, drop_connection=True)
    sensor = PostHogBackfillSensor(
        task_id="wait", batch_export_id=export_id, backfill_id=backfill_id, poke_interval=0.01, timeout=30
    )
    sensor.__dict__["hook"] = PostHogHook(posthog_conn_id="posthog_default", retry_policy=TWO_QUICK_ATTEMPTS)
    assert sensor.execute(_context()) is None
    assert posthog_conn.control.count_requests("GET", f"/backfills/{backfill_id}") == 13


def test_a_poke_sensor_that_times_out_on_a_running_backfill_blames_the_deadline(posthog_conn: Any) -> None:
    """The last poke lands on the wait's end: it is still sent (with a short grace) and answered, so the
    timeout says the backfill was still running, not that PostHog was unreachable."""
    export_id, backfill_id = _seed_backfill(posthog_conn, "Running")
    sensor = PostHogBackfillSensor(
        task_id="wait", batch_export_id=export_id, backfill_id=backfill_id, poke_interval=0.15, timeout=0.3
    )
    sensor._cached_logger = log = mock.MagicMock()
    with pytest.raises(AirflowSensorTimeout, match="still reported it as running"):
        sensor.execute(_context())
    assert not [c for c in log.warning.call_args_list if "unreachable" in str(c.args)]
