"""Progress lines: a change is logged at once, the same state again only as a heartbeat (injected clock)."""

from __future__ import annotations

from unittest import mock

from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.tasks.decisions import Decision
from airflow_provider_posthog.tasks.waiting import PROGRESS_HEARTBEAT_SECONDS, ProgressLog, Wait

TWO = Decision(Outcome.RUNNING, "Backfill b is Running (2/12 runs finished).", "Running")
THREE = Decision(Outcome.RUNNING, "Backfill b is Running (3/12 runs finished).", "Running")
T0 = 1_700_000_000.0


def _wait(**kwargs: float) -> Wait:
    return Wait(
        what="backfill b of batch export e", batch_export_id="e", backfill_id="b", poll_interval=10, **kwargs
    )


def test_the_heartbeat_is_a_few_minutes() -> None:
    assert PROGRESS_HEARTBEAT_SECONDS == 300.0


def test_three_polls_at_the_same_progress_log_it_once_and_a_change_logs_again() -> None:
    wait = _wait()
    lines = [wait.step(d, T0 + 10 * i).progress for i, d in enumerate([TWO, TWO, TWO, THREE, THREE])]
    assert lines == [TWO.message, None, None, THREE.message, None]


def test_the_unchanged_state_is_repeated_once_per_heartbeat() -> None:
    wait = _wait()
    assert wait.step(TWO, T0).progress == TWO.message
    assert wait.step(TWO, T0 + PROGRESS_HEARTBEAT_SECONDS - 1).progress is None
    beat = wait.step(TWO, T0 + PROGRESS_HEARTBEAT_SECONDS).progress
    assert beat == f"{TWO.message} (unchanged for 5 min)"
    assert wait.step(TWO, T0 + PROGRESS_HEARTBEAT_SECONDS + 60).progress is None
    # The next heartbeat counts from the last line; the duration from when the state first appeared.
    assert (
        wait.step(TWO, T0 + 2 * PROGRESS_HEARTBEAT_SECONDS).progress
        == f"{TWO.message} (unchanged for 10 min)"
    )
    # A change resets both.
    assert wait.step(THREE, T0 + 2 * PROGRESS_HEARTBEAT_SECONDS + 10).progress == THREE.message


def test_a_failed_poll_logs_nothing_and_does_not_reset_the_state() -> None:
    wait = _wait()
    assert wait.step(TWO, T0).progress == TWO.message
    assert wait.step(None, T0 + 10).progress is None
    assert wait.step(TWO, T0 + 20).progress is None


def test_a_short_heartbeat_counts_seconds() -> None:
    log = ProgressLog(heartbeat=30)
    assert log.line("x", T0) == "x"
    assert log.line("x", T0 + 45) == "x (unchanged for 45 s)"


def test_a_timeout_step_still_carries_a_changed_state() -> None:
    wait = _wait(end_time=T0 + 15)
    assert wait.step(TWO, T0).progress == TWO.message
    step = wait.step(THREE, T0 + 20)
    assert step.event is not None and step.event["status"] == "timeout" and step.progress == THREE.message


def test_a_shared_progress_log_spans_waits() -> None:
    """A poking sensor builds a new ``Wait`` each poke and hands it the same log."""
    shared = ProgressLog()
    first, second = _wait(), _wait()
    first.progress_log = second.progress_log = shared
    assert first.step(TWO, T0).progress == TWO.message
    assert second.step(TWO, T0 + 10).progress is None


def test_the_link_names_the_tab_of_what_is_waited_on() -> None:
    log = mock.Mock()
    urls: list[tuple[str, str]] = []

    def ui_url(export_id: str, tab: str) -> str:
        urls.append((export_id, tab))
        return f"https://ph.test/project/1/pipeline/batch-exports/{export_id}?tab={tab}"

    _wait().log_link(log, ui_url)
    run_wait = Wait(what="run r of batch export e", batch_export_id="e", run_id="r")
    run_wait.log_link(log, ui_url)
    interval_wait = Wait(what="the runs of batch export e covering [a, b)", batch_export_id="e")
    assert interval_wait.ui_tab == "runs"
    assert urls == [("e", "backfills"), ("e", "runs")]
    lines = [c.args[0] % c.args[1:] for c in log.info.call_args_list]
    assert lines == [
        "Waiting for backfill b of batch export e; follow it in PostHog: "
        "https://ph.test/project/1/pipeline/batch-exports/e?tab=backfills",
        "Waiting for run r of batch export e; follow it in PostHog: "
        "https://ph.test/project/1/pipeline/batch-exports/e?tab=runs",
    ]


def test_a_link_that_cannot_be_built_only_warns() -> None:
    log = mock.Mock()

    def broken(export_id: str, tab: str) -> str:
        raise ValueError("no host")

    _wait().log_link(log, broken)
    log.info.assert_not_called()
    log.warning.assert_called_once()
