"""The re-attach rule (``tasks.reattach``) with fake task instances: no hook, no DAG run."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest

from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks import reattach as rule

ROUND_START = "2024-01-01T23:59:00+00:00"  # the factories' backfills are created 2024-01-02T00:00:00Z


def _ctx(try_number: int = 1, max_tries: int = 1, retries: int = 1, start: str | None = ROUND_START) -> Any:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, max_tries
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=retries),
        "dag_run": SimpleNamespace(start_date=pendulum.parse(start) if start else None),
    }


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


@pytest.mark.parametrize(("rescheduled", "expected"), [(0, False), (1, True), (3, True), (None, False)])
def test_a_first_try_that_airflow_rescheduled_counts_as_a_retry(rescheduled: Any, expected: bool) -> None:
    """A resumed task whose DAG file failed to load is rescheduled by Airflow (not a retry) and starts over
    from ``execute()`` with try number 1: its earlier start may have created the backfill."""
    context = {**_ctx(1, 2, 2), "task_reschedule_count": rescheduled}
    assert rule.is_retry(context) is expected
    assert rule.should_look(rule.RETRY, context) is expected


def test_unknown_try_numbers_count_as_a_first_try() -> None:
    assert rule.is_retry({"ti": mock.MagicMock()}) is False
    assert rule.is_retry(None) is False


def test_created_this_round_uses_the_dag_runs_start_date_minus_the_skew_allowance(factories: Any) -> None:
    backfill = factories.backfill("Completed")  # created 2024-01-02T00:00:00Z, PostHog's clock not measured
    assert rule.created_this_round(backfill, _ctx(start="2024-01-02T00:14:59+00:00"))  # within 15 minutes
    assert not rule.created_this_round(backfill, _ctx(start="2024-01-02T00:15:01+00:00"))
    assert not rule.created_this_round(backfill, _ctx(start=None))


@pytest.mark.parametrize("worker_ahead", [10, -10], ids=["worker+10min", "worker-10min"])
def test_a_retry_on_a_skewed_worker_counts_its_own_backfill_and_not_an_earlier_rounds(
    factories: Any, worker_ahead: int
) -> None:
    """The round began at 00:00 on PostHog's clock; Airflow's clock (the worker's) read 00:00 + skew."""
    from airflow_provider_posthog.api.backfills import SeenBackfill
    from airflow_provider_posthog.api.clock import PostHogClock

    skew = dt.timedelta(minutes=worker_ahead)
    context = _ctx(try_number=2, start=(pendulum.datetime(2024, 1, 2, tz="UTC") + skew).isoformat())
    measured = PostHogClock(-skew)  # what the lookup read from PostHog's Date header
    ours = factories.backfill("Running", created_at="2024-01-02T00:00:30Z")
    earlier = factories.backfill("Completed", created_at="2024-01-01T23:44:00Z")  # 16 min before the round
    assert rule.may_reattach("retry", SeenBackfill.of(ours, measured), context)
    assert not rule.may_reattach("retry", SeenBackfill.of(earlier, measured), context)
    assert rule.may_reattach("retry", ours, context)  # without Date: the 15-minute allowance covers 10


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


@pytest.mark.parametrize(
    ("mode", "retry", "this_round", "expected"),
    [
        ("always", False, False, True),
        ("never", True, True, False),
        ("retry", True, True, True),
        ("retry", False, True, False),  # a first try exports again
        ("retry", True, False, False),  # an earlier round's backfill
    ],
)
def test_may_reattach_and_should_look(
    factories: Any, mode: str, retry: bool, this_round: bool, expected: bool
) -> None:
    context = _ctx(
        try_number=2 if retry else 1, start=ROUND_START if this_round else "2024-01-03T00:00:00+00:00"
    )
    assert rule.may_reattach(mode, factories.backfill("Running"), context) is expected
    assert rule.should_look(mode, context) is (mode == "always" or (mode == "retry" and retry))
