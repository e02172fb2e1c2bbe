"""API economy: how many PostHog requests our waits cost, against the minimum for the same information.

Runs in one process against the emulator over HTTP on 127.0.0.1 and counts requests from its request log.
Waits are real (operators, sensors and triggers as a task runs them: ``execute``, then on ``TaskDeferred`` the
trigger's first event and the resume method on a freshly built task, as Airflow resumes a deferred task), with
time scaled down: a 60 s poll interval becomes ``60 / SCALE`` s and emulated runs last ``seconds / SCALE``, so
the number of polls, and therefore of requests, is what the same wait costs at full scale.

Lineage is on, as in a deployment that uses it: every task keeps its default ``emit_asset_events=True`` and
runs with the ``outlet_events`` Airflow's task runner gives it, and when the OpenLineage provider is installed
its extractor is called on the task at start and on success, as its listener does. Their requests count.

Scenarios:

* a backfill of 24 hourly runs, waited sync and deferred, and a run sensor over one day of hourly runs (24
  sensors, each starting when its interval ends, on an export with the past day of hourly runs created an
  hour apart as PostHog's schedule creates them; poke and deferrable), against the minimum: 1 create (where
  the wait creates anything) + 1 poll per started poll interval of the remote job's duration;
* shared polls: deferred waits in one event loop for one hour (60 poll intervals), against ONE wait measured
  in the same run (a backfill wait alone in its event loop, for as many poll intervals): 100 run sensors'
  triggers on 100 intervals of one export plus that export's backfill wait; the same on 10 exports (1,000
  waits); 100 waits on the same interval of one export;
* the rate-limit story: 500 concurrent deferred waits on one key under the 480/minute limit, in real time,
  counting 429s and failed waits.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

SCALE = 600.0  # 60 s of poll interval -> 0.1 s
#: Run sensors: each poll's own latency delays the next (a wait sleeps one interval after each poll), and
#: that drift is scaled up too; at 200x tens of milliseconds per poll stay inside the half interval between
#: the run landing and the polls around it.
SENSOR_SCALE = 200.0
POLL_REAL = 60.0
REAL_RUN_SECONDS = 120.0  # an hourly export run: ~2 minutes
#: An hourly run lands 4.5 minutes after its interval ends (half an interval away from any poll, so the
#: count does not depend on a few milliseconds of timing).
SENSOR_RUN_LATENCY = 270.0
NEVER = 10.0**9  # emulated seconds: a job that stays running for the whole measurement
#: The past hours of scheduled runs an hourly export has when a run sensor's DAG run starts.
HISTORY_HOURS = 24
UTC = dt.timezone.utc
DESTINATION = {
    "type": "S3",
    "config": {"bucket_name": "bench-lake", "region": "eu-west-1", "prefix": "events/"},
}

#: Targets (requests / reference); the report prints each with met or missed.
TARGET_MINIMUM = 1.05  # backfill waits and run sensors, lineage on: at most 5 % above the minimum
TARGET_ONE_EXPORT = 2.0  # 101 waits on one export: at most 2x one wait
TARGET_TEN_EXPORTS = 20.0  # 1,000 waits on 10 exports: at most 20x one wait
TARGET_SAME_INTERVAL = 1.05  # 100 waits on one interval: about one request per poll interval


# ------------------------------------------------------------------------------------ a task run, emulated


@dataclass
class FakeTI:
    """The little of a TaskInstance our tasks and the OpenLineage extractor touch outside a real task run."""

    dag_id: str
    task_id: str
    run_id: str = "economy"
    try_number: int = 1
    map_index: int = -1
    xcom: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class Lineage:
    """Asset events and OpenLineage as Airflow's task runner and the OpenLineage listener drive them.

    ``outlet_events`` is the task runner's own accessor class; OpenLineage, when its provider is installed,
    is its ``ExtractorManager`` called on the task at start (state running) and on success, which is what
    the listener does before it emits an event.
    """

    def __init__(self) -> None:
        self.asset_events = 0
        self.openlineage_events = 0
        self.openlineage_datasets = 0
        try:
            from airflow.providers.openlineage.extractors.manager import ExtractorManager
            from airflow.utils.state import TaskInstanceState
        except ImportError:
            self.extractors: Any = None
            self.openlineage = "not installed"
        else:
            from importlib import metadata

            self.extractors = ExtractorManager()
            self.states = TaskInstanceState
            name = "apache-airflow-providers-openlineage"
            self.openlineage = f"{name} {metadata.version(name)}"

    def context(self, task: Any) -> dict[str, Any]:
        from airflow.sdk.execution_time.context import OutletEventAccessors

        ti = FakeTI(dag_id=task.dag_id, task_id=task.task_id)
        return {"ti": ti, "task_instance": ti, "task": task, "outlet_events": OutletEventAccessors()}

    def _extract(self, task: Any, ctx: dict[str, Any], state: Any) -> Any:
        if self.extractors is None:
            return None
        dagrun = type("DagRun", (), {"run_id": ctx["ti"].run_id})()
        self.openlineage_events += 1
        return self.extractors.extract_metadata(dagrun, task, state, ctx["ti"])

    def started(self, task: Any, ctx: dict[str, Any]) -> None:
        if self.extractors is not None:
            self._extract(task, ctx, self.states.RUNNING)

    def succeeded(self, task: Any, ctx: dict[str, Any]) -> None:
        self.asset_events += asset_events(task, ctx)
        if self.extractors is not None:
            lineage = self._extract(task, ctx, self.states.SUCCESS)
            if lineage is not None:
                self.openlineage_datasets += len(lineage.inputs) + len(lineage.outputs)

    def describe(self, tasks: int) -> str:
        if self.extractors is None:
            openlineage = "OpenLineage provider not installed"
        else:
            openlineage = (
                f"OpenLineage ({self.openlineage}): {self.openlineage_events} extractions, "
                f"{self.openlineage_datasets} datasets"
            )
        return f"lineage on: {self.asset_events} asset events for {tasks} tasks, {openlineage}"


def asset_events(task: Any, ctx: dict[str, Any]) -> int:
    """The asset events Airflow records when the task succeeds: one per asset among its outlets, and those
    the task attached to an alias among them."""
    from airflow.sdk import Asset, AssetAlias

    events = 0
    for outlet in task.outlets:
        if isinstance(outlet, Asset):
            events += 1
        elif isinstance(outlet, AssetAlias):
            events += len(ctx["outlet_events"][outlet].asset_alias_events)
    return events


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise RuntimeError("trigger ended without an event")


def run_task(build: Callable[[], Any], lineage: Lineage) -> Any:
    """``execute``; on deferral, the trigger in an event loop, then the resume method of a task built anew
    (Airflow resumes a deferred task in a new process, from the parsed DAG)."""
    from airflow_provider_posthog.compat import TaskDeferred

    task = build()
    ctx = lineage.context(task)
    lineage.started(task, ctx)
    task.pre_execute(ctx)
    try:
        result = task.execute(ctx)
    except TaskDeferred as deferred:
        event = asyncio.run(first_event(deferred.trigger))
        task = build()
        ctx = lineage.context(task)
        lineage.started(task, ctx)
        task.pre_execute(ctx)
        result = task.resume_execution(deferred.method_name, {**(deferred.kwargs or {}), "event": event}, ctx)
    task.post_execute(ctx)  # as Airflow 3.3's task runner calls it: the context only
    lineage.succeeded(task, ctx)
    return result


def in_dag(dag_id: str, build: Callable[[], Any]) -> Callable[[], Any]:
    """``build`` inside a DAG, as a DAG file declares its tasks (the asset alias is named after the DAG)."""
    from airflow.sdk import DAG

    def built() -> Any:
        with DAG(dag_id, schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=UTC), catchup=False):
            return build()

    return built


def breakdown(log: list[Any]) -> str:
    """``GET backfill detail x73, GET backfills x3, POST backfills x1 ...`` from the request log (ids
    collapsed)."""
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


# ------------------------------------------------------------------------ one wait against its minimum


def backfill_scenario(emu: Any, deferrable: bool) -> dict[str, Any]:
    """PostHogCreateBackfillOperator over 24 hourly runs, waited to completion."""
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    c = emu.control
    poll = POLL_REAL / SCALE
    mode = "deferred" if deferrable else "sync"
    export = c.seed_export(name=f"economy-backfill-{mode}", interval="hour", destination=DESTINATION)
    day = dt.datetime(2026, 1, 5, tzinfo=UTC)
    lineage = Lineage()
    build = in_dag(
        f"economy_backfill_{mode}",
        lambda: PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_id=str(export["id"]),
            start_at=day,
            end_at=day + dt.timedelta(days=1),
            deferrable=deferrable,
            poll_interval=poll,
        ),
    )
    c.clear_request_log()
    t0 = c.now()
    backfill_id = run_task(build, lineage)
    log = c.request_log
    backfill = c.get_backfill(str(backfill_id))
    duration = (backfill["finished_at"] - t0).total_seconds()
    return {
        "name": f"Backfill of 24 hourly runs, {mode}, poll 60 s",
        "short": f"backfill wait ({mode})",
        "requests": len(log),
        "reference": 1 + math.ceil(duration / poll),
        "reference_label": "minimum: 1 create + 1 poll per interval",
        "target": TARGET_MINIMUM,
        "notes": f"backfill took {duration * SCALE / 60:.0f} min at full scale; {lineage.describe(1)}; "
        + breakdown(log),
    }


def sensor_scenario(emu: Any, deferrable: bool, hours: int) -> dict[str, Any]:
    """``hours`` hourly DAG runs, each starting when its interval ends, with PostHogBatchExportRunSensor
    waiting for the hour's PostHog run, which lands ``SENSOR_RUN_LATENCY`` after the interval ends."""
    from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

    c = emu.control
    poll = POLL_REAL / SENSOR_SCALE
    mode = "deferrable" if deferrable else "poke"
    lineage = Lineage()
    total = minimum = 0
    entries: list[Any] = []
    for hour in range(hours):
        end = dt.datetime.now(UTC)  # the DAG run starts as its interval ends
        start = end - dt.timedelta(hours=1)
        # The day compressed into minutes would put the previous hours' runs minutes apart; PostHog's
        # schedule creates them an hour apart. So each hour meets its export with the day behind it as
        # PostHog keeps it: one completed run per past hour, created as that hour ended (not counted).
        export = c.seed_export(name=f"economy-sensor-{mode}-{hour}", interval="hour", destination=DESTINATION)
        for back in range(HISTORY_HOURS, 0, -1):
            past_end = end - dt.timedelta(hours=back)
            c.seed_run(str(export["id"]), past_end - dt.timedelta(hours=1), past_end, created_at=past_end)
        build = in_dag(
            f"economy_sensor_{mode}",
            functools.partial(
                PostHogBatchExportRunSensor,
                task_id="wait_for_posthog",
                batch_export_id=str(export["id"]),
                data_interval_start=start,
                data_interval_end=end,
                poke_interval=poll,
                mode="poke",
                deferrable=deferrable,
                timeout=3600,
            ),
        )
        c.clear_request_log()
        run = c.seed_run(
            str(export["id"]),
            start,
            end,
            status="Starting",
            created_at=end,
            duration=SENSOR_RUN_LATENCY / SENSOR_SCALE,
        )
        run_task(build, lineage)
        entries += c.request_log
        total += len(c.request_log)
        finished = c.get_run(str(run["id"]))["finished_at"]
        minimum += max(1, math.ceil((finished - end).total_seconds() / poll))
    return {
        "name": f"Run sensor over {hours} hourly intervals ({hours} sensors, each starting as its interval "
        f"ends), {mode} mode, poke every 60 s",
        "short": f"run sensor ({mode})",
        "requests": total,
        "reference": minimum,
        "reference_label": "minimum: 1 poll per interval until the run landed",
        "target": TARGET_MINIMUM,
        "notes": f"each hour's run lands {SENSOR_RUN_LATENCY / 60:g} min after its interval ends; "
        f"{lineage.describe(hours)}; " + breakdown(entries),
    }


