"""PostHogCreateBackfillOperator / PostHogRetryRunOperator against a scripted PostHog (no network, no DB).

The operators poll and cancel through the real operations of a real hook (``fake_posthog``); creating,
finding and retrying backfills are replaced by mocks, since these tests look at what happens around them.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from fake_posthog import BACKFILL, EXPORT, FakePostHog, run_row, with_hook

from airflow_provider_posthog.compat import TaskDeferred
from airflow_provider_posthog.exceptions import (
    PostHogConfigError,
    PostHogJobFailedError,
    PostHogTriggerError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator
from airflow_provider_posthog.tasks.waiting import make_event
from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

START = "2024-01-01T00:00:00+00:00"
END = "2024-01-01T02:00:00+00:00"
ROUND_START = "2024-01-01T23:59:00+00:00"  # the factories' backfills are created 2024-01-02T00:00:00Z
BACKFILL_PATH = f"batch_exports/{EXPORT}/backfills/{BACKFILL}/"
CANCEL_PATH = f"{BACKFILL_PATH}cancel/"


def _op(**kwargs: Any) -> PostHogCreateBackfillOperator:
    params: dict[str, Any] = {
        "task_id": "backfill",
        "batch_export_id": EXPORT,
        "start_at": START,
        "end_at": END,
        "poll_interval": 0,
        "deferrable": False,
    }
    params.update(kwargs)
    return PostHogCreateBackfillOperator(**params)


def _fake(*statuses: str) -> FakePostHog:
    """PostHog answering ``statuses`` to successive polls of the backfill (default: Running, then
    Completed) and one completed run of it."""
    fake = FakePostHog().backfill(*(statuses or ("Running", "Completed")))
    fake.run_list = [run_row("Completed")]
    return fake


def _calls(factories: Any) -> mock.Mock:
    """The hook methods these tests do not run through the fake; one parent records every call."""
    calls = mock.Mock()
    calls.find_backfill.return_value = None
    calls.create_backfill.return_value = factories.backfill("Running")
    calls.retry_run.return_value = factories.backfill("Running")
    calls.get_run_logs.return_value = []
    return calls


def _with_hook(op: Any, fake: FakePostHog, calls: mock.Mock) -> Any:
    with_hook(
        op,
        fake,
        find_backfill=calls.find_backfill,
        create_backfill=calls.create_backfill,
        retry_run=calls.retry_run,
        get_run_logs=calls.get_run_logs,
    )
    return op


def _polls(fake: FakePostHog) -> int:
    return fake.paths("GET").count(BACKFILL_PATH)


def _context(try_number: int = 1, max_tries: int = 1, retries: int = 1) -> dict[str, Any]:
    """A task instance on its ``try_number``; its DAG run started just before the factories' backfills."""
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, max_tries
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=retries),
        "dag_run": SimpleNamespace(start_date=pendulum.parse(ROUND_START)),
    }


def _retry() -> dict[str, Any]:
    return _context(try_number=2)


def _pushed(context: dict[str, Any]) -> dict[str, Any]:
    return {c.kwargs["key"]: c.kwargs["value"] for c in context["ti"].xcom_push.call_args_list}


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_at": "2024-01-01T00:00:00"}, "start_at.*naive"),
        ({"end_at": dt.datetime(2024, 1, 2)}, "end_at.*naive"),
        ({"start_at": END, "end_at": START}, "start_at .* must be before end_at"),
        ({"start_at": START, "end_at": START}, "zero-width range.*No DAG schedule"),
        ({"reattach": "sometimes"}, r"reattach='sometimes' is not one of \['retry', 'always', 'never'\]"),
        ({"reuse_existing": "maybe"}, "reuse_existing='maybe' is not a boolean"),
        ({"end_at": pendulum.now("UTC").add(days=1)}, "end_at .* is in the future"),
        ({"start_at": "yesterday"}, "start_at='yesterday' is not an ISO-8601"),
        ({"batch_export_id": ""}, "batch_export_id is required"),
        ({"batch_export_id": None}, "batch_export_id is required"),
        ({"poll_interval": "fast"}, "poll_interval"),
        ({"unreachable_timeout": "a while"}, "unreachable_timeout='a while' is not a number"),
    ],
)
def test_invalid_arguments_fail_before_any_api_call(
    factories: Any, kwargs: dict[str, Any], match: str
) -> None:
    fake, calls = _fake(), _calls(factories)
    op = _with_hook(_op(**kwargs), fake, calls)
    with pytest.raises(PostHogConfigError, match=match):
        op.execute(_context())
    assert calls.mock_calls == []
    assert fake.sent == []


