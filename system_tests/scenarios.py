"""The scenarios. Each has its own emulator process (so request counts and faults never mix) and asserts task
states, the emulator's state and its request counts. ``setup`` runs before Airflow starts (connections are
environment variables of the Airflow processes), ``run`` once Airflow is healthy.

Each scenario names the deployments it runs on by default (``deployments``): the fault matrix runs once, on
PostgreSQL + Celery (production's shape: separate workers, two triggerers, a database server that can
restart); SQLite + LocalExecutor keeps what is specific to a standalone-like setup.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from system_tests.deployments import PostgresCelery
from system_tests.harness import Emulator, SystemUnderTest, wait_until

if TYPE_CHECKING:
    from system_tests.proxy import CountingProxy

UTC = timezone.utc
BACKFILL_POST = re.compile(r"/batch_exports/[^/]+/backfills/?$")


class ScenarioFailure(AssertionError):
    """An assertion of a scenario failed; the message says what and where the evidence is."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioFailure(message)


def hour_ranges(first: datetime, count: int, hours: int = 1) -> list[list[str]]:
    """``count`` disjoint, hour-aligned, past UTC ranges of ``hours`` hours each."""
    return [
        [
            (first + timedelta(hours=i * hours)).isoformat(),
            (first + timedelta(hours=(i + 1) * hours)).isoformat(),
        ]
        for i in range(count)
    ]


def past_hour(days_ago: int) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(days=days_ago)


@dataclass
class Result:
    name: str
    passed: bool = False
    seconds: float = 0.0
    backfills: int = 0  # created (POSTs PostHog accepted)
    expected: int = 0  # backfills the scenario should create: one per wait
    lost: int = 0  # waits that did not end as they should (task state, or their backfill missing/unfinished)
    requests: int = 0
    throttled: int = 0  # 429
    unavailable: int = 0  # 503 and dropped connections
    retries: int = 0  # task tries beyond the first
    notes: list[str] = field(default_factory=list)
    error: str = ""


SQLITE = frozenset({"sqlite"})
CELERY = frozenset({"celery"})


