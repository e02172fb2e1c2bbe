"""When an operator re-attaches to an existing backfill instead of exporting again (``reattach``).

Users rerun a DAG run, or clear a task, to re-export an interval after a fix: that must export again. A
*retry* of the same task instance (the worker died, a poll failed, the deadline passed) must not start a
duplicate of what its earlier try started. Airflow records the difference:

- a retry is ``ti.try_number > ti.max_tries - task.retries + 1``: the first try of the current round is
  ``max_tries - retries + 1`` (Airflow's own formula; clearing a task raises ``max_tries`` by ``retries + 1``,
  so the first try after a clear is not a retry);
- a try that Airflow rescheduled is running again: when a resumed task cannot start (its DAG file fails to
  load: "Dag not found during start up"), Airflow reschedules it without counting a retry (``[workers]
  missing_dag_retries``), and it starts over from ``execute()`` with the same try number; the operators
  never reschedule themselves, so ``task_reschedule_count > 0`` (Airflow counts them per try) means an
  earlier start of this very try may have created the backfill;
- the current round began at the DAG run's ``start_date`` (Airflow resets it when a finished run is cleared),
  so a backfill PostHog created before it belongs to an earlier round.

The round's start is on Airflow's clock, ``created_at`` on PostHog's. They are compared on PostHog's clock
(the start moved by the offset measured from the ``Date`` of the answer that listed the backfill), within the
one :data:`~airflow_provider_posthog.api.clock.CLOCK_SKEW_ALLOWANCE` (15 minutes) for what is not measured:
Airflow's scheduler stamping the start on a clock other than this worker's, or an answer without ``Date``.

The trade-off of that allowance: it must be wide, or a retry on a skewed worker misses its own backfill and
exports the range twice; but the wider it is, the older a backfill can be and still count as this round's.
A new round adopts an earlier round's backfill only when all of these hold: its first try failed before
creating a backfill of its own (with ``reattach="retry"`` a first try never re-attaches), a retry then found
the earlier round's backfill, PostHog created that one less than the allowance before the new round began,
and it is running or completed with every run completed (so the range was exported, once, minutes ago). The
duplicate export this prevents is the more likely harm; clearing the task again exports anew.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.clock import UNMEASURED, PostHogClock
from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks.args import to_bool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_posthog.api.models import Backfill

RETRY = "retry"
ALWAYS = "always"
NEVER = "never"
REATTACH_CHOICES: tuple[str, ...] = (RETRY, ALWAYS, NEVER)


def validate_reattach(reattach: Any, reuse_existing: Any = None) -> str:
    """The effective mode: ``reattach``, or the deprecated ``reuse_existing`` (True/False) when given."""
    if reuse_existing is not None:
        return ALWAYS if to_bool(reuse_existing, "reuse_existing") else NEVER
    value = reattach.strip().lower() if isinstance(reattach, str) else reattach
    if value not in REATTACH_CHOICES:
        raise PostHogConfigError(f"reattach={reattach!r} is not one of {list(REATTACH_CHOICES)}.")
    return str(value)


def is_retry(context: Mapping[str, Any] | None) -> bool:
    """Whether this try is a retry of the same task instance (not its first try, not the first after a clear),
    or a try Airflow started again after rescheduling it.

    Unknown values (a hand-made context in a unit test) count as a first try: exporting again is the safe
    default, a duplicate is visible, a skipped re-export is not.
    """
    ctx = context or {}
    rescheduled = ctx.get("task_reschedule_count")
    if isinstance(rescheduled, int) and not isinstance(rescheduled, bool) and rescheduled > 0:
        return True  # this try started before and was rescheduled by Airflow (see the module docstring)
    ti = ctx.get("ti")
    task = ctx.get("task") or getattr(ti, "task", None)
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    retries = getattr(task, "retries", None) or 0
    if not (isinstance(try_number, int) and isinstance(max_tries, int) and isinstance(retries, int)):
        return False
    return try_number > max_tries - retries + 1


def round_started_at(context: Mapping[str, Any] | None) -> dt.datetime | None:
    """When the current round of the DAG run began (its ``start_date``), or ``None`` if unknown."""
    dag_run = (context or {}).get("dag_run")
    started = getattr(dag_run, "start_date", None)
    if not isinstance(started, dt.datetime) or started.tzinfo is None:
        return None
    return started


def created_this_round(backfill: Backfill, context: Mapping[str, Any] | None) -> bool:
    """Whether PostHog created ``backfill`` in the current round: at or after the round's start, on PostHog's
    clock and within the skew allowance (see the module docstring)."""
    started = round_started_at(context)
    if started is None or backfill.created_at is None:
        return False
    # The lookup that found it read PostHog's clock from the same answer (``api.backfills.SeenBackfill``).
    clock = getattr(backfill, "posthog_clock", UNMEASURED)
    if not isinstance(clock, PostHogClock):
        clock = UNMEASURED
    return clock.created_since(backfill.created_at, started)


def may_reattach(mode: str, backfill: Backfill, context: Mapping[str, Any] | None) -> bool:
    """Whether ``mode`` allows re-attaching to ``backfill`` (its status is checked by the caller)."""
    if mode == ALWAYS:
        return True
    if mode == NEVER:
        return False
    return is_retry(context) and created_this_round(backfill, context)


def should_look(mode: str, context: Mapping[str, Any] | None) -> bool:
    """Whether looking for an existing backfill can change anything (saves a request on first tries)."""
    return mode == ALWAYS or (mode == RETRY and is_retry(context))
