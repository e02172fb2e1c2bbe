"""One operation per PostHog batch-exports endpoint, each building its own request (sans-I/O).

The sync and async hooks drive the same generators, so paging and log windows cannot drift apart between
the worker and the triggerer. Backfill creation and lookup live in ``api/backfills.py``; polls and cancels
of a job in ``api/jobs.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.errors import refuses_personal_keys
from airflow_provider_posthog.api.http import (
    EXPORTS_PAGE_SIZE,
    LOGS_MAX_LIMIT,
    MAX_PAGES,
    NOW,
    ApiResponse,
    DateLike,
    Operation,
    RequestSpec,
    export_path,
    fetch_object,
    follow_cursor,
    next_offset_request,
    page_results,
    query,
    unexpected,
)
from airflow_provider_posthog.api.intervals import ExportSchedule
from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun, LogEntry
from airflow_provider_posthog.exceptions import (
    PostHogAuthError,
    PostHogConfigError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pendulum import DateTime

log = logging.getLogger(__name__)

#: Sent as ``after`` on every single-run action: PostHog filters run lookups (retrieve, cancel, retry) by
#: ``created_at`` within the last 7 days unless ``after`` is given, which makes older runs 404.
RUNS_SINCE = "2000-01-01T00:00:00Z"
ANY_AGE = (("after", RUNS_SINCE),)


# -- the object asked for, and no other ---------------------------------------------------------------------


def same_id(asked: str, got: str | None) -> bool:
    """Whether PostHog's ``got`` names the object asked for as ``asked`` (UUIDs in any case or form)."""
    if got is None:
        return False
    asked = str(asked).strip()
    if asked == got:
        return True
    try:
        return uuid.UUID(asked) == uuid.UUID(got)
    except ValueError:
        return False


def check_answered(kind: str, asked: str, got: str) -> None:
    """Fail closed when PostHog answers for another object than the one asked for: its status would be
    reported as this one's. (PostHog's ids are UUIDs, unique across exports: the id alone names it.)"""
    if not same_id(asked, got):
        raise unexpected(f"PostHog answered {kind} {got} when asked for {kind} {asked}.")


# -- exports ------------------------------------------------------------------------------------------------


def list_batch_exports() -> Operation[list[BatchExport]]:
    """Every export of the project, following limit/offset pages (an error past :data:`MAX_PAGES`)."""
    spec = RequestSpec("GET", export_path(), query([("limit", EXPORTS_PAGE_SIZE), ("offset", 0)]))
    out: list[BatchExport] = []
    for _ in range(MAX_PAGES):
        response: ApiResponse = yield spec
        out.extend(BatchExport.from_api(r) for r in page_results(response.body, "the list of batch exports"))
        following = next_offset_request(spec, response.body)
        if following is None:
            return out
        spec = following
    raise unexpected(
        f"PostHog's pages of batch exports did not end after {MAX_PAGES} pages ({len(out)} exports); "
        "stopped instead of returning part of the list."
    )


@dataclasses.dataclass(frozen=True)
class ExportsNamed:
    """The exports named exactly ``name``; ``similar``: those whose names differ from it only in case or
    spaces (for an error message); ``listed``: how many exports the project has."""

    name: str
    matches: tuple[BatchExport, ...]
    similar: tuple[BatchExport, ...]
    listed: int


def exports_named(name: str, exports: Sequence[BatchExport]) -> ExportsNamed:
    """The one rule for finding an export by name: equal names, exactly (PostHog keeps them neither unique
    nor normalised)."""
    folded = " ".join(name.split()).casefold()
    return ExportsNamed(
        name=name,
        matches=tuple(e for e in exports if e.name == name),
        similar=tuple(e for e in exports if e.name != name and " ".join(e.name.split()).casefold() == folded),
        listed=len(exports),
    )


def batch_exports_named(name: str) -> Operation[ExportsNamed]:
    """The exports named ``name``. PostHog's list has no name filter, so this is the list of exports (one
    request per 100 exports; deleted exports are not listed) matched by :func:`exports_named`."""
    return exports_named(name, (yield from list_batch_exports()))


def get_batch_export(batch_export_id: str) -> Operation[BatchExport]:
    spec = RequestSpec("GET", export_path(batch_export_id))
    export = BatchExport.from_api((yield from fetch_object(spec)))
    check_answered("batch export", batch_export_id, export.id)
    return export


def create_batch_export(payload: Mapping[str, Any]) -> Operation[BatchExport]:
    spec = RequestSpec("POST", export_path(), json=dict(payload), idempotent=False)
    return BatchExport.from_api((yield from fetch_object(spec)))


#: The schedule fields PostHog validates together.
OFFSET_FIELDS = ("offset_day", "offset_hour")


