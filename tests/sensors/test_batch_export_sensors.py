"""Backfill and run sensors with a mocked hook: poke, reschedule, deferrable, soft_fail, interval logic."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from unittest import mock

import pytest

from airflow_provider_posthog.api.statuses import BACKFILL_STATUSES, RUN_STATUSES, Outcome
from airflow_provider_posthog.compat import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_provider_posthog.exceptions import (
    PostHogConfigError,
    PostHogRemoteFailureError,
    PostHogTriggerError,
)
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor, PostHogBatchExportRunSensor
from airflow_provider_posthog.tasks.waiting import make_event
from airflow_provider_posthog.triggers.batch_export import (
    PostHogBackfillTrigger,
    PostHogBatchExportRunTrigger,
)

EXPORT = "0190-export"
BACKFILL = "0190-backfill"
UTC = dt.timezone.utc


def _hook(**attrs: Any) -> mock.MagicMock:
    hook = mock.MagicMock()
    hook.ui_url.side_effect = lambda export_id, tab=None: f"https://ph.test/x/{export_id}?tab={tab}"
    hook.get_run_logs.return_value = []
    for name, value in attrs.items():
        setattr(hook, name, value)
    return hook


def _sensor(cls: type, hook: mock.MagicMock, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"task_id": "wait", "batch_export_id": EXPORT, "poke_interval": 0, "timeout": 60}
    params.update(kwargs)
    sensor = cls(**params)
    sensor.__dict__["hook"] = hook
    return sensor


def _context() -> dict[str, Any]:
    return {"ti": mock.MagicMock()}


@pytest.mark.parametrize("status", [*BACKFILL_STATUSES, "NewThing"])
def test_backfill_sensor_poke_maps_every_status(factories: Any, status: str) -> None:
    hook = _hook(get_backfill=mock.Mock(return_value=factories.backfill(status)))
    hook.list_runs.return_value = [factories.run("Completed")]
    sensor = _sensor(PostHogBackfillSensor, hook, backfill_id=BACKFILL)
    outcome = BACKFILL_STATUSES.get(status, Outcome.FAILED)
    if outcome is Outcome.FAILED:
        with pytest.raises(PostHogRemoteFailureError):
            sensor.poke(_context())
    else:
        assert sensor.poke(_context()) is (outcome is Outcome.SUCCEEDED)


@pytest.mark.parametrize("status", [*RUN_STATUSES, "NewThing"])
def test_run_sensor_poke_maps_every_status(factories: Any, status: str) -> None:
    hook = _hook(get_run=mock.Mock(return_value=factories.run(status, latest_error="oops")))
    sensor = _sensor(PostHogBatchExportRunSensor, hook, run_id="run-1")
    outcome = RUN_STATUSES.get(status, Outcome.FAILED)
    if outcome is Outcome.FAILED:
        with pytest.raises(PostHogRemoteFailureError, match="oops"):
            sensor.poke(_context())
    else:
        assert sensor.poke(_context()) is (outcome is Outcome.SUCCEEDED)


def test_remote_failure_is_a_fail_exception_so_soft_fail_skips_in_poke_mode(factories: Any) -> None:
    hook = _hook(get_run=mock.Mock(return_value=factories.run("Failed")))
    assert issubclass(PostHogRemoteFailureError, AirflowFailException)
    with pytest.raises(AirflowSkipException):
        _sensor(PostHogBatchExportRunSensor, hook, run_id="run-1", soft_fail=True).execute(_context())
    with pytest.raises(PostHogRemoteFailureError):
        _sensor(PostHogBatchExportRunSensor, hook, run_id="run-1").execute(_context())


def test_poke_mode_timeout(factories: Any) -> None:
    hook = _hook(get_run=mock.Mock(return_value=factories.run("Running")))
    with pytest.raises(AirflowSensorTimeout):
        _sensor(PostHogBatchExportRunSensor, hook, run_id="run-1", timeout=0).execute(_context())


def test_reschedule_mode_reschedules_while_running(factories: Any) -> None:
    hook = _hook(get_run=mock.Mock(return_value=factories.run("Running")))
    context = _context()
    context["ti"].get_first_reschedule_date.return_value = None
    with pytest.raises(AirflowRescheduleException):
        _sensor(PostHogBatchExportRunSensor, hook, run_id="run-1", mode="reschedule").execute(context)


def test_deferrable_sensor_defers_while_running_and_succeeds_at_once_when_done(factories: Any) -> None:
    hook = _hook(get_backfill=mock.Mock(return_value=factories.backfill("Running")))
    sensor = _sensor(PostHogBackfillSensor, hook, backfill_id=BACKFILL, deferrable=True, poke_interval=3)
    with pytest.raises(TaskDeferred) as excinfo:
        sensor.execute(_context())
    assert isinstance(excinfo.value.trigger, PostHogBackfillTrigger)
    assert excinfo.value.timeout is None
    _, kwargs = excinfo.value.trigger.serialize()
    assert kwargs["poll_interval"] == 3.0 and kwargs["end_time"] is not None
    # The sensor just poked: the trigger's first poll waits one interval instead of repeating it at once.
    assert kwargs["first_poll_at"] == pytest.approx(time.time() + 3.0, abs=2.0)

    failed = _hook(get_backfill=mock.Mock(return_value=factories.backfill("Failed")))
    failed.list_runs.return_value = []
    with pytest.raises(TaskDeferred) as excinfo:
        _sensor(PostHogBackfillSensor, failed, backfill_id=BACKFILL, deferrable=True).execute(_context())
    assert excinfo.value.trigger.serialize()[1]["first_poll_at"] is None  # a failure resumes at once

    done = _hook(get_backfill=mock.Mock(return_value=factories.backfill("Completed")))
    done.list_runs.return_value = []
    with mock.patch.object(PostHogBackfillSensor, "defer") as defer:
        _sensor(PostHogBackfillSensor, done, backfill_id=BACKFILL, deferrable=True).execute(_context())
    defer.assert_not_called()


def test_deferrable_interval_sensor_passes_the_window(factories: Any) -> None:
    hook = _hook(list_runs=mock.Mock(return_value=[]))
    sensor = _sensor(
        PostHogBatchExportRunSensor,
        hook,
        deferrable=True,
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-02T00:00:00+00:00",
    )
    with pytest.raises(TaskDeferred) as excinfo:
        sensor.execute(_context())
    trigger = excinfo.value.trigger
    assert isinstance(trigger, PostHogBatchExportRunTrigger)
    assert trigger.data_interval_start == "2024-01-01T00:00:00+00:00"
    assert hook.list_runs.call_args.kwargs["ordering"] == "-data_interval_start"


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
    sensor = _sensor(PostHogBackfillSensor, _hook(), backfill_id=BACKFILL, deferrable=True)
    with pytest.raises(error):
        sensor.resume_execution("execute_complete", {"event": _event(status)}, _context())
    soft = _sensor(PostHogBackfillSensor, _hook(), backfill_id=BACKFILL, deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": _event(status)}, _context())


def test_resume_success_and_unknown_events() -> None:
    sensor = _sensor(PostHogBackfillSensor, _hook(), backfill_id=BACKFILL)
    assert sensor.execute_complete(_context(), _event("success")) is None
    for bad in (None, {"status": "cancelled", "message": "", "batch_export_id": EXPORT}):
        with pytest.raises(PostHogTriggerError):
            sensor.execute_complete(_context(), bad)


def test_interval_sensor_validates_arguments_before_calling_the_api() -> None:
    hook = _hook()
    sensor = _sensor(
        PostHogBatchExportRunSensor, hook, data_interval_start="2024-01-02T00:00:00", data_interval_end="x"
    )
    with pytest.raises(PostHogConfigError, match="data_interval_start"):
        sensor.poke(_context())
    hook.list_runs.assert_not_called()


def test_sensor_pushes_links_before_waiting(factories: Any) -> None:
    hook = _hook(get_run=mock.Mock(return_value=factories.run("Running")))
    context = _context()
    _sensor(PostHogBatchExportRunSensor, hook, run_id="run-1").poke(context)
    keys = {c.kwargs["key"] for c in context["ti"].xcom_push.call_args_list}
    assert {"batch_export_id", "batch_export_url", "backfills_url", "runs_url"} <= keys


T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def _r(factories: Any, status: str, hour: int) -> Any:
    return factories.run(
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
    hook = _hook()
    sensor = _sensor(
        PostHogBatchExportRunSensor,
        hook,
        data_interval_start="2024-01-02T00:00:00+00:00",
        data_interval_end="2024-01-01T00:00:00+00:00",
    )
    with pytest.raises(PostHogConfigError, match=r"data_interval_start .* must be before data_interval_end"):
        sensor.execute(_context())
    assert hook.mock_calls == []


# ------------------------------------------------------------------- zero-width intervals (Airflow 3 cron)


def _daily_context(schedule: Any = "@daily") -> dict[str, Any]:
    import pendulum
    from airflow.sdk import DAG

    dag = DAG("d", schedule=schedule, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
    return {**_context(), "dag": dag}


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_zero_width_interval_waits_for_the_schedules_last_period(factories: Any, deferrable: bool) -> None:
    """``schedule="@daily"`` on Airflow 3: data_interval_start == data_interval_end == the tick."""
    runs = [_r(factories, "Completed", h) for h in range(24)]
    hook = _hook(list_runs=mock.Mock(return_value=runs))
    tick = "2024-01-02T00:00:00+00:00"
    sensor = _sensor(
        PostHogBatchExportRunSensor,
        hook,
        data_interval_start=tick,
        data_interval_end=tick,
        deferrable=deferrable,
    )
    assert sensor.execute(_daily_context()) is None
    kwargs = hook.list_runs.call_args.kwargs
    assert (kwargs["start"], kwargs["end"]) == (T0.isoformat(), "2024-01-02T00:00:00+00:00")


def test_zero_width_interval_without_a_schedule_fails_at_once_even_with_soft_fail() -> None:
    hook = _hook()
    tick = "2024-01-02T00:00:00+00:00"
    sensor = _sensor(
        PostHogBatchExportRunSensor, hook, data_interval_start=tick, data_interval_end=tick, soft_fail=True
    )
    with pytest.raises(PostHogConfigError, match=r"zero-width range.*schedule=None.*explicit bounds"):
        sensor.execute(_daily_context(None))
    assert hook.mock_calls == []
    assert issubclass(PostHogConfigError, AirflowFailException)


def test_zero_width_interval_deferral_passes_the_derived_window() -> None:
    hook = _hook(list_runs=mock.Mock(return_value=[]))
    tick = "2024-01-02T00:00:00+00:00"
    sensor = _sensor(
        PostHogBatchExportRunSensor, hook, data_interval_start=tick, data_interval_end=tick, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(_daily_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, PostHogBatchExportRunTrigger)
    assert (trigger.data_interval_start, trigger.data_interval_end) == (T0.isoformat(), tick)