def test_accepts_datetimes_pendulum_and_rendered_templates(factories: Any) -> None:
    for start, end in [
        (
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
            pendulum.datetime(2024, 1, 1, 2, tz="Europe/Berlin"),
        ),
        ("2024-01-01 00:00:00+00:00", "2024-01-01T02:00:00Z"),
    ]:
        calls = _calls(factories)
        _with_hook(_op(start_at=start, end_at=end), _fake(), calls).execute(_context())
        args = calls.create_backfill.call_args.args
        assert args[1] == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        assert args[2].tzinfo is not None


def test_constructor_does_no_io_and_parsing_imports_no_hook() -> None:
    code = (
        "import sys\n"
        "from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator\n"
        "from airflow_provider_posthog.operators.batch_export import PostHogCreateBatchExportOperator\n"
        "from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor\n"
        "PostHogCreateBackfillOperator(task_id='t', batch_export_id='{{ params.x }}',"
        " start_at='{{ data_interval_start }}', end_at='{{ data_interval_end }}',"
        " posthog_conn_id='missing')\n"
        "PostHogBatchExportRunSensor(task_id='s', batch_export_id='x', posthog_conn_id='missing')\n"
        "bad = [m for m in ('airflow_provider_posthog.hooks.posthog', 'aiohttp') if m in sys.modules]\n"
        "assert 'airflow_provider_posthog.hooks.posthog' not in sys.modules, bad\n"
        "print('ok', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_template_fields_cover_ids_dates_and_conn() -> None:
    fields = set(PostHogCreateBackfillOperator.template_fields)
    assert {
        "batch_export_id",
        "start_at",
        "end_at",
        "posthog_conn_id",
        "project_id",
        "poll_interval",
        "timeout",
        "unreachable_timeout",
    } <= fields


def test_deferrable_default_comes_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert _op(deferrable=None).deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert _op(deferrable=None).deferrable is False
    assert _op(deferrable=None).poll_interval == 0  # explicit value kept
    assert (
        PostHogCreateBackfillOperator(
            task_id="x", batch_export_id="e", start_at=START, end_at=END
        ).poll_interval
        == 60
    )


# ------------------------------------------------------------------------------------------- sync path


def test_sync_wait_pushes_ids_before_waiting_and_returns_backfill_id(factories: Any) -> None:
    fake, calls = _fake("Completed"), _calls(factories)
    context = _context()
    seen_before_poll: dict[str, Any] = {}
    answer = fake.answer

    def spy(spec: Any) -> Any:
        if spec.path == BACKFILL_PATH and not seen_before_poll:
            seen_before_poll.update(_pushed(context))
        return answer(spec)

    fake.answer = spy  # type: ignore[method-assign]
    assert _with_hook(_op(), fake, calls).execute(context) == BACKFILL
    assert seen_before_poll["backfill_id"] == BACKFILL
    assert seen_before_poll["batch_export_id"] == EXPORT
    assert seen_before_poll["backfills_url"].endswith("?tab=backfills")
    assert seen_before_poll["runs_url"].endswith("?tab=runs")
    calls.create_backfill.assert_called_once()


def test_sync_wait_polls_until_done(factories: Any) -> None:
    fake = _fake("Running", "Running", "Completed")
    with mock.patch("airflow_provider_posthog.operators._base.time.sleep") as sleep:
        assert _with_hook(_op(poll_interval=7), fake, _calls(factories)).execute(_context()) == BACKFILL
    assert _polls(fake) == 3
    assert sleep.call_args_list == [mock.call(7.0), mock.call(7.0)]


def test_failed_run_fails_with_latest_error_and_log_tail(factories: Any) -> None:
    fake, calls = _fake("Completed"), _calls(factories)
    fake.run_list = [run_row("Failed", run_id="bad", latest_error="S3 AccessDenied")]
    log = mock.MagicMock(
        timestamp=pendulum.datetime(2024, 1, 2, tz="UTC"), level="ERROR", message="upload failed: 403"
    )
    calls.get_run_logs.return_value = [log]
    with pytest.raises(PostHogJobFailedError) as excinfo:
        _with_hook(_op(), fake, calls).execute(_context())
    text = str(excinfo.value)
    assert "S3 AccessDenied" in text and "upload failed: 403" in text and "bad" in text
    calls.get_run_logs.assert_called_once_with(EXPORT, "bad")


def test_sync_timeout_cancels_the_backfill(factories: Any) -> None:
    fake = _fake("Running")
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(timeout=0), fake, _calls(factories)).execute(_context())
    # One cancel of this backfill, then its status read back (the cancel took: Cancelled).
    assert fake.paths("POST") == [CANCEL_PATH]
    assert fake.paths()[-2:] == [CANCEL_PATH, BACKFILL_PATH]


