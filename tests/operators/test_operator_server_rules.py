"""The operators on PostHog's server rules: a backfill adopted from another task is never cancelled by this
one, an unpause with a backfill needs a known start, a retry of a run still running is refused."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from airflow.exceptions import TaskDeferred
from fake_posthog import EXPORT, FakePostHog, export_row, run_row, with_hook

from airflow_provider_posthog.exceptions import (
    PostHogBackfillAlreadyRunningError,
    PostHogConfigError,
    PostHogError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator
from airflow_provider_posthog.operators.batch_export import PostHogUnpauseBatchExportOperator

ROUND_START = "2024-01-01T23:59:00+00:00"  # the fake's backfills are created 2024-01-02T00:00:00Z


def _ctx(try_number: int = 1, retries: int = 1) -> Any:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, retries
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=retries),
        "dag_run": SimpleNamespace(start_date=pendulum.parse(ROUND_START)),
    }


def _running(factories: Any) -> PostHogBackfillAlreadyRunningError:
    running = factories.backfill("Running", id="theirs")
    return PostHogBackfillAlreadyRunningError("still running", backfill_id="theirs", backfill=running)


def _backfill_op(fake: FakePostHog, factories: Any, *, adopt: bool, **kwargs: Any) -> Any:
    op = PostHogCreateBackfillOperator(
        task_id="backfill",
        batch_export_id=EXPORT,
        start_at="2024-01-01T00:00:00+00:00",
        end_at="2024-01-01T01:00:00+00:00",
        poll_interval=0,
        emit_asset_events=False,
        reattach="always",
        **kwargs,
    )
    create = (
        mock.Mock(side_effect=_running(factories))
        if adopt
        else mock.Mock(return_value=factories.backfill("Running", id="theirs"))
    )
    with_hook(op, fake, create_backfill=create, find_backfill=mock.Mock(return_value=None))
    return op


@pytest.mark.parametrize("adopt", [True, False], ids=["adopted", "created"])
def test_a_killed_task_cancels_only_a_backfill_it_started(factories: Any, adopt: bool) -> None:
    """Two tasks of one DAG run create the same backfill at once: the one that adopted the other's does not
    cancel it when killed; the one that created it does."""
    fake = FakePostHog().backfill("Running", backfill_id="theirs")
    op = _backfill_op(fake, factories, adopt=adopt, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(_ctx())
    assert deferred.value.trigger.serialize()[1]["cancel_on_kill"] is (not adopt)
    assert deferred.value.kwargs == (None if not adopt else {"owns_backfill": False})
    op.on_kill()
    cancels = [s for s in fake.sent if s.method == "POST"]
    assert len(cancels) == (0 if adopt else 1)


def test_an_adopted_backfill_is_not_cancelled_when_the_wait_times_out_after_a_deferral(
    factories: Any,
) -> None:
    fake = FakePostHog().backfill("Running", backfill_id="theirs")
    op = _backfill_op(fake, factories, adopt=True)
    timeout = {
        "status": "timeout",
        "message": "Stopped waiting.",
        "batch_export_id": EXPORT,
        "backfill_id": "theirs",
    }
    with pytest.raises(PostHogWaitTimeoutError):
        op.execute_complete(_ctx(), timeout, owns_backfill=False)
    assert [s.method for s in fake.sent] == []
    mine = _backfill_op(fake, factories, adopt=False)
    with pytest.raises(PostHogWaitTimeoutError):
        mine.execute_complete(_ctx(), timeout)
    assert [s.method for s in fake.sent][:1] == ["POST"]  # its own backfill is cancelled


def test_the_log_says_who_started_the_backfill(factories: Any) -> None:
    fake = FakePostHog().backfill("Running", "Completed", backfill_id="theirs")
    fake.run_list = [run_row("Completed", backfill_id="theirs")]
    op = _backfill_op(fake, factories, adopt=True)
    with mock.patch.object(type(op), "log", new_callable=mock.PropertyMock) as log:
        op.execute(_ctx())
    said = [c.args[0] % c.args[1:] for c in log.return_value.info.call_args_list]
    assert any(
        "Backfill theirs was started by another task, or an earlier run of this one, not by this task: it "
        "is not cancelled" in line
        for line in said
    )


# -- unpause ----------------------------------------------------------------------------------------------


def _unpause(fake: FakePostHog, **kwargs: Any) -> Any:
    op = PostHogUnpauseBatchExportOperator(task_id="unpause", batch_export_id=EXPORT, **kwargs)
    with_hook(op, fake)
    return op


def test_unpause_with_a_backfill_and_no_known_start_fails_before_any_change() -> None:
    fake = FakePostHog(export=export_row(paused=True, last_paused_at=None))
    with pytest.raises(PostHogConfigError, match=r"no last_paused_at .* Pass backfill_start"):
        _unpause(fake, backfill=True).execute(_ctx())
    assert fake.paths() == [f"batch_exports/{EXPORT}/"]  # one read; no unpause, no backfill


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backfill_start": "2024-01-01T00:00:00+00:00"}, "only used with backfill=True"),
        ({"backfill": True, "backfill_start": "yesterday"}, "backfill_start"),
        ({"backfill": True, "backfill_start": "2999-01-01T00:00:00+00:00"}, "backfill_start"),
    ],
)
def test_a_bad_backfill_start_fails_before_any_request(kwargs: dict[str, Any], message: str) -> None:
    fake = FakePostHog()
    with pytest.raises(PostHogConfigError, match=message):
        _unpause(fake, **kwargs).execute(_ctx())
    assert fake.sent == []


def test_backfill_start_is_templated() -> None:
    assert "backfill_start" in PostHogUnpauseBatchExportOperator.template_fields


# -- retry of a run still running -------------------------------------------------------------------------


def test_retrying_a_run_still_running_fails_naming_its_status_and_posts_nothing() -> None:
    fake = FakePostHog().run("Running")
    op = PostHogRetryRunOperator(
        task_id="retry", batch_export_id=EXPORT, run_id="run-1", poll_interval=0, emit_asset_events=False
    )
    with_hook(op, fake)
    started = time.monotonic()
    with pytest.raises(PostHogError, match="Run run-1 of batch export 0190-export is Running; PostHog would"):
        op.execute(_ctx())
    assert time.monotonic() - started < 5
    assert [s.method for s in fake.sent] == ["GET", "GET"]  # the operator's read, then the retry's
