"""A deferred wait logs each progress state once, and PostHog going away and coming back once each, in the
same words as the worker's paths (the triggerer's lines end up in the task log too)."""

from __future__ import annotations

import re
import time
from typing import Any
from unittest import mock

import pytest
from fake_posthog import (
    BACKFILL,
    EXPORT,
    FakePostHog,
    backfill_row,
    dropped,
    http_error,
    run_row,
    with_async_hook,
    with_hook,
)

from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor
from airflow_provider_posthog.triggers.batch_export import (
    PostHogBackfillTrigger,
    PostHogBatchExportRunTrigger,
)

UNREACHABLE = "PostHog is unreachable since"
ANSWERED = "PostHog answered again after"


def _running(finished: int) -> dict[str, Any]:
    return backfill_row(
        "Running", progress={"total_runs": 12, "finished_runs": finished, "progress": finished / 12}
    )


def _lines(log: mock.MagicMock) -> list[str]:
    """Every line logged, whatever its level."""
    return [c[1][0] % c[1][1:] for c in log.method_calls if c[0] in ("info", "warning", "error")]


def _backfill_trigger(fake: FakePostHog, **kwargs: Any) -> tuple[PostHogBackfillTrigger, mock.MagicMock]:
    trigger = PostHogBackfillTrigger(
        batch_export_id=EXPORT, backfill_id=BACKFILL, poll_interval=0.001, **kwargs
    )
    with_async_hook(trigger, fake)
    trigger._log = log = mock.MagicMock()
    return trigger, log


async def test_the_trigger_logs_each_backfill_state_once() -> None:
    fake = FakePostHog()
    fake.backfills[BACKFILL] = [_running(2)] * 3 + [_running(3)] * 3 + [backfill_row("Completed")]
    fake.run_list = [run_row("Completed")]
    trigger, log = _backfill_trigger(fake)
    events = [event async for event in trigger.run()]
    assert events[0].payload["status"] == "success"
    assert fake.paths().count(f"batch_exports/{EXPORT}/backfills/{BACKFILL}/") == 7
    assert _lines(log) == [
        f"Backfill {BACKFILL} is Running (2/12 runs finished).",
        f"Backfill {BACKFILL} is Running (3/12 runs finished).",
    ]


async def test_the_trigger_logs_a_run_state_once() -> None:
    fake = FakePostHog().run("Running", "Running", "Running", "Running", "Completed")
    trigger = PostHogBatchExportRunTrigger(batch_export_id=EXPORT, run_id="run-1", poll_interval=0.001)
    with_async_hook(trigger, fake)
    trigger._log = log = mock.MagicMock()
    events = [event async for event in trigger.run()]
    assert events[0].payload["status"] == "success"
    assert _lines(log) == ["Run run-1 is Running."]


@pytest.mark.parametrize(
    ("failure", "trouble"),
    [
        (http_error(503), "HTTP 503"),
        (dropped(), "no answer: RemoteDisconnected"),
        (http_error(429), "HTTP 429"),
    ],
    ids=["503", "dropped", "429"],
)
async def test_an_outage_is_logged_once_and_its_end_once(failure: Exception, trouble: str) -> None:
    fake = FakePostHog().backfill(*[failure] * 6, "Completed")
    fake.run_list = [run_row("Completed")]
    trigger, log = _backfill_trigger(fake, end_time=time.time() + 60)
    events = [event async for event in trigger.run()]
    assert events[0].payload["status"] == "success"
    lines = _lines(log)
    down = [line for line in lines if line.startswith(UNREACHABLE)]
    assert len(down) == 1
    assert re.fullmatch(
        rf"{UNREACHABLE} \d\d:\d\d:\d\d UTC \({trouble}\); still waiting until \d\d:\d\d:\d\d UTC\.", down[0]
    )
    assert log.warning.call_count == 1
    assert [line for line in lines if line.startswith(ANSWERED)] == [f"{ANSWERED} 0 s."]


def _clockless(lines: list[str]) -> list[str]:
    """The lines about PostHog's reachability, without the clock times and durations they quote."""
    return [
        re.sub(r"\d\d:\d\d:\d\d UTC|\d+ (s|min)\b", "<t>", line)
        for line in lines
        if line.startswith((UNREACHABLE, ANSWERED))
    ]


async def test_the_trigger_and_a_poke_sensor_say_the_same_about_an_outage() -> None:
    """One wait loop, one voice: the deferred and the poke path log the same lines for the same outage."""

    def script() -> FakePostHog:
        fake = FakePostHog().backfill("Running", http_error(503), http_error(503), dropped(), "Completed")
        fake.run_list = [run_row("Completed")]
        return fake

    trigger, trigger_log = _backfill_trigger(script(), end_time=time.time() + 60)
    assert [e.payload["status"] async for e in trigger.run()] == ["success"]

    sensor = PostHogBackfillSensor(
        task_id="wait", batch_export_id=EXPORT, backfill_id=BACKFILL, poke_interval=0, timeout=60
    )
    with_hook(sensor, script())
    sensor._cached_logger = sensor_log = mock.MagicMock()
    context = {"ti": mock.MagicMock()}
    assert [sensor.poke(context) for _ in range(5)] == [False, False, False, False, True]

    expected = [
        f"{UNREACHABLE} <t> (HTTP 503); still waiting until <t>.",
        f"{UNREACHABLE} <t> (no answer: RemoteDisconnected); still waiting until <t>.",
        f"{ANSWERED} <t>.",
    ]
    assert _clockless(_lines(trigger_log)) == expected
    assert _clockless(_lines(sensor_log)) == expected
