"""Typed records for PostHog batch-exports resources, parsed once from JSON.

Every record keeps the full JSON body in ``raw`` (with secrets already stripped by PostHog) so callers can
read fields a newer PostHog adds before this module knows them. Unknown keys are never an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pendulum
from pendulum import DateTime

from airflow_provider_posthog.api.statuses import Outcome, backfill_outcome, run_outcome
from airflow_provider_posthog.exceptions import PostHogConfigError


def parse_datetime(value: Any) -> DateTime | None:
    """Parse PostHog's ISO-8601 timestamps (``Z`` suffix, optional microseconds) into aware UTC datetimes."""
    if value is None or value == "":
        return None
    parsed = pendulum.parse(str(value))
    if not isinstance(parsed, DateTime):
        # A date-only value (day/week backfill bounds of newer PostHog): midnight UTC.
        parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")  # type: ignore[union-attr]
    return parsed.in_timezone("UTC")


def to_utc(value: dt.datetime | dt.date | str, what: str = "A datetime") -> DateTime:
    """An argument as an aware UTC datetime: aware datetimes, ISO-8601 strings and dates (midnight UTC).

    Naive datetimes are refused: PostHog answers 400 for them and guessing a zone is how windows drift.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PostHogConfigError(f"{what} {value.isoformat()} is naive; pass a timezone-aware datetime.")
        return pendulum.instance(value.astimezone(dt.timezone.utc))
    try:
        parsed = parse_datetime(value)
    except Exception:
        raise PostHogConfigError(f"{what} {str(value)[:40]!r} is not an ISO-8601 date or datetime.") from None
    if parsed is None:
        raise PostHogConfigError(f"{what} must not be empty.")
    return parsed


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclasses.dataclass(frozen=True)
class BatchExportRun:
    """One run of an export over ``[data_interval_start, data_interval_end)``."""

    id: str
    status: str
    batch_export_id: str | None
    backfill_id: str | None
    data_interval_start: DateTime | None
    data_interval_end: DateTime | None
    created_at: DateTime | None
    finished_at: DateTime | None
    last_updated_at: DateTime | None
    records_completed: int | None
    records_total_count: int | None
    bytes_exported: int | None
    latest_error: str | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def outcome(self) -> Outcome:
        return run_outcome(self.status)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BatchExportRun:
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or ""),
            batch_export_id=data.get("batch_export"),
            backfill_id=data.get("backfill"),
            data_interval_start=parse_datetime(data.get("data_interval_start")),
            data_interval_end=parse_datetime(data.get("data_interval_end")),
            created_at=parse_datetime(data.get("created_at")),
            finished_at=parse_datetime(data.get("finished_at")),
            last_updated_at=parse_datetime(data.get("last_updated_at")),
            records_completed=_int_or_none(data.get("records_completed")),
            records_total_count=_int_or_none(data.get("records_total_count")),
            bytes_exported=_int_or_none(data.get("bytes_exported")),
            latest_error=data.get("latest_error"),
            raw=dict(data),
        )


@dataclasses.dataclass(frozen=True)
class BackfillProgress:
    total_runs: int
    finished_runs: int
    progress: float


@dataclasses.dataclass(frozen=True)
class Backfill:
    """A backfill of an export over ``[start_at, end_at)``; its runs carry ``backfill_id == id``."""

    id: str
    status: str
    batch_export_id: str | None
    team_id: int | None
    start_at: DateTime | None
    end_at: DateTime | None
    created_at: DateTime | None
    finished_at: DateTime | None
    last_updated_at: DateTime | None
    progress: BackfillProgress | None
    adjusted_start_at: DateTime | None
    total_records_count: int | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def outcome(self) -> Outcome:
        return backfill_outcome(self.status)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Backfill:
        progress = data.get("progress")
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or ""),
            batch_export_id=data.get("batch_export"),
            team_id=_int_or_none(data.get("team")),
            start_at=parse_datetime(data.get("start_at")),
            end_at=parse_datetime(data.get("end_at")),
            created_at=parse_datetime(data.get("created_at")),
            finished_at=parse_datetime(data.get("finished_at")),
            last_updated_at=parse_datetime(data.get("last_updated_at")),
            progress=(
                BackfillProgress(
                    total_runs=int(progress.get("total_runs") or 0),
                    finished_runs=int(progress.get("finished_runs") or 0),
                    progress=float(progress.get("progress") or 0.0),
                )
                if isinstance(progress, Mapping)
                else None
            ),
            adjusted_start_at=parse_datetime(data.get("adjusted_start_at")),
            total_records_count=_int_or_none(data.get("total_records_count")),
            raw=dict(data),
        )


@dataclasses.dataclass(frozen=True)
class BatchExport:
    """An export: where PostHog copies which model, how often. ``destination`` has secrets stripped."""

    id: str
    team_id: int | None
    name: str
    model: str | None
    destination_type: str
    destination: Mapping[str, Any]
    interval: str
    paused: bool
    created_at: DateTime | None
    last_updated_at: DateTime | None
    last_paused_at: DateTime | None
    start_at: DateTime | None
    end_at: DateTime | None
    latest_runs: tuple[BatchExportRun, ...]
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BatchExport:
        destination = data.get("destination") or {}
        return cls(
            id=str(data["id"]),
            team_id=_int_or_none(data.get("team_id")),
            name=str(data.get("name") or ""),
            model=data.get("model"),
            destination_type=str(destination.get("type") or ""),
            destination=dict(destination),
            interval=str(data.get("interval") or ""),
            paused=bool(data.get("paused")),
            created_at=parse_datetime(data.get("created_at")),
            last_updated_at=parse_datetime(data.get("last_updated_at")),
            last_paused_at=parse_datetime(data.get("last_paused_at")),
            start_at=parse_datetime(data.get("start_at")),
            end_at=parse_datetime(data.get("end_at")),
            latest_runs=tuple(BatchExportRun.from_api(r) for r in data.get("latest_runs") or ()),
            raw=dict(data),
        )


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One log line of an export (``instance_id`` is the Temporal workflow run id, not the run id)."""

    timestamp: DateTime | None
    level: str
    message: str
    log_source_id: str | None
    instance_id: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> LogEntry:
        return cls(
            timestamp=parse_datetime(data.get("timestamp")),
            level=str(data.get("level") or "").upper(),
            message=str(data.get("message") or ""),
            log_source_id=data.get("log_source_id"),
            instance_id=data.get("instance_id"),
        )