class Scenario:
    name = ""
    emulator_args: tuple[str, ...] = ()
    #: the deployments (``deployments.DEPLOYMENTS``) that run this scenario when none is named
    deployments: ClassVar[frozenset[str]] = CELERY

    def __init__(self) -> None:
        self.result = Result(self.name)
        self.emu: Emulator | None = None
        self.export_id = ""
        #: (dag_id, run_id) of the runs this scenario started; run_id None: every run of that DAG
        self.owned_runs: list[tuple[str, str | None]] = []

    @property
    def conn_id(self) -> str:
        return "posthog_" + self.name.replace("-", "_")

    def setup(self, sut: SystemUnderTest) -> None:
        self.emu = sut.start_emulator(self.name, self.conn_id, *self.emulator_args)
        self.export_id = self.emu.seed_export(f"system test {self.name}")

    def run(self, sut: SystemUnderTest) -> None:
        raise NotImplementedError

    def trigger(self, sut: SystemUnderTest, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
        self.owned_runs.append((dag_id, run_id))
        sut.trigger(dag_id, run_id, conf)

    def fail_leftovers(self, sut: SystemUnderTest) -> list[str]:
        """Mark failed every run of this scenario that is still going, and return them.

        A scenario that fails midway leaves waits behind that go on polling (through any trouble that is
        transient) and hold worker slots until their own timeouts, starving every later scenario. Failing the
        runs ends their tasks (the running ones at their next heartbeat).
        """
        left = []
        for dag_id, run_id in self.owned_runs:
            runs = (
                [run_id]
                if run_id is not None
                else [r["dag_run_id"] for r in sut.rest("GET", f"dags/{dag_id}/dagRuns")["dag_runs"]]
            )
            for run in runs:
                if sut.dag_run_state(dag_id, run) not in ("success", "failed"):
                    sut.rest("PATCH", f"dags/{dag_id}/dagRuns/{run}", {"state": "failed"})
                    left.append(f"{dag_id}/{run}")
        return left

    # -- helpers ----------------------------------------------------------------------------------------
    def conf(self, ranges: list[list[str]], **extra: Any) -> dict[str, Any]:
        return {"conn_id": self.conn_id, "batch_export_id": self.export_id, "ranges": ranges, **extra}

    def count_requests(self) -> None:
        """Fill the request figures from the emulator's request log (before any inspection call)."""
        assert self.emu is not None
        log = self.emu.requests()
        self.result.requests = len(log)
        self.result.throttled = sum(1 for e in log if e["status"] == 429)
        self.result.unavailable = sum(1 for e in log if e["status"] in (0, 503))
        self.result.backfills = sum(
            1
            for e in log
            if e["method"] == "POST" and BACKFILL_POST.search(e["path"]) and 200 <= e["status"] < 300
        )

    def remote_backfills(self) -> list[dict[str, Any]]:
        assert self.emu is not None
        return self.emu.backfills(self.export_id)

    def tis(
        self, sut: SystemUnderTest, dag_id: str, run_id: str, task_prefix: str = ""
    ) -> list[dict[str, Any]]:
        return [t for t in sut.task_instances(dag_id, run_id) if t["task_id"].startswith(task_prefix)]

    def wait_states(
        self,
        sut: SystemUnderTest,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: set[str],
        n: int,
        timeout: float,
    ) -> None:
        def ok() -> bool:
            got = [t["state"] for t in self.tis(sut, dag_id, run_id) if t["task_id"] == task_id]
            return len(got) == n and all(s in states for s in got)

        wait_until(f"{n} {task_id} of {dag_id}/{run_id} in {states}", ok, timeout, 2.0)

    def assert_all_success(self, sut: SystemUnderTest, dag_id: str, run_id: str, n_waits: int) -> None:
        state = sut.wait_dag_run(dag_id, run_id, 600)
        tis = self.tis(sut, dag_id, run_id)
        waits = [t for t in tis if t["task_id"] == "wait"]
        self.result.retries += sum(max(0, int(t["try_number"]) - 1) for t in waits)
        bad = [(t["task_id"], t["map_index"], t["state"]) for t in tis if t["state"] != "success"]
        self.result.lost += max(n_waits - len(waits), 0) + sum(1 for t in waits if t["state"] != "success")
        check(state == "success" and not bad, f"{dag_id}/{run_id} {state}; not successful: {bad}")
        check(len(waits) == n_waits, f"expected {n_waits} waits, found {len(waits)}")

    def assert_backfills(self, expected: int, status: str) -> None:
        """Exactly ``expected`` backfills, one per range, all ``status``; figures first, then the checks."""
        self.count_requests()
        self.result.expected = expected
        remote = self.remote_backfills()
        statuses = sorted({b["status"] for b in remote})
        finished = len({b["start_at"] for b in remote if b["status"] == status})
        self.result.lost = max(self.result.lost, expected - finished)
        check(
            self.result.backfills == expected and len(remote) == expected,
            f"expected exactly {expected} backfills; POSTs that created one: {self.result.backfills}, "
            f"backfills in the emulator: {len(remote)}",
        )
        check(statuses == [status], f"expected every backfill {status}, got {statuses}")
        starts = [b["start_at"] for b in remote]
        check(len(set(starts)) == len(starts), f"duplicate backfill ranges: {sorted(starts)}")


# -- 1. the example DAGs on their own schedules --------------------------------------------------------------
class ExampleDags(Scenario):
    """The repo's example DAGs against ``posthog_default``: their own scheduled runs plus an Airflow backfill
    (``POST /api/v2/backfills``) over two past intervals, with data intervals from the DAGs' timetables."""

    name = "example-dags"
    emulator_args = ("--run-duration", "0.05")
    deployments = SQLITE
    daily = ("posthog_backfill_and_wait", "posthog_wait_for_scheduled_export")

    @property
    def conn_id(self) -> str:
        return "posthog_default"

    def setup(self, sut: SystemUnderTest) -> None:
        super().setup(sut)
        assert self.emu is not None
        # PostHog's own scheduled runs of the export (what the sensor waits for): hourly, a week back, done.
        first = past_hour(9).replace(hour=0)
        for i in range(9 * 24 + datetime.now(UTC).hour):
            start = first + timedelta(hours=i)
            self.emu.admin(
                "POST",
                "runs",
                {
                    "batch_export_id": self.export_id,
                    "data_interval_start": start.isoformat(),
                    "data_interval_end": (start + timedelta(hours=1)).isoformat(),
                    "status": "Completed",
                    "records_completed": 10,
                },
            )
        self.emu.admin("DELETE", "requests")
        sut.extra_env["AIRFLOW_VAR_POSTHOG_BATCH_EXPORT_ID"] = self.export_id

    def run(self, sut: SystemUnderTest) -> None:
        # Scheduled and Airflow backfill runs as well as the ones triggered here: every run of these DAGs.
        owned = (*self.daily, "posthog_manage_exports", "posthog_models_on_export")
        self.owned_runs = [(d, None) for d in owned]
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        # DAGs start paused: the models DAG first (it must see every event), then the backfill DAG, whose
        # scheduled run (the latest @daily interval) starts at once.
        sut.unpause("posthog_models_on_export", "posthog_backfill_and_wait", "posthog_manage_exports")

        def scheduled_run_done(dag_id: str) -> bool:
            runs = sut.rest("GET", f"dags/{dag_id}/dagRuns")["dag_runs"]
            return any(r["run_type"] == "scheduled" and r["state"] == "success" for r in runs)

        # Each DAG's scheduled run emits its first asset event through its alias alone: Airflow 3.3 does not
        # guard the first registration of an asset, an alias or their link against a concurrent one
        # (docs/lineage.md), so the Airflow backfill runs below, which may finish together, start once the
        # asset and both aliases are known.
        wait_until(
            "the scheduled posthog_backfill_and_wait run", lambda: scheduled_run_done(self.daily[0]), 360
        )
        # Only now the sensor DAG's scheduled run: it waits for the same day's runs, and the backfill above
        # adds runs to that day; had it poked while they ran, its next poke would come 5 minutes later.
        sut.unpause(self.daily[1])
        wait_until(f"the scheduled {self.daily[1]} run", lambda: scheduled_run_done(self.daily[1]), 420)
        # Disjoint days: a PostHog backfill of a day adds runs that the sensor of that day would wait for.
        for dag_id, days_ago in zip(self.daily, (3, 6), strict=True):
            sut.rest(
                "POST",
                "backfills",
                {
                    "dag_id": dag_id,
                    "from_date": (today - timedelta(days=days_ago)).isoformat(),
                    "to_date": (today - timedelta(days=days_ago - 1)).isoformat(),
                    "dag_run_conf": {"poll_interval": 2} if dag_id == "posthog_backfill_and_wait" else {},
                    "max_active_runs": 2,
                },
            )
        conf = {"export_name": "system-test-s3"}
        self.trigger(sut, "posthog_manage_exports", "system_manage_exports", conf)

        def all_done() -> list[dict[str, Any]] | None:
            runs = [
                r
                for d in (*self.daily, "posthog_manage_exports")
                for r in sut.rest("GET", f"dags/{d}/dagRuns")["dag_runs"]
            ]
            return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

        time.sleep(5)
        # The sensor pokes every 5 minutes (mode="reschedule"): if the scheduled run of the backfill DAG was
        # exporting the same day when it poked, the next poke is 5 minutes later.
        runs = wait_until("every example DAG run to finish", all_done, 660, 3.0)
        summary = [
            (r["dag_id"], r["run_type"], r["data_interval_start"], r["data_interval_end"], r["state"])
            for r in runs
        ]
        for line in summary:
            self.result.notes.append(" ".join(str(x) for x in line))
        backfill_runs = [r for r in runs if r["run_type"] == "backfill"]
        check(len(backfill_runs) == 4, f"expected 2 Airflow backfill runs per daily DAG, got {summary}")
        failed = [s for s in summary if s[-1] != "success"]
        for dag_id in (*self.daily, "posthog_manage_exports"):
            for r in runs:
                if r["dag_id"] == dag_id:
                    tis = sut.task_instances(dag_id, r["dag_run_id"])
                    self.result.retries += sum(max(0, int(t["try_number"]) - 1) for t in tis)
        check(not failed, f"example DAG runs not successful: {failed}")
        n_backfill_dag_runs = sum(1 for r in runs if r["dag_id"] == "posthog_backfill_and_wait")
        self.count_requests()
        self.result.expected = n_backfill_dag_runs
        remote = self.remote_backfills()
        self.result.lost = n_backfill_dag_runs - sum(1 for b in remote if b["status"] == "Completed")
        # One PostHog backfill per posthog_backfill_and_wait run (manage-exports works on its own export).
        check(
            len(remote) == n_backfill_dag_runs,
            f"expected {n_backfill_dag_runs} PostHog backfills of the example export, got {len(remote)}",
        )
        check(all(b["status"] == "Completed" for b in remote), f"backfills: {[b['status'] for b in remote]}")
        self.check_models_ran_on_asset_events(sut, {b["id"] for b in remote})

    def check_models_ran_on_asset_events(self, sut: SystemUnderTest, backfill_ids: set[str]) -> None:
        """Every backfill task emitted its asset event, and the scheduler ran the models DAG off them.

        Airflow folds events that arrive while it creates an asset-triggered run into that run (or, racing
        that creation, into none), so the consumed events are checked to be the backfill task's, not counted.
        """
        models = "posthog_models_on_export"
        events = sut.rest("GET", "assets/events?source_dag_id=posthog_backfill_and_wait&limit=100")
        emitted = {str((e.get("extra") or {}).get("backfill_id")) for e in events["asset_events"]}
        check(emitted == backfill_ids, f"events of backfills {emitted}, PostHog backfills {backfill_ids}")

        def consumed() -> set[str] | None:
            runs = sut.rest("GET", f"dags/{models}/dagRuns")["dag_runs"]
            if not runs or any(r["state"] not in ("success", "failed") for r in runs):
                return None
            check(all(r["run_type"] == "asset_triggered" for r in runs), f"{models} runs: {runs}")
            check(all(r["state"] == "success" for r in runs), f"{models} runs: {runs}")
            ids: set[str] = set()
            for r in runs:
                upstream = sut.rest("GET", f"dags/{models}/dagRuns/{r['dag_run_id']}/upstreamAssetEvents")
                ids |= {str((e.get("extra") or {}).get("backfill_id")) for e in upstream["asset_events"]}
            check(ids <= backfill_ids, f"{models} consumed events of {ids}, not of the backfills")
            return ids or None

        ids = wait_until(f"{models} to run on the backfill task's asset events", consumed, 180, 3.0)
        self.result.notes.append(f"{models}: asset-triggered runs consumed the events of {sorted(ids)}")


# -- 2. triggerer SIGKILL ------------------------------------------------------------------------------------
class TriggererKill(Scenario):
    """10 deferred waits; the triggerer (and its trigger-runner child) SIGKILLed, restarted after 20 s.

    The lone triggerer of a standalone-like setup: nothing adopts the triggers, the restarted process must
    pick them up (with two triggerers, ``two-triggerers``)."""

    name = "triggerer-kill"
    emulator_args = ("--run-duration", "45")
    waits = 10
    deployments = SQLITE

    def run(self, sut: SystemUnderTest) -> None:
        dag, run = "system_deferred_waits", "triggerer_kill"
        self.trigger(sut, dag, run, self.conf(hour_ranges(past_hour(10), self.waits)))
        self.wait_states(sut, dag, run, "wait", {"deferred"}, self.waits, 300)
        time.sleep(3)  # let the triggerer pick them up and poll once
        sut.components["triggerer"].kill9()
        killed = time.monotonic()
        time.sleep(20)
        sut.start_triggerer("triggerer")
        self.result.notes.append(f"triggerer down {time.monotonic() - killed:.0f}s")
        self.assert_all_success(sut, dag, run, self.waits)
        self.assert_backfills(self.waits, "Completed")


# -- 2b. two triggerers, one SIGKILLed -----------------------------------------------------------------------
class TwoTriggerers(Scenario):
    """10 deferred waits over two triggerers; the one holding most of them is SIGKILLed. The survivor must
    adopt its triggers once the killed one misses the health-check threshold: the adoption time is measured.
    The killed triggerer is then started again (a deployment with one triggerer gets a second for this).
    """

    name = "two-triggerers"
    emulator_args = ("--run-duration", "60")
    waits = 10

    def run(self, sut: SystemUnderTest) -> None:
        names = list(sut.deployment.triggerers[:2])
        if len(names) < 2:
            sut.start_triggerer("triggerer-2")
            names.append("triggerer-2")
        job_of = {sut.triggerer_jobs[n]: n for n in names}
        dag, run = "system_deferred_waits", "two_triggerers"
        self.trigger(sut, dag, run, self.conf(hour_ranges(past_hour(11), self.waits)))
        self.wait_states(sut, dag, run, "wait", {"deferred"}, self.waits, 300)

        def assignment() -> dict[int, int] | None:
            counts = trigger_assignment(sut, dag, run)
            if sum(counts.values()) != self.waits or None in counts:
                return None
            return {job: n for job, n in counts.items() if job is not None}

        counts = wait_until("all triggers assigned", assignment, 120, 1.0)
        check(set(counts) <= set(job_of), f"triggers held by jobs {counts}, triggerers' jobs {job_of}")
        victim_job = max(counts, key=lambda j: counts[j])
        survivor_job = next(j for j in job_of if j != victim_job)
        victim = job_of[victim_job]
        self.result.notes.append(
            "triggers before the kill: " + ", ".join(f"{job_of[j]} {n}" for j, n in sorted(counts.items()))
        )
        sut.components[victim].kill9()
        killed = time.monotonic()
        adopted = wait_until(
            "the surviving triggerer to adopt every trigger",
            lambda: (a := assignment()) is not None and set(a) == {survivor_job} and a,
            180,
            0.25,
        )
        adoption = time.monotonic() - killed
        self.result.notes.append(
            f"SIGKILLed {victim} (job {victim_job}); {job_of[survivor_job]} held all {sum(adopted.values())} "
            f"triggers {adoption:.1f}s later (heartbeat 2s, health-check threshold 10s)"
        )
        sut.start_triggerer(victim)
        self.assert_all_success(sut, dag, run, self.waits)
        self.assert_backfills(self.waits, "Completed")


def trigger_assignment(sut: SystemUnderTest, dag: str, run: str) -> dict[int | None, int]:
    """Triggerer job id (None: not yet assigned) -> how many triggers of the run's deferred tasks it holds."""
    rows = sut.sql(
        "select t.triggerer_id from trigger t join task_instance ti on ti.trigger_id = t.id "
        "where ti.dag_id = ? and ti.run_id = ?",
        dag,
        run,
    )
    counts: dict[int | None, int] = {}
    for (job,) in rows:
        counts[job] = counts.get(job, 0) + 1
    return counts


# -- 3. worker SIGKILL during a non-deferrable wait ----------------------------------------------------------
class WorkerKill(Scenario):
    """A sync wait's worker SIGKILLed mid-wait: the retry must re-attach to the same backfill.

    On Celery the whole worker dies (its main process, pool and task processes): a worker of its own serves
    this DAG's queue, so no other scenario's task dies with it. Airflow sees the try fail only once its
    heartbeat is older than ``task_instance_heartbeat_timeout``; the worker is started again for the retry.
    With the LocalExecutor the task process itself is SIGKILLed, and its supervisor reports it at once.
    """

    name = "worker-kill"
    emulator_args = ("--run-duration", "40")
    victim = "worker-victim"

    def run(self, sut: SystemUnderTest) -> None:
        dag, run = "system_worker_kill", "worker_kill"
        celery = bool(sut.deployment.workers)
        if celery:
            sut.start_worker(self.victim, queues=dag, concurrency=1)
        try:
            self.kill_and_check(sut, dag, run, celery)
        finally:
            if celery:
                sut.components[self.victim].stop()

    def kill_and_check(self, sut: SystemUnderTest, dag: str, run: str, celery: bool) -> None:
        self.trigger(sut, dag, run, self.conf(hour_ranges(past_hour(12), 1)))
        assert self.emu is not None
        emu = self.emu

        def running_pid() -> int | None:
            posted = any(e["method"] == "POST" for e in emu.requests())
            rows = sut.sql(
                "select pid, state from task_instance where dag_id=? and run_id=? and task_id='wait'",
                dag,
                run,
            )
            if posted and rows and rows[0][1] == "running" and rows[0][0]:
                return int(rows[0][0])
            return None

        pid = wait_until("the wait running with its backfill created", running_pid, 300, 1.0)
        time.sleep(4)  # a few polls into the wait
        if celery:
            sut.components[self.victim].kill9()
            killed = time.monotonic()
            self.result.notes.append(f"SIGKILLed Celery worker {self.victim} and its task process {pid}")
            time.sleep(5)
            sut.start_worker(self.victim)

            def retried() -> bool:
                rows = sut.sql(
                    "select try_number from task_instance where dag_id=? and run_id=? and task_id='wait'",
                    dag,
                    run,
                )
                return bool(rows) and int(rows[0][0]) >= 2

            wait_until("the retry after the worker's death", retried, 600, 2.0)
            self.result.notes.append(f"the retry started {time.monotonic() - killed:.0f}s after the kill")
        else:
            os.kill(pid, signal.SIGKILL)
            self.result.notes.append(f"SIGKILLed task process {pid}")
        self.assert_all_success(sut, dag, run, 1)
        # At least one retry (the killed try); more only if Airflow itself lost a try under load.
        check(self.result.retries >= 1, f"expected a retry after the kill, got {self.result.retries}")
        self.assert_backfills(1, "Completed")


# -- 4. scheduler restart ------------------------------------------------------------------------------------
class SchedulerRestart(Scenario):
    """10 deferred waits; the scheduler stopped (SIGINT) and started again 10 s later. On Celery also two sync
    waits: their workers do not depend on the scheduler (the LocalExecutor's task processes die with it)."""

    name = "scheduler-restart"
    emulator_args = ("--run-duration", "40")
    waits = 10

    def run(self, sut: SystemUnderTest) -> None:
        dag, run = "system_deferred_waits", "scheduler_restart"
        sync = 2 if sut.deployment.workers else 0
        ranges = hour_ranges(past_hour(13), self.waits + sync)
        self.trigger(sut, dag, run, self.conf(ranges[: self.waits]))
        if sync:
            self.trigger(sut, "system_sync_wait", "scheduler_restart_sync", self.conf(ranges[self.waits :]))
            self.wait_states(
                sut, "system_sync_wait", "scheduler_restart_sync", "wait", {"running"}, sync, 300
            )
        self.wait_states(sut, dag, run, "wait", {"deferred"}, self.waits, 300)
        sut.components["scheduler"].stop()
        time.sleep(10)
        sut.start_component("scheduler")
        self.assert_all_success(sut, dag, run, self.waits)
        if sync:
            self.assert_all_success(sut, "system_sync_wait", "scheduler_restart_sync", sync)
        self.assert_backfills(self.waits + sync, "Completed")


# -- 5. PostHog outage ---------------------------------------------------------------------------------------
class Outage(Scenario):
    """Waits as users run them (``retries=0``, the default poll interval unless named otherwise) through a
    3-minute outage: 90 s of 503s, then 90 s of dropped connections on every API call. PostHog completes every
    backfill in the middle of it. Every wait must succeed in its first try, without a duplicate backfill.
    """

    name = "outage"
    # Runs outlast the scenario: the backfills complete when the emulator's clock is advanced past them.
    emulator_args = ("--run-duration", "3600")
    dag = "system_outage_waits"
    #: wait task -> the task that created the backfill it waits on
    waits = {
        "sync_default": "sync_default",
        "sync_poll2": "sync_poll2",
        "deferred_default": "deferred_default",
        "deferred_poll2_0": "deferred_poll2_0",
        "deferred_poll2_1": "deferred_poll2_1",
        "poke_sensor": "start_poke_backfill",
        "reschedule_sensor": "start_reschedule_backfill",
    }
    #: waits whose polls keep a fixed cadence under a minute and a half (a poll interval of at most 60 s plus
    #: one poll's retries), so each of them meets both phases and tells the outage's start and end in its
    #: log; a rescheduled poke also waits on the scheduler, and each poke is a process of its own.
    steady = (
        "sync_default",
        "sync_poll2",
        "deferred_default",
        "deferred_poll2_0",
        "deferred_poll2_1",
        "poke_sensor",
    )
    phase_seconds = 90.0
    #: waiting states of each kind of task before the outage starts
    waiting_states = frozenset({"running", "deferred", "up_for_reschedule"})

    def run(self, sut: SystemUnderTest) -> None:
        assert self.emu is not None
        emu, run = self.emu, "outage"
        self.trigger(sut, self.dag, run, self.conf(hour_ranges(past_hour(14), len(self.waits))))
        ids: dict[str, str] = {}

        def waiting() -> bool:
            # Every wait waiting, its backfill answered once since the wait started (it saw it running).
            tis = {t["task_id"]: t for t in sut.task_instances(self.dag, run)}
            ids.update(self.backfill_ids(sut, run))
            answered = [
                (e["path"] + "?" + e["query"], _instant(e["timestamp"]))
                for e in emu.requests()
                if e["status"] == 200
            ]

            def polled(wait: str, creator: str) -> bool:
                ti = tis.get(wait)
                if ti is None or ti["state"] not in self.waiting_states or creator not in ids:
                    return False
                since = _instant(ti["start_date"])
                return any(ids[creator] in about and at >= since for about, at in answered)

            return all(polled(wait, creator) for wait, creator in self.waits.items())

        wait_until("every outage wait waiting on its backfill", waiting, 300, 2.0)
        started = time.monotonic()
        first = self.emulator_now()
        emu.admin("POST", "faults", {"path_regex": "^/api/", "status": 503, "count": None})
        time.sleep(self.phase_seconds)
        emu.admin("DELETE", "faults")
        emu.admin("POST", "faults", {"path_regex": "^/api/", "drop_connection": True, "count": None})
        # PostHog finishes every backfill now, while nothing reaches it: the emulator's clock jumps past the
        # runs' hour. (After the switch: a poll slipping between the two calls above still sees them running.)
        emu.admin("POST", "advance", {"seconds": 3660})
        time.sleep(self.phase_seconds)
        last = self.emulator_now()
        emu.admin("DELETE", "faults")
        self.result.notes.append(
            f"outage {time.monotonic() - started:.0f}s (503s, then dropped connections); every backfill "
            "completed in PostHog when the dropped connections began"
        )

        state = sut.wait_dag_run(self.dag, run, 600)
        tis = {t["task_id"]: t for t in sut.task_instances(self.dag, run)}
        tries = {t: int(ti["try_number"]) for t, ti in sorted(tis.items())}
        self.result.retries = sum(max(0, n - 1) for n in tries.values())
        faults = self.faults_per_wait(ids)
        self.result.notes.append(f"tries per task: {tries}")
        self.result.notes.append(f"503s/dropped connections per wait: {faults}")
        bad = {t: ti["state"] for t, ti in tis.items() if ti["state"] != "success"}
        check(state == "success" and not bad, f"{self.dag}/{run} {state}; not successful: {bad}")
        check(all(n == 1 for n in tries.values()), f"a task needed a retry: {tries}")
        self.assert_backfills(len(self.waits), "Completed")
        finished = [b["finished_at"] for b in self.remote_backfills()]
        check(
            all(first < _instant(f) < last for f in finished),
            f"backfills not finished during the outage ({first} - {last}): {finished}",
        )
        check(
            all(n503 > 0 and dropped > 0 for n503, dropped in (faults[w] for w in self.steady)),
            f"a wait did not poll through both phases of the outage: {faults}",
        )
        check(sum(faults["reschedule_sensor"]) > 0, f"the rescheduled sensor never met the outage: {faults}")
        # The log tells when PostHog became unreachable and when it answered again, on every path (a
        # rescheduled sensor's pokes are separate processes: the task state store carries the outage's start).
        for task in (*self.steady, "reschedule_sensor"):
            text = self.task_log(sut, run, task)
            for line in ("PostHog is unreachable since", "PostHog answered again"):
                check(line in text, f"the log of {task} does not say {line!r}")
        pokes = self.task_log(sut, run, "reschedule_sensor").count("PostHog is unreachable since")
        self.result.notes.append(f"rescheduled pokes that found PostHog unreachable: {pokes}")

    def emulator_now(self) -> datetime:
        assert self.emu is not None
        return _instant(self.emu.admin("GET", "now")["now"])

    def backfill_ids(self, sut: SystemUnderTest, run: str) -> dict[str, str]:
        """The backfill id each creating task pushed (XCom ``backfill_id``), read from the metadata DB."""
        rows = sut.sql(
            "select task_id, value from xcom where dag_id = ? and run_id = ? and key = 'backfill_id'",
            self.dag,
            run,
        )
        return {task: _json_text(value) for task, value in rows}

    def faults_per_wait(self, ids: dict[str, str]) -> dict[str, tuple[int, int]]:
        """(503s, dropped connections) of the requests about each wait's backfill (path or query)."""
        assert self.emu is not None
        log = self.emu.requests()
        out: dict[str, tuple[int, int]] = {}
        for wait, creator in self.waits.items():
            mine = [e["status"] for e in log if ids[creator] in e["path"] + "?" + e["query"]]
            out[wait] = (mine.count(503), mine.count(0))
        return out

    def task_log(self, sut: SystemUnderTest, run: str, task: str) -> str:
        """Everything the first try of ``task`` logged (the worker's file and the triggerer's, if any)."""
        folder = sut.home / "logs" / f"dag_id={self.dag}" / f"run_id={run}" / f"task_id={task}"
        return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("attempt=1*")))


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _json_text(value: Any) -> str:
    """An XCom string as stored (JSON, possibly encoded twice), back to the plain string."""
    if isinstance(value, bytes):
        value = value.decode()
    while isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            break
        if not isinstance(decoded, str):
            break
        value = decoded
    return str(value)


