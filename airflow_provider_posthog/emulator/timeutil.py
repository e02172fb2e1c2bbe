"""Datetime helpers: PostHog's (DRF's) wire format and the parsers its query parameters use."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

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


def align(value: datetime, interval: str) -> datetime:
    """Floor ``value`` to its interval start (UTC; weeks start on Sunday like PostHog's offset_day 0)."""
    step = INTERVALS[interval]
    value = value.astimezone(UTC)
    if interval == "week":
        day_start = value.replace(hour=0, minute=0, second=0, microsecond=0)
        days_since_sunday = (day_start.weekday() + 1) % 7
        return day_start - timedelta(days=days_since_sunday)
    seconds = int(step.total_seconds())
    elapsed = int((value - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)


def whole_intervals(start: datetime, end: datetime, interval: str) -> list[tuple[datetime, datetime]]:
    """Consecutive whole intervals from aligned ``start``; a trailing partial interval is dropped."""
    step = INTERVALS[interval]
    out: list[tuple[datetime, datetime]] = []
    cursor = align(start, interval)
    while cursor + step <= end:
        out.append((cursor, cursor + step))
        cursor += step
    return out
