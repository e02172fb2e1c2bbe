"""The poll and the cancel of each job (``api/jobs.py``), driven directly: no HTTP, no hook, no Airflow."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest
from op_driver import Answer, drive, http_error, page

from airflow_provider_posthog.api import jobs
from airflow_provider_posthog.api.endpoints import ANY_AGE
from airflow_provider_posthog.api.jobs import BackfillJob, Cancel, IntervalJob, RunJob
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogCancelNotEffectiveError,
    PostHogServerError,
    PostHogValidationError,
)

if TYPE_CHECKING:
    from airflow_provider_posthog.api.http import RequestSpec

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 28, 16, tzinfo=UTC)
EXPORT = {"id": "e", "interval": "hour"}


def backfill_row(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "b",
        "status": status,
        "batch_export": "e",
        "start_at": "2026-11-28T16:00:00Z",
        "end_at": "2026-11-28T18:00:00Z",
        "created_at": "2026-11-28T20:00:00Z",
        **extra,
    }


def run_row(
    rid: str, hour: int, status: str = "Completed", bf: str | None = "b", **extra: Any
) -> dict[str, Any]:
    return {
        "id": rid,
        "status": status,
        "backfill": bf,
        "data_interval_start": (T0 + dt.timedelta(hours=hour)).isoformat(),
        "data_interval_end": (T0 + dt.timedelta(hours=hour + 1)).isoformat(),
        "created_at": "2026-11-28T20:00:01Z",
        "records_completed": 10 if status == "Completed" else None,
        "latest_error": "S3 denied" if status == "Failed" else None,
        **extra,
    }


def backfill_answer(status: str, runs: list[dict[str, Any]] | None = None, **extra: Any) -> Answer:
    """PostHog with one backfill, its export and a list of runs."""

    def answer(spec: RequestSpec) -> Any:
        assert spec.method == "GET"
        if spec.path == "batch_exports/e/backfills/b/":
            return backfill_row(status, **extra)
        if spec.path == "batch_exports/e/":
            return EXPORT
        assert spec.path == "batch_exports/e/runs/"
        return page(*(runs or []))

    return answer


def paths(sent: list[RequestSpec]) -> list[tuple[str, str]]:
    return [(s.method, s.path) for s in sent]


# -- the jobs as values -------------------------------------------------------------------------------------


def test_each_job_describes_itself_with_its_kind_and_id() -> None:
    interval = IntervalJob("e", T0, T0 + dt.timedelta(hours=2))
    assert [
        (j.kind, j.job_id, j.describe()) for j in (BackfillJob("e", "b"), RunJob("e", "r"), interval)
    ] == [
        ("backfill", "b", "backfill b of batch export e"),
        ("run", "r", "run r of batch export e"),
        (
            "interval",
            None,
            "the runs of batch export e covering [2026-11-28T16:00:00+00:00, 2026-11-28T18:00:00+00:00)",
        ),
    ]


# -- BackfillJob.poll ---------------------------------------------------------------------------------------


def test_a_running_backfill_is_one_request_and_reports_its_progress() -> None:
    progress = {"total_runs": 4, "finished_runs": 1, "progress": 0.25}
    decision, sent = drive(BackfillJob("e", "b").poll(), backfill_answer("Running", progress=progress))
    assert paths(sent) == [("GET", "batch_exports/e/backfills/b/")]
    assert decision.outcome is Outcome.RUNNING and not decision.done
    assert decision.message == "Backfill b is Running (1/4 runs finished)."
    assert decision.remote_status == "Running"


def test_a_terminal_backfill_reads_its_export_and_its_runs_then_decides_once() -> None:
    runs = [run_row("r0", 0), run_row("r1", 1)]
    decision, sent = drive(BackfillJob("e", "b").poll(), backfill_answer("Completed", runs))
    assert paths(sent) == [
        ("GET", "batch_exports/e/backfills/b/"),
        ("GET", "batch_exports/e/"),
        ("GET", "batch_exports/e/runs/"),
    ]
    # Runs are listed by data interval from one interval before the backfill's start.
    assert dict(sent[2].params) == {
        "ordering": "data_interval_start",
        "start": "2026-11-28T15:00:00+00:00",
        "end": "2026-11-28T18:00:00+00:00",
    }
    assert decision.outcome is Outcome.SUCCEEDED
    assert (decision.runs_completed, decision.records_completed) == (2, 20)
    assert [r.id for r in decision.completed_runs] == ["r0", "r1"]
    assert decision.message == "Backfill b completed: 2 run(s), 20 record(s) exported."


def test_a_completed_backfill_with_a_failed_run_of_its_own_fails() -> None:
    runs = [run_row("r0", 0, "Failed"), run_row("r1", 1)]
    decision, _ = drive(BackfillJob("e", "b").poll(), backfill_answer("Completed", runs))
    assert decision.outcome is Outcome.FAILED and decision.remote_status == "Completed"
    assert decision.message == "Backfill b is Completed but 1 of its run(s) failed."
    assert [(r["id"], r["latest_error"]) for r in decision.failed_runs] == [("r0", "S3 denied")]
    assert decision.runs_completed == 1 and decision.completed_runs == ()


def test_where_its_own_runs_cover_an_interval_other_runs_of_it_are_ignored() -> None:
    runs = [
        run_row("mine", 0),
        run_row("mine-too", 1),
        run_row("other", 0, "Failed", bf="another-backfill"),
        run_row("scheduled", 1, "Failed", bf=None),
    ]
    decision, _ = drive(BackfillJob("e", "b").poll(), backfill_answer("Completed", runs))
    assert decision.outcome is Outcome.SUCCEEDED and decision.failed_runs == ()
    assert [r.id for r in decision.completed_runs] == ["mine", "mine-too"]
    assert decision.records_completed == 20


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "TimedOut", "SomethingNew", ""])
def test_a_backfill_that_did_not_complete_or_whose_status_is_unknown_fails_closed(status: str) -> None:
    decision, sent = drive(BackfillJob("e", "b").poll(), backfill_answer(status, [run_row("r0", 0)]))
    assert decision.outcome is Outcome.FAILED
    assert decision.message == f"Backfill b ended with status {status!r}."
    assert len(sent) == 3  # terminal: its runs were read, for the counts a failure message quotes
    assert decision.runs_completed == 1


def test_a_failed_read_of_the_runs_is_raised_not_decided() -> None:
    """A terminal backfill whose runs cannot be listed must not pass for a success."""

    def answer(spec: RequestSpec) -> Any:
        if spec.path.endswith("/runs/"):
            raise http_error(503, "down")
        return backfill_answer("Completed")(spec)

    with pytest.raises(PostHogServerError):
        drive(BackfillJob("e", "b").poll(), answer)


# -- RunJob.poll --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "message"),
    [
        ("Running", Outcome.RUNNING, "Run r is Running."),
        ("Completed", Outcome.SUCCEEDED, "Run r completed: 10 record(s) exported."),
        ("FailedRetryable", Outcome.FAILED, "Run r ended with status 'FailedRetryable'."),
        ("SomethingNew", Outcome.FAILED, "Run r ended with status 'SomethingNew'."),
    ],
)
def test_a_run_is_one_request_for_a_run_of_any_age(status: str, outcome: Outcome, message: str) -> None:
    decision, sent = drive(RunJob("e", "r").poll(), lambda spec: run_row("r", 0, status, bf=None))
    assert paths(sent) == [("GET", "batch_exports/e/runs/r/")]
    assert sent[0].params == ANY_AGE == (("after", "2000-01-01T00:00:00Z"),)
    assert decision.outcome is outcome and decision.message == message
    assert [r.id for r in decision.completed_runs] == (["r"] if outcome is Outcome.SUCCEEDED else [])


# -- IntervalJob.poll ---------------------------------------------------------------------------------------


def _interval_poll(
    runs: list[dict[str, Any]], hours: int = 2, export: dict[str, Any] | None = None
) -> tuple[Any, list[RequestSpec]]:
    def answer(spec: RequestSpec) -> Any:
        if spec.path == "batch_exports/e/":
            return export or dict(EXPORT, paused=False)
        assert spec.path == "batch_exports/e/runs/"
        return page(*runs)

    return drive(IntervalJob("e", T0, T0 + dt.timedelta(hours=hours)).poll(), answer)


def test_an_interval_is_one_list_of_the_runs_inside_it() -> None:
    decision, sent = _interval_poll([run_row("r0", 0, bf=None), run_row("r1", 1, bf=None)])
    assert paths(sent) == [("GET", "batch_exports/e/runs/")]
    assert dict(sent[0].params) == {
        "ordering": "-data_interval_start",
        "start": "2026-11-28T16:00:00+00:00",
        "end": "2026-11-28T18:00:00+00:00",
    }
    assert decision.outcome is Outcome.SUCCEEDED and decision.runs_completed == 2
    assert [r.id for r in decision.completed_runs] == ["r0", "r1"]


def test_an_interval_waits_for_a_gap_and_for_running_runs_and_fails_on_a_failed_one() -> None:
    gap, sent = _interval_poll([run_row("r0", 0)])
    assert gap.outcome is Outcome.RUNNING and "covered up to 2026-11-28T17:00:00+00:00" in gap.message
    assert paths(sent) == [("GET", "batch_exports/e/runs/"), ("GET", "batch_exports/e/")]  # paused?
    running, sent = _interval_poll([run_row("r0", 0), run_row("r1", 1, "Running")])
    assert running.outcome is Outcome.RUNNING and running.remote_status == "Running"
    assert paths(sent) == [("GET", "batch_exports/e/runs/")]  # covered: the export is not read
    failed, _ = _interval_poll([run_row("r0", 0, "Failed"), run_row("r1", 1, "Running")])
    assert failed.outcome is Outcome.FAILED and [r["id"] for r in failed.failed_runs] == ["r0"]
    outside, _ = _interval_poll([run_row("before", -1, "Failed"), run_row("r0", 0)], hours=1)
    assert outside.outcome is Outcome.SUCCEEDED  # a run outside [start, end) never counts


def _first_poll(
    latest: list[dict[str, Any]], runs: list[dict[str, Any]] | None = None, *, paused: bool = False
) -> tuple[Any, list[RequestSpec]]:
    """A wait's first poll of ``[T0, T0 + 2h)``: the export (with ``latest``) and, if asked, the list."""

    def answer(spec: RequestSpec) -> Any:
        if spec.path == "batch_exports/e/":
            return dict(EXPORT, paused=paused, latest_runs=latest, destination={"type": "S3", "config": {}})
        assert spec.path == "batch_exports/e/runs/"
        return page(*(latest if runs is None else runs))

    job = IntervalJob("e", T0, T0 + dt.timedelta(hours=2))
    return drive(job.poll(read_export=True), answer)