# ------------------------------------------------------------------------------------ shared polls


@dataclass(frozen=True)
class SharedCase:
    """A shared-poll scenario: ``exports`` exports, each with its waits, polled every ``poll`` real seconds
    (60 s at full scale; longer for more waits, so that the event loop keeps up)."""

    name: str
    short: str
    exports: int
    backfill_waits: int
    interval_waits: int
    same_interval: bool
    poll: float
    target: float


SHARED_CASES = (
    SharedCase(
        "100 deferred waits on one export (run sensors on 100 intervals + its backfill wait)",
        "101 waits on one export",
        exports=1, backfill_waits=1, interval_waits=100, same_interval=False, poll=1.0,
        target=TARGET_ONE_EXPORT,
    ),
    SharedCase(
        "1,000 deferred waits on 10 exports (each: run sensors on 99 intervals + its backfill wait)",
        "1,000 waits on 10 exports",
        exports=10, backfill_waits=1, interval_waits=99, same_interval=False, poll=3.0,
        target=TARGET_TEN_EXPORTS,
    ),
    SharedCase(
        "100 concurrent deferred waits on one export, all on the same interval",
        "100 waits on one interval",
        exports=1, backfill_waits=0, interval_waits=100, same_interval=True, poll=0.5,
        target=TARGET_SAME_INTERVAL,
    ),
)  # fmt: skip

