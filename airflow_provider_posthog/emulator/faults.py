"""Scripted faults per route and PostHog's per-key rate limits."""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import ApiError


@dataclass
class Fault:
    """One scripted fault: affects the next ``count`` matching calls (``None`` = every call).

    ``trickle``: seconds between the bytes of the answer's body (the status line and headers, with the
    body's ``Content-Length``, go out at once), like a slow proxy or an overloaded server.
    """

    path_regex: str
    method: str | None = None
    status: int | None = 503
    count: int | None = 1
    retry_after: float | None = None
    latency: float = 0.0
    drop_connection: bool = False
    html: bool = False
    body: dict[str, object] | None = None
    trickle: float = 0.0
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path_regex)
        if self.method is not None:
            self.method = self.method.upper()
        if self.trickle < 0:
            raise ValueError("trickle must not be negative")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self._pattern.search(path) is not None

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.count > 0 and self.hits >= self.count


class FaultInjector:
    """Keeps scripted faults in order; the first live matching fault wins and is consumed."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def take(self, method: str, path: str) -> Fault | None:
        if not self._faults:
            return None
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(method, path):
                    fault.hits += 1
                    return fault
            self._faults = [f for f in self._faults if not f.exhausted]
        return None


def throttled(wait: float, retry_after_header: bool) -> ApiError:
    """DRF's ``Throttled`` through PostHog's envelope."""
    seconds = max(1, math.ceil(wait))
    unit = "second" if seconds == 1 else "seconds"
    headers = {"Retry-After": str(seconds)} if retry_after_header else {}
    return ApiError(
        429,
        "throttled_error",
        "throttled",
        f"Request was throttled. Expected available in {seconds} {unit}.",
        None,
        headers,
    )


class RateLimiter:
    """DRF ``SimpleRateThrottle`` semantics per key: burst (per minute) and sustained (per hour) windows.

    Uses the emulated clock, so ``advance(60)`` empties the burst window. Throttled calls are not counted.
    """

    def __init__(self, per_minute: int | None, per_hour: int | None) -> None:
        self.rules: list[tuple[int, timedelta]] = []
        if per_minute:
            self.rules.append((per_minute, timedelta(minutes=1)))
        if per_hour:
            self.rules.append((per_hour, timedelta(hours=1)))
        self._history: dict[str, deque[datetime]] = {}

    def reset(self) -> None:
        self._history.clear()

    def check(self, key: str, now: datetime) -> float | None:
        """Record the call and return None, or return the wait in seconds when throttled."""
        if not self.rules:
            return None
        history = self._history.setdefault(key, deque())
        longest = max(d for _, d in self.rules)
        while history and history[0] <= now - longest:
            history.popleft()
        wait = 0.0
        for limit, duration in self.rules:
            cutoff = now - duration
            inside = [t for t in history if t > cutoff] if duration != longest else list(history)
            if len(inside) >= limit:
                oldest_relevant = inside[len(inside) - limit]
                wait = max(wait, (oldest_relevant + duration - now).total_seconds())
        if wait > 0:
            return wait
        history.append(now)
        return None
