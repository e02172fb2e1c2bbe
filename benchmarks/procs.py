"""Process plumbing for the benchmarks: a server process with a line protocol, and bounded child runs.

Every child runs with a timeout and every server process has its own watchdog, so nothing outlives a run.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent


def child_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child: Airflow in a throwaway home, the repo importable, no inherited connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("SSL_CERT_FILE", None)
    home = workdir / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": str(ROOT),
        }
    )
    if extra:
        env.update(extra)
    return env


def _reader(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@dataclass
class ServerProcess:
    """A ``benchmarks.servers`` process: its description line, then ``stats``/``reset``/``quit`` commands."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str]
    info: dict[str, Any]

    @classmethod
    def start(cls, args: list[str], workdir: Path, timeout: float = 60.0) -> ServerProcess:
        log = (workdir / f"server-{args[0]}.log").open("a")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.servers", *args],
            cwd=ROOT,
            env=child_env(workdir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
        server = cls(proc=proc, lines=lines, info={})
        server.info = server._read(timeout)
        return server

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                self.stop()
                raise RuntimeError(f"server process gave no answer (exit code {self.proc.returncode})")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            line = line.strip()
            if line.startswith("{"):
                return dict(json.loads(line))

    def command(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)


def run_child(
    module: str, args: list[str], workdir: Path, env: dict[str, str], timeout: float, log_name: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` with a hard timeout; its chatter goes to a log file in ``workdir``."""
    log_path = workdir / log_name
    with log_path.open("w") as log:
        try:
            return subprocess.run(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"{module} {' '.join(args)} exceeded {timeout:.0f} s (log: {log_path})"
            ) from exc
