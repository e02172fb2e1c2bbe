"""PostHogCreateBackfillOperator / PostHogRetryRunOperator with a mocked hook (no network, no DB)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest

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

EXPORT = "0190-export"
BACKFILL = "0190-backfill"
START = "2024-01-01T00:00:00+00:00"
END = "2024-01-01T02:00:00+00:00"
ROUND_START = "2024-01-01T23:59:00+00:00"  # the factories' backfills are created 2024-01-02T00:00:00Z


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


def _with_hook(op: Any, hook: mock.MagicMock) -> Any:
    op.__dict__["hook"] = hook  # fills the cached_property
    return op


def _hook(factories: Any, statuses: list[str] | None = None, **overrides: Any) -> mock.MagicMock:
    hook = mock.MagicMock()
    hook.find_backfill.return_value = None
    hook.create_backfill.return_value = factories.backfill("Running")
    hook.get_backfill.side_effect = [factories.backfill(s) for s in (statuses or ["Running", "Completed"])]
    hook.list_runs.return_value = [factories.run("Completed")]
    hook.ui_url.side_effect = lambda export_id, tab=None: (
        f"https://ph.test/project/1/pipeline/batch-exports/{export_id}" + (f"?tab={tab}" if tab else "")
    )
    hook.list_backfill_runs = hook.list_runs  # one mock, whichever way the runs are listed
    for name, value in overrides.items():
        setattr(hook, name, value)
    return hook


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
    ],
)
def test_invalid_arguments_fail_before_any_api_call(
    factories: Any, kwargs: dict[str, Any], match: str
) -> None:
    hook = _hook(factories)
    op = _with_hook(_op(**kwargs), hook)
    with pytest.raises(PostHogConfigError, match=match):
        op.execute(_context())
    hook.create_backfill.assert_not_called()
    hook.find_backfill.assert_not_called()


def test_accepts_datetimes_pendulum_and_rendered_templates(factories: Any) -> None:
    for start, end in [
        (
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
            pendulum.datetime(2024, 1, 1, 2, tz="Europe/Berlin"),
        ),
        ("2024-01-01 00:00:00+00:00", "2024-01-01T02:00:00Z"),
    ]:
        hook = _hook(factories)
        _with_hook(_op(start_at=start, end_at=end), hook).execute(_context())
        args = hook.create_backfill.call_args.args
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
        "bad = [m for m in ('airflow_provider_posthog.hooks.posthog', 'httpx') if m in sys.modules]\n"
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
    hook = _hook(factories)
    context = _context()
    seen_before_poll: dict[str, Any] = {}

    def get_backfill(*args: Any) -> Any:
        seen_before_poll.update(_pushed(context))
        return factories.backfill("Completed")

    hook.get_backfill.side_effect = get_backfill
    assert _with_hook(_op(), hook).execute(context) == BACKFILL
    assert seen_before_poll["backfill_id"] == BACKFILL
    assert seen_before_poll["batch_export_id"] == EXPORT
    assert seen_before_poll["backfills_url"].endswith("?tab=backfills")
    assert seen_before_poll["runs_url"].endswith("?tab=runs")
    hook.create_backfill.assert_called_once()


def test_sync_wait_polls_until_done(factories: Any) -> None:
    hook = _hook(factories, ["Running", "Running", "Completed"])
    with mock.patch("airflow_provider_posthog.operators._base.time.sleep") as sleep:
        assert _with_hook(_op(poll_interval=7), hook).execute(_context()) == BACKFILL
    assert hook.get_backfill.call_count == 3
    assert sleep.call_args_list == [mock.call(7.0), mock.call(7.0)]


def test_failed_run_fails_with_latest_error_and_log_tail(factories: Any) -> None:
    hook = _hook(factories, ["Completed"])
    hook.list_runs.return_value = [factories.run("Failed", run_id="bad", latest_error="S3 AccessDenied")]
    log = mock.MagicMock(
        timestamp=pendulum.datetime(2024, 1, 2, tz="UTC"), level="ERROR", message="upload failed: 403"
    )
    hook.get_run_logs.return_value = [log]
    with pytest.raises(PostHogJobFailedError) as excinfo:
        _with_hook(_op(), hook).execute(_context())
    text = str(excinfo.value)
    assert "S3 AccessDenied" in text and "upload failed: 403" in text and "bad" in text
    hook.get_run_logs.assert_called_once_with(EXPORT, "bad")


def test_sync_timeout_cancels_the_backfill(factories: Any) -> None:
    hook = _hook(factories, ["Running", "Running", "Running"])
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(timeout=0), hook).execute(_context())
    hook.cancel_backfill.assert_called_once_with(EXPORT, BACKFILL)


def test_sync_timeout_without_cancel_on_kill_leaves_it_running(factories: Any) -> None:
    hook = _hook(factories, ["Running", "Running"])
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(timeout=0, cancel_on_kill=False), hook).execute(_context())
    hook.cancel_backfill.assert_not_called()


def test_wait_for_completion_false_returns_the_same_value(factories: Any) -> None:
    hook = _hook(factories)
    assert _with_hook(_op(wait_for_completion=False), hook).execute(_context()) == BACKFILL
    hook.get_backfill.assert_not_called()


def test_worker_on_kill_cancels_a_sync_wait(factories: Any) -> None:
    hook = _hook(factories, ["Running"] * 3)
    op = _with_hook(_op(), hook)
    op.on_kill()  # nothing started yet: no call
    hook.cancel_backfill.assert_not_called()

    def killed(*_: Any) -> None:
        op.on_kill()
        raise KeyboardInterrupt  # what a kill looks like from inside the loop

    with (
        mock.patch("airflow_provider_posthog.operators._base.time.sleep", side_effect=killed),
        pytest.raises(KeyboardInterrupt),
    ):
        op.execute(_context())
    hook.cancel_backfill.assert_called_once_with(EXPORT, BACKFILL)


# ------------------------------------------------------------------------------------------- re-attach


def test_reattaches_to_a_running_backfill_of_the_same_range(factories: Any) -> None:
    hook = _hook(factories, ["Completed"])
    hook.find_backfill.return_value = factories.backfill("Running")
    assert _with_hook(_op(), hook).execute(_retry()) == BACKFILL
    hook.create_backfill.assert_not_called()
    assert hook.find_backfill.call_args.args[0] == EXPORT


def test_completed_backfill_returns_at_once_without_deferring(factories: Any) -> None:
    hook = _hook(factories, ["Completed", "Completed"])
    hook.find_backfill.return_value = factories.backfill("Completed")
    op = _with_hook(_op(deferrable=True), hook)
    with mock.patch.object(op, "defer") as defer:
        assert op.execute(_retry()) == BACKFILL
    defer.assert_not_called()
    hook.create_backfill.assert_not_called()


def test_completed_backfill_with_failed_runs_is_replaced_on_retry(factories: Any) -> None:
    hook = _hook(factories)
    old = factories.backfill("Completed", id="old")
    hook.find_backfill.return_value = old
    hook.get_backfill.side_effect = [old, factories.backfill("Running"), factories.backfill("Completed")]
    old_failed_run = factories.run("Failed", backfill_id="old")
    hook.list_runs.side_effect = [[old_failed_run], [factories.run("Completed")]]
    assert _with_hook(_op(), hook).execute(_retry()) == BACKFILL
    hook.create_backfill.assert_called_once()


def test_failed_backfill_of_the_same_range_is_replaced(factories: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Failed", id="old")
    _with_hook(_op(), hook).execute(_retry())
    hook.create_backfill.assert_called_once()


def test_two_attempts_create_exactly_one_backfill(factories: Any) -> None:
    """Attempt 1 dies mid-wait (timeout, no cancel); attempt 2 re-attaches instead of creating a duplicate."""
    created: list[Any] = []
    state = {"status": "Running"}

    def create(*_: Any) -> Any:
        created.append(1)
        return factories.backfill("Running")

    hook = mock.MagicMock()
    hook.create_backfill.side_effect = create
    hook.find_backfill.side_effect = lambda *a, **k: factories.backfill(state["status"]) if created else None
    hook.get_backfill.side_effect = lambda *a: factories.backfill(state["status"])
    hook.list_runs.return_value = [factories.run("Completed")]
    hook.list_backfill_runs = hook.list_runs
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(timeout=0, cancel_on_kill=False), hook).execute(_context(try_number=1))
    state["status"] = "Completed"
    assert _with_hook(_op(), hook).execute(_context(try_number=2)) == BACKFILL
    assert len(created) == 1


# ------------------------------------------------------------------------------------------- deferrable


def test_defers_with_plain_kwargs_epoch_deadline_and_no_framework_timeout(factories: Any) -> None:
    hook = _hook(factories, ["Running"])
    op = _with_hook(
        _op(deferrable=True, poll_interval=5, timeout=600, execution_timeout=dt.timedelta(seconds=300)), hook
    )
    context = _context()
    with (
        mock.patch("airflow_provider_posthog.operators._base.time.time", return_value=1_000.0),
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


@pytest.mark.parametrize("supported", [True, False, None], ids=["3.3+", "older", "installed"])
def test_warns_when_this_airflow_cannot_cancel_a_killed_deferred_task(
    factories: Any, supported: bool | None
) -> None:
    """None = the installed Airflow, unpatched: warns exactly when its BaseTrigger has no on_kill (< 3.3)."""
    from contextlib import nullcontext

    from airflow.triggers.base import BaseTrigger

    op = _with_hook(_op(deferrable=True, poll_interval=5), _hook(factories, ["Running"]))
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
    op = _with_hook(_op(deferrable=True), _hook(factories))
    assert op.execute_complete(_context(), _event("success")) == BACKFILL


def test_execute_complete_failure_quotes_runs(factories: Any) -> None:
    hook = _hook(factories)
    hook.get_run_logs.return_value = []
    failed = [
        {
            "id": "r9",
            "status": "Failed",
            "latest_error": "boom",
            "data_interval_start": START,
            "data_interval_end": END,
        }
    ]
    with pytest.raises(PostHogJobFailedError, match="boom"):
        _with_hook(_op(), hook).execute_complete(_context(), _event("failed", failed_runs=failed))


def test_execute_complete_timeout_cancels_then_fails(factories: Any) -> None:
    hook = _hook(factories, ["Running"])
    with pytest.raises(PostHogWaitTimeoutError):
        _with_hook(_op(), hook).execute_complete(_context(), _event("timeout"))
    hook.cancel_backfill.assert_called_once_with(EXPORT, BACKFILL)


def test_execute_complete_trigger_error_is_not_a_job_failure(factories: Any) -> None:
    hook = _hook(factories)
    with pytest.raises(PostHogTriggerError) as excinfo:
        _with_hook(_op(), hook).execute_complete(_context(), _event("error"))
    assert not isinstance(excinfo.value, PostHogJobFailedError)
    hook.cancel_backfill.assert_not_called()


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
        _with_hook(_op(), _hook(factories)).execute_complete(_context(), event)


# ------------------------------------------------------------------------------------------- retry run


def test_retry_run_waits_for_its_backfill(factories: Any) -> None:
    hook = _hook(factories, ["Completed"])
    hook.get_run.return_value = factories.run("Failed", backfill_id=None)
    hook.retry_run.return_value = factories.backfill("Running")
    op = PostHogRetryRunOperator(task_id="retry", batch_export_id=EXPORT, run_id="run-1", poll_interval=0)
    context = _context()
    assert _with_hook(op, hook).execute(context) == BACKFILL
    hook.retry_run.assert_called_once_with(EXPORT, "run-1")
    assert _pushed(context)["run_id"] == "run-1"


def test_retry_run_reattaches(factories: Any) -> None:
    hook = _hook(factories, ["Completed"])
    hook.get_run.return_value = factories.run("Failed", backfill_id=None)
    hook.find_backfill.return_value = factories.backfill("Running")
    op = PostHogRetryRunOperator(task_id="retry", batch_export_id=EXPORT, run_id="run-1", poll_interval=0)
    assert _with_hook(op, hook).execute(_retry()) == BACKFILL
    hook.retry_run.assert_not_called()
