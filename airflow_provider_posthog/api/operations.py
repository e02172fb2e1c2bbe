"""Every hook method written once, as a transport-free generator (sans-I/O).

An operation yields :class:`~airflow_provider_posthog.api.requests.RequestSpec` (the driver sends it, with the
retry policy, and sends back an :class:`ApiResponse` or throws the mapped exception into the generator) or
:class:`Sleep` (the driver sleeps with ``time.sleep`` or ``asyncio.sleep``), and finally returns a typed
result. The sync and async hooks are two ~20-line drivers over the same operations, so pagination, backfill
resolution and log windows cannot drift apart between the worker and the triggerer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pendulum
from pendulum import DateTime

from airflow_provider_posthog.api import requests as rq
from airflow_provider_posthog.api.models import (
    Backfill,
    BatchExport,
    BatchExportRun,
    LogEntry,
    parse_datetime,
)
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConfigError,
    PostHogConnectError,
    PostHogNotFoundError,
    PostHogServerError,
    PostHogTransportError,
    PostHogValidationError,
)

if TYPE_CHECKING:
    from airflow_provider_posthog.api.requests import ApiResponse

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


Command = rq.RequestSpec | Sleep
Operation = Generator[Command, Any, T]


@dataclasses.dataclass(frozen=True)
class BackfillLookup:
    """How long to look for a backfill PostHog accepted but has not written yet (API.md §4.15).

    PostHog's own tests wait up to 30 s ([DOCS]) / 120 s ([NEW]) for the row.
    """

    timeout: float = 120.0
    poll_initial: float = 1.0
    poll_max: float = 5.0
    #: Clock skew allowed between this machine and PostHog when matching ``created_at``.
    clock_skew: float = 120.0
    #: POSTs of one create_backfill/retry_run in total (only resent when no backfill appeared).
    max_posts: int = 2


def _body(response: ApiResponse) -> Mapping[str, Any]:
    body = response.body
    if not isinstance(body, Mapping):
        raise PostHogAPIError(f"PostHog answered HTTP {response.status} with an unexpected JSON body.")
    return body


def _get(spec: rq.RequestSpec) -> Generator[Command, Any, Mapping[str, Any]]:
    response: ApiResponse = yield spec
    return _body(response)


def _as_utc(value: rq.DateLike, what: str) -> DateTime:
    if isinstance(value, dt.datetime):
        rq.format_datetime(value)  # rejects naive datetimes
        return pendulum.instance(value).in_timezone("UTC")
    try:
        parsed = parse_datetime(value)
    except Exception:
        raise PostHogConfigError(f"{what} {str(value)[:40]!r} is not an ISO-8601 date or datetime.") from None
    if parsed is None:
        raise PostHogConfigError(f"{what} must not be empty.")
    return parsed


# -- exports ------------------------------------------------------------------------------------------------


def list_batch_exports(project_id: int) -> Operation[list[BatchExport]]:
    spec: rq.RequestSpec | None = rq.list_batch_exports(project_id)
    out: list[BatchExport] = []
    pages = 0
    while spec is not None and pages < rq.MAX_PAGES:
        response: ApiResponse = yield spec
        pages += 1
        out.extend(BatchExport.from_api(r) for r in rq.page_results(response.body))
        spec = rq.next_offset_request(spec, response.body)
    return out


def get_batch_export(project_id: int, batch_export_id: str) -> Operation[BatchExport]:
    return BatchExport.from_api((yield from _get(rq.get_batch_export(project_id, batch_export_id))))


def create_batch_export(project_id: int, payload: Mapping[str, Any]) -> Operation[BatchExport]:
    return BatchExport.from_api((yield from _get(rq.create_batch_export(project_id, payload))))


def update_batch_export(
    project_id: int, batch_export_id: str, payload: Mapping[str, Any], *, partial: bool = True
) -> Operation[BatchExport]:
    spec = rq.update_batch_export(project_id, batch_export_id, payload, partial=partial)
    return BatchExport.from_api((yield from _get(spec)))


def delete_batch_export(project_id: int, batch_export_id: str) -> Operation[None]:
    yield rq.delete_batch_export(project_id, batch_export_id)
    return None


def pause_batch_export(project_id: int, batch_export_id: str) -> Operation[None]:
    yield rq.pause_batch_export(project_id, batch_export_id)
    return None


def unpause_batch_export(project_id: int, batch_export_id: str, *, backfill: bool = False) -> Operation[None]:
    yield rq.unpause_batch_export(project_id, batch_export_id, backfill=backfill)
    return None


def get_batch_export_logs(
    project_id: int,
    batch_export_id: str,
    *,
    after: rq.DateLike | None = None,
    before: rq.DateLike | None = None,
    level: str | Sequence[str] | None = None,
    search: str | None = None,
    instance_id: str | None = None,
    limit: int = rq.LOGS_MAX_LIMIT,
) -> Operation[list[LogEntry]]:
    """Newest first, at most ``limit`` (PostHog returns one page of ``limit`` entries, API.md §11)."""
    spec = rq.batch_export_logs(
        project_id,
        batch_export_id,
        after=after,
        before=before,
        level=level,
        search=search,
        instance_id=instance_id,
        limit=limit,
    )
    response: ApiResponse = yield spec
    return [LogEntry.from_api(r) for r in rq.page_results(response.body)]


# -- runs ---------------------------------------------------------------------------------------------------


def _follow_cursor(spec: rq.RequestSpec, base_url: str) -> Generator[Command, Any, list[Mapping[str, Any]]]:
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    current: rq.RequestSpec | None = spec
    while current is not None and len(seen) < rq.MAX_PAGES:
        response: ApiResponse = yield current
        out.extend(rq.page_results(response.body))
        current = rq.next_cursor_request(current, response.body, base_url)
        if current is not None:
            if current.url in seen:  # a server bug must not loop forever
                break
            seen.add(current.url or "")
    return out


def list_runs(
    project_id: int,
    batch_export_id: str,
    *,
    base_url: str,
    after: rq.DateLike | None = None,
    before: rq.DateLike | None = None,
    start: rq.DateLike | None = None,
    end: rq.DateLike | None = None,
    ordering: str | None = None,
    status: str | Sequence[str] | None = None,
) -> Operation[list[BatchExportRun]]:
    spec = rq.list_runs(
        project_id,
        batch_export_id,
        after=after,
        before=before,
        start=start,
        end=end,
        ordering=ordering,
        status=status,
    )
    rows = yield from _follow_cursor(spec, base_url)
    return [BatchExportRun.from_api(r) for r in rows]


def get_run(project_id: int, batch_export_id: str, run_id: str) -> Operation[BatchExportRun]:
    return BatchExportRun.from_api((yield from _get(rq.get_run(project_id, batch_export_id, run_id))))


def _cancel(spec: rq.RequestSpec, what: str) -> Operation[None]:
    """Send a cancel; already cancelled (e.g. a resent request) counts as done, any other 400 is raised."""
    try:
        yield spec
    except PostHogValidationError as exc:
        if "in 'Cancelled' status" not in (exc.detail or ""):
            raise
        log.info("PostHog %s was already cancelled.", what)
    return None


def cancel_run(project_id: int, batch_export_id: str, run_id: str) -> Operation[None]:
    """Cancel a Starting/Running run."""
    return (yield from _cancel(rq.cancel_run(project_id, batch_export_id, run_id), f"run {run_id}"))


def get_run_logs(
    project_id: int,
    batch_export_id: str,
    run_id: str,
    *,
    level: str | Sequence[str] | None = None,
    limit: int = rq.LOGS_MAX_LIMIT,
) -> Operation[list[LogEntry]]:
    """A run's log lines, newest first: export-level logs inside the run's lifetime (API.md §11).

    PostHog's run-level logs endpoint is broken in practice, so this reads the export's logs between the
    run's ``created_at`` and ``finished_at`` (or now), one second of slack either side. Concurrent runs of
    the same export (a backfill) can contribute lines to the same window. On PostHog versions whose logs
    endpoint refuses personal API keys this returns ``[]`` with a warning instead of failing the caller.
    """
    run = yield from get_run(project_id, batch_export_id, run_id)
    after = run.created_at.subtract(seconds=1) if run.created_at else None
    finished = run.finished_at or pendulum.now("UTC")
    before = finished.add(seconds=1)
    try:
        return (
            yield from get_batch_export_logs(
                project_id, batch_export_id, after=after, before=before, level=level, limit=limit
            )
        )
    except PostHogAuthError as exc:
        if "personal API key access" not in (exc.detail or ""):
            raise
        log.warning("This PostHog version does not serve batch export logs to personal API keys: %s", exc)
        return []


def retry_run(
    project_id: int, batch_export_id: str, run_id: str, *, base_url: str, lookup: BackfillLookup
) -> Operation[Backfill]:
    """Re-export one run's interval (PostHog starts a one-interval backfill) and return that backfill."""
    run = yield from get_run(project_id, batch_export_id, run_id)
    if run.data_interval_end is None:
        raise PostHogAPIError(f"PostHog run {run_id} has no data_interval_end; cannot track its retry.")
    spec = rq.retry_run(project_id, batch_export_id, run_id)
    target = _Target(start=run.data_interval_start, end=run.data_interval_end, loose_start=True)
    return (yield from _submit_backfill(project_id, batch_export_id, spec, target, base_url, lookup))


