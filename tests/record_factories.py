"""API-shaped records built through the real ``from_api`` parsers, for tests that mock the hook."""

from __future__ import annotations

from typing import Any

from airflow_provider_posthog.api.models import Backfill, BatchExportRun

EXPORT = "0190-export"
BACKFILL = "0190-backfill"


def backfill(status: str = "Running", **extra: Any) -> Backfill:
    return Backfill.from_api(
        {
            "id": BACKFILL,
            "status": status,
            "batch_export": EXPORT,
            "start_at": "2024-01-01T00:00:00Z",
            "end_at": "2024-01-01T02:00:00Z",
            "created_at": "2024-01-02T00:00:00Z",
            **extra,
        }
    )


def run(
    status: str = "Completed",
    *,
    run_id: str = "run-1",
    start: str = "2024-01-01T00:00:00Z",
    end: str = "2024-01-01T01:00:00Z",
    backfill_id: str | None = BACKFILL,
    **extra: Any,
) -> BatchExportRun:
    return BatchExportRun.from_api(
        {
            "id": run_id,
            "status": status,
            "batch_export": EXPORT,
            "backfill": backfill_id,
            "data_interval_start": start,
            "data_interval_end": end,
            "created_at": "2024-01-02T00:00:01Z",
            "records_completed": 10 if status == "Completed" else None,
            **extra,
        }
    )
