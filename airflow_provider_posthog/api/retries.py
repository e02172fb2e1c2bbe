"""Retry what failed: find the failed runs of a backfill, of a data-interval range or of given run ids, and
retry each one (sans-I/O).

Which runs: for each data interval, the newest run counts. An interval whose newest run failed (``Failed``,
``FailedRetryable``, ``FailedBilling``, ``Cancelled``, ``Terminated``, ``TimedOut``) is retried; one whose
newest run completed after a failure was fixed already; one whose newest run is still ``Starting`` or
``Running`` after a failure is being retried already and is waited for, never retried (PostHog's retry of a
run still under way adopts it instead of exporting again). A newest run with a status this provider does
not know fails closed: it is neither retried nor taken as done.

Each retry is PostHog's own (``POST .../runs/{id}/retry/``, through :func:`~airflow_provider_posthog.api.
backfills.retry_run`): a one-interval backfill. The result is a
:class:`~airflow_provider_posthog.api.jobs.RunsJob` to wait on: every retried interval must end with a
completed run. Runs are read by data interval, so runs of any age are found (PostHog's list hides runs
created more than 7 days ago only when listing by creation time).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from airflow_provider_posthog.api.backfills import retry_run
from airflow_provider_posthog.api.decisions import RetriedInterval, newest_per_interval
from airflow_provider_posthog.api.endpoints import (
    get_backfill,
    get_batch_export,
    get_run,
    list_runs,
    list_runs_over_backfill,
)
from airflow_provider_posthog.api.http import unexpected
from airflow_provider_posthog.api.jobs import RunsJob, _schedule, expected_intervals
from airflow_provider_posthog.api.statuses import RUN_STATUSES, Outcome, run_outcome
from airflow_provider_posthog.exceptions import PostHogBackfillAlreadyRunningError, PostHogError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Sequence

    from airflow_provider_posthog.api.backfills import BackfillLookup
    from airflow_provider_posthog.api.http import DateLike, Operation
    from airflow_provider_posthog.api.models import BatchExportRun

log = logging.getLogger(__name__)

#: The run statuses a retry is for: every final status that is not a success.
RETRYABLE_STATUSES: frozenset[str] = frozenset(s for s, o in RUN_STATUSES.items() if o is Outcome.FAILED)

Window = tuple["dt.datetime", "dt.datetime"]


@dataclasses.dataclass(frozen=True)
class RetryPlan:
    """What to do about the failed runs found: retry ``to_retry`` (the newest failed run of each interval),
    wait for ``under_way`` (an interval whose newest run is running after a failure). ``missing`` are
    intervals of a backfill's range with no run at all (a cancelled backfill stops before them): there is
    no run to retry there."""

    batch_export_id: str
    to_retry: tuple[BatchExportRun, ...] = ()
    under_way: tuple[BatchExportRun, ...] = ()
    missing: tuple[Window, ...] = ()
    fixed: int = 0
    backfill_id: str | None = None

    @property
    def empty(self) -> bool:
        """Nothing to retry and nothing to wait for."""
        return not self.to_retry and not self.under_way

    def describe(self) -> str:
        parts = [f"{len(self.to_retry)} failed run(s) to retry"]
        if self.under_way:
            parts.append(f"{len(self.under_way)} interval(s) already being retried")
        if self.fixed:
            parts.append(f"{self.fixed} failed interval(s) completed since")
        if self.missing:
            parts.append(f"{len(self.missing)} interval(s) with no run at all")
        return ", ".join(parts)


def _key(run: BatchExportRun) -> Window | None:
    if run.data_interval_start is None or run.data_interval_end is None:
        return None
    return (run.data_interval_start, run.data_interval_end)


def plan_retries(
    batch_export_id: str,
    runs: Sequence[BatchExportRun],
    *,
    scope: Sequence[Window] | None = None,
    named: Iterable[str] = (),
    backfill_id: str | None = None,
) -> RetryPlan:
    """Sort the intervals of ``runs`` (only those in ``scope`` when given) by their newest run.

    An interval is looked at when one of its runs failed, or when it holds a run of ``named`` (run ids a
    user asked to retry: a named run still running is waited for, a named run whose interval completed is
    left alone). An interval of ``scope`` with no run at all is ``missing``.
    """
    named = frozenset(named)
    by_window: dict[Window, list[BatchExportRun]] = {}
    for run in runs:
        key = _key(run)
        if key is not None and (scope is None or key in scope):
            by_window.setdefault(key, []).append(run)
    to_retry: list[BatchExportRun] = []
    under_way: list[BatchExportRun] = []
    fixed = 0
    for key in sorted(by_window):
        group = by_window[key]
        had_failure = any(run_outcome(r.status) is Outcome.FAILED for r in group)
        if not had_failure and not any(r.id in named for r in group):
            continue
        (newest,) = newest_per_interval(group, *key)  # every run of the group has this interval
        outcome = run_outcome(newest.status)
        if outcome is Outcome.RUNNING:
            under_way.append(newest)
        elif outcome is Outcome.SUCCEEDED:
            fixed += 1 if had_failure else 0
        elif newest.status in RETRYABLE_STATUSES:
            to_retry.append(newest)
        else:
            raise unexpected(
                f"Run {newest.id} of batch export {batch_export_id} has status {newest.status!r}, which this "
                "provider does not know: it is neither retried nor taken as finished."
            )
    missing = tuple(w for w in scope or () if w not in by_window)
    return RetryPlan(batch_export_id, tuple(to_retry), tuple(under_way), missing, fixed, backfill_id)


# -- finding the failed runs ---------------------------------------------------------------------------------


def failed_runs_of_backfill(batch_export_id: str, backfill_id: str) -> Operation[RetryPlan]:
    """The failed runs over a finished backfill's range: its own, and those of intervals it left to runs
    already under way (PostHog adopts those and tags no run with the backfill).

    A backfill still ``Starting``/``Running`` is refused (its runs are not all there yet). Three requests:
    the backfill, the export (its interval grid) and the runs over the range.
    """
    backfill = yield from get_backfill(batch_export_id, backfill_id)
    if backfill.outcome is Outcome.RUNNING:
        raise PostHogError(
            f"Backfill {backfill_id} of batch export {batch_export_id} is {backfill.status}: its runs are "
            "retried once it has finished."
        )
    export = yield from get_batch_export(batch_export_id)
    schedule = _schedule(export, backfill)
    runs = yield from list_runs_over_backfill(batch_export_id, backfill, schedule=schedule)
    intervals = expected_intervals(backfill, schedule)
    if intervals is None:  # an open range or an unknown grid: the backfill's own runs say which intervals
        scope = sorted({k for r in runs if r.backfill_id == backfill.id and (k := _key(r)) is not None})
    else:
        scope = [(s, e) for s, e in intervals]
    plan = plan_retries(batch_export_id, runs, scope=scope, backfill_id=backfill.id)
    if backfill.total_records_count == 0:  # PostHog counted nothing: an interval nobody ran is empty
        plan = dataclasses.replace(plan, missing=())
    return plan


def failed_runs_between(batch_export_id: str, start_at: DateLike, end_at: DateLike) -> Operation[RetryPlan]:
    """The failed runs whose data interval lies inside ``[start_at, end_at)``, whoever ran them (schedule,
    backfill, retry): one list of runs by data interval, all pages."""
    runs = yield from list_runs(batch_export_id, ordering="data_interval_start", start=start_at, end=end_at)
    return plan_retries(batch_export_id, runs)


def failed_runs_by_id(batch_export_id: str, run_ids: Sequence[str]) -> Operation[RetryPlan]:
    """The given runs (any age), each judged by the newest run of its interval: a run retried since and
    completed is not retried again. Two requests a run: the run, and the runs of its interval."""
    runs: dict[str, BatchExportRun] = {}
    scope: list[Window] = []
    for run_id in run_ids:
        run = yield from get_run(batch_export_id, run_id)
        key = _key(run)
        if key is None:
            raise unexpected(f"PostHog run {run_id} has no data interval; it cannot be retried.")
        if key in scope:
            continue
        scope.append(key)
        listed = yield from list_runs(
            batch_export_id, ordering="data_interval_start", start=key[0], end=key[1]
        )
        runs.update({r.id: r for r in (run, *listed)})
    return plan_retries(batch_export_id, list(runs.values()), scope=scope, named=run_ids)


# -- retrying them -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Retried:
    """What :func:`retry_failed` did: the job to wait on, the backfills PostHog started, the runs retried."""

    job: RunsJob
    backfill_ids: tuple[str, ...] = ()
    retried_run_ids: tuple[str, ...] = ()


def retry_failed(plan: RetryPlan, *, lookup: BackfillLookup) -> Operation[Retried]:
    """Retry each run of ``plan.to_retry`` (one after the other) and return the job that waits for every
    interval of the plan, retried or already under way.

    A retry PostHog refuses because the same interval is already being backfilled (the retry an earlier
    try of the task started, whose run has not appeared yet) is waited for instead.
    """
    awaited: list[RetriedInterval] = []
    backfill_ids: list[str] = []
    retried: list[str] = []
    for run in plan.to_retry:
        key = _key(run)
        assert key is not None
        try:
            backfill = yield from retry_run(plan.batch_export_id, run.id, lookup=lookup)
        except PostHogBackfillAlreadyRunningError as exc:
            log.info(
                "Run %s: its interval is already being backfilled (backfill %s); waiting for that.",
                run.id,
                exc.backfill_id,
            )
        else:
            log.info(
                "Retrying run %s (%s over [%s, %s)): backfill %s.",
                run.id,
                run.status,
                key[0].isoformat(),
                key[1].isoformat(),
                backfill.id,
            )
            backfill_ids.append(backfill.id)
            retried.append(run.id)
        awaited.append(RetriedInterval(key[0], key[1], replaces=run.id, since=run.created_at))
    for run in plan.under_way:
        key = _key(run)
        assert key is not None
        log.info(
            "Run %s over [%s, %s) is %s: waiting for it.",
            run.id,
            key[0].isoformat(),
            key[1].isoformat(),
            run.status,
        )
        awaited.append(RetriedInterval(key[0], key[1]))
    job = RunsJob(plan.batch_export_id, tuple(awaited), plan.backfill_id)
    return Retried(job, tuple(backfill_ids), tuple(retried))
