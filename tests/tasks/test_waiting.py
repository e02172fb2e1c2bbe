"""The waiting core (``tasks.waiting``) driven directly: the poll step and its tolerance of an unreachable
PostHog, the lines it logs, events, the completion switch. No HTTP, no hook, no Airflow DAG; the clock is a
number passed in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any
from unittest import mock

import pytest
from fake_posthog import dropped, http_error

from airflow_provider_posthog.api.decisions import Decision
from airflow_provider_posthog.api.jobs import BackfillJob, Cancel, IntervalJob, RunJob
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogCancelNotEffectiveError,
    PostHogConfigError,
    PostHogDeadlineError,
    PostHogRateLimitError,
    PostHogTooManyBackfillsError,
    PostHogTriggerError,
    PostHogUnreachableError,
)
from airflow_provider_posthog.tasks import waiting
from airflow_provider_posthog.tasks.waiting import PROGRESS_HEARTBEAT_SECONDS, Step, Wait

UTC = dt.timezone.utc
EXPORT = "0190-export"
BACKFILL = "0190-backfill"
WHAT = f"backfill {BACKFILL} of batch export {EXPORT}"
#: 2023-11-14 22:13:20 UTC.
T0 = 1_700_000_000.0
RUNNING = Decision(Outcome.RUNNING, "Backfill b is Running (1/4 runs finished).", "Running")
DONE = Decision(
    Outcome.SUCCEEDED, "Backfill b completed.", "Completed", runs_completed=4, records_completed=9
)
FAILED = Decision(
    Outcome.FAILED,
    "Backfill b is Completed but 1 of its run(s) failed.",
    "Completed",
    ({"id": "r1", "status": "Failed", "latest_error": "S3 denied"},),
)


class Boom(Exception):
    """Stands for the task's own failure exception."""


class TooLate(Exception):
    """Stands for the task's own timeout exception."""


def _wait(**kwargs: Any) -> Wait:
    return Wait(**{"job": BackfillJob(EXPORT, BACKFILL), "poll_interval": 10.0, **kwargs})


def _texts(step: Step) -> list[str]:
    return [text for _, text in step.lines]


# ------------------------------------------------------------------------------------------- the wait


def test_a_wait_names_its_job_ids_and_tab() -> None:
    run_wait = Wait(job=RunJob(EXPORT, "r"))
    interval = Wait(
        job=IntervalJob(EXPORT, dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC))
    )
    assert [(w.what, w.batch_export_id, w.backfill_id, w.run_id, w.ui_tab) for w in (_wait(), run_wait)] == [
        (WHAT, EXPORT, BACKFILL, None, "backfills"),
        (f"run r of batch export {EXPORT}", EXPORT, None, "r", "runs"),
    ]
    assert (interval.backfill_id, interval.run_id, interval.ui_tab) == (None, None, "runs")
    assert interval.what.startswith(f"the runs of batch export {EXPORT} covering [2024-01-01T00:00:00+00:00")


# ------------------------------------------------------------------------------------------- the poll step


def test_a_running_poll_sleeps_one_interval_and_reports_progress() -> None:
    step = _wait().step(RUNNING, now=T0)
    assert step.event is None and step.sleep == 10.0
    assert step.lines == ((logging.INFO, RUNNING.message),)


def test_the_sleep_is_clamped_to_the_deadline() -> None:
    step = _wait(end_time=T0 + 4).step(RUNNING, now=T0)
    assert step.event is None and step.sleep == 4.0


def test_past_the_deadline_a_running_poll_ends_in_a_timeout_event() -> None:
    step = _wait(end_time=T0).step(RUNNING, now=T0)
    assert _texts(step) == [RUNNING.message]  # the last state is still logged
    assert step.event is not None and step.event["status"] == waiting.TIMEOUT
    assert step.event["message"] == (
        f"Stopped waiting for {WHAT}: the task's deadline passed while PostHog still reported it as running."
    )
    assert step.event["backfill_id"] == BACKFILL


