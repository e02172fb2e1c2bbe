"""Waiting on PostHog: the one place that turns remote state into an outcome, for every waiting path.

Operators (sync poll loop), sensors (poke) and triggers (deferred poll) all call the ``decide_*`` functions
here and speak the same event dict (``make_event``); tasks resuming from a trigger run ``validate_event``
first.
Nothing here does I/O or imports Airflow's runtime, so the triggerer and the worker share it cheaply.

Event schema::

    {"status": "success" | "failed" | "timeout" | "error",
     "message": str,
     "batch_export_id": str,
     "backfill_id": str | None, "run_id": str | None,
     "remote_status": str | None,          # the backfill's or run's PostHog status, when known
     "failed_runs": [run summary, ...],    # only for "failed"
     "runs_completed": int, "records_completed": int}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.statuses import Outcome, backfill_outcome, run_outcome
from airflow_provider_posthog.exceptions import PostHogConfigError, PostHogTriggerError

if TYPE_CHECKING:
    from airflow_provider_posthog.api.models import Backfill, BatchExportRun

SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
ERROR = "error"
EVENT_STATUSES: frozenset[str] = frozenset({SUCCESS, FAILED, TIMEOUT, ERROR})

#: How many lines of a failed run's logs a failure message quotes.
LOG_TAIL_LINES = 10


# ------------------------------------------------------------------------------------------------ decisions


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a poll found: keep waiting, or a terminal outcome with the facts a message needs."""

    outcome: Outcome
    message: str
    remote_status: str | None = None
    failed_runs: tuple[dict[str, Any], ...] = ()
    runs_completed: int = 0
    records_completed: int = 0

    @property
    def done(self) -> bool:
        return self.outcome is not Outcome.RUNNING


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def run_summary(run: BatchExportRun) -> dict[str, Any]:
    """Plain-value description of a run for events, XCom and messages."""
    return {
        "id": run.id,
        "status": run.status,
        "latest_error": run.latest_error,
        "data_interval_start": _iso(run.data_interval_start),
        "data_interval_end": _iso(run.data_interval_end),
        "records_completed": run.records_completed,
    }


def _count(runs: Iterable[BatchExportRun]) -> tuple[int, int]:
    completed = [r for r in runs if run_outcome(r.status) is Outcome.SUCCEEDED]
    return len(completed), sum(r.records_completed or 0 for r in completed)


def decide_backfill(backfill: Backfill, runs: Sequence[BatchExportRun] | None = None) -> Decision:
    """Outcome of a backfill, given its runs once it is terminal.

    A backfill succeeds only when its status is an explicit success **and** none of its runs failed:
    PostHog marks a backfill ``Completed`` even when some of its runs failed, and the user asked for every
    run to complete. Pass every run of the backfill (``list_backfill_runs``), including a first run that
    PostHog aligned down to before ``start_at``.
    """
    outcome = backfill_outcome(backfill.status)
    own_runs = [r for r in runs or () if r.backfill_id == backfill.id]
    n_done, records = _count(own_runs)
    if outcome is Outcome.RUNNING:
        progress = backfill.progress
        detail = f" ({progress.finished_runs}/{progress.total_runs} runs finished)" if progress else ""
        return Decision(
            Outcome.RUNNING, f"Backfill {backfill.id} is {backfill.status}{detail}.", backfill.status
        )
    failed = tuple(run_summary(r) for r in own_runs if run_outcome(r.status) is Outcome.FAILED)
    if outcome is Outcome.SUCCEEDED and not failed:
        return Decision(
            Outcome.SUCCEEDED,
            f"Backfill {backfill.id} completed: {n_done} run(s), {records} record(s) exported.",
            backfill.status,
            runs_completed=n_done,
            records_completed=records,
        )
    if outcome is Outcome.SUCCEEDED:
        message = f"Backfill {backfill.id} is {backfill.status} but {len(failed)} of its run(s) failed."
    else:
        message = f"Backfill {backfill.id} ended with status {backfill.status!r}."
    return Decision(Outcome.FAILED, message, backfill.status, failed, n_done, records)


def decide_run(run: BatchExportRun) -> Decision:
    """Outcome of a single run (success only on an explicit success status)."""
    outcome = run_outcome(run.status)
    if outcome is Outcome.RUNNING:
        return Decision(Outcome.RUNNING, f"Run {run.id} is {run.status}.", run.status)
    if outcome is Outcome.SUCCEEDED:
        records = run.records_completed or 0
        return Decision(
            Outcome.SUCCEEDED,
            f"Run {run.id} completed: {records} record(s) exported.",
            run.status,
            runs_completed=1,
            records_completed=records,
        )
    return Decision(
        Outcome.FAILED, f"Run {run.id} ended with status {run.status!r}.", run.status, (run_summary(run),)
    )


