"""The one retry policy: what is retried, how long it waits, when it gives up (api/retry.py)."""

from __future__ import annotations

import time

import pytest
from op_driver import api_error

from airflow_provider_posthog.api import retry
from airflow_provider_posthog.api.errors import transport_error
from airflow_provider_posthog.api.retry import NO_DEADLINE, Deadline, RetryPolicy, transient
from airflow_provider_posthog.exceptions import (
    PostHogConfigError,
    PostHogConnectError,
    PostHogDeadlineError,
    PostHogRateLimitError,
    PostHogResponseTooLargeError,
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


# -- transient: what a wait keeps waiting through -----------------------------------------------------------


def _transport(error: BaseException, *, sent: bool) -> PostHogTransportError:
    return transport_error(method="GET", path="/p", error=error, sent=sent)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(api_error(503, {"detail": "x"}), True, id="503"),
        pytest.param(api_error(502, {"detail": "x"}), True, id="502"),
        pytest.param(api_error(500, {"detail": "x"}), True, id="500"),
        pytest.param(api_error(504, {"detail": "x"}), True, id="504"),
        pytest.param(api_error(429, {"code": "throttled"}), True, id="429-throttled"),
        pytest.param(api_error(429, {"code": "too_many_concurrent_backfills"}), False, id="429-backfills"),
        pytest.param(_transport(ConnectionResetError("reset"), sent=True), True, id="dropped"),
        pytest.param(_transport(ConnectionRefusedError("refused"), sent=False), True, id="refused"),
        pytest.param(PostHogDeadlineError("cut at its deadline"), True, id="deadline"),
        pytest.param(TimeoutError("timed out"), True, id="timeout"),
        pytest.param(api_error(400, {"detail": "x"}), False, id="400"),
        pytest.param(api_error(401, {"detail": "x"}), False, id="401"),
        pytest.param(api_error(403, {"detail": "x"}), False, id="403"),
        pytest.param(api_error(404, {"detail": "x"}), False, id="404"),
        pytest.param(PostHogConfigError("no host"), False, id="config"),
        pytest.param(PostHogResponseTooLargeError("too large"), False, id="too-large"),
        pytest.param(ValueError("a bug"), False, id="other"),
    ],
)
def test_transient_is_trouble_posthog_recovers_from(exc: BaseException, expected: bool) -> None:
    assert transient(exc) is expected


# -- Deadline -----------------------------------------------------------------------------------------------


def test_no_deadline_never_passes_and_clamps_nothing() -> None:
    assert Deadline.from_epoch(None) is NO_DEADLINE
    assert NO_DEADLINE.remaining() is None
    assert NO_DEADLINE.clamp(30.0) == 30.0


def test_a_deadline_from_epoch_seconds_counts_down_on_the_monotonic_clock() -> None:
    deadline = Deadline.from_epoch(time.time() + 10.0)
    left = deadline.remaining()
    assert left is not None and 9.0 < left <= 10.0
    assert deadline.at is not None and abs(deadline.at - (time.monotonic() + 10.0)) < 1.0
    assert deadline.clamp(3.0) == 3.0 and 9.0 < deadline.clamp(60.0) <= 10.0


def test_a_passed_deadline_leaves_nothing() -> None:
    passed = Deadline.from_epoch(time.time() - 5.0)
    assert passed.remaining() == 0.0 and passed.clamp(30.0) == 0.0


# -- the caller's deadline bounds the retries ---------------------------------------------------------------


class _Clock:
    """The retry module's clock, moved only by the fake sleep."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class _FixedBackoff(RetryPolicy):
    def backoff(self, attempt_number: int) -> float:
        return 2.0


def _attempts(policy: RetryPolicy, exc: Exception, deadline: Deadline, clock: _Clock) -> int:
    calls = 0
    with pytest.raises(type(exc)):
        for attempt in policy.retrying(idempotent=True, deadline=deadline).copy(sleep=clock.sleep):
            with attempt:
                calls += 1
                raise exc
    return calls


def test_retries_stop_when_the_next_sleep_would_cross_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(retry, "time", clock)
    policy = _FixedBackoff(max_attempts=10, max_elapsed=1_000)
    down = api_error(503, {"detail": "down"})
    # 5 s left: fail, sleep 2, fail, sleep 2, fail with 1 s left: a 2 s sleep would cross it.
    assert _attempts(policy, down, Deadline(clock.now + 5.0), clock) == 3
    assert clock.slept == [2.0, 2.0]
    clock.slept.clear()
    assert _attempts(policy, down, NO_DEADLINE, clock) == 10  # without one, the attempts bound it


def test_a_throttle_asking_for_longer_than_the_deadline_leaves_is_not_waited_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(retry, "time", clock)
    throttled = PostHogRateLimitError("throttled", retry_after=30.0, http_status=429)
    assert _attempts(RetryPolicy(), throttled, Deadline(clock.now + 10.0), clock) == 1
    assert clock.slept == []