# -- 6. rate limit -------------------------------------------------------------------------------------------
class RateLimit(Scenario):
    """50 deferred waits (poll every 5 s) against a 120 requests/minute per-key limit."""

    name = "rate-limit"
    emulator_args = ("--run-duration", "10", "--rate-limit-per-minute", "120")
    waits = 50

    def run(self, sut: SystemUnderTest) -> None:
        dag, run = "system_deferred_waits", "rate_limit"
        self.trigger(sut, dag, run, self.conf(hour_ranges(past_hour(15), self.waits), poll_interval=5))
        self.assert_all_success(sut, dag, run, self.waits)
        self.assert_backfills(self.waits, "Completed")
        check(self.result.throttled > 0, "the rate limit never answered 429: the scenario tested nothing")
        check(self.result.retries == 0, f"429s were not absorbed: {self.result.retries} task retries")


# -- 7. timeouts ---------------------------------------------------------------------------------------------
class Timeouts(Scenario):
    """``timeout`` and ``execution_timeout``, deferrable and not, each on a backfill that outlasts them."""

    name = "timeouts"
    emulator_args = ("--run-duration", "600")
    tasks = ("timeout_deferrable", "timeout_sync", "execution_timeout_deferrable", "execution_timeout_sync")

    def run(self, sut: SystemUnderTest) -> None:
        dag, run = "system_timeouts", "timeouts"
        ranges = hour_ranges(past_hour(16), len(self.tasks))
        self.trigger(sut, dag, run, self.conf(ranges))
        state = sut.wait_dag_run(dag, run, 400)
        tis = {t["task_id"]: t["state"] for t in sut.task_instances(dag, run)}
        check(state == "failed" and all(tis[t] == "failed" for t in self.tasks), f"task states {tis}")
        assert self.emu is not None
        by_start: dict[str, str] = {}

        def all_cancelled() -> bool:
            by_start.clear()
            for b in self.remote_backfills():
                by_start[b["start_at"]] = b["status"]
            return len(by_start) == len(self.tasks) and set(by_start.values()) == {"Cancelled"}

        with contextlib.suppress(TimeoutError):
            wait_until("every timed-out backfill Cancelled", all_cancelled, 60, 2.0)
        per_task = {}
        for task, (start, _end) in zip(self.tasks, ranges, strict=False):
            status = next(
                (
                    v
                    for k, v in by_start.items()
                    if datetime.fromisoformat(k.replace("Z", "+00:00")) == datetime.fromisoformat(start)
                ),
                None,
            )
            per_task[task] = status
        self.result.notes.append(f"remote status per task: {per_task}")
        self.count_requests()
        self.result.expected = len(self.tasks)
        self.result.lost = sum(1 for v in per_task.values() if v != "Cancelled")
        check(all(v == "Cancelled" for v in per_task.values()), f"not cancelled remotely: {per_task}")
        check(self.result.backfills == len(self.tasks), f"backfills created: {self.result.backfills}")