def test_sync_timeout_without_cancel_on_kill_leaves_it_running(factories: Any) -> None:
    fake = _fake("Running")
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(timeout=0, cancel_on_kill=False), fake, _calls(factories)).execute(_context())
    assert fake.paths("POST") == []


def test_wait_for_completion_false_returns_the_same_value(factories: Any) -> None:
    fake = _fake()
    assert _with_hook(_op(wait_for_completion=False), fake, _calls(factories)).execute(_context()) == BACKFILL
    assert fake.sent == []


def test_worker_on_kill_cancels_a_sync_wait(factories: Any) -> None:
    fake = _fake("Running")
    op = _with_hook(_op(), fake, _calls(factories))
    op.on_kill()  # nothing started yet: no call
    assert fake.sent == []

    def killed(*_: Any) -> None:
        op.on_kill()
        raise KeyboardInterrupt  # what a kill looks like from inside the loop

    with (
        mock.patch("airflow_provider_posthog.operators._base.time.sleep", side_effect=killed),
        pytest.raises(KeyboardInterrupt),
    ):
        op.execute(_context())
    assert fake.paths("POST") == [CANCEL_PATH]


# ------------------------------------------------------------------------------------------- re-attach


def test_reattaches_to_a_running_backfill_of_the_same_range(factories: Any) -> None:
    fake, calls = _fake("Completed"), _calls(factories)
    calls.find_backfill.return_value = factories.backfill("Running")
    assert _with_hook(_op(), fake, calls).execute(_retry()) == BACKFILL
    calls.create_backfill.assert_not_called()
    assert calls.find_backfill.call_args.args[0] == EXPORT


def test_completed_backfill_returns_at_once_without_deferring(factories: Any) -> None:
    fake, calls = _fake("Completed"), _calls(factories)
    calls.find_backfill.return_value = factories.backfill("Completed")
    op = _with_hook(_op(deferrable=True), fake, calls)
    with mock.patch.object(op, "defer") as defer:
        assert op.execute(_retry()) == BACKFILL
    defer.assert_not_called()
    calls.create_backfill.assert_not_called()


