"""Shared reads: the waits of one process that poll the same PostHog object get one answer (sans-I/O).

A poll operation (``api/jobs.py``) yields a :class:`~airflow_provider_posthog.api.http.Shared` for each
read it may share instead of sending the request itself: what is read (``key``: method, path and query,
without the data-interval range), how to read it (``fetch``) and, for a list of runs by data interval, the
range this wait needs (``span``) and how to narrow a wider list to it (``select``). The sync hook reads it
at once, unshared (``Shared.alone``: ``select(fetch(span))``); the async hook reads it through its event
loop's :class:`SharedReads`, where every wait asking while the read is in flight, or within its freshness
window afterwards, gets the same answer. Only polls yield these: lookups before a create, a cancel's
read-back and every write send their requests themselves.

PostHog filters a list of runs ordered by ``data_interval_start`` (either direction) with
``data_interval_start >= start AND data_interval_end <= end``; a run with a null bound never matches. A list
over a wider range, filtered with that same predicate in its own order (:func:`runs_inside`), is therefore
the list over the narrow range: that is what lets waits on different intervals of one export share one
list.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from airflow_provider_posthog.api.endpoints import (
    ANY_AGE,
    get_backfill,
    get_batch_export,
    get_run,
    list_runs,
)
from airflow_provider_posthog.api.http import RequestSpec, Shared, Span, export_path, query

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

    from airflow_provider_posthog.api.http import Operation
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun

T = TypeVar("T")
H = TypeVar("H")

#: Ranges of runs closer than this are listed together (one list instead of several).
MERGE_GAP = dt.timedelta(days=1)
#: The widest range a merged list of runs may cover: a wider merge is split, a wider asked range read alone.
MAX_MERGED_SPAN = dt.timedelta(days=7)
#: PostHog's page size of the runs list. A merged range is at most this many times the ranges it merges put
#: together, so that for waits on one interval each the merged list needs no more pages than their own lists.
RUNS_PAGE_SIZE = 100
#: A wait's interest in a range of runs is remembered for this many of its freshness windows after it asked,
#: and at least :data:`MIN_INTEREST_SECONDS` (a busy event loop stretches the time between two polls).
INTEREST_WINDOWS = 2.0
MIN_INTEREST_SECONDS = 60.0
#: Answers (and reads in flight) kept at most; the oldest go first. Each lives one freshness window anyway.
MAX_ENTRIES = 4096
#: Ranges of interest kept at most; the least recently asked lists of runs are forgotten first.
MAX_INTERESTS = 65536
#: Seconds between two sweeps of expired answers and interests.
SWEEP_SECONDS = 5.0


def unshared(op: Operation[T]) -> Operation[T]:
    """``op`` with each of its shared reads read in place (:meth:`Shared.alone`): for a driver that knows
    only requests, sleeps and the clock."""
    reply: Any = None
    error: BaseException | None = None
    with contextlib.closing(op):
        while True:
            try:
                command = op.throw(error) if error is not None else op.send(reply)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            try:
                if isinstance(command, Shared):
                    reply = yield from unshared(command.alone())
                else:
                    reply = yield command
            except Exception as exc:  # the driver's answer is an error: the operation's to handle
                error = exc


def shared_read(key: RequestSpec, fetch: Callable[[], Operation[T]]) -> Shared[T]:
    """``fetch()``, an operation that sends the one GET ``key``, shared as it is."""
    if key.method != "GET":
        raise ValueError(f"Only reads are shared, not {key.method} {key.path}.")
    return Shared(key, lambda _span: fetch())


def backfill_read(batch_export_id: str, backfill_id: str) -> Shared[Backfill]:
    """One backfill (:func:`~airflow_provider_posthog.api.endpoints.get_backfill`), shared."""
    key = RequestSpec("GET", export_path(batch_export_id, "backfills", backfill_id))
    return shared_read(key, lambda: get_backfill(batch_export_id, backfill_id))


def export_read(batch_export_id: str) -> Shared[BatchExport]:
    """One export (:func:`~airflow_provider_posthog.api.endpoints.get_batch_export`), shared."""
    return shared_read(
        RequestSpec("GET", export_path(batch_export_id)), lambda: get_batch_export(batch_export_id)
    )


def run_read(batch_export_id: str, run_id: str) -> Shared[BatchExportRun]:
    """One run, whatever its age (:func:`~airflow_provider_posthog.api.endpoints.get_run`), shared."""
    key = RequestSpec("GET", export_path(batch_export_id, "runs", run_id), ANY_AGE)
    return shared_read(key, lambda: get_run(batch_export_id, run_id))


def runs_by_interval(
    batch_export_id: str,
    start: dt.datetime,
    end: dt.datetime,
    ordering: str = "-data_interval_start",
) -> Shared[list[BatchExportRun]]:
    """The export's runs inside ``[start, end)`` (PostHog's data-interval filter, every page), readable
    through one list over a wider range of the same export and ordering."""
    if ordering.lstrip("-") != "data_interval_start":
        raise ValueError(f"Runs are filtered by data interval only when ordered by it, not by {ordering!r}.")
    key = RequestSpec("GET", export_path(batch_export_id, "runs"), query([("ordering", ordering)]))

    def fetch(span: Span | None) -> Operation[list[BatchExportRun]]:
        low, high = span or (start, end)
        return list_runs(batch_export_id, ordering=ordering, start=low, end=high)

    return Shared(key, fetch, (start, end), runs_inside)


def runs_inside(runs: Sequence[BatchExportRun], span: Span | None) -> list[BatchExportRun]:
    """The runs PostHog's list over ``span`` holds, in their order: ``data_interval_start >= start`` and
    ``data_interval_end <= end`` (a null bound never matches). A new list: waits never share one."""
    if span is None:
        return list(runs)
    low, high = span
    return [
        run
        for run in runs
        if run.data_interval_start is not None
        and run.data_interval_end is not None
        and run.data_interval_start >= low
        and run.data_interval_end <= high
    ]


def covers(outer: Span | None, inner: Span | None) -> bool:
    """Whether a read over ``outer`` answers a read over ``inner`` (exact reads: both ``None``)."""
    if outer is None or inner is None:
        return outer is None and inner is None
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def merged_span(spans: Sequence[Span], asked: Span) -> Span:
    """The range to list for ``asked``, given the ranges other waits asked for lately (``asked`` among them).

    Ranges are merged from the earliest on while the next one starts within :data:`MERGE_GAP` of the merged
    range, the merged range stays within :data:`MAX_MERGED_SPAN` and within :data:`RUNS_PAGE_SIZE` times the
    ranges it merges put together; the merged range holding ``asked`` is the answer (``asked`` alone when
    it is wider than the cap).
    """
    if asked[1] - asked[0] > MAX_MERGED_SPAN:
        return asked
    groups: list[tuple[Span, dt.timedelta]] = []
    for span in sorted({*spans, asked}):
        length = span[1] - span[0]
        if length > MAX_MERGED_SPAN:
            continue
        if groups:
            (low, high), summed = groups[-1]
            hull = (low, max(high, span[1]))
            if (
                span[0] - high <= MERGE_GAP
                and hull[1] - hull[0] <= MAX_MERGED_SPAN
                and hull[1] - hull[0] <= (summed + length) * RUNS_PAGE_SIZE
            ):
                groups[-1] = (hull, summed + length)
                continue
        groups.append((span, length))
    return next(span for span, _ in groups if covers(span, asked))


# -- the table ----------------------------------------------------------------------------------------------

#: How an ask is answered: from a fresh answer, by joining a read in flight, or by a new read.
Reuse = Literal["fresh", "in_flight", "new"]


@dataclasses.dataclass(eq=False)
class Entry(Generic[H]):
    """One read of ``key`` over ``span`` within ``scope``: in flight (``handle``, the driver's) or answered
    (``value``). ``window``: the shortest freshness window among the waits that used it; its answer is
    served while younger than that, counted from when the read started."""

    scope: Hashable
    key: RequestSpec
    span: Span | None
    window: float
    started: float
    done: bool = False
    value: Any = dataclasses.field(default=None, repr=False)
    handle: H | None = dataclasses.field(default=None, repr=False)


class SharedReads(Generic[H]):
    """Reads in flight and fresh answers of one process's waits, by scope and key (no I/O, no clock of its
    own: ``clock`` gives monotonic seconds).

    ``scope`` is whatever must match for an answer to be shared (the driver's: host, project and a
    fingerprint of the API key); nothing is shared across scopes. Memory is bounded: answers expire after
    their window, interests after :data:`INTEREST_WINDOWS` windows, and at most :data:`MAX_ENTRIES` answers
    and :data:`MAX_INTERESTS` interests are kept.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = MAX_ENTRIES,
        max_interests: int = MAX_INTERESTS,
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._max_interests = max_interests
        self._entries: dict[tuple[Hashable, RequestSpec], list[Entry[H]]] = {}
        self._order: collections.OrderedDict[Entry[H], None] = collections.OrderedDict()
        # Per (scope, key), least recently asked first: span -> until when the interest lasts.
        self._interests: collections.OrderedDict[tuple[Hashable, RequestSpec], dict[Span, float]] = (
            collections.OrderedDict()
        )
        self._interest_count = 0
        self._next_sweep = clock() + SWEEP_SECONDS

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"<SharedReads: {len(self._order)} read(s), {self._interest_count} range(s) of interest>"

    @property
    def interest_count(self) -> int:
        return self._interest_count

    def ask(
        self, scope: Hashable, key: RequestSpec, span: Span | None, window: float
    ) -> tuple[Entry[H], Reuse]:
        """The entry that answers a wait asking for ``key`` over ``span`` now, accepting answers younger than
        ``window`` seconds, and how: ``"fresh"`` (its ``value`` is the answer), ``"in_flight"`` (await its
        ``handle``) or ``"new"`` (the caller reads ``entry.span`` and sets ``handle``, then calls
        :meth:`settle` or :meth:`drop`)."""
        now = self._clock()
        window = max(0.0, float(window))
        if now >= self._next_sweep:
            self.sweep()
        slot = (scope, key)
        self.note(scope, key, span, window)
        found = self._find(slot, span, window, now)
        if found is not None:
            found[0].window = min(found[0].window, window)
            return found
        if span is None:
            fetch: Span | None = None
        else:
            live = [s for s, until in self._interests.get(slot, {}).items() if until > now]
            fetch = merged_span(live, span)
        entry: Entry[H] = Entry(scope, key, fetch, window, now)
        self._entries.setdefault(slot, []).append(entry)
        self._order[entry] = None
        while len(self._order) > self._max_entries:  # the oldest go first, answered or not
            self._remove(next(iter(self._order)))
        return entry, "new"

    def note(self, scope: Hashable, key: RequestSpec, span: Span | None, window: float) -> None:
        """Remember that a wait will ask for ``key`` over ``span`` (accepting answers younger than ``window``)
        before it asks: a wait that has just deferred polls one interval later, and the waits that poll
        before it then list its range too, instead of each new wait reading its own range once."""
        window = max(0.0, float(window))
        if span is not None and window > 0:
            until = self._clock() + max(INTEREST_WINDOWS * window, MIN_INTEREST_SECONDS)
            self._note_interest((scope, key), span, until)

    def _find(
        self, slot: tuple[Hashable, RequestSpec], span: Span | None, window: float, now: float
    ) -> tuple[Entry[H], Reuse] | None:
        """A fresh answer covering ``span`` (the youngest), else a read in flight covering it."""
        fresh: Entry[H] | None = None
        flying: Entry[H] | None = None
        for entry in self._entries.get(slot, ()):
            if not covers(entry.span, span):
                continue
            if not entry.done:
                flying = entry
            elif now - entry.started < min(entry.window, window) and (
                fresh is None or entry.started > fresh.started
            ):
                fresh = entry
        if fresh is not None:
            return fresh, "fresh"
        if flying is not None:
            return flying, "in_flight"
        return None

    def settle(self, entry: Entry[H], value: Any) -> None:
        """The read of ``entry`` answered ``value``: served to later asks within its window."""
        entry.done, entry.value, entry.handle = True, value, None
        if entry.window <= 0:
            self._remove(entry)

    def drop(self, entry: Entry[H]) -> None:
        """The read of ``entry`` failed (or was abandoned): forget it, so that the next ask reads afresh."""
        entry.handle = None
        self._remove(entry)

    def sweep(self) -> None:
        """Forget expired answers and interests."""
        now = self._clock()
        self._next_sweep = now + SWEEP_SECONDS
        for entry in [e for e in self._order if e.done and now - e.started >= e.window]:
            self._remove(entry)
        for slot in list(self._interests):
            spans = self._interests[slot]
            for span in [s for s, until in spans.items() if until <= now]:
                del spans[span]
                self._interest_count -= 1
            if not spans:
                del self._interests[slot]

    def _note_interest(self, slot: tuple[Hashable, RequestSpec], span: Span, until: float) -> None:
        spans = self._interests.setdefault(slot, {})
        self._interests.move_to_end(slot)  # the most recently asked list last
        if span not in spans:
            self._interest_count += 1
        spans[span] = max(until, spans.get(span, until))
        while self._interest_count > self._max_interests and len(self._interests) > 1:
            _, oldest = self._interests.popitem(last=False)
            self._interest_count -= len(oldest)
        if self._interest_count > self._max_interests:  # one list alone: keep only this ask
            self._interest_count = 1
            spans.clear()
            spans[span] = until

    def _remove(self, entry: Entry[H]) -> None:
        if entry not in self._order:
            return
        del self._order[entry]
        slot = (entry.scope, entry.key)
        entries = self._entries[slot]
        entries.remove(entry)
        if not entries:
            del self._entries[slot]