# -- 8. mark failed over the REST API ------------------------------------------------------------------------
class MarkFailed(Scenario):
    """A deferred wait marked failed with ``PATCH .../taskInstances/{task}`` (Airflow 3.3 runs on_kill)."""

    name = "mark-failed"
    emulator_args = ("--run-duration", "600")

    def run(self, sut: SystemUnderTest) -> None:
        dag, run, task = "system_mark_failed", "mark_failed", "deferred_wait"
        self.trigger(sut, dag, run, self.conf(hour_ranges(past_hour(17), 1)))
        self.wait_states(sut, dag, run, task, {"deferred"}, 1, 300)
        time.sleep(4)
        sut.rest("PATCH", f"dags/{dag}/dagRuns/{run}/taskInstances/{task}", {"new_state": "failed"})
        marked = time.monotonic()
        try:
            wait_until(
                "the backfill Cancelled after mark-failed",
                lambda: [b["status"] for b in self.remote_backfills()] == ["Cancelled"],
                90,
                2.0,
            )
            self.result.notes.append(f"Cancelled {time.monotonic() - marked:.0f}s after mark-failed")
        finally:
            self.count_requests()
            self.result.expected = 1
            self.result.lost = sum(1 for b in self.remote_backfills() if b["status"] != "Cancelled")
        tis = {t["task_id"]: t["state"] for t in sut.task_instances(dag, run)}
        check(tis[task] == "failed", f"task state {tis}")
        check(self.result.backfills == 1, f"backfills created: {self.result.backfills}")


