"""Waiting on PostHog, the same for every path: the poll step, deadlines, events and the completion switch.

Operators (sync poll loop), sensors (poke) and triggers (deferred poll) turn remote state into a
``tasks.decisions.Decision``, advance with :meth:`Wait.step`, speak one event dict (:func:`make_event`) and
end in :func:`complete`. Nothing here does I/O (besides logging) or reads a clock: callers pass ``now``
(epoch seconds, ``time.time()``: the deadline is computed by the worker and compared in the triggerer, so it
is never a monotonic clock).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import PostHogTriggerError

if TYPE_CHECKING:
    from airflow.sdk.types import Logger

    from airflow_provider_posthog.api.models import LogEntry
    from airflow_provider_posthog.tasks.decisions import Decision

SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
ERROR = "error"
EVENT_STATUSES: frozenset[str] = frozenset({SUCCESS, FAILED, TIMEOUT, ERROR})

#: How many lines of a failed run's logs a failure message quotes.
LOG_TAIL_LINES = 10
#: How many failed runs a failure message fetches log lines for.
LOG_TAIL_RUNS = 3
#: While PostHog reports the same progress, a waiting task repeats the line at most this often (seconds).
PROGRESS_HEARTBEAT_SECONDS = 300.0


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
    """The one event dict every waiting path produces (plain JSON values only)."""
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
    """The event of a terminal decision."""
    if not decision.done:
        raise ValueError("a running decision has no event")
    return make_event(
        SUCCESS if decision.outcome is Outcome.SUCCEEDED else FAILED,
        decision.message,
        batch_export_id=batch_export_id,
        backfill_id=backfill_id,
        run_id=run_id,
        decision=decision,
    )


def validate_event(event: Any, *, require: Sequence[str] = ()) -> dict[str, Any]:
    """Check an event before acting on it; anything unexpected fails the task.

    An event may have crossed the metadata DB from a triggerer running another provider version, so nothing
    about it is trusted: a missing event, an unknown status or a missing message never falls through to
    success. ``require`` names ids the caller needs (e.g. ``backfill_id``).
    """
    if not isinstance(event, Mapping):
        raise PostHogTriggerError(f"The PostHog trigger sent no usable event (got {type(event).__name__}).")
    status = event.get("status")
    if status not in EVENT_STATUSES:
        raise PostHogTriggerError(f"The PostHog trigger sent an event with unknown status {status!r}.")
    if not isinstance(event.get("message"), str) or not event.get("batch_export_id"):
        raise PostHogTriggerError("The PostHog trigger sent an event without a message or batch_export_id.")
    if not isinstance(event.get("failed_runs") or [], list):
        raise PostHogTriggerError("The PostHog trigger sent an event whose failed_runs is not a list.")
    for key in require:
        if not event.get(key):
            raise PostHogTriggerError(f"The PostHog event names no {key}.")
    return dict(event)


# ------------------------------------------------------------------------------------------------ the wait


def describe_backfill(batch_export_id: str, backfill_id: str) -> str:
    return f"backfill {backfill_id} of batch export {batch_export_id}"


def describe_run(batch_export_id: str, run_id: str) -> str:
    return f"run {run_id} of batch export {batch_export_id}"


def describe_interval(batch_export_id: str, start: str, end: str) -> str:
    return f"the runs of batch export {batch_export_id} covering [{start}, {end})"


def deadline(
    now: float, timeout: float | None, execution_timeout: dt.timedelta | float | None
) -> float | None:
    """Epoch deadline of a wait: the earlier of ``timeout`` and ``execution_timeout`` from ``now``.

    ``now`` is ``time.time()``, never ``time.monotonic()``: the deadline is compared in another process.
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


@dataclasses.dataclass(frozen=True)
class Step:
    """What a waiting loop does after a poll: log ``progress`` (if any), then finish with ``event`` or
    sleep ``sleep`` seconds and poll again."""

    event: dict[str, Any] | None = None
    sleep: float = 0.0
    progress: str | None = None


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{int(seconds)} s" if minutes < 1 else f"{minutes} min"


@dataclasses.dataclass
class ProgressLog:
    """Which progress lines a wait logs: a change at once, the same line again only as a heartbeat.

    A poll every few seconds would otherwise repeat "(2/12 runs finished)" for as long as a run takes. One
    instance lives as long as the waiting loop's process (a sensor keeps one across its pokes).
    """

    heartbeat: float = PROGRESS_HEARTBEAT_SECONDS
    message: str | None = None
    since: float = 0.0
    logged_at: float = 0.0

    def line(self, message: str | None, now: float) -> str | None:
        """The line to log for ``message`` polled at ``now`` (epoch seconds), or ``None`` to stay quiet."""
        if message is None:
            return None
        if message != self.message:
            self.message, self.since, self.logged_at = message, now, now
            return message
        if now - self.logged_at >= self.heartbeat:
            self.logged_at = now
            return f"{message} (unchanged for {_duration(now - self.since)})"
        return None


