"""Turn a zero-width data interval into the last complete period of the DAG's own schedule.

Airflow 3 defaults to ``[scheduler] create_cron_data_intervals = False`` (and
``create_delta_data_intervals = False``): ``schedule="@daily"`` builds a ``CronTriggerTimetable`` (a timedelta
a ``DeltaTriggerTimetable``) and every run has ``data_interval_start == data_interval_end``. A PostHog
backfill or an interval wait needs a real range, so a range whose two ends are equal after rendering means
"the last complete period of this DAG's schedule ending at or before that time": for a cron schedule
``[previous tick, T)`` when ``T`` is a tick (what ``create_cron_data_intervals = True`` would have given),
``[tick before the last tick, last tick)`` for a manual run between ticks; for a timedelta schedule
``[T - delta, T)``.

This is the one module that reads Airflow timetables. The task SDK's timetables (3.2+) are plain attrs data
(``expression``, ``timezone``, ``delta``, ``timetables``); older ones carry the same values under private
names (``_expression``...). The arithmetic is Airflow's own cron arithmetic (``croniter`` on the wall
clock of the schedule's timezone, with Airflow's fix for schedules that fire every hour across a DST fold),
done with ``croniter`` and ``pendulum``, which every Airflow worker has, not the scheduler's private helpers.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks.args import check_order, to_datetime

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pendulum.tz.timezone import FixedTimezone, Timezone

UTC = dt.timezone.utc

#: Cron presets as Airflow resolves them (the SDK resolves them on construction; older versions did not).
CRON_PRESETS: Mapping[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@midnight": "0 0 * * *",
}

_CRON_CLASSES = frozenset(
    {"CronTriggerTimetable", "CronDataIntervalTimetable", "CronPartitionTimetable", "CronMixin"}
)
_DELTA_CLASSES = frozenset({"DeltaTriggerTimetable", "DeltaDataIntervalTimetable"})
_MULTI_CRON_CLASSES = frozenset({"MultipleCronTriggerTimetable"})

FIXES = (
    "pass explicit bounds, schedule the DAG with a CronDataIntervalTimetable (or a "
    "DeltaDataIntervalTimetable), or set [scheduler] create_cron_data_intervals = True "
    "(create_delta_data_intervals for timedeltas)"
)


def _attr(obj: Any, name: str) -> Any:
    """A timetable field under its task-SDK name or its older private name."""
    value = getattr(obj, name, None)
    return getattr(obj, f"_{name}", None) if value is None else value


class _Cron:
    """Airflow's cron arithmetic for one expression in one timezone (previous/next tick, aligned)."""

    def __init__(self, expression: str, timezone: str | Timezone | FixedTimezone | None) -> None:
        import pendulum

        self.expression = CRON_PRESETS.get(expression, expression)
        self.tz: Timezone | FixedTimezone = (
            pendulum.timezone(timezone) if isinstance(timezone, str) else (timezone or pendulum.UTC)
        )

    def _step(self, current: dt.datetime, forward: bool) -> dt.datetime:
        import pendulum
        from croniter import croniter

        local = pendulum.instance(current).in_timezone(self.tz)
        naive = local.naive()
        cron = croniter(self.expression, start_time=naive)
        scheduled = cron.get_next(dt.datetime) if forward else cron.get_prev(dt.datetime)
        if cron.expanded[1] != ["*"]:  # not every hour: the wall-clock tick, localized
            return self.tz.convert(scheduled).astimezone(UTC)
        # Every hour: step by the wall-clock distance from the real instant, so a DST fold keeps its tick.
        return (local + (scheduled - naive)).astimezone(UTC)

    def next(self, current: dt.datetime) -> dt.datetime:
        return self._step(current, forward=True)

    def prev(self, current: dt.datetime) -> dt.datetime:
        return self._step(current, forward=False)

    def align_to_prev(self, current: dt.datetime) -> dt.datetime:
        """``current`` if it is a tick, else the tick before it."""
        previous = self.prev(current)
        return current if self.next(previous) == current else previous

    def describe(self) -> str:
        return f"cron {self.expression!r} in {getattr(self.tz, 'name', self.tz)}"


def last_complete_period(timetable: Any, at: dt.datetime) -> tuple[dt.datetime, dt.datetime, str]:
    """``(start, end, schedule description)`` of the last complete period ending at or before ``at``.

    Raises ``PostHogConfigError`` when the timetable has no periods (``schedule=None``, assets, events,
    ``@once``, ``@continuous`` or a custom timetable).
    """
    name = type(timetable).__name__
    if name == "AssetOrTimeSchedule" and _attr(timetable, "timetable") is not None:
        return last_complete_period(_attr(timetable, "timetable"), at)
    if name in _CRON_CLASSES and isinstance(_attr(timetable, "expression"), str):
        cron = _Cron(_attr(timetable, "expression"), _attr(timetable, "timezone"))
        end = cron.align_to_prev(at)
        return cron.prev(end), end, cron.describe()
    if name in _MULTI_CRON_CLASSES and _attr(timetable, "timetables"):
        crons = [_Cron(_attr(t, "expression"), _attr(t, "timezone")) for t in _attr(timetable, "timetables")]
        end = max(c.align_to_prev(at) for c in crons)
        start = max(c.prev(end) for c in crons)
        return start, end, " or ".join(c.describe() for c in crons)
    if name in _DELTA_CLASSES and _attr(timetable, "delta") is not None:
        delta = _attr(timetable, "delta")
        return at - delta, at, f"every {delta}"
    described = "no schedule (schedule=None)" if name == "NullTimetable" else f"a {name}"
    raise PostHogConfigError(
        f"The DAG's schedule is {described}, which has no periods to derive the range from; {FIXES}."
    )


def resolve_range(
    start: Any,
    end: Any,
    context: Mapping[str, Any] | None,
    *,
    start_name: str,
    end_name: str,
    log: Any = None,
) -> tuple[dt.datetime, dt.datetime]:
    """The rendered bounds as an ordered UTC window; a zero-width one becomes the schedule's last period.

    Raises ``PostHogConfigError`` at once for a reversed window, or when the period cannot be derived
    (naming the cause and the fixes).
    """
    start_at = to_datetime(start, start_name)
    end_at = to_datetime(end, end_name)
    if start_at != end_at:
        return check_order(start_at, end_at, start_name, end_name)
    dag = (context or {}).get("dag")
    cause = (
        f"{start_name} and {end_name} are both {end_at.isoformat()}: a zero-width range, which is what "
        "Airflow 3 gives the runs of cron schedules by default ([scheduler] create_cron_data_intervals = "
        "False). "
    )
    if dag is None or getattr(dag, "timetable", None) is None:
        raise PostHogConfigError(cause + f"No DAG schedule is known to derive a range from; {FIXES}.")
    try:
        derived_start, derived_end, schedule = last_complete_period(dag.timetable, end_at)
    except PostHogConfigError as exc:
        raise PostHogConfigError(cause + str(exc)) from None
    if log is not None:
        log.info(
            "%s and %s are both %s (a zero-width data interval); using the last complete period of the DAG's "
            "schedule (%s): [%s, %s).",
            start_name,
            end_name,
            end_at.isoformat(),
            schedule,
            derived_start.isoformat(),
            derived_end.isoformat(),
        )
    return derived_start, derived_end
