"""Task arguments after templating: each rule once, each error naming the argument and what it accepts.

Every check here runs before the first API call, and every error is a ``PostHogConfigError`` (an
``AirflowFailException``: a wrong argument is not fixed by a retry).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_posthog.exceptions import PostHogConfigError


def config_error(message: str) -> PostHogConfigError:
    """The error of a wrong argument; the exceptions module loads only then, not when a DAG file is parsed."""
    from airflow_provider_posthog.exceptions import PostHogConfigError

    return PostHogConfigError(message)


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", "", "none"})


def require_id(value: Any, name: str) -> str:
    """An id after templating: a non-empty string (PostHog ids are UUIDs)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise config_error(f"{name} is required.")
    text = str(value).strip()
    if text.startswith("{{"):
        raise config_error(f"{name}={text!r} was not rendered; is it a template field of this task?")
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
            raise config_error(f"{name} is empty; pass an aware datetime or an ISO-8601 string.")
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise config_error(f"{name}={text!r} is not an ISO-8601 datetime.") from exc
    if not isinstance(value, dt.datetime):
        raise config_error(f"{name} must be a datetime or ISO-8601 string, got {type(value).__name__}.")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise config_error(f"{name}={value.isoformat()!r} is naive; give it a timezone (e.g. UTC).")
    return value.astimezone(dt.timezone.utc)


def as_bool(value: Any) -> bool | None:
    """A flag, possibly rendered from a template (``"True"``, ``"false"``); ``None`` if it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    if isinstance(value, int):
        return bool(value)
    return None


def to_bool(value: Any, name: str) -> bool:
    """A flag (:func:`as_bool`), or an error naming the argument."""
    flag = as_bool(value)
    if flag is None:
        raise config_error(f"{name}={value!r} is not a boolean.")
    return flag


def to_seconds(value: Any, name: str) -> float:
    """A non-negative number of seconds from a number, a ``timedelta`` or a rendered string."""
    if value is None or value == "":
        raise config_error(f"{name} is required.")
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise config_error(f"{name}={value!r} is not a number of seconds.") from exc
    if not seconds >= 0:  # also refuses NaN
        raise config_error(f"{name} must be a non-negative number of seconds (got {value!r}).")
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
        raise config_error(f"{name}={value!r} is not one of {allowed}.")
    return str(text)


def check_order(
    start: dt.datetime, end: dt.datetime, start_name: str, end_name: str
) -> tuple[dt.datetime, dt.datetime]:
    """A window ``[start, end)`` must not be empty or reversed."""
    if start >= end:
        raise config_error(
            f"{start_name} ({start.isoformat()}) must be before {end_name} ({end.isoformat()})."
        )
    return start, end


def check_past(end: dt.datetime, name: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """PostHog only backfills the past."""
    if end > (now or dt.datetime.now(dt.timezone.utc)):
        raise config_error(f"{name} ({end.isoformat()}) is in the future; PostHog only backfills the past.")
    return end


class _Record:
    """A small record compared by value. A plain class with slots, not a named tuple or a dataclass: as cheap
    to use and far cheaper to define, and every DAG file imports this module."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **values: Any) -> None:
        for field, value in values.items():
            object.__setattr__(self, field, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, field) for field in type(self).__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{field}={getattr(self, field)!r}" for field in type(self).__slots__)
        return f"{type(self).__name__}({shown})"


class WaitArgs(_Record):
    """The waiting arguments of a task that starts a backfill, checked together before any call."""

    __slots__ = ("cancel_on_kill", "poll_interval", "timeout", "unreachable_timeout", "wait_for_completion")
    wait_for_completion: bool
    poll_interval: float
    timeout: float | None
    cancel_on_kill: bool
    unreachable_timeout: float | None

    def __init__(
        self,
        wait_for_completion: bool,
        poll_interval: float,
        timeout: float | None,
        cancel_on_kill: bool,
        unreachable_timeout: float | None = None,
    ) -> None:
        self._set(
            wait_for_completion=wait_for_completion,
            poll_interval=poll_interval,
            timeout=timeout,
            cancel_on_kill=cancel_on_kill,
            unreachable_timeout=unreachable_timeout,
        )

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


class ExportRef(_Record):
    """The export a task names after templating: by ``id``, or by ``name`` (found when the task runs)."""

    __slots__ = ("id", "name")
    id: str | None
    name: str | None

    def __init__(self, id: str | None = None, name: str | None = None) -> None:
        self._set(id=id, name=name)

    @classmethod
    def of(cls, batch_export_id: str | None, batch_export_name: str | None) -> ExportRef:
        """Exactly one of the two (each already checked, blank read as not given)."""
        if batch_export_id is not None and batch_export_name is not None:
            raise config_error(
                f"Give batch_export_id or batch_export_name, not both (got batch_export_id="
                f"{batch_export_id!r} and batch_export_name={batch_export_name!r})."
            )
        if batch_export_id is None and batch_export_name is None:
            raise config_error(
                "batch_export_id is required: give batch_export_id, or batch_export_name to find the export "
                "by its name."
            )
        return cls(id=batch_export_id, name=batch_export_name)
