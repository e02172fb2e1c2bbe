"""PostHogRetryFailedRunsOperator, and the backfill operator's Airflow retry of only the failed runs, against
a scripted stateful PostHog (no network, no DB)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from fake_posthog import with_hook
from retry_server import EXPORT, RetryServer, hour

from airflow_provider_posthog.api.models import Backfill
from airflow_provider_posthog.compat import TaskDeferred
from airflow_provider_posthog.exceptions import PostHogConfigError, PostHogError, PostHogJobFailedError
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator
from airflow_provider_posthog.operators.retry_failed import PostHogRetryFailedRunsOperator
from airflow_provider_posthog.triggers.batch_export import PostHogRetriedRunsTrigger

ROUND_START = "2024-01-31T23:59:00+00:00"  # the server's objects are created from 2024-02-01T00:00:01Z


def _ctx(try_number: int = 1, max_tries: int = 1, retries: int = 1) -> Any:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, max_tries
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=retries),
        "dag_run": SimpleNamespace(start_date=pendulum.parse(ROUND_START)),
    }


def _pushed(context: Any) -> dict[str, Any]:
    return {c.kwargs["key"]: c.kwargs["value"] for c in context["ti"].xcom_push.call_args_list}


def _retry_op(server: RetryServer, **kwargs: Any) -> PostHogRetryFailedRunsOperator:
    params: dict[str, Any] = {"poll_interval": 0, "deferrable": False, **kwargs}
    op = PostHogRetryFailedRunsOperator(task_id="retry", batch_export_id=EXPORT, **params)
    with_hook(op, server)  # type: ignore[arg-type]  # duck-typed: answers every request
    return op


def _backfill_with(server: RetryServer, *statuses: str) -> str:
    backfill_id = server.backfill(0, len(statuses) - 1)
    for n, status in enumerate(statuses):
        server.run(n, status, backfill=backfill_id)
    return backfill_id


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Give exactly one of backfill_id, start_at and end_at together, or run_ids"),
        ({"backfill_id": "b", "run_ids": ["r"]}, r"\(got backfill_id, run_ids\)"),
        ({"start_at": "2024-01-01T00:00:00+00:00"}, "end_at is required with start_at"),
        ({"run_ids": "[1, 2]"}, "run_ids holds 1, which is not a run id"),
        ({"run_ids": []}, "Give exactly one of"),
        ({"start_at": "2024-01-01T00:00:00", "end_at": "2024-01-02T00:00:00+00:00"}, "naive"),
        ({"backfill_id": "b", "poll_interval": "soon"}, "poll_interval='soon' is not a number"),
    ],
)
def test_bad_arguments_fail_before_any_request(kwargs: dict[str, Any], message: str) -> None:
    server = RetryServer()
    op = _retry_op(server, **kwargs)
    with pytest.raises(PostHogConfigError, match=message):
        op.execute(_ctx())
    assert server.sent == []


def test_cancel_on_kill_is_refused_when_the_task_is_built() -> None:
    with pytest.raises(ValueError, match="has no cancel_on_kill"):
        PostHogRetryFailedRunsOperator(
            task_id="r", batch_export_id=EXPORT, backfill_id="b", cancel_on_kill=True
        )


def test_run_ids_accept_a_comma_separated_string() -> None:
    server = RetryServer()
    first, second = server.run(0, "Failed"), server.run(1, "Cancelled")
    op = _retry_op(server, run_ids=f"{first}, {second}")
    assert len(op.execute(_ctx())) == 2
    assert len(server.posts()) == 2


# ------------------------------------------------------------------------------------------- the operator


def test_retries_a_backfills_failed_runs_and_waits_for_them() -> None:
    server = RetryServer()
    backfill_id = _backfill_with(server, "Completed", "Failed", "TimedOut", "Completed")
    context = _ctx()
    backfill_ids = _retry_op(server, backfill_id=backfill_id).execute(context)
    assert len(backfill_ids) == 2 and set(backfill_ids) <= set(server.backfills)
    assert [p.split("/")[3] for p in server.posts()] == ["run-1", "run-2"]  # the Failed and the TimedOut
    pushed = _pushed(context)
    assert pushed["retried_run_ids"] == ["run-1", "run-2"]
    assert pushed["retry_backfill_ids"] == backfill_ids and pushed["backfill_id"] == backfill_id


def test_fails_when_a_retry_fails_again() -> None:
    server = RetryServer()
    server.run(0, "Failed")
    server.retry_outcomes = ["Failed"]
    op = _retry_op(server, start_at=hour(0)[0], end_at=hour(1)[1])
    with pytest.raises(PostHogJobFailedError, match="failed again"):
        op.execute(_ctx())


def test_nothing_to_retry_succeeds_without_a_post() -> None:
    server = RetryServer()
    server.run(0, "Completed")
    assert _retry_op(server, start_at=hour(0)[0], end_at=hour(1)[1]).execute(_ctx()) == []
    assert server.posts() == []


def test_a_cancelled_backfill_with_unrun_intervals_fails_before_any_retry() -> None:
    server = RetryServer()
    backfill_id = server.backfill(0, 2, status="Cancelled")
    server.run(0, "Failed", backfill=backfill_id)
    with pytest.raises(PostHogError, match="no run at all for 2 of its intervals"):
        _retry_op(server, backfill_id=backfill_id).execute(_ctx())
    assert server.posts() == []


def test_deferred_wait_resumes_to_the_same_result() -> None:
    server = RetryServer()
    failed = server.run(0, "Failed")
    server.retry_outcomes = ["Running"]
    op = _retry_op(server, run_ids=[failed], deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(_ctx())
    trigger = deferred.value.trigger
    assert isinstance(trigger, PostHogRetriedRunsTrigger)
    path, kwargs = trigger.serialize()
    assert path.endswith("PostHogRetriedRunsTrigger") and kwargs["cancel_on_kill"] is False
    rebuilt = PostHogRetriedRunsTrigger(**kwargs)
    assert rebuilt.job == trigger.job and rebuilt.job.intervals[0].replaces == failed
    resume = deferred.value.kwargs or {}
    event = {"status": "success", "message": "done", "batch_export_id": EXPORT, "failed_runs": []}
    result = op.execute_complete(_ctx(), event, **resume)
    assert result == resume["backfill_ids"] and len(result) == 1


# ------------------------------------------------------------------ the backfill operator's Airflow retry


def _backfill_op(server: RetryServer, found: str | None, **kwargs: Any) -> tuple[Any, mock.Mock]:
    op = PostHogCreateBackfillOperator(
        task_id="backfill",
        batch_export_id=EXPORT,
        start_at=hour(0)[0],
        end_at=hour(3)[1],
        poll_interval=0,
        deferrable=False,
        **kwargs,
    )

    def create(*args: Any) -> Backfill:
        """PostHog exports the whole range again, every run completing."""
        fresh = _backfill_with(server, "Completed", "Completed", "Completed", "Completed")
        return Backfill.from_api(server.backfills[fresh])

    create_backfill = mock.Mock(side_effect=create)
    row = None if found is None else Backfill.from_api(server.backfills[found])
    with_hook(op, server, find_backfill=mock.Mock(return_value=row), create_backfill=create_backfill)  # type: ignore[arg-type]
    return op, create_backfill


def test_an_airflow_retry_retries_only_the_failed_runs_of_its_backfill() -> None:
    server = RetryServer()
    backfill_id = _backfill_with(server, "Completed", "Failed", "Failed", "Failed")
    op, create = _backfill_op(server, backfill_id)
    context = _ctx(try_number=2)
    assert op.execute(context) == backfill_id
    create.assert_not_called()
    assert len(server.posts()) == 3 and all(p.endswith("/retry/") for p in server.posts())
    assert len(_pushed(context)["retry_backfill_ids"]) == 3


@pytest.mark.parametrize(
    ("context", "kwargs"),
    [
        (_ctx(try_number=3, max_tries=3, retries=1), {}),  # a cleared task: its first try of a new round
        (_ctx(try_number=2), {"retry_failed_runs": False}),
        (_ctx(try_number=2), {"reattach": "never"}),
    ],
    ids=["cleared", "option-off", "reattach-never"],
)
def test_otherwise_the_whole_range_is_exported_again(context: Any, kwargs: dict[str, Any]) -> None:
    server = RetryServer()
    backfill_id = _backfill_with(server, "Completed", "Failed", "Completed", "Completed")
    op, create = _backfill_op(server, backfill_id, **kwargs)
    assert op.execute(context) != backfill_id  # the new backfill's id
    create.assert_called_once()
    assert server.posts() == []


def test_a_backfill_stopped_before_some_intervals_is_exported_again() -> None:
    server = RetryServer()
    backfill_id = server.backfill(0, 3, status="Completed")
    server.run(0, "Failed", backfill=backfill_id)  # intervals 1-3 never ran
    op, create = _backfill_op(server, backfill_id)
    assert op.execute(_ctx(try_number=2)) != backfill_id
    create.assert_called_once()
    assert server.posts() == []