#: ONE wait, alone in its event loop: what the shared-poll rows are compared with, each run with the poll of
#: the row it is compared with (``poll`` is set then).
ONE_WAIT = SharedCase(
    "One backfill wait alone (the reference of the shared-poll rows)",
    "one wait",
    exports=1, backfill_waits=1, interval_waits=0, same_interval=False, poll=0.0, target=0.0,
)  # fmt: skip


def seed_waits(c: Any, case: SharedCase) -> list[dict[str, Any]]:
    """Seed the case's exports (each with a running backfill and running runs over ``interval_waits`` hourly
    intervals, or one interval) and return its waits in the order they defer: the exports interleaved, each
    export's backfill waits first, then its run sensors' intervals oldest first, as a catch-up defers them.
    A run sensor's wait carries the export's identity, as its task defers it after a first poll that read the
    export."""
    top = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = 1 if case.same_interval else case.interval_waits
    intervals = [
        (top - dt.timedelta(hours=k + 1), top - dt.timedelta(hours=k)) for k in reversed(range(hours))
    ]
    from airflow_provider_posthog.api.models import BatchExport

    per_export = []
    for i in range(case.exports):
        export = c.seed_export(name=f"economy-shared-{i}", interval="hour", destination=DESTINATION)
        export_id = str(export["id"])
        # What a run sensor's trigger gets from its task: the task's first poll read the export.
        identity = BatchExport.from_api(export).identity()
        waits: list[dict[str, Any]] = []
        if case.backfill_waits:
            start = top - dt.timedelta(days=30)
            backfill_id = str(c.seed_backfill(export_id, start, start + dt.timedelta(days=1))["id"])
            waits += [{"batch_export_id": export_id, "backfill_id": backfill_id}] * case.backfill_waits
        for start, end in intervals:
            c.seed_run(export_id, start, end, status="Running", created_at=end, duration=NEVER)
        for k in range(case.interval_waits):
            start, end = intervals[k % hours]
            waits.append(
                {
                    "batch_export_id": export_id,
                    "data_interval_start": start.isoformat(),
                    "data_interval_end": end.isoformat(),
                    "export": identity,
                }
            )
        per_export.append(waits)
    return [w for column in zip(*per_export, strict=True) for w in column]


