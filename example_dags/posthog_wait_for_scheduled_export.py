"""Use case 2: wait until PostHog's own scheduled export of this DAG's interval landed, then load it.

PostHog exports on its own schedule (plus jitter). The sensor succeeds once the export's runs cover
``[data_interval_start, data_interval_end)`` (on Airflow 3's default ``@daily`` timetable, where both are the
run's midnight: the day before it) and all of them completed; a failed run fails it with PostHog's
error (``soft_fail=True`` would skip instead). ``mode="reschedule"`` frees the worker slot between checks;
``deferrable=True`` waits in the triggerer instead.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

with DAG(
    dag_id="posthog_wait_for_scheduled_export",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["posthog", "example"],
    description="Wait until PostHog's scheduled batch export covered this DAG run's interval, then load it.",
    params={
        "batch_export_id": Param(
            None,
            type=["null", "string"],
            title="Batch export ID",
            description="The PostHog batch export to watch: the UUID in its page's URL in PostHog. "
            "Leave empty to use the Airflow Variable posthog_batch_export_id.",
        ),
        "data_interval_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Interval start (inclusive)",
            description="Start of the range PostHog's runs must cover, with a time zone, e.g. "
            "2024-01-01T00:00:00+00:00. Leave empty to use this DAG run's data interval "
            "(on the @daily schedule: the previous day).",
        ),
        "data_interval_end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Interval end (exclusive)",
            description="End of the range PostHog's runs must cover, e.g. 2024-01-02T00:00:00+00:00. "
            "Leave empty to use this DAG run's data interval.",
        ),
    },
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