def test_a_terminal_poll_ends_with_its_event_even_past_the_deadline() -> None:
    step = _wait(end_time=0.0).step(DONE, now=T0)
    assert step.event is not None and step.event["status"] == waiting.SUCCESS and step.sleep == 0.0
    assert step.event["runs_completed"] == 4 and step.event["records_completed"] == 9
    failed = _wait().step(FAILED, now=T0).event
    assert (
        failed is not None and failed["status"] == waiting.FAILED and failed["failed_runs"][0]["id"] == "r1"
    )


# ------------------------------------------------------------------------ PostHog unreachable: the tolerance

TRANSIENT = [
    pytest.param(http_error(503), id="503"),
    pytest.param(http_error(502), id="502"),
    pytest.param(dropped(), id="dropped"),
    pytest.param(PostHogRateLimitError("throttled", http_status=429), id="throttled"),
    pytest.param(PostHogDeadlineError("cut at its deadline"), id="deadline"),
    pytest.param(TimeoutError("timed out"), id="timeout"),
]


@pytest.mark.parametrize("exc", TRANSIENT)
def test_transient_trouble_keeps_waiting_until_the_deadline(exc: Exception) -> None:
    wait = _wait(end_time=T0 + 30)
    for now in (T0, T0 + 10, T0 + 25):
        step = wait.step(exc, now)
        assert step.event is None
    assert step.sleep == 5.0  # clamped to the deadline, like a running poll
    late = wait.step(exc, T0 + 30)
    assert late.event is not None and late.event["status"] == waiting.TIMEOUT
    assert late.event["message"] == (
        f"Stopped waiting for {WHAT}: the task's deadline passed while PostHog was unreachable "
        f"(since 22:13:20 UTC; last error: {exc})."
    )
    assert late.event["backfill_id"] == BACKFILL and late.event["remote_status"] is None


def test_without_a_deadline_an_outage_never_ends_the_wait() -> None:
    wait = _wait()
    steps = [wait.step(http_error(503), T0 + 600 * i) for i in range(200)]  # 33 hours
    assert all(s.event is None and s.sleep == 10.0 for s in steps)


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(http_error(400, "bad"), id="400"),
        pytest.param(http_error(401, "no key"), id="401"),
        pytest.param(http_error(403, "scope"), id="403"),
        pytest.param(http_error(404, "Not found."), id="404"),
        pytest.param(PostHogConfigError("no host"), id="config"),
        pytest.param(PostHogTooManyBackfillsError("too many", http_status=429), id="too-many-backfills"),
        pytest.param(ValueError("a bug"), id="other"),
    ],
)
def test_final_errors_end_the_wait_at_once(exc: Exception) -> None:
    wait = _wait(end_time=T0 + 3_600)
    wait.step(http_error(503), T0)  # even in the middle of an outage
    with pytest.raises(type(exc)) as raised:
        wait.step(exc, T0 + 10)
    assert raised.value is exc


def test_unreachable_timeout_gives_up_after_that_long_without_an_answer() -> None:
    wait = _wait(end_time=T0 + 3_600, unreachable_timeout=60)
    down = http_error(503)
    assert wait.step(down, T0).event is None
    assert wait.step(down, T0 + 50).event is None
    with pytest.raises(PostHogUnreachableError) as raised:
        wait.step(down, T0 + 60)
    assert str(raised.value) == (
        f"PostHog has been unreachable for 1 min while waiting for {WHAT} (unreachable_timeout=60s); "
        f"last error: {down}"
    )
    assert raised.value.__cause__ is down


def test_an_answer_restarts_the_unreachable_timeout() -> None:
    wait = _wait(unreachable_timeout=60)
    down = http_error(503)
    wait.step(down, T0)
    wait.step(RUNNING, T0 + 50)
    for now in (T0 + 100, T0 + 150):  # 50 s into the second outage: not 60 s in a row
        assert wait.step(down, now).event is None
    with pytest.raises(PostHogUnreachableError):
        wait.step(down, T0 + 160)


