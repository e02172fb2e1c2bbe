"""The re-attach rule (``utils.reattach``) and zero-width ranges (``utils.data_interval``), with fake task
instances and real Airflow timetables; the operators with a mocked hook (no network, no DB)."""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import PostHogBackfillAlreadyRunningError, PostHogConfigError
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator
from airflow_provider_posthog.utils import reattach as rule
from airflow_provider_posthog.utils.data_interval import last_complete_period, resolve_range

UTC = dt.timezone.utc
EXPORT = "0190-export"
BACKFILL = "0190-backfill"
ROUND_START = "2024-01-01T23:59:00+00:00"  # the factories' backfills are created 2024-01-02T00:00:00Z


def _ctx(try_number: int = 1, max_tries: int = 1, retries: int = 1, start: str | None = ROUND_START) -> Any:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, max_tries
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=retries),
        "dag_run": SimpleNamespace(start_date=pendulum.parse(start) if start else None),
    }


# --------------------------------------------------------------------------------------- the attempt rule


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "expected"),
    [
        (1, 2, 2, False),  # first try of a new DAG run
        (2, 2, 2, True),  # its first retry
        (3, 2, 2, True),  # its last retry
        (4, 5, 2, False),  # first try after a clear (max_tries = 3 + 2)
        (5, 5, 2, True),  # a retry after the clear
        (1, 0, 0, False),  # no retries configured
    ],
)
def test_is_retry_follows_airflows_first_try_formula(
    try_number: int, max_tries: int, retries: int, expected: bool
) -> None:
    assert rule.is_retry(_ctx(try_number, max_tries, retries)) is expected


def test_unknown_try_numbers_count_as_a_first_try() -> None:
    assert rule.is_retry({"ti": mock.MagicMock()}) is False
    assert rule.is_retry(None) is False


def test_created_this_round_uses_the_dag_runs_start_date_minus_clock_skew(factories: Any) -> None:
    backfill = factories.backfill("Completed")  # created 2024-01-02T00:00:00Z
    assert rule.created_this_round(backfill, _ctx(start="2024-01-02T00:04:00+00:00"))  # within the skew
    assert not rule.created_this_round(backfill, _ctx(start="2024-01-02T00:06:00+00:00"))
    assert not rule.created_this_round(backfill, _ctx(start=None))


@pytest.mark.parametrize(
    ("reattach", "reuse_existing", "expected"),
    [
        ("retry", None, "retry"),
        ("ALWAYS", None, "always"),
        ("never", None, "never"),
        ("retry", True, "always"),
    ],
)
def test_validate_reattach(reattach: str, reuse_existing: Any, expected: str) -> None:
    assert rule.validate_reattach(reattach, reuse_existing) == expected


def test_validate_reattach_names_the_choices() -> None:
    with pytest.raises(PostHogConfigError, match=r"reattach=1 is not one of \['retry', 'always', 'never'\]"):
        rule.validate_reattach(1)
    assert issubclass(PostHogConfigError, AirflowFailException)  # never retried


# -------------------------------------------------------------------------------- the backfill operator


def _hook(factories: Any) -> mock.MagicMock:
    hook = mock.MagicMock()
    hook.find_backfill.return_value = None
    hook.create_backfill.return_value = factories.backfill("Running", id="new")
    hook.get_backfill.side_effect = lambda export_id, backfill_id: factories.backfill(
        "Completed", id=backfill_id
    )
    hook.list_backfill_runs.side_effect = lambda export_id, backfill, *a, **k: [
        factories.run("Completed", backfill_id=backfill.id)
    ]
    hook.ui_url.return_value = "https://ph.test/x"
    return hook


def _op(hook: mock.MagicMock, **kwargs: Any) -> PostHogCreateBackfillOperator:
    op = PostHogCreateBackfillOperator(
        task_id="backfill",
        batch_export_id=EXPORT,
        start_at="2024-01-01T00:00:00+00:00",
        end_at="2024-01-01T02:00:00+00:00",
        poll_interval=0,
        deferrable=False,
        **kwargs,
    )
    op.__dict__["hook"] = hook
    return op


def test_first_try_exports_again_even_when_the_range_was_exported(factories: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="earlier-run")
    assert _op(hook).execute(_ctx(try_number=1)) == "new"
    hook.find_backfill.assert_not_called()  # nothing to look up on a first try
    hook.create_backfill.assert_called_once()


@pytest.mark.parametrize("status", ["Running", "Starting", "Completed"])
def test_retry_reattaches_to_what_this_round_created(factories: Any, status: str) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill(status, id="ours")
    assert _op(hook).execute(_ctx(try_number=2)) == "ours"
    hook.create_backfill.assert_not_called()


def test_retry_does_not_adopt_a_backfill_of_an_earlier_round(factories: Any, capfd: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="old")
    context = _ctx(try_number=2, start="2024-01-03T00:00:00+00:00")  # DAG run (re)started a day later
    assert _op(hook).execute(context) == "new"
    assert "not from an earlier try of this task" in capfd.readouterr().out


