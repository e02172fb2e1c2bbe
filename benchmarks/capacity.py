"""Triggerer capacity: N real trigger instances waiting concurrently in one asyncio event loop.

This is the *trigger process* of one measurement (``python -m benchmarks.capacity --contender ours --n 1000
...``); ``benchmarks.run`` starts the matching server (``benchmarks.servers``) in another process first and
passes its connection through ``AIRFLOW_CONN_*`` and its CA through ``SSL_CERT_FILE``. Like Airflow's
triggerer, one task per trigger iterates ``trigger.run()`` on the default asyncio loop; starts are spread
evenly over the first poll interval, as tasks deferring at random times would be. Every trigger waits on its
own remote job, which stays "running" for the whole measurement, so any event a trigger yields is counted as
an error.

Measured, with the loop's own clock:

* polls: every ``asyncio.sleep(d)`` with ``d >= poll_interval / 2`` that a trigger task makes ends one poll
  (all three triggers poll, then ``asyncio.sleep(self.poll_interval)``);
* CPU: ``time.process_time()`` (user + system, all threads) per poll-interval window;
* memory: RSS before the triggers exist, and the peak (``VmHWM``, reset first) while they wait;
* event-loop lag: how late a 100 ms heartbeat wakes up.

When the time is up, finishing polls may complete (their next sleep never returns), then every task is
cancelled: no request is in flight when the server's request log is read. Results go to ``--out`` as JSON.
Everything is bounded in time: the run lasts ``cycles * poll_interval`` plus a drain of at most 20 s; if the
loop is so blocked that it cannot stop on time (a trigger doing blocking I/O), a watchdog thread writes the
figures measured so far (``overrun``) and ends the process 40 s after the run's end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

CONN_IDS = {"ours": "posthog_bench", "dbt": "dbt_bench", "airbyte": "airbyte_bench"}
DRAIN_SECONDS = 20.0
WATCHDOG_GRACE = 40.0  # past the run's end: drain (20 s) + cancel + margin
HEARTBEAT = 0.1


def read_status_kb(field_name: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5), so the peak covers only the waits."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# ----------------------------------------------------------------------------------------- trigger factories


def make_triggers(contender: str, targets: list[Any], poll_interval: float) -> list[Any]:
    """Build one trigger per target exactly as a task would defer it (plain kwargs, far deadline)."""
    end_time = time.time() + 86_400
    conn_id = CONN_IDS[contender]
    if contender == "ours":
        from benchmarks.posthog_targets import make_trigger

        return [make_trigger(target, conn_id, poll_interval, end_time) for target in targets]
    if contender == "dbt":
        from airflow.providers.dbt.cloud.triggers.dbt import DbtCloudRunJobTrigger

        return [
            DbtCloudRunJobTrigger(
                conn_id=conn_id, run_id=int(t), end_time=end_time, poll_interval=poll_interval, account_id=1
            )
            for t in targets
        ]
    if contender == "airbyte":
        from airflow.providers.airbyte.triggers.airbyte import AirbyteSyncTrigger

        return [
            AirbyteSyncTrigger(job_id=int(t), conn_id=conn_id, end_time=end_time, poll_interval=poll_interval)
            for t in targets
        ]
    raise ValueError(f"unknown contender {contender!r}")


def preimport(contender: str) -> None:
    """Import what the first poll would import lazily, so that module memory is not counted per trigger."""
    if contender == "ours":
        from benchmarks.posthog_targets import preimport as ours_preimport

        ours_preimport()
    elif contender == "dbt":
        import aiohttp  # noqa: F401
        from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook  # noqa: F401
    elif contender == "airbyte":
        import airbyte_api  # noqa: F401
        from airflow.providers.airbyte.hooks.airbyte import AirbyteHook  # noqa: F401


# ---------------------------------------------------------------------------------------------------- harness


@dataclass
class Harness:
    """Counters shared by the patched sleep, the heartbeat and the trigger tasks."""

    poll_interval: float
    polls: int = 0
    polls_by_task: Counter[str] = field(default_factory=Counter)
    frozen: bool = False
    sleeping: set[str] = field(default_factory=set)
    lags: list[tuple[float, float]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)


def install_poll_counter(harness: Harness) -> Callable[[float], Coroutine[Any, Any, None]]:
    """Replace ``asyncio.sleep`` so poll-interval sleeps of trigger tasks are counted; return the original."""
    original = asyncio.sleep

    async def counting_sleep(delay: float, result: Any = None) -> Any:
        task = asyncio.current_task()
        name = task.get_name() if task is not None else ""
        if name.startswith("trigger-") and delay >= harness.poll_interval / 2:
            harness.polls += 1
            harness.polls_by_task[name] += 1
            harness.sleeping.add(name)
            try:
                if harness.frozen:
                    await asyncio.Event().wait()  # the measurement is over: this trigger polls no more
                return await original(delay, result)
            finally:
                harness.sleeping.discard(name)
        return await original(delay, result)

    asyncio.sleep = counting_sleep
    return original


async def heartbeat(harness: Harness, sleep: Callable[[float], Coroutine[Any, Any, None]]) -> None:
    """Record how late a 100 ms timer fires: the event-loop lag every trigger's wake-up suffers."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await sleep(HEARTBEAT)
        now = loop.time()
        harness.lags.append((now, max(0.0, now - start - HEARTBEAT)))


