"""A deferred wait logs each progress state once, like the worker's loop (the triggerer's lines end up in the
task log too)."""

from __future__ import annotations

from typing import Any
from unittest import mock

from airflow_provider_posthog.triggers.batch_export import (
    PostHogBackfillTrigger,
    PostHogBatchExportRunTrigger,
)

EXPORT = "0190-export"
BACKFILL = "0190-backfill"


def _running(finished: int, factories: Any) -> Any:
    progress = {"total_runs": 12, "finished_runs": finished, "progress": finished / 12}
    return factories.backfill("Running", progress=progress)


def _lines(log: mock.MagicMock) -> list[str]:
    return [c.args[0] % c.args[1:] for c in log.info.call_args_list]


async def test_the_trigger_logs_each_backfill_state_once(factories: Any) -> None:
    hook = mock.MagicMock()
    states = [_running(2, factories)] * 3 + [_running(3, factories)] * 3 + [factories.backfill("Completed")]
    hook.get_backfill = mock.AsyncMock(side_effect=states)
    hook.list_backfill_runs = mock.AsyncMock(return_value=[factories.run("Completed")])
    trigger = PostHogBackfillTrigger(batch_export_id=EXPORT, backfill_id=BACKFILL, poll_interval=0.001)
    trigger._hook = lambda: hook  # type: ignore[method-assign]
    trigger._log = log = mock.MagicMock()
    events = [event async for event in trigger.run()]
    assert events[0].payload["status"] == "success"
    assert hook.get_backfill.await_count == len(states)
    assert _lines(log) == [
        f"Backfill {BACKFILL} is Running (2/12 runs finished).",
        f"Backfill {BACKFILL} is Running (3/12 runs finished).",
    ]


async def test_the_trigger_logs_a_run_state_once(factories: Any) -> None:
    hook = mock.MagicMock()
    hook.get_run = mock.AsyncMock(side_effect=[factories.run("Running")] * 4 + [factories.run("Completed")])
    trigger = PostHogBatchExportRunTrigger(batch_export_id=EXPORT, run_id="run-1", poll_interval=0.001)
    trigger._hook = lambda: hook  # type: ignore[method-assign]
    trigger._log = log = mock.MagicMock()
    events = [event async for event in trigger.run()]
    assert events[0].payload["status"] == "success"
    assert _lines(log) == ["Run run-1 is Running."]
