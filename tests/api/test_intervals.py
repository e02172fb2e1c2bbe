"""The export schedule grid and the backfill-range rule, as pure functions (no HTTP)."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_posthog.api.intervals import ExportSchedule, check_backfill_range
from airflow_provider_posthog.api.models import BatchExport
from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import PostHogConfigError

UTC = dt.timezone.utc


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


HOURLY = ExportSchedule("hour")
NY_DAILY = ExportSchedule("day", timezone="America/New_York")
BERLIN_MONDAYS = ExportSchedule("week", timezone="Europe/Berlin", offset_hour=2, offset_day=1)


def test_hourly_floor_step_and_intervals() -> None:
    assert HOURLY.floor(t("2026-11-28T19:30:00Z")) == t("2026-11-28T19:00:00Z")
    assert HOURLY.floor(t("2026-11-28T19:00:00Z")) == t("2026-11-28T19:00:00Z")
    assert HOURLY.step(t("2026-11-28T19:30:00Z")) == t("2026-11-28T20:00:00Z")
    assert HOURLY.step(t("2026-11-28T19:00:00Z")) == t("2026-11-28T20:00:00Z")
    assert HOURLY.is_boundary(t("2026-11-28T19:00:00Z"))
    assert not HOURLY.is_boundary(t("2026-11-28T19:00:00.5Z"))
    # The first interval is aligned down, the trailing partial one is dropped.
    assert HOURLY.intervals(t("2026-11-28T10:00:00Z"), t("2026-11-28T12:20:00Z")) == [
        (t("2026-11-28T10:00:00Z"), t("2026-11-28T11:00:00Z")),
        (t("2026-11-28T11:00:00Z"), t("2026-11-28T12:00:00Z")),
    ]
    assert HOURLY.intervals(t("2026-11-28T16:30:00Z"), t("2026-11-28T18:00:00Z"))[0][0] == t(
        "2026-11-28T16:00:00Z"
    )
    assert HOURLY.intervals(t("2026-11-28T16:30:00Z"), t("2026-11-28T16:50:00Z")) == []
    # Another offset of the same instant floors the same way.
    eastern = dt.timezone(dt.timedelta(hours=-5))
    assert HOURLY.floor(dt.datetime(2026, 11, 28, 14, 30, tzinfo=eastern)) == t("2026-11-28T19:00:00Z")


@pytest.mark.parametrize(
    ("interval", "ts", "floor", "step"),
    [
        ("every 5 minutes", "2026-11-28T10:07:30Z", "2026-11-28T10:05:00Z", "2026-11-28T10:10:00Z"),
        ("every 15 minutes", "2026-11-28T10:29:59Z", "2026-11-28T10:15:00Z", "2026-11-28T10:30:00Z"),
        ("hour", "2026-11-28T23:59:59Z", "2026-11-28T23:00:00Z", "2026-11-29T00:00:00Z"),
        ("day", "2026-11-28T23:59:59Z", "2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z"),
        # Weeks start on Sunday (offset_day 0) by default; 2024-01-07 is a Sunday.
        ("week", "2024-01-10T12:00:00Z", "2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"),
    ],
)
def test_utc_grids(interval: str, ts: str, floor: str, step: str) -> None:
    schedule = ExportSchedule(interval)
    assert schedule.floor(t(ts)) == t(floor)
    assert schedule.step(t(ts)) == t(step)
    assert schedule.ceil(t(floor)) == t(floor) and schedule.ceil(t(ts)) == t(step)


def test_daily_in_a_time_zone_follows_its_wall_clock_across_dst() -> None:
    # New York midnight is 05:00Z in winter, 04:00Z in summer; 2024-03-10 has 23 hours, 2024-11-03 has 25.
    assert NY_DAILY.floor(t("2024-03-10T12:00:00Z")) == t("2024-03-10T05:00:00Z")
    assert NY_DAILY.floor(t("2024-03-10T04:59:00Z")) == t("2024-03-09T05:00:00Z")
    spring = NY_DAILY.intervals(t("2024-03-09T05:00:00Z"), t("2024-03-12T04:00:00Z"))
    assert spring == [
        (t("2024-03-09T05:00:00Z"), t("2024-03-10T05:00:00Z")),
        (t("2024-03-10T05:00:00Z"), t("2024-03-11T04:00:00Z")),
        (t("2024-03-11T04:00:00Z"), t("2024-03-12T04:00:00Z")),
    ]
    assert [(b - a).total_seconds() / 3600 for a, b in spring] == [24, 23, 24]
    autumn = NY_DAILY.intervals(t("2024-11-03T04:00:00Z"), t("2024-11-04T05:00:00Z"))
    assert [(b - a).total_seconds() / 3600 for a, b in autumn] == [25]
    assert NY_DAILY.local_date(t("2024-03-11T04:00:00Z")) == dt.date(2024, 3, 11)
    assert NY_DAILY.at_date(dt.date(2024, 3, 11)) == t("2024-03-11T04:00:00Z")


def test_daily_offset_hour() -> None:
    six = ExportSchedule("day", offset_hour=6)
    assert six.floor(t("2024-01-02T05:59:00Z")) == t("2024-01-01T06:00:00Z")
    assert six.floor(t("2024-01-02T06:00:00Z")) == t("2024-01-02T06:00:00Z")


def test_weekly_offset_day_and_hour_in_a_time_zone() -> None:
    # 2024-01-01 is a Monday; 02:00 in Berlin (UTC+1 in winter) is 01:00Z.
    assert BERLIN_MONDAYS.floor(t("2024-01-03T00:00:00Z")) == t("2024-01-01T01:00:00Z")
    assert BERLIN_MONDAYS.step(t("2024-01-03T00:00:00Z")) == t("2024-01-08T01:00:00Z")
    # Monday 01:30 in Berlin is before that Monday's 02:00: the previous week.
    assert BERLIN_MONDAYS.floor(t("2024-01-01T00:30:00Z")) == t("2023-12-25T01:00:00Z")
    # Summer time: 02:00 in Berlin is 00:00Z (2024-07-01 is a Monday).
    assert BERLIN_MONDAYS.floor(t("2024-07-03T00:00:00Z")) == t("2024-07-01T00:00:00Z")


def test_schedule_of_an_export_reads_its_fields_with_defaults() -> None:
    def export(**fields: object) -> BatchExport:
        return BatchExport.from_api({"id": "e", "destination": {"type": "NoOp"}, **fields})

    assert ExportSchedule.of(export(interval="hour")) == ExportSchedule("hour")
    # Older PostHog has no time zone or offsets; newer one returns nulls where they do not apply.
    assert ExportSchedule.of(export(interval="day")) == ExportSchedule("day")
    assert ExportSchedule.of(
        export(interval="day", timezone="America/New_York", offset_hour=None, offset_day=None)
    ) == ExportSchedule("day", "America/New_York")
    assert (
        ExportSchedule.of(export(interval="week", timezone="Europe/Berlin", offset_hour=2, offset_day=1))
        == BERLIN_MONDAYS
    )
    # Offsets and time zone never apply to hourly or minute exports.
    assert ExportSchedule.of(export(interval="hour", timezone="Asia/Kolkata")) == ExportSchedule("hour")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"interval": "month"}, "interval 'month' is not one this provider knows"),
        ({"interval": "every 0 minutes"}, "is not one this provider knows"),
        ({"interval": "day", "timezone": "Mars/Olympus"}, "time zone 'Mars/Olympus' is unknown"),
        ({"interval": "day", "offset_hour": 24}, "offset_hour must be between 0 and 23"),
        ({"interval": "week", "offset_day": 7}, "offset_day must be between 0 and 6"),
    ],
)
def test_bad_schedules_are_config_errors(fields: dict[str, object], match: str) -> None:
    with pytest.raises(PostHogConfigError, match=match):
        ExportSchedule(**fields)  # type: ignore[arg-type]


def test_aligned_ranges_pass() -> None:
    check_backfill_range(t("2026-11-28T19:00:00Z"), t("2026-11-28T21:00:00Z"), HOURLY)
    check_backfill_range(t("2024-03-09T05:00:00Z"), t("2024-03-11T04:00:00Z"), NY_DAILY)
    check_backfill_range(t("2024-01-01T01:00:00Z"), t("2024-01-15T01:00:00Z"), BERLIN_MONDAYS)


def test_unaligned_start_names_both_aligned_ranges() -> None:
    with pytest.raises(PostHogConfigError) as exc:
        check_backfill_range(t("2026-11-28T19:30:00Z"), t("2026-11-28T21:00:00Z"), HOURLY)
    assert isinstance(exc.value, AirflowFailException)  # never retried
    assert str(exc.value) == (
        "start_at 2026-11-28T19:30:00+00:00 is not on a boundary of this export's hourly (UTC) schedule; "
        "PostHog would export from 2026-11-28T19:00:00+00:00. "
        "Use [2026-11-28T19:00:00+00:00, 2026-11-28T21:00:00+00:00) to cover the range or "
        "[2026-11-28T20:00:00+00:00, 2026-11-28T21:00:00+00:00) to stay inside it."
    )


def test_unaligned_end_says_what_would_be_skipped() -> None:
    with pytest.raises(PostHogConfigError) as exc:
        check_backfill_range(t("2026-11-28T19:00:00Z"), t("2026-11-28T20:30:00Z"), HOURLY)
    message = str(exc.value)
    assert "end_at 2026-11-28T20:30:00+00:00 is not on a boundary" in message
    assert "PostHog would stop at 2026-11-28T20:00:00+00:00 and skip the rest" in message
    assert "[2026-11-28T19:00:00+00:00, 2026-11-28T21:00:00+00:00) to cover" in message
    assert "[2026-11-28T19:00:00+00:00, 2026-11-28T20:00:00+00:00) to stay inside" in message


def test_no_inner_range_when_the_range_is_inside_one_interval() -> None:
    with pytest.raises(PostHogConfigError) as exc:
        check_backfill_range(t("2026-11-28T19:30:00Z"), t("2026-11-28T19:45:00Z"), HOURLY)
    assert "[2026-11-28T19:00:00+00:00, 2026-11-28T20:00:00+00:00) to cover the range." in str(exc.value)
    assert "stay inside" not in str(exc.value)


def test_daily_range_at_utc_midnight_is_refused_for_a_new_york_export() -> None:
    with pytest.raises(PostHogConfigError, match="daily at 00:00 America/New_York") as exc:
        check_backfill_range(t("2024-01-01T00:00:00Z"), t("2024-01-03T00:00:00Z"), NY_DAILY)
    assert "[2023-12-31T05:00:00+00:00, 2024-01-03T05:00:00+00:00) to cover" in str(exc.value)
    assert "[2024-01-01T05:00:00+00:00, 2024-01-02T05:00:00+00:00) to stay inside" in str(exc.value)


def test_weekly_bounds_off_the_offset_day_are_refused() -> None:
    # Sunday to Sunday for an export that runs on Mondays.
    with pytest.raises(PostHogConfigError, match="weekly on Monday at 02:00 Europe/Berlin"):
        check_backfill_range(t("2023-12-31T01:00:00Z"), t("2024-01-14T01:00:00Z"), BERLIN_MONDAYS)


def test_empty_or_reversed_or_naive_ranges() -> None:
    with pytest.raises(PostHogConfigError, match="must be before end_at"):
        check_backfill_range(t("2026-11-28T19:00:00Z"), t("2026-11-28T19:00:00Z"), HOURLY)
    with pytest.raises(PostHogConfigError, match="naive"):
        check_backfill_range(dt.datetime(2026, 1, 1), t("2026-11-28T19:00:00Z"), HOURLY)