# -- 9. clock skew -------------------------------------------------------------------------------------------
class ClockSkew(Scenario):
    """A sync wait on a worker whose clock is 10 min ahead of PostHog's, then 10 min behind (the emulator's
    clock moved the other way), its first try SIGKILLed after the POST: the retry re-attaches, no duplicate.
    """

    name = "clock-skew"
    emulator_args = ("--run-duration", "30", "--api-generation", "docs")
    dag = "system_clock_skew"
    #: (run id, worker clock minus PostHog's in seconds, days back of the range)
    directions = (("worker_ahead_10min", 600.0, 19), ("worker_behind_10min", -600.0, 20))

    def run(self, sut: SystemUnderTest) -> None:
        assert self.emu is not None
        for run, worker_ahead, days_ago in self.directions:
            self.emu.admin("POST", "clock", {"offset_seconds": -worker_ahead})
            (rng,) = hour_ranges(past_hour(days_ago), 1)
            posts_before = self.backfill_posts()
            self.trigger(sut, self.dag, run, self.conf([rng]))

            def first_try_pid(run: str = run, posts_before: int = posts_before) -> int | None:
                rows = sut.sql(
                    "select pid, state from task_instance where dag_id=? and run_id=? and task_id='wait'",
                    self.dag,
                    run,
                )
                if self.backfill_posts() > posts_before and rows and rows[0][1] == "running" and rows[0][0]:
                    return int(rows[0][0])
                return None

            pid = wait_until(f"{run}: the wait running with its backfill created", first_try_pid, 300, 1.0)
            time.sleep(3)  # a poll or two into the wait
            os.kill(pid, signal.SIGKILL)
            self.result.notes.append(f"{run}: SIGKILLed the first try (pid {pid}) after its POST")
            self.assert_all_success(sut, self.dag, run, 1)
            tries = [int(t["try_number"]) for t in self.tis(sut, self.dag, run) if t["task_id"] == "wait"]
            check(bool(tries) and tries[0] >= 2, f"{run}: expected a retry after the kill, tries {tries}")
            mine = [b for b in self.remote_backfills() if _instant(b["start_at"]) == _instant(rng[0])]
            posts = self.backfill_posts() - posts_before
            check(len(mine) == 1 and posts == 1, f"{run}: {len(mine)} backfills of {rng}, {posts} POSTs")
            check(mine[0]["status"] == "Completed", f"{run}: backfill {mine[0]['id']} is {mine[0]['status']}")
            way = "ahead of" if worker_ahead > 0 else "behind"
            check(
                f"s {way} PostHog's" in self.first_try_log(sut, run),
                f"{run}: the first try's log does not give the clock offset measured from PostHog's Date",
            )
            self.result.notes.append(f"{run}: 1 backfill ({mine[0]['id']}), 1 POST, re-attached on retry")
        self.emu.admin("POST", "clock", {"offset_seconds": 0})
        self.assert_backfills(len(self.directions), "Completed")

    def backfill_posts(self) -> int:
        """Backfill POSTs PostHog accepted so far."""
        assert self.emu is not None
        return sum(
            1
            for e in self.emu.requests()
            if e["method"] == "POST" and BACKFILL_POST.search(e["path"]) and 200 <= e["status"] < 300
        )

    def first_try_log(self, sut: SystemUnderTest, run: str) -> str:
        folder = sut.home / "logs" / f"dag_id={self.dag}" / f"run_id={run}" / "task_id=wait"
        return "".join(
            p.read_text(errors="replace") for p in sorted(folder.rglob("attempt=1*")) if p.is_file()
        )


