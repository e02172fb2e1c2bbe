"""An export's schedule as data: where its intervals start, and what a backfill of a range really exports.

PostHog aligns a backfill's first run *down* to the export's interval boundary and drops a trailing partial
interval, so a range that is not on the schedule's boundaries exports data outside it at the start and
silently skips data at the end. Minute and hour intervals are aligned in UTC; day and week intervals start at
``offset_hour`` o'clock in the export's time zone (weeks on ``offset_day``, 0 = Sunday), stepping by calendar
days so daylight-saving days are 23 or 25 hours long.

Pure functions, no I/O: the operations in ``api/backfills.py`` and ``api/endpoints.py`` fetch the export and
apply these rules.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pendulum
from pendulum import DateTime

from airflow_provider_posthog.api.models import to_utc
from airflow_provider_posthog.exceptions import PostHogConfigError

if TYPE_CHECKING:
    from airflow_provider_posthog.api.models import BatchExport

_MINUTES = re.compile(r"^every (\d+) minutes?$")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _sunday_based(day: dt.date) -> int:
    return (day.weekday() + 1) % 7


@dataclasses.dataclass(frozen=True)
class ExportSchedule:
    """The interval grid of one export.

    :param interval: ``hour``, ``day``, ``week`` or ``every N minutes`` (PostHog's interval names).
    :param timezone: IANA time zone of day/week boundaries (ignored for shorter intervals).
    :param offset_hour: hour of day (0-23) at which day/week intervals start.
    :param offset_day: day of week (0 = Sunday ... 6 = Saturday) at which week intervals start.
    """

    interval: str
    timezone: str = "UTC"
    offset_hour: int = 0
    offset_day: int = 0

    def __post_init__(self) -> None:
        if self.interval not in ("hour", "day", "week") and self._minutes() is None:
            raise PostHogConfigError(
                f"Batch export interval {self.interval!r} is not one this provider knows "
                "('hour', 'day', 'week' or 'every N minutes')."
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PostHogConfigError(f"Batch export time zone {self.timezone!r} is unknown.") from None
        if not 0 <= self.offset_hour <= 23:
            raise PostHogConfigError(f"offset_hour must be between 0 and 23, got {self.offset_hour}.")
        if not 0 <= self.offset_day <= 6:
            raise PostHogConfigError(f"offset_day must be between 0 and 6, got {self.offset_day}.")

    @classmethod
    def of(cls, export: BatchExport) -> ExportSchedule:
        """The schedule of an export as PostHog returned it (missing time zone or offsets: the defaults)."""
        raw = export.raw
        interval = str(raw.get("interval") or export.interval)
        wall = interval in ("day", "week")
        return cls(
            interval=interval,
            timezone=str(raw.get("timezone") or "UTC") if wall else "UTC",
            offset_hour=int(raw.get("offset_hour") or 0) if wall else 0,
            offset_day=int(raw.get("offset_day") or 0) if interval == "week" else 0,
        )

    # -- grid -------------------------------------------------------------------------------------------

    def _minutes(self) -> int | None:
        match = _MINUTES.match(self.interval)
        return int(match.group(1)) if match and int(match.group(1)) > 0 else None

    @property
    def wall_clock(self) -> bool:
        """Day and week intervals follow the wall clock of the export's time zone."""
        return self.interval in ("day", "week")

    @property
    def length(self) -> dt.timedelta:
        """Nominal length of one interval (a DST day is an hour shorter or longer)."""
        if self.interval == "hour":
            return dt.timedelta(hours=1)
        if self.interval == "day":
            return dt.timedelta(days=1)
        if self.interval == "week":
            return dt.timedelta(days=7)
        return dt.timedelta(minutes=self._minutes() or 0)

    def at_date(self, day: dt.date) -> DateTime:
        """The instant (UTC) a day/week interval starting on ``day`` begins: ``offset_hour`` there."""
        local = dt.datetime(day.year, day.month, day.day, self.offset_hour, tzinfo=ZoneInfo(self.timezone))
        return to_utc(local)

    def _floor_date(self, ts: DateTime) -> dt.date:
        day = ts.astimezone(ZoneInfo(self.timezone)).date()
        days = 7 if self.interval == "week" else 1
        if self.interval == "week":
            day -= dt.timedelta(days=(_sunday_based(day) - self.offset_day) % 7)
        while self.at_date(day) > ts:
            day -= dt.timedelta(days=days)
        return day

    def floor(self, ts: dt.datetime) -> DateTime:
        """Start of the interval containing ``ts`` (``ts`` itself when it is a boundary)."""
        value = to_utc(ts)
        if self.wall_clock:
            return self.at_date(self._floor_date(value))
        seconds = int(self.length.total_seconds())
        elapsed = int(value.timestamp())
        floored = _EPOCH + dt.timedelta(seconds=elapsed - elapsed % seconds)
        return pendulum.instance(floored)

    def step(self, ts: dt.datetime) -> DateTime:
        """The first boundary strictly after ``ts`` (one calendar day or week later for day/week)."""
        start = self.floor(ts)
        if self.wall_clock:
            days = 7 if self.interval == "week" else 1
            return self.at_date(self._floor_date(start) + dt.timedelta(days=days))
        return start + self.length

    def ceil(self, ts: dt.datetime) -> DateTime:
        """``ts`` when it is a boundary, else the next boundary."""
        return to_utc(ts) if self.is_boundary(ts) else self.step(ts)

    def is_boundary(self, ts: dt.datetime) -> bool:
        return self.floor(ts) == to_utc(ts)

    def intervals(self, start: dt.datetime, end: dt.datetime) -> list[tuple[DateTime, DateTime]]:
        """What PostHog exports for a backfill of ``[start, end)``: whole intervals from ``floor(start)``."""
        out: list[tuple[DateTime, DateTime]] = []
        stop = to_utc(end)
        cursor = self.floor(start)
        following = self.step(cursor)
        while following <= stop:
            out.append((cursor, following))
            cursor, following = following, self.step(following)
        return out

    def local_date(self, ts: dt.datetime) -> dt.date:
        """The calendar date of ``ts`` in the export's time zone (what date-only bounds name)."""
        return to_utc(ts).astimezone(ZoneInfo(self.timezone)).date()

    def describe(self) -> str:
        """Human wording for messages: ``hourly (UTC)``, ``daily at 00:00 America/New_York`` ..."""
        if self.interval == "hour":
            return "hourly (UTC)"
        if self.interval == "day":
            return f"daily at {self.offset_hour:02d}:00 {self.timezone}"
        if self.interval == "week":
            return f"weekly on {_WEEKDAYS[self.offset_day]} at {self.offset_hour:02d}:00 {self.timezone}"
        return f"{self.interval} (UTC)"


def check_backfill_range(start: dt.datetime, end: dt.datetime, schedule: ExportSchedule) -> None:
    """Refuse a backfill range PostHog would not export exactly, naming the aligned ranges to use instead.

    PostHog starts at the boundary at or before ``start`` (exporting data before it) and stops at the last
    boundary at or before ``end`` (silently skipping the rest), so only boundary-aligned ranges are exact.
    """
    start_u, end_u = to_utc(start, "start_at"), to_utc(end, "end_at")
    if start_u >= end_u:
        raise PostHogConfigError(
            f"Backfill start_at {start_u.isoformat()} must be before end_at {end_u.isoformat()}."
        )
    start_ok, end_ok = schedule.is_boundary(start_u), schedule.is_boundary(end_u)
    if start_ok and end_ok:
        return
    problems: list[str] = []
    if not start_ok:
        problems.append(
            f"start_at {start_u.isoformat()} is not on a boundary of this export's {schedule.describe()} "
            f"schedule; PostHog would export from {schedule.floor(start_u).isoformat()}"
        )
    if not end_ok:
        problems.append(
            f"end_at {end_u.isoformat()} is not on a boundary of this export's {schedule.describe()} "
            f"schedule; PostHog would stop at {schedule.floor(end_u).isoformat()} and skip the rest"
        )
    cover = (schedule.floor(start_u), schedule.ceil(end_u))
    inner = (schedule.ceil(start_u), schedule.floor(end_u))
    options = [f"[{cover[0].isoformat()}, {cover[1].isoformat()}) to cover the range"]
    if inner[0] < inner[1]:
        options.append(f"[{inner[0].isoformat()}, {inner[1].isoformat()}) to stay inside it")
    raise PostHogConfigError("; ".join(problems) + ". Use " + " or ".join(options) + ".")