def shared_hour(emu: Any, case: SharedCase, intervals: int, workdir: Path) -> dict[str, Any]:
    """Seed the case, run its waits in a child process (one event loop, as a triggerer: ``loop_main``, so
    that the emulator's own work is not on the waits' loop), then read the emulator's request log."""
    from benchmarks.procs import child_env, run_child

    c = emu.control
    waits = seed_waits(c, case)
    spec = {"poll": case.poll, "intervals": intervals, "waits": waits}
    run_dir = workdir / f"shared-{case.short.replace(' ', '-').replace(',', '')}-{case.poll:g}s"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(spec))
    out = run_dir / "loop.json"
    env = child_env(run_dir, {"AIRFLOW_CONN_POSTHOG_DEFAULT": emu.airflow_conn_json()})
    c.clear_request_log()
    proc = run_child(
        "benchmarks.economy",
        ["--loop", str(run_dir / "spec.json"), "--out", str(out)],
        run_dir,
        env,
        timeout=(intervals + 1) * case.poll + 180,
        log_name="loop.log",
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"the waits' process failed (exit {proc.returncode}); see {run_dir / 'loop.log'}")
    loop = json.loads(out.read_text())
    log = c.request_log
    settled = dt.datetime.fromtimestamp(loop["settled_at"], UTC)
    later = [e for e in log if e.timestamp >= settled]
    steady = loop["steady_intervals"]
    polls, expected = loop["polls"], loop["polls_expected"]
    exports = f"{case.exports} export{'s' if case.exports > 1 else ''}"
    return {
        "name": f"{case.name}, poll 60 s (run as {case.poll:g} s) for {intervals} intervals",
        "short": case.short,
        "requests": len(log),
        "target": case.target,
        "waits": len(waits),
        "polls": polls,
        "polls_expected": expected,
        "requests_settled": len(log) - len(later),
        "requests_per_interval_after": len(later) / steady if steady > 0 else None,
        "cpu_ms_per_poll": loop["cpu_ms_per_poll"],
        "loop_lag_p99_share": loop["lag_p99_share"],
        "notes": f"{len(waits):,} wait{'s' if len(waits) > 1 else ''} ({exports}); {polls:,} polls of "
        f"{expected:,} "
        f"expected ({len(log) / max(1, polls):.3f} requests/poll); "
        + (
            f"{len(log) - len(later)} requests until every wait had polled once, then "
            f"{len(later) / steady:.1f} per poll interval; "
            if steady > 0
            else ""
        )
        + f"waits' process: {loop['cpu_ms_per_poll']:.2f} ms CPU/poll, loop lag p99 "
        f"{loop['lag_p99_share'] * 100:.0f} % of the poll interval; events {loop['events']}, errors "
        f"{len(loop['errors'])}{': ' + loop['errors'][0] if loop['errors'] else ''}; polls that failed "
        f"{len(loop['troubles'])}{' (' + loop['troubles'][0] + ')' if loop['troubles'] else ''}; non-2xx "
        f"responses {sum(1 for e in log if not 200 <= int(e.status) < 300)}; " + breakdown(log),
    }


