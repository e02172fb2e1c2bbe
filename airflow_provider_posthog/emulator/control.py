"""The in-process control API (mirrored under ``/_emulator/``): seeding, clock, outcomes, faults, request log.

One ``Control`` owns the whole emulator state; the HTTP app and tests share it. A single lock serialises every
state access (requests are tiny, so one lock is simpler and fast enough).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

from .clock import ACTIVE, Clock, StateMachine
from .faults import Fault, FaultInjector, RateLimiter
from .service import BACKFILL_STATUSES, RUN_STATUSES, Service
from .settings import READ_SCOPE, WRITE_SCOPE, EmulatorSettings
from .store import ApiKey, Project, Store
from .timeutil import INTERVALS, parse_drf_datetime, to_utc

if TYPE_CHECKING:
    from collections.abc import Iterable

UTC = timezone.utc


class _Unset(Enum):
    """An argument not given (where ``None`` means something)."""

    UNSET = "unset"


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    """One API call as the emulator saw it (admin ``/_emulator/`` calls are not logged)."""

    method: str
    path: str
    query: str
    status: int  # 0 = connection dropped by a fault
    timestamp: datetime
    api_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "timestamp": self.timestamp.isoformat(),
        }


def _dt(value: datetime | str | None, default: datetime) -> datetime:
    if value is None:
        return default
    if isinstance(value, datetime):
        return to_utc(value)
    parsed = parse_drf_datetime(value)
    if parsed is None:
        raise ValueError(f"not a datetime: {value!r}")
    return parsed


class Control:
    """The emulator's state and the calls tests use to drive it."""

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.lock = threading.RLock()
        self.clock = Clock()
        self.store = Store(self.settings)
        self.machine = StateMachine(self.store, self.settings)
        self.service = Service(self.store, self.machine, self.settings)
        self.faults = FaultInjector()
        self.rate_limiter = RateLimiter(
            self.settings.rate_limit_per_minute, self.settings.rate_limit_per_hour
        )
        self._request_log: list[RequestLogEntry] = []

    # -- internal helpers used by the app ---------------------------------------------------------------
    def tick(self) -> datetime:
        """Catch the state machine up to now and return now (call with the lock held)."""
        now = self.clock.now()
        self.machine.catch_up(now)
        return now

    def record(self, entry: RequestLogEntry) -> None:
        self._request_log.append(entry)

    # -- lifecycle --------------------------------------------------------------------------------------
    def reset(self, *, full: bool = False) -> None:
        """Fresh state: no objects, faults, request log or clock offset; settings, keys and projects kept.

        ``full=True`` also forgets added API keys, projects and integrations (the pytest fixture does this).
        """
        with self.lock:
            if full:
                self.store.keys.clear()
                self.store.projects.clear()
                self.store.integrations.clear()
            self.store.clear()
            self.machine.reset()
            self.clock.reset()
            self.faults.clear()
            self.rate_limiter.reset()
            self._request_log.clear()

    def configure(self, **changes: Any) -> EmulatorSettings:
        """Change settings at runtime (e.g. ``api_generation``, ``max_concurrent_backfills``, rate limits)."""
        with self.lock:
            was_scheduling = self.settings.schedule_runs
            for key, value in changes.items():
                if not hasattr(self.settings, key):
                    raise AttributeError(f"unknown setting {key!r}")
                if key == "feature_flags":
                    value = frozenset(value)
                setattr(self.settings, key, value)
            self.settings.__post_init__()
            if self.settings.schedule_runs != was_scheduling:
                self.machine.forget_schedules()
            self.rate_limiter = RateLimiter(
                self.settings.rate_limit_per_minute, self.settings.rate_limit_per_hour
            )
            return self.settings

    # -- clock ------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        with self.lock:
            return self.tick()

    def advance(self, seconds: float) -> datetime:
        with self.lock:
            self.clock.advance(seconds)
            return self.tick()

    # -- identities -------------------------------------------------------------------------------------
    def add_api_key(
        self,
        key: str,
        scopes: Iterable[str] = (READ_SCOPE, WRITE_SCOPE),
        project_ids: Iterable[int] | None = None,
    ) -> None:
        with self.lock:
            self.store.keys[key] = ApiKey(
                key,
                frozenset(scopes),
                None if project_ids is None else frozenset(int(p) for p in project_ids),
            )

    def add_project(self, project_id: int, organization_id: int = 1) -> None:
        with self.lock:
            self.store.projects[int(project_id)] = Project(int(project_id), int(organization_id))

    def add_integration(self, integration_id: int, kind: str, project_id: int | None = None) -> None:
        with self.lock:
            self.store.integrations[int(integration_id)] = {
                "id": int(integration_id),
                "kind": kind,
                "team_id": project_id or self.settings.project_id,
            }

    # -- seeding ----------------------------------------------------------------------------------------
    def seed_export(
        self,
        name: str = "Emulated export",
        destination: dict[str, Any] | None = None,
        interval: str = "hour",
        model: str | None = "events",
        paused: bool = False,
        created_at: datetime | str | None = None,
        project_id: int | None = None,
        last_paused_at: datetime | str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Create an export without validation (interval must be valid); returns its API representation.

        Like PostHog, ``paused=True`` alone leaves ``last_paused_at`` empty (only ``POST .../pause/`` and the
        auto-pause set it): pass ``last_paused_at`` for an export paused that way.
        """
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}")
        with self.lock:
            now = self.tick()
            created = _dt(created_at, now)
            dest: dict[str, Any] = (
                copy.deepcopy(destination) if destination else {"type": "NoOp", "config": {}}
            )
            dest.setdefault("config", {})
            dest.setdefault("integration", dest.pop("integration_id", None))
            fields: dict[str, Any] = {
                "name": name,
                "destination": dest,
                "interval": interval,
                "model": model,
                "paused": paused,
            }
            if last_paused_at is not None:
                fields["last_paused_at"] = _dt(last_paused_at, now)
            fields.update(extra)
            export = self.store.new_export(project_id or self.settings.project_id, fields, created)
            self.machine.register_export(export, now)
            return self.store.render_export(export)

    def seed_run(
        self,
        batch_export_id: str,
        data_interval_start: datetime | str | None,
        data_interval_end: datetime | str,
        status: str = "Completed",
        created_at: datetime | str | None = None,
        records_completed: int | None = None,
        latest_error: str | None = None,
        backfill_id: str | None = None,
        duration: float | None = None,
        records_total_count: int | None = None,
    ) -> dict[str, Any]:
        """Add a run; ``Starting``/``Running`` runs then progress through the state machine.

        ``duration``: emulated seconds from ``created_at`` until an active run finishes (default
        ``run_duration``), e.g. a scheduled run still running when a backfill or retry reaches its interval.
        ``records_total_count``: what PostHog counted for the interval (default: what the run exports).
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self.lock:
            now = self.tick()
            if batch_export_id not in self.store.exports:
                raise KeyError(batch_export_id)
            end = _dt(data_interval_end, now)
            start = None if data_interval_start is None else _dt(data_interval_start, now)
            usual = timedelta(seconds=self.settings.run_duration)
            created = _dt(created_at, now if status in ACTIVE else now - usual)
            run = self.store.new_run(batch_export_id, start, end, "Running", created, backfill_id)
            run["records_completed"] = records_completed
            run["records_total_count"] = records_total_count
            if status in ACTIVE:
                run["status"] = status
                self.machine.schedule_run(run, created, duration)
                if status == "Running":
                    self.machine.log_start(run, created + (run["_running_at"] - created) / 2)
            else:
                finished = max(created, min(now, created + usual))
                self.machine.finish_run(run, status, finished, latest_error=latest_error)
            if latest_error is not None:
                run["latest_error"] = latest_error
            self.tick()
            return self.store.render_run(run)

    def seed_backfill(
        self,
        batch_export_id: str,
        start_at: datetime | str | None,
        end_at: datetime | str | None,
        status: str = "Running",
        created_at: datetime | str | None = None,
        simulate: bool = False,
    ) -> dict[str, Any]:
        """Add a backfill row (visible at once); ``simulate=True``: an active one runs its runs."""
        if status not in BACKFILL_STATUSES:
            raise ValueError(f"unknown backfill status {status!r}")
        with self.lock:
            now = self.tick()
            export = self.store.exports[batch_export_id]
            created = _dt(created_at, now)
            start = None if start_at is None else _dt(start_at, now)
            end = None if end_at is None else _dt(end_at, now)
            intervals = self.machine.plan_intervals(start, end or now, export)
            backfill = self.store.new_backfill(export, start, end, status, created, intervals)
            backfill["_workflow_id"] = self.service.workflow_id(batch_export_id, start, end)
            backfill["_adjusted_start"] = intervals[0][0] if intervals else start
            if status not in ACTIVE:
                backfill["finished_at"] = created
            elif self.settings.api_generation == "new" and status == "Running":
                backfill["adjusted_start_at"] = backfill["_adjusted_start"]
                backfill["total_records_count"] = len(intervals) * self.settings.records_per_run
            if simulate and status in ACTIVE:
                backfill["_simulated"] = True
                self.machine.finish_backfill(backfill, status, created)
                backfill["last_updated_at"] = created
            self.tick()
            return self.store.render_backfill(backfill, now)

    # -- outcomes ---------------------------------------------------------------------------------------
    def fail_next_run(
        self, batch_export_id: str, error: str = "Emulated failure", status: str = "Failed"
    ) -> None:
        """The next run of this export that finishes ends with ``status`` and ``latest_error`` (queued)."""
        if status not in RUN_STATUSES or status in ACTIVE:
            raise ValueError(f"not a final run status: {status!r}")
        with self.lock:
            self.store.fail_queue.setdefault(batch_export_id, []).append((status, error))

    def lose_records(
        self, batch_export_id: str, count: int | None = None, fraction: float | None = None
    ) -> None:
        """The next run of this export that completes exports ``count`` records (or ``fraction`` of them)
        fewer than PostHog counted for its interval, and still ends ``Completed`` (queued, one per call).

        Its ``records_total_count`` keeps the interval's count and ``records_completed`` is lower, as when
        events go missing on the way to the destination. Applies to runs whose ``records_completed`` the
        emulator decides (not a run seeded with one).
        """
        if (count is None) == (fraction is None):
            raise ValueError("give exactly one of count and fraction")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a whole number >= 1, not {count!r}")
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1
        ):
            raise ValueError(f"fraction must be a number in (0, 1], not {fraction!r}")
        with self.lock:
            entry = (count, None if fraction is None else float(fraction))
            self.store.lose_queue.setdefault(batch_export_id, []).append(entry)

    def ignore_next_cancels(self, count: int = 1, kind: str = "any") -> None:
        """The next ``count`` cancels answer 200 ``{"cancelled": true}`` but change nothing.

        ``kind`` is ``"run"``, ``"backfill"`` or ``"any"``; PostHog does this when its Temporal cancel call
        fails. The usual 400 for a run/backfill that is not Starting/Running still comes first.
        """
        if kind not in ("run", "backfill", "any"):
            raise ValueError(f"kind must be 'run', 'backfill' or 'any', not {kind!r}")
        if count < 0:
            raise ValueError("count must be >= 0")
        with self.lock:
            self.store.ignored_cancels[kind] = self.store.ignored_cancels.get(kind, 0) + int(count)

    def set_run_status(self, run_id: str, status: str, latest_error: str | None = None) -> dict[str, Any]:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self.lock:
            now = self.tick()
            run = self.store.runs[run_id]
            self.machine.finish_run(run, status, now, latest_error=latest_error)
            return self.store.render_run(run)

    def set_backfill_status(self, backfill_id: str, status: str) -> dict[str, Any]:
        if status not in BACKFILL_STATUSES:
            raise ValueError(f"unknown backfill status {status!r}")
        with self.lock:
            now = self.tick()
            backfill = self.store.backfills[backfill_id]
            self.machine.finish_backfill(backfill, status, now)
            return self.store.render_backfill(backfill, now)

    def delete_schedule(self, batch_export_id: str) -> None:
        """Simulate a missing Temporal schedule (pause/unpause then answer 400)."""
        with self.lock:
            self.store.exports[batch_export_id]["_schedule"] = False

    # -- faults -----------------------------------------------------------------------------------------
    def add_fault(
        self,
        path_regex: str,
        method: str | None = None,
        status: int | _Unset | None = UNSET,
        count: int | None = 1,
        retry_after: float | None = None,
        latency: float = 0.0,
        drop_connection: bool = False,
        html: bool = False,
        body: dict[str, Any] | None = None,
        trickle: float = 0.0,
    ) -> Fault:
        """Script a fault for the next ``count`` matching API calls (``count=None``: until cleared).

        ``status`` defaults to 503. ``status=None`` with ``latency`` only delays the real answer.
        ``trickle=seconds`` sends the answer's body one byte every ``seconds``: the real answer unless a
        ``status`` is given too.
        """
        if isinstance(status, _Unset):
            status = None if trickle else 503
        return self.faults.add(
            Fault(
                path_regex,
                method,
                status,
                count,
                retry_after=retry_after,
                latency=latency,
                drop_connection=drop_connection,
                html=html,
                body=body,
                trickle=float(trickle),
            )
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- request log ------------------------------------------------------------------------------------
    @property
    def request_log(self) -> list[RequestLogEntry]:
        with self.lock:
            return list(self._request_log)

    def clear_request_log(self) -> None:
        with self.lock:
            self._request_log.clear()

    def count_requests(self, method: str | None = None, path_contains: str = "") -> int:
        with self.lock:
            return sum(
                1
                for e in self._request_log
                if (method is None or e.method == method.upper()) and path_contains in e.path
            )

    # -- inspection -------------------------------------------------------------------------------------
    def get_export(self, batch_export_id: str) -> dict[str, Any]:
        with self.lock:
            self.tick()
            return copy.deepcopy(self.store.exports[batch_export_id])

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            self.tick()
            return copy.deepcopy(self.store.runs[run_id])

    def get_backfill(self, backfill_id: str) -> dict[str, Any]:
        with self.lock:
            self.tick()
            return copy.deepcopy(self.store.backfills[backfill_id])

    def runs_for(self, batch_export_id: str) -> list[dict[str, Any]]:
        with self.lock:
            self.tick()
            return copy.deepcopy(
                sorted(self.store.runs_of_export(batch_export_id), key=lambda r: r["created_at"])
            )

    def backfills_for(self, batch_export_id: str) -> list[dict[str, Any]]:
        with self.lock:
            self.tick()
            return copy.deepcopy(
                sorted(
                    self.store.backfills_of_export(batch_export_id, visible_only=False),
                    key=lambda b: b["created_at"],
                )
            )

    def logs_for(self, batch_export_id: str) -> list[dict[str, Any]]:
        with self.lock:
            self.tick()
            return copy.deepcopy(
                sorted(self.store.logs.get(batch_export_id, []), key=lambda e: e["timestamp"])
            )

    def render_backfill(self, backfill_id: str) -> dict[str, Any]:
        with self.lock:
            now = self.tick()
            return self.store.render_backfill(self.store.backfills[backfill_id], now)
