"""Zero-width data intervals (``tasks.data_interval``) against real Airflow timetables; no hook, no run."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks.data_interval import last_complete_period, resolve_range

UTC = dt.timezone.utc


def _dag(schedule: Any, **kwargs: Any) -> DAG:
    return DAG("d", schedule=schedule, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), **kwargs)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        ("@daily", _utc(2024, 3, 5), (_utc(2024, 3, 4), _utc(2024, 3, 5))),  # on a tick
        ("@daily", _utc(2024, 3, 5, 13, 7), (_utc(2024, 3, 4), _utc(2024, 3, 5))),  # manual, between ticks
        ("0 * * * *", _utc(2024, 3, 5, 13), (_utc(2024, 3, 5, 12), _utc(2024, 3, 5, 13))),
        ("@weekly", _utc(2024, 3, 6), (_utc(2024, 2, 25), _utc(2024, 3, 3))),  # Sunday to Sunday
        (dt.timedelta(hours=6), _utc(2024, 3, 5, 13), (_utc(2024, 3, 5, 7), _utc(2024, 3, 5, 13))),
    ],
)
def test_last_complete_period_of_airflow_3_default_timetables(
    schedule: Any, at: dt.datetime, expected: tuple[dt.datetime, dt.datetime]
) -> None:
    start, end, _ = last_complete_period(_dag(schedule).timetable, at)
    assert (start, end) == expected


def _cron_timetable_classes() -> tuple[Any, Any]:
    """The timetable classes a DAG file gets: the task SDK's (3.2+) or Airflow core's (3.1)."""
    try:
        from airflow.sdk import CronTriggerTimetable, MultipleCronTriggerTimetable
    except ImportError:  # Airflow 3.1
        from airflow.timetables.trigger import (  # type: ignore[assignment,unused-ignore]
            CronTriggerTimetable,
            MultipleCronTriggerTimetable,
        )
    return CronTriggerTimetable, MultipleCronTriggerTimetable


def test_cron_periods_match_airflows_own_arithmetic_across_dst() -> None:
    """Same answers as the scheduler's cron helpers, across a DST fold and gap (every-hour schedules take
    Airflow's fold fix), and for a daily schedule away from the fold."""
    CronTriggerTimetable, _ = _cron_timetable_classes()
    from airflow.timetables._cron import CronMixin

    cases = [
        ("30 * * * *", pendulum.datetime(2023, 10, 28, 20, tz="UTC")),
        ("30 * * * *", pendulum.datetime(2024, 3, 30, 20, tz="UTC")),
        ("0 2 * * *", pendulum.datetime(2024, 3, 1, 0, tz="UTC")),
    ]
    for expression, base in cases:
        timetable = CronTriggerTimetable(expression, timezone="Europe/Zurich")
        core = CronMixin(expression, "Europe/Zurich")
        for minutes in range(0, 12 * 60, 20):
            at = base.add(minutes=minutes)
            start, end, _ = last_complete_period(timetable, at)
            aligned = core._align_to_prev(at)
            assert (start, end) == (core._get_prev(aligned), aligned), (expression, at)


def test_daily_period_ending_on_the_dst_fold_is_one_day() -> None:
    CronTriggerTimetable, _ = _cron_timetable_classes()

    timetable = CronTriggerTimetable("0 2 * * *", timezone="Europe/Zurich")
    # 2023-10-29 02:00 CEST (00:00 UTC) is a tick; the period is the day before, 02:00 CEST to 02:00 CEST.
    assert last_complete_period(timetable, _utc(2023, 10, 29))[:2] == (_utc(2023, 10, 28), _utc(2023, 10, 29))


def test_multiple_cron_and_timezone_schedules() -> None:
    CronTriggerTimetable, MultipleCronTriggerTimetable = _cron_timetable_classes()

    both = MultipleCronTriggerTimetable("0 3 * * *", "0 15 * * *", timezone="UTC")
    assert last_complete_period(both, _utc(2024, 3, 5, 16))[:2] == (_utc(2024, 3, 5, 3), _utc(2024, 3, 5, 15))
    weekdays = CronTriggerTimetable("0 9 * * 1-5", timezone="America/New_York")
    # Tuesday 2024-03-05 00:00 UTC: the last complete weekday period is Friday 09:00 -> Monday 09:00 (EST).
    assert last_complete_period(weekdays, _utc(2024, 3, 5))[:2] == (
        _utc(2024, 3, 1, 14),
        _utc(2024, 3, 4, 14),
    )


def test_explicit_ranges_are_left_alone_and_zero_width_is_derived_with_an_info_log(caplog: Any) -> None:
    context = {"dag": _dag("@daily")}
    assert resolve_range(
        "2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z", context, start_name="a", end_name="b"
    ) == (
        _utc(2024, 3, 1),
        _utc(2024, 3, 2),
    )
    log = logging.getLogger("test-derive")
    with caplog.at_level(logging.INFO, logger="test-derive"):
        derived = resolve_range(
            "2024-03-05T00:00:00+00:00",
            _utc(2024, 3, 5),
            context,
            start_name="start_at",
            end_name="end_at",
            log=log,
        )
    assert derived == (_utc(2024, 3, 4), _utc(2024, 3, 5))
    assert (
        "start_at and end_at are both 2024-03-05T00:00:00+00:00 (a zero-width data interval)" in caplog.text
    )
    assert "cron '0 0 * * *' in UTC): [2024-03-04T00:00:00+00:00, 2024-03-05T00:00:00+00:00)" in caplog.text


@pytest.mark.parametrize(
    ("context", "cause"),
    [
        ({"dag": _dag(None)}, "no schedule (schedule=None)"),
        ({"dag": _dag("@once")}, "a OnceTimetable"),
        ({}, "No DAG schedule is known"),
    ],
)
def test_underivable_zero_width_ranges_fail_at_once_naming_cause_and_fixes(context: Any, cause: str) -> None:
    with pytest.raises(PostHogConfigError) as err:
        resolve_range(_utc(2024, 3, 5), _utc(2024, 3, 5), context, start_name="start_at", end_name="end_at")
    message = str(err.value)
    assert cause in message
    assert "zero-width range" in message and "create_cron_data_intervals = False" in message
    assert "pass explicit bounds" in message and "CronDataIntervalTimetable" in message
    assert "create_cron_data_intervals = True" in message


def test_asset_schedule_cannot_be_derived() -> None:
    from airflow.sdk import Asset

    with pytest.raises(PostHogConfigError, match="AssetTriggeredTimetable"):
        resolve_range(
            _utc(2024, 3, 5),
            _utc(2024, 3, 5),
            {"dag": _dag([Asset("s3://b/k")])},
            start_name="a",
            end_name="b",
        )


@pytest.mark.parametrize(
    ("start", "end"),
    [("2024-03-02T00:00:00Z", "2024-03-01T00:00:00Z")],
)
def test_a_reversed_range_fails_naming_both_bounds(start: str, end: str) -> None:
    with pytest.raises(
        PostHogConfigError, match=r"^data_interval_start \(2024-03-02.*\) must be before data_interval_end"
    ):
        resolve_range(
            start,
            end,
            {"dag": _dag("@daily")},
            start_name="data_interval_start",
            end_name="data_interval_end",
        )
