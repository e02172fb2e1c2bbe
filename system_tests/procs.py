"""Start, watch and stop child processes, each in its own process group, by pid.

Every process the suite starts goes through ``Processes.start``; ``Processes.stop_all`` runs from
``try/finally``, ``atexit`` and the SIGINT/SIGTERM handlers, so nothing outlives the suite. A process marked
``stop_last`` (the database) is stopped only after the others, which still write to it while they shut down.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

GRACE_SECONDS = 15.0


@dataclass
class Proc:
    """One started process (its own session/process group; ``pgid == pid``)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    stop_last: bool = False
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process and every descendant at once (a crash: nothing gets to clean up)."""
        tree = descendants(self.pid)
        _signal_group(self.pid, signal.SIGKILL)
        kill_pids(tree)
        self.popen.wait(timeout=30)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Polite signal to the group, then SIGKILL the group after ``grace`` seconds."""
        if self.alive():
            _signal_group(self.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Children that survived their leader (e.g. LocalExecutor workers) still carry the group id.
        _signal_group(self.pid, signal.SIGKILL)
        if self.alive():
            self.popen.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children may have moved to their own process groups)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (every process of this run, however reparented)."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_pids(pids: list[int], signum: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def group_members(pgid: int) -> list[int]:
    """Pids still in process group ``pgid`` (from /proc; zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


class Processes:
    """The registry of everything started; ``stop_all`` is idempotent and safe from a signal handler."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.procs: list[Proc] = []
        self._lock = threading.Lock()
        self.started_pgids: list[int] = []
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        stop_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
        user: tuple[int, int] | None = None,
        stop_last: bool = False,
    ) -> Proc:
        """Start ``argv`` in its own session, output to ``log_dir/<name>.out``; ``user`` = (uid, gid) to run
        as (PostgreSQL refuses to run as root)."""
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.out"
        log = open(log_path, "ab")  # noqa: SIM115 - closed in Proc.stop
        as_user: dict[str, Any] = {}
        if user is not None:
            as_user = {"user": user[0], "group": user[1], "extra_groups": []}
        popen = subprocess.Popen(
            argv,
            env={**env, "SYSTEM_TESTS_RUN": self.marker},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **as_user,
        )
        proc = Proc(name, popen, log_path, stop_signal, stop_last, log)
        with self._lock:
            self.procs.append(proc)
            self.started_pgids.append(popen.pid)
        return proc

    def stop_all(self) -> None:
        with self._lock:
            procs, self.procs = list(self.procs), []
        first = [p for p in procs if not p.stop_last]
        self._stop_together(first)
        self._stop_together([p for p in procs if p.stop_last])
        # Task and trigger-runner processes live in their own process groups; whatever of this run is left
        # (e.g. orphaned by a SIGKILLed supervisor) is found by the marker in its environment.
        for _ in range(3):
            left = marked_pids(self.marker)
            if not left:
                break
            kill_pids(left)
            time.sleep(0.5)

    def _stop_together(self, procs: list[Proc]) -> None:
        """Polite signals to all (reverse start order), one shared grace period, then SIGKILL each group."""
        for proc in reversed(procs):
            if proc.alive():
                _signal_group(proc.pid, proc.stop_signal)
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in procs:
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=remaining)
        for proc in procs:
            proc.stop(grace=0)

    def leftovers(self) -> list[int]:
        """Live processes of this run (should be empty after ``stop_all``)."""
        out = set(marked_pids(self.marker))
        for pgid in self.started_pgids:
            out.update(group_members(pgid))
        return sorted(out)
