"""The jobs a task waits on or stops, and the one poll and one cancel of each (sans-I/O).

A job is a value (ids, an interval): a backfill, a run, or the runs of a scheduled export covering an
interval. Its ``poll()`` reads what PostHog says about it and returns the one
:class:`~airflow_provider_posthog.api.decisions.Decision` (its reads are ``Shared``: the async hook lets the
waits of one process share them, see ``api/sharing.py``); :func:`cancel` stops a backfill or run if
PostHog still lets anyone and reports what PostHog really did. The operator's sync loop, a sensor's poke, a
trigger's poll and every cancel (cancel operators, timed-out or killed waits) go through these operations,
driven by the hook's ``run(op)`` / ``await arun(op)``, so a rule about PostHog's answers is written once.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_posthog.api.decisions import (
    RetriedInterval,
    covered_until,
    decide_backfill,
    decide_interval,
    decide_retried,
    decide_run,
    latest_runs_inside,
    newest_per_interval,
)
from airflow_provider_posthog.api.endpoints import (
    ANY_AGE,
    BACKFILL_RUNS_ORDERING,
    backfill_runs_span,
    get_backfill,
    get_run,
    list_runs_over_backfill,
)
from airflow_provider_posthog.api.http import RequestSpec, export_path
from airflow_provider_posthog.api.intervals import ExportSchedule
from airflow_provider_posthog.api.sharing import (
    MERGE_GAP,
    backfill_read,
    export_read,
    run_read,
    runs_by_interval,
)
from airflow_provider_posthog.api.statuses import CANCELLABLE_STATUSES, Outcome
from airflow_provider_posthog.exceptions import (
    PostHogCancelNotEffectiveError,
    PostHogConfigError,
    PostHogValidationError,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

    from pendulum import DateTime

    from airflow_provider_posthog.api.decisions import Decision
    from airflow_provider_posthog.api.http import Operation
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun

log = logging.getLogger(__name__)


def _schedule(export: BatchExport, backfill: Backfill) -> ExportSchedule | None:
    """The export's interval grid, or ``None`` for an interval this provider does not know (the runs are
    then listed by creation time and only the backfill's own runs are judged)."""
    try:
        return ExportSchedule.of(export)
    except PostHogConfigError as exc:
        log.warning("Judging backfill %s by its own runs only: %s", backfill.id, exc)
        return None


def expected_intervals(
    backfill: Backfill, schedule: ExportSchedule | None
) -> list[tuple[DateTime, DateTime]] | None:
    """The intervals PostHog exports for ``backfill``: whole intervals from its (aligned-down) start, or from
    ``adjusted_start_at`` where PostHog moved the start to the first data, to its end (a trailing partial
    interval is not exported); ``None`` for an open range or an unknown interval grid."""
    start = backfill.adjusted_start_at or backfill.start_at
    if schedule is None or start is None or backfill.end_at is None:
        return None
    return schedule.intervals(start, backfill.end_at)


