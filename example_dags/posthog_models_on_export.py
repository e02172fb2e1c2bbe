"""Use case 4: run my models when PostHog has exported.

This DAG has no time schedule: Airflow runs it each time the backfill task of ``posthog_backfill_and_wait``
succeeded. That task (like the retry-run operator and both sensors) emits an asset event for the export's
destination, e.g. ``s3://my-bucket/posthog/events``, through the asset alias
``posthog-batch-export:posthog_backfill_and_wait.backfill_posthog_export``. Scheduling on the alias works
whatever the destination turns out to be; when you know it, ``schedule=Asset("s3://my-bucket/posthog/events")``
works too. Each event's ``extra`` says what landed: the export and backfill ids, the exported intervals and
the record counts.

Unpause this DAG to let the events trigger it. Nothing here touches the network while the file is parsed.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

#: The alias the backfill task of ``posthog_backfill_and_wait`` attaches its destination's asset to.
POSTHOG_BACKFILL_EXPORTED = AssetAlias(
    "posthog-batch-export:posthog_backfill_and_wait.backfill_posthog_export"
)

with DAG(
    dag_id="posthog_models_on_export",
    schedule=POSTHOG_BACKFILL_EXPORTED,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["posthog", "example"],
    description="Run the downstream models each time PostHog has exported (asset-triggered).",
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Rebuild the models from everything exported so far instead of only the intervals "
            "the triggering export events name (a manual run has no events, so it always rebuilds).",
        ),
    },
):

    @task
    def build_models(params: dict | None = None, triggering_asset_events: Any = None) -> list[dict]:
        """Stand-in for the dbt/SQL models that read what PostHog exported; returns what it built."""
        events = triggering_asset_events[POSTHOG_BACKFILL_EXPORTED] if triggering_asset_events else []
        landed = [
            {
                "uri": event.asset.uri,
                "batch_export_id": event.extra.get("batch_export_id"),
                "backfill_id": event.extra.get("backfill_id"),
                "intervals": event.extra.get("intervals"),
                "records_completed": event.extra.get("records_completed"),
            }
            for event in events
        ]
        if (params or {}).get("full_refresh") or not landed:
            print("Full refresh of the models over everything PostHog exported.")
        for item in landed:
            print(
                f"PostHog export {item['batch_export_id']} landed {item['records_completed']} record(s) in "
                f"{item['uri']} for {item['intervals']}; building the models for those intervals."
            )
        return landed

    build_models()