# -- backfills ----------------------------------------------------------------------------------------------


def list_backfills(
    project_id: int, batch_export_id: str, *, base_url: str, ordering: str | None = None
) -> Operation[list[Backfill]]:
    rows = yield from _follow_cursor(
        rq.list_backfills(project_id, batch_export_id, ordering=ordering), base_url
    )
    return [Backfill.from_api(r) for r in rows]


def get_backfill(project_id: int, batch_export_id: str, backfill_id: str) -> Operation[Backfill]:
    return Backfill.from_api((yield from _get(rq.get_backfill(project_id, batch_export_id, backfill_id))))


def cancel_backfill(project_id: int, batch_export_id: str, backfill_id: str) -> Operation[None]:
    """Cancel a Starting/Running backfill."""
    return (
        yield from _cancel(
            rq.cancel_backfill(project_id, batch_export_id, backfill_id), f"backfill {backfill_id}"
        )
    )


@dataclasses.dataclass(frozen=True)
class _Target:
    """The range a new backfill should have, to recognise its row."""

    start: DateTime | None
    end: DateTime
    #: [DOCS] PostHog may move ``start_at`` forward to the first data (API.md §8.2).
    loose_start: bool = True

    def matches(self, backfill: Backfill) -> bool:
        if backfill.end_at != self.end:
            return False
        if self.start is None or backfill.start_at == self.start:
            return True
        if not self.loose_start or backfill.start_at is None:
            return False
        return self.start < backfill.start_at < self.end