# -- 10. PostgreSQL restart ---------------------------------------------------------------------------------
class PostgresRestart(Scenario):
    """The database server (metadata DB and Celery broker) stopped for 10 s and started again while 10 waits
    are deferred and 2 sync waits run: no wait lost, no backfill created twice. Components that exit meanwhile
    are started again, as a service manager would, and listed."""

    name = "postgres-restart"
    emulator_args = ("--run-duration", "45")
    deferred = 10
    sync = 2
    down_seconds = 10.0

    def run(self, sut: SystemUnderTest) -> None:
        deployment = sut.deployment
        check(isinstance(deployment, PostgresCelery), "needs a database server: the celery deployment")
        assert isinstance(deployment, PostgresCelery)
        ranges = hour_ranges(past_hour(31), self.deferred + self.sync)
        runs = (("system_deferred_waits", "postgres_restart"), ("system_sync_wait", "postgres_restart_sync"))
        self.trigger(sut, *runs[0], self.conf(ranges[: self.deferred]))
        self.trigger(sut, *runs[1], self.conf(ranges[self.deferred :]))
        self.wait_states(sut, *runs[1], "wait", {"running"}, self.sync, 300)
        self.wait_states(sut, *runs[0], "wait", {"deferred"}, self.deferred, 300)
        deployment.stop_server()
        stopped = time.monotonic()
        time.sleep(self.down_seconds)
        deployment.start_server()
        self.result.notes.append(
            f"PostgreSQL down {time.monotonic() - stopped:.0f}s (fast shutdown, restart)"
        )
        time.sleep(15)  # a component that gives up on the database exits within its next loops
        exited = [name for name, proc in sut.components.items() if not proc.alive()]
        exited = [n for n in exited if n != WorkerKill.victim]
        for name in exited:
            if name in sut.deployment.triggerers:
                sut.start_triggerer(name)
            elif name in sut.deployment.workers:
                sut.start_worker(name)
            else:
                sut.start_component(name)
        self.result.notes.append(f"components that exited and were started again: {exited or 'none'}")
        self.assert_all_success(sut, *runs[0], self.deferred)
        self.assert_all_success(sut, *runs[1], self.sync)
        self.assert_backfills(self.deferred + self.sync, "Completed")