@dataclasses.dataclass(frozen=True)
class BackfillJob:
    """A backfill: done when it is terminal, a success only if every one of its runs completed."""

    batch_export_id: str
    backfill_id: str
    kind: ClassVar[str] = "backfill"

    @property
    def job_id(self) -> str:
        return self.backfill_id

    def describe(self) -> str:
        return f"backfill {self.backfill_id} of batch export {self.batch_export_id}"

    def poll(self) -> Operation[Decision]:
        """The backfill's status; once it is terminal, its export and every run over its range too.

        One request while the backfill runs; three once it is terminal (the backfill, the export, the runs
        over its range), whatever the outcome: a completed backfill may hide failed runs, or intervals left
        to runs it adopted, and a cancelled one may be explained by its export being paused.
        """
        backfill: Backfill = yield backfill_read(self.batch_export_id, self.backfill_id)
        decision = decide_backfill(backfill)
        if not decision.done:
            return decision
        export: BatchExport = yield export_read(self.batch_export_id)
        schedule = _schedule(export, backfill)
        span = backfill_runs_span(backfill, schedule)
        runs: list[BatchExportRun]
        if span is None:  # an open range or an interval this provider does not know: unshared
            runs = yield from list_runs_over_backfill(self.batch_export_id, backfill, schedule=schedule)
        else:
            runs = yield runs_by_interval(self.batch_export_id, *span, ordering=BACKFILL_RUNS_ORDERING)
        intervals = expected_intervals(backfill, schedule)
        decided = decide_backfill(backfill, runs, intervals=intervals, export=export)
        return dataclasses.replace(decided, export=export)

    def status(self) -> Operation[str]:
        return (yield from get_backfill(self.batch_export_id, self.backfill_id)).status

    def cancel_request(self) -> RequestSpec:
        path = export_path(self.batch_export_id, "backfills", self.backfill_id, "cancel")
        return RequestSpec("POST", path, json={})


@dataclasses.dataclass(frozen=True)
class RunJob:
    """One run of an export, whatever its age."""

    batch_export_id: str
    run_id: str
    kind: ClassVar[str] = "run"

    @property
    def job_id(self) -> str:
        return self.run_id

    def describe(self) -> str:
        return f"run {self.run_id} of batch export {self.batch_export_id}"

    def poll(self) -> Operation[Decision]:
        run: BatchExportRun = yield run_read(self.batch_export_id, self.run_id)
        return decide_run(run)

    def status(self) -> Operation[str]:
        return (yield from get_run(self.batch_export_id, self.run_id)).status

    def cancel_request(self) -> RequestSpec:
        path = export_path(self.batch_export_id, "runs", self.run_id, "cancel")
        return RequestSpec("POST", path, ANY_AGE, json={})


@dataclasses.dataclass(frozen=True)
class IntervalJob:
    """Every run of an export covering ``[start, end)`` (aware datetimes): PostHog's own schedule, which a
    task watches but does not own (so it has no cancel)."""

    batch_export_id: str
    start: dt.datetime
    end: dt.datetime
    kind: ClassVar[str] = "interval"

    @property
    def job_id(self) -> None:
        return None

    def describe(self) -> str:
        return (
            f"the runs of batch export {self.batch_export_id} covering "
            f"[{self.start.isoformat()}, {self.end.isoformat()})"
        )

    def poll(self, *, read_export: bool = False) -> Operation[Decision]:
        """One list of the runs inside the interval (the newest run of each sub-interval counts); while
        runs are still missing, the export too: a paused export schedules none, so the wait fails now.

        ``read_export`` (a wait's first poll): read the export first. Its destination names what a success
        exported, so the success needs no read of its own; and when its ``latest_runs`` hold every run of
        the interval (:func:`latest_runs_inside`) and show it complete or still under way, they are the
        poll: no list. A failure or a paused export is confirmed by the list.
        """
        export: BatchExport | None = None
        if read_export:
            export = yield export_read(self.batch_export_id)
            latest = latest_runs_inside(export, self.start)
            if latest is not None:
                decision = decide_interval(latest, self.start, self.end, export=export)
                if decision.outcome is not Outcome.FAILED:
                    return dataclasses.replace(decision, export=export)
        runs: list[BatchExportRun] = yield runs_by_interval(self.batch_export_id, self.start, self.end)
        decision = decide_interval(runs, self.start, self.end, export=export)
        if export is not None or decision.done:
            return dataclasses.replace(decision, export=export)
        if covered_until(newest_per_interval(runs, self.start, self.end), self.start) >= self.end:
            return decision
        export = yield export_read(self.batch_export_id)
        return dataclasses.replace(decide_interval(runs, self.start, self.end, export=export), export=export)


#: Intervals further apart than this are listed by separate requests when a :class:`RunsJob` polls (the same
#: gap as across waits).
RUNS_LIST_GAP = MERGE_GAP


