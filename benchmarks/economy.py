"""API economy: how many PostHog requests our waits cost, against the minimum for the same information.

Runs in one process against the emulator over HTTP on 127.0.0.1 and counts requests from its request log.
Waits are real (operators, sensors and triggers as a task runs them: ``execute``, then on ``TaskDeferred`` the
trigger's first event and the resume method), with time scaled down by ``SCALE``: a 60 s poll interval becomes
``60 / SCALE`` s and emulated runs last ``REAL_RUN_SECONDS / SCALE`` s, so the number of polls, and therefore
of requests, is what the same wait costs at full scale. The minimum is 1 create (where the wait creates
anything) + 1 poll per started poll interval of the remote job's duration (``ceil(duration / poll)``).

Scenarios: a backfill of 24 hourly runs waited sync and deferred; a run sensor over one day of hourly runs (24
hourly DAG runs, each waiting for its hour's PostHog run, poke mode and deferrable); one hour of 100
concurrent deferred waits on one export, alone and with a prototype of poll sharing; and the rate-limit story:
500 concurrent deferred waits on one key under the 480/minute limit, in real time, counting 429s and failed
waits.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

SCALE = 600.0  # 60 s of poll interval -> 0.1 s
POLL_REAL = 60.0
REAL_RUN_SECONDS = 120.0  # an hourly export run: ~2 minutes
SENSOR_RUN_LATENCY = 300.0  # an hourly run lands ~5 minutes after its interval ends
UTC = dt.timezone.utc


class FakeTI:
    """The little of a TaskInstance our operators touch outside a real task run: XCom pushes."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context() -> dict[str, Any]:
    ti = FakeTI()
    return {"ti": ti, "task_instance": ti}


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise RuntimeError("trigger ended without an event")


def run_task(op: Any) -> Any:
    """``execute``; on deferral, the trigger in an event loop, then the resume method with its event."""
    from airflow_provider_posthog.compat import TaskDeferred

    ctx = context()
    try:
        return op.execute(ctx)
    except TaskDeferred as deferred:
        event = asyncio.run(first_event(deferred.trigger))
        return getattr(op, deferred.method_name)(ctx, event=event, **(deferred.kwargs or {}))


def hour(day: dt.datetime, h: int) -> tuple[dt.datetime, dt.datetime]:
    start = day + dt.timedelta(hours=h)
    return start, start + dt.timedelta(hours=1)


# ------------------------------------------------------------------------------------------------ scenarios


def backfill_scenario(emu: Any, deferrable: bool) -> dict[str, Any]:
    """PostHogCreateBackfillOperator over 24 hourly runs, waited to completion."""
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    c = emu.control
    poll = POLL_REAL / SCALE
    export = c.seed_export(name=f"economy-backfill-{deferrable}", interval="hour")
    day = dt.datetime(2026, 1, 5, tzinfo=UTC)
    c.clear_request_log()
    t0 = c.now()
    op = PostHogCreateBackfillOperator(
        task_id=f"backfill_{'deferred' if deferrable else 'sync'}",
        batch_export_id=str(export["id"]),
        start_at=day,
        end_at=day + dt.timedelta(days=1),
        deferrable=deferrable,
        poll_interval=poll,
    )
    backfill_id = run_task(op)
    requests = len(c.request_log)
    backfill = c.get_backfill(str(backfill_id))
    duration = (backfill["finished_at"] - t0).total_seconds()
    polls_min = math.ceil(duration / poll)
    return {
        "name": f"Backfill of 24 hourly runs, {'deferred' if deferrable else 'sync'}, poll 60 s",
        "requests": requests,
        "minimum": 1 + polls_min,
        "notes": f"backfill took {duration * SCALE / 60:.0f} min at full scale; " + breakdown(c.request_log),
    }


def sensor_scenario(emu: Any, deferrable: bool) -> dict[str, Any]:
    """24 hourly DAG runs, each with PostHogBatchExportRunSensor waiting for its hour's run to land."""
    from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

    c = emu.control
    poll = POLL_REAL / SCALE
    c.configure(run_duration=SENSOR_RUN_LATENCY / SCALE)
    export = c.seed_export(name=f"economy-sensor-{deferrable}", interval="hour")
    day = dt.datetime(2026, 1, 6, tzinfo=UTC)
    total = 0
    minimum = 0
    entries: list[Any] = []
    for h in range(24):
        start, end = hour(day, h)
        c.clear_request_log()
        t0 = c.now()
        run = c.seed_run(str(export["id"]), start, end, status="Starting", created_at=t0)
        sensor = PostHogBatchExportRunSensor(
            task_id=f"wait_{h}",
            batch_export_id=str(export["id"]),
            data_interval_start=start,
            data_interval_end=end,
            poke_interval=poll,
            mode="poke",
            deferrable=deferrable,
            timeout=3600,
        )
        run_task(sensor)
        entries += c.request_log
        total += len(c.request_log)
        finished = c.get_run(str(run["id"]))["finished_at"]
        minimum += max(1, math.ceil((finished - t0).total_seconds() / poll))
    c.configure(run_duration=REAL_RUN_SECONDS / SCALE)
    return {
        "name": "Run sensor over one day of hourly runs (24 sensors), "
        f"{'deferrable' if deferrable else 'poke'}, poke 60 s",
        "requests": total,
        "minimum": minimum,
        "notes": "each hour's run lands ~5 min after the interval ends; " + breakdown(entries),
    }


