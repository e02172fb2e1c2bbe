"""Our side of the capacity benchmark: what the emulator is seeded with and how our triggers are built.

Each trigger waits on its own backfill, as ``PostHogCreateBackfillOperator`` defers it: one export holds N
backfills over distinct past hours that stay ``Running`` for the whole measurement (runs take 10^9 emulated
seconds). Kept apart from ``servers`` (emulator side, no Airflow) and ``capacity`` (trigger side) so that each
process imports only its half.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def seed_waits(control: Any, n: int) -> list[dict[str, str]]:
    """Seed one export and ``n`` running backfills over distinct hours; return the trigger targets."""
    export = control.seed_export(
        name="bench-capacity",
        destination={
            "type": "S3",
            "config": {
                "bucket_name": "bench",
                "region": "us-east-1",
                "prefix": "bench/",
                "aws_access_key_id": "AKIABENCH",
                "aws_secret_access_key": "bench-secret",
            },
        },
        interval="hour",
    )
    base = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    targets = []
    for i in range(n):
        start = base + dt.timedelta(hours=i)
        backfill = control.seed_backfill(export["id"], start, start + dt.timedelta(hours=1), status="Running")
        targets.append({"batch_export_id": str(export["id"]), "backfill_id": str(backfill["id"])})
    return targets


def make_trigger(target: dict[str, str], conn_id: str, poll_interval: float, end_time: float) -> Any:
    """Our backfill trigger with exactly the kwargs the operator defers with."""
    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

    return PostHogBackfillTrigger(
        batch_export_id=target["batch_export_id"],
        backfill_id=target["backfill_id"],
        posthog_conn_id=conn_id,
        poll_interval=poll_interval,
        end_time=end_time,
    )


def preimport() -> None:
    """Modules our trigger imports lazily on its first poll (hook, aiohttp, models)."""
    import aiohttp  # noqa: F401
    from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook  # noqa: F401
    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger  # noqa: F401
