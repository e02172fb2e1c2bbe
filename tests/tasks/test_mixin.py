"""What every PostHog task shares (``tasks/mixin.py``): one poll, one cancel, the end of a wait, the link
XComs. A tiny task over a real hook answered by an in-memory PostHog; no DAG, no HTTP."""

from __future__ import annotations

import logging
import time
from typing import Any
from unittest import mock

import pytest
from fake_posthog import BACKFILL, EXPORT, FakePostHog, dropped, http_error, run_row, with_hook

from airflow_provider_posthog.api.jobs import BackfillJob, RunJob
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogConfigError,
    PostHogJobFailedError,
    PostHogNotFoundError,
    PostHogServerError,
    PostHogTransportError,
    PostHogTriggerError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.tasks import waiting
from airflow_provider_posthog.tasks.mixin import PostHogTaskMixin
from airflow_provider_posthog.tasks.waiting import Wait

LOGGER = "tests.tasks.test_mixin"
WHAT = f"backfill {BACKFILL} of batch export {EXPORT}"


class Task(PostHogTaskMixin):
    """The smallest PostHog task: the mixin, a logger, and a record of the override points."""

    log = logging.getLogger(LOGGER)

    def __init__(self, posthog_conn_id: str = "posthog_fake", project_id: int | str | None = None) -> None:
        self.posthog_conn_id = posthog_conn_id
        self.project_id = project_id
        self.succeeded: list[tuple[dict[str, Any], Any]] = []
        self.timed_out: list[dict[str, Any]] = []

    def on_wait_succeeded(self, context: Any, event: Any, completed_runs: Any) -> None:
        self.succeeded.append((dict(event), completed_runs))

    def on_wait_timeout(self, event: Any) -> None:
        self.timed_out.append(dict(event))


def _task(fake: FakePostHog) -> Task:
    task = Task()
    with_hook(task, fake)
    return task


def _backfill_wait(**kwargs: Any) -> Wait:
    return Wait(job=BackfillJob(EXPORT, BACKFILL), **kwargs)


def _completed_backfill() -> FakePostHog:
    fake = FakePostHog().backfill("Completed")
    fake.run_list = [
        run_row("Completed", run_id="r1"),
        run_row("Completed", run_id="r2", backfill_id="other"),
    ]
    return fake


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


# -- poll ---------------------------------------------------------------------------------------------------


def test_poll_is_one_hook_call_bounded_by_the_waits_deadline() -> None:
    fake = FakePostHog().backfill("Running")
    task = Task()
    hook = with_hook(task, fake)
    end_time = time.time() + 600
    decision = task.poll(_backfill_wait(end_time=end_time))
    assert not isinstance(decision, Exception) and decision.outcome is Outcome.RUNNING
    assert hook.deadlines == [end_time]
    assert fake.paths() == [f"batch_exports/{EXPORT}/backfills/{BACKFILL}/"]
    task.poll(_backfill_wait())
    assert hook.deadlines == [end_time, None]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [(http_error(503), PostHogServerError), (dropped(), PostHogTransportError), (None, PostHogNotFoundError)],
    ids=["503", "dropped", "404"],
)
def test_poll_returns_the_exception_instead_of_raising(failure: Exception | None, expected: type) -> None:
    fake = FakePostHog()  # no backfill scripted: a 404
    if failure is not None:
        fake.backfill("Running").fail_next(1, failure)
    result = _task(fake).poll(_backfill_wait())
    assert type(result) is expected
    if failure is not None:
        assert result is failure


def test_the_polled_exception_is_judged_by_the_wait() -> None:
    task = _task(FakePostHog())
    wait = _backfill_wait(end_time=time.time() + 600)
    with pytest.raises(PostHogNotFoundError):
        wait.step(task.poll(wait), time.time())


# -- finish_wait --------------------------------------------------------------------------------------------


def test_a_success_polled_in_this_process_hands_over_the_runs_it_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = _task(_completed_backfill())
    wait = _backfill_wait()
    decision = task.poll(wait)
    assert not isinstance(decision, Exception) and decision.outcome is Outcome.SUCCEEDED
    event = wait.step(decision, time.time()).event
    assert task.finish_wait({}, event, require=("backfill_id",)) == event
    [(got, completed)] = task.succeeded
    assert got == event and [r.id for r in completed] == ["r1"]
    assert completed == decision.completed_runs
    assert task.waited_job_id == BACKFILL
    assert (logging.INFO, decision.message) in _records(caplog)