def _created(hours: float) -> str:
    return (T0 + dt.timedelta(hours=hours)).isoformat()


def test_a_first_poll_answered_by_the_exports_latest_runs_lists_nothing_and_keeps_the_export() -> None:
    latest = [
        run_row("r1", 1, bf=None, created_at=_created(2)),
        run_row("r0", 0, bf=None, created_at=_created(1)),
    ]
    done, sent = _first_poll(latest)
    assert paths(sent) == [("GET", "batch_exports/e/")]
    assert done.outcome is Outcome.SUCCEEDED and [r.id for r in done.completed_runs] == ["r0", "r1"]
    assert done.export is not None and done.export.id == "e"
    running, sent = _first_poll([run_row("r0", 0, "Running", bf=None, created_at=_created(1))])
    assert paths(sent) == [("GET", "batch_exports/e/")]
    assert running.outcome is Outcome.RUNNING and running.export is not None


def test_a_first_poll_lists_the_runs_when_the_latest_runs_may_leave_one_out() -> None:
    # Ten runs, the oldest created after the interval started: an older run of the interval may exist.
    newer = [run_row(f"n{k}", 10 + k, bf=None, created_at=_created(20 - k)) for k in range(10)]
    listed = [run_row("r0", 0, bf=None), run_row("r1", 1, bf=None)]
    decision, sent = _first_poll(newer, listed)
    assert paths(sent) == [("GET", "batch_exports/e/"), ("GET", "batch_exports/e/runs/")]
    assert decision.outcome is Outcome.SUCCEEDED and decision.export is not None
    # The oldest of ten created before the interval started: they hold every run of it.
    older = [*newer[:9], run_row("old", -5, bf=None, created_at=_created(-1))]
    decision, sent = _first_poll(older, listed)
    assert paths(sent) == [("GET", "batch_exports/e/")]
    assert decision.outcome is Outcome.RUNNING  # no run of the interval yet: keep waiting, no list