async def run_one(harness: Harness, trigger: Any) -> None:
    """What the triggerer does per trigger: iterate ``run()``. Jobs never finish, so any event is an error."""
    try:
        async for event in trigger.run():
            payload = getattr(event, "payload", event)
            harness.events.append(payload if isinstance(payload, dict) else {"payload": repr(payload)})
            break
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        harness.exceptions.append(f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await trigger.cleanup()


@dataclass
class Timeline:
    """What one measurement recorded besides the counters: clock/CPU/poll boundaries, memory, starts."""

    contender: str
    n: int
    poll_interval: float
    cycles: int
    construct_cpu_s: float
    rss_before_kb: int
    t0: float = 0.0
    started: int = 0
    boundaries: list[tuple[float, float, int]] = field(default_factory=list)
    rss_samples: list[int] = field(default_factory=list)
    polls_in_window: int = 0
    peak_rss_kb: int = 0
    in_flight_at_cancel: int | None = None
    overrun: bool = False


def build_result(harness: Harness, tl: Timeline) -> dict[str, Any]:
    """The JSON figures of a run (also called by the watchdog thread on an overrun, from partial data)."""
    boundaries = list(tl.boundaries)
    lags_all = list(harness.lags)
    windows = []
    for (ta, ca, pa), (tb, cb, pb) in itertools.pairwise(boundaries):
        lags = [lag for (t, lag) in lags_all if ta < t <= tb]
        windows.append(
            {
                "seconds": tb - ta,
                "cpu_s": cb - ca,
                "polls": pb - pa,
                "cpu_ms_per_poll": (cb - ca) * 1000 / (pb - pa) if pb > pa else None,
                "lag_p50_ms": percentile(lags, 50) * 1000,
                "lag_p99_ms": percentile(lags, 99) * 1000,
                "lag_max_ms": max(lags, default=0.0) * 1000,
            }
        )
    all_lags = [lag for (_, lag) in lags_all]
    per_task = [harness.polls_by_task.get(f"trigger-{i}", 0) for i in range(tl.n)]
    events = list(harness.events)
    event_statuses = Counter(str(e.get("status")) for e in events)
    peak = tl.peak_rss_kb or read_status_kb("VmHWM")
    return {
        "contender": tl.contender,
        "n": tl.n,
        "poll_interval": tl.poll_interval,
        "cycles": tl.cycles,
        "started": tl.started,
        "overrun": tl.overrun,
        "construct_cpu_ms_per_trigger": tl.construct_cpu_s * 1000 / tl.n,
        "rss_before_mb": tl.rss_before_kb / 1024,
        "peak_rss_mb": peak / 1024,
        "rss_per_trigger_kb": (peak - tl.rss_before_kb) / tl.n,
        "waiting_triggers": sum(1 for p in per_task if p > 0),
        "rss_per_waiting_trigger_kb": (peak - tl.rss_before_kb) / max(1, sum(1 for p in per_task if p > 0)),
        "rss_samples_mb": [s / 1024 for s in tl.rss_samples],
        "polls_in_window": tl.polls_in_window or harness.polls,
        "polls_total": harness.polls,
        "polls_expected": tl.n * tl.cycles,
        "polls_per_trigger_min": min(per_task, default=0),
        "polls_per_trigger_max": max(per_task, default=0),
        "in_flight_at_cancel": tl.in_flight_at_cancel,
        "cpu_s_total": boundaries[-1][1] - boundaries[0][1] if boundaries else 0.0,
        "windows": windows,
        "lag_p50_ms": percentile(all_lags, 50) * 1000,
        "lag_p99_ms": percentile(all_lags, 99) * 1000,
        "lag_max_ms": max(all_lags, default=0.0) * 1000,
        "heartbeats": len(all_lags),
        "events": len(events),
        "event_statuses": dict(event_statuses),
        "event_samples": [str(e.get("message", e))[:300] for e in events[:3]],
        "exceptions": len(harness.exceptions),
        "exception_samples": harness.exceptions[:3],
        "wall_s": (boundaries[-1][0] - tl.t0) if boundaries else 0.0,
    }


def start_watchdog(harness: Harness, tl: Timeline, out: Path, seconds: float) -> threading.Timer:
    """If the loop is so blocked that the run cannot end on time, write what was measured and exit."""

    def fire() -> None:
        tl.overrun = True
        tl.boundaries.append((time.monotonic(), time.process_time(), harness.polls))
        out.write_text(json.dumps(build_result(harness, tl), indent=1))
        print(
            "watchdog: the event loop overran the run; partial figures written",
            file=sys.__stdout__,
            flush=True,
        )
        os._exit(0)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


async def measure(
    contender: str, targets: list[Any], poll_interval: float, cycles: int, out: Path
) -> dict[str, Any]:
    harness = Harness(poll_interval=poll_interval)
    real_sleep = install_poll_counter(harness)
    n = len(targets)
    loop = asyncio.get_running_loop()

    gc.collect()
    rss_before_kb = read_status_kb("VmRSS")
    cpu_construct = time.process_time()
    triggers = make_triggers(contender, targets, poll_interval)
    tl = Timeline(
        contender=contender,
        n=n,
        poll_interval=poll_interval,
        cycles=cycles,
        construct_cpu_s=time.process_time() - cpu_construct,
        rss_before_kb=rss_before_kb,
    )
    reset_peak_rss()

    beat = asyncio.create_task(heartbeat(harness, real_sleep), name="heartbeat")
    tasks: list[asyncio.Task[None]] = []
    tl.t0 = t0 = loop.time()
    tl.boundaries.append((t0, time.process_time(), 0))
    run_until = t0 + cycles * poll_interval
    watchdog = start_watchdog(harness, tl, out, cycles * poll_interval + WATCHDOG_GRACE)

    # Start triggers evenly over the first interval, checking the clock between batches of starts.
    spacing = poll_interval / n
    next_boundary = t0 + poll_interval
    while loop.time() < run_until:
        now = loop.time()
        due = min(n, int((now - t0) / spacing) + 1)
        while tl.started < due:
            index = tl.started
            tasks.append(asyncio.create_task(run_one(harness, triggers[index]), name=f"trigger-{index}"))
            tl.started += 1
        if now >= next_boundary:
            tl.boundaries.append((now, time.process_time(), harness.polls))
            tl.rss_samples.append(read_status_kb("VmRSS"))
            next_boundary += poll_interval
        wait = 0.01 if tl.started < n else min(0.25, max(0.0, next_boundary - now))
        await real_sleep(wait)
    tl.boundaries.append((loop.time(), time.process_time(), harness.polls))
    tl.polls_in_window = harness.polls
    tl.peak_rss_kb = read_status_kb("VmHWM")

    # Drain: let polls in flight finish (their next sleep blocks forever), then cancel everything.
    harness.frozen = True
    drain_deadline = loop.time() + DRAIN_SECONDS
    while loop.time() < drain_deadline:
        active = [t for t in tasks if not t.done() and t.get_name() not in harness.sleeping]
        if not active:
            break
        await real_sleep(0.05)
    tl.in_flight_at_cancel = sum(1 for t in tasks if not t.done() and t.get_name() not in harness.sleeping)
    for task in [*tasks, beat]:
        task.cancel()
    await asyncio.gather(*tasks, beat, return_exceptions=True)
    watchdog.cancel()
    return build_result(harness, tl)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One triggerer-capacity measurement (see module docstring).")
    parser.add_argument("--contender", choices=sorted(CONN_IDS), required=True)
    parser.add_argument("--targets", required=True, help="JSON file with the list of target ids")
    parser.add_argument("--poll-interval", type=float, required=True)
    parser.add_argument("--cycles", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", default=None, help="write a pyinstrument text profile of the run here")
    args = parser.parse_args(argv)

    targets = json.loads(Path(args.targets).read_text())
    import airflow.sdk  # noqa: F401  (the triggerer process has Airflow loaded before any trigger)
    from airflow.triggers.base import BaseTrigger  # noqa: F401

    preimport(args.contender)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
    result = asyncio.run(measure(args.contender, targets, args.poll_interval, args.cycles, Path(args.out)))
    if profiler is not None:
        profiler.stop()
        from pyinstrument.renderers import ConsoleRenderer

        session = profiler.last_session
        assert session is not None
        session.save(args.profile + ".pyisession")
        tree = ConsoleRenderer(unicode=True, color=False).render(session)
        flat = ConsoleRenderer(unicode=True, color=False, flat=True, show_all=True).render(session)
        Path(args.profile).write_text(tree + "\n\nSelf time by function (all frames):\n" + flat)
    result["pid"] = os.getpid()
    Path(args.out).write_text(json.dumps(result, indent=1))
    summary = {k: result[k] for k in ("contender", "n", "polls_total", "events", "exceptions", "lag_p99_ms")}
    print(json.dumps(summary), file=sys.__stdout__, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