def update_batch_export(
    batch_export_id: str, payload: Mapping[str, Any], *, partial: bool = True
) -> Operation[BatchExport]:
    """PATCH (``partial``) or PUT the export; an offset change sends ``interval`` and both offsets.

    PostHog validates offsets only against an ``interval`` in the same body: an offset without it reaches
    read-only fields (HTTP 500), and with ``week`` a missing offset is reset to 0 (Sunday, 00:00). So an
    update that changes an offset but lacks ``interval`` or the other offset reads the export first (one
    GET) and sends the current values with it.
    """
    body = dict(payload)
    if _schedule_incomplete(body):
        body = _with_schedule(body, (yield from get_batch_export(batch_export_id)))
    method = "PATCH" if partial else "PUT"
    spec = RequestSpec(method, export_path(batch_export_id), json=body)
    return BatchExport.from_api((yield from fetch_object(spec)))


def _schedule_incomplete(body: Mapping[str, Any]) -> bool:
    if not any(field in body for field in OFFSET_FIELDS):
        return False
    interval = body.get("interval")
    if interval is None:
        return True
    if interval == "week":
        return not all(field in body for field in OFFSET_FIELDS)
    return interval == "day" and "offset_hour" not in body


def _with_schedule(body: dict[str, Any], export: BatchExport) -> dict[str, Any]:
    """``body`` with the export's interval and current offsets where it lacks them (PostHog reads a
    missing day/week offset as 0)."""
    if body.get("interval") is None:
        body["interval"] = export.raw.get("interval") or export.interval
    wanted = {"week": OFFSET_FIELDS, "day": ("offset_hour",)}.get(str(body["interval"]), ())
    for field in wanted:
        if field not in body:
            body[field] = int(export.raw.get(field) or 0)
    return body


def delete_batch_export(batch_export_id: str) -> Operation[None]:
    yield RequestSpec("DELETE", export_path(batch_export_id))
    return None


def pause_batch_export(batch_export_id: str) -> Operation[None]:
    # Pausing twice is a no-op on PostHog's side: safe to resend.
    yield RequestSpec("POST", export_path(batch_export_id, "pause"), json={})
    return None


def unpause_request(batch_export_id: str) -> RequestSpec:
    """Unpause, never with PostHog's own ``backfill`` flag (it backfills from ``last_paused_at`` unchecked,
    the whole history when that is unset: ``api/unpause.py`` backfills from a known start instead).
    Unpausing an unpaused export is a no-op: safe to resend."""
    return RequestSpec("POST", export_path(batch_export_id, "unpause"), json={})


def get_batch_export_logs(
    batch_export_id: str,
    *,
    after: DateLike | None = None,
    before: DateLike | None = None,
    level: str | Sequence[str] | None = None,
    search: str | None = None,
    instance_id: str | None = None,
    limit: int = LOGS_MAX_LIMIT,
) -> Operation[list[LogEntry]]:
    """Newest first, at most ``limit`` (PostHog returns one page of ``limit`` entries).

    ``level`` is sent comma-separated (``ERROR,WARNING``). PostHog versions whose logs endpoint refuses
    personal API keys give ``[]`` and one warning, not an error: logs are context for a failure, never a
    reason for one.
    """
    if not 1 <= int(limit) <= LOGS_MAX_LIMIT:
        raise PostHogConfigError(f"Log limit must be between 1 and {LOGS_MAX_LIMIT}, got {limit}.")
    levels = [level] if isinstance(level, str) else list(level or [])
    level_param = ",".join(lv.strip().upper() for lv in levels if lv.strip()) or None
    params = query(
        [
            ("limit", int(limit)),
            ("after", after),
            ("before", before),
            ("level", level_param),
            ("search", search),
            ("instance_id", instance_id),
        ]
    )
    try:
        response: ApiResponse = yield RequestSpec("GET", export_path(batch_export_id, "logs"), params)
    except PostHogAuthError as exc:
        if not refuses_personal_keys(exc):
            raise
        log.warning("This PostHog version does not serve batch export logs to personal API keys: %s", exc)
        return []
    return [LogEntry.from_api(r) for r in page_results(response.body, "the logs of a batch export")]


# -- runs ---------------------------------------------------------------------------------------------------


def list_runs(
    batch_export_id: str,
    *,
    after: DateLike | None = None,
    before: DateLike | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    ordering: str | None = None,
    status: str | Sequence[str] | None = None,
) -> Operation[list[BatchExportRun]]:
    """Every run matching the filters, all cursor pages (PostHog's default: 7 days of ``created_at``)."""
    statuses = [status] if isinstance(status, str) else list(status or [])
    params = query(
        [
            ("ordering", ordering),
            ("after", after),
            ("before", before),
            ("start", start),
            ("end", end),
            ("status", statuses or None),
        ]
    )
    rows = yield from follow_cursor(RequestSpec("GET", export_path(batch_export_id, "runs"), params))
    return [BatchExportRun.from_api(r) for r in rows]


