"""A notifier that formats a PostHog task's summary XCom and hands the text on.

Built on Airflow's own notifier interface, so it goes wherever a notifier goes (``on_success_callback``,
``on_failure_callback``), and it depends on no other provider: the text is passed to a callable, or to any
other notifier (Slack, SMTP, ...) whose templates read it as ``{{ posthog_message }}`` (the summary dict is
``{{ posthog_summary }}``). Nothing happens when the DAG file is parsed: the constructor only stores its
arguments, and the XCom is read when the callback runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.notifier import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The XCom key the PostHog waiting tasks push their summary under (``tasks.summary.SUMMARY_XCOM_KEY``).
SUMMARY_KEY = "summary"
#: The context keys a wrapped notifier's templates can read.
MESSAGE_CONTEXT_KEY = "posthog_message"
SUMMARY_CONTEXT_KEY = "posthog_summary"
#: How many failed or incomplete runs the text names.
NAMED_RUNS = 5

_OUTCOMES = {
    "success": "completed",
    "failed": "failed",
    "timeout": "was not waited for to the end (deadline passed)",
    "error": "could not be checked",
}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _window(run: Mapping[str, Any]) -> str:
    return f"[{run.get('data_interval_start')}, {run.get('data_interval_end')})"


def format_summary(summary: Mapping[str, Any], *, title: str | None = None) -> str:
    """The summary XCom of a PostHog task as a short plain-text message (first line: the outcome)."""
    what = (
        f"backfill {summary['backfill_id']}"
        if summary.get("backfill_id")
        else f"run {summary['run_id']}"
        if summary.get("run_id")
        else "runs"
    )
    outcome = _OUTCOMES.get(str(summary.get("status")), f"ended with status {summary.get('status')!r}")
    lines = [
        f"{title or 'PostHog export'}: {what} of batch export {summary.get('batch_export_id')} {outcome}."
    ]
    by_status = summary.get("runs_by_status") or {}
    if by_status:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        lines.append(f"Runs: {summary.get('runs_total', sum(by_status.values()))} ({counts}).")
    if summary.get("data_interval_start") or summary.get("data_interval_end"):
        lines.append(f"Data interval: {_window(summary)}.")
    records = f"Records exported: {summary.get('records_exported', 0)}"
    expected = summary.get("records_expected")
    if expected is not None:
        records += f" of {expected} counted by PostHog"
    size = summary.get("bytes_exported")
    if size is not None:
        records += f" ({_size(int(size))})"
    lines.append(records + ".")
    incomplete: Sequence[Mapping[str, Any]] = summary.get("incomplete_runs") or []
    if incomplete:
        lines.append(f"{len(incomplete)} run(s) exported fewer records than PostHog counted:")
        lines += [
            f"  run {r.get('id')} {_window(r)}: "
            f"{r.get('records_completed')} of {r.get('records_total_count')}"
            for r in incomplete[:NAMED_RUNS]
        ]
    failed: Sequence[Mapping[str, Any]] = summary.get("failed_runs") or []
    if failed:
        lines.append(f"{len(failed)} run(s) did not complete:")
        lines += [
            f"  run {r.get('id')} {_window(r)}: {r.get('status')}"
            + (f": {r.get('latest_error')}" if r.get("latest_error") else "")
            for r in failed[:NAMED_RUNS]
        ]
    if summary.get("duration_seconds") is not None:
        lines.append(f"Waited {_duration(float(summary['duration_seconds']))}.")
    if summary.get("url"):
        lines.append(str(summary["url"]))
    return "\n".join(lines)


def format_no_summary(context: Context) -> str:
    """The message when the task pushed no summary: it failed before PostHog reported an outcome (a wrong
    argument or connection, an unknown id) or it does not wait."""
    ti = context.get("ti")
    task = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}"
    error = context.get("exception")
    if error is not None:
        return f"PostHog task {task} failed before PostHog reported an outcome: {error}"
    return f"PostHog task {task} finished without a PostHog summary (it did not wait for an export)."


class PostHogSummaryNotifier(BaseNotifier):
    """Send the summary of a PostHog waiting task, on success or failure, through ``send``.

    :param send: where the text goes. ``None`` (default): the task's log (INFO on success, WARNING
        otherwise). Another notifier (an ``airflow.sdk.bases.notifier.BaseNotifier``, e.g. the Slack or SMTP
        provider's): it is called with the task's context plus ``posthog_message`` (the text) and
        ``posthog_summary`` (the dict), which its templates read, e.g. ``text="{{ posthog_message }}"``.
        Any other callable: called as ``send(message, summary)`` (``summary`` is ``None`` when the task
        pushed none).
    :param title: the first words of the message (templated; default ``"PostHog export"``).
    :param task_id: the task whose summary to read (default: the task the callback runs for).
    """

    template_fields: Sequence[str] = ("title",)

    def __init__(
        self,
        *,
        send: BaseNotifier | Callable[[str, dict[str, Any] | None], object] | None = None,
        title: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__()
        if send is not None and not callable(send):
            raise TypeError(f"send must be a notifier or a callable, not {type(send).__name__}")
        self.send = send
        self.title = title
        self.task_id = task_id

    def summary(self, context: Context) -> dict[str, Any] | None:
        """The summary XCom of ``task_id`` (or of the callback's task) in this DAG run, if it pushed one."""
        ti = context.get("ti")
        if ti is None:
            return None
        value = ti.xcom_pull(task_ids=self.task_id or ti.task_id, key=SUMMARY_KEY)
        return dict(value) if isinstance(value, Mapping) else None

    def notify(self, context: Context) -> None:
        summary = self.summary(context)
        message = format_no_summary(context) if summary is None else format_summary(summary, title=self.title)
        if self.send is None:
            succeeded = (
                summary is not None
                and summary.get("status") == "success"
                and summary.get("complete") is not False
            )
            (self.log.info if succeeded else self.log.warning)("%s", message)
        elif isinstance(self.send, BaseNotifier):
            context[MESSAGE_CONTEXT_KEY] = message  # type: ignore[literal-required]
            context[SUMMARY_CONTEXT_KEY] = summary  # type: ignore[literal-required]
            self.send(context)
        else:
            self.send(message, summary)
