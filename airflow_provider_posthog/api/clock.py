"""PostHog's clock against this machine's: the one clock-skew allowance, and the offset from ``Date``.

PostHog stamps a backfill's ``created_at`` with its own clock, Airflow stamps a DAG run's ``start_date`` and
this machine reads "now" with theirs. Compared directly, a worker clock ten minutes ahead does not recognise
the backfill it has just created, and its retry creates a second one. Every HTTP answer carries a ``Date``
header (the server's clock, to the second, RFC 9110 section 6.6.1), so the offset between this machine and
PostHog is measured rather than guessed, and times are compared on PostHog's clock.

:data:`CLOCK_SKEW_ALLOWANCE` is the one margin for what cannot be measured: an answer without a usable
``Date`` (a proxy that drops it), Airflow's scheduler stamping a DAG run's start with a clock other than this
worker's, the header's one-second resolution and the answer's travel time. It is used by the lookup of a new
backfill and by re-attach alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_posthog.api.http import ApiResponse

#: How far apart the clocks that cannot be measured (see the module docstring) may be, either way.
CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=15)
#: A measured offset worth a warning in the log (not an allowance): NTP keeps clocks within milliseconds.
NOTABLE_SKEW = dt.timedelta(minutes=1)


def parse_http_date(value: str | None) -> dt.datetime | None:
    """An HTTP ``Date`` header as an aware UTC datetime; ``None`` when absent or not a date."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000": RFC 5322's "UTC, source zone unknown"
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class PostHogClock:
    """PostHog's clock as read from one answer: ``offset`` = PostHog's time minus this machine's.

    ``offset`` is ``None`` when the answer carried no usable ``Date``; times are then compared as they are,
    within :data:`CLOCK_SKEW_ALLOWANCE`.
    """

    offset: dt.timedelta | None = None

    @classmethod
    def read(cls, response: ApiResponse, local_now: dt.datetime) -> PostHogClock:
        """The clock of an answer received at ``local_now`` (this machine's time, read just after it)."""
        server = parse_http_date(response.date)
        return cls(None if server is None else server - local_now)

    @property
    def measured(self) -> bool:
        return self.offset is not None

    def on_posthog(self, local: dt.datetime) -> dt.datetime:
        """``local`` (a time on this machine's clock, or Airflow's) as PostHog's clock shows it."""
        return local + self.offset if self.offset is not None else local

    def created_since(self, created_at: dt.datetime, local_since: dt.datetime) -> bool:
        """Whether PostHog's ``created_at`` is at or after ``local_since`` (this machine's clock), compared
        on PostHog's clock and within the allowance."""
        return created_at >= self.on_posthog(local_since) - CLOCK_SKEW_ALLOWANCE

    def describe(self) -> str:
        """For log lines: how far this machine's clock is from PostHog's."""
        if self.offset is None:
            return "PostHog's clock not measured (no Date header)"
        seconds = self.offset.total_seconds()
        if abs(seconds) < 1:
            return "this machine's clock agrees with PostHog's"
        way = "behind" if seconds > 0 else "ahead of"
        return f"this machine's clock is {abs(seconds):.0f}s {way} PostHog's"


UNMEASURED = PostHogClock()
