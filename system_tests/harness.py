"""The system under test: one Airflow (separate component processes) and PostHog emulator processes.

``SystemUnderTest`` owns a temporary ``AIRFLOW_HOME`` under ``.system-tests/<deployment>/`` (kept after the
run for debugging), starts everything through ``procs.Processes`` on the deployment it is given
(``deployments``: SQLite + LocalExecutor, or PostgreSQL + CeleryExecutor) and offers small clients: the
Airflow REST API of the api-server, the Airflow metadata DB (read-only SQL, for pids and trigger assignment)
and each emulator's control API (``/_emulator/``) plus its PostHog API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_posthog.emulator.settings import DEFAULT_PROJECT_ID
from system_tests.deployments import DEPLOYMENTS, Deployment, as_utc, free_port
from system_tests.procs import Proc, Processes
from system_tests.proxy import CountingProxy

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / ".system-tests"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")

# A distinctive key: after the run no log file may contain it. The emulators are started with their default
# key (which they print) and this one is added over the control API, so it is never printed by anyone.
API_KEY = "phx_SYSTEST_" + uuid.uuid4().hex
# A destination secret the manage-exports example DAG sends; it must not reach a log either.
S3_SECRET = "SYSTEST_S3_SECRET_" + uuid.uuid4().hex


def wait_until(what: str, check: Any, timeout: float, interval: float = 1.0) -> Any:
    """Poll ``check()`` until it returns something truthy; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # transient (a process restarting): keep polling
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc!r})")