def find_backfill(
    project_id: int,
    batch_export_id: str,
    start_at: rq.DateLike,
    end_at: rq.DateLike,
    *,
    base_url: str,
    active_only: bool = False,
) -> Operation[Backfill | None]:
    """The newest backfill of this export over exactly ``[start_at, end_at)`` (to re-attach after a retry).

    ``active_only`` keeps only backfills still Starting/Running. Matching is exact on both bounds: a row
    whose start PostHog moved to the first available data is not matched (a duplicate beats missing data).
    """
    target = _Target(_as_utc(start_at, "start_at"), _as_utc(end_at, "end_at"), loose_start=False)
    spec: rq.RequestSpec | None = rq.list_backfills(project_id, batch_export_id, ordering="-created_at")
    pages = 0
    best: Backfill | None = None
    while spec is not None and pages < rq.MAX_PAGES:
        response: ApiResponse = yield spec
        pages += 1
        for row in rq.page_results(response.body):
            backfill = Backfill.from_api(row)
            if not target.matches(backfill):
                continue
            if active_only and backfill.outcome is not Outcome.RUNNING:
                continue
            if best is None or (backfill.created_at or pendulum.DateTime.min) > (
                best.created_at or pendulum.DateTime.min
            ):
                best = backfill
        if best is not None:
            break  # pages are newest first
        spec = rq.next_cursor_request(spec, response.body, base_url)
    return best


def _asks_for_dates(exc: PostHogValidationError) -> bool:
    return "expect only the date component" in (exc.detail or "")


def _date_bounds(export: BatchExport, start: DateTime, end: DateTime) -> tuple[str, str, _Target]:
    """[NEW] day/week exports take dates, read in the export's timezone with its ``offset_hour``."""
    tz_name = str(export.raw.get("timezone") or "UTC")
    try:
        tz = pendulum.timezone(tz_name)
    except Exception:
        tz = pendulum.timezone("UTC")
    offset_hour = int(export.raw.get("offset_hour") or 0)
    start_date, end_date = start.in_timezone(tz).date(), end.in_timezone(tz).date()

    def _at(d: dt.date) -> DateTime:
        return pendulum.datetime(d.year, d.month, d.day, offset_hour, tz=tz).in_timezone("UTC")

    target = _Target(_at(start_date), _at(end_date), loose_start=False)
    return start_date.isoformat(), end_date.isoformat(), target


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _sleep_schedule(lookup: BackfillLookup) -> Generator[float, None, None]:
    wait = lookup.poll_initial
    while True:
        yield wait
        wait = min(lookup.poll_max, wait * 1.5)


def _await_by_id(
    project_id: int, batch_export_id: str, backfill_id: str, lookup: BackfillLookup
) -> Operation[Backfill]:
    """[NEW] GET the backfill by its UUID, tolerating 404 while PostHog's workflow creates the row."""
    deadline = time.monotonic() + lookup.timeout
    waits = _sleep_schedule(lookup)
    while True:
        try:
            return (yield from get_backfill(project_id, batch_export_id, backfill_id))
        except PostHogNotFoundError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PostHogNotFoundError(
                    f"PostHog accepted backfill {backfill_id} of batch export {batch_export_id} but it "
                    f"did not appear within {lookup.timeout:.0f}s; it may still start. "
                    "Track it with get_backfill().",
                    http_status=404,
                    detail="backfill not visible yet",
                ) from None
            yield Sleep(min(next(waits), remaining))


