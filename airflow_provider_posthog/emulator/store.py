"""In-memory state: exports, runs, backfills, logs, API keys, projects, integrations; plus the JSON shapes.

Internal objects are plain dicts whose public keys mirror PostHog's model fields (datetimes as ``datetime``);
keys starting with ``_`` are emulator bookkeeping and never rendered.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .destinations import strip_secrets
from .settings import READ_SCOPE, WRITE_SCOPE
from .timeutil import INTERVALS, fmt

if TYPE_CHECKING:
    from datetime import datetime

    from .settings import EmulatorSettings


@dataclass
class ApiKey:
    key: str
    scopes: frozenset[str]
    project_ids: frozenset[int] | None  # None = every project the user can access


@dataclass
class Project:
    id: int
    organization_id: int


@dataclass
class Store:
    """All mutable emulator state (guarded by the control lock)."""

    settings: EmulatorSettings
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    backfills: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    projects: dict[int, Project] = field(default_factory=dict)
    integrations: dict[int, dict[str, Any]] = field(default_factory=dict)
    fail_queue: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # per export: records the next completing runs lose, as (count, fraction), one entry per run
    lose_queue: dict[str, list[tuple[int | None, float | None]]] = field(default_factory=dict)
    # acknowledged-but-not-carried-out cancels still to hand out, keyed "run" / "backfill" / "any"
    ignored_cancels: dict[str, int] = field(default_factory=dict)
    _runs_by_export: dict[str, list[str]] = field(default_factory=dict)
    _runs_by_backfill: dict[str, list[str]] = field(default_factory=dict)
    _backfills_by_export: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Drop all objects; keep configured keys/projects but make sure the default ones exist."""
        self.exports.clear()
        self.runs.clear()
        self.backfills.clear()
        self.logs.clear()
        self.fail_queue.clear()
        self.lose_queue.clear()
        self.ignored_cancels.clear()
        self._runs_by_export.clear()
        self._runs_by_backfill.clear()
        self._backfills_by_export.clear()
        s = self.settings
        self.keys.setdefault(s.api_key, ApiKey(s.api_key, frozenset({READ_SCOPE, WRITE_SCOPE}), None))
        self.projects.setdefault(s.project_id, Project(s.project_id, s.organization_id))

    # -- creation ---------------------------------------------------------------------------------------
    def new_export(self, team_id: int, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
        export: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "team_id": team_id,
            "name": "",
            "model": "events",
            "destination": {"type": "NoOp", "config": {}, "integration": None},
            "interval": "hour",
            "paused": False,
            "created_at": now,
            "last_updated_at": now,
            "last_paused_at": None,
            "start_at": None,
            "end_at": None,
            "hogql_query": None,
            "schema": None,
            "filters": None,
            "timezone": "UTC",
            "offset_day": None,
            "offset_hour": None,
            "hogql_modifiers": None,
            "primary_key": None,
            "version_key": None,
            "incremental_mode": "APPEND",
            "deleted": False,
            "_schedule": True,
            "_sched_cursor": None,
            "_version": 0,
        }
        export.update(fields)
        self.exports[export["id"]] = export
        return export

    def new_run(
        self,
        export_id: str,
        start: datetime | None,
        end: datetime,
        status: str,
        created_at: datetime,
        backfill_id: str | None,
    ) -> dict[str, Any]:
        run: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "status": status,
            "records_completed": None,
            "latest_error": None,
            "data_interval_start": start,
            "data_interval_end": end,
            "cursor": None,
            "created_at": created_at,
            "finished_at": None,
            "last_updated_at": created_at,
            "records_total_count": None,
            "bytes_exported": None,
            "batch_export": export_id,
            "backfill": backfill_id,
            "_instance_id": str(uuid.uuid4()),
            "_running_at": created_at,
            "_version": 0,
        }
        self.runs[run["id"]] = run
        self._runs_by_export.setdefault(export_id, []).append(run["id"])
        if backfill_id is not None:
            self._runs_by_backfill.setdefault(backfill_id, []).append(run["id"])
        return run

    def new_backfill(
        self,
        export: dict[str, Any],
        start: datetime | None,
        end: datetime | None,
        status: str,
        created_at: datetime,
        intervals: list[tuple[datetime | None, datetime]],
        backfill_id: str | None = None,
    ) -> dict[str, Any]:
        backfill: dict[str, Any] = {
            "id": backfill_id or str(uuid.uuid4()),
            "start_at": start,
            "end_at": end,
            "status": status,
            "created_at": created_at,
            "finished_at": None,
            "last_updated_at": created_at,
            "team": export["team_id"],
            "batch_export": export["id"],
            "adjusted_start_at": None,
            "total_records_count": None,
            "_visible": True,
            "_simulated": False,
            "_intervals": intervals,
            "_next_index": 0,
            "_version": 0,
        }
        self.backfills[backfill["id"]] = backfill
        self._backfills_by_export.setdefault(export["id"], []).append(backfill["id"])
        return backfill

    def add_log(self, export_id: str, instance_id: str, when: datetime, level: str, message: str) -> None:
        self.logs.setdefault(export_id, []).append(
            {
                "log_source_id": export_id,
                "instance_id": instance_id,
                "timestamp": when,
                "level": level.upper(),
                "message": message,
            }
        )

    # -- queries ----------------------------------------------------------------------------------------
    def runs_of_export(self, export_id: str) -> list[dict[str, Any]]:
        return [self.runs[i] for i in self._runs_by_export.get(export_id, ())]

    def runs_of_backfill(self, backfill_id: str) -> list[dict[str, Any]]:
        return [self.runs[i] for i in self._runs_by_backfill.get(backfill_id, ())]

    def backfills_of_export(self, export_id: str, *, visible_only: bool = True) -> list[dict[str, Any]]:
        found = (self.backfills[i] for i in self._backfills_by_export.get(export_id, ()))
        return [b for b in found if b["_visible"] or not visible_only]

    # -- representations (PostHog's serializers) ---------------------------------------------------------
    def render_export(self, export: dict[str, Any]) -> dict[str, Any]:
        destination = export["destination"]
        runs = sorted(
            self.runs_of_export(export["id"]), key=lambda r: (r["created_at"], r["id"]), reverse=True
        )
        out: dict[str, Any] = {
            "id": export["id"],
            "team_id": export["team_id"],
            "name": export["name"],
            "model": export["model"],
            "destination": {
                "type": destination["type"],
                "config": strip_secrets(destination["type"], destination["config"]),
                "integration": destination.get("integration"),
            },
            "interval": export["interval"],
            "paused": export["paused"],
            "created_at": fmt(export["created_at"]),
            "last_updated_at": fmt(export["last_updated_at"]),
            "last_paused_at": fmt(export["last_paused_at"]),
            "start_at": fmt(export["start_at"]),
            "end_at": fmt(export["end_at"]),
            "latest_runs": [self.render_run(r) for r in runs[:10]],
            "schema": export["schema"],
            "filters": export["filters"],
        }
        if self.settings.api_generation == "new":
            offset_day, offset_hour = export["offset_day"], export["offset_hour"]
            if export["interval"] == "day":
                offset_hour = 0 if offset_hour is None else offset_hour
            elif export["interval"] == "week":
                offset_day = 0 if offset_day is None else offset_day
                offset_hour = 0 if offset_hour is None else offset_hour
            out.update(
                {
                    "hogql_modifiers": export["hogql_modifiers"],
                    "primary_key": export["primary_key"],
                    "version_key": export["version_key"],
                    "incremental_mode": export["incremental_mode"],
                    "timezone": export["timezone"],
                    "offset_day": offset_day,
                    "offset_hour": offset_hour,
                }
            )
        return out

    def render_run(self, run: dict[str, Any]) -> dict[str, Any]:
        out = {
            "id": run["id"],
            "status": run["status"],
            "records_completed": run["records_completed"],
            "latest_error": run["latest_error"],
            "data_interval_start": fmt(run["data_interval_start"]),
            "data_interval_end": fmt(run["data_interval_end"]),
            "cursor": run["cursor"],
            "created_at": fmt(run["created_at"]),
            "finished_at": fmt(run["finished_at"]),
            "last_updated_at": fmt(run["last_updated_at"]),
            "records_total_count": run["records_total_count"],
            "bytes_exported": run["bytes_exported"],
            "batch_export": run["batch_export"],
            "backfill": run["backfill"],
        }
        if self.settings.api_generation == "new":
            out["records_failed"] = None
            out["batch_export_on_demand"] = None
        return out

    def render_backfill(self, backfill: dict[str, Any], now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": backfill["id"],
            "progress": self.progress(backfill, now),
            "start_at": fmt(backfill["start_at"]),
            "end_at": fmt(backfill["end_at"]),
            "status": backfill["status"],
            "created_at": fmt(backfill["created_at"]),
            "finished_at": fmt(backfill["finished_at"]),
            "last_updated_at": fmt(backfill["last_updated_at"]),
            "team": backfill["team"],
            "batch_export": backfill["batch_export"],
        }
        if self.settings.api_generation == "new":
            out["total_records_count"] = backfill["total_records_count"]
            out["adjusted_start_at"] = fmt(backfill["adjusted_start_at"])
        return out

    def take_ignored_cancel(self, kind: str) -> bool:
        """Consume one scripted "acknowledged but not carried out" cancel for a run or backfill."""
        for key in (kind, "any"):
            if self.ignored_cancels.get(key, 0) > 0:
                self.ignored_cancels[key] -= 1
                return True
        return False

    def expected_runs(self, backfill: dict[str, Any], now: datetime) -> int:
        if self.settings.api_generation == "new" and backfill["total_records_count"] == 0:
            return 0
        start = backfill["adjusted_start_at"] or backfill["start_at"]
        if start is None:
            return 1
        end = backfill["end_at"]
        if end is None:
            end = backfill["finished_at"] or now
        export = self.exports.get(backfill["batch_export"])
        step = INTERVALS.get(export["interval"] if export else "hour", INTERVALS["hour"])
        return max(0, math.ceil((end - start) / step))

    def progress(self, backfill: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """PostHog's ``progress`` field: expected runs from the range, finished = Completed or Failed runs."""
        status = backfill["status"]
        if status == "Completed":
            total = self.expected_runs(backfill, now)
            return {"total_runs": total, "finished_runs": total, "progress": 1.0}
        if status not in ("Running", "Starting"):
            return None
        if backfill["start_at"] is None:
            return None
        expected = self.expected_runs(backfill, now)
        if not expected:
            return None
        finished = sum(
            1 for r in self.runs_of_backfill(backfill["id"]) if r["status"] in ("Completed", "Failed")
        )
        total = max(expected, finished)
        return {"total_runs": total, "finished_runs": finished, "progress": round(finished / total, 1)}

    @staticmethod
    def render_log(entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "log_source_id": entry["log_source_id"],
            "instance_id": entry["instance_id"],
            "timestamp": fmt(entry["timestamp"]),
            "level": entry["level"],
            "message": entry["message"],
        }
