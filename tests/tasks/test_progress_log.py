"""Progress lines: a change is logged at once, the same state again only as a heartbeat (injected clock)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from fake_posthog import http_error

from airflow_provider_posthog.api.decisions import Decision
from airflow_provider_posthog.api.jobs import BackfillJob, IntervalJob, RunJob
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks.waiting import PROGRESS_HEARTBEAT_SECONDS, ProgressLog, Step, Wait

TWO = Decision(Outcome.RUNNING, "Backfill b is Running (2/12 runs finished).", "Running")
THREE = Decision(Outcome.RUNNING, "Backfill b is Running (3/12 runs finished).", "Running")
T0 = 1_700_000_000.0


def _wait(**kwargs: float) -> Wait:
    return Wait(job=BackfillJob("e", "b"), poll_interval=10, **kwargs)


def progress(step: Step) -> str | None:
    """The one line a running poll logs, or ``None``."""
    assert len(step.lines) <= 1
    return step.lines[0][1] if step.lines else None


def test_the_heartbeat_is_a_few_minutes() -> None:
    assert PROGRESS_HEARTBEAT_SECONDS == 300.0


def test_three_polls_at_the_same_progress_log_it_once_and_a_change_logs_again() -> None:
    wait = _wait()
    lines = [progress(wait.step(d, T0 + 10 * i)) for i, d in enumerate([TWO, TWO, TWO, THREE, THREE])]
    assert lines == [TWO.message, None, None, THREE.message, None]


def test_the_unchanged_state_is_repeated_once_per_heartbeat() -> None:
    wait = _wait()
    assert progress(wait.step(TWO, T0)) == TWO.message
    assert progress(wait.step(TWO, T0 + PROGRESS_HEARTBEAT_SECONDS - 1)) is None
    beat = progress(wait.step(TWO, T0 + PROGRESS_HEARTBEAT_SECONDS))
    assert beat == f"{TWO.message} (unchanged for 5 min)"
    assert progress(wait.step(TWO, T0 + PROGRESS_HEARTBEAT_SECONDS + 60)) is None
    # The next heartbeat counts from the last line; the duration from when the state first appeared.
    assert (
        progress(wait.step(TWO, T0 + 2 * PROGRESS_HEARTBEAT_SECONDS))
        == f"{TWO.message} (unchanged for 10 min)"
    )
    # A change resets both.
    assert progress(wait.step(THREE, T0 + 2 * PROGRESS_HEARTBEAT_SECONDS + 10)) == THREE.message


def test_progress_is_said_again_after_an_outage() -> None:
    wait = _wait()
    assert progress(wait.step(TWO, T0)) == TWO.message
    assert wait.step(http_error(503), T0 + 10).lines  # the outage is logged instead
    back = wait.step(TWO, T0 + 20)
    assert [text for _, text in back.lines] == ["PostHog answered again after 10 s.", TWO.message]


def test_a_short_heartbeat_counts_seconds() -> None:
    log = ProgressLog(heartbeat=30)
    assert log.line("x", T0) == "x"
    assert log.line("x", T0 + 45) == "x (unchanged for 45 s)"


def test_a_timeout_step_still_carries_a_changed_state() -> None:
    wait = _wait(end_time=T0 + 15)
    assert progress(wait.step(TWO, T0)) == TWO.message
    step = wait.step(THREE, T0 + 20)
    assert step.event is not None and step.event["status"] == "timeout" and progress(step) == THREE.message


def test_a_shared_progress_log_spans_waits() -> None:
    """A poking sensor builds a new ``Wait`` each poke and hands it the same log."""
    shared = ProgressLog()
    first, second = _wait(), _wait()
    first.progress_log = second.progress_log = shared
    assert progress(first.step(TWO, T0)) == TWO.message
    assert progress(second.step(TWO, T0 + 10)) is None


def test_the_link_names_the_tab_of_what_is_waited_on() -> None:
    log = mock.Mock()
    urls: list[tuple[str, str]] = []

    def ui_url(export_id: str, tab: str) -> str:
        urls.append((export_id, tab))
        return f"https://ph.test/project/1/pipeline/batch-exports/{export_id}?tab={tab}"

    _wait().log_link(log, ui_url)
    Wait(job=RunJob("e", "r")).log_link(log, ui_url)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert Wait(job=IntervalJob("e", start, start + dt.timedelta(hours=1))).ui_tab == "runs"
    assert urls == [("e", "backfills"), ("e", "runs")]
    lines = [c.args[0] % c.args[1:] for c in log.info.call_args_list]
    assert lines == [
        "Waiting for backfill b of batch export e; follow it in PostHog: "
        "https://ph.test/project/1/pipeline/batch-exports/e?tab=backfills",
        "Waiting for run r of batch export e; follow it in PostHog: "
        "https://ph.test/project/1/pipeline/batch-exports/e?tab=runs",
    ]


def test_a_link_that_cannot_be_built_raises_its_configuration_error_once() -> None:
    """A broken connection is the task's error, not a warning about a URL logged before the same error."""
    log = mock.Mock()
    broken = PostHogConfigError("The PostHog connection has no host.")

    def ui_url(export_id: str, tab: str) -> str:
        raise broken

    with pytest.raises(PostHogConfigError) as raised:
        _wait().log_link(log, ui_url)
    assert raised.value is broken
    assert log.method_calls == []
