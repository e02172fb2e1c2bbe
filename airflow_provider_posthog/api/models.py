"""Typed records for PostHog batch-exports resources, parsed once from JSON.

Every record keeps the full JSON body in ``raw`` (with secrets already stripped by PostHog) so callers can
read fields a newer PostHog adds before this module knows them. Unknown keys are never an error; a field
this module reads in a shape PostHog never sends (a row without ``id``, a status that is no word, a
timestamp or count that is none) is
:class:`~airflow_provider_posthog.exceptions.PostHogUnexpectedResponseError` naming the object and the
field: a guess could turn a failure into a success.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import pendulum
from pendulum import DateTime

from airflow_provider_posthog.api.http import describe, unexpected
from airflow_provider_posthog.api.identity import identity_config
from airflow_provider_posthog.api.statuses import Outcome, backfill_outcome, run_outcome
from airflow_provider_posthog.exceptions import PostHogConfigError

#: What PostHog's ids (UUIDs) and statuses (``Completed``, ``FailedRetryable``) look like. Only values of
#: this form are kept and ever shown in a message; an API key (``phx_…``, ``phc_…``) never has it.
_TOKEN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:-]{0,63}")


def parse_datetime(value: Any) -> DateTime | None:
    """Parse PostHog's ISO-8601 timestamps (``Z`` suffix, optional microseconds) into aware UTC datetimes."""
    if value is None or value == "":
        return None
    try:  # the C parser first: a poll parses several timestamps, pendulum's parser costs ten times more
        fast = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        fast = None
    if fast is not None:
        if fast.tzinfo is not None:
            fast = fast.astimezone(dt.timezone.utc)
        return DateTime(*fast.timetuple()[:6], fast.microsecond, tzinfo=pendulum.UTC)
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


# -- reading one field of a row, strictly -------------------------------------------------------------------


def _row(kind: str, data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise unexpected(f"PostHog sent {describe(data)} where a {kind} (a JSON object) was expected.")
    return data


def _token(kind: str, data: Mapping[str, Any], field: str, noun: str = "an id") -> str:
    """A required id or status: a non-empty string (or an integer id) of PostHog's form."""
    value = data.get(field)
    if value is None or value == "":
        raise unexpected(f"PostHog sent a {kind} without {field!r}; every {kind} PostHog sends has one.")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not _TOKEN.fullmatch(str(value)):
        raise unexpected(f"PostHog sent a {kind} whose {field!r} is {describe(value)}, not {noun}.")
    return str(value)


def _status(kind: str, data: Mapping[str, Any]) -> str:
    """A status, ``""`` when missing: what a status means (a missing or unknown one fails closed) is the
    status table's rule, but a value not shaped like a status is no answer of PostHog's."""
    if data.get("status") in (None, ""):
        return ""
    return _token(kind, data, "status", f"a {kind} status")


def _optional_token(kind: str, data: Mapping[str, Any], field: str) -> str | None:
    return None if data.get(field) is None else _token(kind, data, field)


def _when(kind: str, data: Mapping[str, Any], field: str) -> DateTime | None:
    value = data.get(field)
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise TypeError
        return parse_datetime(value)
    except Exception:
        raise unexpected(
            f"PostHog sent a {kind} whose {field!r} is {describe(value)}, not an ISO-8601 timestamp."
        ) from None


def _count(kind: str, data: Mapping[str, Any], field: str) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        number = float(value) if isinstance(value, float) else int(value)
        if isinstance(number, float) and not number.is_integer():
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):
        raise unexpected(
            f"PostHog sent a {kind} whose {field!r} is {describe(value)}, not a count."
        ) from None