def test_a_failure_seen_in_the_latest_runs_is_confirmed_by_the_list() -> None:
    failed = [run_row("r0", 0, "Failed", bf=None, created_at=_created(1))]
    retried = [*failed, run_row("r0b", 0, bf=None, created_at=_created(1.5)), run_row("r1", 1, bf=None)]
    decision, sent = _first_poll(failed, retried)
    assert paths(sent) == [("GET", "batch_exports/e/"), ("GET", "batch_exports/e/runs/")]
    assert decision.outcome is Outcome.SUCCEEDED  # the list is what decides
    paused, sent = _first_poll([], [], paused=True)
    assert paths(sent) == [("GET", "batch_exports/e/"), ("GET", "batch_exports/e/runs/")]
    assert paused.outcome is Outcome.FAILED and "paused" in paused.message


def test_later_polls_of_an_interval_read_no_export_while_its_runs_are_there() -> None:
    decision, sent = _interval_poll([run_row("r0", 0), run_row("r1", 1, "Running")])
    assert paths(sent) == [("GET", "batch_exports/e/runs/")] and decision.export is None
    decision, _ = _interval_poll([run_row("r0", 0)])  # a gap: the export is read, and kept
    assert decision.export is not None and decision.export.id == "e"


# -- cancel -------------------------------------------------------------------------------------------------