def get_run(batch_export_id: str, run_id: str) -> Operation[BatchExportRun]:
    """One run, whatever its age (the request carries an explicit ``after``)."""
    spec = RequestSpec("GET", export_path(batch_export_id, "runs", run_id), ANY_AGE)
    run = BatchExportRun.from_api((yield from fetch_object(spec)))
    check_answered("run", run_id, run.id)
    return run


def get_run_logs(
    batch_export_id: str,
    run_id: str,
    *,
    level: str | Sequence[str] | None = None,
    limit: int = LOGS_MAX_LIMIT,
) -> Operation[list[LogEntry]]:
    """A run's log lines, newest first: export-level logs inside the run's lifetime.

    PostHog's run-level logs endpoint does not return a run's lines in practice, so this reads the export's
    logs between the run's ``created_at`` and ``finished_at`` (or now), one second of slack either side.
    Concurrent runs of the same export (a backfill) can contribute lines to the same window. Where logs are
    closed to personal API keys this returns ``[]`` with a warning.
    """
    run = yield from get_run(batch_export_id, run_id)
    after = run.created_at.subtract(seconds=1) if run.created_at else None
    finished = run.finished_at or (yield NOW)
    before = finished.add(seconds=1)
    return (
        yield from get_batch_export_logs(
            batch_export_id, after=after, before=before, level=level, limit=limit
        )
    )


# -- backfills ----------------------------------------------------------------------------------------------


def list_backfills_request(batch_export_id: str, *, ordering: str | None = None) -> RequestSpec:
    """First page of an export's backfills (50 a page)."""
    return RequestSpec("GET", export_path(batch_export_id, "backfills"), query([("ordering", ordering)]))


def list_backfills(batch_export_id: str, *, ordering: str | None = None) -> Operation[list[Backfill]]:
    rows = yield from follow_cursor(list_backfills_request(batch_export_id, ordering=ordering))
    return [Backfill.from_api(r) for r in rows]


def get_backfill(batch_export_id: str, backfill_id: str) -> Operation[Backfill]:
    spec = RequestSpec("GET", export_path(batch_export_id, "backfills", backfill_id))
    backfill = Backfill.from_api((yield from fetch_object(spec)))
    check_answered("backfill", backfill_id, backfill.id)
    return backfill


# -- a backfill's runs -------------------------------------------------------------------------------------


def list_backfill_runs(
    batch_export_id: str, backfill: Backfill, *, schedule: ExportSchedule | None = None
) -> Operation[list[BatchExportRun]]:
    """Every run of ``backfill`` (matched on the run's ``backfill``), the first one included: the runs of
    :func:`list_runs_over_backfill` tagged with it."""
    runs = yield from list_runs_over_backfill(batch_export_id, backfill, schedule=schedule)
    return [r for r in runs if r.backfill_id == backfill.id]


#: How :func:`list_runs_over_backfill` orders a backfill's runs (and so filters them by data interval).
BACKFILL_RUNS_ORDERING = "data_interval_start"


def backfill_runs_span(
    backfill: Backfill, schedule: ExportSchedule | None
) -> tuple[DateTime, DateTime] | None:
    """The data-interval range :func:`list_runs_over_backfill` lists: from one interval before the
    aligned-down start to the aligned-up end; ``None`` for an open range or without ``schedule``."""
    starts = [t for t in (backfill.start_at, backfill.adjusted_start_at) if t is not None]
    if not starts or backfill.end_at is None or schedule is None:
        return None
    return schedule.floor(min(starts)) - schedule.length, schedule.ceil(backfill.end_at)


def list_runs_over_backfill(
    batch_export_id: str, backfill: Backfill, *, schedule: ExportSchedule | None = None
) -> Operation[list[BatchExportRun]]:
    """Every run of the export over ``backfill``'s range, whichever backfill (or the schedule) ran it.

    PostHog aligns a backfill's first run down to the export's interval, so it can start before
    ``start_at``; runs are listed by data interval from one interval before the aligned-down start
    (``adjusted_start_at`` where PostHog reports it) to ``end_at``, one page per 100 intervals whatever
    else the export ran meanwhile. Without ``schedule`` the export is read once to learn its interval.
    An open-ended backfill's runs are listed by creation time instead.
    """
    closed = backfill.end_at is not None and (backfill.start_at or backfill.adjusted_start_at) is not None
    if closed and schedule is None:
        try:
            schedule = ExportSchedule.of((yield from get_batch_export(batch_export_id)))
        except PostHogConfigError as exc:  # an interval this provider does not know: list by creation
            log.warning("Listing the runs of backfill %s by creation time: %s", backfill.id, exc)
    span = backfill_runs_span(backfill, schedule)
    if span is not None:
        runs = yield from list_runs(
            batch_export_id, ordering=BACKFILL_RUNS_ORDERING, start=span[0], end=span[1]
        )
    else:
        created: DateTime = backfill.created_at or (yield NOW).subtract(days=30)
        runs = yield from list_runs(batch_export_id, after=created.subtract(hours=1))
    return runs
