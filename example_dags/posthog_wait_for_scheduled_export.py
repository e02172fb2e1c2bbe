"""Use case 2: wait until PostHog's own scheduled export of this DAG's interval landed, then load it.

PostHog exports on its own schedule (plus jitter). The sensor succeeds once the export's runs cover
``[data_interval_start, data_interval_end)`` (on Airflow 3's default ``@daily`` timetable, where both are the
run's midnight: the day before it) and all of them completed; a failed run fails it with PostHog's
error (``soft_fail=True`` would skip instead). ``mode="reschedule"`` frees the worker slot between checks;
``deferrable=True`` waits in the triggerer instead.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

with DAG(
    dag_id="posthog_wait_for_scheduled_export",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["posthog", "example"],
    params={"batch_export_id": "", "data_interval_start": "", "data_interval_end": ""},
):
    landed = PostHogBatchExportRunSensor(
        task_id="wait_for_posthog_export",
        batch_export_id="{{ params.batch_export_id or var.value.get('posthog_batch_export_id', '') }}",
        data_interval_start="{{ params.data_interval_start or data_interval_start }}",
        data_interval_end="{{ params.data_interval_end or data_interval_end }}",
        mode="reschedule",
        poke_interval=5 * 60,
        timeout=12 * 60 * 60,
    )

    @task
    def load_exported_data() -> None:
        """Stand-in for the load that reads the exported files/tables."""
        print("PostHog export for this interval is complete; loading it.")

    landed >> load_exported_data()