def _text(kind: str, data: Mapping[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None or isinstance(value, str):
        return value
    raise unexpected(f"PostHog sent a {kind} whose {field!r} is {describe(value)}, not a string.")


def _object(kind: str, data: Mapping[str, Any], field: str) -> Mapping[str, Any] | None:
    value = data.get(field)
    if value is None or isinstance(value, Mapping):
        return value
    raise unexpected(f"PostHog sent a {kind} whose {field!r} is {describe(value)}, not a JSON object.")


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
    def from_api(cls, data: Any) -> BatchExportRun:
        kind = "batch export run"
        data = _row(kind, data)
        return cls(
            id=_token(kind, data, "id"),
            status=_status(kind, data),
            batch_export_id=_optional_token(kind, data, "batch_export"),
            backfill_id=_optional_token(kind, data, "backfill"),
            data_interval_start=_when(kind, data, "data_interval_start"),
            data_interval_end=_when(kind, data, "data_interval_end"),
            created_at=_when(kind, data, "created_at"),
            finished_at=_when(kind, data, "finished_at"),
            last_updated_at=_when(kind, data, "last_updated_at"),
            records_completed=_count(kind, data, "records_completed"),
            records_total_count=_count(kind, data, "records_total_count"),
            bytes_exported=_count(kind, data, "bytes_exported"),
            latest_error=_text(kind, data, "latest_error"),
            raw=dict(data),
        )


@dataclasses.dataclass(frozen=True)
class BackfillProgress:
    total_runs: int
    finished_runs: int
    progress: float

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BackfillProgress:
        kind = "backfill progress"
        fraction = data.get("progress")
        if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))):
            raise unexpected(f"PostHog sent a {kind} whose 'progress' is {describe(fraction)}, not a number.")
        return cls(
            total_runs=_count(kind, data, "total_runs") or 0,
            finished_runs=_count(kind, data, "finished_runs") or 0,
            progress=float(fraction or 0.0),
        )


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
    def from_api(cls, data: Any) -> Backfill:
        kind = "backfill"
        data = _row(kind, data)
        progress = _object(kind, data, "progress")
        return cls(
            id=_token(kind, data, "id"),
            status=_status(kind, data),
            batch_export_id=_optional_token(kind, data, "batch_export"),
            team_id=_count(kind, data, "team"),
            start_at=_when(kind, data, "start_at"),
            end_at=_when(kind, data, "end_at"),
            created_at=_when(kind, data, "created_at"),
            finished_at=_when(kind, data, "finished_at"),
            last_updated_at=_when(kind, data, "last_updated_at"),
            progress=None if progress is None else BackfillProgress.from_api(progress),
            adjusted_start_at=_when(kind, data, "adjusted_start_at"),
            total_records_count=_count(kind, data, "total_records_count"),
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
    def from_api(cls, data: Any) -> BatchExport:
        kind = "batch export"
        data = _row(kind, data)
        destination = _object(kind, data, "destination") or {}
        paused = data.get("paused")
        if paused is not None and not isinstance(paused, bool):
            raise unexpected(f"PostHog sent a {kind} whose 'paused' is {describe(paused)}, not a boolean.")
        latest_runs = data.get("latest_runs")
        if latest_runs is not None and not isinstance(latest_runs, list):
            raise unexpected(
                f"PostHog sent a {kind} whose 'latest_runs' is {describe(latest_runs)}, not a list."
            )
        return cls(
            id=_token(kind, data, "id"),
            team_id=_count(kind, data, "team_id"),
            name=_text(kind, data, "name") or "",
            model=_text(kind, data, "model"),
            destination_type=_text("batch export destination", destination, "type") or "",
            destination=dict(destination),
            interval=_text(kind, data, "interval") or "",
            paused=bool(paused),
            created_at=_when(kind, data, "created_at"),
            last_updated_at=_when(kind, data, "last_updated_at"),
            last_paused_at=_when(kind, data, "last_paused_at"),
            start_at=_when(kind, data, "start_at"),
            end_at=_when(kind, data, "end_at"),
            latest_runs=tuple(BatchExportRun.from_api(r) for r in latest_runs or ()),
            raw=dict(data),
        )

    def identity(self) -> dict[str, Any]:
        """What names this export and where it writes, as plain JSON that may leave the process (a trigger
        event): the destination reduced to ``api.identity.IDENTITY_KEYS``, never a credential, and no runs."""
        data = self.raw
        schema, query = data.get("schema"), data.get("hogql_query")
        return {
            "id": self.id,
            "name": self.name,
            "model": self.model,
            "interval": self.interval,
            "destination": {"type": self.destination_type, "config": identity_config(self.destination)},
            "schema": dict(schema) if isinstance(schema, Mapping) else None,
            "hogql_query": query if isinstance(query, str) else None,
        }


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One log line of an export (``instance_id`` is the Temporal workflow run id, not the run id)."""

    timestamp: DateTime | None
    level: str
    message: str
    log_source_id: str | None
    instance_id: str | None

    @classmethod
    def from_api(cls, data: Any) -> LogEntry:
        data = _row("log entry", data)
        return cls(
            timestamp=_when("log entry", data, "timestamp"),
            level=str(data.get("level") or "").upper(),
            message=str(data.get("message") or ""),
            log_source_id=data.get("log_source_id"),
            instance_id=data.get("instance_id"),
        )
