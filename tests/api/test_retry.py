"""The one retry policy: what is retried, how long it waits, when it gives up (api/retry.py)."""

from __future__ import annotations

import time

import pytest
from op_driver import api_error

from airflow_provider_posthog.api.errors import transport_error
from airflow_provider_posthog.api.retry import RetryPolicy
from airflow_provider_posthog.exceptions import (
    PostHogConnectError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTransportError,
)


def test_retry_decisions() -> None:
    policy = RetryPolicy()
    server = {s: api_error(s, {"detail": "x"}) for s in (500, 501, 502, 503, 504)}
    sent = transport_error(method="GET", path="/p", error=TimeoutError("read timed out"), sent=True)
    not_sent = transport_error(method="GET", path="/p", error=ConnectionRefusedError("refused"), sent=False)
    assert isinstance(not_sent, PostHogConnectError) and isinstance(not_sent, PostHogTransportError)
    throttled = api_error(429, {"code": "throttled"})
    too_many = api_error(429, {"code": "too_many_concurrent_backfills"})
    for idem in (True, False):
        assert policy.should_retry(throttled, idempotent=idem)
        assert policy.should_retry(not_sent, idempotent=idem)
        assert not policy.should_retry(too_many, idempotent=idem)
        for s in (400, 401, 403, 404, 405):
            assert not policy.should_retry(api_error(s, {"detail": "x"}), idempotent=idem)
    assert all(policy.should_retry(server[s], idempotent=True) for s in (500, 502, 503, 504))
    assert not policy.should_retry(server[501], idempotent=True)
    assert policy.should_retry(sent, idempotent=True)
    # Ambiguous failures of a non-idempotent POST are never resent blindly.
    assert not any(policy.should_retry(server[s], idempotent=False) for s in (500, 502, 503, 504))
    assert not policy.should_retry(sent, idempotent=False)


def test_waits() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=8.0, max_retry_after=60.0)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [policy.wait_for(None, attempt) for _ in range(50)]
        assert all(base / 2 <= w <= base for w in waits)
        assert len(set(waits)) > 1  # jitter
    honoured = PostHogRateLimitError("x", retry_after=12.0)
    honoured_waits = [policy.wait_for(honoured, 1) for _ in range(50)]
    assert all(12.0 <= w <= 18.0 for w in honoured_waits) and len(set(honoured_waits)) > 1  # jittered
    assert all(
        60.0 <= policy.wait_for(PostHogRateLimitError("x", retry_after=600.0), 1) <= 90.0 for _ in range(20)
    )  # capped
    assert 0.5 <= policy.wait_for(PostHogRateLimitError("x", retry_after=None), 1) <= 1.0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retrying_is_bounded_by_attempts_and_time() -> None:
    calls: list[float] = []

    def fail() -> None:
        calls.append(time.monotonic())
        raise api_error(503, {"detail": "down"})

    policy = RetryPolicy(max_attempts=3, max_elapsed=60, backoff_initial=0.001, backoff_max=0.002)
    with pytest.raises(PostHogServerError):
        for attempt in policy.retrying(idempotent=True):
            with attempt:
                fail()
    assert len(calls) == 3
    calls.clear()
    slow = RetryPolicy(max_attempts=50, max_elapsed=0.3, backoff_initial=0.1, backoff_max=0.1)
    started = time.monotonic()
    with pytest.raises(PostHogServerError):
        for attempt in slow.retrying(idempotent=True):
            with attempt:
                fail()
    assert time.monotonic() - started < 1.5 and 2 <= len(calls) <= 6


def test_throttles_have_their_own_longer_budget() -> None:
    """A key throttled for longer than ``max_elapsed`` still gets through within ``max_throttled``."""
    started = time.monotonic()
    calls = 0

    def throttled_for_half_a_second() -> str:
        nonlocal calls
        calls += 1
        if time.monotonic() - started < 0.5:
            raise PostHogRateLimitError("throttled", retry_after=0.05, http_status=429)
        return "ok"

    policy = RetryPolicy(
        max_attempts=2, max_elapsed=0.2, max_throttled=5.0, max_retry_after=0.05, backoff_initial=0.01
    )
    for attempt in policy.retrying(idempotent=True):
        with attempt:
            result = throttled_for_half_a_second()
    assert result == "ok" and calls > 2  # more than max_attempts, longer than max_elapsed
    short = RetryPolicy(max_attempts=2, max_elapsed=0.2, max_throttled=0.2, max_retry_after=0.05)
    started, calls = time.monotonic(), 0
    with pytest.raises(PostHogRateLimitError):
        for attempt in short.retrying(idempotent=True):
            with attempt:
                throttled_for_half_a_second()
