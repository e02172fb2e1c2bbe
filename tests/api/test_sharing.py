"""Shared reads (``api/sharing.py``), sans-I/O: which reads a poll shares, how a wider list of runs is
narrowed, and the table that decides who joins, who reuses and who reads, on a fake clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from op_driver import drive, first_request, page

from airflow_provider_posthog.api import jobs, sharing
from airflow_provider_posthog.api.decisions import RetriedInterval
from airflow_provider_posthog.api.http import RequestSpec, Shared
from airflow_provider_posthog.api.models import Backfill, BatchExportRun
from airflow_provider_posthog.api.sharing import SharedReads, merged_span, runs_by_interval, runs_inside
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import PostHogServerError

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 28, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
SCOPE = ("https://us.posthog.com", 1, "fingerprint", "True")
RUNS = RequestSpec("GET", "batch_exports/e/runs/", (("ordering", "-data_interval_start"),))
BACKFILL = RequestSpec("GET", "batch_exports/e/backfills/b/")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hour(n: int) -> tuple[dt.datetime, dt.datetime]:
    return T0 + n * HOUR, T0 + (n + 1) * HOUR


def run(rid: str, start: dt.datetime | None, end: dt.datetime | None) -> BatchExportRun:
    return BatchExportRun.from_api(
        {
            "id": rid,
            "status": "Completed",
            "data_interval_start": start.isoformat() if start else None,
            "data_interval_end": end.isoformat() if end else None,
        }
    )


# -- the reads a poll shares ---------------------------------------------------------------------------------


def shared_reads(op: Any, answers: list[Any]) -> list[Shared[Any]]:
    """The shared reads ``op`` yields, answered in turn with ``answers`` (already narrowed values)."""
    seen: list[Shared[Any]] = []
    reply: Any = None
    try:
        while True:
            command = op.send(reply)
            assert isinstance(command, Shared), f"a poll sent {command!r} itself instead of sharing it"
            seen.append(command)
            reply = answers.pop(0)
    except StopIteration:
        return seen


BACKFILL_ROW = {
    "id": "b",
    "status": "Completed",
    "batch_export": "e",
    "start_at": "2026-11-28T16:00:00Z",
    "end_at": "2026-11-28T18:00:00Z",
    "created_at": "2026-11-28T20:00:00Z",
}


def test_each_poll_shares_every_read_and_each_key_is_the_request_its_read_sends() -> None:
    """A key that drifted from its read would share one object's answer with waits on another."""
    from airflow_provider_posthog.api.models import BatchExport

    backfill = Backfill.from_api(BACKFILL_ROW)
    export = BatchExport.from_api({"id": "e", "interval": "hour"})
    reads = [
        *shared_reads(jobs.BackfillJob("e", "b").poll(), [backfill, export, []]),
        *shared_reads(jobs.RunJob("e", "r").poll(), [run("r", *hour(0))]),
        *shared_reads(jobs.IntervalJob("e", *hour(3)).poll(), [[], export]),
        *shared_reads(
            jobs.RunsJob("e", (RetriedInterval(*hour(1)), RetriedInterval(*hour(50)))).poll(),
            [[], []],
        ),
    ]
    assert len(reads) == 8  # backfill, export, runs; run; runs, export; two windows of runs
    for read in reads:
        sent = first_request(read.fetch(read.span))
        assert read.key.method == sent.method == "GET"
        assert read.key.path == sent.path
        assert read.key.params == tuple(p for p in sent.params if p[0] not in ("start", "end")), read.key
        if read.span is not None:
            assert dict(sent.params)["start"] == read.span[0].isoformat()
            assert dict(sent.params)["end"] == read.span[1].isoformat()
    # The backfill's runs over its range, by data interval, from one interval before its start.
    assert reads[2].span == (T0 + 15 * HOUR, T0 + 18 * HOUR)
    assert dict(reads[2].key.params) == {"ordering": "data_interval_start"}


def test_status_reads_of_a_cancel_are_never_shared() -> None:
    """A cancel's read-back must see PostHog after the cancel, not an answer from before it."""
    for job in (jobs.BackfillJob("e", "b"), jobs.RunJob("e", "r")):
        assert isinstance(next(job.status()), RequestSpec)
        assert isinstance(next(jobs.cancel(job)), RequestSpec)