def counting(cls: type, troubles: list[str]) -> type:
    """``cls`` with a poll counter and a record of the polls that failed (transient trouble the wait absorbs,
    or a final error) in ``troubles``: a subclass, so the trigger's own code runs unchanged."""

    class Counting(cls):  # type: ignore[valid-type,misc,unused-ignore]
        polls = 0

        async def _poll(self, *args: Any, **kwargs: Any) -> Any:
            self.polls += 1
            polled = await super()._poll(*args, **kwargs)
            if isinstance(polled, BaseException):
                troubles.append(f"{type(polled).__name__}: {polled}"[:200])
            return polled

    Counting.__name__ = cls.__name__
    return Counting


async def run_waits(spec: dict[str, Any]) -> dict[str, Any]:
    """The waits' process: every wait in one event loop, deferred at moments spread over the first poll
    interval, each built as its task defers it (``first_poll_at`` one interval later: the task polled just
    before), for ``intervals`` poll intervals; then every wait is cancelled."""
    from airflow_provider_posthog.triggers.batch_export import (
        PostHogBackfillTrigger,
        PostHogBatchExportRunTrigger,
    )

    troubles: list[str] = []
    backfill_trigger = counting(PostHogBackfillTrigger, troubles)
    run_trigger = counting(PostHogBatchExportRunTrigger, troubles)
    poll, intervals = float(spec["poll"]), int(spec["intervals"])
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    events: list[Any] = []
    errors: list[str] = []

    async def one(trigger: Any) -> None:
        try:
            async for event in trigger.run():
                events.append(event.payload)
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

    async def heartbeat() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(poll / 10)
            lags.append(max(0.0, loop.time() - before - poll / 10))

    cpu0 = time.process_time()
    beat = asyncio.create_task(heartbeat())
    window = (intervals + 0.5) * poll  # the first wait to defer polls at 1, 2, ..., ``intervals`` intervals
    t0 = loop.time()
    tasks, triggers, starts = [], [], []
    for i, wait in enumerate(spec["waits"]):
        await asyncio.sleep(max(0.0, t0 + poll * i / len(spec["waits"]) - loop.time()))
        starts.append(loop.time() - t0)
        cls = backfill_trigger if "backfill_id" in wait else run_trigger
        triggers.append(cls(**wait, poll_interval=poll, first_poll_at=time.time() + poll))
        tasks.append(asyncio.create_task(one(triggers[-1])))
    # Every wait has polled once from here on: sharing is in its steady state.
    settled = starts[-1] + poll
    settled_at = time.time() + (t0 + settled - loop.time())
    await asyncio.sleep(max(0.0, t0 + window - loop.time()))
    for task in [*tasks, beat]:
        task.cancel()
    await asyncio.gather(*tasks, beat, return_exceptions=True)
    cpu = time.process_time() - cpu0
    polls = sum(t.polls for t in triggers)
    lags.sort()
    return {
        "polls": polls,
        "polls_expected": sum(max(0, math.floor((window - s) / poll)) for s in starts),
        "settled_at": settled_at,
        "steady_intervals": (window - settled) / poll,
        "cpu_ms_per_poll": cpu * 1000 / max(1, polls),
        "lag_p99_share": (lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0) / poll,
        "events": len(events),
        "errors": errors[:3],
        "troubles": troubles[:3],
    }


