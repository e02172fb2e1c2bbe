"""Use case 1: after an upstream load or fix, re-export this DAG's interval from PostHog, then run models.

The backfill covers ``[data_interval_start, data_interval_end)`` unless the run's params override it. On
Airflow 3's default ``@daily`` timetable both are the run's midnight; the operator then backfills the day
before it (the last complete period of the schedule) and logs so. The task only succeeds once every run of the
backfill completed (a failed run fails it, quoting PostHog's error). Each DAG run exports its range again; a
retry re-attaches to the backfill its first try started instead of duplicating it.

Configure: an Airflow connection ``posthog_default`` (host ``https://us.posthog.com`` or
``https://eu.posthog.com``, password = personal API key with ``batch_export:read``/``write``, extra
``{"project_id": "12345"}``), and the export id as the ``batch_export_id`` param or the Variable
``posthog_batch_export_id``. Nothing here touches the network while the file is parsed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

with DAG(
    dag_id="posthog_backfill_and_wait",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["posthog", "example"],
    description="Re-export a time range from a PostHog batch export, wait until every run completed.",
    params={
        "batch_export_id": Param(
            None,
            type=["null", "string"],
            title="Batch export ID",
            description="The PostHog batch export to backfill: the UUID in its page's URL in PostHog. "
            "Leave empty to use the Airflow Variable posthog_batch_export_id.",
        ),
        "start_at": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Start (inclusive)",
            description="First moment to re-export, with a time zone, e.g. 2024-01-01T00:00:00+00:00. "
            "Leave empty to use this DAG run's data interval (on the @daily schedule: the previous day).",
        ),
        "end_at": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="End (exclusive)",
            description="Where the re-export stops (not included), e.g. 2024-01-02T00:00:00+00:00; "
            "not in the future. Leave empty to use this DAG run's data interval.",
        ),
        "poll_interval": Param(
            60,
            type="number",
            exclusiveMinimum=0,
            title="Poll interval (seconds)",
            description="Seconds between two checks of the backfill's progress in PostHog.",
        ),
    },
):
    backfill = PostHogCreateBackfillOperator(
        task_id="backfill_posthog_export",
        batch_export_id="{{ params.batch_export_id or var.value.get('posthog_batch_export_id', '') }}",
        start_at="{{ params.start_at or data_interval_start }}",
        end_at="{{ params.end_at or data_interval_end }}",
        poll_interval="{{ params.poll_interval }}",
        timeout=6 * 60 * 60,  # give up (and cancel the backfill) after 6 hours
        retries=1,
    )

    @task
    def run_downstream_models(backfill_id: str) -> str:
        """Stand-in for the dbt/SQL models that read what PostHog exported."""
        print(f"PostHog backfill {backfill_id} landed; running downstream models.")
        return backfill_id

    run_downstream_models(backfill.output)
