"""Remote state to an outcome: the one table from backfills and runs to succeed / fail / keep waiting.

A decision is ``RUNNING`` (keep waiting) or terminal, with the facts a message needs. Statuses map through
``api.statuses`` only, so an unknown status fails closed. The polls of ``api.jobs`` are the only callers on
the waiting paths; nothing here needs Airflow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.statuses import Outcome, backfill_outcome, run_outcome

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from airflow_provider_posthog.api.models import Backfill, BatchExportRun


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a poll found: keep waiting, or a terminal outcome with the facts a message needs.

    ``completed_runs`` are the runs a success counted (what lineage reports); they stay in the process that
    polled and never enter an event.
    """

    outcome: Outcome
    message: str
    remote_status: str | None = None
    failed_runs: tuple[dict[str, Any], ...] = ()
    runs_completed: int = 0
    records_completed: int = 0
    completed_runs: tuple[BatchExportRun, ...] = dataclasses.field(default=(), compare=False, repr=False)

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


def _completed(runs: Iterable[BatchExportRun]) -> tuple[BatchExportRun, ...]:
    return tuple(r for r in runs if run_outcome(r.status) is Outcome.SUCCEEDED)


def _records(runs: Iterable[BatchExportRun]) -> int:
    return sum(r.records_completed or 0 for r in runs)


def decide_backfill(backfill: Backfill, runs: Sequence[BatchExportRun] | None = None) -> Decision:
    """Outcome of a backfill, given its runs once it is terminal.

    A backfill succeeds only when its status is an explicit success **and** none of its runs failed:
    PostHog marks a backfill ``Completed`` even when some of its runs failed, and the user asked for every
    run to complete. Pass every run of the backfill (``list_backfill_runs``), including a first run that
    PostHog aligned down to before ``start_at``.
    """
    outcome = backfill_outcome(backfill.status)
    own_runs = [r for r in runs or () if r.backfill_id == backfill.id]
    completed = _completed(own_runs)
    n_done, records = len(completed), _records(completed)
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
            completed_runs=completed,
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
            completed_runs=(run,),
        )
    return Decision(
        Outcome.FAILED, f"Run {run.id} ended with status {run.status!r}.", run.status, (run_summary(run),)
    )


def newest_per_interval(
    runs: Sequence[BatchExportRun], start: dt.datetime, end: dt.datetime
) -> list[BatchExportRun]:
    """The runs inside ``[start, end)``, only the newest of each data interval (a retried interval counts
    once), oldest interval first."""
    latest: dict[tuple[dt.datetime, dt.datetime], BatchExportRun] = {}
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    for run in runs:
        s, e = run.data_interval_start, run.data_interval_end
        if s is None or e is None or s < start or e > end:
            continue
        current = latest.get((s, e))
        if current is None or (run.created_at or floor) >= (current.created_at or floor):
            latest[(s, e)] = run
    return [latest[key] for key in sorted(latest)]


def decide_interval(runs: Sequence[BatchExportRun], start: dt.datetime, end: dt.datetime) -> Decision:
    """Outcome of "every run covering ``[start, end)``".

    Runs are grouped by their own interval and only the newest run of each interval counts, so a failed
    scheduled run that was retried and then completed does not fail the wait. The interval is done when the
    counted runs cover ``[start, end)`` without a gap and all of them completed; any failed one fails it.
    """
    counted = newest_per_interval(runs, start, end)
    failed = tuple(run_summary(r) for r in counted if run_outcome(r.status) is Outcome.FAILED)
    completed = _completed(counted)
    n_done, records = len(completed), _records(completed)
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
        completed_runs=completed,
    )
