"""Unpause an export and backfill what its pause skipped, from a start that is known (sans-I/O).

PostHog's own ``unpause`` with ``backfill: true`` backfills from the export's ``last_paused_at`` without
looking at it. Only ``POST .../pause/`` sets that field: an export created paused, or paused with a
``PATCH``, has none (PostHog then exports the project's whole history in one run) or a stale one from an
older pause (everything since then, again). So this operation never sends that flag. It needs a start: an
explicit one, or ``last_paused_at`` when PostHog has it and nothing ran on the schedule after it. It
refuses before any change when it has neither. Then, while the export is still paused, it creates the
backfill itself (``api.backfills.create_backfill``: the range checked against the export's schedule, a
running duplicate refused) from the interval holding the start to the last interval boundary, and
unpauses. A failed backfill leaves the export paused, so a task retry starts over from the same start.
PostHog's own time of the unpause (the export's ``last_updated_at``) then shows whether a boundary passed
in between (a slow create, or this machine's clock behind PostHog's). If one did, the interval that ended
while the export was still paused is backfilled too.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from airflow_provider_posthog.api.backfills import BackfillLookup, create_backfill
from airflow_provider_posthog.api.endpoints import get_batch_export, unpause_request
from airflow_provider_posthog.api.http import NOW
from airflow_provider_posthog.api.intervals import ExportSchedule
from airflow_provider_posthog.api.models import to_utc
from airflow_provider_posthog.exceptions import PostHogConfigError

if TYPE_CHECKING:
    from pendulum import DateTime

    from airflow_provider_posthog.api.http import DateLike, Operation
    from airflow_provider_posthog.api.models import Backfill, BatchExport


@dataclasses.dataclass(frozen=True)
class Unpaused:
    """What an unpause did: whether the export was paused, and the backfills created for its gap."""

    batch_export_id: str
    was_paused: bool
    backfills: tuple[Backfill, ...] = ()
    message: str = ""


def gap_start(export: BatchExport, backfill_start: DateLike | None) -> DateTime | None:
    """Where the backfill of a paused gap starts: ``backfill_start`` if given, else ``last_paused_at``.

    ``None``: nothing to backfill (the export is not paused and no start was given: PostHog backfills only
    the gap of a paused export). Raises :class:`PostHogConfigError` when the export is paused but
    ``last_paused_at`` is unknown or stale (a scheduled run ended after it, so the export ran again since
    that pause).
    """
    if backfill_start is not None and backfill_start != "":
        return to_utc(backfill_start, "backfill_start")
    if not export.paused:
        return None
    paused_at = export.last_paused_at
    fix = (
        "Pass backfill_start (the start of the first interval to export again), or unpause without a "
        "backfill."
    )
    if paused_at is None:
        raise PostHogConfigError(
            f"Batch export {export.id} is paused but PostHog has no last_paused_at for it (it was created "
            "paused, or paused with a PATCH): PostHog's own backfill would export its whole history. " + fix
        )
    later = [
        r
        for r in export.latest_runs
        if r.backfill_id is None and r.data_interval_end is not None and r.data_interval_end > paused_at
    ]
    if later:
        last = max(later, key=lambda r: r.data_interval_end or paused_at)
        raise PostHogConfigError(
            f"Batch export {export.id}'s last_paused_at ({paused_at.isoformat()}) is older than its "
            f"scheduled run {last.id} (ending {last.data_interval_end}): it ran again after that pause and "
            "was paused "
            "later without PostHog recording when (a PATCH), so backfilling from last_paused_at would export "
            "everything since then again. " + fix
        )
    return paused_at


def unpause_export(
    batch_export_id: str,
    *,
    backfill: bool = False,
    backfill_start: DateLike | None = None,
    lookup: BackfillLookup,
) -> Operation[Unpaused]:
    """Unpause the export; with ``backfill``, first backfill its paused gap from a known start (see the
    module docstring). Every refusal comes before any change."""
    export = yield from get_batch_export(batch_export_id)
    start = gap_start(export, backfill_start) if backfill else None
    if start is None:
        yield unpause_request(batch_export_id)
        if not export.paused:
            note = " (no paused gap to backfill)" if backfill else ""
            return Unpaused(
                batch_export_id, False, (), f"Batch export {batch_export_id} was not paused{note}."
            )
        return Unpaused(batch_export_id, True, (), f"Unpaused batch export {batch_export_id}.")
    schedule = ExportSchedule.of(export)
    first = schedule.floor(start)
    end = schedule.floor((yield NOW))
    created: list[Backfill] = []
    if first < end:
        created.append((yield from create_backfill(batch_export_id, first, end, lookup=lookup)))
    yield unpause_request(batch_export_id)
    if export.paused:
        # PostHog's clock: a boundary that passed before the unpause ended an interval nobody exported.
        unpaused_at = (yield from get_batch_export(batch_export_id)).last_updated_at
        tail_start = max(first, end)
        if unpaused_at is not None and schedule.floor(unpaused_at) > tail_start:
            tail_end = schedule.floor(unpaused_at)
            created.append((yield from create_backfill(batch_export_id, tail_start, tail_end, lookup=lookup)))
    if created:
        covered = (
            f"backfill {' and '.join(b.id for b in created)} of [{first.isoformat()}, "
            f"{(created[-1].end_at or end).isoformat()})"
        )
    else:
        covered = f"nothing to backfill (the gap from {start.isoformat()} is inside the current interval)"
    if export.paused:
        return Unpaused(
            batch_export_id, True, tuple(created), f"Unpaused batch export {batch_export_id}; {covered}."
        )
    return Unpaused(
        batch_export_id, False, tuple(created), f"Batch export {batch_export_id} was not paused; {covered}."
    )


def unpause_batch_export(
    batch_export_id: str, *, backfill: bool = False, lookup: BackfillLookup
) -> Operation[None]:
    """Unpause (one request); ``backfill=True`` first backfills the paused gap from ``last_paused_at`` when
    PostHog knows it (:func:`unpause_export`), else refuses before any change."""
    if backfill:
        yield from unpause_export(batch_export_id, backfill=True, lookup=lookup)
        return None
    yield unpause_request(batch_export_id)
    return None
