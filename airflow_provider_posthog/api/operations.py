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
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pendulum
from pendulum import DateTime

from airflow_provider_posthog.api import requests as rq
from airflow_provider_posthog.api.errors import refuses_personal_keys
from airflow_provider_posthog.api.intervals import ExportSchedule, check_backfill_range
from airflow_provider_posthog.api.models import (
    Backfill,
    BatchExport,
    BatchExportRun,
    LogEntry,
    parse_datetime,
)
from airflow_provider_posthog.api.statuses import CANCELLABLE_STATUSES, Outcome
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogBackfillAlreadyRunningError,
    PostHogBackfillNotVisibleError,
    PostHogCancelNotEffectiveError,
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
    """How long to look for a backfill PostHog accepted but has not written yet.

    PostHog writes the row from its backfill workflow, moments after answering; its own tests wait up to
    120 s for it.
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
    """Newest first, at most ``limit`` (PostHog returns one page of ``limit`` entries).

    PostHog versions whose logs endpoint refuses personal API keys give ``[]`` and one warning, not an error:
    logs are context for a failure, never a reason for one.
    """
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
    try:
        response: ApiResponse = yield spec
    except PostHogAuthError as exc:
        if not refuses_personal_keys(exc):
            raise
        log.warning("This PostHog version does not serve batch export logs to personal API keys: %s", exc)
        return []
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
    """One run, whatever its age (the request carries an explicit ``after``)."""
    return BatchExportRun.from_api((yield from _get(rq.get_run(project_id, batch_export_id, run_id))))


def _cancel(
    spec: rq.RequestSpec, read_back: Operation[str], *, kind: str, object_id: str, batch_export_id: str
) -> Operation[str]:
    """Send a cancel, then read the status back: PostHog can answer success without cancelling.

    Already cancelled (e.g. a resent request) counts as done; any other 400 is raised. Returns the status
    read back; raises :class:`PostHogCancelNotEffectiveError` if it is still Starting/Running.
    """
    try:
        yield spec
    except PostHogValidationError as exc:
        if "in 'Cancelled' status" not in (exc.detail or ""):
            raise
        log.info("PostHog %s %s was already cancelled.", kind, object_id)
        read_back.close()
        return "Cancelled"
    status = yield from read_back
    if status in CANCELLABLE_STATUSES:
        raise PostHogCancelNotEffectiveError(
            f"PostHog answered the cancel of {kind} {object_id} of batch export {batch_export_id} with "
            f"success, but the {kind} is still {status}.",
            kind=kind,
            object_id=object_id,
            status=status,
        )
    return status


def _run_status(project_id: int, batch_export_id: str, run_id: str) -> Operation[str]:
    return (yield from get_run(project_id, batch_export_id, run_id)).status


def cancel_run(project_id: int, batch_export_id: str, run_id: str) -> Operation[str]:
    """Cancel a Starting/Running run and return its status read back (``"Cancelled"``)."""
    return (
        yield from _cancel(
            rq.cancel_run(project_id, batch_export_id, run_id),
            _run_status(project_id, batch_export_id, run_id),
            kind="run",
            object_id=run_id,
            batch_export_id=batch_export_id,
        )
    )


def get_run_logs(
    project_id: int,
    batch_export_id: str,
    run_id: str,
    *,
    level: str | Sequence[str] | None = None,
    limit: int = rq.LOGS_MAX_LIMIT,
) -> Operation[list[LogEntry]]:
    """A run's log lines, newest first: export-level logs inside the run's lifetime.

    PostHog's run-level logs endpoint does not return a run's lines in practice, so this reads the export's
    logs between the run's ``created_at`` and ``finished_at`` (or now), one second of slack either side.
    Concurrent runs of the same export (a backfill) can contribute lines to the same window. Where logs are
    closed to personal API keys this returns ``[]`` with a warning.
    """
    run = yield from get_run(project_id, batch_export_id, run_id)
    after = run.created_at.subtract(seconds=1) if run.created_at else None
    finished = run.finished_at or pendulum.now("UTC")
    before = finished.add(seconds=1)
    return (
        yield from get_batch_export_logs(
            project_id, batch_export_id, after=after, before=before, level=level, limit=limit
        )
    )


def retry_run(
    project_id: int, batch_export_id: str, run_id: str, *, base_url: str, lookup: BackfillLookup
) -> Operation[Backfill]:
    """Re-export one run's interval (PostHog starts a one-interval backfill) and return that backfill."""
    run = yield from get_run(project_id, batch_export_id, run_id)
    if run.data_interval_end is None:
        raise PostHogAPIError(f"PostHog run {run_id} has no data_interval_end; cannot track its retry.")
    spec = rq.retry_run(project_id, batch_export_id, run_id)
    target = _Target(start=run.data_interval_start, end=run.data_interval_end)
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