def test_only_reads_are_shared() -> None:
    with pytest.raises(ValueError, match="Only reads"):
        sharing.shared_read(RequestSpec("POST", "batch_exports/e/pause/"), lambda: iter(()))  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="data interval"):
        runs_by_interval("e", *hour(0), ordering="-created_at")


def test_a_poll_driven_unshared_sends_what_it_sent_before_sharing() -> None:
    """The sync hook reads each shared read alone: the same requests, the same decision."""
    rows = [
        {"id": f"r{n}", "status": "Completed", "data_interval_start": hour(n)[0].isoformat(),
         "data_interval_end": hour(n)[1].isoformat(), "records_completed": 1}
        for n in (4, 3, 2)
    ]  # fmt: skip

    def answer(spec: RequestSpec) -> Any:
        assert spec.path == "batch_exports/e/runs/"
        return page(*rows)

    decision, sent = drive(jobs.IntervalJob("e", hour(2)[0], hour(4)[1]).poll(), answer)
    assert decision.done and decision.outcome is Outcome.SUCCEEDED
    assert [dict(s.params) for s in sent] == [
        {
            "ordering": "-data_interval_start",
            "start": hour(2)[0].isoformat(),
            "end": hour(4)[1].isoformat(),
        }
    ]


def test_unshared_wraps_an_operation_for_a_driver_that_knows_only_requests() -> None:
    """Errors of a shared read reach the operation where it asked, as an unshared request's would."""
    error = PostHogServerError("PostHog API GET x: HTTP 503", http_status=503)

    def poll() -> Any:
        try:
            yield runs_by_interval("e", *hour(0))
        except PostHogServerError as exc:
            return f"caught {exc.http_status}"
        return "no error"

    op = sharing.unshared(poll())
    spec = next(op)
    assert isinstance(spec, RequestSpec) and spec.path == "batch_exports/e/runs/"
    with pytest.raises(StopIteration) as stop:
        op.throw(error)
    assert stop.value.value == "caught 503"


# -- narrowing a wider list ----------------------------------------------------------------------------------


def test_runs_inside_keeps_posthogs_predicate_and_order() -> None:
    """``data_interval_start >= start AND data_interval_end <= end``; a null bound never matches."""
    start, end = T0 + 2 * HOUR, T0 + 4 * HOUR
    runs = [
        run("after", T0 + 4 * HOUR, T0 + 5 * HOUR),
        run("last", T0 + 3 * HOUR, T0 + 4 * HOUR),
        run("straddles-end", T0 + 3 * HOUR, T0 + 5 * HOUR),
        run("first", T0 + 2 * HOUR, T0 + 3 * HOUR),
        run("straddles-start", T0 + HOUR, T0 + 3 * HOUR),
        run("all-time", None, T0 + 3 * HOUR),
        run("no-end", T0 + 2 * HOUR, None),
        run("again", T0 + 2 * HOUR, T0 + 3 * HOUR),
    ]
    assert [r.id for r in runs_inside(runs, (start, end))] == ["last", "first", "again"]
    narrowed = runs_inside(runs, (start, end))
    assert narrowed is not runs_inside(runs, (start, end))  # each wait its own list


# -- which range to list -------------------------------------------------------------------------------------


def test_ranges_less_than_a_day_apart_are_listed_together() -> None:
    spans = [hour(n) for n in range(0, 100)]
    assert merged_span(spans, hour(40)) == (T0, T0 + 100 * HOUR)
    far = (T0 + 100 * HOUR + DAY + HOUR, T0 + 100 * HOUR + DAY + 2 * HOUR)  # a day and an hour later
    assert merged_span([*spans, far], far) == far
    assert merged_span([*spans, far], hour(0)) == (T0, T0 + 100 * HOUR)


def test_a_merged_range_is_capped_at_seven_days_and_a_wider_range_is_read_alone() -> None:
    days = [(T0 + n * DAY, T0 + (n + 1) * DAY) for n in range(30)]
    first = merged_span(days, days[3])
    assert first == (T0, T0 + 7 * DAY)
    assert merged_span(days, days[9]) == (T0 + 7 * DAY, T0 + 14 * DAY)
    wide = (T0, T0 + 8 * DAY)
    assert merged_span([*days, wide], wide) == wide
    assert merged_span([*days, wide], days[0]) == first  # the wide one never widens another's list