# -- 11. many deferred waits over two triggerers -------------------------------------------------------------
class ManyWaits(Scenario):
    """200 deferred waits (poll every 10 s) on one export, spread over the triggerers. Each triggerer reaches
    PostHog through a counting proxy of its own: the triggers it holds and the requests it sends per poll
    cycle while all 200 wait (each reads its own backfill), then, once PostHog finishes the 200 backfills at
    once (the emulator's clock jumps past their runs), its requests until every wait is done (the export and
    its runs, which shared polls read once for nearby backfills)."""

    name = "many-waits"
    # The runs outlast the start of every wait; the clock jump completes them.
    emulator_args = ("--run-duration", "3600")
    waits = 200
    poll = 10
    window = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.proxies: dict[str, CountingProxy] = {}

    def setup(self, sut: SystemUnderTest) -> None:
        super().setup(sut)
        assert self.emu is not None
        for name in sut.deployment.triggerers:
            proxy = sut.add_proxy(f"{self.name}-{name}", self.emu.base_url)
            sut.conn_overrides.setdefault(name, {})[self.conn_id] = proxy.url
            self.proxies[name] = proxy

    def run(self, sut: SystemUnderTest) -> None:
        assert self.emu is not None
        dag, run = "system_deferred_waits", "many_waits"
        ranges = hour_ranges(past_hour(40), self.waits)
        started = time.monotonic()
        self.trigger(sut, dag, run, self.conf(ranges, poll_interval=self.poll))
        self.wait_states(sut, dag, run, "wait", {"deferred"}, self.waits, 900)
        self.result.notes.append(
            f"all {self.waits} waits deferred {time.monotonic() - started:.0f}s after the trigger"
        )
        job_to_name = {job: name for name, job in sut.triggerer_jobs.items()}

        def assigned() -> dict[int | None, int] | None:
            counts = trigger_assignment(sut, dag, run)
            return counts if None not in counts and sum(counts.values()) == self.waits else None

        counts = wait_until("every trigger assigned", assigned, 120, 1.0)
        held = {job_to_name.get(job, f"job {job}"): n for job, n in counts.items()}
        # The same order both times (emulator, then proxies), so a request in flight is counted once.
        emu_before = len(self.emu.requests())
        before = {name: proxy.snapshot() for name, proxy in self.proxies.items()}
        time.sleep(self.window)
        emu_requests = len(self.emu.requests()) - emu_before
        cycles = self.window / self.poll
        polled = 0
        for name, proxy in self.proxies.items():
            delta = proxy.snapshot() - before[name]
            total = sum(delta.values())
            polled += total
            kinds = ", ".join(f"{k} x{n}" for k, n in delta.most_common())
            self.result.notes.append(
                f"{name}: {held.get(name, 0)} triggers, {total} requests in {self.window:.0f}s "
                f"= {total / cycles:.1f} per {self.poll}s poll cycle ({kinds or 'none'})"
            )
        self.result.notes.append(
            f"emulator: {emu_requests} requests in the same {self.window:.0f}s, {polled} through the "
            "triggerers' proxies (the rest from the workers, give or take a request in flight)"
        )
        spread = [name for name in sut.deployment.triggerers if held.get(name, 0) > 0]
        # Once the backfills are finished each wait also reads the export and its runs over the backfill's
        # range: reads that waits on nearby backfills can share.
        before = {name: proxy.snapshot() for name, proxy in self.proxies.items()}
        self.emu.admin("POST", "advance", {"seconds": 3660})
        try:
            self.assert_all_success(sut, dag, run, self.waits)
        finally:
            for name, proxy in self.proxies.items():
                delta = proxy.snapshot() - before[name]
                kinds = ", ".join(f"{k} x{n}" for k, n in delta.most_common())
                self.result.notes.append(
                    f"{name}: {sum(delta.values())} requests for its {held.get(name, 0)} triggers from the "
                    f"moment PostHog finished the backfills ({kinds or 'none'})"
                )
        self.assert_backfills(self.waits, "Completed")
        check(
            len(spread) == len(sut.deployment.triggerers),
            f"the waits were not spread over every triggerer: {held}",
        )