def loop_main(spec_path: str, out: str) -> int:
    import airflow.sdk  # noqa: F401  (a triggerer has Airflow loaded before any trigger runs)

    result = asyncio.run(run_waits(json.loads(Path(spec_path).read_text())))
    Path(out).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------- rate limits


async def rate_limit_story(emu: Any, n: int, run_seconds: float) -> tuple[list[str], dict[str, Any]]:
    """N deferred backfill waits on one key, real time, 480/minute limit on: failures and 429s."""
    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

    c = emu.control
    c.configure(run_duration=run_seconds, rate_limit_per_minute=480)
    base = dt.datetime(2026, 2, 1, tzinfo=UTC)
    waits = []
    for i in range(n):  # one export each: 500 teams' DAGs backfilling their own export with one key
        export = c.seed_export(name=f"economy-rate-limit-{i}", interval="hour")
        start, end = base + dt.timedelta(hours=i), base + dt.timedelta(hours=i + 1)
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
        f"### Rate limits: {n} concurrent waits on one key",
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


def guarded(name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One scenario; a failure becomes a row saying so instead of losing the others' figures."""
    started = time.monotonic()
    try:
        row = make()
    except Exception as exc:
        row = {
            "name": name,
            "requests": 0,
            "reference": None,
            "notes": f"failed: {type(exc).__name__}: {exc}",
        }
    row["wall_s"] = time.monotonic() - started
    print(json.dumps(row, default=str), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="API economy benchmark (see module docstring).")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--loop", default=None, help="internal: run the waits of this shared-poll spec")
    args = parser.parse_args(argv)
    if args.loop:
        return loop_main(args.loop, args.out)

    from airflow_provider_posthog.emulator import EmulatorSettings, PostHogEmulator

    hours = 6 if args.quick else 24
    intervals = 10 if args.quick else 60
    settings = EmulatorSettings(run_duration=REAL_RUN_SECONDS / SCALE, backfill_row_delay=0.0)
    lineage = Lineage()
    result: dict[str, Any] = {
        "preamble": [
            "Requests counted in the emulator's request log (HTTP on 127.0.0.1). Time is scaled down (a 60 s "
            f"poll runs as {POLL_REAL / SCALE:g} s for the backfills, {POLL_REAL / SENSOR_SCALE:g} s for the "
            f"run sensors, a 2-minute export run as {REAL_RUN_SECONDS / SCALE:g} s; the shared-poll rows say "
            "theirs), so the counts are those of the same waits at full scale. "
            "Lineage is on: every task emits its asset event (the default `emit_asset_events=True`, with the "
            "`outlet_events` of Airflow's task runner) and "
            + (
                f"OpenLineage's extractor ({lineage.openlineage}) reads the task at start and on success, as "
                "its listener does"
                if lineage.extractors is not None
                else "**the OpenLineage provider is not installed in `.bench/venv`**, so OpenLineage's own "
                "reads are not counted"
            )
            + ". The first four rows compare with the minimum (1 create, if the wait creates anything, + 1 "
            "poll per started poll interval of the remote job's duration); the shared-poll rows with ONE "
            "wait measured in this run: a backfill wait alone in its event loop for as many poll intervals. "
            "Each wait of a shared-poll row polls one interval after it deferred (its task polled just "
            "before), as the operators and sensors defer; the waits defer at moments spread over the first "
            "interval, run sensors' intervals oldest first, as a catch-up defers them.",
        ],
        "openlineage": lineage.openlineage,
        "scenarios": [],
    }
    with PostHogEmulator(settings, host="127.0.0.1", port=0) as emu:
        os.environ["AIRFLOW_CONN_POSTHOG_DEFAULT"] = emu.airflow_conn_json()
        rows = result["scenarios"]
        for deferrable in (False, True):
            name = f"Backfill, deferrable={deferrable}"
            rows.append(guarded(name, functools.partial(backfill_scenario, emu, deferrable)))
        for deferrable in (False, True):
            name = f"Run sensor, deferrable={deferrable}"
            rows.append(guarded(name, functools.partial(sensor_scenario, emu, deferrable, hours)))
        workdir = Path(args.out).parent
        # ONE wait at each case's own poll interval: at a scaled-down poll, a poll's own time stretches
        # the cycle (at 0.1 s a lone wait polled 9 times in 10 intervals), so a reference at another poll
        # would not be the same hour.
        references: dict[float, dict[str, Any]] = {}
        for case in SHARED_CASES:
            if case.poll not in references:
                alone = replace(ONE_WAIT, poll=case.poll)
                one = guarded(ONE_WAIT.name, functools.partial(shared_hour, emu, alone, intervals, workdir))
                one.pop("target", None)
                rows.append(one)
                references[case.poll] = one
            one = references[case.poll]
            row = guarded(case.name, functools.partial(shared_hour, emu, case, intervals, workdir))
            row["reference"] = one["requests"] or None
            row["reference_label"] = f"one wait alone, same {intervals} poll intervals of {case.poll:g} s"
            row["poll_real_s"] = case.poll
            rows.append(row)
        if args.quick:
            result["rate_limit"] = ["### Rate limits", "", "Skipped in `--quick` (it runs in real time)."]
        else:
            emu.control.configure(run_duration=REAL_RUN_SECONDS / SCALE)
            result["rate_limit"], result["rate_limit_data"] = asyncio.run(
                rate_limit_story(emu, 500, run_seconds=45.0)
            )
        print(result["rate_limit"], flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