def decide_interval(runs: Sequence[BatchExportRun], start: dt.datetime, end: dt.datetime) -> Decision:
    """Outcome of "every run covering ``[start, end)``".

    Runs are grouped by their own interval and only the newest run of each interval counts, so a failed
    scheduled run that was retried and then completed does not fail the wait. The interval is done when the
    counted runs cover ``[start, end)`` without a gap and all of them completed; any failed one fails it.
    """
    latest: dict[tuple[dt.datetime, dt.datetime], BatchExportRun] = {}
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    for run in runs:
        if run.data_interval_start is None or run.data_interval_end is None:
            continue
        if run.data_interval_start < start or run.data_interval_end > end:
            continue
        key = (run.data_interval_start, run.data_interval_end)
        current = latest.get(key)
        if current is None or (run.created_at or floor) >= (current.created_at or floor):
            latest[key] = run
    counted = sorted(latest.values(), key=lambda r: (r.data_interval_start, r.data_interval_end))
    failed = tuple(run_summary(r) for r in counted if run_outcome(r.status) is Outcome.FAILED)
    n_done, records = _count(counted)
    window = f"[{start.isoformat()}, {end.isoformat()})"
    if failed:
        return Decision(
            Outcome.FAILED,
            f"{len(failed)} run(s) covering {window} failed.",
            failed[0]["status"],
            failed,
            n_done,
            records,
        )
    running = [r for r in counted if run_outcome(r.status) is Outcome.RUNNING]
    if running:
        return Decision(
            Outcome.RUNNING, f"{len(running)} run(s) covering {window} still running.", running[0].status
        )
    cursor = start
    for run in counted:
        assert run.data_interval_start is not None and run.data_interval_end is not None
        if run.data_interval_start > cursor:
            break
        cursor = max(cursor, run.data_interval_end)
    if cursor < end:
        return Decision(
            Outcome.RUNNING,
            f"Runs covering {window} have not all appeared yet (covered up to {cursor.isoformat()}).",
        )
    return Decision(
        Outcome.SUCCEEDED,
        f"All {n_done} run(s) covering {window} completed: {records} record(s) exported.",
        "Completed",
        runs_completed=n_done,
        records_completed=records,
    )


# --------------------------------------------------------------------------------------------------- events


def make_event(
    status: str,
    message: str,
    *,
    batch_export_id: str,
    backfill_id: str | None = None,
    run_id: str | None = None,
    decision: Decision | None = None,
) -> dict[str, Any]:
    """Build the one event dict every waiting path produces (plain JSON values only)."""
    if status not in EVENT_STATUSES:
        raise ValueError(f"unknown event status {status!r}")
    event: dict[str, Any] = {
        "status": status,
        "message": message,
        "batch_export_id": batch_export_id,
        "backfill_id": backfill_id,
        "run_id": run_id,
        "remote_status": None,
        "failed_runs": [],
        "runs_completed": 0,
        "records_completed": 0,
    }
    if decision is not None:
        event["remote_status"] = decision.remote_status
        event["failed_runs"] = [dict(r) for r in decision.failed_runs]
        event["runs_completed"] = decision.runs_completed
        event["records_completed"] = decision.records_completed
    return event