# -- 12. the asset-alias race --------------------------------------------------------------------------------
#: A first registration that lost a race, as the database reports it: PostgreSQL's log names the unique
#: constraint (``idx_asset_name_uri_unique``, ``idx_asset_alias_name_unique``, ...), SQLite's error in the
#: api-server's log the columns (``asset.name, asset.uri``, ``asset_alias_asset.alias_id, ...``).
RACE_LINE = re.compile(
    r'violates unique constraint "(?P<pg>[^"]*asset[^"]*)"|UNIQUE constraint failed: (?P<lite>asset[\w.]*)'
)


def alias_races(sut: SystemUnderTest) -> dict[str, int]:
    """Lost races on a first registration so far, per constraint or table (``asset``: the asset itself,
    ``asset_alias``, ``asset_alias_asset``: their link), and ``tasks failed``: the tasks Airflow failed for
    it ("Error updating Task Instance state. Setting the task to failed." in the api-server's log)."""
    counts: dict[str, int] = {}
    postgres = isinstance(sut.deployment, PostgresCelery)
    server = sut.proc_logs / ("postgres.out" if postgres else "api-server.out")
    if server.exists():
        with open(server, errors="replace") as log:
            for line in log:
                match = RACE_LINE.search(line)
                # SQLite's error appears in several lines of one traceback: count the exception's own line.
                if match and (
                    (postgres and "ERROR" in line) or (not postgres and line.startswith("sqlite3."))
                ):
                    name = match["pg"] or match["lite"].split(".")[0]
                    name = {
                        "idx_asset_name_uri_unique": "asset",
                        "idx_asset_alias_name_unique": "asset_alias",
                    }.get(name, name)
                    counts[name] = counts.get(name, 0) + 1
    api = sut.proc_logs / "api-server.out"
    failed = 0
    if api.exists():
        with open(api, errors="replace") as log:
            failed = sum(1 for line in log if "Setting the task to failed" in line)
    return {**counts, "tasks failed": failed}


def race_text(races: dict[str, int]) -> str:
    lost = {k: v for k, v in races.items() if k != "tasks failed" and v}
    where = ", ".join(f"{v} on {k}" for k, v in sorted(lost.items())) or "none"
    return (
        f"lost races on a first registration: {where}; tasks Airflow failed for it: {races['tasks failed']}"
    )


class AssetAlias(Scenario):
    """4 new assets x 8 deferred waits that emit their event through the task's alias, all finishing at once
    (PostHog completes the 32 backfills together). Measures Airflow's race on an asset's first registration
    through an alias (it does not guard it against a concurrent insert; the losing task fails, whatever its
    retries). Passes when every backfill was created exactly once and completed, and every failed task is
    accounted for by a lost race in the database's log."""

    name = "asset-alias"
    emulator_args = ("--run-duration", "3600")
    rounds = 4
    waits = 8

    def setup(self, sut: SystemUnderTest) -> None:
        super().setup(sut)
        assert self.emu is not None
        # A new export is a new asset (the NoOp destination's URI names the export).
        self.exports = [self.emu.seed_export(f"system test {self.name} {i}") for i in range(self.rounds)]

    def run(self, sut: SystemUnderTest) -> None:
        assert self.emu is not None
        dag = "system_asset_alias"
        before = alias_races(sut)
        runs = [f"asset_alias_{i}" for i in range(self.rounds)]
        for i, (run, export) in enumerate(zip(runs, self.exports, strict=True)):
            ranges = hour_ranges(past_hour(50 + i), self.waits)
            self.trigger(sut, dag, run, {**self.conf(ranges), "batch_export_id": export})
        for run in runs:
            self.wait_states(sut, dag, run, "wait", {"deferred"}, self.waits, 600)
        self.emu.admin("POST", "advance", {"seconds": 3660})
        states: dict[str, int] = {}
        retries_left = 0
        for run in runs:
            sut.wait_dag_run(dag, run, 600)
            for ti in self.tis(sut, dag, run, "wait"):
                states[ti["state"]] = states.get(ti["state"], 0) + 1
                self.result.retries += max(0, int(ti["try_number"]) - 1)
                if ti["state"] == "failed" and int(ti["try_number"]) <= int(ti["max_tries"]):
                    retries_left += 1
        after = alias_races(sut)
        races = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        self.count_requests()
        expected = self.rounds * self.waits
        self.result.expected = expected
        remote = [b for export in self.exports for b in self.emu.backfills(export)]
        completed = sum(1 for b in remote if b["status"] == "Completed")
        self.result.lost = expected - completed
        failed = states.get("failed", 0)
        lost_races = sum(v for k, v in races.items() if k != "tasks failed")
        self.result.notes.append(
            f"{self.rounds} new assets x {self.waits} waits finishing together: {race_text(races)}; "
            f"task states {states}, {retries_left} failed with retries left; "
            f"backfills {completed}/{expected} Completed"
        )
        check(
            self.result.backfills == expected and len(remote) == expected,
            f"expected exactly {expected} backfills: POSTs {self.result.backfills}, in PostHog {len(remote)}",
        )
        check(completed == expected, f"backfills not Completed: {[b['status'] for b in remote]}")
        check(
            failed <= min(lost_races, races["tasks failed"]),
            f"{failed} waits failed, {races} lost races: another failure",
        )


ALL = (
    ExampleDags,
    TriggererKill,
    TwoTriggerers,
    WorkerKill,
    SchedulerRestart,
    Outage,
    RateLimit,
    Timeouts,
    MarkFailed,
    ClockSkew,
    PostgresRestart,
    ManyWaits,
    AssetAlias,
)
