"""The emulated clock and THE state machine for runs and backfills.

Emulated time = real UTC wall time + an offset that ``advance()`` grows. Every transition is scheduled at an
absolute emulated timestamp when its cause happens (a backfill is created, a run starts ...) and applied
lazily,
in timestamp order, whenever a request or control call comes in (``catch_up``). Objects therefore carry the
timestamps they would have had if a worker had moved them in real time, and ``advance(n)`` is deterministic.

With ``schedule_runs`` on, unpaused exports also fire like PostHog's schedules: catching up first starts one
run (``backfill=None``) for every interval that ended since the export was last looked at, created at the
interval's end, and those runs then move through the same timeline as backfill runs.

A run is a Temporal workflow whose id is ``{export id}-{data_interval_end}Z`` whoever starts it (schedule,
backfill, retry), so a backfill reaching an interval whose run is still active adopts that run: it writes no
run of its own, waits for it and moves on, whatever its outcome. A run that ends ``Failed`` may pause its
export and cancel its running backfills (``auto_pause``), as PostHog's ``finish_batch_export_run`` does.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .timeutil import INTERVALS, Cadence, intervals_ending_in, whole_intervals

if TYPE_CHECKING:
    from .settings import EmulatorSettings
    from .store import Store

UTC = timezone.utc
ACTIVE = frozenset({"Starting", "Running"})
RUN_FAILURES = frozenset(
    {"Failed", "FailedRetryable", "FailedBilling", "Terminated", "TimedOut", "Cancelled"}
)
_TINY = timedelta(microseconds=1)
AUTO_PAUSE_NOTE = "Paused due to exceeding failure threshold"
# how many of an export's latest runs PostHog looks at before auto-pausing it, by interval
FAILURE_CHECK_WINDOWS = {"hour": 24, "day": 7, "week": 4}


class Clock:
    """Real UTC time plus an offset; ``advance`` only ever moves it forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the emulated clock cannot go backwards")
        self.offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        self.offset = timedelta(0)


