"""Use case 3: manage a batch export as code, and pause it around warehouse maintenance.

``create_export`` is idempotent by name (an existing export is updated), so this DAG can run on every deploy.
``destination`` is not a template field: it holds credentials, which must never land in rendered fields or
logs. Here the secret comes from the environment of the worker (``POSTHOG_S3_SECRET_ACCESS_KEY``); the
operator registers it with Airflow's log masker before logging anything.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_posthog.operators.batch_export import (
    PostHogCreateBatchExportOperator,
    PostHogPauseBatchExportOperator,
    PostHogUnpauseBatchExportOperator,
)

with DAG(
    dag_id="posthog_manage_exports",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["posthog", "example"],
    description="Create or update a PostHog batch export to S3, and pause it around warehouse maintenance.",
    params={
        "export_name": Param(
            "events-to-s3",
            type="string",
            minLength=1,
            title="Export name",
            description="Name of the batch export in PostHog. An export of this name is updated, "
            "otherwise one is created.",
        ),
        "interval": Param(
            "hour",
            type="string",
            enum=["hour", "day", "week", "every 5 minutes", "every 15 minutes"],
            title="Interval",
            description="How often PostHog exports. The 5- and 15-minute intervals need PostHog's "
            "high-frequency batch exports enabled for the project.",
        ),
        "backfill_gap": Param(
            True,
            type="boolean",
            title="Backfill the pause",
            description="On unpause, have PostHog export the intervals skipped while the export was paused.",
        ),
    },
):
    export = PostHogCreateBatchExportOperator(
        task_id="create_export",
        name="{{ params.export_name }}",
        interval="{{ params.interval }}",
        destination={
            "type": "S3",
            "config": {
                "bucket_name": "analytics-raw",
                "region": "us-east-1",
                "prefix": "posthog/events/",
                "file_format": "Parquet",
                "compression": "zstd",
                "aws_access_key_id": os.environ.get("POSTHOG_S3_ACCESS_KEY_ID", ""),
                "aws_secret_access_key": os.environ.get("POSTHOG_S3_SECRET_ACCESS_KEY", ""),
            },
        },
        if_exists="update",
    )

    pause = PostHogPauseBatchExportOperator(task_id="pause_export", batch_export_id=export.output)

    @task
    def warehouse_maintenance() -> None:
        """Stand-in for a vacuum/migration that must not race with PostHog writing into the bucket."""
        print("Warehouse maintenance done.")

    unpause = PostHogUnpauseBatchExportOperator(
        task_id="unpause_export",
        batch_export_id=export.output,
        backfill="{{ params.backfill_gap }}",  # re-export what the pause skipped
    )

    pause >> warehouse_maintenance() >> unpause
