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
    from collections.abc import Iterable, Mapping, Sequence

    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a poll found: keep waiting, or a terminal outcome with the facts a message needs.

    ``completed_runs`` are the runs a success counted (what lineage reports); an event carries their
    summaries (:func:`run_summary`, up to :data:`EVENT_RUNS`) and their facts (:func:`run_facts`).
    ``export`` is the export the poll read, if it read one (its destination names the asset of a success).
    """

    outcome: Outcome
    message: str
    remote_status: str | None = None
    failed_runs: tuple[dict[str, Any], ...] = ()
    runs_completed: int = 0
    records_completed: int = 0
    completed_runs: tuple[BatchExportRun, ...] = dataclasses.field(default=(), compare=False, repr=False)
    export: BatchExport | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def done(self) -> bool:
        return self.outcome is not Outcome.RUNNING

    @property
    def incomplete_runs(self) -> tuple[dict[str, Any], ...]:
        """The counted runs that exported fewer records than PostHog counted (:func:`find_incomplete`)."""
        return find_incomplete(self.completed_runs)


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
        "records_total_count": run.records_total_count,
        "bytes_exported": run.bytes_exported,
    }


#: How many run ids :func:`run_facts` lists (the count of runs is always complete).
FACT_RUN_IDS = 100
#: Up to how many counted runs a success event carries whole (:func:`event_runs`); with more, the task that
#: resumes on the event reads them again for lineage.
EVENT_RUNS = 100
#: How many runs a completeness message names.
INCOMPLETE_NAMED = 10


def find_incomplete(runs: Iterable[BatchExportRun]) -> tuple[dict[str, Any], ...]:
    """The runs that exported fewer records than PostHog counted for their interval.

    PostHog counts the records of a run's interval (``records_total_count``) apart from exporting them
    (``records_completed``); a run whose export lost records still ends ``Completed``. Only runs where
    PostHog filled both numbers are judged: PostHog leaves the count empty when it did not (or could not in
    time) count, and nothing can be said about those. More records than counted (events that arrived after
    the count) are not a loss.
    """
    return tuple(
        run_summary(r)
        for r in runs
        if r.records_completed is not None
        and r.records_total_count is not None
        and r.records_completed < r.records_total_count
    )


def incomplete_message(runs: Sequence[Mapping[str, Any]]) -> str:
    """One line naming the incomplete runs (the first :data:`INCOMPLETE_NAMED`) with their counts."""
    named = "; ".join(
        f"run {r.get('id')} {_window_text(r)}: {r.get('records_completed')} of "
        f"{r.get('records_total_count')} record(s)"
        for r in runs[:INCOMPLETE_NAMED]
    )
    more = f"; and {len(runs) - INCOMPLETE_NAMED} more" if len(runs) > INCOMPLETE_NAMED else ""
    return (
        f"{len(runs)} run(s) exported fewer records than PostHog counted for their interval "
        f"(records_completed < records_total_count): {named}{more}."
    )


def _window_text(run: Mapping[str, Any]) -> str:
    return f"[{run.get('data_interval_start')}, {run.get('data_interval_end')})"


def event_runs(decision: Decision) -> list[dict[str, Any]] | None:
    """The counted runs of a success as summaries (what lineage reports after a deferral without reading
    them again), or ``None``: not a success, or more than :data:`EVENT_RUNS` runs."""
    if decision.outcome is not Outcome.SUCCEEDED or len(decision.completed_runs) > EVENT_RUNS:
        return None
    return [run_summary(r) for r in decision.completed_runs]


#: How many runs PostHog lists with an export (``latest_runs``, newest ``created_at`` first).
LATEST_RUNS = 10


def latest_runs_inside(export: BatchExport, start: dt.datetime) -> list[BatchExportRun] | None:
    """The export's ``latest_runs`` when they hold every run of any interval starting at or after ``start``,
    else ``None`` (the runs list must be read; also when PostHog sent no ``latest_runs``).

    PostHog lists the export's 10 newest runs by ``created_at``. A run is created after its interval
    started (a scheduled run when its interval ends, a backfill's runs later), so when fewer than 10 are
    listed, or the oldest listed was created before ``start``, no run of such an interval is left out.
    """
    if not isinstance(export.raw.get("latest_runs"), list):  # a PostHog that does not list them
        return None
    runs = export.latest_runs
    if len(runs) < LATEST_RUNS:
        return list(runs)
    created = [r.created_at for r in runs]
    if any(c is None for c in created):
        return None
    return list(runs) if min(c for c in created if c is not None) < start else None


def run_facts(decision: Decision) -> dict[str, Any]:
    """What a terminal decision says about the runs it judged, as plain values for its event.

    The runs are the counted ones of a success (``completed_runs``) and the failed ones of a failure
    (``failed_runs``; a failure's completed runs are only counted, as ``Completed``, from
    ``runs_completed``). ``records_expected`` and ``bytes_exported`` sum a success's counted runs; they are
    ``None`` on a failure, and unless PostHog filled the number on every counted run (a partial sum would
    read as a loss or a gain that is not).
    """
    completed = decision.completed_runs
    judged = [run_summary(r) for r in completed] + [dict(r) for r in decision.failed_runs]
    judged.sort(key=lambda r: (str(r.get("data_interval_start") or ""), str(r.get("data_interval_end"))))
    by_status: dict[str, int] = {}
    if not completed and decision.runs_completed:
        by_status["Completed"] = decision.runs_completed
    for run in judged:
        status = str(run.get("status") or "")
        by_status[status] = by_status.get(status, 0) + 1
    starts = [str(r["data_interval_start"]) for r in judged if r.get("data_interval_start")]
    ends = [str(r["data_interval_end"]) for r in judged if r.get("data_interval_end")]
    expected = [r.records_total_count for r in completed if r.records_total_count is not None]
    sizes = [r.bytes_exported for r in completed if r.bytes_exported is not None]
    return {
        "runs_by_status": by_status,
        "run_ids": [str(r.get("id")) for r in judged[:FACT_RUN_IDS]],
        "data_interval_start": min(starts, key=_instant) if starts else None,
        "data_interval_end": max(ends, key=_instant) if ends else None,
        "records_expected": sum(expected) if completed and len(expected) == len(completed) else None,
        "bytes_exported": sum(sizes) if completed and len(sizes) == len(completed) else None,
        "incomplete_runs": [dict(r) for r in decision.incomplete_runs],
    }


def _instant(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


def _completed(runs: Iterable[BatchExportRun]) -> tuple[BatchExportRun, ...]:
    return tuple(r for r in runs if run_outcome(r.status) is Outcome.SUCCEEDED)


def _records(runs: Iterable[BatchExportRun]) -> int:
    return sum(r.records_completed or 0 for r in runs)


def decide_backfill(
    backfill: Backfill,
    runs: Sequence[BatchExportRun] | None = None,
    *,
    intervals: Sequence[tuple[dt.datetime, dt.datetime]] | None = None,
    export: BatchExport | None = None,
) -> Decision:
    """Outcome of a backfill, given (once it is terminal) the runs listed over its range.

    A backfill succeeds only when its status is an explicit success, none of its runs failed, and every
    interval of its range (``intervals``, what PostHog exports for it) has a completed run. PostHog marks a
    backfill ``Completed`` even when some of its runs failed; and a backfill that reaches an interval whose
    run is already under way (the scheduled run, or another backfill's) adopts that run and tags no run
    with the backfill, whatever that run's outcome. So an interval without a run of the backfill's own
    counts the export's newest other run of that interval: completed counts (and is reported among the
    completed runs), failed fails, running keeps the wait going, none at all fails (nothing says the data
    was exported) unless PostHog counted no record to export (``total_records_count`` 0). Pass every run
    listed over the range (``list_runs_over_backfill``), not only the backfill's own. ``intervals=None``
    (an open range, or an interval this provider cannot lay out) judges the backfill's own runs only.
    ``export``, when given, explains a cancelled backfill of a paused export.
    """
    outcome = backfill_outcome(backfill.status)
    listed = list(runs or ())
    own_runs = [r for r in listed if r.backfill_id == backfill.id]
    if outcome is Outcome.RUNNING:
        progress = backfill.progress
        detail = f" ({progress.finished_runs}/{progress.total_runs} runs finished)" if progress else ""
        return Decision(
            Outcome.RUNNING, f"Backfill {backfill.id} is {backfill.status}{detail}.", backfill.status
        )
    completed = _completed(own_runs)
    failed = [r for r in own_runs if run_outcome(r.status) is Outcome.FAILED]
    cover = _Coverage.of(own_runs, listed, intervals) if outcome is Outcome.SUCCEEDED else _Coverage()
    if backfill.total_records_count == 0:
        # PostHog counted nothing to export: an interval nobody ran is empty, not missing. (Its count leaves
        # out adopted runs, so those are still judged above.)
        cover = dataclasses.replace(cover, missing=())
    counted = (*completed, *cover.adopted)
    n_done, records = len(counted), _records(counted)
    failed_runs = tuple(run_summary(r) for r in (*failed, *cover.adopted_failed))
    if outcome is Outcome.SUCCEEDED and not failed_runs and not cover.missing:
        if cover.waiting:
            return Decision(Outcome.RUNNING, cover.waiting_message(backfill), backfill.status)
        adopted = f", {len(cover.adopted)} of them adopted (already under way)" if cover.adopted else ""
        return Decision(
            Outcome.SUCCEEDED,
            f"Backfill {backfill.id} completed: {n_done} run(s){adopted}, {records} record(s) exported.",
            backfill.status,
            runs_completed=n_done,
            records_completed=records,
            completed_runs=counted,
        )
    if outcome is Outcome.SUCCEEDED:
        parts = []
        if failed:
            parts.append(f"{len(failed)} of its run(s) failed")
        if cover.adopted_failed:
            parts.append(
                f"{len(cover.adopted_failed)} of its interval(s) were left to run(s) already under way "
                "(which PostHog adopts instead of exporting again) and those failed"
            )
        if cover.missing:
            parts.append(
                f"no run exported {len(cover.missing)} of its {len(intervals or ())} interval(s) "
                f"({_windows(cover.missing)}): neither a run of the backfill nor another run of the export "
                "covers them"
            )
        message = f"Backfill {backfill.id} is {backfill.status} but " + "; ".join(parts) + "."
        return Decision(Outcome.FAILED, message, backfill.status, failed_runs, n_done, records)
    message = f"Backfill {backfill.id} ended with status {backfill.status!r}."
    if export is not None and export.paused and backfill.status == "Cancelled":
        why, recent = paused_explanation(export)
        message = f"Backfill {backfill.id} was cancelled: {why}"
        failed_runs = (*failed_runs, *(run_summary(r) for r in recent if r.backfill_id != backfill.id))
    return Decision(Outcome.FAILED, message, backfill.status, failed_runs, n_done, records)


def _window(start: dt.datetime | None, end: dt.datetime | None) -> str:
    return f"[{_iso(start)}, {_iso(end)})"


def _windows(intervals: Sequence[tuple[dt.datetime, dt.datetime]], most: int = 3) -> str:
    shown = ", ".join(_window(s, e) for s, e in intervals[:most])
    return shown + (f" and {len(intervals) - most} more" if len(intervals) > most else "")


@dataclasses.dataclass(frozen=True)
class _Coverage:
    """How the intervals of a completed backfill without a run of its own were exported."""

    adopted: tuple[BatchExportRun, ...] = ()
    adopted_failed: tuple[BatchExportRun, ...] = ()
    waiting: tuple[BatchExportRun, ...] = ()
    missing: tuple[tuple[dt.datetime, dt.datetime], ...] = ()

    @classmethod
    def of(
        cls,
        own: Sequence[BatchExportRun],
        listed: Sequence[BatchExportRun],
        intervals: Sequence[tuple[dt.datetime, dt.datetime]] | None,
    ) -> _Coverage:
        if not intervals:
            return cls()
        own_by_window: dict[tuple[Any, Any], list[Outcome]] = {}
        for run in own:
            key = (run.data_interval_start, run.data_interval_end)
            own_by_window.setdefault(key, []).append(run_outcome(run.status))
        own_ids = {r.id for r in own}
        low, high = min(s for s, _ in intervals), max(e for _, e in intervals)
        others: dict[tuple[Any, Any], BatchExportRun] = {
            (r.data_interval_start, r.data_interval_end): r
            for r in newest_per_interval([r for r in listed if r.id not in own_ids], low, high)
        }
        adopted: list[BatchExportRun] = []
        adopted_failed: list[BatchExportRun] = []
        waiting: list[BatchExportRun] = []
        missing: list[tuple[dt.datetime, dt.datetime]] = []
        for window in intervals:
            outcomes = own_by_window.get(window, [])
            if Outcome.SUCCEEDED in outcomes or Outcome.FAILED in outcomes:
                continue  # the backfill's own run decides (a failed one fails the whole backfill)
            if outcomes:  # its own run of this interval is still running
                waiting.extend(r for r in own if (r.data_interval_start, r.data_interval_end) == window)
                continue
            other = others.get(window)
            if other is None:
                missing.append(window)
            elif run_outcome(other.status) is Outcome.SUCCEEDED:
                adopted.append(other)
            elif run_outcome(other.status) is Outcome.FAILED:
                adopted_failed.append(other)
            else:
                waiting.append(other)
        return cls(tuple(adopted), tuple(adopted_failed), tuple(waiting), tuple(missing))

    def waiting_message(self, backfill: Backfill) -> str:
        run = self.waiting[0]
        return (
            f"Backfill {backfill.id} is {backfill.status}, but run {run.id} of "
            f"{_window(run.data_interval_start, run.data_interval_end)} is still {run.status}"
            + (f" (and {len(self.waiting) - 1} more)" if len(self.waiting) > 1 else "")
            + "; waiting for it."
        )


def recent_failures(export: BatchExport) -> tuple[BatchExportRun, ...]:
    """The export's newest consecutive failed runs (from the newest runs PostHog lists with the export),
    skipping runs still under way: what an automatic pause follows."""
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    newest_first = sorted(export.latest_runs, key=lambda r: r.created_at or floor, reverse=True)
    streak: list[BatchExportRun] = []
    for run in newest_first:
        outcome = run_outcome(run.status)
        if outcome is Outcome.RUNNING:
            continue
        if outcome is not Outcome.FAILED:
            break
        streak.append(run)
    return tuple(streak)


def paused_explanation(export: BatchExport) -> tuple[str, tuple[BatchExportRun, ...]]:
    """Why a wait on a paused export cannot succeed, and the failed runs that explain an automatic pause.

    PostHog pauses an export after 3 consecutive failed runs (10 in older versions) and then cancels its
    running backfills, without saying so on the backfill; the export's newest runs tell.
    """
    failures = recent_failures(export)
    text = f"batch export {export.id} is paused"
    if failures:
        text += (
            f"; its {len(failures)} most recent run(s) failed (PostHog pauses an export after 3 "
            "consecutive failed runs and cancels its running backfills). Fix what made them fail, then "
            "unpause the export."
        )
    else:
        text += " (its most recent runs did not fail: it was paused by hand or through the API)."
    return text, failures


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


def covered_until(counted: Sequence[BatchExportRun], start: dt.datetime) -> dt.datetime:
    """How far from ``start`` the runs (``newest_per_interval``, oldest first) cover without a gap."""
    cursor = start
    for run in counted:
        assert run.data_interval_start is not None and run.data_interval_end is not None
        if run.data_interval_start > cursor:
            break
        cursor = max(cursor, run.data_interval_end)
    return cursor


def decide_interval(
    runs: Sequence[BatchExportRun],
    start: dt.datetime,
    end: dt.datetime,
    *,
    export: BatchExport | None = None,
) -> Decision:
    """Outcome of "every run covering ``[start, end)``".

    Runs are grouped by their own interval and only the newest run of each interval counts, so a failed
    scheduled run that was retried and then completed does not fail the wait. The interval is done when the
    counted runs cover ``[start, end)`` without a gap and all of them completed; any failed one fails it.
    While runs are missing, ``export`` (when given) is checked: a paused export schedules no run, so the
    wait fails at once, saying why.
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
    cursor = covered_until(counted, start)
    if cursor < end and export is not None and export.paused:
        why, recent = paused_explanation(export)
        return Decision(
            Outcome.FAILED,
            f"No run will come for {window} (covered up to {cursor.isoformat()}): {why}",
            None,
            tuple(run_summary(r) for r in recent),
            n_done,
            records,
        )
    running = [r for r in counted if run_outcome(r.status) is Outcome.RUNNING]
    if running:
        return Decision(
            Outcome.RUNNING, f"{len(running)} run(s) covering {window} still running.", running[0].status
        )
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


# -- retried runs --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetriedInterval:
    """One data interval whose failed run was retried (or whose retry is already under way).

    Only runs created after ``since`` (the replaced run's ``created_at``), other than ``replaces`` itself,
    count: right after a retry PostHog has not created its run yet, and the failed run it replaces must not
    be read as the retry failing. ``replaces=None`` counts every run of the interval (a retry already
    running when the task looked).
    """

    start: dt.datetime
    end: dt.datetime
    replaces: str | None = None
    since: dt.datetime | None = None

    def counts(self, run: BatchExportRun) -> bool:
        if (run.data_interval_start, run.data_interval_end) != (self.start, self.end):
            return False
        if self.replaces is not None and run.id == self.replaces:
            return False
        return self.since is None or run.created_at is None or run.created_at > self.since

    def newest(self, runs: Iterable[BatchExportRun]) -> BatchExportRun | None:
        """The newest counted run of this interval (the newest run of an interval is what counts)."""
        counted = newest_per_interval([r for r in runs if self.counts(r)], self.start, self.end)
        return counted[0] if counted else None

    def to_plain(self) -> dict[str, str | None]:
        """Plain values (for a trigger's kwargs and a deferral's resume kwargs)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "replaces": self.replaces,
            "since": _iso(self.since),
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> RetriedInterval:
        since = data.get("since")
        return cls(
            start=dt.datetime.fromisoformat(str(data["start"])),
            end=dt.datetime.fromisoformat(str(data["end"])),
            replaces=None if data.get("replaces") is None else str(data["replaces"]),
            since=None if since is None else dt.datetime.fromisoformat(str(since)),
        )

    def describe(self) -> str:
        return _window(self.start, self.end)


def decide_retried(runs: Sequence[BatchExportRun], intervals: Sequence[RetriedInterval]) -> Decision:
    """Outcome of "every retried interval has a completed run": the newest counted run of each interval
    (:meth:`RetriedInterval.counts`) decides it. Any failed one fails the wait at once; an interval whose
    retry has no run yet, or a run still running, keeps it going; no interval at all is a success (nothing
    failed, nothing was retried)."""
    newest = {interval: interval.newest(runs) for interval in intervals}
    counted = [r for r in newest.values() if r is not None]
    completed = _completed(counted)
    n_done, records = len(completed), _records(completed)
    failed = tuple(run_summary(r) for r in counted if run_outcome(r.status) is Outcome.FAILED)
    total = len(intervals)
    if failed:
        first = failed[0]
        return Decision(
            Outcome.FAILED,
            f"{len(failed)} of the {total} retried interval(s) failed again: run {first['id']} of "
            f"[{first['data_interval_start']}, {first['data_interval_end']}) ended {first['status']!r}"
            + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
            + ".",
            str(first["status"]),
            failed,
            n_done,
            records,
            completed_runs=completed,
        )
    waiting = [i for i, r in newest.items() if r is None or run_outcome(r.status) is Outcome.RUNNING]
    if waiting:
        first_run = newest[waiting[0]]
        what = "has no run yet" if first_run is None else f"is {first_run.status} (run {first_run.id})"
        return Decision(
            Outcome.RUNNING,
            f"{n_done} of {total} retried interval(s) completed; {waiting[0].describe()} {what}"
            + (f" (and {len(waiting) - 1} more waiting)" if len(waiting) > 1 else "")
            + ".",
            None if first_run is None else first_run.status,
        )
    if not intervals:
        return Decision(Outcome.SUCCEEDED, "No failed run to retry: nothing was retried.", "Completed")
    return Decision(
        Outcome.SUCCEEDED,
        f"All {total} retried interval(s) completed: {records} record(s) exported.",
        "Completed",
        runs_completed=n_done,
        records_completed=records,
        completed_runs=completed,
    )