@pytest.mark.parametrize("status", ["Failed", "Cancelled"])
def test_retry_replaces_a_failed_backfill_of_this_round(factories: Any, status: str) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill(status, id="ours")
    assert _op(hook).execute(_ctx(try_number=2)) == "new"


def test_cleared_task_exports_again(factories: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="ours")
    assert _op(hook).execute(_ctx(try_number=3, max_tries=3, retries=1)) == "new"


def test_always_reattaches_on_a_first_try_and_never_never_does(factories: Any) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="old")
    assert _op(hook, reattach="always").execute(_ctx(try_number=1)) == "old"
    hook.create_backfill.assert_not_called()
    assert _op(hook, reattach="never").execute(_ctx(try_number=2)) == "new"


@pytest.mark.parametrize(("reuse_existing", "expected"), [(True, "old"), (False, "new")])
def test_reuse_existing_is_a_deprecated_alias(factories: Any, reuse_existing: bool, expected: str) -> None:
    hook = _hook(factories)
    hook.find_backfill.return_value = factories.backfill("Completed", id="old")
    with pytest.warns(DeprecationWarning, match="reuse_existing is deprecated"):
        op = _op(hook, reuse_existing=reuse_existing)
    assert op.execute(_ctx(try_number=1)) == expected


def test_invalid_reattach_fails_before_any_call(factories: Any) -> None:
    hook = _hook(factories)
    with pytest.raises(PostHogConfigError, match="reattach='sometimes'"):
        _op(hook, reattach="sometimes").execute(_ctx())
    assert hook.mock_calls == []


def _already_running(factories: Any, **extra: Any) -> PostHogBackfillAlreadyRunningError:
    running = factories.backfill("Running", id="running", **extra)
    return PostHogBackfillAlreadyRunningError(
        "Backfill running of batch export 0190-export over the same range is still Running.",
        backfill_id="running",
        backfill=running,
    )


def test_identical_running_backfill_fails_a_first_try_at_once_naming_it(factories: Any) -> None:
    hook = _hook(factories)
    hook.create_backfill.side_effect = _already_running(factories)
    with pytest.raises(AirflowFailException, match="reattach='always' or a PostHogBackfillSensor") as err:
        _op(hook).execute(_ctx(try_number=1))
    assert "Backfill running" in str(err.value) and "backfill running" in str(err.value)


@pytest.mark.parametrize(
    ("reattach", "context"), [("always", _ctx(try_number=1)), ("retry", _ctx(try_number=2))]
)
def test_identical_running_backfill_is_adopted_when_allowed(
    factories: Any, reattach: str, context: Any
) -> None:
    hook = _hook(factories)
    hook.create_backfill.side_effect = _already_running(factories)
    assert _op(hook, reattach=reattach).execute(context) == "running"


def test_retry_run_operator_follows_the_same_rule(factories: Any) -> None:
    hook = _hook(factories)
    hook.get_run.return_value = factories.run("Failed", backfill_id=None)
    hook.retry_run.return_value = factories.backfill("Running", id="new")
    hook.find_backfill.return_value = factories.backfill("Completed", id="ours")

    def op(**kwargs: Any) -> PostHogRetryRunOperator:
        task = PostHogRetryRunOperator(
            task_id="retry", batch_export_id=EXPORT, run_id="run-1", poll_interval=0, **kwargs
        )
        task.__dict__["hook"] = hook
        return task

    assert op().execute(_ctx(try_number=1)) == "new"  # a new DAG run retries the run again
    assert op().execute(_ctx(try_number=2)) == "ours"  # a retry re-attaches
    assert op(reattach="never").execute(_ctx(try_number=2)) == "new"
    assert hook.retry_run.call_count == 2
    with pytest.raises(PostHogConfigError, match="reattach"):
        op(reattach="yes").execute(_ctx())


# ---------------------------------------------------------------------------------- zero-width ranges


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


def test_backfill_operator_derives_a_zero_width_range_from_the_dags_schedule(factories: Any) -> None:
    hook = _hook(factories)
    op = PostHogCreateBackfillOperator(
        task_id="b",
        batch_export_id=EXPORT,
        start_at="2024-03-05T00:00:00+00:00",
        end_at="2024-03-05T00:00:00+00:00",
    )
    op.__dict__["hook"] = hook
    op.poll_interval, op.deferrable = 0, False
    context = {**_ctx(), "dag": _dag("@daily")}
    op.execute(context)  # type: ignore[arg-type]
    assert hook.create_backfill.call_args.args == (EXPORT, _utc(2024, 3, 4), _utc(2024, 3, 5))


def test_backfill_operator_without_a_schedule_fails_before_any_call(factories: Any) -> None:
    hook = _hook(factories)
    op = _op(hook)
    op.start_at = op.end_at = "2024-03-05T00:00:00+00:00"
    with pytest.raises(PostHogConfigError, match="no schedule"):
        op.execute({**_ctx(), "dag": _dag(None)})
    assert hook.mock_calls == []