def _await_by_range(
    project_id: int,
    batch_export_id: str,
    target: _Target,
    created_after: DateTime,
    lookup: BackfillLookup,
    *,
    exclude: frozenset[str] = frozenset(),
    timeout: float | None = None,
) -> Operation[Backfill | None]:
    """Find a new backfill's row by range and ``created_at`` ([DOCS] answers a workflow id, not its id).

    ``exclude``: ids that existed before the POST, so an older backfill over the same range is never
    mistaken for the new one.
    """
    deadline = time.monotonic() + (lookup.timeout if timeout is None else timeout)
    waits = _sleep_schedule(lookup)
    spec = rq.list_backfills(project_id, batch_export_id, ordering="-created_at")
    while True:
        response: ApiResponse = yield spec  # the newest page is enough: the new row is the newest
        candidates = [
            b
            for b in (Backfill.from_api(r) for r in rq.page_results(response.body))
            if b.id not in exclude
            and target.matches(b)
            and (b.created_at is None or b.created_at >= created_after)
        ]
        if candidates:
            return max(candidates, key=lambda b: b.created_at or pendulum.DateTime.min)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        yield Sleep(min(next(waits), remaining))


def _submit_backfill(
    project_id: int,
    batch_export_id: str,
    spec: rq.RequestSpec,
    target: _Target,
    base_url: str,
    lookup: BackfillLookup,
    *,
    start: DateTime | None = None,
    end: DateTime | None = None,
) -> Operation[Backfill]:
    """POST a backfill-creating request (resent only if provably nothing was created) and resolve it."""
    created_after = pendulum.now("UTC").subtract(seconds=lookup.clock_skew)
    # One GET before the POST: which backfills exist already (the newest page is enough, see below).
    snapshot: ApiResponse = yield rq.list_backfills(project_id, batch_export_id, ordering="-created_at")
    existing = frozenset(str(r.get("id")) for r in rq.page_results(snapshot.body))
    posts = 0
    dates_tried = start is None or end is None
    while True:
        posts += 1
        try:
            response: ApiResponse = yield spec
            break
        except PostHogValidationError as exc:
            if dates_tried or not _asks_for_dates(exc) or start is None or end is None:
                raise
            # Nothing was created (400). Resend once with the date-only bounds PostHog asked for.
            dates_tried = True
            export = yield from get_batch_export(project_id, batch_export_id)
            start_s, end_s, target = _date_bounds(export, start, end)
            log.info(
                "PostHog wants date-only bounds for %s export %s: sending %s..%s.",
                export.interval,
                batch_export_id,
                start_s,
                end_s,
            )
            spec = rq.create_backfill(project_id, batch_export_id, start_s, end_s)
            posts -= 1
            continue
        except PostHogConnectError:
            raise  # never reached PostHog; the transport already retried it within the policy
        except (PostHogServerError, PostHogTransportError) as exc:
            # Ambiguous: PostHog may have accepted it. Look before sending it again.
            log.warning(
                "Backfill request for %s failed ambiguously (%s); checking PostHog.", batch_export_id, exc
            )
            found = yield from _await_by_range(
                project_id, batch_export_id, target, created_after, lookup, exclude=existing
            )
            if found is not None:
                return found
            if posts >= lookup.max_posts:
                raise
            continue
    backfill_id = str(_body(response).get("backfill_id") or "")
    if backfill_id and _is_uuid(backfill_id):
        return (yield from _await_by_id(project_id, batch_export_id, backfill_id, lookup))
    found = yield from _await_by_range(
        project_id, batch_export_id, target, created_after, lookup, exclude=existing
    )
    if found is None:
        raise PostHogNotFoundError(
            f"PostHog accepted backfill {backfill_id or '(no id)'} of batch export {batch_export_id} but "
            f"its row did not appear within {lookup.timeout:.0f}s; it may still start. "
            "Look for it with find_backfill().",
            http_status=404,
            detail="backfill not visible yet",
        )
    return found


def create_backfill(
    project_id: int,
    batch_export_id: str,
    start_at: rq.DateLike,
    end_at: rq.DateLike,
    *,
    base_url: str,
    lookup: BackfillLookup,
) -> Operation[Backfill]:
    """Create a backfill of ``[start_at, end_at)`` and return its row, in both API generations."""
    start = _as_utc(start_at, "start_at")
    end = _as_utc(end_at, "end_at")
    if start >= end:
        raise PostHogConfigError(
            f"Backfill start_at {start.isoformat()} must be before end_at {end.isoformat()}."
        )
    spec = rq.create_backfill(project_id, batch_export_id, start, end)
    target = _Target(start, end, loose_start=True)
    return (
        yield from _submit_backfill(
            project_id, batch_export_id, spec, target, base_url, lookup, start=start, end=end
        )
    )