def test_sparse_short_ranges_are_not_merged_into_more_pages_than_they_save() -> None:
    """Two five-minute intervals 23 hours apart: one list would hold ~276 runs (3 pages) for 2 wanted."""
    five = dt.timedelta(minutes=5)
    a = (T0, T0 + five)
    b = (T0 + 23 * HOUR, T0 + 23 * HOUR + five)
    assert merged_span([a, b], a) == a
    hourly = [hour(0), hour(23)]  # 24 hourly runs: one page instead of two requests
    assert merged_span(hourly, hour(0)) == (T0, T0 + 24 * HOUR)


# -- the table -----------------------------------------------------------------------------------------------


def table(clock: Clock, **kwargs: Any) -> SharedReads[str]:
    return SharedReads(clock, **kwargs)


def test_asks_while_a_read_is_in_flight_join_it_and_later_asks_reuse_it_while_fresh() -> None:
    clock = Clock()
    reads = table(clock)
    entry, how = reads.ask(SCOPE, BACKFILL, None, 60)
    assert how == "new"
    entry.handle = "task"
    clock.now += 1
    assert reads.ask(SCOPE, BACKFILL, None, 60) == (entry, "in_flight")
    reads.settle(entry, "answer")
    clock.now += 58  # 59 s after the read started
    assert reads.ask(SCOPE, BACKFILL, None, 60) == (entry, "fresh")
    assert entry.value == "answer" and entry.handle is None
    clock.now += 1  # 60 s: too old
    again, how = reads.ask(SCOPE, BACKFILL, None, 60)
    assert how == "new" and again is not entry


def test_an_answer_is_never_older_than_the_askers_window_nor_than_any_users() -> None:
    clock = Clock()
    reads = table(clock)
    entry, _ = reads.ask(SCOPE, BACKFILL, None, 60)
    reads.settle(entry, "answer")
    clock.now += 7
    assert reads.ask(SCOPE, BACKFILL, None, 5)[1] == "new"  # 7 s old: too old for a 5 s poll

    clock = Clock()
    reads = table(clock)
    entry, _ = reads.ask(SCOPE, BACKFILL, None, 60)
    reads.settle(entry, "answer")
    clock.now += 3
    assert reads.ask(SCOPE, BACKFILL, None, 5) == (entry, "fresh")  # a 5 s poll used it ...
    assert entry.window == 5
    clock.now += 3  # ... so at 6 s it is too old for everyone, 60 s polls included
    assert reads.ask(SCOPE, BACKFILL, None, 60)[1] == "new"


def test_window_zero_joins_reads_in_flight_only() -> None:
    clock = Clock()
    reads = table(clock)
    entry, _ = reads.ask(SCOPE, BACKFILL, None, 0)
    assert reads.ask(SCOPE, BACKFILL, None, 0) == (entry, "in_flight")
    reads.settle(entry, "answer")
    assert len(reads) == 0
    assert reads.ask(SCOPE, BACKFILL, None, 0)[1] == "new"


def test_a_failed_read_is_forgotten_at_once() -> None:
    clock = Clock()
    reads = table(clock)
    entry, _ = reads.ask(SCOPE, BACKFILL, None, 60)
    reads.drop(entry)
    assert len(reads) == 0
    assert reads.ask(SCOPE, BACKFILL, None, 60)[1] == "new"


def test_nothing_is_shared_across_scopes_or_keys() -> None:
    clock = Clock()
    reads = table(clock)
    entry, _ = reads.ask(SCOPE, BACKFILL, None, 60)
    other_key = (*SCOPE[:2], "other-fingerprint", SCOPE[3])
    other_project = (SCOPE[0], 2, *SCOPE[2:])
    other_host = ("https://eu.posthog.com", *SCOPE[1:])
    for scope in (other_key, other_project, other_host):
        assert reads.ask(scope, BACKFILL, None, 60)[1] == "new"
    assert reads.ask(SCOPE, RequestSpec("GET", "batch_exports/e/backfills/c/"), None, 60)[1] == "new"
    assert reads.ask(SCOPE, BACKFILL, None, 60) == (entry, "in_flight")