class StateMachine:
    """Schedules and applies run/backfill transitions (see module docstring)."""

    def __init__(self, store: Store, settings: EmulatorSettings) -> None:
        self.store = store
        self.settings = settings
        self._heap: list[tuple[datetime, int, str, str, int]] = []
        self._seq = itertools.count()

    def reset(self) -> None:
        self._heap.clear()

    # -- scheduling -------------------------------------------------------------------------------------
    def _at(self, when: datetime, kind: str, obj: dict[str, Any]) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, obj["id"], obj["_version"]))

    @staticmethod
    def _bump(obj: dict[str, Any]) -> None:
        """Invalidate the object's pending events (they carry the old version)."""
        obj["_version"] += 1

    def catch_up(self, now: datetime) -> None:
        if self.settings.schedule_runs:
            self._fire_schedules(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _seq, kind, obj_id, version = heapq.heappop(heap)
            if kind.startswith("run_"):
                run = self.store.runs.get(obj_id)
                if run is None or run["_version"] != version:
                    continue
                if kind == "run_running":
                    self._run_running(run, when)
                else:
                    self._run_finish(run, when)
            else:
                backfill = self.store.backfills.get(obj_id)
                if backfill is None or backfill["_version"] != version:
                    continue
                if kind == "backfill_visible":
                    self._backfill_visible(backfill, when)
                elif kind == "backfill_running":
                    self._backfill_running(backfill, when)
                else:
                    self._backfill_next_run(backfill, when)

    def _seconds(self, value: float) -> timedelta:
        return timedelta(seconds=value)

    def cadence(self, export: dict[str, Any]) -> Cadence:
        return Cadence.of_export(export, generation=self.settings.api_generation)

    # -- schedules --------------------------------------------------------------------------------------
    def register_export(self, export: dict[str, Any], now: datetime) -> None:
        """Start scheduling a new export at ``now`` (with ``schedule_history`` hours of past intervals)."""
        if self.settings.schedule_runs:
            export["_sched_cursor"] = now - timedelta(hours=self.settings.schedule_history)

    def _fire_schedules(self, now: datetime) -> None:
        """Start the scheduled runs of intervals that ended in ``(cursor, now]`` for every unpaused export.

        A paused export's cursor follows the clock, so intervals that end while it is paused never run
        (Temporal skips them too) and unpausing resumes with the next interval end.
        """
        history = timedelta(hours=self.settings.schedule_history)
        for export in list(self.store.exports.values()):
            if export["deleted"] or not export["_schedule"] or export["interval"] not in INTERVALS:
                continue
            cursor = export.get("_sched_cursor")
            if export["paused"]:
                export["_sched_cursor"] = now
                continue
            if cursor is None:
                cursor = now - history
            export["_sched_cursor"] = max(cursor, now)
            if cursor >= now:
                continue
            for start, end in intervals_ending_in(cursor, now, self.cadence(export)):
                if export["start_at"] is not None and start < export["start_at"]:
                    continue
                if export["end_at"] is not None and end > export["end_at"]:
                    continue
                self.start_run(export, (start, end), end, None)

    def forget_schedules(self) -> None:
        """Scheduling (re)starts from the next catch-up (used when ``schedule_runs`` is switched)."""
        for export in self.store.exports.values():
            export["_sched_cursor"] = None

    # -- runs -------------------------------------------------------------------------------------------
    def schedule_run(self, run: dict[str, Any], started: datetime, duration_s: float | None = None) -> None:
        """Plan Starting -> Running -> finished for a run created (or seeded) at ``started``.

        ``duration_s`` overrides ``run_duration`` for this run (a seeded run kept active for longer); it stays
        ``Starting`` for the usual share of the usual duration.
        """
        usual = self._seconds(self.settings.run_duration)
        duration = usual if duration_s is None else self._seconds(duration_s)
        starting = min(duration, usual) * self.settings.run_starting_fraction
        run["_running_at"] = started + starting
        if run["status"] == "Starting":
            self._at(run["_running_at"], "run_running", run)
        self._at(started + duration, "run_finish", run)

    def start_run(
        self,
        export: dict[str, Any],
        interval: tuple[datetime | None, datetime],
        when: datetime,
        backfill_id: str | None,
    ) -> dict[str, Any]:
        run = self.store.new_run(export["id"], interval[0], interval[1], "Starting", when, backfill_id)
        if self.settings.api_generation == "docs":
            # Older PostHog counts the interval's records when it creates the run (its start activity).
            run["records_total_count"] = self.settings.records_per_run
        self.schedule_run(run, when)
        return run

    def _run_running(self, run: dict[str, Any], when: datetime) -> None:
        if run["status"] != "Starting":
            return
        run["status"] = "Running"
        run["last_updated_at"] = when
        self.log_start(run, when)

    def log_start(self, run: dict[str, Any], when: datetime) -> None:
        if run.get("_logged_start"):
            return
        run["_logged_start"] = True
        start = run["data_interval_start"]
        self.store.add_log(
            run["batch_export"],
            run["_instance_id"],
            when,
            "INFO",
            f"Batch export for range {_iso(start)} - {_iso(run['data_interval_end'])} starting",
        )

    def _run_finish(self, run: dict[str, Any], when: datetime) -> None:
        if run["status"] not in ACTIVE:
            return
        queue = self.store.fail_queue.get(run["batch_export"])
        if queue:
            status, error = queue.pop(0)
            self.finish_run(run, status, when, latest_error=error)
        else:
            self.finish_run(run, "Completed", when)

    def finish_run(
        self, run: dict[str, Any], status: str, when: datetime, *, latest_error: str | None = None
    ) -> None:
        """Put a run into a final (or any) status and let its backfill react."""
        was_active = run["status"] in ACTIVE
        self._bump(run)
        run["status"] = status
        run["last_updated_at"] = when
        if status in ACTIVE:
            self.schedule_run(run, when)
            return
        run["finished_at"] = when
        if latest_error is not None:
            run["latest_error"] = latest_error
        if status == "Completed":
            if run["records_completed"] is None:
                # The interval holds what PostHog counted (``records_per_run`` unless the run was seeded
                # with a count); the export writes all of it, less what ``lose_records`` queued.
                counted = run["records_total_count"]
                held = self.settings.records_per_run if counted is None else counted
                run["records_completed"] = held - self._lost(run, held)
                if counted is None:
                    # Current PostHog creates the run without a count and writes the interval's count
                    # afterwards (its reconciliation of exported and stored events): by the run's end here.
                    run["records_total_count"] = held
            if run["records_total_count"] is None:
                run["records_total_count"] = run["records_completed"]
            if run["bytes_exported"] is None:
                run["bytes_exported"] = run["records_completed"] * 512
        if was_active:
            span = when - run["created_at"]
            if not run.get("_logged_start"):
                self.log_start(run, run["created_at"] + span / 10 if span > _TINY else when)
            log_at = max(
                when - min(timedelta(milliseconds=1), (when - run["created_at"]) / 4), run["created_at"]
            )
            if status == "Completed":
                self.store.add_log(
                    run["batch_export"],
                    run["_instance_id"],
                    log_at,
                    "INFO",
                    f"Successfully finished exporting batch {_iso(run['data_interval_start'])} - "
                    f"{_iso(run['data_interval_end'])}: {run['records_completed']} records exported",
                )
            elif status == "Cancelled":
                self.store.add_log(
                    run["batch_export"], run["_instance_id"], log_at, "WARNING", "Batch export was cancelled"
                )
            else:
                self.store.add_log(
                    run["batch_export"],
                    run["_instance_id"],
                    log_at,
                    "ERROR",
                    f"Batch export failed: {run['latest_error'] or status}",
                )
        # PostHog's backfill workflow catches a failed, cancelled, terminated or timed-out run and carries
        # on with the next interval; the backfill still ends Completed.
        # So does a backfill that adopted this run (it was already running when the backfill reached its
        # interval): it writes no run of its own and moves on whatever the outcome.
        if was_active:
            waiting = [run["backfill"], *run.get("_adopted_by", ())]
            for backfill_id in (b for b in waiting if b is not None):
                backfill = self.store.backfills.get(backfill_id)
                if backfill is not None and backfill.get("_simulated") and backfill["status"] in ACTIVE:
                    self._at(
                        when + self._seconds(self.settings.backfill_run_delay), "backfill_next_run", backfill
                    )
        if was_active and status == "Failed" and self.settings.auto_pause:
            self._check_failure_threshold(run, when)

    def _lost(self, run: dict[str, Any], held: int) -> int:
        """Records a completing run fails to export (``Control.lose_records``): the queued count or
        fraction of what its interval holds, at most all of it."""
        queue = self.store.lose_queue.get(run["batch_export"])
        if not queue:
            return 0
        count, fraction = queue.pop(0)
        lost = count if count is not None else max(1, round(held * (fraction or 0.0)))
        return max(0, min(held, lost))

    def _check_failure_threshold(self, run: dict[str, Any], when: datetime) -> None:
        """PostHog's ``finish_batch_export_run`` on a ``Failed`` run (not ``FailedRetryable``/``Cancelled``).

        When at least ``auto_pause_threshold`` of the export's latest runs (by ``last_updated_at``; 24 for an
        hourly export, 7 daily, 4 weekly, an hour's worth for every-N-minutes) are ``Failed``, the export is
        paused (unless it already is, or its schedule is gone) and every ``Running`` backfill of it is
        cancelled; both are logged as warnings on the run.
        """
        export = self.store.exports.get(run["batch_export"])
        if export is None:
            return
        window = _failure_check_window(export["interval"])
        latest = sorted(
            self.store.runs_of_export(export["id"]),
            key=lambda r: (r["last_updated_at"], r["id"]),
            reverse=True,
        )[:window]
        if sum(1 for r in latest if r["status"] == "Failed") < self.settings.auto_pause_threshold:
            return
        log = self.store.add_log
        if not export["paused"] and export["_schedule"]:
            export["paused"] = True
            export["last_paused_at"] = when
            export["last_updated_at"] = when
            export["_pause_note"] = AUTO_PAUSE_NOTE
            log(
                export["id"],
                run["_instance_id"],
                when,
                "WARNING",
                "Batch export was automatically paused due to exceeding failure threshold and exhausting "
                "all automated retries.The batch export can be unpaused after addressing any errors.",
            )
        running = [
            b
            for b in self.store.backfills_of_export(export["id"], visible_only=False)
            if b["status"] == "Running"
        ]
        for backfill in running:
            self.finish_backfill(backfill, "Cancelled", when)
        if running:
            n = len(running)
            log(
                export["id"],
                run["_instance_id"],
                when,
                "WARNING",
                f"{n} ongoing batch export backfill{'s' if n > 1 else ''} {'were' if n > 1 else 'was'} "
                "cancelled due to exceeding failure threshold  and exhausting all automated retries."
                "The backfill can be triggered again after addressing any errors.",
            )

    # -- backfills --------------------------------------------------------------------------------------
    def start_backfill(self, backfill: dict[str, Any], requested: datetime) -> None:
        """Plan a backfill requested at ``requested``: its row appears after ``backfill_row_delay``."""
        backfill["_simulated"] = True
        backfill["_visible"] = False
        self._at(requested + self._seconds(self.settings.backfill_row_delay), "backfill_visible", backfill)

    def _backfill_visible(self, backfill: dict[str, Any], when: datetime) -> None:
        backfill["_visible"] = True
        backfill["created_at"] = when
        backfill["last_updated_at"] = when
        if self.settings.api_generation == "new":
            backfill["status"] = "Starting"
            self._at(when + self._seconds(self.settings.backfill_starting_time), "backfill_running", backfill)
        else:
            backfill["status"] = "Running"
            self._at(when + self._seconds(self.settings.backfill_run_delay), "backfill_next_run", backfill)

    def _schedule_gone(self, backfill: dict[str, Any], when: datetime) -> bool:
        """The backfill workflow's first step describes the export's schedule; a deleted export has none.

        PostHog raises a non-retryable ``TemporalScheduleNotFoundError`` there: the backfill ends ``Failed``
        without a run.
        """
        export = self.store.exports.get(backfill["batch_export"])
        if export is not None and not export["deleted"] and export["_schedule"]:
            return False
        self.finish_backfill(backfill, "Failed", when)
        return True

    def _backfill_running(self, backfill: dict[str, Any], when: datetime) -> None:
        if self._schedule_gone(backfill, when):
            return
        backfill["status"] = "Running"
        backfill["last_updated_at"] = when
        intervals = backfill["_intervals"]
        backfill["adjusted_start_at"] = backfill.get("_adjusted_start", backfill["start_at"])
        backfill["total_records_count"] = len(intervals) * self.settings.records_per_run
        self._at(when + self._seconds(self.settings.backfill_run_delay), "backfill_next_run", backfill)

    def _backfill_next_run(self, backfill: dict[str, Any], when: datetime) -> None:
        if backfill["status"] not in ACTIVE:
            return
        export = self.store.exports.get(backfill["batch_export"])
        index = backfill["_next_index"]
        intervals = backfill["_intervals"]
        if index == 0 and self._schedule_gone(backfill, when):
            return
        if export is None or index >= len(intervals):
            self.finish_backfill(backfill, "Completed", when)
            return
        backfill["_next_index"] = index + 1
        active = self.active_run_ending(export["id"], intervals[index][1])
        if active is not None:
            # Temporal answers WorkflowAlreadyStartedError: wait for that run, tag nothing with this backfill
            active.setdefault("_adopted_by", []).append(backfill["id"])
            backfill.setdefault("_adopted", []).append(active["id"])
            return
        self.start_run(export, intervals[index], when, backfill["id"])

    def active_run_ending(self, export_id: str, end: datetime) -> dict[str, Any] | None:
        """The ``Starting``/``Running`` run of ``export_id`` whose workflow id ends at ``end``, if any."""
        for run in self.store.runs_of_export(export_id):
            if run["status"] in ACTIVE and run["data_interval_end"] == end:
                return run
        return None

    def finish_backfill(self, backfill: dict[str, Any], status: str, when: datetime) -> None:
        """Set a backfill's status; Cancelled also cancels its active runs (new generation)."""
        self._bump(backfill)
        backfill["status"] = status
        backfill["last_updated_at"] = when
        if status in ACTIVE:
            backfill["finished_at"] = None
            mine = self.store.runs_of_backfill(backfill["id"])
            adopted = [self.store.runs[i] for i in backfill.get("_adopted", ()) if i in self.store.runs]
            busy = any(r["status"] in ACTIVE for r in (*mine, *adopted))
            if backfill.get("_simulated") and not busy:
                self._at(when, "backfill_next_run", backfill)
            return
        backfill["_visible"] = True
        backfill["finished_at"] = when
        if status == "Completed" and self.settings.api_generation == "new":
            done = [r for r in self.store.runs_of_backfill(backfill["id"]) if r["status"] == "Completed"]
            backfill["total_records_count"] = sum(r["records_completed"] or 0 for r in done)
        if status == "Cancelled" and self.settings.api_generation == "new":
            # newer PostHog cancels the backfill's active runs too; older code left them to finish
            for run in self.store.runs_of_backfill(backfill["id"]):
                if run["status"] in ACTIVE:
                    self.finish_run(run, "Cancelled", when)

    def plan_intervals(
        self, start: datetime | None, end: datetime, export: dict[str, Any]
    ) -> list[tuple[datetime | None, datetime]]:
        """A backfill's runs: whole intervals from ``start`` aligned down in the export's cadence.

        The first run may begin before ``start``; a trailing partial interval is not exported; a missing
        start is one run from the beginning of time.
        """
        if start is None:
            return [(None, end)]
        if export["interval"] not in INTERVALS:
            return []
        return list(whole_intervals(start, end, self.cadence(export)))


def _failure_check_window(interval: str) -> int:
    """How many latest runs the auto-pause check counts failures in (PostHog's ``failure_check_window``)."""
    if interval in FAILURE_CHECK_WINDOWS:
        return FAILURE_CHECK_WINDOWS[interval]
    parts = interval.split(" ")
    if len(parts) == 3 and parts[0] == "every" and parts[2] == "minutes" and parts[1].isdigit():
        return max(1, 60 // int(parts[1]))
    return 50


def _iso(value: datetime | None) -> str:
    return "START" if value is None else value.astimezone(UTC).isoformat()


def new_id() -> str:
    return str(uuid.uuid4())
