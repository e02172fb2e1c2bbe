"""What the backfill operator's log says while it waits: the PostHog page of the backfill, and each progress
state once (a heartbeat while nothing changes). Scripted PostHog (``fake_posthog``), injected clock: nothing
sleeps."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from fake_posthog import BACKFILL, EXPORT, FakeHook, FakePostHog, backfill_row, run_row

from airflow_provider_posthog.api.models import Backfill
from airflow_provider_posthog.compat import TaskDeferred
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator

UI = f"https://ph.test/project/1/pipeline/batch-exports/{EXPORT}"


class Clock:
    """``time.time`` and ``time.sleep`` of the operator's module: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _running(finished: int) -> dict[str, Any]:
    progress = {"total_runs": 12, "finished_runs": finished, "progress": finished / 12}
    return backfill_row("Running", progress=progress)


def _hook(backfills: list[dict[str, Any]]) -> FakeHook:
    """``backfills``: what each poll of the backfill answers (the first is also what creating it returns)."""
    fake = FakePostHog(run_list=[run_row("Completed")]).run("Failed")  # the run a retry retries
    fake.backfills[BACKFILL] = list(backfills)
    first = Backfill.from_api(backfills[0])
    hook = FakeHook(fake)
    hook.find_backfill = mock.Mock(return_value=None)  # type: ignore[method-assign]
    hook.create_backfill = mock.Mock(return_value=first)  # type: ignore[method-assign]
    hook.retry_run = mock.Mock(return_value=first)  # type: ignore[method-assign]
    hook.ui_url = mock.Mock(wraps=hook.ui_url)  # type: ignore[method-assign]
    return hook


def _polls(hook: FakeHook) -> int:
    return hook.fake.paths("GET").count(f"batch_exports/{EXPORT}/backfills/{BACKFILL}/")


def _context() -> dict[str, Any]:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = 1, 0
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=0),
        "dag_run": SimpleNamespace(start_date=pendulum.parse("2024-01-01T23:59:00+00:00")),
    }


def _run(op: Any, hook: FakeHook, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Execute ``op`` on the injected clock; return its info lines."""
    op.__dict__["hook"] = hook
    log = mock.MagicMock()
    op._cached_logger = log
    monkeypatch.setattr("airflow_provider_posthog.operators._base.time", Clock())
    try:
        op.execute(_context())
    finally:
        lines = [c.args[0] % c.args[1:] for c in log.info.call_args_list]
    return lines


def _backfill_op(**kwargs: Any) -> PostHogCreateBackfillOperator:
    params: dict[str, Any] = {
        "task_id": "backfill",
        "batch_export_id": EXPORT,
        "start_at": "2024-01-01T00:00:00+00:00",
        "end_at": "2024-01-01T12:00:00+00:00",
        "poll_interval": 60,
        "deferrable": False,
        **kwargs,
    }
    return PostHogCreateBackfillOperator(**params)


def _progress(lines: list[str]) -> list[str]:
    return [line for line in lines if "runs finished" in line]


def test_a_sync_wait_logs_each_progress_state_once(monkeypatch: pytest.MonkeyPatch) -> None:
    polls = [_running(2)] * 4 + [_running(3)] * 2 + [backfill_row("Completed")]
    hook = _hook(polls)
    lines = _run(_backfill_op(), hook, monkeypatch)
    assert _polls(hook) == len(polls)
    assert _progress(lines) == [
        f"Backfill {BACKFILL} is Running (2/12 runs finished).",
        f"Backfill {BACKFILL} is Running (3/12 runs finished).",
    ]


def test_an_unchanged_state_is_repeated_as_a_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Polls at 0, 120, 240, 360 and 480 s: the line at 0, the heartbeat at 360 (>= 300 s after it).
    polls = [_running(2)] * 5 + [backfill_row("Completed")]
    hook = _hook(polls)
    lines = _run(_backfill_op(poll_interval=120), hook, monkeypatch)
    assert _progress(lines) == [
        f"Backfill {BACKFILL} is Running (2/12 runs finished).",
        f"Backfill {BACKFILL} is Running (2/12 runs finished). (unchanged for 6 min)",
    ]


def test_the_log_links_the_backfills_tab_of_what_it_waits_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = _hook([_running(0), backfill_row("Completed")])
    lines = _run(_backfill_op(), hook, monkeypatch)
    link = (
        f"Waiting for backfill {BACKFILL} of batch export {EXPORT}; follow it in PostHog: {UI}?tab=backfills"
    )
    assert link in lines
    assert lines.index(link) < lines.index(f"Backfill {BACKFILL} is Running (0/12 runs finished).")
    assert f"PostHog batch export: {UI}" in lines  # the export itself, as before
    hook.ui_url.assert_any_call(EXPORT, "backfills")


def test_a_retried_run_links_its_backfill_too(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook([_running(0), backfill_row("Completed")])
    op = PostHogRetryRunOperator(
        task_id="retry", batch_export_id=EXPORT, run_id="run-1", poll_interval=1, deferrable=False
    )
    lines = _run(op, hook, monkeypatch)
    assert (
        f"Waiting for backfill {BACKFILL} of batch export {EXPORT}; follow it in PostHog: {UI}?tab=backfills"
        in lines
    )


def test_a_deferring_operator_logs_the_link_before_it_defers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = _hook([_running(1), _running(1)])
    log = mock.MagicMock()
    op = _backfill_op(deferrable=True)
    op.__dict__["hook"] = hook
    op._cached_logger = log
    with pytest.raises(TaskDeferred):
        op.execute(_context())
    lines = [c.args[0] % c.args[1:] for c in log.info.call_args_list]
    assert any(line.endswith("?tab=backfills") and line.startswith("Waiting for backfill") for line in lines)


def test_no_link_without_a_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook([_running(0)])
    lines = _run(_backfill_op(wait_for_completion=False), hook, monkeypatch)
    assert not any(line.startswith("Waiting for") for line in lines)
