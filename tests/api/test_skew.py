"""A worker clock minutes off PostHog's: the new backfill is found, its retry re-attaches, nothing is exported
twice, and an earlier round's backfill is still not adopted. Driven without transport or real clock: PostHog
here keeps its own clock, stamps ``created_at`` and the ``Date`` header with it, and the driver answers
``NOW`` with the worker's."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from op_driver import FakeClock

from airflow_provider_posthog.api import backfills
from airflow_provider_posthog.api.backfills import BackfillLookup, SeenBackfill
from airflow_provider_posthog.api.clock import (
    CLOCK_SKEW_ALLOWANCE,
    UNMEASURED,
    PostHogClock,
    parse_http_date,
)
from airflow_provider_posthog.api.http import NOW, ApiResponse, Operation, RequestSpec, Sleep
from airflow_provider_posthog.api.jobs import BackfillJob
from airflow_provider_posthog.api.models import Backfill
from airflow_provider_posthog.api.sharing import unshared
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import PostHogBackfillNotVisibleError, PostHogError
from airflow_provider_posthog.tasks import reattach

TEN_MINUTES = dt.timedelta(minutes=10)
RANGE = (pendulum.datetime(2026, 11, 28, 17, tz="UTC"), pendulum.datetime(2026, 11, 28, 19, tz="UTC"))
LOOKUP = BackfillLookup(timeout=60.0, poll_initial=1.0, poll_max=2.0)
ROW_DELAY = dt.timedelta(seconds=3)  # PostHog writes the row from its workflow, moments after the POST
RUN_TIME = dt.timedelta(seconds=20)  # then the backfill completes


class SkewedPostHog:
    """PostHog whose clock is ``worker_ahead`` behind the worker's (negative: the worker is behind).

    ``generation="docs"`` answers a backfill POST with a workflow id (found by range), ``"new"`` with the
    row's UUID. ``dates=False`` leaves out the ``Date`` header (a proxy that drops it).
    """

    def __init__(
        self, worker: FakeClock, worker_ahead: dt.timedelta, *, generation: str = "docs", dates: bool = True
    ) -> None:
        self.worker = worker
        self.worker_ahead = worker_ahead
        self.generation = generation
        self.dates = dates
        self.rows: list[dict[str, Any]] = []  # every backfill ever requested, newest last
        self.posts = 0

    def now(self) -> pendulum.DateTime:
        return self.worker.now - self.worker_ahead

    def seed(self, bid: str, created: pendulum.DateTime, status: str = "Completed") -> None:
        """A backfill of the same range from an earlier round, created at ``created`` (PostHog's clock)."""
        self.rows.append(self._row(bid, created, status))

    def _row(self, bid: str, created: pendulum.DateTime, status: str) -> dict[str, Any]:
        return {
            "id": bid,
            "batch_export": "e",
            "status": status,
            "start_at": RANGE[0].isoformat(),
            "end_at": RANGE[1].isoformat(),
            "created_at": created.isoformat(),
            "_requested": created - ROW_DELAY,
        }

    def _visible(self) -> list[dict[str, Any]]:
        now = self.now()
        out = []
        for row in self.rows:
            if row["_requested"] + ROW_DELAY > now:
                continue  # its workflow has not written it yet
            shown = {k: v for k, v in row.items() if not k.startswith("_")}
            if row["status"] == "Running" and row["_requested"] + ROW_DELAY + RUN_TIME <= now:
                shown["status"] = "Completed"
            out.append(shown)
        return out

    def _runs(self, bid: str) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{bid}-{h}",
                "status": "Completed",
                "backfill": bid,
                "batch_export": "e",
                "data_interval_start": RANGE[0].add(hours=h).isoformat(),
                "data_interval_end": RANGE[0].add(hours=h + 1).isoformat(),
                "records_completed": 10,
            }
            for h in range(2)
        ]

    def answer(self, spec: RequestSpec) -> ApiResponse:
        utc_now = dt.datetime.fromtimestamp(self.now().timestamp(), dt.timezone.utc)
        date = format_datetime(utc_now, usegmt=True) if self.dates else None
        return ApiResponse(200 if spec.method == "GET" else 201, self._body(spec), date)

    def _body(self, spec: RequestSpec) -> Any:
        path = spec.path.removeprefix("batch_exports/e/")
        if spec.method == "POST" and path == "backfills/":
            self.posts += 1
            bid = f"018f0000-0000-7000-8000-00000000000{self.posts}"
            self.rows.append(self._row(bid, self.now() + ROW_DELAY, "Running"))
            if self.generation == "new":
                return {"backfill_id": bid}
            return {"backfill_id": f"e-Backfill-{RANGE[0].isoformat()}-{RANGE[1].isoformat()}"}
        if path == "backfills/":
            rows = sorted(self._visible(), key=lambda r: r["created_at"], reverse=True)
            return {"next": None, "results": rows}
        if path.startswith("backfills/"):
            bid = path.split("/")[1]
            found = [r for r in self._visible() if r["id"] == bid]
            if not found:
                from op_driver import http_error

                raise http_error(404, "Not found.")
            return found[0]
        if path == "runs/":
            done = [r["id"] for r in self._visible() if r["status"] == "Completed"]
            return {"next": None, "results": [run for bid in done for run in self._runs(bid)]}
        assert spec.method == "GET" and path == "", spec
        return {"id": "e", "interval": "hour", "paused": False}


