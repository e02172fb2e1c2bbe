"""What a sensor's log says while it pokes: the PostHog tab of what it waits on, once, each progress state
once per process, and when PostHog became unreachable and answered again. In ``mode="reschedule"`` every poke
is a new process (a new sensor instance), so each poke logs its state once: that is the heartbeat there; a
rescheduled poke repeats none of the first poke's lines."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any
from unittest import mock

import pytest
from fake_posthog import (
    BACKFILL,
    EXPORT,
    HOST,
    PROJECT,
    FakePostHog,
    backfill_row,
    dropped,
    http_error,
    run_row,
    with_hook,
)

from airflow_provider_posthog.compat import AirflowRescheduleException
from airflow_provider_posthog.exceptions import PostHogConfigError, PostHogUnreachableError
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor, PostHogBatchExportRunSensor

UI = f"{HOST}/project/{PROJECT}/pipeline/batch-exports/{EXPORT}"
UNREACHABLE = "PostHog is unreachable since"
ANSWERED = "PostHog answered again after"


def _sensor(cls: type[Any], fake: FakePostHog, **kwargs: Any) -> tuple[Any, mock.MagicMock]:
    params: dict[str, Any] = {"task_id": "wait", "batch_export_id": EXPORT, "poke_interval": 0, "timeout": 60}
    sensor = cls(**{**params, **kwargs})
    with_hook(sensor, fake)
    log = mock.MagicMock()
    sensor._cached_logger = log
    return sensor, log


def _context(**extra: Any) -> dict[str, Any]:
    ti = mock.MagicMock()
    ti.get_first_reschedule_date.return_value = None
    return {"ti": ti, **extra}


def _lines(log: mock.MagicMock) -> list[str]:
    """Every line the task logged, whatever its level."""
    return [c[1][0] % c[1][1:] for c in log.method_calls if c[0] in ("info", "warning", "error")]


def _running(finished: int) -> dict[str, Any]:
    return backfill_row(
        "Running", progress={"total_runs": 4, "finished_runs": finished, "progress": finished / 4}
    )


def test_poking_logs_the_backfills_tab_once_and_each_state_once() -> None:
    fake = FakePostHog()
    fake.backfills[BACKFILL] = [_running(1)] * 3 + [_running(2)] * 2
    sensor, log = _sensor(PostHogBackfillSensor, fake, backfill_id=BACKFILL)
    context = _context()  # one poke-mode process: the same context for every poke
    assert [sensor.poke(context) for _ in range(5)] == [False] * 5
    lines = _lines(log)
    assert [line for line in lines if "runs finished" in line] == [
        f"Backfill {BACKFILL} is Running (1/4 runs finished).",
        f"Backfill {BACKFILL} is Running (2/4 runs finished).",
    ]
    link = (
        f"Waiting for backfill {BACKFILL} of batch export {EXPORT}; follow it in PostHog: {UI}?tab=backfills"
    )
    assert lines.count(link) == 1
    assert lines.count(f"PostHog batch export: {UI}") == 1


def test_a_run_sensor_links_the_runs_tab() -> None:
    sensor, log = _sensor(PostHogBatchExportRunSensor, FakePostHog().run("Running"), run_id="run-1")
    context = _context()
    assert sensor.poke(context) is False
    assert sensor.poke(context) is False
    lines = _lines(log)
    assert f"Waiting for run run-1 of batch export {EXPORT}; follow it in PostHog: {UI}?tab=runs" in lines
    assert lines.count("Run run-1 is Running.") == 1


def test_reschedule_mode_logs_the_state_once_per_poke() -> None:
    """Each reschedule poke runs a fresh instance: its one line is the heartbeat of that mode."""
    logs = []
    for _ in range(2):
        fake = FakePostHog()
        fake.backfills[BACKFILL] = [_running(1)]
        sensor, log = _sensor(PostHogBackfillSensor, fake, backfill_id=BACKFILL, mode="reschedule")
        context = _context()
        assert sensor.poke(context) is False
        assert sensor.poke(context) is False  # within one process: not repeated
        logs.append([line for line in _lines(log) if "runs finished" in line])
    assert logs == [[f"Backfill {BACKFILL} is Running (1/4 runs finished)."]] * 2


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_an_empty_param_fails_the_sensor_naming_it(mode: str) -> None:
    from airflow.sdk import DAG

    with DAG("sensor_templates", schedule=None):
        sensor = PostHogBackfillSensor(
            task_id="wait", batch_export_id=EXPORT, backfill_id="{{ params.backfill_id }}", mode=mode
        )
    sensor.render_template_fields({"params": {"backfill_id": ""}, "var": {"value": None}})
    with pytest.raises(
        PostHogConfigError, match=r"backfill_id rendered empty .* param 'backfill_id' is empty"
    ):
        sensor.execute({"ti": mock.MagicMock()})


# ---------------------------------------------------------------------------- PostHog unreachable, and back

SENSORS = pytest.mark.parametrize(
    ("cls", "kwargs", "script"),
    [
        (PostHogBackfillSensor, {"backfill_id": BACKFILL}, FakePostHog.backfill),
        (PostHogBatchExportRunSensor, {"run_id": "run-1"}, FakePostHog.run),
    ],
    ids=["backfill", "run"],
)
OUTAGES = pytest.mark.parametrize(
    ("failure", "trouble"),
    [
        (http_error(503), "HTTP 503"),
        (dropped(), "no answer: RemoteDisconnected"),
        (http_error(429), "HTTP 429"),
    ],
    ids=["503", "dropped", "429"],
)


@SENSORS
@OUTAGES
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_an_outage_is_logged_once_and_its_end_once(
    cls: type[Any], kwargs: dict[str, Any], script: Any, failure: Exception, trouble: str, mode: str
) -> None:
    """Several failed pokes of one process keep waiting (False) and say so once; the next answer says so."""
    fake = script(FakePostHog(), failure, failure, failure, "Completed", **kwargs)
    fake.run_list = [run_row("Completed")]
    sensor, log = _sensor(cls, fake, mode=mode, **kwargs)
    context = _context()
    assert [sensor.poke(context) for _ in range(4)] == [False, False, False, True]
    lines = _lines(log)
    down = [line for line in lines if line.startswith(UNREACHABLE)]
    assert len(down) == 1
    assert re.fullmatch(
        rf"{UNREACHABLE} \d\d:\d\d:\d\d UTC \({trouble}\); still waiting until \d\d:\d\d:\d\d UTC\.", down[0]
    )
    assert [line for line in lines if line.startswith(ANSWERED)] == [f"{ANSWERED} 0 s."]
    assert lines.index(down[0]) < lines.index(f"{ANSWERED} 0 s.")
    warned = [c.args[0] % c.args[1:] for c in log.warning.call_args_list]
    assert down == [line for line in warned if line.startswith(UNREACHABLE)]  # a warning, not an info line


@SENSORS
def test_a_rescheduled_poke_pushes_the_links_again_but_repeats_no_line(
    cls: type[Any], kwargs: dict[str, Any], script: Any
) -> None:
    first, first_log = _sensor(cls, script(FakePostHog(), "Running", **kwargs), mode="reschedule", **kwargs)
    with pytest.raises(AirflowRescheduleException):
        first.execute(_context(task_reschedule_count=0))
    first_lines = _lines(first_log)
    assert any(line.startswith("PostHog batch export:") for line in first_lines)
    assert any(line.startswith("Waiting for ") and "follow it in PostHog" in line for line in first_lines)

    fake = script(FakePostHog(), "Running", **kwargs)
    later, log = _sensor(cls, fake, mode="reschedule", **kwargs)
    context = _context(task_reschedule_count=2)
    first_poke = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
    context["ti"].get_first_reschedule_date.return_value = first_poke
    with pytest.raises(AirflowRescheduleException):
        later.execute(context)
    keys = {c.kwargs["key"] for c in context["ti"].xcom_push.call_args_list}
    assert {"batch_export_id", "batch_export_url", "backfills_url", "runs_url"} <= keys
    lines = _lines(log)
    assert not [line for line in lines if line.startswith("PostHog batch export:")]
    assert not [line for line in lines if "follow it in PostHog" in line]
    context["ti"].get_first_reschedule_date.assert_called_with(context)
    assert later.hook.deadlines == [pytest.approx(first_poke.timestamp() + 60, abs=1e-3)]


def test_a_zero_width_interval_is_explained_once_per_process() -> None:
    """The derived period is logged when the sensor first resolves it, not at every check (``execute`` and
    each poke of the loop used to resolve it again)."""
    import pendulum
    from airflow.sdk import DAG

    dag = DAG("d", schedule="@daily", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
    tick = "2024-01-02T00:00:00+00:00"
    fake = FakePostHog()
    day = [
        run_row(
            run_id=f"run-{h}",
            start=f"2024-01-01T{h:02d}:00:00+00:00",
            end=f"2024-01-01T{h + 1:02d}:00:00+00:00" if h < 23 else tick,
            backfill_id=None,
        )
        for h in range(24)
    ]
    fake.run_list = [day[:2], day[:12], day]  # three checks: two incomplete, then the whole day
    sensor, log = _sensor(PostHogBatchExportRunSensor, fake, data_interval_start=tick, data_interval_end=tick)
    assert sensor.execute(_context(dag=dag)) is None
    assert fake.paths().count(f"batch_exports/{EXPORT}/runs/") == 3
    explained = [line for line in _lines(log) if "zero-width data interval" in line]
    assert explained == [
        f"data_interval_start and data_interval_end are both {tick} (a zero-width data interval); using the "
        "last complete period of the DAG's schedule (cron '0 0 * * *' in UTC): [2024-01-01T00:00:00+00:00, "
        f"{tick})."
    ]


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_broken_connection_fails_the_sensor_once_with_its_config_error(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A connection without a project id: the task fails with that error, not first a warning about links."""
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_BROKEN", "posthog://:phx_urikey12345@eu.posthog.com")
    sensor = PostHogBackfillSensor(
        task_id="wait",
        batch_export_id=EXPORT,
        backfill_id=BACKFILL,
        posthog_conn_id="posthog_broken",
        mode=mode,
    )
    sensor._cached_logger = log = mock.MagicMock()
    with pytest.raises(PostHogConfigError, match="No PostHog project id"):
        sensor.execute(_context())
    lines = _lines(log)
    assert not [line for line in lines if "Could not build the PostHog UI URL" in line]
    assert not [line for line in lines if "No PostHog project id" in line]  # the task runner reports it once


