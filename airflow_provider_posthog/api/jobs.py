"""The jobs a task waits on or stops, and the one poll and one cancel of each (sans-I/O).

A job is a value (ids, an interval): a backfill, a run, or the runs of a scheduled export covering an
interval. Its ``poll()`` reads what PostHog says about it and returns the one
:class:`~airflow_provider_posthog.api.decisions.Decision`; :func:`cancel` stops a backfill or run if
PostHog still lets anyone and reports what PostHog really did. The operator's sync loop, a sensor's poke, a
trigger's poll and every cancel (cancel operators, timed-out or killed waits) go through these operations,
driven by the hook's ``run(op)`` / ``await arun(op)``, so a rule about PostHog's answers is written once.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from airflow_provider_posthog.api.decisions import decide_backfill, decide_interval, decide_run
from airflow_provider_posthog.api.endpoints import (
    ANY_AGE,
    get_backfill,
    get_run,
    list_backfill_runs,
    list_runs,
)
from airflow_provider_posthog.api.http import RequestSpec, export_path
from airflow_provider_posthog.api.statuses import CANCELLABLE_STATUSES
from airflow_provider_posthog.exceptions import PostHogCancelNotEffectiveError, PostHogValidationError

if TYPE_CHECKING:
    import datetime as dt

    from airflow_provider_posthog.api.decisions import Decision
    from airflow_provider_posthog.api.http import Operation


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
        """The backfill's status; once it is terminal, its runs too (a completed one may hide failed runs)."""
        backfill = yield from get_backfill(self.batch_export_id, self.backfill_id)
        decision = decide_backfill(backfill)
        if not decision.done:
            return decision
        runs = yield from list_backfill_runs(self.batch_export_id, backfill)
        return decide_backfill(backfill, runs)

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
        return decide_run((yield from get_run(self.batch_export_id, self.run_id)))

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

    def poll(self) -> Operation[Decision]:
        """One list of the runs inside the interval; the newest run of each sub-interval counts."""
        runs = yield from list_runs(
            self.batch_export_id,
            ordering="-data_interval_start",
            start=self.start,
            end=self.end,
        )
        return decide_interval(runs, self.start, self.end)


Job = BackfillJob | RunJob | IntervalJob
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
