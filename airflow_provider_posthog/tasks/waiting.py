"""Waiting on PostHog, the same for every path: the poll step, deadlines, events and the completion switch.

Operators (sync poll loop), sensors (poke) and triggers (deferred poll) poll a job of ``api.jobs`` through
their hook, advance with :meth:`Wait.step` (the one rule for deadlines and for PostHog being unreachable),
log through :func:`log_step`, speak one event dict (:func:`make_event`) and end in :func:`complete`.
Nothing here does I/O (besides logging) or reads a clock: callers pass ``now`` (epoch seconds,
``time.time()``: the deadline is computed by the worker and compared in the triggerer, so it is never a
monotonic clock).

Event schema::

    {"status": "success" | "failed" | "timeout" | "error",
     "message": str,
     "batch_export_id": str,
     "backfill_id": str | None, "run_id": str | None,
     "remote_status": str | None,          # the backfill's or run's PostHog status, when known
     "failed_runs": [run summary, ...],    # only for "failed"
     "runs_completed": int, "records_completed": int,
     # what the runs judged by a terminal decision say (``api.decisions.run_facts``); empty otherwise:
     "runs_by_status": {status: int}, "run_ids": [str, ...],
     "data_interval_start": str | None, "data_interval_end": str | None,
     "records_expected": int | None, "bytes_exported": int | None,
     "incomplete_runs": [run summary, ...],  # records_completed < records_total_count
     # what lineage needs after a deferral, so the resumed task reads nothing again:
     "completed_runs": [run summary, ...] | None,  # a success's counted runs (None: too many, or none)
     "export": {export identity} | None}  # ``BatchExport.identity()`` of the export the wait read
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.decisions import event_runs, run_facts
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogCancelNotEffectiveError,
    PostHogTriggerError,
    PostHogUnreachableError,
)

if TYPE_CHECKING:
    from airflow.sdk.types import Logger

    from airflow_provider_posthog.api.decisions import Decision
    from airflow_provider_posthog.api.http import Operation
    from airflow_provider_posthog.api.jobs import Cancel, Job
    from airflow_provider_posthog.api.models import BatchExportRun, LogEntry

SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
ERROR = "error"
EVENT_STATUSES: frozenset[str] = frozenset({SUCCESS, FAILED, TIMEOUT, ERROR})
#: The run facts of an event that judged no run (a timeout, an error).
NO_RUN_FACTS: dict[str, Any] = {
    "data_interval_start": None,
    "data_interval_end": None,
    "records_expected": None,
    "bytes_exported": None,
}

#: How many lines of a failed run's logs a failure message quotes.
LOG_TAIL_LINES = 10
#: How many failed runs a failure message fetches log lines for.
LOG_TAIL_RUNS = 3
#: While PostHog reports the same progress, a waiting task repeats the line at most this often (seconds).
PROGRESS_HEARTBEAT_SECONDS = 300.0
#: Bound on a best-effort cancel of a killed or timed-out wait: within Airflow's grace before it kills the
#: task process (``killed_task_cleanup_time``, 60 s) and the triggerer's bound on ``on_kill`` (30 s).
CANCEL_SECONDS = 20.0
#: The last poll is due exactly at a wait's end: it still gets this long (at most one poll interval) to be
#: answered, so a job that finished just in time is seen, and a slow answer is still cut short.
LAST_POLL_SECONDS = 5.0


# --------------------------------------------------------------------------------------------------- events


def make_event(
    status: str,
    message: str,
    *,
    batch_export_id: str,
    backfill_id: str | None = None,
    run_id: str | None = None,
    decision: Decision | None = None,
    export: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one event dict every waiting path produces (plain JSON values only); ``export`` is the identity
    of the export the wait read (``BatchExport.identity()``)."""
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
        **NO_RUN_FACTS,
        "runs_by_status": {},
        "run_ids": [],
        "incomplete_runs": [],
        "completed_runs": None,
        "export": None if export is None else dict(export),
    }
    if decision is not None:
        event["remote_status"] = decision.remote_status
        event["failed_runs"] = [dict(r) for r in decision.failed_runs]
        event["runs_completed"] = decision.runs_completed
        event["records_completed"] = decision.records_completed
        event.update(run_facts(decision))
        event["completed_runs"] = event_runs(decision)
    return event


def decision_event(
    decision: Decision,
    *,
    batch_export_id: str,
    backfill_id: str | None = None,
    run_id: str | None = None,
    export: Mapping[str, Any] | None = None,
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
        export=export,
    )


def event_completed_runs(event: Mapping[str, Any]) -> tuple[BatchExportRun, ...] | None:
    """The counted runs a success event carries, or ``None`` when it carries none that can be read (an
    event of an older provider version, or a success over more than ``EVENT_RUNS`` runs)."""
    from airflow_provider_posthog.api.models import BatchExportRun
    from airflow_provider_posthog.exceptions import PostHogError

    runs = event.get("completed_runs")
    if not isinstance(runs, list):
        return None
    try:
        return tuple(BatchExportRun.from_api(r) for r in runs)
    except PostHogError:
        return None


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
    incomplete = event.get("incomplete_runs") or []
    if not isinstance(incomplete, list) or not all(isinstance(r, Mapping) for r in incomplete):
        raise PostHogTriggerError(
            "The PostHog trigger sent an event whose incomplete_runs is not a list of runs."
        )
    for key in require:
        if not event.get(key):
            raise PostHogTriggerError(f"The PostHog event names no {key}.")
    return dict(event)