def _backfill_status(project_id: int, batch_export_id: str, backfill_id: str) -> Operation[str]:
    return (yield from get_backfill(project_id, batch_export_id, backfill_id)).status


def cancel_backfill(project_id: int, batch_export_id: str, backfill_id: str) -> Operation[str]:
    """Cancel a Starting/Running backfill and return its status read back (``"Cancelled"``)."""
    return (
        yield from _cancel(
            rq.cancel_backfill(project_id, batch_export_id, backfill_id),
            _backfill_status(project_id, batch_export_id, backfill_id),
            kind="backfill",
            object_id=backfill_id,
            batch_export_id=batch_export_id,
        )
    )


def list_backfill_runs(
    project_id: int,
    batch_export_id: str,
    backfill: Backfill,
    *,
    base_url: str,
    schedule: ExportSchedule | None = None,
) -> Operation[list[BatchExportRun]]:
    """Every run of ``backfill`` (matched on the run's ``backfill``), the first one included.

    PostHog aligns a backfill's first run down to the export's interval, so it can start before
    ``start_at``; runs are listed by data interval from one interval before the aligned-down start
    (``adjusted_start_at`` where PostHog reports it) to ``end_at``, one page per 100 intervals whatever
    else the export ran meanwhile. Without ``schedule`` the export is read once to learn its interval.
    An open-ended backfill's runs are listed by creation time instead.
    """
    starts = [t for t in (backfill.start_at, backfill.adjusted_start_at) if t is not None]
    if starts and backfill.end_at is not None and schedule is None:
        try:
            schedule = ExportSchedule.of((yield from get_batch_export(project_id, batch_export_id)))
        except PostHogConfigError as exc:  # an interval this provider does not know: list by creation
            log.warning("Listing the runs of backfill %s by creation time: %s", backfill.id, exc)
    if starts and backfill.end_at is not None and schedule is not None:
        runs = yield from list_runs(
            project_id,
            batch_export_id,
            base_url=base_url,
            ordering="data_interval_start",
            start=schedule.floor(min(starts)) - schedule.length,
            end=schedule.ceil(backfill.end_at),
        )
    else:
        created = backfill.created_at or pendulum.now("UTC").subtract(days=30)
        runs = yield from list_runs(
            project_id, batch_export_id, base_url=base_url, after=created.subtract(hours=1)
        )
    return [r for r in runs if r.backfill_id == backfill.id]


@dataclasses.dataclass(frozen=True)
class _Target:
    """The range a backfill should have, to recognise its row."""

    start: DateTime | None
    end: DateTime
    #: Older PostHog versions move a stored ``start_at`` forward to the first data.
    loose_start: bool = True

    def matches(self, backfill: Backfill) -> bool:
        if backfill.end_at != self.end:
            return False
        if self.start is None or backfill.start_at == self.start:
            return True
        if not self.loose_start or backfill.start_at is None:
            return False
        return self.start < backfill.start_at < self.end

    def exact(self, backfill: Backfill) -> bool:
        return backfill.end_at == self.end and backfill.start_at == self.start


