"""Report what a PostHog backfill exported, on success and on failure, with Airflow's notifier interface.

The backfill task pushes a ``summary`` XCom (export, backfill, runs by status, records exported and counted
by PostHog, bytes, how long it waited, PostHog's page) whatever the outcome, and
``PostHogSummaryNotifier`` turns it into a message in ``on_success_callback`` and ``on_failure_callback``.
Here the message goes to the task's log, which needs no other provider. To post it to Slack or send it by
mail instead, wrap that provider's notifier, whose templates read the text as ``{{ posthog_message }}``::

    from airflow.providers.slack.notifications.slack import SlackNotifier

    PostHogSummaryNotifier(
        send=SlackNotifier(slack_conn_id="slack", channel="#data", text="{{ posthog_message }}")
    )

or pass any callable, called as ``send(message, summary)``. ``completeness`` says what a run that exported
fewer records than PostHog counted for its interval does: ``warn`` (a warning, and the summary says so),
``fail`` (the task fails) or ``off``.

Configure the ``posthog_default`` connection and the export id as for the other examples (the
``batch_export_id`` param or the Variable ``posthog_batch_export_id``). The DAG has no schedule: trigger it.
Nothing here touches the network while the file is parsed.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_posthog.notifications.posthog import PostHogSummaryNotifier
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

with DAG(
    dag_id="posthog_notify_on_export",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["posthog", "example"],
    description="Re-export the last hours of a PostHog batch export and report what it exported.",
    params={
        "batch_export_id": Param(
            None,
            type=["null", "string"],
            title="Batch export ID",
            description="The PostHog batch export to backfill: the UUID in its page's URL in PostHog. "
            "Leave empty to use the Airflow Variable posthog_batch_export_id.",
        ),
        "hours": Param(
            2,
            type="integer",
            minimum=1,
            maximum=168,
            title="Hours to re-export",
            description="How many whole hours before the current hour to export again (1 to 168).",
        ),
        "completeness": Param(
            "warn",
            type="string",
            enum=["warn", "fail", "off"],
            title="Completeness check",
            description="What a run that exported fewer records than PostHog counted does: warn (log a "
            "warning), fail (fail the task) or off (no check).",
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
    def export_window(hours: int) -> dict[str, str]:
        """The last ``hours`` whole hours before now (UTC), computed when the task runs."""
        end = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        return {"start_at": (end - dt.timedelta(hours=int(hours))).isoformat(), "end_at": end.isoformat()}

    window = export_window("{{ params.hours }}")
    backfill = PostHogCreateBackfillOperator(
        task_id="backfill_and_report",
        batch_export_id="{{ params.batch_export_id or var.value.get('posthog_batch_export_id', '') }}",
        start_at="{{ ti.xcom_pull(task_ids='export_window')['start_at'] }}",
        end_at="{{ ti.xcom_pull(task_ids='export_window')['end_at'] }}",
        poll_interval="{{ params.poll_interval }}",
        completeness="{{ params.completeness }}",
        timeout=6 * 60 * 60,
        on_success_callback=PostHogSummaryNotifier(title="PostHog backfill"),
        on_failure_callback=PostHogSummaryNotifier(title="PostHog backfill FAILED"),
    )
    window >> backfill