def test_an_outage_is_one_warning_then_a_heartbeat_then_one_line_on_recovery() -> None:
    wait = _wait(end_time=T0 + 3_600)
    wait.step(RUNNING, T0 - 10)
    first = wait.step(http_error(503), T0)
    line = "PostHog is unreachable since 22:13:20 UTC (HTTP 503); still waiting until 23:13:20 UTC."
    assert first.lines == ((logging.WARNING, line),)
    quiet = [wait.step(http_error(503), T0 + s).lines for s in range(10, int(PROGRESS_HEARTBEAT_SECONDS), 10)]
    assert quiet == [()] * len(quiet)
    beat = wait.step(http_error(503), T0 + PROGRESS_HEARTBEAT_SECONDS)
    assert beat.lines == ((logging.WARNING, f"{line} (unchanged for 5 min)"),)
    back = wait.step(RUNNING, T0 + PROGRESS_HEARTBEAT_SECONDS + 10)
    assert back.lines == (
        (logging.INFO, "PostHog answered again after 5 min."),
        (logging.INFO, RUNNING.message),  # the progress is said again after the outage
    )
    assert wait.step(RUNNING, T0 + PROGRESS_HEARTBEAT_SECONDS + 20).lines == ()


def test_a_short_outage_counts_seconds_and_a_terminal_answer_still_says_it_is_back() -> None:
    wait = _wait()
    wait.step(dropped(), T0)
    step = wait.step(DONE, T0 + 40)
    assert step.lines == ((logging.INFO, "PostHog answered again after 40 s."),)
    assert step.event is not None and step.event["status"] == waiting.SUCCESS


def test_a_different_trouble_is_logged_at_once_with_the_same_start() -> None:
    wait = _wait()
    wait.step(http_error(503), T0)
    step = wait.step(dropped(), T0 + 10)
    assert _texts(step) == [
        "PostHog is unreachable since 22:13:20 UTC (no answer: RemoteDisconnected); still waiting "
        "(the task has no timeout)."
    ]


def test_the_unreachable_line_names_both_limits() -> None:
    both = _wait(end_time=T0 + 3_600, unreachable_timeout=600).step(http_error(503), T0)
    assert _texts(both) == [
        "PostHog is unreachable since 22:13:20 UTC (HTTP 503); still waiting until 23:13:20 UTC or for at "
        "most 10 min without an answer."
    ]
    only = _wait(unreachable_timeout=30).step(TimeoutError(), T0)
    assert _texts(only) == [
        "PostHog is unreachable since 22:13:20 UTC (TimeoutError); still waiting for at most 30 s without "
        "an answer."
    ]


# ---------------------------------------------------------------------------------------------- logging


def test_log_step_writes_warnings_and_above_as_warnings_and_the_rest_as_info() -> None:
    log = mock.Mock()
    waiting.log_step(
        log,
        Step(lines=((logging.INFO, "a"), (logging.WARNING, "b"), (logging.ERROR, "c"), (logging.DEBUG, "d"))),
    )
    assert log.info.call_args_list == [mock.call("%s", "a"), mock.call("%s", "d")]
    assert log.warning.call_args_list == [mock.call("%s", "b"), mock.call("%s", "c")]
    waiting.log_step(log, Step())
    assert log.info.call_count == 2 and log.warning.call_count == 2


def test_log_cancel_says_what_the_cancel_did_and_never_raises() -> None:
    log = mock.Mock()
    waiting.log_cancel(log, WHAT, Cancel(WHAT, "Cancelled", already_finished=False))
    assert log.warning.call_args == mock.call("%s", f"Cancelled {WHAT} (now Cancelled).")
    waiting.log_cancel(log, WHAT, Cancel(WHAT, "Completed", already_finished=True))
    assert log.info.call_args == mock.call(
        "%s", f"Backfill {BACKFILL} of batch export {EXPORT} is already Completed; nothing to cancel."
    )
    not_effective = PostHogCancelNotEffectiveError(
        "still Running", kind="backfill", object_id=BACKFILL, status="Running"
    )
    waiting.log_cancel(log, WHAT, not_effective)
    assert log.warning.call_args == mock.call(
        "%s is still running after the cancel (%s); cancel it in PostHog.",
        WHAT[:1].upper() + WHAT[1:],
        not_effective,
    )
    boom = RuntimeError("boom")
    waiting.log_cancel(log, WHAT, boom)
    assert log.warning.call_args == mock.call("Could not cancel %s: %s", WHAT, boom)
    assert log.info.call_count == 1 and log.warning.call_count == 3