def _newest(backfills: Iterable[Backfill]) -> Backfill | None:
    return max(backfills, key=lambda b: b.created_at or pendulum.DateTime.min, default=None)


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

    ``active_only`` keeps only backfills still Starting/Running. Matching is exact on both stored bounds
    (for day/week exports PostHog stores the requested dates at the export's ``offset_hour`` in its time
    zone, which is the same instant as an aligned datetime bound). A row whose start PostHog moved to the
    first available data is not matched (a duplicate beats missing data).
    """
    target = _Target(_as_utc(start_at, "start_at"), _as_utc(end_at, "end_at"), loose_start=False)
    spec: rq.RequestSpec | None = rq.list_backfills(project_id, batch_export_id, ordering="-created_at")
    pages = 0
    best: Backfill | None = None
    while spec is not None and pages < rq.MAX_PAGES:
        response: ApiResponse = yield spec
        pages += 1
        best = _newest(
            b
            for b in (Backfill.from_api(r) for r in rq.page_results(response.body))
            if target.matches(b) and (not active_only or b.outcome is Outcome.RUNNING)
        )
        if best is not None:
            break  # pages are newest first
        spec = rq.next_cursor_request(spec, response.body, base_url)
    return best


def _asks_for_dates(detail: str) -> bool:
    return "expect only the date component" in detail


def _asks_for_datetimes(detail: str) -> bool:
    return "is naive" in detail or "not a valid ISO formatted datetime" in detail


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


def _not_visible(
    batch_export_id: str, backfill_id: str, lookup: BackfillLookup
) -> PostHogBackfillNotVisibleError:
    return PostHogBackfillNotVisibleError(
        f"PostHog accepted backfill {backfill_id or '(no id)'} of batch export {batch_export_id} but its row "
        f"did not appear within {lookup.timeout:.0f}s; it may still start. A task retry re-attaches to it "
        "(find_backfill()).",
        detail="backfill not visible yet",
    )


def _await_by_id(
    project_id: int, batch_export_id: str, backfill_id: str, lookup: BackfillLookup
) -> Operation[Backfill]:
    """GET the backfill by its UUID, tolerating 404 while PostHog's workflow creates the row."""
    deadline = time.monotonic() + lookup.timeout
    waits = _sleep_schedule(lookup)
    while True:
        try:
            return (yield from get_backfill(project_id, batch_export_id, backfill_id))
        except PostHogNotFoundError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _not_visible(batch_export_id, backfill_id, lookup) from None
            yield Sleep(min(next(waits), remaining))


def _await_by_range(
    project_id: int,
    batch_export_id: str,
    target: _Target,
    created_after: DateTime,
    lookup: BackfillLookup,
    *,
    exclude: frozenset[str] = frozenset(),
) -> Operation[Backfill | None]:
    """Find a new backfill's row by range and ``created_at`` (older PostHog answers a workflow id).

    ``exclude``: ids that existed before the POST, so an older backfill over the same range is never
    mistaken for the new one.
    """
    deadline = time.monotonic() + lookup.timeout
    waits = _sleep_schedule(lookup)
    spec = rq.list_backfills(project_id, batch_export_id, ordering="-created_at")
    while True:
        response: ApiResponse = yield spec  # the newest page is enough: the new row is the newest
        found = _newest(
            b
            for b in (Backfill.from_api(r) for r in rq.page_results(response.body))
            if b.id not in exclude
            and target.matches(b)
            and (b.created_at is None or b.created_at >= created_after)
        )
        if found is not None:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        yield Sleep(min(next(waits), remaining))


def _already_running(batch_export_id: str, backfill: Backfill) -> PostHogBackfillAlreadyRunningError:
    start = backfill.start_at.isoformat() if backfill.start_at else "the beginning"
    end = backfill.end_at.isoformat() if backfill.end_at else "now"
    return PostHogBackfillAlreadyRunningError(
        f"Backfill {backfill.id} of batch export {batch_export_id} over the same range [{start}, {end}) is "
        f"still {backfill.status}; PostHog does not start a second one. Wait for it, re-attach to it or "
        "cancel it.",
        backfill_id=backfill.id,
        backfill=backfill,
    )


def _running_same_range(body: Any, target: _Target, *, exact: bool) -> Backfill | None:
    rows = (Backfill.from_api(r) for r in rq.page_results(body))
    return _newest(
        b for b in rows if b.outcome is Outcome.RUNNING and (target.exact(b) if exact else target.matches(b))
    )