def breakdown(log: list[Any]) -> str:
    """``GET backfills x25, POST backfills x1 ...`` from the request log (ids collapsed)."""
    counts: dict[str, int] = {}
    for entry in log:
        parts = [p for p in str(entry.path).split("/") if p]
        kind = next(
            (p for p in reversed(parts) if p in {"backfills", "runs", "logs", "batch_exports"}), "other"
        )
        tail = parts[-1] if parts else ""
        if tail not in {"backfills", "runs", "logs", "batch_exports"} and kind != "other":
            kind = kind.rstrip("s") + " detail"
        key = f"{entry.method} {kind}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


async def hour_of_waits(emu: Any, n: int, polls_per_wait: int, shared: bool) -> dict[str, Any]:
    """N deferred interval waits on one export, each stopped after exactly ``polls_per_wait`` polls."""
    from airflow_provider_posthog.triggers.batch_export import PostHogBatchExportRunTrigger

    c = emu.control
    poll = POLL_REAL / SCALE
    c.configure(run_duration=10**9)
    export = c.seed_export(name=f"economy-hour-{shared}", interval="hour")
    start, end = hour(dt.datetime(2026, 1, 7, tzinfo=UTC), 3)
    c.seed_run(str(export["id"]), start, end, status="Running")
    c.clear_request_log()

    original_sleep = asyncio.sleep
    polls: dict[str, int] = {}
    done = asyncio.Event()

    async def counting_sleep(delay: float, result: Any = None) -> Any:
        task = asyncio.current_task()
        name = task.get_name() if task else ""
        if name.startswith("wait-") and delay >= poll / 2:
            polls[name] = polls.get(name, 0) + 1
            if polls[name] >= polls_per_wait:
                await done.wait()  # this wait's hour is over
        return await original_sleep(delay, result)

    restore = share_polls(ttl=poll) if shared else None
    asyncio.sleep = counting_sleep
    try:
        triggers = [
            PostHogBatchExportRunTrigger(
                batch_export_id=str(export["id"]),
                data_interval_start=start.isoformat(),
                data_interval_end=end.isoformat(),
                poll_interval=poll,
            )
            for _ in range(n)
        ]
        events: list[Any] = []

        async def one(trigger: Any) -> None:
            async for event in trigger.run():
                events.append(event.payload)
                return

        tasks = []
        for i, trigger in enumerate(triggers):
            tasks.append(asyncio.create_task(one(trigger), name=f"wait-{i}"))
            await original_sleep(poll / n)  # deferred at different moments, as real tasks are
        deadline = time.monotonic() + 120
        while sum(polls.values()) < n * polls_per_wait and time.monotonic() < deadline and not events:
            await original_sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        asyncio.sleep = original_sleep
        if restore:
            restore()
    c.configure(run_duration=REAL_RUN_SECONDS / SCALE)
    requests = len(c.request_log)
    total_polls = sum(polls.values())
    return {
        "name": f"One hour of {n} concurrent deferred waits on one export"
        + (" **with shared polls (prototype)**" if shared else "")
        + ", poll 60 s",
        "requests": requests,
        "minimum": polls_per_wait,
        "notes": f"{total_polls} polls by {len(polls)} waits "
        f"({requests / max(1, total_polls):.2f} requests/poll); minimum = one poll of the export per "
        f"interval, shared by all waits; events: {len(events)}",
    }


