"""Backfills as PostHog really creates them: find one, create one, retry a run (sans-I/O).

PostHog writes a backfill's row from its backfill workflow, moments after answering the POST, and older
versions answer with a workflow id rather than the row's UUID. So creating one means: check nothing over
the same range is still running, POST (resent only when provably nothing was created), then wait for the
row. Every lookup picks "the newest backfill a rule accepts" through :func:`newest_backfill`, and
returns it as a :class:`SeenBackfill`: with PostHog's clock read from the same answer, so that its
``created_at`` is compared on PostHog's clock (``api/clock.py``), never on this machine's.
A backfill's runs are listed by ``endpoints.list_backfill_runs``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING, Any

import pendulum
from pendulum import DateTime

from airflow_provider_posthog.api.clock import NOTABLE_SKEW, UNMEASURED, PostHogClock
from airflow_provider_posthog.api.endpoints import (
    ANY_AGE,
    get_backfill,
    get_batch_export,
    get_run,
    list_backfills_request,
)
from airflow_provider_posthog.api.http import (
    MAX_PAGES,
    NOW,
    ApiResponse,
    DateLike,
    Operation,
    RequestSpec,
    Sleep,
    export_path,
    format_datetime,
    json_object,
    next_page,
    page_results,
)
from airflow_provider_posthog.api.intervals import ExportSchedule, check_backfill_range
from airflow_provider_posthog.api.models import Backfill, to_utc
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogBackfillAlreadyRunningError,
    PostHogBackfillNotVisibleError,
    PostHogConfigError,
    PostHogConnectError,
    PostHogError,
    PostHogNotFoundError,
    PostHogServerError,
    PostHogTransportError,
    PostHogValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BackfillLookup:
    """How long to look for a backfill PostHog accepted but has not written yet.

    PostHog writes the row from its backfill workflow, moments after answering; its own tests wait up to
    120 s for it. (How far this machine's clock may be from PostHog's is not a setting of the lookup: it is
    the one ``api.clock.CLOCK_SKEW_ALLOWANCE``, shared with re-attach.)
    """

    timeout: float = 120.0
    poll_initial: float = 1.0
    poll_max: float = 5.0
    #: POSTs of one create_backfill/retry_run in total (only resent when no backfill appeared).
    max_posts: int = 2


# -- the one "newest matching" rule -------------------------------------------------------------------------


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


@dataclasses.dataclass(frozen=True)
class SeenBackfill(Backfill):
    """A backfill as a listing of PostHog showed it, with PostHog's clock read from that answer's ``Date``.

    Re-attach (``tasks.reattach``) compares its ``created_at`` with the DAG run's start on PostHog's clock.
    """

    posthog_clock: PostHogClock = UNMEASURED

    @classmethod
    def of(cls, backfill: Backfill, clock: PostHogClock) -> SeenBackfill:
        fields = {f.name: getattr(backfill, f.name) for f in dataclasses.fields(Backfill)}
        return cls(**fields, posthog_clock=clock)


def _read_clock(response: ApiResponse) -> Operation[PostHogClock]:
    """PostHog's clock from ``response`` against this machine's, read right after the answer arrived."""
    return PostHogClock.read(response, (yield NOW))


def _newest(backfills: Iterable[Backfill], keep: Callable[[Backfill], bool]) -> Backfill | None:
    return max(
        (b for b in backfills if keep(b)), key=lambda b: b.created_at or pendulum.DateTime.min, default=None
    )


def _backfills(body: Any) -> list[Backfill]:
    return [Backfill.from_api(r) for r in page_results(body)]


def newest_backfill(
    batch_export_id: str, keep: Callable[[Backfill], bool], *, max_pages: int = MAX_PAGES
) -> Operation[SeenBackfill | None]:
    """The newest backfill ``keep`` accepts, reading pages newest first and stopping at the first match.

    The match comes back as a :class:`SeenBackfill` carrying PostHog's clock of the answer that listed it.
    """
    first = list_backfills_request(batch_export_id, ordering="-created_at")
    seen: set[str] = set()
    spec = first
    for _ in range(max_pages):  # a caller may look at the newest pages only
        response: ApiResponse = yield spec
        found = _newest(_backfills(response.body), keep)
        if found is not None:
            return SeenBackfill.of(found, (yield from _read_clock(response)))
        # Pages that do not end fail closed: "not found" would make the caller create a second backfill.
        following = next_page(first, spec, response.body, page_results(response.body), seen)
        if following is None:
            return None
        spec = following
    return None


def find_backfill(
    batch_export_id: str,
    start_at: DateLike,
    end_at: DateLike,
    *,
    active_only: bool = False,
) -> Operation[Backfill | None]:
    """The newest backfill of this export over exactly ``[start_at, end_at)`` (to re-attach after a retry).

    It comes back as a :class:`SeenBackfill`, so the re-attach rule can tell on PostHog's clock whether it
    was created in the current round. ``active_only`` keeps only backfills still Starting/Running.

    Matching is exact on both stored bounds (for day/week exports PostHog stores the requested dates at the
    export's ``offset_hour`` in its time zone, which is the same instant as an aligned datetime bound). A row
    whose start PostHog moved to the first available data is not matched (a duplicate beats missing data).
    """
    target = _Target(to_utc(start_at, "start_at"), to_utc(end_at, "end_at"), loose_start=False)

    def keep(b: Backfill) -> bool:
        return target.matches(b) and (not active_only or b.outcome is Outcome.RUNNING)

    return (yield from newest_backfill(batch_export_id, keep))


# -- waiting for a new backfill's row -----------------------------------------------------------------------


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


def _await_by_id(batch_export_id: str, backfill_id: str, lookup: BackfillLookup) -> Operation[Backfill]:
    """GET the backfill by its UUID, tolerating 404 while PostHog's workflow creates the row."""
    deadline: DateTime = (yield NOW).add(seconds=lookup.timeout)
    waits = _sleep_schedule(lookup)
    while True:
        try:
            return (yield from get_backfill(batch_export_id, backfill_id))
        except PostHogNotFoundError:
            remaining = (deadline - (yield NOW)).total_seconds()
            if remaining <= 0:
                raise _not_visible(batch_export_id, backfill_id, lookup) from None
            yield Sleep(min(next(waits), remaining))


def _await_by_range(
    batch_export_id: str, keep: Callable[[Backfill], bool], lookup: BackfillLookup
) -> Operation[Backfill | None]:
    """Poll the newest page of backfills until ``keep`` accepts one (older PostHog answers a workflow id)."""
    deadline: DateTime = (yield NOW).add(seconds=lookup.timeout)
    waits = _sleep_schedule(lookup)
    while True:
        # The newest page is enough: the new row is the newest.
        found = yield from newest_backfill(batch_export_id, keep, max_pages=1)
        if found is not None:
            return found
        remaining = (deadline - (yield NOW)).total_seconds()
        if remaining <= 0:
            return None
        yield Sleep(min(next(waits), remaining))


# -- creating one -------------------------------------------------------------------------------------------


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


@dataclasses.dataclass
class _Post:
    """The backfill-creating request, and (once) the same request in the other bound format.

    A 400 created nothing, so resending in the format PostHog asked for does not count as a resend.
    """

    spec: RequestSpec
    other: RequestSpec | None = None
    asks_for_other: Callable[[str], bool] = lambda detail: False

    def send(self, batch_export_id: str) -> Operation[ApiResponse]:
        try:
            return (yield self.spec)
        except PostHogValidationError as exc:
            if self.other is None or not self.asks_for_other(exc.detail or ""):
                raise
        log.info("PostHog wants the other bound format for batch export %s; resending.", batch_export_id)
        self.spec, self.other = self.other, None
        return (yield self.spec)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _submit_backfill(
    batch_export_id: str, post: _Post, target: _Target, lookup: BackfillLookup
) -> Operation[Backfill]:
    """POST a backfill-creating request (resent only if provably nothing was created) and resolve it.

    Raises :class:`PostHogBackfillAlreadyRunningError` when a backfill over the same range is still running,
    before the POST if it is listed already, or at once when PostHog answers the POST with HTTP 500 (what it
    does when the same backfill workflow is still running).

    A row is the new one when it was not listed before the POST, has the range, and PostHog created it no
    earlier than this call began, compared on PostHog's clock (measured from the listing's ``Date``) within
    the one ``CLOCK_SKEW_ALLOWANCE``: a worker clock minutes off PostHog's still finds its own backfill.
    """
    began: DateTime = yield NOW
    # Which backfills exist already (the newest page is enough: a new row is the newest).
    snapshot: ApiResponse = yield list_backfills_request(batch_export_id, ordering="-created_at")
    clock = yield from _read_clock(snapshot)
    if clock.offset is not None and abs(clock.offset) >= NOTABLE_SKEW:
        log.warning("%s; comparing backfill times on PostHog's clock.", clock.describe())
    existing = _backfills(snapshot.body)
    running = _newest(existing, lambda b: b.outcome is Outcome.RUNNING and target.exact(b))
    if running is not None:
        raise _already_running(batch_export_id, SeenBackfill.of(running, clock))
    existing_ids = frozenset(b.id for b in existing)

    def is_new(b: Backfill) -> bool:
        return (
            b.id not in existing_ids
            and target.matches(b)
            and (b.created_at is None or clock.created_since(b.created_at, began))
        )

    for post_number in range(1, max(1, lookup.max_posts) + 1):
        try:
            response = yield from post.send(batch_export_id)
        except PostHogConnectError:
            raise  # never reached PostHog; the transport already retried it within the policy
        except (PostHogServerError, PostHogTransportError) as exc:
            found = yield from _look_after_ambiguous_failure(batch_export_id, exc, target, is_new, lookup)
            if found is not None:
                return found
            if post_number >= lookup.max_posts:
                raise
        else:
            return (yield from _resolve(batch_export_id, response, is_new, lookup))
    raise AssertionError("unreachable")  # pragma: no cover - the last POST returns or raises


def _look_after_ambiguous_failure(
    batch_export_id: str,
    exc: PostHogAPIError,
    target: _Target,
    is_new: Callable[[Backfill], bool],
    lookup: BackfillLookup,
) -> Operation[Backfill | None]:
    """After a 5xx or a lost answer PostHog may have created the backfill: find it before resending."""
    log.warning("Backfill request for %s failed ambiguously (%s); checking PostHog.", batch_export_id, exc)
    if exc.http_status == 500:  # what PostHog answers while the same backfill workflow is still running
        running = yield from newest_backfill(
            batch_export_id,
            lambda b: b.outcome is Outcome.RUNNING and target.matches(b),
            max_pages=1,
        )
        if running is not None:
            raise _already_running(batch_export_id, running) from None
    found = yield from _await_by_range(batch_export_id, is_new, lookup)
    if found is not None and exc.http_status == 500:
        # Appearing only now does not make it ours: a 500 is what PostHog answers when another caller's
        # identical backfill already runs (started between the check above and this POST).
        raise _already_running(batch_export_id, found) from None
    return found


def _resolve(
    batch_export_id: str,
    response: ApiResponse,
    is_new: Callable[[Backfill], bool],
    lookup: BackfillLookup,
) -> Operation[Backfill]:
    """The row of an accepted backfill: by its UUID, or by range where PostHog answered a workflow id."""
    backfill_id = str(json_object(response).get("backfill_id") or "")
    if backfill_id and _is_uuid(backfill_id):
        return (yield from _await_by_id(batch_export_id, backfill_id, lookup))
    found = yield from _await_by_range(batch_export_id, is_new, lookup)
    if found is None:
        raise _not_visible(batch_export_id, backfill_id, lookup)
    return found


def _create_request(batch_export_id: str, start_at: DateLike, end_at: DateLike) -> RequestSpec:
    body = {"start_at": format_datetime(start_at), "end_at": format_datetime(end_at)}
    return RequestSpec("POST", export_path(batch_export_id, "backfills"), json=body, idempotent=False)


def _asks_for_dates(detail: str) -> bool:
    return "expect only the date component" in detail


def _asks_for_datetimes(detail: str) -> bool:
    return "is naive" in detail or "not a valid ISO formatted datetime" in detail


def create_backfill(
    batch_export_id: str, start_at: DateLike, end_at: DateLike, *, lookup: BackfillLookup
) -> Operation[Backfill]:
    """Create a backfill of ``[start_at, end_at)`` and return its row, in every PostHog version.

    Reads the export first (one GET) and refuses a range off its schedule's boundaries with
    :class:`PostHogConfigError` before any POST. Day/week exports of PostHog versions with time-zoned
    schedules take date-only bounds (the dates of the aligned bounds in the export's time zone); older
    versions take datetimes. Each format is resent once in the other if PostHog's 400 asks for it.
    """
    start = to_utc(start_at, "start_at")
    end = to_utc(end_at, "end_at")
    if start >= end:
        raise PostHogConfigError(
            f"Backfill start_at {start.isoformat()} must be before end_at {end.isoformat()}."
        )
    export = yield from get_batch_export(batch_export_id)
    schedule = ExportSchedule.of(export)
    check_backfill_range(start, end, schedule)
    datetimes = _create_request(batch_export_id, start, end)
    post = _Post(datetimes)
    if schedule.wall_clock:
        dates = _create_request(
            batch_export_id,
            schedule.local_date(start).isoformat(),
            schedule.local_date(end).isoformat(),
        )
        if "timezone" in export.raw:  # versions with time-zoned schedules want dates for day/week
            post = _Post(dates, datetimes, _asks_for_datetimes)
        else:
            post = _Post(datetimes, dates, _asks_for_dates)
    return (yield from _submit_backfill(batch_export_id, post, _Target(start, end), lookup))


def retry_run(batch_export_id: str, run_id: str, *, lookup: BackfillLookup) -> Operation[Backfill]:
    """Re-export one run's interval (PostHog starts a one-interval backfill) and return that backfill.

    A run not finished yet is refused before the POST: PostHog's retry of a run still under way starts no
    new run, it adopts the running one (same workflow id) and reports nothing about it.
    """
    run = yield from get_run(batch_export_id, run_id)
    if run.outcome is Outcome.RUNNING:
        raise PostHogError(
            f"Run {run_id} of batch export {batch_export_id} is {run.status}; PostHog would adopt it instead "
            "of retrying: wait for it to finish, then retry it if it failed."
        )
    if run.data_interval_end is None:
        raise PostHogAPIError(f"PostHog run {run_id} has no data_interval_end; cannot track its retry.")
    path = export_path(batch_export_id, "runs", run_id, "retry")
    post = _Post(RequestSpec("POST", path, ANY_AGE, json={}, idempotent=False))  # starts a backfill
    target = _Target(start=run.data_interval_start, end=run.data_interval_end)
    return (yield from _submit_backfill(batch_export_id, post, target, lookup))
