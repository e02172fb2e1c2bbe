"""Use case 3: manage a batch export as code, and pause it around warehouse maintenance.

``create_export`` is idempotent by name (an existing export is updated), so this DAG can run on every deploy.
The destination's credentials come from the Airflow connection ``aws_default`` (login = access key id,
password = secret access key, extra ``region_name``), read when the task runs, never when this file is
parsed; the operator registers them with Airflow's log masker before anything is logged, and they never
land in rendered template fields or XComs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_posthog.destinations import S3Destination
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
            description="On unpause, backfill the intervals skipped while the export was paused (from the "
            "time PostHog recorded the pause).",
        ),
    },
):
    export = PostHogCreateBatchExportOperator(
        task_id="create_export",
        name="{{ params.export_name }}",
        interval="{{ params.interval }}",
        destination=S3Destination(
            bucket_name="analytics-raw",
            prefix="posthog/events/",
            file_format="Parquet",
            compression="zstd",
            aws_conn_id="aws_default",
        ),
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
