"""Re-attach and zero-width ranges in the backfill operators against a scripted PostHog (no network, no DB).

The rules themselves are tested in ``tests/tasks``.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from airflow.sdk import DAG
from fake_posthog import FakePostHog, run_row, with_hook

from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import PostHogBackfillAlreadyRunningError, PostHogConfigError
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator

UTC = dt.timezone.utc
EXPORT = "0190-export"
BACKFILL = "0190-backfill"
ROUND_START = "2024-01-01T23:59:00+00:00"  # the factories' backfills are created 2024-01-02T00:00:00Z


def _ctx(try_number: int = 1, max_tries: int = 1, retries: int = 1, start: str | None = ROUND_START) -> Any:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, max_tries
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=retries),
        "dag_run": SimpleNamespace(start_date=pendulum.parse(start) if start else None),
    }


# -------------------------------------------------------------------------------- the backfill operator


IDS = ("new", "ours", "old", "running")
#: The hook methods the re-attach rules call, replaced by mocks (polls go through the fake).
HOOKED = ("find_backfill", "create_backfill", "get_run", "retry_run")


class Hooked:
    """A scripted PostHog where every backfill (``IDS``) is Completed with one completed run, and mocks for
    the hook methods the rules call (``find_backfill``, ``create_backfill``, ``get_run``, ``retry_run``)."""

    def __init__(self, factories: Any) -> None:
        self.fake = FakePostHog()
        for backfill_id in IDS:
            self.fake.backfill("Completed", backfill_id=backfill_id)
        self.fake.run_list = [run_row("Completed", run_id=f"run-{i}", backfill_id=i) for i in IDS]
        self.calls = mock.Mock()
        self.calls.find_backfill.return_value = None
        self.calls.create_backfill.return_value = factories.backfill("Running", id="new")

    def __getattr__(self, name: str) -> Any:
        """``hook.find_backfill`` and the like: the mocks, as a test configures and checks them."""
        return getattr(self.calls, name)

    def attach(self, task: Any) -> Any:
        with_hook(task, self.fake, **{name: getattr(self.calls, name) for name in HOOKED})
        return task

    def untouched(self) -> bool:
        """No request and no call: what a configuration error must leave behind."""
        return self.calls.mock_calls == [] and self.fake.sent == []


def _hook(factories: Any) -> Hooked:
    return Hooked(factories)


def _op(hook: Hooked, **kwargs: Any) -> PostHogCreateBackfillOperator:
    op = PostHogCreateBackfillOperator(
        task_id="backfill",
        batch_export_id=EXPORT,
        start_at="2024-01-01T00:00:00+00:00",
        end_at="2024-01-01T02:00:00+00:00",
        poll_interval=0,
        deferrable=False,
        **kwargs,
    )
    return hook.attach(op)


def test_first_try_exports_again_even_when_the_range_was_exported(factories: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="earlier-run")
    assert _op(hook).execute(_ctx(try_number=1)) == "new"
    hook.find_backfill.assert_not_called()  # nothing to look up on a first try
    hook.create_backfill.assert_called_once()


@pytest.mark.parametrize("status", ["Running", "Starting", "Completed"])
def test_retry_reattaches_to_what_this_round_created(factories: Any, status: str) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill(status, id="ours")
    assert _op(hook).execute(_ctx(try_number=2)) == "ours"
    hook.create_backfill.assert_not_called()


def test_retry_does_not_adopt_a_backfill_of_an_earlier_round(factories: Any, capfd: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="old")
    context = _ctx(try_number=2, start="2024-01-03T00:00:00+00:00")  # DAG run (re)started a day later
    assert _op(hook).execute(context) == "new"
    assert "not from an earlier try of this task" in capfd.readouterr().out


@pytest.mark.parametrize("status", ["Failed", "Cancelled"])
def test_retry_replaces_a_failed_backfill_of_this_round(factories: Any, status: str) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill(status, id="ours")
    assert _op(hook).execute(_ctx(try_number=2)) == "new"


def test_cleared_task_exports_again(factories: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="ours")
    assert _op(hook).execute(_ctx(try_number=3, max_tries=3, retries=1)) == "new"


def test_always_reattaches_on_a_first_try_and_never_never_does(factories: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="old")
    assert _op(hook, reattach="always").execute(_ctx(try_number=1)) == "old"
    hook.create_backfill.assert_not_called()
    assert _op(hook, reattach="never").execute(_ctx(try_number=2)) == "new"


@pytest.mark.parametrize(("reuse_existing", "expected"), [(True, "old"), (False, "new")])
def test_reuse_existing_is_a_deprecated_alias(factories: Any, reuse_existing: bool, expected: str) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="old")
    with pytest.warns(DeprecationWarning, match="reuse_existing is deprecated"):
        op = _op(hook, reuse_existing=reuse_existing)
    assert op.execute(_ctx(try_number=1)) == expected


def test_invalid_reattach_fails_before_any_call(factories: Any) -> None:
    hook = _hook(factories)
    with pytest.raises(PostHogConfigError, match="reattach='sometimes'"):
        _op(hook, reattach="sometimes").execute(_ctx())
    assert hook.untouched()


def _already_running(factories: Any, **extra: Any) -> PostHogBackfillAlreadyRunningError:
    running = factories.backfill("Running", id="running", **extra)
    return PostHogBackfillAlreadyRunningError(
        "Backfill running of batch export 0190-export over the same range is still Running.",
        backfill_id="running",
        backfill=running,
    )


def test_identical_running_backfill_fails_a_first_try_at_once_naming_it(factories: Any) -> None:
    hook = _hook(factories)
    hook.create_backfill.side_effect = _already_running(factories)
    with pytest.raises(AirflowFailException, match="reattach='always' or a PostHogBackfillSensor") as err:
        _op(hook).execute(_ctx(try_number=1))
    assert "Backfill running" in str(err.value) and "backfill running" in str(err.value)


@pytest.mark.parametrize(
    ("reattach", "context"), [("always", _ctx(try_number=1)), ("retry", _ctx(try_number=2))]
)
def test_identical_running_backfill_is_adopted_when_allowed(
    factories: Any, reattach: str, context: Any
) -> None:
    hook = _hook(factories)
    hook.create_backfill.side_effect = _already_running(factories)
    assert _op(hook, reattach=reattach).execute(context) == "running"


def test_retry_run_operator_follows_the_same_rule(factories: Any) -> None:
    hook = _hook(factories)
    hook.get_run.return_value = factories.run("Failed", backfill_id=None)
    hook.retry_run.return_value = factories.backfill("Running", id="new")
    hook.find_backfill.return_value = factories.backfill("Completed", id="ours")

    def op(**kwargs: Any) -> PostHogRetryRunOperator:
        task = PostHogRetryRunOperator(
            task_id="retry", batch_export_id=EXPORT, run_id="run-1", poll_interval=0, **kwargs
        )
        return hook.attach(task)

    assert op().execute(_ctx(try_number=1)) == "new"  # a new DAG run retries the run again
    assert op().execute(_ctx(try_number=2)) == "ours"  # a retry re-attaches
    assert op(reattach="never").execute(_ctx(try_number=2)) == "new"
    assert hook.retry_run.call_count == 2
    with pytest.raises(PostHogConfigError, match="reattach"):
        op(reattach="yes").execute(_ctx())


# ---------------------------------------------------------------------------------- zero-width ranges


def _dag(schedule: Any, **kwargs: Any) -> DAG:
    return DAG("d", schedule=schedule, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), **kwargs)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_backfill_operator_derives_a_zero_width_range_from_the_dags_schedule(factories: Any) -> None:
    hook = _hook(factories)
    op = PostHogCreateBackfillOperator(
        task_id="b",
        batch_export_id=EXPORT,
        start_at="2024-03-05T00:00:00+00:00",
        end_at="2024-03-05T00:00:00+00:00",
    )
    hook.attach(op)
    op.poll_interval, op.deferrable = 0, False
    context = {**_ctx(), "dag": _dag("@daily")}
    op.execute(context)  # type: ignore[arg-type]
    assert hook.create_backfill.call_args.args == (EXPORT, _utc(2024, 3, 4), _utc(2024, 3, 5))


def test_backfill_operator_without_a_schedule_fails_before_any_call(factories: Any) -> None:
    hook = _hook(factories)
    op = _op(hook)
    op.start_at = op.end_at = "2024-03-05T00:00:00+00:00"
    with pytest.raises(PostHogConfigError, match="no schedule"):
        op.execute({**_ctx(), "dag": _dag(None)})
    assert hook.untouched()