def drive(op: Operation[Any], posthog: SkewedPostHog) -> Any:
    """The transport: requests to ``posthog``, ``NOW`` from the worker's clock, sleeps move that clock
    (shared reads read in place, unshared)."""
    op = unshared(op)
    reply: Any = None
    error: PostHogError | None = None
    try:
        while True:
            command = op.throw(error) if error is not None else op.send(reply)
            reply, error = None, None
            if command is NOW:
                reply = posthog.worker.now
            elif isinstance(command, Sleep):
                posthog.worker.sleep(command.seconds)
            else:
                assert isinstance(command, RequestSpec)
                try:
                    reply = posthog.answer(command)
                except PostHogError as exc:
                    error = exc
    except StopIteration as stop:
        return stop.value


def retry_context(round_started: pendulum.DateTime) -> dict[str, Any]:
    """Try 2 of 2 (``retries=1``) of a DAG run that started at ``round_started`` on Airflow's clock."""
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = 2, 1
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=1),
        "dag_run": SimpleNamespace(start_date=round_started),
    }


def wait_until_done(posthog: SkewedPostHog, backfill_id: str) -> Outcome:
    for _ in range(60):
        decision = drive(BackfillJob("e", backfill_id).poll(), posthog)
        if decision.done:
            return decision.outcome
        posthog.worker.sleep(5)
    raise AssertionError("the backfill never finished")


# -- one backfill, and a wait that succeeds, with the worker's clock ten minutes off either way -------------


@pytest.mark.parametrize("generation", ["docs", "new"])
@pytest.mark.parametrize("worker_ahead", [TEN_MINUTES, -TEN_MINUTES], ids=["worker+10min", "worker-10min"])
@pytest.mark.parametrize("dates", [True, False], ids=["date-header", "no-date-header"])
def test_try_one_finds_its_backfill_and_the_retry_reattaches_to_it(
    worker_ahead: dt.timedelta, generation: str, dates: bool
) -> None:
    worker = FakeClock(pendulum.datetime(2026, 11, 28, 20, 0, 30, tz="UTC"))
    posthog = SkewedPostHog(worker, worker_ahead, generation=generation, dates=dates)
    round_started = worker.now.subtract(seconds=5)  # the DAG run's start_date, on Airflow's (this) clock

    # Try 1 creates the backfill and finds its row (created on PostHog's clock), then dies after the POST.
    created = drive(backfills.create_backfill("e", *RANGE, lookup=LOOKUP), posthog)
    assert created.id == posthog.rows[0]["id"]
    worker.sleep(30)

    # Try 2 (a retry) looks it up and counts it as this round's, instead of creating a second one.
    found = drive(backfills.find_backfill("e", *RANGE), posthog)
    assert isinstance(found, SeenBackfill) and found.id == created.id
    assert found.posthog_clock.measured is dates
    assert reattach.may_reattach(reattach.RETRY, found, retry_context(round_started))

    assert wait_until_done(posthog, found.id) is Outcome.SUCCEEDED
    assert posthog.posts == 1 and len(posthog.rows) == 1


@pytest.mark.parametrize("worker_ahead", [TEN_MINUTES, -TEN_MINUTES], ids=["worker+10min", "worker-10min"])
def test_the_offset_is_measured_from_the_date_header(worker_ahead: dt.timedelta) -> None:
    worker = FakeClock(pendulum.datetime(2026, 11, 28, 20, 0, 30, tz="UTC"))
    posthog = SkewedPostHog(worker, worker_ahead)
    posthog.seed("old", posthog.now().subtract(hours=1))
    found = drive(backfills.find_backfill("e", *RANGE), posthog)
    assert found.posthog_clock.offset == -worker_ahead


def test_a_skew_past_the_allowance_is_still_covered_by_the_date_header() -> None:
    """20 minutes ahead: the header's offset finds the new row; without it the allowance alone cannot."""
    skew = CLOCK_SKEW_ALLOWANCE + dt.timedelta(minutes=5)
    worker = FakeClock(pendulum.datetime(2026, 11, 28, 20, 0, 30, tz="UTC"))
    posthog = SkewedPostHog(worker, skew)
    round_started = worker.now
    created = drive(backfills.create_backfill("e", *RANGE, lookup=LOOKUP), posthog)
    found = drive(backfills.find_backfill("e", *RANGE), posthog)
    assert found.id == created.id and reattach.may_reattach(
        reattach.RETRY, found, retry_context(round_started)
    )

    blind = SkewedPostHog(FakeClock(worker.now), skew, dates=False)
    with pytest.raises(PostHogBackfillNotVisibleError):
        drive(backfills.create_backfill("e", *RANGE, lookup=LOOKUP), blind)