# ------------------------------------------------------------------------------------------------ the wait


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


#: One line a step asks the task to log: (``logging`` level, text).
Line = tuple[int, str]


@dataclasses.dataclass(frozen=True)
class Step:
    """What a waiting loop does after a poll: log ``lines``, then finish with ``event`` or sleep ``sleep``
    seconds and poll again."""

    event: dict[str, Any] | None = None
    sleep: float = 0.0
    lines: tuple[Line, ...] = ()


def log_step(log: Logger, step: Step) -> None:
    """Write a step's lines to the task's (or trigger's) log: every path speaks with this one voice."""
    for level, text in step.lines:
        (log.warning if level >= logging.WARNING else log.info)("%s", text)


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{int(seconds)} s" if minutes < 1 else f"{minutes} min"


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%H:%M:%S UTC")


def _trouble(exc: BaseException) -> str:
    """A short, stable name for what went wrong (a heartbeat repeats a line only while it stays the same)."""
    status = getattr(exc, "http_status", None)
    if status:
        return f"HTTP {status}"
    code = getattr(exc, "code", None)
    return f"no answer: {code}" if code else type(exc).__name__


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
    """One wait on one PostHog job, driven the same way by the worker's loop, a sensor's poke and a trigger.

    ``end_time`` is epoch seconds (``None``: no deadline). Trouble that PostHog recovers from on its own
    (5xx, throttling, dropped connections, timeouts: ``api.retry.transient``) never ends the wait before
    ``end_time``; ``unreachable_timeout`` (seconds) tightens that. ``progress_log`` keeps repeated lines out
    of the task log.
    """

    job: Job
    poll_interval: float = 60.0
    end_time: float | None = None
    unreachable_timeout: float | None = None
    progress_log: ProgressLog = dataclasses.field(default_factory=ProgressLog, compare=False, repr=False)
    #: Epoch seconds of the start of the first failed poll in a row (``None`` while PostHog answers).
    unreachable_since: float | None = None
    #: When the last poll started (``start_poll``).
    poll_started: float | None = dataclasses.field(default=None, compare=False, repr=False)
    #: The identity (``BatchExport.identity()``) of the export a poll of this wait last read: a success
    #: event carries it, so what the success exported is named without reading the export again.
    export: dict[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)
    #: Whether an interval wait's first poll reads the export (a rescheduled poke, a new process, does not
    #: read it again at each poke: its success reads it once instead).
    first_reads_export: bool = dataclasses.field(default=True, compare=False, repr=False)

    @property
    def what(self) -> str:
        return self.job.describe()

    @property
    def batch_export_id(self) -> str:
        return self.job.batch_export_id

    @property
    def backfill_id(self) -> str | None:
        return getattr(self.job, "backfill_id", None)

    @property
    def run_id(self) -> str | None:
        return getattr(self.job, "run_id", None)

    @property
    def ui_tab(self) -> str:
        """The tab of the export's PostHog page that shows what this wait waits on."""
        return "backfills" if self.job.kind == "backfill" else "runs"

    def operation(self) -> Operation[Decision]:
        """The poll of this wait's job: an interval wait's first poll also reads the export
        (``IntervalJob.poll``), later ones only when they need it."""
        from airflow_provider_posthog.api.jobs import IntervalJob

        if isinstance(self.job, IntervalJob):
            return self.job.poll(read_export=self.first_reads_export and self.export is None)
        return self.job.poll()

    def step(self, polled: Decision | BaseException, now: float) -> Step:
        """The one poll step: ``polled`` is the poll's decision, or the exception the poll raised.

        A final error (400, 401/403, 404, a config error, an answer this provider cannot read) is raised
        here; transient trouble keeps the wait going until its deadline (or ``unreachable_timeout``).
        """
        if isinstance(polled, BaseException):
            return self._unreachable(polled, now)
        if polled.export is not None:
            self.export = polled.export.identity()
        lines: list[Line] = []
        if self.unreachable_since is not None:
            lines.append(
                (logging.INFO, f"PostHog answered again after {_duration(now - self.unreachable_since)}.")
            )
            self.unreachable_since = None
        if polled.done:
            return Step(event=self.event(polled), lines=tuple(lines))
        line = self.progress_log.line(polled.message, now)
        if line is not None:
            lines.append((logging.INFO, line))
        return self._continue(now, tuple(lines), self.timeout_event)

    def _unreachable(self, exc: BaseException, now: float) -> Step:
        from airflow_provider_posthog.api.retry import transient  # tenacity: not at DAG parse time

        if not transient(exc):
            raise exc
        if self.unreachable_since is None:
            self.unreachable_since = now if self.poll_started is None else min(self.poll_started, now)
        since = self.unreachable_since
        if self.unreachable_timeout is not None and now - since >= self.unreachable_timeout:
            raise PostHogUnreachableError(
                f"PostHog has been unreachable for {_duration(now - since)} while waiting for {self.what} "
                f"(unreachable_timeout={self.unreachable_timeout:g}s); last error: {exc}"
            ) from exc
        limits = [f"until {_clock(self.end_time)}"] if self.end_time is not None else []
        if self.unreachable_timeout is not None:
            limits.append(f"for at most {_duration(self.unreachable_timeout)} without an answer")
        until = " or ".join(limits) if limits else "(the task has no timeout)"
        line = self.progress_log.line(
            f"PostHog is unreachable since {_clock(since)} ({_trouble(exc)}); still waiting {until}.", now
        )
        lines: tuple[Line, ...] = () if line is None else ((logging.WARNING, line),)

        def timed_out() -> dict[str, Any]:
            return self._event(
                TIMEOUT,
                f"Stopped waiting for {self.what}: the task's deadline passed while PostHog was unreachable "
                f"(since {_clock(since)}; last error: {exc}).",
            )

        return self._continue(now, lines, timed_out)

    def _continue(self, now: float, lines: tuple[Line, ...], timed_out: Callable[[], dict[str, Any]]) -> Step:
        if self.end_time is not None and now >= self.end_time:
            return Step(event=timed_out(), lines=lines)
        return Step(sleep=self.sleep_until(now + self.poll_interval, now), lines=lines)

    def before_first_poll(self, now: float) -> Step | None:
        """The step of a wait that must not poll yet at ``now`` (sleep until the first poll), or ``None``.

        The runs of an interval ``[start, end)`` cannot all be complete before ``end``: PostHog starts the run
        of the interval's last period only when that period ends. So an interval wait polls first at ``end``
        plus one poll interval (or at its deadline, if sooner); a task started later than that (a late or
        re-run DAG run) polls at once. Other jobs always poll at once.
        """
        from airflow_provider_posthog.api.jobs import IntervalJob

        if not isinstance(self.job, IntervalJob):
            return None
        due = self.job.end.timestamp() + self.poll_interval
        if self.end_time is not None:
            due = min(due, self.end_time)
        if now >= due:
            return None
        interval = f"[{self.job.start.isoformat()}, {self.job.end.isoformat()})"
        line = (
            f"First check at {_clock(due)}: PostHog starts the last run of {interval} only once it has ended."
        )
        return Step(sleep=due - now, lines=((logging.INFO, line),))

    def start_poll(self, now: float) -> float | None:
        """A poll starts at ``now``: remember when (PostHog is unreachable since the start of the first poll
        that failed, not since its retries gave up) and return the epoch seconds bounding it: the wait's
        end, but never less than a short grace (:data:`LAST_POLL_SECONDS`, at most one poll interval)."""
        self.poll_started = now
        if self.end_time is None:
            return None
        grace = min(LAST_POLL_SECONDS, max(1.0, self.poll_interval))
        return max(self.end_time, now + grace)

    def log_link(self, log: Logger, ui_url: Callable[[str, str], str]) -> None:
        """Log the PostHog page that shows what this wait waits on (``ui_tab``), built by the hook's
        ``ui_url`` (no request; a broken connection raises its configuration error here, once)."""
        log.info(
            "Waiting for %s; follow it in PostHog: %s", self.what, ui_url(self.batch_export_id, self.ui_tab)
        )

    def sleep_until(self, wake_at: float, now: float) -> float:
        """Seconds to sleep to wake at ``wake_at``, never past the deadline."""
        if self.end_time is not None:
            wake_at = min(wake_at, self.end_time)
        return max(0.0, wake_at - now)

    def event(self, decision: Decision) -> dict[str, Any]:
        return decision_event(
            decision,
            batch_export_id=self.batch_export_id,
            backfill_id=self.backfill_id,
            run_id=self.run_id,
            export=self.export,
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


def log_cancel(log: Logger, what: str, result: Cancel | BaseException) -> None:
    """Log a cancel sent because a wait ended badly or was killed: it must never raise."""
    if isinstance(result, PostHogCancelNotEffectiveError):
        from airflow_provider_posthog.api.jobs import capitalized  # not at DAG parse time

        log.warning(
            "%s is still running after the cancel (%s); cancel it in PostHog.", capitalized(what), result
        )
    elif isinstance(result, BaseException):
        log.warning("Could not cancel %s: %s", what, result)
    else:
        (log.info if result.already_finished else log.warning)("%s", result.message)


def tail_lines(entries: Iterable[LogEntry]) -> list[str]:
    """The last :data:`LOG_TAIL_LINES` log lines of a run, oldest first, as printable lines."""
    ordered = sorted(entries, key=lambda e: e.timestamp.timestamp() if e.timestamp else 0.0)
    return [
        f"{e.timestamp.isoformat() if e.timestamp else '?'} {e.level} {e.message}"
        for e in ordered[-LOG_TAIL_LINES:]
    ]