def share_polls(ttl: float) -> Any:
    """Prototype: coalesce identical GETs of one event loop (single flight + a cache younger than ``ttl``).

    Patches ``PostHogAsyncHook._send`` (one HTTP exchange with retries) in this process only; returns a
    function that undoes it. Key: base URL, API key, path and query, so only identical reads are shared.
    """
    from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook

    cls: Any = PostHogAsyncHook
    original = cls._send
    cache: dict[Any, tuple[float, Any]] = {}
    inflight: dict[Any, asyncio.Future[Any]] = {}

    async def shared_send(self: Any, spec: Any, settings: Any, *args: Any, **kwargs: Any) -> Any:
        if spec.method != "GET":
            return await original(self, spec, settings, *args, **kwargs)
        key = (settings.base_url, settings.api_key, spec.api_path(settings.project_id), spec.params, spec.url)
        hit = cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        pending = inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            result = await original(self, spec, settings, *args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters re-raise it themselves
            raise
        else:
            cache[key] = (time.monotonic(), result)
            future.set_result(result)
            return result
        finally:
            inflight.pop(key, None)

    cls._send = shared_send

    def restore() -> None:
        cls._send = original

    return restore


async def rate_limit_story(emu: Any, n: int, run_seconds: float) -> tuple[list[str], dict[str, Any]]:
    """N deferred backfill waits on one key, real time, 480/minute limit on: failures and 429s."""
    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

    c = emu.control
    c.configure(run_duration=run_seconds, rate_limit_per_minute=480)
    base = dt.datetime(2026, 2, 1, tzinfo=UTC)
    waits = []
    for i in range(n):  # one export each: 500 teams' DAGs backfilling their own export with one key
        export = c.seed_export(name=f"economy-rate-limit-{i}", interval="hour")
        start, end = hour(base, i)
        backfill = c.seed_backfill(str(export["id"]), start, end, status="Running", simulate=True)
        waits.append((str(export["id"]), str(backfill["id"])))
    c.clear_request_log()
    t0 = time.monotonic()
    triggers = [
        PostHogBackfillTrigger(
            batch_export_id=export_id,
            backfill_id=backfill_id,
            poll_interval=POLL_REAL,
            end_time=time.time() + 900,
        )
        for export_id, backfill_id in waits
    ]
    tasks = [asyncio.create_task(first_event(t)) for t in triggers]
    await asyncio.wait(tasks, timeout=300)
    wall = time.monotonic() - t0
    for task in tasks:
        task.cancel()
    results: list[Any] = await asyncio.gather(*tasks, return_exceptions=True)
    c.configure(rate_limit_per_minute=None, run_duration=REAL_RUN_SECONDS / SCALE)
    statuses: dict[str, int] = {}
    for r in results:
        key = f"exception {type(r).__name__}" if isinstance(r, BaseException) else str(r.get("status"))
        statuses[key] = statuses.get(key, 0) + 1
    log = c.request_log
    throttled = sum(1 for e in log if int(e.status) == 429)
    failed = n - statuses.get("success", 0)
    data = {
        "waits": n,
        "succeeded": statuses.get("success", 0),
        "failed": failed,
        "throttled": throttled,
        "requests": len(log),
        "wall_s": wall,
    }
    return [
        "### Rate limits: 500 concurrent waits on one key",
        "",
        f"{n} deferred backfill waits (`PostHogBackfillTrigger`, poll 60 s, one event loop, all deferred at "
        "the same moment: the worst case), each on its own export, all with one API key, with the "
        "emulator's 480/minute limit on (DRF burst throttle semantics, `Retry-After` sent), each backfill "
        "finishing "
        f"~{run_seconds:.0f} s after the start. Real time, not scaled: {wall:.0f} s.",
        "",
        f"- Waits completed successfully: {statuses.get('success', 0)} of {n}; "
        f"failed or errored: **{failed}** ({statuses}).",
        f"- Requests: {len(log)}; answered 429: **{throttled}** — "
        + (
            "all absorbed by the hook's retry policy (honours `Retry-After`); none surfaced as a failed wait."
            if failed == 0
            else f"{failed} waits did not succeed: see the statuses above."
        ),
    ], data


# --------------------------------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="API economy benchmark (see module docstring).")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    from airflow_provider_posthog.emulator import EmulatorSettings, PostHogEmulator

    settings = EmulatorSettings(run_duration=REAL_RUN_SECONDS / SCALE, backfill_row_delay=0.0)
    result: dict[str, Any] = {
        "preamble": [
            "Requests counted in the emulator's request log (HTTP on 127.0.0.1). Time is scaled down "
            f"{SCALE:g}x (a 60 s poll runs as 0.1 s, a 2-minute export run as 0.2 s), so the counts are "
            "those of the same waits at full scale. Minimum = 1 create (if the wait creates anything) + 1 "
            "poll per started poll interval of the remote job's duration.",
        ],
        "scenarios": [],
    }
    with PostHogEmulator(settings, host="127.0.0.1", port=0) as emu:
        os.environ["AIRFLOW_CONN_POSTHOG_DEFAULT"] = emu.airflow_conn_json()
        for deferrable in (False, True):
            result["scenarios"].append(backfill_scenario(emu, deferrable))
            print(result["scenarios"][-1], flush=True)
        for deferrable in (False, True):
            result["scenarios"].append(sensor_scenario(emu, deferrable))
            print(result["scenarios"][-1], flush=True)
        polls_per_wait = 10 if args.quick else 60
        n_waits = 20 if args.quick else 100
        for shared in (False, True):
            try:
                row = asyncio.run(hour_of_waits(emu, n_waits, polls_per_wait, shared))
            except Exception as exc:
                row = {
                    "name": f"One hour of {n_waits} waits (shared={shared})",
                    "requests": 0,
                    "minimum": None,
                    "notes": f"failed: {type(exc).__name__}: {exc}",
                }
            result["scenarios"].append(row)
            print(row, flush=True)
        if args.quick:
            result["rate_limit"] = ["### Rate limits", "", "Skipped in `--quick` (it runs in real time)."]
        else:
            result["rate_limit"], result["rate_limit_data"] = asyncio.run(
                rate_limit_story(emu, 500, run_seconds=45.0)
            )
        print(result["rate_limit"], flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