def test_completed_backfill_with_failed_runs_is_replaced_on_retry(factories: Any) -> None:
    fake, calls = _fake("Running", "Completed"), _calls(factories)
    fake.backfill("Completed", backfill_id="old")
    calls.find_backfill.return_value = factories.backfill("Completed", id="old")
    fake.run_list = [
        run_row("Failed", run_id="old-run", backfill_id="old"),
        run_row("Completed"),
    ]
    assert _with_hook(_op(), fake, calls).execute(_retry()) == BACKFILL
    calls.create_backfill.assert_called_once()
    assert f"batch_exports/{EXPORT}/backfills/old/" in fake.paths("GET")  # the old one's runs were checked


def test_failed_backfill_of_the_same_range_is_replaced(factories: Any) -> None:
    calls = _calls(factories)
    calls.find_backfill.return_value = factories.backfill("Failed", id="old")
    _with_hook(_op(), _fake(), calls).execute(_retry())
    calls.create_backfill.assert_called_once()


def test_two_attempts_create_exactly_one_backfill(factories: Any) -> None:
    """Attempt 1 dies mid-wait (timeout, no cancel); attempt 2 re-attaches instead of creating a duplicate."""
    created: list[Any] = []
    state = {"status": "Running"}

    def create(*_: Any) -> Any:
        created.append(1)
        return factories.backfill("Running")

    calls = _calls(factories)
    calls.create_backfill.side_effect = create
    calls.find_backfill.side_effect = lambda *a, **k: factories.backfill(state["status"]) if created else None
    fake = _fake("Running")
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(timeout=0, cancel_on_kill=False), fake, calls).execute(_context(try_number=1))
    state["status"] = "Completed"
    fake.backfill("Completed")
    assert _with_hook(_op(), fake, calls).execute(_context(try_number=2)) == BACKFILL
    assert len(created) == 1
    assert fake.paths("POST") == []


# ------------------------------------------------------------------------------------------- deferrable


def test_defers_with_plain_kwargs_epoch_deadline_and_no_framework_timeout(factories: Any) -> None:
    fake = _fake("Running")
    op = _with_hook(
        _op(deferrable=True, poll_interval=5, timeout=600, execution_timeout=dt.timedelta(seconds=300)),
        fake,
        _calls(factories),
    )
    context = _context()
    with (
        mock.patch("airflow_provider_posthog.operators._base.time.time", return_value=1_000.0),
        mock.patch("airflow_provider_posthog.operators.backfill.time.time", return_value=1_000.0),
        pytest.raises(TaskDeferred) as excinfo,
    ):
        op.execute(context)
    pushed = _pushed(context)  # ids and links are in XCom before the task defers
    assert pushed["backfill_id"] == BACKFILL and pushed["batch_export_url"].endswith(EXPORT)
    deferred = excinfo.value
    assert deferred.timeout is None
    assert deferred.method_name == "execute_complete"
    trigger = deferred.trigger
    assert isinstance(trigger, PostHogBackfillTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["end_time"] == 1_300.0  # execution_timeout (300 s) is earlier than timeout (600 s)
    assert kwargs["poll_interval"] == 5.0 and kwargs["cancel_on_kill"] is True
    assert kwargs["first_poll_at"] == 1_005.0  # the task just polled: no second request at deferral
    assert kwargs["backfill_id"] == BACKFILL
    assert _polls(fake) == 1


@pytest.mark.parametrize("supported", [True, False, None], ids=["3.3+", "older", "installed"])
def test_warns_when_this_airflow_cannot_cancel_a_killed_deferred_task(
    factories: Any, supported: bool | None
) -> None:
    """None = the installed Airflow, unpatched: warns exactly when its BaseTrigger has no on_kill (< 3.3)."""
    from contextlib import nullcontext

    from airflow.triggers.base import BaseTrigger

    op = _with_hook(_op(deferrable=True, poll_interval=5), _fake("Running"), _calls(factories))
    flag = mock.patch("airflow_provider_posthog.compat.TRIGGER_ON_KILL_SUPPORTED", supported)
    if supported is None:
        flag, supported = nullcontext(), "on_kill" in vars(BaseTrigger)
    with (
        flag,
        mock.patch.object(type(op), "log", new_callable=mock.PropertyMock) as log,
        pytest.raises(TaskDeferred),
    ):
        op.execute(_context())
    warnings = [c.args[0] for c in log.return_value.warning.call_args_list]
    assert any("does not call trigger on_kill" in w for w in warnings) is not supported


def _event(status: str, **extra: Any) -> dict[str, Any]:
    event = make_event(status, f"it is {status}", batch_export_id=EXPORT, backfill_id=BACKFILL)
    event.update(extra)
    return event


def test_execute_complete_success_returns_the_same_value_as_sync(factories: Any) -> None:
    op = _with_hook(_op(deferrable=True), _fake(), _calls(factories))
    assert op.execute_complete(_context(), _event("success")) == BACKFILL


def test_execute_complete_failure_quotes_runs(factories: Any) -> None:
    failed = [
        {
            "id": "r9",
            "status": "Failed",
            "latest_error": "boom",
            "data_interval_start": START,
            "data_interval_end": END,
        }
    ]
    calls = _calls(factories)
    with pytest.raises(PostHogJobFailedError, match="boom"):
        _with_hook(_op(), _fake(), calls).execute_complete(_context(), _event("failed", failed_runs=failed))
    calls.get_run_logs.assert_called_once_with(EXPORT, "r9")


def test_execute_complete_timeout_cancels_then_fails(factories: Any) -> None:
    fake = _fake("Running")
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(), fake, _calls(factories)).execute_complete(_context(), _event("timeout"))
    assert fake.paths() == [CANCEL_PATH, BACKFILL_PATH]  # the cancel, then its status read back


