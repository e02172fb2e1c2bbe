"""The summary XCom of a wait: what PostHog exported, the same keys on every path.

Every waiting task (operators waiting on their backfill, sensors in poke, reschedule or deferrable mode)
ends in ``PostHogTaskMixin.finish_wait``, which pushes :func:`build_summary` of the wait's event under the
XCom key :data:`SUMMARY_XCOM_KEY` before it decides success or failure, so a notifier on success and on
failure reads the same dict. It is built from the event only (never from objects that stay in the process
that polled), so a deferred task, whose event crossed the triggerer, builds the same summary as a task that
polled in the worker. Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

#: The XCom key of the summary.
SUMMARY_XCOM_KEY = "summary"
#: How many failed or incomplete runs the summary lists (their number is in ``runs_by_status``).
SUMMARY_RUNS = 100
#: Every key of a summary, in the order it is built.
SUMMARY_KEYS: tuple[str, ...] = (
    "status",
    "message",
    "batch_export_id",
    "backfill_id",
    "run_id",
    "run_ids",
    "data_interval_start",
    "data_interval_end",
    "runs_total",
    "runs_by_status",
    "records_exported",
    "records_expected",
    "bytes_exported",
    "complete",
    "completeness",
    "incomplete_runs",
    "failed_runs",
    "started_at",
    "finished_at",
    "duration_seconds",
    "url",
)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _runs(value: Any) -> list[dict[str, Any]]:
    runs = value if isinstance(value, list) else []
    return [dict(r) for r in runs[:SUMMARY_RUNS] if isinstance(r, Mapping)]


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def build_summary(
    event: Mapping[str, Any],
    *,
    completeness: str,
    started_at: float | None,
    finished_at: float,
    url: str | None,
) -> dict[str, Any]:
    """The summary of a validated wait event (``tasks.waiting`` schema).

    ``completeness`` is the task's setting; ``started_at``/``finished_at`` are epoch seconds (``None``: the
    task's start is unknown); ``url`` is PostHog's page for the job. A value the event lacks (an event of
    an older provider version, or one that judged no run: a timeout or an error) is ``None``, ``0`` or
    empty, never guessed.
    """
    by_status_raw = event.get("runs_by_status")
    by_status = (
        {str(k): n for k, v in by_status_raw.items() if (n := _count(v)) is not None}
        if isinstance(by_status_raw, Mapping)
        else {}
    )
    incomplete = _runs(event.get("incomplete_runs"))
    expected = _count(event.get("records_expected"))
    if completeness == "off":
        complete = None
    elif incomplete:
        complete = False
    else:
        complete = True if expected is not None else None
    run_ids = event.get("run_ids")
    return {
        "status": _text(event.get("status")),
        "message": _text(event.get("message")),
        "batch_export_id": _text(event.get("batch_export_id")),
        "backfill_id": _text(event.get("backfill_id")),
        "run_id": _text(event.get("run_id")),
        "run_ids": [str(r) for r in run_ids] if isinstance(run_ids, list) else [],
        "data_interval_start": _text(event.get("data_interval_start")),
        "data_interval_end": _text(event.get("data_interval_end")),
        "runs_total": sum(by_status.values()),
        "runs_by_status": by_status,
        "records_exported": _count(event.get("records_completed")) or 0,
        "records_expected": expected,
        "bytes_exported": _count(event.get("bytes_exported")),
        "complete": complete,
        "completeness": completeness,
        "incomplete_runs": incomplete,
        "failed_runs": _runs(event.get("failed_runs")),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "duration_seconds": None if started_at is None else round(max(0.0, finished_at - started_at), 3),
        "url": url,
    }