def _submit_backfill(
    project_id: int,
    batch_export_id: str,
    spec: rq.RequestSpec,
    target: _Target,
    base_url: str,
    lookup: BackfillLookup,
    *,
    alternate: tuple[rq.RequestSpec, Callable[[str], bool]] | None = None,
) -> Operation[Backfill]:
    """POST a backfill-creating request (resent only if provably nothing was created) and resolve it.

    ``alternate``: the same request with the other bound format, sent once if a 400 says so.
    Raises :class:`PostHogBackfillAlreadyRunningError` when a backfill over the same range is still running,
    before the POST if it is listed already, or at once when PostHog answers the POST with HTTP 500 (what it
    does when the same backfill workflow is still running).
    """
    created_after = pendulum.now("UTC").subtract(seconds=lookup.clock_skew)
    # One GET before the POST: which backfills exist already (the newest page is enough, see below).
    snapshot: ApiResponse = yield rq.list_backfills(project_id, batch_export_id, ordering="-created_at")
    running = _running_same_range(snapshot.body, target, exact=True)
    if running is not None:
        raise _already_running(batch_export_id, running)
    existing = frozenset(str(r.get("id")) for r in rq.page_results(snapshot.body))
    posts = 0
    while True:
        posts += 1
        try:
            response: ApiResponse = yield spec
            break
        except PostHogValidationError as exc:
            if alternate is None or not alternate[1](exc.detail or ""):
                raise
            # Nothing was created (400). Resend once with the bound format PostHog asked for.
            log.info("PostHog wants the other bound format for batch export %s; resending.", batch_export_id)
            spec, alternate = alternate[0], None
            posts -= 1
            continue
        except PostHogConnectError:
            raise  # never reached PostHog; the transport already retried it within the policy
        except (PostHogServerError, PostHogTransportError) as exc:
            log.warning(
                "Backfill request for %s failed ambiguously (%s); checking PostHog.", batch_export_id, exc
            )
            if exc.http_status == 500:
                listing: ApiResponse = yield rq.list_backfills(
                    project_id, batch_export_id, ordering="-created_at"
                )
                running = _running_same_range(listing.body, target, exact=False)
                if running is not None:
                    raise _already_running(batch_export_id, running) from None
            # PostHog may have accepted it. Look before sending it again.
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
        raise _not_visible(batch_export_id, backfill_id, lookup)
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
    """Create a backfill of ``[start_at, end_at)`` and return its row, in every PostHog version.

    Reads the export first (one GET) and refuses a range off its schedule's boundaries with
    :class:`PostHogConfigError` before any POST. Day/week exports of PostHog versions with time-zoned
    schedules take date-only bounds (the dates of the aligned bounds in the export's time zone); older
    versions take datetimes. Each format is resent once in the other if PostHog's 400 asks for it.
    """
    start = _as_utc(start_at, "start_at")
    end = _as_utc(end_at, "end_at")
    if start >= end:
        raise PostHogConfigError(
            f"Backfill start_at {start.isoformat()} must be before end_at {end.isoformat()}."
        )
    export = yield from get_batch_export(project_id, batch_export_id)
    schedule = ExportSchedule.of(export)
    check_backfill_range(start, end, schedule)
    spec = rq.create_backfill(project_id, batch_export_id, start, end)
    alternate: tuple[rq.RequestSpec, Callable[[str], bool]] | None = None
    if schedule.wall_clock:
        dates = rq.create_backfill(
            project_id,
            batch_export_id,
            schedule.local_date(start).isoformat(),
            schedule.local_date(end).isoformat(),
        )
        if "timezone" in export.raw:  # versions with time-zoned schedules want dates for day/week
            spec, alternate = dates, (spec, _asks_for_datetimes)
        else:
            alternate = (dates, _asks_for_dates)
    target = _Target(start, end)
    return (
        yield from _submit_backfill(
            project_id, batch_export_id, spec, target, base_url, lookup, alternate=alternate
        )
    )
