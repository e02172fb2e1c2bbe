"""Interval arithmetic: alignment rounds down; day/week intervals follow the export's wall clock (DST)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_posthog.emulator.timeutil import (
    Cadence,
    align,
    intervals_ending_in,
    next_boundary,
    wall_time,
    whole_intervals,
)

UTC = timezone.utc
H = timedelta(hours=1)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "value", "expected"),
    [
        ("hour", _utc(2026, 1, 1, 16, 30), _utc(2026, 1, 1, 16)),
        ("hour", _utc(2026, 1, 1, 16), _utc(2026, 1, 1, 16)),
        ("every 5 minutes", _utc(2026, 1, 1, 16, 7, 59), _utc(2026, 1, 1, 16, 5)),
        ("every 15 minutes", _utc(2026, 1, 1, 16, 44), _utc(2026, 1, 1, 16, 30)),
        ("day", _utc(2026, 1, 1, 23, 59), _utc(2026, 1, 1)),
        ("week", _utc(2026, 1, 7, 12), _utc(2026, 1, 4)),  # weeks start on Sunday by default
    ],
)
def test_align_rounds_down(interval: str, value: datetime, expected: datetime) -> None:
    assert align(value, interval) == expected


def test_day_alignment_uses_time_zone_and_offset_hour() -> None:
    cadence = Cadence("day", "Europe/Berlin", offset_hour=2)
    # 00:30 UTC on Jan 2 is 01:30 in Berlin: before 02:00 local, so the interval began the previous day
    assert align(_utc(2026, 1, 2, 0, 30), cadence) == _utc(2026, 1, 1, 1)
    assert align(_utc(2026, 1, 2, 1, 0), cadence) == _utc(2026, 1, 2, 1)


def test_berlin_days_across_both_dst_changes() -> None:
    cadence = Cadence("day", "Europe/Berlin")
    spring = whole_intervals(_utc(2026, 3, 28, 12), _utc(2026, 3, 31), cadence)
    assert [(s, e - s) for s, e in spring] == [
        (_utc(2026, 3, 27, 23), 24 * H),
        (_utc(2026, 3, 28, 23), 23 * H),  # 2026-03-29: clocks go forward
        (_utc(2026, 3, 29, 22), 24 * H),
    ]
    autumn = whole_intervals(_utc(2026, 10, 24, 22), _utc(2026, 10, 26, 23), cadence)
    assert [(s, e - s) for s, e in autumn] == [
        (_utc(2026, 10, 24, 22), 25 * H),  # 2026-10-25: clocks go back
        (_utc(2026, 10, 25, 23), 24 * H),
    ]


def test_new_york_weeks_with_offset_day_and_hour() -> None:
    cadence = Cadence("week", "America/New_York", offset_hour=3, offset_day=1)  # Mondays 03:00 local
    weeks = whole_intervals(_utc(2026, 3, 4), _utc(2026, 3, 16), cadence)
    assert weeks == [(_utc(2026, 3, 2, 8), _utc(2026, 3, 9, 7))]  # 7 days minus the hour lost on 03-08
    autumn = whole_intervals(_utc(2026, 10, 27), _utc(2026, 11, 10), cadence)
    assert autumn[0] == (_utc(2026, 10, 26, 7), _utc(2026, 11, 2, 8))  # 03-11-01: one hour longer
    assert next_boundary(_utc(2026, 11, 2, 8), cadence) == _utc(2026, 11, 9, 8)


def test_trailing_partial_interval_is_dropped() -> None:
    assert whole_intervals(_utc(2026, 1, 1, 10), _utc(2026, 1, 1, 12, 20), "hour") == [
        (_utc(2026, 1, 1, 10), _utc(2026, 1, 1, 11)),
        (_utc(2026, 1, 1, 11), _utc(2026, 1, 1, 12)),
    ]
    assert whole_intervals(_utc(2026, 1, 1, 10, 30), _utc(2026, 1, 1, 10, 50), "hour") == []


def test_first_interval_can_start_before_the_requested_start() -> None:
    assert whole_intervals(_utc(2026, 1, 1, 16, 30), _utc(2026, 1, 1, 18), "hour")[0][0] == _utc(
        2026, 1, 1, 16
    )


def test_intervals_ending_in_is_open_closed() -> None:
    ends = [e for _, e in intervals_ending_in(_utc(2026, 1, 1, 1), _utc(2026, 1, 1, 3), Cadence("hour"))]
    assert ends == [_utc(2026, 1, 1, 2), _utc(2026, 1, 1, 3)]
    assert intervals_ending_in(_utc(2026, 1, 1, 1, 1), _utc(2026, 1, 1, 1, 59), Cadence("hour")) == []


def test_wall_time_and_cadence_of_export() -> None:
    export = {"interval": "week", "timezone": "Europe/Berlin", "offset_hour": 6, "offset_day": 1}
    assert Cadence.of_export(export) == Cadence("week", "Europe/Berlin", 6, 1)
    assert Cadence.of_export(export, generation="docs") == Cadence("week")
    assert Cadence.of_export({"interval": "hour", "timezone": "Europe/Berlin"}) == Cadence("hour")
    day = Cadence.of_export({"interval": "day", "timezone": None, "offset_hour": None, "offset_day": None})
    assert day == Cadence("day")
    assert wall_time(datetime(2026, 7, 1).date(), Cadence("day", "Europe/Berlin", 6)) == _utc(2026, 7, 1, 4)