# ------------------------------------------------------------------------------------ sleeps and deadlines


def test_sleep_until_never_goes_negative_or_past_the_deadline() -> None:
    assert _wait().sleep_until(1_060.0, now=1_000.0) == 60.0
    assert _wait(end_time=1_010.0).sleep_until(1_060.0, now=1_000.0) == 10.0
    assert _wait(end_time=900.0).sleep_until(1_060.0, now=1_000.0) == 0.0


def test_error_event_says_the_wait_failed_not_the_export() -> None:
    event = _wait().error_event(RuntimeError("DNS down"))
    assert event["status"] == waiting.ERROR
    assert "RuntimeError: DNS down" in event["message"] and "may still be running" in event["message"]


def test_deadline_is_the_earlier_of_timeout_and_execution_timeout_in_epoch_seconds() -> None:
    assert waiting.deadline(1_000.0, None, None) is None
    assert waiting.deadline(1_000.0, 600, dt.timedelta(seconds=300)) == 1_300.0
    assert waiting.deadline(1_000.0, 60, None) == 1_060.0
    assert waiting.deadline(1_000.0, None, 5.0) == 1_005.0


# ---------------------------------------------------------------------------------------------- events


def test_make_event_refuses_unknown_statuses_and_running_decisions() -> None:
    with pytest.raises(ValueError, match="unknown event status"):
        waiting.make_event("cancelled", "x", batch_export_id=EXPORT)
    with pytest.raises(ValueError, match="running decision"):
        waiting.decision_event(RUNNING, batch_export_id=EXPORT)


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {},
        {"status": "cancelled", "message": "x", "batch_export_id": EXPORT},
        {"status": "success", "batch_export_id": EXPORT},
        {"status": "success", "message": "ok"},
        {"status": "failed", "message": "x", "batch_export_id": EXPORT, "failed_runs": "r1"},
    ],
    ids=["none", "string", "empty", "unknown-status", "no-message", "no-export", "bad-failed-runs"],
)
def test_validate_event_fails_closed(event: Any) -> None:
    with pytest.raises(PostHogTriggerError):
        waiting.validate_event(event)


def test_validate_event_checks_required_ids() -> None:
    event = waiting.make_event("success", "ok", batch_export_id=EXPORT)
    assert waiting.validate_event(event) == event
    with pytest.raises(PostHogTriggerError, match="names no backfill_id"):
        waiting.validate_event(event, require=("backfill_id",))


def _export(**extra: Any) -> Any:
    from airflow_provider_posthog.api.models import BatchExport

    return BatchExport.from_api(
        {
            "id": EXPORT,
            "name": "lake",
            "interval": "hour",
            "destination": {
                "type": "S3",
                "config": {"bucket_name": "lake", "prefix": "e/", "aws_secret_access_key": "s3cr3t"},
            },
            "latest_runs": [{"id": "old", "status": "Completed"}],
            **extra,
        }
    )


def _run(rid: str, hour: int) -> Any:
    from airflow_provider_posthog.api.models import BatchExportRun

    start = dt.datetime(2026, 1, 5, hour, tzinfo=UTC)
    return BatchExportRun.from_api(
        {
            "id": rid,
            "status": "Completed",
            "data_interval_start": start.isoformat(),
            "data_interval_end": (start + dt.timedelta(hours=1)).isoformat(),
            "records_completed": 5,
            "bytes_exported": 50,
        }
    )