@dataclass
class Emulator:
    """One emulator process and its clients. ``conn_id`` is the Airflow connection pointing at it."""

    name: str
    conn_id: str
    port: int
    proc: Proc

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        resp = httpx.request(method, f"{self.base_url}/_emulator/{action}", json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def api(self, method: str, path: str, **params: Any) -> Any:
        """The PostHog API with the default emulator key (these calls do show up in the request log)."""
        resp = httpx.request(
            method,
            f"{self.base_url}/api/projects/{DEFAULT_PROJECT_ID}/{path}",
            params=params or None,
            headers={"Authorization": "Bearer phx_emulator_key"},
            timeout=30,
        )
        resp.raise_for_status()
        return resp.json()

    def seed_export(self, name: str, **fields: Any) -> str:
        return str(self.admin("POST", "exports", {"name": name, "interval": "hour", **fields})["id"])

    def requests(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "requests"))

    def backfills(self, export_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = self.api("GET", f"batch_exports/{export_id}/backfills/", limit=100)
        out.extend(page["results"])
        while page.get("next"):
            resp = httpx.get(page["next"], headers={"Authorization": "Bearer phx_emulator_key"}, timeout=30)
            resp.raise_for_status()
            page = resp.json()
            out.extend(page["results"])
        return out

    def backfill_state(self, backfill_id: str) -> dict[str, Any]:
        return dict(self.admin("GET", f"backfills/{backfill_id}"))


class SystemUnderTest:
    """Airflow on one deployment + emulators, for one suite run."""

    def __init__(self, deployment: str = "sqlite") -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.procs = Processes(marker=f"SYSTEM_TESTS_RUN={self.run_id}")
        self.state = ROOT / deployment
        self.home = self.state / "airflow-home"
        self.proc_logs = self.state / "process-logs"
        self.dags = self.state / "dags"
        self.deployment: Deployment = DEPLOYMENTS[deployment](self.state, self.procs, self.proc_logs)
        self.api_port = free_port()
        self.parallelism = self.deployment.parallelism
        self.emulators: dict[str, Emulator] = {}
        self.components: dict[str, Proc] = {}
        #: the arguments each component was started with, to start it again after a fault
        self.component_argv: dict[str, list[str]] = {}
        self.extra_env: dict[str, str] = {}
        #: per component: connection id -> base URL replacing the emulator's (a counting proxy)
        self.conn_overrides: dict[str, dict[str, str]] = {}
        self.proxies: list[CountingProxy] = []
        #: triggerer component name -> the id of its job in the metadata DB (its current process's)
        self.triggerer_jobs: dict[str, int] = {}
        self._write_lock = threading.Lock()
        self._unpaused: set[str] = set()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60)

    # -- setup ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        shutil.rmtree(self.state, ignore_errors=True)
        self.home.mkdir(parents=True)
        self.proc_logs.mkdir(parents=True)
        self.dags.mkdir(parents=True)
        # The DAGs folder: the scenario DAGs plus the repo's example DAGs, linked (not copied).
        for src in [
            *sorted((REPO / "system_tests" / "dags").glob("*.py")),
            *sorted((REPO / "example_dags").glob("*.py")),
        ]:
            (self.dags / src.name).symlink_to(src)

    def env(self, component: str = "") -> dict[str, str]:
        """The environment of an Airflow process (``component``: its name, for its connection overrides)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "POSTHOG"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # Paused until a scenario uses a DAG (``unpause``): the example DAGs' own schedules start
                # only when their scenario says so, in its order.
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
                # Shared by all components: tokens one process signs are checked by another.
                "AIRFLOW__API__SECRET_KEY": "system-tests-secret-" + self.run_id,
                "AIRFLOW__API_AUTH__JWT_SECRET": "system-tests-jwt-secret-" + self.run_id + "0" * 20,
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "AIRFLOW__API__WORKERS": "1",
                # Faster detection and scheduling than the production defaults. Not the scheduler's health
                # threshold or orphan check: under load on 2 cores a 15 s threshold made the scheduler reset
                # its own queued tasks as orphaned ("Reset the following 40 orphaned TaskInstances").
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                # A scheduler whose loop stalls past this threshold (SQLite's lock waits while 50 tasks start
                # on 2 cores) marks its own job failed at its orphan check and resets every task it had
                # queued: those tries end as killed, retries follow. The default (30 s) was not enough here.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "120",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW_VAR_POSTHOG_BATCH_EXPORT_ID": "",
                "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                    {
                        "conn_type": "aws",
                        "login": "AKIASYSTEST",
                        "password": S3_SECRET,
                        "extra": {"region_name": "us-east-1"},
                    }
                ),
            }
        )
        env.update(self.deployment.env())
        env.update(self.extra_env)
        overrides = self.conn_overrides.get(component, {})
        for emu in self.emulators.values():
            conn = {
                "conn_type": "posthog",
                "host": overrides.get(emu.conn_id, emu.base_url),
                "password": API_KEY,
                "extra": {"project_id": str(DEFAULT_PROJECT_ID)},
            }
            env[f"AIRFLOW_CONN_{emu.conn_id.upper()}"] = json.dumps(conn)
        return env

    def start_emulator(self, name: str, conn_id: str, *args: str) -> Emulator:
        port = free_port()
        argv = [
            str(VENV_BIN / "python"),
            "-m",
            "airflow_provider_posthog.emulator",
            "--port",
            str(port),
            *args,
        ]
        proc = self.procs.start(
            f"emulator-{name}", argv, {**os.environ, "PYTHONPATH": str(REPO)}, self.proc_logs, cwd=REPO
        )
        emu = Emulator(name, conn_id, port, proc)
        wait_until(f"emulator {name}", lambda: emu.admin("GET", "now"), 60, 0.3)
        emu.admin("POST", "api_keys", {"key": API_KEY})
        self.emulators[name] = emu
        return emu

    def airflow_cli(self, *args: str, timeout: float = 300) -> str:
        import subprocess

        result = subprocess.run(
            [AIRFLOW, *args],
            env={**self.env(), "SYSTEM_TESTS_RUN": self.procs.marker},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with open(self.proc_logs / "cli.out", "a") as log:
            log.write(f"$ airflow {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}"
            )
        return result.stdout

    def start_component(self, name: str, *argv: str) -> Proc:
        # SIGINT is what the Airflow components handle as a clean shutdown (SIGTERM also works for them).
        argv = argv or tuple(self.component_argv[name])
        proc = self.procs.start(
            name, [AIRFLOW, *argv], self.env(name), self.proc_logs, stop_signal=signal.SIGINT
        )
        self.components[name] = proc
        self.component_argv[name] = list(argv)
        return proc

    def start_airflow(self) -> None:
        self.deployment.start_database()
        self.airflow_cli("db", "migrate")
        self.start_component("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.start_component("scheduler", "scheduler")
        self.start_component("dag-processor", "dag-processor")
        for name in self.deployment.triggerers:
            self.start_triggerer(name)
        for name in self.deployment.workers:
            # One at a time: workers starting together both create the broker's queue row, and the loser
            # exits (the SQLAlchemy transport's unique "kombu_queue" name).
            self.start_worker(name)
        self.wait_healthy(("scheduler", "triggerer", "dag_processor"), 240)

    def triggerer_job_heartbeats(self) -> dict[int, datetime]:
        """Running triggerer jobs (a SIGKILLed one stays 'running', its heartbeat stale) -> last heartbeat."""
        rows = self.sql(
            "select id, latest_heartbeat from job where job_type = 'TriggererJob' and state = 'running'"
        )
        return {int(job): as_utc(beat) for job, beat in rows if beat is not None}

    def start_triggerer(self, name: str) -> int:
        """Start (or start again) a triggerer; return its new job id once it heartbeats."""
        before = set(self.triggerer_job_heartbeats())
        if name in self.component_argv:
            self.start_component(name)
        else:
            self.start_component(name, *self.deployment.triggerer_argv())

        def new_job() -> int | None:
            recent = datetime.now(timezone.utc) - timedelta(seconds=8)
            fresh = [
                j for j, beat in self.triggerer_job_heartbeats().items() if j not in before and beat > recent
            ]
            return fresh[0] if len(fresh) == 1 else None

        job = int(wait_until(f"the job of {name}", new_job, 180, 1.0))
        self.triggerer_jobs[name] = job
        return job

    def start_worker(self, name: str, queues: str = "default", concurrency: int = 0) -> Proc:
        """Start (or start again, with the same arguments) a Celery worker; return once it consumes."""
        log = self.proc_logs / f"{name}.out"
        offset = log.stat().st_size if log.exists() else 0
        if name in self.component_argv:
            proc = self.start_component(name)
        else:
            proc = self.start_component(name, *self.deployment.worker_argv(name, queues, concurrency))
        pattern = re.compile(rb"\b" + re.escape(name.encode()) + rb"@\S+ ready\.")

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with open(log, "rb") as out:
                out.seek(offset)
                if pattern.search(out.read()):
                    return proc
            if not proc.alive():
                raise RuntimeError(f"{name} exited ({proc.popen.returncode}); see {log}")
            time.sleep(0.5)
        raise TimeoutError(f"worker {name} not ready after 180s; see {log}")

    def health(self) -> dict[str, Any]:
        resp = self.http.get("/api/v2/monitor/health", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def wait_healthy(self, parts: tuple[str, ...], timeout: float) -> None:
        def ok() -> bool:
            h = self.health()
            return all((h.get(p) or {}).get("status") == "healthy" for p in parts)

        wait_until(f"healthy {', '.join(parts)}", ok, timeout, 1.0)

    # -- Airflow REST API -------------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        """One REST call. Writes are serialised and retried on 500/503: SQLite admits one writer at a time,
        and the api-server answers 500 "Database error" or (backfills) 503 "Database is locked", rolled back,
        when the scheduler holds the lock."""
        attempts = 1 if method == "GET" else 10
        for attempt in range(attempts):
            if method == "GET":
                resp = self.http.request(method, f"/api/v2/{path}", json=body)
            else:
                with self._write_lock:
                    resp = self.http.request(method, f"/api/v2/{path}", json=body)
            if resp.status_code in ok:
                return resp.json() if resp.content else None
            if resp.status_code == 409 and attempt > 0:
                return None  # the earlier attempt did get through
            if resp.status_code not in (500, 503) or attempt == attempts - 1:
                break
            time.sleep(1 + attempt)
        raise RuntimeError(f"{method} /api/v2/{path} -> {resp.status_code}: {resp.text[:500]}")

    def wait_dag(self, dag_id: str, timeout: float = 180) -> None:
        wait_until(
            f"DAG {dag_id} parsed",
            lambda: self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200,
            timeout,
            1.0,
        )

    def unpause(self, *dag_ids: str) -> None:
        """Unpause DAGs (once each): a paused DAG's triggered run would wait in ``queued``."""
        for dag_id in dag_ids:
            if dag_id not in self._unpaused:
                self.wait_dag(dag_id)
                self.rest("PATCH", f"dags/{dag_id}", {"is_paused": False})
                self._unpaused.add(dag_id)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> str:
        self.unpause(dag_id)
        self.rest(
            "POST", f"dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        )
        return run_id

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.rest("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_dag_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        return str(
            wait_until(
                f"{dag_id}/{run_id} to finish",
                lambda: (s := self.dag_run_state(dag_id, run_id)) in ("success", "failed") and s,
                timeout,
                2.0,
            )
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.rest(
                "GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(out)}"
            )
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    # -- metadata DB (read-only) --------------------------------------------------------------------------
    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read-only SQL on the deployment's metadata DB, ``?`` placeholders."""
        return self.deployment.sql(query, *params)

    # -- teardown ---------------------------------------------------------------------------------------
    def add_proxy(self, name: str, target: str) -> CountingProxy:
        proxy = CountingProxy(name, target).start()
        self.proxies.append(proxy)
        return proxy

    def stop(self) -> list[int]:
        """Stop everything; return pids of this run still alive afterwards (must be empty)."""
        self.http.close()
        self.procs.stop_all()
        for proxy in self.proxies:
            proxy.stop()
        time.sleep(0.5)
        return self.procs.leftovers()