@dataclasses.dataclass(frozen=True)
class RunsJob:
    """Retried runs of an export: done when each interval has a completed run (the newest counted run of
    each interval decides it, see :class:`~airflow_provider_posthog.api.decisions.RetriedInterval`).

    ``backfill_id`` names the backfill whose failed runs were retried, when there is one (events then carry
    it). The retries are PostHog's one-interval backfills, each left to finish: a task watching them has no
    cancel, and a retry of that task waits for them instead of retrying again.
    """

    batch_export_id: str
    intervals: tuple[RetriedInterval, ...]
    backfill_id: str | None = None
    kind: ClassVar[str] = "runs"

    @property
    def job_id(self) -> str | None:
        return self.backfill_id

    def describe(self) -> str:
        of = f" of backfill {self.backfill_id}" if self.backfill_id else ""
        return f"{len(self.intervals)} retried interval(s){of} of batch export {self.batch_export_id}"

    def windows(self) -> list[tuple[dt.datetime, dt.datetime]]:
        """The spans to list: the intervals, merged where less than :data:`RUNS_LIST_GAP` apart."""
        spans: list[tuple[dt.datetime, dt.datetime]] = []
        for interval in sorted(self.intervals, key=lambda i: (i.start, i.end)):
            if spans and interval.start - spans[-1][1] <= RUNS_LIST_GAP:
                spans[-1] = (spans[-1][0], max(spans[-1][1], interval.end))
            else:
                spans.append((interval.start, interval.end))
        return spans

    def poll(self) -> Operation[Decision]:
        """One list of runs by data interval per window (none when nothing was retried)."""
        runs: list[BatchExportRun] = []
        for start, end in self.windows():
            window: list[BatchExportRun] = yield runs_by_interval(self.batch_export_id, start, end)
            runs.extend(window)
        return decide_retried(runs, self.intervals)

    def to_plain(self) -> list[dict[str, str | None]]:
        return [i.to_plain() for i in self.intervals]

    @classmethod
    def from_plain(
        cls, batch_export_id: str, intervals: Sequence[Mapping[str, Any]], backfill_id: str | None = None
    ) -> RunsJob:
        return cls(batch_export_id, tuple(RetriedInterval.from_plain(i) for i in intervals), backfill_id)


Job = BackfillJob | RunJob | IntervalJob | RunsJob
CancellableJob = BackfillJob | RunJob


# -- cancelling ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cancel:
    """What a cancel did: the job's status afterwards, and whether it had already finished."""

    what: str
    status: str
    already_finished: bool

    @property
    def message(self) -> str:
        if self.already_finished:
            return f"{capitalized(self.what)} is already {self.status}; nothing to cancel."
        return f"Cancelled {self.what} (now {self.status})."


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def cancel(job: CancellableJob) -> Operation[Cancel]:
    """Cancel ``job`` if it is still Starting/Running, then read its status back.

    PostHog cancels only Starting/Running jobs and answers 400 for any other, so a refused cancel is read
    back: a finished job (a resent cancel included) means nothing was left to cancel; a job still active
    after the 400 raises it. PostHog can also answer success without cancelling: a job still active after a
    successful cancel raises :class:`PostHogCancelNotEffectiveError`.
    """
    try:
        yield job.cancel_request()
    except PostHogValidationError:
        status = yield from job.status()
        if status in CANCELLABLE_STATUSES:
            raise
        return Cancel(job.describe(), status, already_finished=True)
    status = yield from job.status()
    if status in CANCELLABLE_STATUSES:
        raise PostHogCancelNotEffectiveError(
            f"PostHog answered the cancel of {job.describe()} with success, but the {job.kind} is still "
            f"{status}.",
            kind=job.kind,
            object_id=job.job_id,
            status=status,
        )
    return Cancel(job.describe(), status, already_finished=False)
