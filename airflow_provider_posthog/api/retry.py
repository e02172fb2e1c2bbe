"""The one retry policy for PostHog requests, shared by the sync (requests) and async (aiohttp) transports.

What is retried:
- 429 ``throttled``: after ``Retry-After`` (seconds or HTTP-date; or the "available in N seconds" of the
  detail), capped at ``max_retry_after``; without a hint, exponential backoff with jitter.
- 500/502/503/504 and transport failures (connection refused/reset, timeouts): exponential backoff
  with jitter.
- Never other 4xx (400/401/403/404/405...), never ``too_many_concurrent_backfills`` (429): a backfill slot
  frees when a backfill finishes, minutes to hours later, so the hook fails at once with
  :class:`~airflow_provider_posthog.exceptions.PostHogTooManyBackfillsError` and lets the operator or
  Airflow's task retries decide, instead of holding a worker slot in a hidden loop.

Non-idempotent requests (create export, create backfill, retry run) are resent only when that provably cannot
duplicate work: after a 429 ``throttled`` (DRF throttles before the view runs) or a
:class:`~airflow_provider_posthog.exceptions.PostHogConnectError` (the request never left this machine).
After an ambiguous failure (5xx, read timeout, dropped connection) the backfill operations look for the
backfill PostHog may have created before trying again (see ``api/backfills.py``).

Bounds: ``max_attempts`` attempts in total and ``max_elapsed`` seconds including the next wait (a wait that
would cross the budget stops retrying at once), and the caller's :class:`Deadline`: a wait's polls never
retry past the wait's own end.

The same classification serves the waits one level up: :func:`transient` is "PostHog may answer again
later" (a wait keeps waiting through it until its deadline), anything else ends a wait at once.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import tenacity

from airflow_provider_posthog.api.errors import RETRYABLE_SERVER_STATUSES
from airflow_provider_posthog.exceptions import (
    PostHogConnectError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTooManyBackfillsError,
    PostHogTransportError,
)

DEFAULT_MAX_ATTEMPTS = 5


def transient(exc: BaseException) -> bool:
    """Trouble PostHog (or the network) recovers from on its own: 5xx, throttling, dropped connections,
    timeouts. A wait keeps waiting through it; everything else (400, 401/403, 404, a config error, an
    answer this provider cannot read) is final."""
    if isinstance(exc, PostHogTooManyBackfillsError):
        return False
    if isinstance(exc, (PostHogRateLimitError, PostHogTransportError, TimeoutError)):
        return True
    return isinstance(exc, PostHogServerError)


@dataclasses.dataclass(frozen=True)
class Deadline:
    """The end of a call on the monotonic clock (``at=None``: none). Callers hand over epoch seconds (a
    wait's end is computed by the worker and compared in the triggerer); the drivers convert once."""

    at: float | None = None

    @classmethod
    def from_epoch(cls, epoch: float | None) -> Deadline:
        if epoch is None:
            return NO_DEADLINE
        return cls(time.monotonic() + (epoch - time.time()))

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def clamp(self, seconds: float) -> float:
        """``seconds``, cut to what is left."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)


NO_DEADLINE = Deadline()


class _Budget(tenacity.stop.stop_base):
    """When to give up: failures after ``max_attempts`` or ``max_elapsed``; throttles after ``max_throttled``.

    Throttling says "come back later", not "broken": with many waits on one key, five 429s come in a few
    seconds and the key's window can ask for most of a minute twice in a row, so a throttled request keeps
    its own, longer time budget and does not count against the attempts.
    """

    def __init__(
        self, max_attempts: int, max_elapsed: float, max_throttled: float, deadline: Deadline = NO_DEADLINE
    ) -> None:
        self.max_attempts = max_attempts
        self.max_elapsed = max_elapsed
        self.max_throttled = max_throttled
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        upcoming = retry_state.upcoming_sleep or 0.0
        left = self.deadline.remaining()
        if left is not None and upcoming >= left:
            return True  # the caller's deadline comes first: no retry can finish before it
        elapsed = (retry_state.seconds_since_start or 0.0) + upcoming
        if outcome is not None and isinstance(outcome.exception(), PostHogRateLimitError):
            return elapsed >= self.max_throttled
        return elapsed >= self.max_elapsed or retry_state.attempt_number >= self.max_attempts


DEFAULT_MAX_ELAPSED = 120.0
DEFAULT_MAX_THROTTLED = 600.0


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Numbers of the retry policy; plain values so they can cross into triggers as kwargs.

    Defaults: 5 attempts, 120 s total, backoff 1 s doubling to 30 s with equal jitter (half fixed, half
    random), ``Retry-After`` honoured up to 60 s plus up to half of it again as jitter. Throttled 429s do not
    count against the attempts: they are retried for up to 600 s.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_elapsed: float = DEFAULT_MAX_ELAPSED
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    #: Seconds a throttled (429) request keeps being retried: a per-minute window can ask for most of a minute
    #: twice in a row under a sustained overload.
    max_throttled: float = DEFAULT_MAX_THROTTLED

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if (
            self.max_elapsed < 0
            or self.backoff_initial < 0
            or self.backoff_max < 0
            or self.max_retry_after < 0
        ):
            raise ValueError("retry timings must not be negative")

    def should_retry(self, exc: BaseException, *, idempotent: bool) -> bool:
        """Whether ``exc`` (already mapped by ``api.errors``) is worth another attempt."""
        if isinstance(exc, PostHogTooManyBackfillsError):
            return False
        if isinstance(exc, PostHogRateLimitError):
            return True  # throttled before the view ran: nothing was created
        if isinstance(exc, PostHogConnectError):
            return True  # never reached PostHog
        if not idempotent:
            return False
        if isinstance(exc, PostHogServerError):
            return exc.http_status in RETRYABLE_SERVER_STATUSES
        return transient(exc)

    def backoff(self, attempt_number: int) -> float:
        """Exponential backoff with equal jitter for the wait after attempt ``attempt_number`` (1-based)."""
        base = min(self.backoff_max, self.backoff_initial * (2 ** max(0, attempt_number - 1)))
        return base / 2 + random.uniform(0, base / 2)

    def wait_for(self, exc: BaseException | None, attempt_number: int) -> float:
        """Seconds to wait before the next attempt."""
        if isinstance(exc, PostHogRateLimitError) and exc.retry_after is not None:
            # Jitter on top of Retry-After: many clients throttled on one key are told the same second, and
            # coming back together they would be throttled together again.
            wait = min(exc.retry_after, self.max_retry_after)
            return wait + random.uniform(0, max(wait, self.backoff_initial) / 2)
        return self.backoff(attempt_number)

    def _kwargs(self, *, idempotent: bool, log: Any, deadline: Deadline) -> dict[str, Any]:
        def _wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait_for(exc, state.attempt_number)

        def _retry(state: tenacity.RetryCallState) -> bool:
            if state.outcome is None or not state.outcome.failed:
                return False
            exc = state.outcome.exception()
            return exc is not None and self.should_retry(exc, idempotent=idempotent)

        def _before_sleep(state: tenacity.RetryCallState) -> None:
            # INFO: a retry that then succeeds is routine, and a wait that cannot reach PostHog says so once
            # itself; the final failure is raised with "gave up after N attempts".
            if log is None:
                return
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info(
                "Attempt %d of %d failed, retrying in %.2fs: %s",
                state.attempt_number,
                self.max_attempts,
                wait,
                exc,
            )

        return {
            "stop": _Budget(
                self.max_attempts, self.max_elapsed, max(self.max_elapsed, self.max_throttled), deadline
            ),
            "wait": _wait,
            "retry": _retry,
            "before_sleep": _before_sleep,
            "reraise": True,
        }

    def retrying(
        self,
        *,
        idempotent: bool,
        log: Any = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> tenacity.Retrying:
        return tenacity.Retrying(**self._kwargs(idempotent=idempotent, log=log, deadline=deadline))

    def async_retrying(
        self,
        *,
        idempotent: bool,
        log: Any = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(**self._kwargs(idempotent=idempotent, log=log, deadline=deadline))