def test_a_success_from_a_trigger_has_no_local_runs() -> None:
    """After a deferral the runs stayed in the triggerer: the override must re-poll if it needs them."""
    event = waiting.make_event("success", "done", batch_export_id=EXPORT, backfill_id=BACKFILL)
    fresh = _task(FakePostHog())
    fresh.finish_wait({}, event)
    assert fresh.succeeded == [(event, None)]
    # A task that polled "Running" and then deferred has no counted runs either.
    polled = _task(FakePostHog().backfill("Running"))
    polled.poll(_backfill_wait())
    polled.finish_wait({}, event)
    assert polled.succeeded == [(event, None)]


def test_a_failure_raises_the_tasks_error_with_log_tails_and_never_reports_success() -> None:
    fake = FakePostHog().run("Failed", run_id="r1", created_at="2024-01-02T00:00:01Z")
    fake.logs = [{"timestamp": "2024-01-02T00:00:02Z", "level": "error", "message": "S3 denied"}]
    task = _task(fake)
    event = waiting.make_event(
        "failed", "Run r1 ended with status 'Failed'.", batch_export_id=EXPORT, run_id="r1"
    )
    event["failed_runs"] = [{"id": "r1", "status": "Failed", "latest_error": "boom"}]
    with pytest.raises(PostHogJobFailedError) as raised:
        task.finish_wait({}, event)
    assert "latest_error: boom" in str(raised.value) and "ERROR S3 denied" in str(raised.value)
    assert task.succeeded == [] and task.timed_out == [] and task.waited_job_id == "r1"


def test_a_timeout_runs_on_wait_timeout_then_raises_and_never_reports_success() -> None:
    task = _task(FakePostHog())
    event = Wait(job=RunJob(EXPORT, "r7")).timeout_event()
    with pytest.raises(PostHogWaitTimeoutError, match="Stopped waiting for run r7"):
        task.finish_wait({}, event)
    assert task.timed_out == [event] and task.succeeded == [] and task.waited_job_id == "r7"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("success", None),
        ("failed", PostHogJobFailedError),
        ("timeout", PostHogWaitTimeoutError),
        ("error", PostHogTriggerError),
    ],
)
def test_waited_job_id_comes_from_the_event_whatever_its_outcome(status: str, error: type | None) -> None:
    task = _task(FakePostHog())
    task.waited_job_id = "from-an-earlier-wait"
    event = waiting.make_event(status, "m", batch_export_id=EXPORT, backfill_id="b-9")
    if error is None:
        task.finish_wait({}, event)
    else:
        with pytest.raises(error):
            task.finish_wait({}, event)
    assert task.waited_job_id == "b-9"


def test_an_event_without_ids_keeps_the_last_waited_job_and_a_broken_event_fails_closed() -> None:
    task = _task(FakePostHog())
    task.waited_job_id = "b-1"
    task.finish_wait({}, waiting.make_event("success", "ok", batch_export_id=EXPORT))
    assert task.waited_job_id == "b-1"
    with pytest.raises(PostHogTriggerError):
        task.finish_wait({}, None)
    assert len(task.succeeded) == 1


# -- cancel_best_effort -------------------------------------------------------------------------------------