def test_a_success_event_carries_the_export_the_wait_read_and_its_counted_runs() -> None:
    wait = _wait(
        job=IntervalJob(EXPORT, dt.datetime(2026, 1, 5, tzinfo=UTC), dt.datetime(2026, 1, 6, tzinfo=UTC))
    )
    runs = (_run("r0", 0), _run("r1", 1))
    # The export came with the first poll; the success came from a later one that read none.
    assert wait.step(dataclasses.replace(RUNNING, export=_export()), T0).event is None
    event = wait.step(dataclasses.replace(DONE, completed_runs=runs), T0 + 10).event
    assert event is not None and event["export"] == {
        "id": EXPORT,
        "name": "lake",
        "model": None,
        "interval": "hour",
        "destination": {"type": "S3", "config": {"bucket_name": "lake", "prefix": "e/"}},
        "schema": None,
        "hogql_query": None,
    }
    assert "s3cr3t" not in repr(event)  # the identity keeps no credential
    assert [r["id"] for r in event["completed_runs"]] == ["r0", "r1"]
    again = waiting.event_completed_runs(event)
    assert again is not None and [(r.id, r.data_interval_start, r.records_completed) for r in again] == [
        (r.id, r.data_interval_start, r.records_completed) for r in runs
    ]


def test_an_event_carries_no_runs_past_the_cap_or_for_a_failure() -> None:
    from airflow_provider_posthog.api.decisions import EVENT_RUNS

    many = tuple(_run(f"r{k}", k % 24) for k in range(EVENT_RUNS + 1))
    event = waiting.decision_event(dataclasses.replace(DONE, completed_runs=many), batch_export_id=EXPORT)
    assert event["completed_runs"] is None and waiting.event_completed_runs(event) is None
    assert len(event["run_ids"]) == 100  # the facts stay whole
    failed = waiting.decision_event(FAILED, batch_export_id=EXPORT)
    assert failed["completed_runs"] is None and failed["export"] is None
    # An event of an older version, or a run that cannot be read: nothing to reuse, never a crash.
    assert waiting.event_completed_runs({"status": "success"}) is None
    assert waiting.event_completed_runs({"completed_runs": [{"status": "Completed"}]}) is None


def test_an_interval_waits_first_poll_reads_the_export_and_later_ones_only_when_needed() -> None:
    wait = _wait(
        job=IntervalJob(EXPORT, dt.datetime(2026, 1, 5, tzinfo=UTC), dt.datetime(2026, 1, 6, tzinfo=UTC))
    )
    first = wait.operation()
    assert first.send(None).key.path == f"batch_exports/{EXPORT}/"  # type: ignore[union-attr]
    wait.step(dataclasses.replace(RUNNING, export=_export()), T0)
    later = wait.operation()
    assert later.send(None).key.path == f"batch_exports/{EXPORT}/runs/"  # type: ignore[union-attr]
    rescheduled = _wait(job=wait.job, first_reads_export=False).operation()
    assert rescheduled.send(None).key.path == f"batch_exports/{EXPORT}/runs/"  # type: ignore[union-attr]
    backfill = _wait().operation()
    assert backfill.send(None).key.path == f"batch_exports/{EXPORT}/backfills/{BACKFILL}/"  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------- the completion switch


def _complete(event: Any, **kwargs: Any) -> dict[str, Any]:
    return waiting.complete(event, failure=Boom, timeout=TooLate, **kwargs)


def test_success_returns_the_event_and_touches_nothing_else() -> None:
    on_timeout, tails = mock.Mock(), mock.Mock()
    event = waiting.make_event("success", "done", batch_export_id=EXPORT, backfill_id=BACKFILL)
    assert _complete(event, on_timeout=on_timeout, log_tails=tails) == event
    on_timeout.assert_not_called()
    tails.assert_not_called()


def test_failure_raises_the_tasks_error_quoting_runs_and_their_log_tails() -> None:
    event = _wait().event(FAILED)
    with pytest.raises(Boom) as err:
        _complete(event, log_tails=lambda e: {"r1": ["2024-01-02T00:00:00 ERROR upload failed: 403"]})
    text = str(err.value)
    assert (
        FAILED.message in text and "S3 denied" in text and "| 2024-01-02T00:00:00 ERROR upload failed" in text
    )


def test_timeout_runs_on_timeout_first_then_raises() -> None:
    order: list[str] = []
    with pytest.raises(TooLate, match="Stopped waiting"):
        _complete(_wait().timeout_event(), on_timeout=lambda e: order.append(e["backfill_id"]))
    assert order == [BACKFILL]


