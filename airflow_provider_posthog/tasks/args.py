"""Task arguments after templating: each rule once, each error naming the argument and what it accepts.

Every check here runs before the first API call, and every error is a ``PostHogConfigError`` (an
``AirflowFailException``: a wrong argument is not fixed by a retry).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from airflow_provider_posthog.exceptions import PostHogConfigError

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", "", "none"})


def require_id(value: Any, name: str) -> str:
    """An id after templating: a non-empty string (PostHog ids are UUIDs)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PostHogConfigError(f"{name} is required.")
    text = str(value).strip()
    if text.startswith("{{"):
        raise PostHogConfigError(f"{name}={text!r} was not rendered; is it a template field of this task?")
    return text


def optional_id(value: Any, name: str) -> str | None:
    """An id that may be left out (``None`` or blank after templating)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return require_id(value, name)


def to_datetime(value: Any, name: str) -> dt.datetime:
    """An aware datetime (pendulum too) or an ISO-8601 string with an offset, returned in UTC.

    Rendered templates such as ``{{ data_interval_start }}`` arrive as strings like
    ``2024-01-01 00:00:00+00:00``. Naive values are refused: PostHog would reject them, and guessing UTC
    silently exports the wrong window for anyone not on UTC.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise PostHogConfigError(f"{name} is empty; pass an aware datetime or an ISO-8601 string.")
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise PostHogConfigError(f"{name}={text!r} is not an ISO-8601 datetime.") from exc
    if not isinstance(value, dt.datetime):
        raise PostHogConfigError(f"{name} must be a datetime or ISO-8601 string, got {type(value).__name__}.")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise PostHogConfigError(f"{name}={value.isoformat()!r} is naive; give it a timezone (e.g. UTC).")
    return value.astimezone(dt.timezone.utc)


def to_bool(value: Any, name: str) -> bool:
    """A flag, possibly rendered from a template (``"True"``, ``"false"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    if isinstance(value, int):
        return bool(value)
    raise PostHogConfigError(f"{name}={value!r} is not a boolean.")


def to_seconds(value: Any, name: str) -> float:
    """A non-negative number of seconds from a number, a ``timedelta`` or a rendered string."""
    if value is None or value == "":
        raise PostHogConfigError(f"{name} is required.")
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise PostHogConfigError(f"{name}={value!r} is not a number of seconds.") from exc
    if not seconds >= 0:  # also refuses NaN
        raise PostHogConfigError(f"{name} must be a non-negative number of seconds (got {value!r}).")
    return seconds


def to_optional_seconds(value: Any, name: str) -> float | None:
    """As :func:`to_seconds`; ``None`` or blank means "no limit"."""
    return None if value is None or value == "" else to_seconds(value, name)


#: What a wait does with runs that exported fewer records than PostHog counted: fail the task, log a
#: warning, or not check.
COMPLETENESS_MODES = ("fail", "warn", "off")


def to_completeness(value: Any, name: str = "completeness") -> str:
    """One of :data:`COMPLETENESS_MODES` (case and surrounding blanks ignored, as a rendered template)."""
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in COMPLETENESS_MODES:
        allowed = ", ".join(repr(m) for m in COMPLETENESS_MODES)
        raise PostHogConfigError(f"{name}={value!r} is not one of {allowed}.")
    return str(text)


def check_order(
    start: dt.datetime, end: dt.datetime, start_name: str, end_name: str
) -> tuple[dt.datetime, dt.datetime]:
    """A window ``[start, end)`` must not be empty or reversed."""
    if start >= end:
        raise PostHogConfigError(
            f"{start_name} ({start.isoformat()}) must be before {end_name} ({end.isoformat()})."
        )
    return start, end


def check_past(end: dt.datetime, name: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """PostHog only backfills the past."""
    if end > (now or dt.datetime.now(dt.timezone.utc)):
        raise PostHogConfigError(
            f"{name} ({end.isoformat()}) is in the future; PostHog only backfills the past."
        )
    return end


class WaitArgs(NamedTuple):
    """The waiting arguments of a task that starts a backfill, checked together before any call.

    This module's records are named tuples, not dataclasses: as cheap to use and much cheaper to define, and
    every DAG file imports this module.
    """

    wait_for_completion: bool
    poll_interval: float
    timeout: float | None
    cancel_on_kill: bool
    unreachable_timeout: float | None = None

    @classmethod
    def parse(
        cls,
        *,
        wait_for_completion: Any,
        poll_interval: Any,
        timeout: Any,
        cancel_on_kill: Any,
        unreachable_timeout: Any = None,
    ) -> WaitArgs:
        return cls(
            wait_for_completion=to_bool(wait_for_completion, "wait_for_completion"),
            poll_interval=to_seconds(poll_interval, "poll_interval"),
            timeout=to_optional_seconds(timeout, "timeout"),
            cancel_on_kill=to_bool(cancel_on_kill, "cancel_on_kill"),
            unreachable_timeout=to_optional_seconds(unreachable_timeout, "unreachable_timeout"),
        )


class ExportRef(NamedTuple):
    """The export a task names after templating: by ``id``, or by ``name`` (found when the task runs)."""

    id: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, batch_export_id: str | None, batch_export_name: str | None) -> ExportRef:
        """Exactly one of the two (each already checked, blank read as not given)."""
        if batch_export_id is not None and batch_export_name is not None:
            raise PostHogConfigError(
                f"Give batch_export_id or batch_export_name, not both (got batch_export_id="
                f"{batch_export_id!r} and batch_export_name={batch_export_name!r})."
            )
        if batch_export_id is None and batch_export_name is None:
            raise PostHogConfigError(
                "batch_export_id is required: give batch_export_id, or batch_export_name to find the export "
                "by its name."
            )
        return cls(id=batch_export_id, name=batch_export_name)
