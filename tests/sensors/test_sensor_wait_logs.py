"""What a sensor's log says while it pokes: the PostHog tab of what it waits on, once, and each progress state
once per process. In ``mode="reschedule"`` every poke is a new process (a new sensor instance), so each poke
logs its state once: that is the heartbeat there."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor, PostHogBatchExportRunSensor

EXPORT = "0190-export"
BACKFILL = "0190-backfill"
UI = f"https://ph.test/project/1/pipeline/batch-exports/{EXPORT}"


def _sensor(cls: type, hook: mock.MagicMock, **kwargs: Any) -> tuple[Any, mock.MagicMock]:
    sensor = cls(task_id="wait", batch_export_id=EXPORT, poke_interval=0, timeout=60, **kwargs)
    sensor.__dict__["hook"] = hook
    log = mock.MagicMock()
    sensor._cached_logger = log
    return sensor, log


def _hook(**attrs: Any) -> mock.MagicMock:
    hook = mock.MagicMock()
    hook.ui_url.side_effect = lambda export_id, tab=None: f"{UI}?tab={tab}" if tab else UI
    for name, value in attrs.items():
        setattr(hook, name, value)
    return hook


def _lines(log: mock.MagicMock) -> list[str]:
    return [c.args[0] % c.args[1:] for c in log.info.call_args_list]


def _running(finished: int, factories: Any) -> Any:
    progress = {"total_runs": 4, "finished_runs": finished, "progress": finished / 4}
    return factories.backfill("Running", progress=progress)


def test_poking_logs_the_backfills_tab_once_and_each_state_once(factories: Any) -> None:
    states = [_running(1, factories)] * 3 + [_running(2, factories)] * 2
    sensor, log = _sensor(
        PostHogBackfillSensor, _hook(get_backfill=mock.Mock(side_effect=states)), backfill_id=BACKFILL
    )
    assert [sensor.poke({"ti": mock.MagicMock()}) for _ in states] == [False] * 5
    lines = _lines(log)
    assert [line for line in lines if "runs finished" in line] == [
        f"Backfill {BACKFILL} is Running (1/4 runs finished).",
        f"Backfill {BACKFILL} is Running (2/4 runs finished).",
    ]
    link = (
        f"Waiting for backfill {BACKFILL} of batch export {EXPORT}; follow it in PostHog: {UI}?tab=backfills"
    )
    assert lines.count(link) == 1


def test_a_run_sensor_links_the_runs_tab(factories: Any) -> None:
    hook = _hook(get_run=mock.Mock(return_value=factories.run("Running")))
    sensor, log = _sensor(PostHogBatchExportRunSensor, hook, run_id="run-1")
    assert sensor.poke({"ti": mock.MagicMock()}) is False
    assert sensor.poke({"ti": mock.MagicMock()}) is False
    lines = _lines(log)
    assert f"Waiting for run run-1 of batch export {EXPORT}; follow it in PostHog: {UI}?tab=runs" in lines
    assert lines.count("Run run-1 is Running.") == 1


def test_reschedule_mode_logs_the_state_once_per_poke(factories: Any) -> None:
    """Each reschedule poke runs a fresh instance: its one line is the heartbeat of that mode."""
    logs = []
    for _ in range(2):
        hook = _hook(get_backfill=mock.Mock(return_value=_running(1, factories)))
        sensor, log = _sensor(PostHogBackfillSensor, hook, backfill_id=BACKFILL, mode="reschedule")
        assert sensor.poke({"ti": mock.MagicMock()}) is False
        assert sensor.poke({"ti": mock.MagicMock()}) is False  # within one process: not repeated
        logs.append([line for line in _lines(log) if "runs finished" in line])
    assert logs == [[f"Backfill {BACKFILL} is Running (1/4 runs finished)."]] * 2


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_an_empty_param_fails_the_sensor_naming_it(mode: str) -> None:
    from airflow.sdk import DAG

    from airflow_provider_posthog.exceptions import PostHogConfigError

    with DAG("sensor_templates", schedule=None):
        sensor = PostHogBackfillSensor(
            task_id="wait", batch_export_id=EXPORT, backfill_id="{{ params.backfill_id }}", mode=mode
        )
    sensor.render_template_fields({"params": {"backfill_id": ""}, "var": {"value": None}})
    with pytest.raises(
        PostHogConfigError, match=r"backfill_id rendered empty .* param 'backfill_id' is empty"
    ):
        sensor.execute({"ti": mock.MagicMock()})