def test_cancel_best_effort_logs_what_posthog_did(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakePostHog().backfill("Running")
    _task(fake).cancel_best_effort(BackfillJob(EXPORT, BACKFILL))
    assert _records(caplog) == [(logging.WARNING, f"Cancelled {WHAT} (now Cancelled).")]
    assert fake.paths("POST") == [f"batch_exports/{EXPORT}/backfills/{BACKFILL}/cancel/"]


def test_cancel_best_effort_of_a_finished_job_is_an_info(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakePostHog().run("Completed", run_id="r1")
    fake.cancels["r1"] = http_error(400, "Cannot cancel a finished run", method="POST")
    _task(fake).cancel_best_effort(RunJob(EXPORT, "r1"))
    assert _records(caplog) == [
        (logging.INFO, f"Run r1 of batch export {EXPORT} is already Completed; nothing to cancel.")
    ]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ({"cancels": "ignore"}, "is still running after the cancel"),
        ({"fail": http_error(503)}, "Could not cancel"),
        ({"fail": PostHogConfigError("no host")}, "Could not cancel"),
    ],
    ids=["not-effective", "unreachable", "config"],
)
def test_cancel_best_effort_never_raises(
    caplog: pytest.LogCaptureFixture, script: dict[str, Any], expected: str
) -> None:
    fake = FakePostHog().backfill("Running")
    if "cancels" in script:
        fake.cancels[BACKFILL] = script["cancels"]
    if "fail" in script:
        fake.fail_next(1, script["fail"])
    _task(fake).cancel_best_effort(BackfillJob(EXPORT, BACKFILL))
    [(level, message)] = _records(caplog)
    assert level == logging.WARNING and expected in message and WHAT in message


# -- the link XComs -----------------------------------------------------------------------------------------


def test_push_export_xcom_pushes_the_id_and_three_links_and_announces_the_page_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakePostHog()
    task = _task(fake)
    ti = mock.Mock()
    task.push_export_xcom({"ti": ti}, EXPORT)
    page = f"https://ph.test/project/1/pipeline/batch-exports/{EXPORT}"
    assert ti.xcom_push.call_args_list == [
        mock.call(key="batch_export_id", value=EXPORT),
        mock.call(key="batch_export_url", value=page),
        mock.call(key="backfills_url", value=f"{page}?tab=backfills"),
        mock.call(key="runs_url", value=f"{page}?tab=runs"),
    ]
    assert _records(caplog) == [(logging.INFO, f"PostHog batch export: {page}")]
    task.push_export_xcom({"ti": ti}, EXPORT, announce=False)
    assert ti.xcom_push.call_count == 8 and len(_records(caplog)) == 1
    assert fake.sent == []  # links need no request


def test_a_broken_connection_raises_its_configuration_error_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_BROKEN", "posthog://eu.posthog.com?project_id=1")
    task = Task(posthog_conn_id="posthog_broken")
    with pytest.raises(PostHogConfigError, match="no API key"):
        task.push_export_xcom({"ti": mock.Mock()}, EXPORT)
    assert _records(caplog) == []  # no "Could not build the PostHog UI URL" before the error
    ours = [r for r in caplog.records if "posthog" in r.name.lower() or "PostHog" in r.getMessage()]
    assert not [r for r in ours if r.levelno >= logging.WARNING]


# -- the hook and trigger arguments -------------------------------------------------------------------------


def test_project_id_must_be_a_number_and_may_be_left_to_the_connection() -> None:
    assert Task(project_id="12")._project_id() == 12
    assert Task(project_id="")._project_id() is None and Task()._project_id() is None
    with pytest.raises(PostHogConfigError, match="project_id='abc' is not a number"):
        Task(project_id="abc")._project_id()


def test_trigger_kwargs_carry_the_wait_as_plain_values() -> None:
    task = Task(project_id="3")
    wait = _backfill_wait(poll_interval=15, end_time=1_700_000_600.0, unreachable_timeout=120)
    assert task.trigger_kwargs(wait, first_poll_at=1_700_000_015.0) == {
        "batch_export_id": EXPORT,
        "posthog_conn_id": "posthog_fake",
        "project_id": 3,
        "poll_interval": 15,
        "end_time": 1_700_000_600.0,
        "unreachable_timeout": 120,
        "unreachable_since": None,
        "first_poll_at": 1_700_000_015.0,
        "export": None,
    }
    wait.unreachable_since = 1_700_000_001.0  # the first poll failed: the triggerer goes on counting
    assert task.trigger_kwargs(wait, first_poll_at=None)["unreachable_since"] == 1_700_000_001.0
    # The export a poll read goes along (its identity: plain JSON), so the trigger does not read it again.
    wait.export = {"id": EXPORT, "name": "events to S3", "destination": {"type": "S3", "config": {}}}
    assert task.trigger_kwargs(wait, first_poll_at=None)["export"] == wait.export