def cancel_answer(status_after: str, *, refusal: Exception | None = None) -> Answer:
    """A cancel POST (answered with success, or refused) and the status PostHog reports after it."""

    def answer(spec: RequestSpec) -> Any:
        if spec.method == "POST":
            if refusal is not None:
                raise refusal
            return {"cancelled": True}
        return {"id": "x", "status": status_after}

    return answer


JOBS = {"run": RunJob("e", "x"), "backfill": BackfillJob("e", "x")}


@pytest.mark.parametrize("kind", JOBS)
def test_a_cancel_is_sent_then_read_back(kind: str) -> None:
    job = JOBS[kind]
    result, sent = drive(jobs.cancel(job), cancel_answer("Cancelled"))
    assert result == Cancel(f"{kind} x of batch export e", "Cancelled", already_finished=False)
    assert paths(sent) == [
        ("POST", f"batch_exports/e/{kind}s/x/cancel/"),
        ("GET", f"batch_exports/e/{kind}s/x/"),
    ]
    assert sent[0] == job.cancel_request() and sent[0].json == {}


@pytest.mark.parametrize("kind", JOBS)
@pytest.mark.parametrize("finished", ["Completed", "Failed", "Cancelled"])
def test_a_refused_cancel_of_a_finished_job_is_no_error(kind: str, finished: str) -> None:
    refusal = http_error(400, f"Cannot cancel a {kind} that is in '{finished}' status", "POST")
    result, sent = drive(jobs.cancel(JOBS[kind]), cancel_answer(finished, refusal=refusal))
    assert result == Cancel(f"{kind} x of batch export e", finished, already_finished=True)
    assert [s.method for s in sent] == ["POST", "GET"]


@pytest.mark.parametrize("kind", JOBS)
@pytest.mark.parametrize("still", ["Running", "Starting"])
def test_a_refused_cancel_of_a_job_still_active_is_raised(kind: str, still: str) -> None:
    refusal = http_error(400, "no", "POST")
    with pytest.raises(PostHogValidationError) as exc:
        drive(jobs.cancel(JOBS[kind]), cancel_answer(still, refusal=refusal))
    assert exc.value is refusal


@pytest.mark.parametrize("kind", JOBS)
@pytest.mark.parametrize("still", ["Running", "Starting"])
def test_a_successful_cancel_that_changed_nothing_is_an_error(kind: str, still: str) -> None:
    with pytest.raises(PostHogCancelNotEffectiveError) as exc:
        drive(jobs.cancel(JOBS[kind]), cancel_answer(still))
    assert (exc.value.kind, exc.value.object_id, exc.value.status) == (kind, "x", still)
    assert str(exc.value) == (
        f"PostHog answered the cancel of {kind} x of batch export e with success, but the {kind} is still "
        f"{still}."
    )


@pytest.mark.parametrize(
    "error", [http_error(404, "Not found.", "POST"), http_error(503, "down", "POST")], ids=["404", "503"]
)
def test_other_cancel_errors_are_raised_without_a_read_back(error: Exception) -> None:
    sent: list[RequestSpec] = []

    def answer(spec: RequestSpec) -> Any:
        sent.append(spec)
        raise error

    with pytest.raises(type(error)) as exc:
        drive(jobs.cancel(RunJob("e", "x")), answer)
    assert exc.value is error and len(sent) == 1


def test_a_run_cancel_and_its_read_back_ask_for_runs_of_any_age() -> None:
    _, sent = drive(jobs.cancel(RunJob("e", "x")), cancel_answer("Cancelled"))
    assert [s.params for s in sent] == [ANY_AGE, ANY_AGE]
    _, sent = drive(jobs.cancel(BackfillJob("e", "x")), cancel_answer("Cancelled"))
    assert [s.params for s in sent] == [(), ()]


def test_status_reads_the_jobs_status() -> None:
    assert drive(RunJob("e", "x").status(), cancel_answer("Completed"))[0] == "Completed"
    assert drive(BackfillJob("e", "x").status(), cancel_answer("Running"))[0] == "Running"


def test_cancel_messages() -> None:
    assert Cancel("backfill b of batch export e", "Cancelled", already_finished=False).message == (
        "Cancelled backfill b of batch export e (now Cancelled)."
    )
    assert Cancel("run r of batch export e", "Completed", already_finished=True).message == (
        "Run r of batch export e is already Completed; nothing to cancel."
    )
    assert jobs.capitalized("") == ""
