"""The shared operations driven without any transport: what they send, and what they make of the answers."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_posthog.api import operations as ops
from airflow_provider_posthog.api import requests as rq
from airflow_provider_posthog.api.errors import error_from_response, refuses_personal_keys
from airflow_provider_posthog.api.intervals import ExportSchedule
from airflow_provider_posthog.api.models import Backfill
from airflow_provider_posthog.api.requests import ApiResponse, RequestSpec
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
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
from airflow_provider_posthog.utils.wait import decide_backfill

BASE = "https://ph.example.test"
LOOKUP = ops.BackfillLookup(timeout=60.0, poll_initial=0.01, poll_max=0.01)
Answer = Callable[[RequestSpec], Any]


def drive(op: ops.Operation[Any], answer: Answer) -> tuple[Any, list[RequestSpec]]:
    """Play the transport: ``answer(spec)`` returns a JSON body or raises the mapped exception."""
    sent: list[RequestSpec] = []
    try:
        command = next(op)
        while True:
            if isinstance(command, ops.Sleep):
                command = op.send(None)
                continue
            sent.append(command)
            try:
                body = answer(command)
            except PostHogError as exc:
                command = op.throw(exc)
            else:
                command = op.send(ApiResponse(200, body))
    except StopIteration as stop:
        return stop.value, sent


def http_error(status: int, detail: str, method: str = "GET", path: str = "/x") -> PostHogAPIError:
    return error_from_response(
        method=method, path=path, status=status, content=f'{{"detail": "{detail}"}}'.encode()
    )


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
        assert spec.path == rq.project_path(1, "e")
        return {"id": "e", "interval": "hour"}

    b = backfill(adjusted_start_at="2026-11-28T16:00:00Z")
    got, sent = drive(ops.list_backfill_runs(1, "e", b, base_url=BASE), answer)
    assert [r.id for r in got] == ["r0", "r1", "r2"]
    assert got[0].data_interval_start is not None and b.start_at is not None
    assert got[0].data_interval_start < b.start_at
    # One GET of the export (its interval), one page of runs by data interval from an hour before 16:00.
    assert [s.path for s in sent] == [rq.project_path(1, "e"), rq.project_path(1, "e", "runs")]
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
        ops.list_backfill_runs(1, "e", b, base_url=BASE, schedule=daily),
        lambda spec: {"next": None, "results": []},
    )
    assert len(sent) == 1  # no GET of the export
    assert dict(sent[0].params)["start"] == "2024-03-09T05:00:00+00:00"  # a day before the earliest start
    assert dict(sent[0].params)["end"] == "2024-03-12T04:00:00+00:00"


def test_open_ended_backfill_runs_are_listed_by_creation_time() -> None:
    b = backfill(start_at=None)
    got, sent = drive(
        ops.list_backfill_runs(1, "e", b, base_url=BASE),
        lambda spec: {"next": None, "results": [run("r0", "2026-11-28T16:00:00Z")]},
    )
    assert [r.id for r in got] == ["r0"] and len(sent) == 1
    assert dict(sent[0].params) == {"after": "2026-11-28T19:00:00+00:00"}


# -- runs of any age ----------------------------------------------------------------------------------------


def test_single_run_actions_ask_for_runs_of_any_age() -> None:
    for spec in (rq.get_run(1, "e", "r"), rq.cancel_run(1, "e", "r"), rq.retry_run(1, "e", "r")):
        assert dict(spec.params) == {"after": "2000-01-01T00:00:00Z"}
        assert spec.full_url(BASE).endswith("/?after=2000-01-01T00%3A00%3A00Z")


# -- logs closed to personal keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "detail",
    [
        "This action does not support personal API key access",
        "This action does not support Personal API Key access",
    ],
)
def test_logs_closed_to_personal_keys_are_no_logs_with_one_warning(
    detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_posthog.api.operations")

    def refuse(spec: RequestSpec) -> Any:
        if spec.path.endswith("/logs/"):
            raise http_error(403, detail)
        return {"id": "r1", "status": "Failed", "created_at": "2026-11-28T16:00:00Z"}

    assert refuses_personal_keys(http_error(403, detail))
    assert drive(ops.get_batch_export_logs(1, "e"), refuse)[0] == []
    assert drive(ops.get_run_logs(1, "e", "r1"), refuse)[0] == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per call
    other = http_error(403, "API key missing required scope 'batch_export:read'")
    assert not refuses_personal_keys(other)
    with pytest.raises(PostHogAuthError, match="missing required scope"):
        drive(ops.get_batch_export_logs(1, "e"), lambda spec: (_ for _ in ()).throw(other))


# -- cancels are verified -----------------------------------------------------------------------------------


def _cancel_answer(status_after: str, *, cancel_error: PostHogAPIError | None = None) -> Answer:
    def answer(spec: RequestSpec) -> Any:
        if spec.method == "POST":
            if cancel_error is not None:
                raise cancel_error
            return {"cancelled": True}
        return {"id": "x", "status": status_after}

    return answer


@pytest.mark.parametrize("kind", ["run", "backfill"])
def test_cancel_reads_the_status_back(kind: str) -> None:
    op = ops.cancel_run(1, "e", "x") if kind == "run" else ops.cancel_backfill(1, "e", "x")
    status, sent = drive(op, _cancel_answer("Cancelled"))
    assert status == "Cancelled" and [s.method for s in sent] == ["POST", "GET"]
    assert sent[1].path == (rq.get_run(1, "e", "x") if kind == "run" else rq.get_backfill(1, "e", "x")).path


@pytest.mark.parametrize("kind", ["run", "backfill"])
@pytest.mark.parametrize("still", ["Running", "Starting"])
def test_a_cancel_that_changed_nothing_is_an_error(kind: str, still: str) -> None:
    op = ops.cancel_run(1, "e", "x") if kind == "run" else ops.cancel_backfill(1, "e", "x")
    with pytest.raises(PostHogCancelNotEffectiveError) as exc:
        drive(op, _cancel_answer(still))
    assert (exc.value.kind, exc.value.object_id, exc.value.status) == (kind, "x", still)
    assert f"{kind} x of batch export e" in str(exc.value) and f"still {still}" in str(exc.value)


def test_already_cancelled_is_success_without_a_read_back() -> None:
    done = http_error(400, "Cannot cancel a run that is in 'Cancelled' status", "POST")
    status, sent = drive(ops.cancel_run(1, "e", "x"), _cancel_answer("Running", cancel_error=done))
    assert status == "Cancelled" and len(sent) == 1
    finished = http_error(400, "Cannot cancel a run that is in 'Completed' status", "POST")
    with pytest.raises(PostHogValidationError, match="'Completed' status"):
        drive(ops.cancel_run(1, "e", "x"), _cancel_answer("Completed", cancel_error=finished))


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

    op = ops.create_backfill(
        1, "e", "2026-11-28T19:30:00Z", "2026-11-28T21:00:00Z", base_url=BASE, lookup=LOOKUP
    )
    with pytest.raises(PostHogConfigError, match=r"PostHog would export from 2026-11-28T19:00:00\+00:00"):
        drive(op, answer)
    assert [(s.method, s.path) for s in sent] == [("GET", rq.project_path(1, "e"))]


def test_identical_running_backfill_is_reported_before_posting() -> None:
    rows = [_bf_row("running", "Running", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z")]

    def answer(spec: RequestSpec) -> Any:
        assert spec.method == "GET"
        if spec.path.endswith("/backfills/"):
            return {"next": None, "results": rows}
        return {"id": "e", "interval": "hour"}

    op = ops.create_backfill(
        1, "e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", base_url=BASE, lookup=LOOKUP
    )
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

    op = ops.create_backfill(
        1, "e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", base_url=BASE, lookup=LOOKUP
    )
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

    op = ops.create_backfill(
        1, "e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", base_url=BASE, lookup=LOOKUP
    )
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
        drive(ops.retry_run(1, "e", "r0", base_url=BASE, lookup=LOOKUP), answer)


def test_backfill_not_visible_is_retryable_not_a_not_found() -> None:
    lookup = ops.BackfillLookup(timeout=0.0, poll_initial=0.0, poll_max=0.0)

    def answer(spec: RequestSpec) -> Any:
        if spec.method == "POST":
            return {"backfill_id": "018f0000-0000-7000-8000-0000000000b1"}
        if spec.path.endswith("/backfills/"):
            return {"next": None, "results": []}
        if "/backfills/" in spec.path:
            raise http_error(404, "Not found.")
        return {"id": "e", "interval": "hour"}

    op = ops.create_backfill(
        1, "e", "2026-11-28T19:00:00Z", "2026-11-28T21:00:00Z", base_url=BASE, lookup=lookup
    )
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