def test_a_skewed_lookup_logs_how_far_off_this_machine_is(caplog: pytest.LogCaptureFixture) -> None:
    posthog = SkewedPostHog(FakeClock(pendulum.datetime(2026, 11, 28, 20, 0, 30, tz="UTC")), TEN_MINUTES)
    drive(backfills.create_backfill("e", *RANGE, lookup=LOOKUP), posthog)
    assert "this machine's clock is 600s ahead of PostHog's" in caplog.text


# -- the allowance does not make a new round adopt an earlier round's backfill ------------------------------


@pytest.mark.parametrize("worker_ahead", [TEN_MINUTES, -TEN_MINUTES], ids=["worker+10min", "worker-10min"])
def test_a_new_round_does_not_adopt_a_backfill_older_than_the_allowance(worker_ahead: dt.timedelta) -> None:
    """An earlier round exported the range 20 minutes (PostHog's clock) before this round began: the new
    round's retry exports again, whichever way the worker's clock is off."""
    worker = FakeClock(pendulum.datetime(2026, 11, 28, 20, 30, tz="UTC"))
    posthog = SkewedPostHog(worker, worker_ahead)
    posthog.seed("earlier-round", posthog.now().subtract(minutes=20))
    round_started = worker.now.subtract(seconds=5)
    found = drive(backfills.find_backfill("e", *RANGE), posthog)
    assert found is not None and found.id == "earlier-round"
    assert not reattach.may_reattach(reattach.RETRY, found, retry_context(round_started))


def test_without_a_date_header_a_slow_worker_widens_what_counts_as_this_round() -> None:
    """The limit of the unmeasured case, stated: a worker 10 minutes behind and no ``Date`` header make the
    window 25 minutes on PostHog's clock; the header narrows it back to the allowance."""
    worker = FakeClock(pendulum.datetime(2026, 11, 28, 20, 30, tz="UTC"))
    measured = SkewedPostHog(worker, -TEN_MINUTES)
    blind = SkewedPostHog(worker, -TEN_MINUTES, dates=False)
    for posthog in (measured, blind):
        posthog.seed("earlier-round", posthog.now().subtract(minutes=20))
    context = retry_context(worker.now)
    assert not reattach.may_reattach(
        reattach.RETRY, drive(backfills.find_backfill("e", *RANGE), measured), context
    )
    assert reattach.may_reattach(reattach.RETRY, drive(backfills.find_backfill("e", *RANGE), blind), context)


# -- the clock itself ---------------------------------------------------------------------------------------


def test_http_dates_parse_and_anything_else_is_unmeasured() -> None:
    assert parse_http_date("Sat, 28 Nov 2026 20:00:30 GMT") == dt.datetime(
        2026, 11, 28, 20, 0, 30, tzinfo=dt.timezone.utc
    )
    assert parse_http_date("Sat, 28 Nov 2026 21:00:30 +0100") == dt.datetime(
        2026, 11, 28, 20, 0, 30, tzinfo=dt.timezone.utc
    )
    for bad in (None, "", "yesterday", "Sat, 99 Nov 2026 20:00:30 GMT"):
        assert parse_http_date(bad) is None
    local = pendulum.datetime(2026, 11, 28, 20, 10, 30, tz="UTC")
    clock = PostHogClock.read(ApiResponse(200, {}, "Sat, 28 Nov 2026 20:00:30 GMT"), local)
    assert clock.offset == -TEN_MINUTES and clock.on_posthog(local) == local - TEN_MINUTES
    assert clock.describe() == "this machine's clock is 600s ahead of PostHog's"
    assert PostHogClock.read(ApiResponse(200, {}, "garbage"), local) == UNMEASURED
    assert UNMEASURED.on_posthog(local) == local


def test_created_since_allows_the_skew_on_posthogs_clock_and_no_more() -> None:
    local = pendulum.datetime(2026, 11, 28, 20, 10, 30, tz="UTC")
    clock = PostHogClock(-TEN_MINUTES)  # PostHog's clock reads 20:00:30
    edge = pendulum.datetime(2026, 11, 28, 20, 0, 30, tz="UTC") - CLOCK_SKEW_ALLOWANCE
    assert clock.created_since(edge, local)
    assert not clock.created_since(edge.subtract(seconds=1), local)


def test_the_re_attach_rule_reads_the_clock_of_the_listing_that_found_the_backfill() -> None:
    row = {"id": "b", "status": "Running", "created_at": "2026-11-28T20:00:00Z"}
    plain = Backfill.from_api(row)
    seen = SeenBackfill.of(plain, PostHogClock(-dt.timedelta(minutes=20)))
    assert seen.id == plain.id and seen.created_at == plain.created_at and seen.raw == plain.raw
    context = retry_context(pendulum.datetime(2026, 11, 28, 20, 20, tz="UTC"))  # Airflow's clock
    assert reattach.created_this_round(seen, context)  # on PostHog's clock the round began at 20:00
    assert not reattach.created_this_round(plain, context)  # unmeasured: 20 minutes > the allowance
