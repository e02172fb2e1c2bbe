"""Datetime helpers: PostHog's (DRF's) wire format, its query-parameter parsers and interval arithmetic.

Day and week intervals follow the wall clock of the export's time zone, so across a DST change a day is 23
or 25 hours long, as in PostHog's schedules and backfills.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

INTERVALS: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "every 5 minutes": timedelta(minutes=5),
    "every 15 minutes": timedelta(minutes=15),
}

UTC = timezone.utc
_RELATIVE = re.compile(r"^-?(\d+)([hdwmyHM])$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fmt(value: datetime | None) -> str | None:
    """DRF's rendering: UTC ISO-8601 with ``Z``, microseconds only when non-zero."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


def parse_iso(value: str) -> datetime | None:
    """``datetime.fromisoformat`` that answers None instead of raising (naive results are kept naive)."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def to_utc(value: datetime) -> datetime:
    """A plain stdlib aware UTC datetime; naive means UTC.

    Callers may pass pendulum datetimes, whose subtraction yields ``Interval`` objects that do not divide by a
    ``timedelta`` like stdlib ones do; the store only ever holds stdlib datetimes.
    """
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(
        aware.year,
        aware.month,
        aware.day,
        aware.hour,
        aware.minute,
        aware.second,
        aware.microsecond,
        tzinfo=UTC,
    )


def parse_drf_datetime(value: object) -> datetime | None:
    """DRF DateTimeField input: ISO-8601 or ``YYYY-MM-DD HH:MM:SS``; naive means UTC (Django USE_TZ)."""
    if isinstance(value, datetime):
        parsed: datetime | None = value
    elif isinstance(value, str):
        parsed = parse_iso(value.strip())
    else:
        parsed = None
    if parsed is None:
        return None
    return to_utc(parsed)


def parse_relative(value: str, now: datetime) -> datetime | None:
    """PostHog's ``relative_date_parse`` subset: ``-7d``, ``-24h``, ``-2w``, ``-1m`` (month), ``-1y``, ISO."""
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {
            "h": timedelta(hours=amount),
            "H": timedelta(hours=amount),
            "d": timedelta(days=amount),
            "w": timedelta(weeks=amount),
            "m": timedelta(days=30 * amount),
            "M": timedelta(minutes=amount),
            "y": timedelta(days=365 * amount),
        }[unit]
        return now - delta
    if text in ("now", "today"):
        return now
    return parse_drf_datetime(text)


@dataclass(frozen=True)
class Cadence:
    """When an export's intervals start: its interval plus, for day/week, wall-clock time zone and offsets.

    ``offset_day`` counts from Sunday (0) like PostHog's weekly exports; minute and hour intervals are
    aligned in UTC.
    """

    interval: str
    timezone: str = "UTC"
    offset_hour: int = 0
    offset_day: int = 0

    @classmethod
    def of_export(cls, export: dict[str, Any], *, generation: str = "new") -> Cadence:
        """The cadence of an emulator export; the ``docs`` generation has no time zone or offsets."""
        if generation != "new" or export["interval"] not in ("day", "week"):
            return cls(export["interval"])
        return cls(
            export["interval"],
            export.get("timezone") or "UTC",
            export.get("offset_hour") or 0,
            export.get("offset_day") or 0 if export["interval"] == "week" else 0,
        )

    @property
    def wall_clock(self) -> bool:
        return self.interval in ("day", "week")

    @property
    def zone(self) -> tzinfo:
        return UTC if self.timezone in ("UTC", "") else ZoneInfo(self.timezone)


def _weekday_from_sunday(day: date) -> int:
    return (day.weekday() + 1) % 7


def wall_time(day: date, cadence: Cadence) -> datetime:
    """The UTC instant of ``offset_hour`` o'clock on ``day`` in the cadence's time zone."""
    return to_utc(datetime(day.year, day.month, day.day, cadence.offset_hour, tzinfo=cadence.zone))


def _days(cadence: Cadence) -> int:
    return 7 if cadence.interval == "week" else 1


def _floor_day(value: datetime, cadence: Cadence) -> date:
    day = value.astimezone(cadence.zone).date()
    if cadence.interval == "week":
        day -= timedelta(days=(_weekday_from_sunday(day) - cadence.offset_day) % 7)
    while wall_time(day, cadence) > value:
        day -= timedelta(days=_days(cadence))
    return day


def align(value: datetime, interval: str | Cadence) -> datetime:
    """Floor ``value`` to the start of the interval containing it (rounds down, never up)."""
    cadence = interval if isinstance(interval, Cadence) else Cadence(interval)
    value = to_utc(value)
    if cadence.wall_clock:
        return wall_time(_floor_day(value, cadence), cadence)
    seconds = int(INTERVALS[cadence.interval].total_seconds())
    elapsed = int((value - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)


def next_boundary(boundary: datetime, cadence: Cadence) -> datetime:
    """The interval start following the aligned ``boundary`` (23 or 25 hours later across DST for days)."""
    if cadence.wall_clock:
        day = _floor_day(to_utc(boundary), cadence) + timedelta(days=_days(cadence))
        return wall_time(day, cadence)
    return to_utc(boundary) + INTERVALS[cadence.interval]


def whole_intervals(
    start: datetime, end: datetime, interval: str | Cadence, *, aligned: bool = True
) -> list[tuple[datetime, datetime]]:
    """Consecutive whole intervals from ``start`` (floored when ``aligned``); a trailing partial is dropped.

    Unaligned stepping adds the fixed interval length in UTC (no time zone, no DST).
    """
    cadence = interval if isinstance(interval, Cadence) else Cadence(interval)
    out: list[tuple[datetime, datetime]] = []
    end = to_utc(end)
    if not aligned:
        step = INTERVALS[cadence.interval]
        cursor = to_utc(start)
        while cursor + step <= end:
            out.append((cursor, cursor + step))
            cursor += step
        return out
    cursor = align(start, cadence)
    following = next_boundary(cursor, cadence)
    while following <= end:
        out.append((cursor, following))
        cursor, following = following, next_boundary(following, cadence)
    return out


def intervals_ending_in(after: datetime, upto: datetime, cadence: Cadence) -> list[tuple[datetime, datetime]]:
    """The intervals whose end lies in ``(after, upto]``: what a schedule fires between two instants."""
    after, upto = to_utc(after), to_utc(upto)
    out: list[tuple[datetime, datetime]] = []
    cursor = align(after, cadence)
    following = next_boundary(cursor, cadence)
    while following <= upto:
        if following > after:
            out.append((cursor, following))
        cursor, following = following, next_boundary(following, cadence)
    return out