def decision_event(
    decision: Decision, *, batch_export_id: str, backfill_id: str | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """The event for a terminal decision."""
    if not decision.done:
        raise ValueError("a running decision has no event")
    status = SUCCESS if decision.outcome is Outcome.SUCCEEDED else FAILED
    return make_event(
        status,
        decision.message,
        batch_export_id=batch_export_id,
        backfill_id=backfill_id,
        run_id=run_id,
        decision=decision,
    )


def validate_event(event: Any) -> dict[str, Any]:
    """Check an event before acting on it; anything unexpected fails the task.

    The event crossed the metadata DB from a triggerer that may run another provider version, so nothing about
    it is trusted: a missing event, an unknown status or a missing message never falls through to success.
    """
    if not isinstance(event, Mapping):
        raise PostHogTriggerError(f"The PostHog trigger sent no usable event (got {type(event).__name__}).")
    status = event.get("status")
    if status not in EVENT_STATUSES:
        raise PostHogTriggerError(f"The PostHog trigger sent an event with unknown status {status!r}.")
    if not isinstance(event.get("message"), str) or not event.get("batch_export_id"):
        raise PostHogTriggerError("The PostHog trigger sent an event without a message or batch_export_id.")
    failed_runs = event.get("failed_runs") or []
    if not isinstance(failed_runs, list):
        raise PostHogTriggerError("The PostHog trigger sent an event whose failed_runs is not a list.")
    return dict(event)


# ------------------------------------------------------------------------------------------ arguments & time


def coerce_datetime(value: Any, name: str) -> dt.datetime:
    """Accept an aware datetime (pendulum too) or an ISO-8601 string with an offset; return it in UTC.

    Rendered templates such as ``{{ data_interval_start }}`` arrive as strings like
    ``2024-01-01 00:00:00+00:00``. Naive values are refused: PostHog would reject them, and guessing UTC
    silently exports the wrong window for anyone not on UTC.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise PostHogConfigError(f"{name} is empty; pass an aware datetime or an ISO-8601 string.")
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise PostHogConfigError(f"{name}={value!r} is not an ISO-8601 datetime.") from exc
        value = parsed
    if not isinstance(value, dt.datetime):
        raise PostHogConfigError(f"{name} must be a datetime or ISO-8601 string, got {type(value).__name__}.")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise PostHogConfigError(f"{name}={value.isoformat()!r} is naive; give it a timezone (e.g. UTC).")
    return value.astimezone(dt.timezone.utc)


def validate_range(
    start: Any, end: Any, *, now: dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """Validate a backfill window ``[start_at, end_at)`` the way PostHog would, before any request."""
    start_at = coerce_datetime(start, "start_at")
    end_at = coerce_datetime(end, "end_at")
    if start_at >= end_at:
        raise PostHogConfigError(
            f"start_at ({start_at.isoformat()}) must be before end_at ({end_at.isoformat()})."
        )
    current = now or dt.datetime.now(dt.timezone.utc)
    if end_at > current:
        raise PostHogConfigError(
            f"end_at ({end_at.isoformat()}) is in the future; PostHog only backfills the past."
        )
    return start_at, end_at


def require_id(value: Any, name: str) -> str:
    """An id argument after templating: a non-empty string (UUIDs), else a config error naming it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PostHogConfigError(f"{name} is required.")
    text = str(value).strip()
    if text.startswith("{{"):
        raise PostHogConfigError(f"{name}={text!r} was not rendered; is it a template field of this task?")
    return text


def coerce_seconds(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    """Seconds from a number, a ``timedelta`` or a rendered template string."""
    if value is None or value == "":
        if allow_none:
            return None
        raise PostHogConfigError(f"{name} is required.")
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise PostHogConfigError(f"{name}={value!r} is not a number of seconds.") from exc
    if seconds < 0:
        raise PostHogConfigError(f"{name} must not be negative (got {seconds}).")
    return seconds


def coerce_bool(value: Any, name: str) -> bool:
    """A flag that may have been rendered from a template (``"True"``/``"false"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off", "", "none"}:
        return False
    if isinstance(value, int):
        return bool(value)
    raise PostHogConfigError(f"{name}={value!r} is not a boolean.")


def deadline(
    now: float, timeout: float | None, execution_timeout: dt.timedelta | float | None
) -> float | None:
    """Absolute epoch deadline of a wait: the earlier of ``timeout`` and ``execution_timeout``.

    Epoch seconds (``time.time()``), never ``time.monotonic()``: the deadline crosses processes (worker ->
    triggerer) and is compared there.
    """
    candidates: list[float] = []
    if timeout is not None:
        candidates.append(now + timeout)
    if execution_timeout is not None:
        seconds = (
            execution_timeout.total_seconds()
            if isinstance(execution_timeout, dt.timedelta)
            else float(execution_timeout)
        )
        candidates.append(now + seconds)
    return min(candidates) if candidates else None


def failure_message(event: Mapping[str, Any], log_tails: Mapping[str, Sequence[str]] | None = None) -> str:
    """A readable failure: the event's message, each failing run's ``latest_error`` and its log tail."""
    lines = [str(event.get("message") or "PostHog reported a failure.")]
    for run in event.get("failed_runs") or []:
        window = f"[{run.get('data_interval_start')}, {run.get('data_interval_end')})"
        lines.append(
            f"  run {run.get('id')} {window}: status {run.get('status')!r}, "
            f"latest_error: {run.get('latest_error') or '(none)'}"
        )
        for log_line in (log_tails or {}).get(str(run.get("id")), ()):
            lines.append(f"    | {log_line}")
    return "\n".join(lines)