def test_waits_on_different_intervals_share_one_list_once_their_interest_is_known() -> None:
    """The first round reads as the waits arrive; from the second on, one list serves all of them."""
    clock = Clock()
    reads = table(clock)
    new = 0
    for n in range(100):  # round one: each new interval widens the next read
        entry, how = reads.ask(SCOPE, RUNS, hour(n), 60)
        if how == "new":
            new += 1
            reads.settle(entry, f"list {n}")
        clock.now += 0.5
    assert new == 100
    clock.now += 60
    reads_in_round: list[Any] = []
    for n in range(100):  # round two
        entry, how = reads.ask(SCOPE, RUNS, hour(n), 60)
        if how == "new":
            reads_in_round.append(entry.span)
            reads.settle(entry, "the list")
        clock.now += 0.5
    assert reads_in_round == [(T0, T0 + 100 * HOUR)]


def test_a_wait_reuses_a_wider_list_but_not_a_narrower_one() -> None:
    clock = Clock()
    reads = table(clock)
    wide, _ = reads.ask(SCOPE, RUNS, (T0, T0 + 10 * HOUR), 60)
    assert reads.ask(SCOPE, RUNS, hour(3), 60) == (wide, "in_flight")
    other, how = reads.ask(SCOPE, RUNS, hour(12), 60)
    assert how == "new" and other.span is not None and other.span[1] == T0 + 13 * HOUR


@pytest.mark.parametrize(("window", "lasts"), [(60, 120), (10, 60)], ids=["two-windows", "at-least-60s"])
def test_interest_expires_after_two_windows_and_at_least_a_minute(window: float, lasts: float) -> None:
    clock = Clock()
    reads = table(clock)
    first, _ = reads.ask(SCOPE, RUNS, hour(0), window)
    reads.settle(first, "a")
    clock.now += lasts - 1
    entry, _ = reads.ask(SCOPE, RUNS, hour(5), window)
    assert entry.span == (T0, T0 + 6 * HOUR)  # the first wait's interval is still of interest
    reads.settle(entry, "b")
    clock.now += 2  # hour(0) last asked ``lasts`` + 1 s ago
    entry, _ = reads.ask(SCOPE, RUNS, hour(9), window)
    assert entry.span == (T0 + 5 * HOUR, T0 + 10 * HOUR)
    clock.now += lasts - 0.001
    reads.sweep()
    assert reads.interest_count == 1  # hour(9) only, until ``lasts`` after it was asked
    clock.now += 0.002
    reads.sweep()
    assert reads.interest_count == 0


def test_expired_answers_are_swept() -> None:
    clock = Clock()
    reads = table(clock)
    for n in range(50):
        entry, _ = reads.ask(SCOPE, RequestSpec("GET", f"batch_exports/e/runs/{n}/"), None, 30)
        reads.settle(entry, n)
    assert len(reads) == 50
    clock.now += 30
    reads.sweep()
    assert len(reads) == 0


@pytest.mark.parametrize("advancing", [False, True], ids=["clock-stopped", "clock-advancing"])
def test_memory_is_bounded_after_100000_distinct_reads(advancing: bool) -> None:
    """Neither answers nor interests grow with the number of distinct objects ever polled, not even when
    reads stay in flight and nothing expires (the clock stopped)."""
    clock = Clock()
    reads = table(clock, max_entries=1000, max_interests=2000)
    for n in range(100_000):
        key = RequestSpec("GET", f"batch_exports/e{n}/runs/", (("ordering", "-data_interval_start"),))
        entry, how = reads.ask(SCOPE, key, hour(n % 1000), 60)
        assert how == "new"
        if advancing or n % 2:
            reads.settle(entry, n)
        if advancing:
            clock.now += 0.01
        assert len(reads) <= 1000 and reads.interest_count <= 2000
    if advancing:  # once expired, the next ask's sweep forgets them all
        clock.now += 121
        reads.ask(SCOPE, BACKFILL, None, 60)
        assert (len(reads), reads.interest_count) == (1, 0)


def test_the_table_says_nothing_about_what_it_holds() -> None:
    clock = Clock()
    reads = table(clock)
    entry, _ = reads.ask(SCOPE, BACKFILL, None, 60)
    reads.settle(entry, {"secret": "value"})
    assert "value" not in repr(reads) and "value" not in repr(entry)
