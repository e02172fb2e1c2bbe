"""``PostHogSummaryNotifier``: the summary XCom as a message, handed to the log, a callable or another
notifier (whose templates read it), through Airflow's own notifier interface."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.bases.notifier import BaseNotifier

from airflow_provider_posthog.notifications.posthog import (
    PostHogSummaryNotifier,
    format_summary,
)

SUMMARY: dict[str, Any] = {
    "status": "success",
    "message": "Backfill bf completed: 2 run(s), 180 record(s) exported.",
    "batch_export_id": "exp",
    "backfill_id": "bf",
    "run_id": None,
    "run_ids": ["r0", "r1"],
    "data_interval_start": "2026-01-05T10:00:00+00:00",
    "data_interval_end": "2026-01-05T12:00:00+00:00",
    "runs_total": 2,
    "runs_by_status": {"Completed": 2},
    "records_exported": 180,
    "records_expected": 200,
    "bytes_exported": 92160,
    "complete": False,
    "completeness": "warn",
    "incomplete_runs": [
        {
            "id": "r1",
            "data_interval_start": "2026-01-05T11:00:00+00:00",
            "data_interval_end": "2026-01-05T12:00:00+00:00",
            "records_completed": 80,
            "records_total_count": 100,
        }
    ],
    "failed_runs": [],
    "started_at": "2026-01-05T12:03:10+00:00",
    "finished_at": "2026-01-05T12:05:41+00:00",
    "duration_seconds": 151.0,
    "url": "https://us.posthog.com/project/1/pipeline/batch-exports/exp?tab=backfills",
}


def _context(summary: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    ti = mock.Mock(dag_id="d", task_id="backfill")
    ti.xcom_pull.return_value = summary
    return {"ti": ti, **extra}


def test_the_message_says_outcome_runs_records_loss_duration_and_link() -> None:
    text = format_summary(SUMMARY, title="Nightly export")
    lines = text.splitlines()
    assert lines[0] == "Nightly export: backfill bf of batch export exp completed."
    assert "Runs: 2 (2 Completed)." in lines
    assert "Records exported: 180 of 200 counted by PostHog (90.0 KB)." in lines
    assert "  run r1 [2026-01-05T11:00:00+00:00, 2026-01-05T12:00:00+00:00): 80 of 100" in lines
    assert "Waited 2 min 31 s." in lines
    assert lines[-1] == SUMMARY["url"]


def test_a_failure_message_names_the_failed_runs_and_their_errors() -> None:
    failed = {
        **SUMMARY,
        "status": "failed",
        "runs_by_status": {"Completed": 1, "Failed": 1},
        "records_expected": None,
        "bytes_exported": None,
        "incomplete_runs": [],
        "failed_runs": [{"id": "r1", "status": "Failed", "latest_error": "S3 AccessDenied"}],
    }
    text = format_summary(failed)
    assert text.splitlines()[0] == "PostHog export: backfill bf of batch export exp failed."
    assert "Records exported: 180." in text  # no expected count claimed
    assert "run r1 [None, None): Failed: S3 AccessDenied" in text


def _logged_level(capfd: pytest.CaptureFixture[str]) -> str:
    """The level of the notifier's line in the task log (Airflow's structured log on stdout)."""
    out = capfd.readouterr().out
    (line,) = [ln for ln in out.splitlines() if "batch export exp" in ln]
    match = re.search(r"\[(\w+)\s*\]", line)
    assert match, line
    return match.group(1)


def test_by_default_it_logs_a_warning_for_an_incomplete_export(capfd: pytest.CaptureFixture[str]) -> None:
    PostHogSummaryNotifier()(_context(SUMMARY))
    assert _logged_level(capfd) == "warning"


def test_a_complete_success_is_logged_at_info(capfd: pytest.CaptureFixture[str]) -> None:
    fine = {**SUMMARY, "complete": True, "incomplete_runs": [], "records_exported": 200}
    PostHogSummaryNotifier()(_context(fine))
    assert _logged_level(capfd) == "info"


def test_it_reads_the_callbacks_task_or_the_one_named() -> None:
    context = _context(SUMMARY)
    PostHogSummaryNotifier(send=lambda m, s: None)(context)
    context["ti"].xcom_pull.assert_called_with(task_ids="backfill", key="summary")
    PostHogSummaryNotifier(send=lambda m, s: None, task_id="other")(context)
    context["ti"].xcom_pull.assert_called_with(task_ids="other", key="summary")


def test_a_callable_gets_the_message_and_the_summary() -> None:
    got: list[tuple[str, Any]] = []
    PostHogSummaryNotifier(send=lambda message, summary: got.append((message, summary)))(_context(SUMMARY))
    ((message, summary),) = got
    assert message.startswith("PostHog export: backfill bf") and summary == SUMMARY


class Recording(BaseNotifier):
    """Stands in for a provider's notifier (Slack, SMTP): a templated field read from the context."""

    template_fields = ("text",)

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.sent: list[str] = []

    def notify(self, context: Any) -> None:
        self.sent.append(self.text)


def test_another_notifier_renders_the_message_and_summary_in_its_templates() -> None:
    target = Recording(text="{{ posthog_message }} | {{ posthog_summary.records_expected }}")
    PostHogSummaryNotifier(send=target, title="PostHog")(_context(SUMMARY))
    (sent,) = target.sent
    assert sent.startswith("PostHog: backfill bf of batch export exp completed.")
    assert sent.endswith(" | 200")


def test_without_a_summary_it_reports_the_tasks_exception() -> None:
    got: list[tuple[str, Any]] = []
    context = _context(None, exception=ValueError("batch_export_id is required."))
    PostHogSummaryNotifier(send=lambda m, s: got.append((m, s)))(context)
    assert got == [
        (
            "PostHog task d.backfill failed before PostHog reported an outcome: batch_export_id is required.",
            None,
        )
    ]


def test_send_must_be_callable() -> None:
    with pytest.raises(TypeError, match="send must be a notifier or a callable"):
        PostHogSummaryNotifier(send="#data")  # type: ignore[arg-type]
