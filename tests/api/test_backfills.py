"""Backfill find / create / retry and a backfill's runs, driven without any transport or clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from op_driver import START, FakeClock, drive, http_error, page

from airflow_provider_posthog.api import backfills, endpoints
from airflow_provider_posthog.api.backfills import BackfillLookup
from airflow_provider_posthog.api.clock import CLOCK_SKEW_ALLOWANCE
from airflow_provider_posthog.api.decisions import decide_backfill
from airflow_provider_posthog.api.http import RequestSpec, export_path
from airflow_provider_posthog.api.intervals import ExportSchedule
from airflow_provider_posthog.api.models import Backfill
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import (
    PostHogAuthError,
    PostHogBackfillAlreadyRunningError,
    PostHogBackfillNotVisibleError,
    PostHogCancelNotEffectiveError,
    PostHogConfigError,
    PostHogError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTooManyBackfillsError,
    PostHogTransportError,
    PostHogValidationError,
)

LOOKUP = BackfillLookup(timeout=60.0, poll_initial=0.01, poll_max=0.01)


def backfill(**kw: Any) -> Backfill:
    row = {
        "id": "b1",
        "status": "Completed",
        "start_at": "2026-11-28T16:30:00Z",
        "end_at": "2026-11-28T19:00:00Z",
        "created_at": "2026-11-28T20:00:00Z",
    }
    row.update(kw)
    return Backfill.from_api(row)


def run(rid: str, start: str, status: str = "Completed", bf: str | None = "b1") -> dict[str, Any]:
    begin = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    return {
        "id": rid,
        "status": status,
        "backfill": bf,
        "data_interval_start": start,
        "data_interval_end": (begin + dt.timedelta(hours=1)).isoformat(),
        "records_completed": 10,
        "latest_error": "boom" if status == "Failed" else None,
    }


# -- a backfill's runs --------------------------------------------------------------------------------------


def test_a_failed_first_run_aligned_before_start_at_fails_a_completed_backfill() -> None:
    """PostHog rounds the first run down to 16:00 for a backfill from 16:30, and marks it Completed anyway."""
    runs = [
        run("r0", "2026-11-28T16:00:00Z", "Failed"),
        run("r1", "2026-11-28T17:00:00Z"),
        run("r2", "2026-11-28T18:00:00Z"),
        run("other", "2026-11-28T17:00:00Z", "Failed", bf="another-backfill"),
        run("scheduled", "2026-11-28T18:00:00Z", "Failed", bf=None),
    ]

    def answer(spec: RequestSpec) -> Any:
        if spec.path.endswith("/runs/"):
            return {"next": None, "results": runs}
        assert spec.path == export_path("e")
        return {"id": "e", "interval": "hour"}

    b = backfill(adjusted_start_at="2026-11-28T16:00:00Z")
    got, sent = drive(endpoints.list_backfill_runs("e", b), answer)
    assert [r.id for r in got] == ["r0", "r1", "r2"]
    assert got[0].data_interval_start is not None and b.start_at is not None
    assert got[0].data_interval_start < b.start_at
    # One GET of the export (its interval), one page of runs by data interval from an hour before 16:00.
    assert [s.path for s in sent] == [export_path("e"), export_path("e", "runs")]
    assert dict(sent[1].params) == {
        "ordering": "data_interval_start",
        "start": "2026-11-28T15:00:00+00:00",
        "end": "2026-11-28T19:00:00+00:00",
    }
    decision = decide_backfill(b, got)
    assert decision.outcome is Outcome.FAILED
    assert [r["id"] for r in decision.failed_runs] == ["r0"]
    assert "1 of its run(s) failed" in decision.message
    # Looking only at runs starting at or after start_at (the old query) would have called it a success.
    late = [r for r in got if r.data_interval_start and r.data_interval_start >= b.start_at]
    assert decide_backfill(b, late).outcome is Outcome.SUCCEEDED


def test_backfill_runs_window_uses_the_schedule_given_and_the_earliest_start() -> None:
    daily = ExportSchedule("day", timezone="America/New_York")
    b = backfill(
        start_at="2024-03-10T05:00:00Z",
        end_at="2024-03-12T04:00:00Z",
        adjusted_start_at="2024-03-11T04:00:00Z",
    )
    _, sent = drive(
        endpoints.list_backfill_runs("e", b, schedule=daily),
        lambda spec: {"next": None, "results": []},
    )
    assert len(sent) == 1  # no GET of the export
    assert dict(sent[0].params)["start"] == "2024-03-09T05:00:00+00:00"  # a day before the earliest start
    assert dict(sent[0].params)["end"] == "2024-03-12T04:00:00+00:00"


def test_open_ended_backfill_runs_are_listed_by_creation_time() -> None:
    b = backfill(start_at=None)
    got, sent = drive(
        endpoints.list_backfill_runs("e", b),
        lambda spec: {"next": None, "results": [run("r0", "2026-11-28T16:00:00Z")]},
    )
    assert [r.id for r in got] == ["r0"] and len(sent) == 1
    assert dict(sent[0].params) == {"after": "2026-11-28T19:00:00+00:00"}


# -- create: alignment, already running ---------------------------------------------------------------------


def _bf_row(bid: str, status: str, start: str, end: str) -> dict[str, Any]:
    return {
        "id": bid,
        "status": status,
        "start_at": start,
        "end_at": end,
        "created_at": "2026-11-28T20:00:00Z",
    }


def test_unaligned_range_is_refused_after_one_get_and_before_any_post() -> None:
    sent: list[RequestSpec] = []

    def answer(spec: RequestSpec) -> Any:
        sent.append(spec)
        return {"id": "e", "interval": "hour"}

    op = backfills.create_backfill("e", "2026-11-28T19:30:00Z", "2026-11-28T21:00:00Z", lookup=LOOKUP)
    with pytest.raises(PostHogConfigError, match=r"PostHog would export from 2026-11-28T19:00:00\+00:00"):
        drive(op, answer)
    assert [(s.method, s.path) for s in sent] == [("GET", export_path("e"))]


def test_identical_running_backfill_is_reported_before_posting() -> None:
    rows = [_bf_row("running", "Running", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z")]

    def answer(spec: RequestSpec) -> Any:
        assert spec.method == "GET"
        if spec.path.endswith("/backfills/"):
            return {"next": None, "results": rows}
        return {"id": "e", "interval": "hour"}

    op = backfills.create_backfill("e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", lookup=LOOKUP)
    with pytest.raises(PostHogBackfillAlreadyRunningError, match="Backfill running of batch export e") as exc:
        drive(op, answer)
    assert exc.value.backfill_id == "running" and exc.value.backfill.status == "Running"


def test_a_finished_or_different_backfill_does_not_block() -> None:
    rows = [
        _bf_row("done", "Completed", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z"),
        _bf_row("wider", "Running", "2026-11-28T18:00:00Z", "2026-11-28T21:00:00Z"),
    ]
    posted: list[RequestSpec] = []

    def answer(spec: RequestSpec) -> Any:
        if spec.method == "POST":
            posted.append(spec)
            return {"backfill_id": "018f0000-0000-7000-8000-0000000000b1"}
        if spec.path.endswith("/backfills/"):
            return {"next": None, "results": rows}
        if "/backfills/" in spec.path:
            return _bf_row("018f0000-0000-7000-8000-0000000000b1", "Starting", "x", "y") | {
                "start_at": "2026-11-28T19:00:00Z",
                "end_at": "2026-11-28T21:00:00Z",
            }
        return {"id": "e", "interval": "hour"}

    op = backfills.create_backfill("e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", lookup=LOOKUP)
    created, _ = drive(op, answer)
    assert created.status == "Starting" and len(posted) == 1


def test_http_500_on_create_names_the_running_backfill_at_once() -> None:
    """PostHog answers 500 when the same backfill is still running (its row was not listed yet)."""
    listings = iter(
        [
            {"next": None, "results": []},  # before the POST: not visible yet
            {
                "next": None,
                "results": [_bf_row("late", "Running", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z")],
            },
        ]
    )
    posts = 0

    def answer(spec: RequestSpec) -> Any:
        nonlocal posts
        if spec.method == "POST":
            posts += 1
            raise http_error(500, "A server error occurred.", "POST")
        if spec.path.endswith("/backfills/"):
            return next(listings)
        return {"id": "e", "interval": "hour"}

    op = backfills.create_backfill("e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", lookup=LOOKUP)
    with pytest.raises(PostHogBackfillAlreadyRunningError) as exc:
        drive(op, answer)
    assert exc.value.backfill_id == "late" and posts == 1


def test_retry_run_of_an_interval_still_being_retried() -> None:
    def answer(spec: RequestSpec) -> Any:
        assert spec.method == "GET"
        if spec.path.endswith("/backfills/"):
            rows = [_bf_row("retrying", "Starting", "2026-11-28T16:00:00Z", "2026-11-28T17:00:00Z")]
            return {"next": None, "results": rows}
        return run("r0", "2026-11-28T16:00:00Z", "Failed")

    with pytest.raises(PostHogBackfillAlreadyRunningError, match="Backfill retrying"):
        drive(backfills.retry_run("e", "r0", lookup=LOOKUP), answer)


def test_backfill_not_visible_is_retryable_not_a_not_found() -> None:
    lookup = BackfillLookup(timeout=0.0, poll_initial=0.0, poll_max=0.0)

    def answer(spec: RequestSpec) -> Any:
        if spec.method == "POST":
            return {"backfill_id": "018f0000-0000-7000-8000-0000000000b1"}
        if spec.path.endswith("/backfills/"):
            return {"next": None, "results": []}
        if "/backfills/" in spec.path:
            raise http_error(404, "Not found.")
        return {"id": "e", "interval": "hour"}

    op = backfills.create_backfill("e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", lookup=lookup)
    with pytest.raises(PostHogBackfillNotVisibleError, match="did not appear within 0s") as exc:
        drive(op, answer)
    assert not isinstance(exc.value, (PostHogNotFoundError, AirflowFailException))


# -- which errors never retry -------------------------------------------------------------------------------


def test_configuration_errors_fail_the_task_for_good() -> None:
    final: tuple[type[Exception], ...] = (
        PostHogConfigError,
        PostHogValidationError,
        PostHogAuthError,
        PostHogNotFoundError,
    )
    for cls in final:
        assert issubclass(cls, AirflowFailException) and issubclass(cls, PostHogError)
    retryable: tuple[type[Exception], ...] = (
        PostHogServerError,
        PostHogTransportError,
        PostHogRateLimitError,
        PostHogTooManyBackfillsError,
        PostHogBackfillNotVisibleError,
        PostHogBackfillAlreadyRunningError,
        PostHogCancelNotEffectiveError,
    )
    for cls in retryable:
        assert not issubclass(cls, AirflowFailException), cls
    assert isinstance(http_error(404, "Not found."), AirflowFailException)
    assert not isinstance(http_error(503, "down"), AirflowFailException)


# -- resolving the new row, on a clock the test owns --------------------------------------------------------

UUID = "018f0000-0000-7000-8000-0000000000b1"
RANGE = ("2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z")
STEADY = BackfillLookup(timeout=5.0, poll_initial=1.0, poll_max=2.0, max_posts=2)


class Script:
    """PostHog as a list of answers per request kind; records what was sent."""

    def __init__(self, *, export: dict[str, Any] | None = None) -> None:
        self.export = export or {"id": "e", "interval": "hour"}
        self.posts: list[Any] = []  # answers (or errors) of successive POSTs
        self.listings: list[dict[str, Any]] = []  # successive backfill pages; the last one repeats
        self.rows: list[Any] = []  # successive answers of GET backfill by id; the last one repeats
        self.post_bodies: list[Any] = []

    def __call__(self, spec: RequestSpec) -> Any:
        if spec.method == "POST":
            self.post_bodies.append(spec.json)
            return self._next(self.posts, keep_last=False)
        if spec.path.endswith("/backfills/"):
            return self._next(self.listings)
        if "/backfills/" in spec.path:
            return self._next(self.rows)
        return self.export

    @staticmethod
    def _next(answers: list[Any], keep_last: bool = True) -> Any:
        answer = answers[0] if len(answers) == 1 and keep_last else answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _row(bid: str, created_at: str, status: str = "Running", start: str = RANGE[0]) -> dict[str, Any]:
    return {"id": bid, "status": status, "start_at": start, "end_at": RANGE[1], "created_at": created_at}


def test_a_new_uuid_is_read_until_its_row_appears_with_growing_waits() -> None:
    script = Script()
    script.posts = [{"backfill_id": UUID}]
    script.listings = [page()]
    script.rows = [
        http_error(404, "Not found."),
        http_error(404, "Not found."),
        _row(UUID, "2026-11-28T20:00:31Z"),
    ]
    clock = FakeClock()
    created, sent = drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script, clock)
    assert created.id == UUID
    assert [(s.method, s.path.removeprefix("batch_exports/")) for s in sent] == [
        ("GET", "e/"),
        ("GET", "e/backfills/"),
        ("POST", "e/backfills/"),
        ("GET", f"e/backfills/{UUID}/"),
        ("GET", f"e/backfills/{UUID}/"),
        ("GET", f"e/backfills/{UUID}/"),
    ]
    assert clock.slept == [1.0, 1.5]


def test_a_uuid_whose_row_never_appears_gives_up_at_the_deadline_of_the_driver_clock() -> None:
    script = Script()
    script.posts = [{"backfill_id": UUID}]
    script.listings = [page()]
    script.rows = [http_error(404, "Not found.")]
    clock = FakeClock()
    with pytest.raises(PostHogBackfillNotVisibleError, match="did not appear within 5s"):
        drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script, clock)
    assert clock.slept == [1.0, 1.5, 2.0, 0.5]  # the last wait is clamped to the deadline
    assert clock.now == START.add(seconds=5)


def test_a_workflow_id_is_resolved_by_range_never_to_an_older_backfill() -> None:
    """Older PostHog answers a workflow id; an older row over the same range existed before the POST."""
    old = _row("old", "2026-11-28T20:00:00Z", status="Completed")
    script = Script()
    script.posts = [{"backfill_id": "e-2026-11-28T19:00:00+00:00-2026-11-28T21:00:00+00:00"}]
    script.listings = [page(old), page(old), page(_row("new", "2026-11-28T20:00:32Z"), old)]
    clock = FakeClock()
    created, sent = drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script, clock)
    assert created.id == "new" and clock.slept == [1.0]
    assert [s.method for s in sent] == ["GET", "GET", "POST", "GET", "GET"]


def test_a_row_created_before_the_clock_skew_window_is_not_the_new_one() -> None:
    stale = _row("stale", (START - CLOCK_SKEW_ALLOWANCE).subtract(seconds=1).isoformat())
    script = Script()
    script.posts = [{"backfill_id": "workflow-id"}]
    script.listings = [page(), page(stale)]  # not listed before the POST, but far too old to be ours
    with pytest.raises(PostHogBackfillNotVisibleError):
        drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script)


def test_an_ambiguous_failure_looks_first_then_resends_once() -> None:
    script = Script()
    script.posts = [http_error(503, "Service unavailable.", "POST"), {"backfill_id": UUID}]
    script.listings = [page()]
    script.rows = [_row(UUID, "2026-11-28T20:00:40Z")]
    clock = FakeClock()
    created, _ = drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script, clock)
    assert created.id == UUID and len(script.post_bodies) == 2
    assert sum(clock.slept) == pytest.approx(STEADY.timeout)  # looked for the whole lookup window first


def test_an_ambiguous_failure_whose_backfill_appears_is_not_resent() -> None:
    script = Script()
    script.posts = [http_error(502, "Bad gateway.", "POST")]
    script.listings = [page(), page(), page(_row("mine", "2026-11-28T20:00:31Z"))]
    created, _ = drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script)
    assert created.id == "mine" and len(script.post_bodies) == 1


def test_ambiguous_failures_stop_after_max_posts() -> None:
    script = Script()
    script.posts = [PostHogTransportError("read timeout", http_status=None)] * 2
    script.listings = [page()]
    with pytest.raises(PostHogTransportError, match="read timeout"):
        drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script)
    assert len(script.post_bodies) == STEADY.max_posts


def test_a_connect_error_is_never_resent_by_the_operation() -> None:
    from airflow_provider_posthog.exceptions import PostHogConnectError

    script = Script()
    script.posts = [PostHogConnectError("refused")]
    script.listings = [page()]
    with pytest.raises(PostHogConnectError):
        drive(backfills.create_backfill("e", *RANGE, lookup=STEADY), script)
    assert len(script.post_bodies) == 1


@pytest.mark.parametrize(
    ("timezone_field", "first", "detail", "second"),
    [
        (True, "2026-11-28", "Datetime 2026-11-28 is naive", "2026-11-28T00:00:00+00:00"),
        (False, "2026-11-28T00:00:00+00:00", "Expect only the date component", "2026-11-28"),
    ],
)
def test_the_other_bound_format_is_sent_once_when_posthog_asks(
    timezone_field: bool, first: str, detail: str, second: str
) -> None:
    export: dict[str, Any] = {"id": "e", "interval": "day"} | ({"timezone": "UTC"} if timezone_field else {})
    script = Script(export=export)
    asks = http_error(400, detail.replace("Expect", "expect"), "POST")
    script.posts = [asks, http_error(503, "down", "POST"), {"backfill_id": UUID}]
    script.listings = [page()]
    script.rows = [
        _row(UUID, "2026-11-28T20:00:40Z")
        | {"start_at": "2026-11-28T00:00:00Z", "end_at": "2026-11-29T00:00:00Z"}
    ]
    lookup = BackfillLookup(timeout=0.0, max_posts=2)
    created, _ = drive(
        backfills.create_backfill("e", "2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z", lookup=lookup),
        script,
    )
    assert created.id == UUID
    # The 400 created nothing, so its resend is free: the 503 still gets its one resend, in the new format.
    assert [b["start_at"] for b in script.post_bodies] == [first, second, second]


# -- find: the same "newest matching" rule ------------------------------------------------------------------


def test_find_backfill_returns_the_newest_exact_match_reading_pages_newest_first() -> None:
    older = _row("older", "2026-11-28T10:00:00Z", status="Completed")
    newer = _row("newer", "2026-11-28T11:00:00Z", status="Failed")
    moved = _row("moved", "2026-11-28T12:00:00Z", start="2026-11-28T20:00:00Z")  # start moved to first data
    nxt = "https://us.posthog.com/api/projects/1/batch_exports/e/backfills/?cursor=2"
    pages = iter([page(moved, next_link=nxt), page(older, newer)])
    found, sent = drive(backfills.find_backfill("e", *RANGE), lambda spec: next(pages))
    assert found is not None and found.id == "newer" and len(sent) == 2
    assert (
        dict(sent[0].params) == {"ordering": "-created_at"}
        and sent[1].url == "/api/projects/1/batch_exports/e/backfills/?cursor=2"
    )
    pages = iter([page(older, newer)])
    assert drive(backfills.find_backfill("e", *RANGE, active_only=True), lambda spec: next(pages))[0] is None


def test_find_backfill_stops_at_the_first_page_with_a_match() -> None:
    nxt = "https://us.posthog.com/api/projects/1/batch_exports/e/backfills/?cursor=2"
    found, sent = drive(
        backfills.find_backfill("e", *RANGE, active_only=True),
        lambda spec: page(_row("live", "2026-11-28T10:00:00Z"), next_link=nxt),
    )
    assert found is not None and found.id == "live" and len(sent) == 1
