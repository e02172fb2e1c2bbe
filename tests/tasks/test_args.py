"""Argument rules (``tasks.args``): every error names the argument and what it accepts. No hook, no DAG."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
import pytest

from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks import args

UTC = dt.timezone.utc


def test_config_errors_are_never_retried() -> None:
    assert issubclass(PostHogConfigError, AirflowFailException)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, "x is required"),
        ("  ", "x is required"),
        ("{{ params.x }}", "x='{{ params.x }}' was not rendered"),
    ],
)
def test_require_id_refuses_missing_and_unrendered(value: Any, match: str) -> None:
    with pytest.raises(PostHogConfigError, match=match):
        args.require_id(value, "x")


def test_ids_are_stripped_strings_and_optional_ids_may_be_left_out() -> None:
    assert args.require_id(" abc ", "x") == "abc"
    assert args.require_id(42, "x") == "42"
    assert args.optional_id(None, "x") is None
    assert args.optional_id(" ", "x") is None
    assert args.optional_id("r1", "x") == "r1"
    with pytest.raises(PostHogConfigError, match="not rendered"):
        args.optional_id("{{ x }}", "run_id")


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01T00:00:00Z",
        "2024-01-01 00:00:00+00:00",
        "2024-01-01T01:00:00+01:00",
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        pendulum.datetime(2024, 1, 1, 1, tz="Europe/Berlin"),
    ],
)
def test_to_datetime_accepts_aware_values_and_returns_utc(value: Any) -> None:
    parsed = args.to_datetime(value, "start_at")
    assert parsed == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("2024-01-01T00:00:00", "start_at='2024-01-01T00:00:00' is naive"),
        (dt.datetime(2024, 1, 1), "start_at=.* is naive"),
        ("yesterday", "start_at='yesterday' is not an ISO-8601 datetime"),
        ("", "start_at is empty"),
        (1704067200, "start_at must be a datetime or ISO-8601 string, got int"),
    ],
)
def test_to_datetime_refuses_naive_and_unparsable_values(value: Any, match: str) -> None:
    with pytest.raises(PostHogConfigError, match=match):
        args.to_datetime(value, "start_at")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("True", True),
        (" off ", False),
        ("", False),
        ("none", False),
        (0, False),
    ],
)
def test_to_bool_accepts_rendered_flags(value: Any, expected: bool) -> None:
    assert args.to_bool(value, "strict") is expected


@pytest.mark.parametrize("value", ["maybe", 1.5, None])
def test_to_bool_refuses_anything_else(value: Any) -> None:
    with pytest.raises(PostHogConfigError, match=r"strict=.* is not a boolean"):
        args.to_bool(value, "strict")


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0.0), (5, 5.0), ("7.5", 7.5), (dt.timedelta(minutes=2), 120.0)]
)
def test_to_seconds_accepts_numbers_strings_and_timedeltas(value: Any, expected: float) -> None:
    assert args.to_seconds(value, "poll_interval") == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("fast", "poll_interval='fast' is not a number of seconds"),
        (-1, "poll_interval must be a non-negative number of seconds"),
        (dt.timedelta(seconds=-1), "poll_interval must be a non-negative"),
        ("nan", "poll_interval must be a non-negative"),
        (None, "poll_interval is required"),
    ],
)
def test_to_seconds_refuses_negative_and_non_numbers(value: Any, match: str) -> None:
    with pytest.raises(PostHogConfigError, match=match):
        args.to_seconds(value, "poll_interval")


def test_optional_seconds_means_no_limit_when_left_out() -> None:
    assert args.to_optional_seconds(None, "timeout") is None
    assert args.to_optional_seconds("", "timeout") is None
    assert args.to_optional_seconds("30", "timeout") == 30.0


def test_check_order_refuses_empty_and_reversed_windows() -> None:
    a, b = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
    assert args.check_order(a, b, "start_at", "end_at") == (a, b)
    for start, end in ((a, a), (b, a)):
        with pytest.raises(PostHogConfigError, match=r"^start_at \(.*\) must be before end_at \(.*\)\.$"):
            args.check_order(start, end, "start_at", "end_at")


def test_check_past_refuses_the_future() -> None:
    now = dt.datetime(2024, 1, 2, tzinfo=UTC)
    assert args.check_past(now, "end_at", now=now) == now
    with pytest.raises(
        PostHogConfigError, match=r"end_at .* is in the future; PostHog only backfills the past"
    ):
        args.check_past(now + dt.timedelta(seconds=1), "end_at", now=now)


def test_wait_args_are_parsed_together_and_each_error_names_its_argument() -> None:
    parsed = args.WaitArgs.parse(
        wait_for_completion="true", poll_interval="5", timeout=None, cancel_on_kill=False
    )
    assert parsed == args.WaitArgs(
        wait_for_completion=True, poll_interval=5.0, timeout=None, cancel_on_kill=False
    )
    assert parsed.unreachable_timeout is None  # by default a wait rides out an outage until its deadline
    good: dict[str, Any] = {
        "wait_for_completion": True,
        "poll_interval": 1,
        "timeout": 1,
        "cancel_on_kill": True,
        "unreachable_timeout": "",
    }
    assert args.WaitArgs.parse(**good).unreachable_timeout is None
    tightened = args.WaitArgs.parse(**{**good, "unreachable_timeout": dt.timedelta(minutes=5)})
    assert tightened.unreachable_timeout == 300.0
    for name, bad in (
        ("wait_for_completion", "perhaps"),
        ("poll_interval", "soon"),
        ("timeout", -5),
        ("cancel_on_kill", "x"),
        ("unreachable_timeout", "a while"),
    ):
        with pytest.raises(PostHogConfigError, match=f"^{name}"):
            args.WaitArgs.parse(**{**good, name: bad})
