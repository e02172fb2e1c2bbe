"""Airflow drives the exports: the PostHog export stays paused and each DAG run backfills its own interval.

PostHog's own schedule is off (the export is paused), so what is exported, and when, is what Airflow runs:
each hourly DAG run exports ``[data_interval_start, data_interval_end)``; an Airflow backfill
(``airflow backfill create``) exports the hours it covers; clearing a run exports its hour again; with
``catchup=True`` the hours missed while the scheduler was down or the DAG was paused are exported when it
comes back. On Airflow 3's default cron timetable both ends of the data interval are the run's tick; the
operator then exports the hour before the tick (the last complete period of the schedule) and logs so.

The first task fails unless the export is paused: on an unpaused export PostHog's schedule exports every
hour as well, and each hour would land twice. The DAG is created paused: set the export id first.

Configure: an Airflow connection ``posthog_default`` (host ``https://us.posthog.com`` or
``https://eu.posthog.com``, password = personal API key with ``batch_export:read``/``write``, extra
``{"project_id": "12345"}``), an export with ``interval="hour"``, paused, and its id as the
``batch_export_id`` param or the Variable ``posthog_airflow_driven_export_id``. Nothing here touches the
network while the file is parsed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

EXPORT_ID = "{{ params.batch_export_id or var.value.get('posthog_airflow_driven_export_id', '') }}"

with DAG(
    dag_id="posthog_airflow_driven_export",
    schedule="@hourly",  # the export's own interval: one DAG run, one PostHog run
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    # False: dropping the file in exports no history. Set True, with a start_date where your exports
    # begin, so that hours missed while the scheduler was down or the DAG was paused are exported too.
    catchup=False,
    is_paused_upon_creation=True,  # runs only once you unpause it, after setting the export id
    max_active_runs=4,  # at most four PostHog backfills of this export at a time (catchup, backfills)
    tags=["posthog", "example"],
    description="Keep a PostHog batch export paused; each DAG run exports its own data interval.",
    params={
        "batch_export_id": Param(
            None,
            type=["null", "string"],
            title="Batch export ID",
            description="The paused PostHog batch export this DAG drives: the UUID in its page's URL in "
            "PostHog. Leave empty to use the Airflow Variable posthog_airflow_driven_export_id.",
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

    @task
    def check_export_is_paused(batch_export_id: str) -> str:
        """Fail unless PostHog's own schedule is off: on an unpaused export each interval would land twice."""
        from airflow_provider_posthog.hooks.posthog import PostHogHook

        if not batch_export_id:
            raise ValueError(
                "batch_export_id is empty: set the DAG param batch_export_id or the Airflow Variable "
                "posthog_airflow_driven_export_id to the id of a paused PostHog batch export."
            )
        export = PostHogHook().get_batch_export(batch_export_id)
        if not export.paused:
            raise ValueError(
                f"Batch export {batch_export_id} is not paused: PostHog exports each interval on its own "
                "schedule, and this DAG would export it again. Pause it (in PostHog, or with "
                "PostHogPauseBatchExportOperator), or use PostHogBatchExportRunSensor to wait for PostHog's "
                "own runs instead."
            )
        return batch_export_id

    checked = check_export_is_paused(EXPORT_ID)

    export_interval = PostHogCreateBackfillOperator(
        task_id="export_data_interval",
        batch_export_id=EXPORT_ID,
        start_at="{{ data_interval_start }}",
        end_at="{{ data_interval_end }}",
        poll_interval="{{ params.poll_interval }}",
        timeout=2 * 60 * 60,  # give up (and cancel the backfill) after 2 hours
        retries=2,  # a retry re-attaches to the backfill its first try started
    )

    checked >> export_interval