@pytest.mark.parametrize(
    "event",
    [
        {"status": "error", "message": "trigger broke", "batch_export_id": EXPORT},
        {"status": "unknown", "message": "x", "batch_export_id": EXPORT},
        None,
    ],
)
def test_trigger_errors_and_unknown_events_are_never_a_success_or_a_job_failure(event: Any) -> None:
    with pytest.raises(PostHogTriggerError) as err:
        _complete(event)
    assert not isinstance(err.value, (Boom, TooLate))


def test_tail_lines_keep_the_last_lines_oldest_first() -> None:
    entries = [
        mock.Mock(
            timestamp=dt.datetime(2024, 1, 1, 0, minute, tzinfo=UTC), level="INFO", message=f"m{minute}"
        )
        for minute in reversed(range(15))
    ]
    lines = waiting.tail_lines(entries)
    assert len(lines) == waiting.LOG_TAIL_LINES
    assert lines[0].endswith("INFO m5") and lines[-1].endswith("INFO m14")


def test_posthog_is_unreachable_since_the_start_of_the_first_failed_poll() -> None:
    """The hook retries inside a poll for a while before it gives up: the outage began when that poll
    started, not when its retries ran out."""
    wait = _wait(end_time=T0 + 3600)
    wait.start_poll(T0)
    step = wait.step(http_error(503), T0 + 12)
    assert wait.unreachable_since == T0
    (level, line) = step.lines[0]
    assert level == logging.WARNING
    clock = dt.datetime.fromtimestamp(T0, dt.timezone.utc).strftime("%H:%M:%S UTC")
    assert line.startswith(f"PostHog is unreachable since {clock} (HTTP 503)")
    wait.start_poll(T0 + 72)
    wait.step(http_error(503), T0 + 80)
    assert wait.unreachable_since == T0  # a later failed poll does not move it


def test_the_poll_deadline_is_the_wait_end_with_a_short_grace_for_the_last_poll() -> None:
    assert _wait(end_time=None).start_poll(T0) is None
    wait = _wait(end_time=T0 + 300, poll_interval=60)
    assert wait.start_poll(T0) == T0 + 300
    assert wait.start_poll(T0 + 300) == T0 + 300 + waiting.LAST_POLL_SECONDS
    assert _wait(end_time=T0 + 10, poll_interval=0).start_poll(T0 + 10) == T0 + 11  # at least 1 s


# ------------------------------------------------ an interval wait does not poll before its interval ended

#: An interval ending at T0: PostHog starts the run of its last period only then.
INTERVAL = IntervalJob(EXPORT, dt.datetime.fromtimestamp(T0 - 3600, UTC), dt.datetime.fromtimestamp(T0, UTC))


@pytest.mark.parametrize("started", [T0 - 5.0, T0, T0 + 9.0], ids=["before-end", "at-end", "just-after"])
def test_an_interval_wait_polls_first_one_interval_after_the_interval_ends(started: float) -> None:
    wait = _wait(job=INTERVAL, poll_interval=10.0)
    step = wait.before_first_poll(started)
    assert step is not None and step.event is None
    assert started + step.sleep == pytest.approx(T0 + 10.0)
    assert _texts(step) == [
        "First check at 22:13:30 UTC: PostHog starts the last run of [2023-11-14T21:13:20+00:00, "
        "2023-11-14T22:13:20+00:00) only once it has ended."
    ]


def test_an_interval_wait_started_late_polls_at_once() -> None:
    wait = _wait(job=INTERVAL, poll_interval=10.0)
    assert wait.before_first_poll(T0 + 10.0) is None
    assert wait.before_first_poll(T0 + 86_400.0) is None


def test_an_interval_waits_first_poll_is_never_after_its_deadline() -> None:
    wait = _wait(job=INTERVAL, poll_interval=60.0, end_time=T0 + 20.0)
    step = wait.before_first_poll(T0)
    assert step is not None and step.sleep == pytest.approx(20.0)
    assert wait.before_first_poll(T0 + 20.0) is None


@pytest.mark.parametrize(
    "job", [BackfillJob(EXPORT, BACKFILL), RunJob(EXPORT, "run-1")], ids=["backfill", "run"]
)
def test_other_waits_poll_at_once(job: Any) -> None:
    assert _wait(job=job).before_first_poll(T0 - 86_400.0) is None