@dataclasses.dataclass
class Wait:
    """One wait on one remote job, driven the same way by the worker's loop, a sensor's poke and a trigger.

    ``end_time`` is epoch seconds (``None``: no deadline); ``what`` names the job in messages;
    ``progress_log`` keeps repeated progress lines out of the task log.
    """

    what: str
    batch_export_id: str
    backfill_id: str | None = None
    run_id: str | None = None
    poll_interval: float = 60.0
    end_time: float | None = None
    progress_log: ProgressLog = dataclasses.field(default_factory=ProgressLog, compare=False, repr=False)

    @property
    def ui_tab(self) -> str:
        """The tab of the export's PostHog page that shows what this wait waits on."""
        return "backfills" if self.backfill_id else "runs"

    def step(self, decision: Decision | None, now: float) -> Step:
        """The one poll step. ``decision`` is ``None`` when the poll failed and is to be repeated."""
        if decision is not None and decision.done:
            return Step(event=self.event(decision))
        progress = self.progress(decision, now)
        if self.end_time is not None and now >= self.end_time:
            return Step(event=self.timeout_event(), progress=progress)
        return Step(sleep=self.sleep_until(now + self.poll_interval, now), progress=progress)

    def progress(self, decision: Decision | None, now: float) -> str | None:
        """The line a waiting task logs after a poll that found the job still running, if any (every path
        logs progress through here): only a change, or the unchanged state once per heartbeat."""
        return self.progress_log.line(None if decision is None else decision.message, now)

    def log_link(self, log: Logger, ui_url: Callable[[str, str], str]) -> None:
        """Log the PostHog page that shows what this wait waits on (``ui_tab``), built by the hook's
        ``ui_url``. A link is a convenience: failing to build it only warns."""
        try:
            url = ui_url(self.batch_export_id, self.ui_tab)
        except Exception as exc:
            log.warning("Could not build the PostHog UI URL: %s", exc)
            return
        log.info("Waiting for %s; follow it in PostHog: %s", self.what, url)

    def sleep_until(self, wake_at: float, now: float) -> float:
        """Seconds to sleep to wake at ``wake_at``, never past the deadline."""
        if self.end_time is not None:
            wake_at = min(wake_at, self.end_time)
        return max(0.0, wake_at - now)

    def event(self, decision: Decision) -> dict[str, Any]:
        return decision_event(
            decision, batch_export_id=self.batch_export_id, backfill_id=self.backfill_id, run_id=self.run_id
        )

    def timeout_event(self) -> dict[str, Any]:
        return self._event(
            TIMEOUT,
            f"Stopped waiting for {self.what}: the task's deadline passed while PostHog still reported it "
            "as running.",
        )

    def error_event(self, exc: BaseException) -> dict[str, Any]:
        """The wait itself failed (not necessarily the export): say so, never claim the job failed."""
        return self._event(
            ERROR,
            f"The PostHog trigger could not check {self.what} ({type(exc).__name__}: {exc}). "
            "This is an error of the wait itself; the export may still be running in PostHog.",
        )

    def _event(self, status: str, message: str) -> dict[str, Any]:
        return make_event(
            status,
            message,
            batch_export_id=self.batch_export_id,
            backfill_id=self.backfill_id,
            run_id=self.run_id,
        )


# ------------------------------------------------------------------------------------------- the completion


def complete(
    event: Any,
    *,
    failure: type[Exception],
    timeout: type[Exception],
    log_tails: Callable[[Mapping[str, Any]], Mapping[str, Sequence[str]]] | None = None,
    on_timeout: Callable[[Mapping[str, Any]], None] | None = None,
    require: Sequence[str] = (),
) -> dict[str, Any]:
    """The one completion switch of every waiting path; returns the (validated) success event.

    Success only on an explicit success event: ``failed`` raises ``failure`` quoting the failed runs (and
    their log tails), ``timeout`` runs ``on_timeout`` then raises ``timeout``, a trigger error and anything
    else raise ``PostHogTriggerError``.
    """
    checked = validate_event(event, require=require)
    status = checked["status"]
    if status == SUCCESS:
        return checked
    if status == FAILED:
        raise failure(failure_message(checked, log_tails(checked) if log_tails else None))
    if status == TIMEOUT:
        if on_timeout is not None:
            on_timeout(checked)
        raise timeout(str(checked["message"]))
    raise PostHogTriggerError(str(checked["message"]))


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


def tail_lines(entries: Iterable[LogEntry]) -> list[str]:
    """The last :data:`LOG_TAIL_LINES` log lines of a run, oldest first, as printable lines."""
    ordered = sorted(entries, key=lambda e: e.timestamp.timestamp() if e.timestamp else 0.0)
    return [
        f"{e.timestamp.isoformat() if e.timestamp else '?'} {e.level} {e.message}"
        for e in ordered[-LOG_TAIL_LINES:]
    ]