class StateStore:
    """Airflow 3.3's ``context["task_state_store"]``, in memory: what outlives one poke's process."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.calls: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.calls.append("get")
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.calls.append("set")
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.calls.append("delete")
        self.values.pop(key, None)


def _rescheduled_poke(fake: FakePostHog, store: StateStore, pokes: int, **kwargs: Any) -> tuple[Any, Any]:
    """One poke of a rescheduled sensor, in a process (a sensor object) of its own."""
    sensor, log = _sensor(PostHogBackfillSensor, fake, backfill_id=BACKFILL, mode="reschedule", **kwargs)
    context = _context(task_reschedule_count=pokes, task_state_store=store)
    context["ti"].try_number = 1
    return sensor.poke(context), log


def test_a_rescheduled_sensor_carries_the_outage_from_poke_to_poke() -> None:
    """The time PostHog became unreachable goes through the task state store: the second failed poke (a new
    process) keeps the first one's start and says nothing new; the first poke that gets an answer says the
    outage is over and forgets it. A poke while PostHog answers only reads the store."""
    store = StateStore()
    assert _rescheduled_poke(FakePostHog().backfill("Running"), store, 0)[0] is False
    assert store.calls == ["get"]

    down, log = _rescheduled_poke(FakePostHog().backfill(http_error(503)), store, 1)
    assert down is False and store.calls[-1] == "set"
    since = store.values["posthog_unreachable_since"]
    assert since["try"] == 1 and any(line.startswith(UNREACHABLE) for line in _lines(log))

    _rescheduled_poke(FakePostHog().backfill(dropped()), store, 2)
    assert store.values["posthog_unreachable_since"] == since  # still the first failed poke's start

    completed = FakePostHog().backfill("Completed")
    completed.run_list = [run_row("Completed")]
    done, log = _rescheduled_poke(completed, store, 3)
    assert done is True
    assert any(line.startswith(ANSWERED) for line in _lines(log))
    assert "posthog_unreachable_since" not in store.values and store.calls[-1] == "delete"


def test_unreachable_timeout_spans_rescheduled_pokes() -> None:
    store = StateStore()
    store.values["posthog_unreachable_since"] = {"try": 1, "since": time.time() - 600}
    with pytest.raises(PostHogUnreachableError, match="unreachable_timeout=300s"):
        _rescheduled_poke(FakePostHog().backfill(http_error(503)), store, 5, unreachable_timeout=300)


def test_an_earlier_trys_outage_is_not_carried_into_a_retry() -> None:
    store = StateStore()
    store.values["posthog_unreachable_since"] = {"try": 0, "since": time.time() - 600}
    assert (
        _rescheduled_poke(FakePostHog().backfill(http_error(503)), store, 1, unreachable_timeout=300)[0]
        is False
    )
    assert store.values["posthog_unreachable_since"]["try"] == 1
