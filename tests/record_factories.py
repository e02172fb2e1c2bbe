"""API-shaped records built through the real ``from_api`` parsers from ``fake_posthog``'s rows, for tests
that hand records to the code under test."""

from __future__ import annotations

from typing import Any

from fake_posthog import BACKFILL, EXPORT, backfill_row, run_row

from airflow_provider_posthog.api.models import Backfill, BatchExportRun

__all__ = ["BACKFILL", "EXPORT", "backfill", "run"]


def backfill(status: str = "Running", **extra: Any) -> Backfill:
    return Backfill.from_api(backfill_row(status, **extra))


def run(status: str = "Completed", **kwargs: Any) -> BatchExportRun:
    return BatchExportRun.from_api(run_row(status, **kwargs))