def test_execute_complete_trigger_error_is_not_a_job_failure(factories: Any) -> None:
    fake = _fake()
    with pytest.raises(PostHogTriggerError) as excinfo:
        _with_hook(_op(), fake, _calls(factories)).execute_complete(_context(), _event("error"))
    assert not isinstance(excinfo.value, PostHogJobFailedError)
    assert fake.sent == []  # no cancel: the export may still be running


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"status": "cancelled", "message": "x", "batch_export_id": EXPORT},
        {"status": "success"},
        "success",
    ],
    ids=["none", "empty", "unknown-status", "no-message", "not-a-dict"],
)
def test_execute_complete_rejects_unknown_or_missing_events(factories: Any, event: Any) -> None:
    with pytest.raises(PostHogTriggerError):
        _with_hook(_op(), _fake(), _calls(factories)).execute_complete(_context(), event)


# ------------------------------------------------------------------------------------------- retry run


def _retry_op(**kwargs: Any) -> PostHogRetryRunOperator:
    return PostHogRetryRunOperator(
        task_id="retry", batch_export_id=EXPORT, run_id="run-1", poll_interval=0, **kwargs
    )


def test_retry_run_waits_for_its_backfill(factories: Any) -> None:
    fake, calls = _fake("Completed"), _calls(factories)
    fake.run("Failed", backfill_id=None)
    context = _context()
    assert _with_hook(_retry_op(), fake, calls).execute(context) == BACKFILL
    calls.retry_run.assert_called_once_with(EXPORT, "run-1")
    assert _pushed(context)["run_id"] == "run-1"
    assert _polls(fake) == 1


def test_retry_run_reattaches(factories: Any) -> None:
    fake, calls = _fake("Completed"), _calls(factories)
    fake.run("Failed", backfill_id=None)
    calls.find_backfill.return_value = factories.backfill("Running")
    assert _with_hook(_retry_op(), fake, calls).execute(_retry()) == BACKFILL
    calls.retry_run.assert_not_called()
    assert calls.find_backfill.call_args.args == (
        EXPORT,
        pendulum.parse("2024-01-01T00:00:00Z"),
        pendulum.parse("2024-01-01T01:00:00Z"),
    )
