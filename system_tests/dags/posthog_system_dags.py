"""DAGs the system tests trigger with a ``conf``: which emulator (connection), export and explicit ranges.

Every range is past, hour-aligned UTC, on an hourly export, so these DAGs depend on nothing but the provider's
create/re-attach/wait logic. Nothing here touches the network at parse time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

START = pendulum.datetime(2024, 1, 1, tz="UTC")
COMMON: dict[str, Any] = {
    "schedule": None,
    "start_date": START,
    "catchup": False,
    "max_active_tasks": 64,
    "tags": ["system"],
    # These DAGs run up to 50 waits on one export that finish at the same moment. Airflow 3.3 creates an
    # asset first seen through an alias without guarding against a concurrent insert ("UNIQUE constraint
    # failed: asset.name, asset.uri"), and fails the losing task outright. The example-dags scenario covers
    # asset events (and the DAG they schedule); these scenarios are about faults.
    "default_args": {"emit_asset_events": False},
}
CONN = "{{ params.conn_id }}"
EXPORT = "{{ params.batch_export_id }}"


@task
def ranges(**context: Any) -> list[dict[str, str]]:
    """The conf's ``ranges`` ([start, end] pairs) as mapping kwargs."""
    return [{"start_at": s, "end_at": e} for s, e in context["params"]["ranges"]]


def backfill_waits(
    *,
    deferrable: bool,
    retries: int,
    retry_delay: timedelta,
    queue: str | None = None,
    emit_asset_events: bool = False,
) -> None:
    """One mapped backfill wait per range of the conf (on Celery, ``queue`` picks the workers that run it)."""
    PostHogCreateBackfillOperator.partial(
        emit_asset_events=emit_asset_events,  # set on the mapped task itself, not only through default_args
        task_id="wait",
        posthog_conn_id=CONN,
        batch_export_id=EXPORT,
        deferrable=deferrable,
        poll_interval="{{ params.poll_interval }}",
        retries=retries,
        retry_delay=retry_delay,
        **({"queue": queue} if queue else {}),
    ).expand_kwargs(ranges())


with DAG(
    "system_deferred_waits",
    params={"conn_id": "", "batch_export_id": "", "ranges": [], "poll_interval": 2},
    **COMMON,
):
    # N deferrable waits, one backfill each; a retry re-attaches instead of creating a second backfill.
    backfill_waits(deferrable=True, retries=2, retry_delay=timedelta(seconds=5))


with DAG(
    "system_sync_wait",
    params={"conn_id": "", "batch_export_id": "", "ranges": [], "poll_interval": 2},
    **COMMON,
):
    # A wait that holds a worker slot (not deferrable): what a worker crash interrupts.
    backfill_waits(deferrable=False, retries=1, retry_delay=timedelta(seconds=3))


with DAG(
    "system_worker_kill",
    params={"conn_id": "", "batch_export_id": "", "ranges": [], "poll_interval": 2},
    **COMMON,
):
    # The same sync wait on its own Celery queue: only the worker that serves it is SIGKILLed, not the tasks
    # of other scenarios (the LocalExecutor ignores queues).
    backfill_waits(deferrable=False, retries=1, retry_delay=timedelta(seconds=3), queue="system_worker_kill")


with DAG(
    "system_asset_alias",
    params={"conn_id": "", "batch_export_id": "", "ranges": [], "poll_interval": 2},
    **COMMON,
):
    # Deferred waits that emit their asset event through the task's alias (the other DAGs do not): many of
    # them finishing at once on a new asset is where Airflow's unguarded first registration can lose a task.
    backfill_waits(deferrable=True, retries=2, retry_delay=timedelta(seconds=5), emit_asset_events=True)


with DAG(
    "system_clock_skew",
    params={"conn_id": "", "batch_export_id": "", "ranges": [], "poll_interval": 2},
    **COMMON,
):
    # One sync wait per range, run while PostHog's clock is 10 minutes off the worker's; its first try is
    # SIGKILLed after the POST: the one retry must re-attach to the backfill the killed try created.
    backfill_waits(deferrable=False, retries=1, retry_delay=timedelta(seconds=3))


with DAG(
    "system_timeouts",
    params={"conn_id": "", "batch_export_id": "", "ranges": []},
    **COMMON,
):
    # A backfill that outlasts each limit: the operator must cancel it remotely when it gives up.
    LIMITS: list[tuple[str, bool, dict[str, Any]]] = [
        ("timeout_deferrable", True, {"timeout": 20}),
        ("timeout_sync", False, {"timeout": 20}),
        ("execution_timeout_deferrable", True, {"execution_timeout": timedelta(seconds=20)}),
        ("execution_timeout_sync", False, {"execution_timeout": timedelta(seconds=20)}),
    ]
    for i, (name, deferrable, limits) in enumerate(LIMITS):
        PostHogCreateBackfillOperator(
            task_id=name,
            posthog_conn_id=CONN,
            batch_export_id=EXPORT,
            start_at=f"{{{{ params.ranges[{i}][0] }}}}",
            end_at=f"{{{{ params.ranges[{i}][1] }}}}",
            deferrable=deferrable,
            poll_interval=2,
            retries=0,
            **limits,
        )


with DAG(
    "system_mark_failed",
    params={"conn_id": "", "batch_export_id": "", "ranges": []},
    **COMMON,
):
    # Marked failed over the REST API while deferred: Airflow 3.3's triggerer calls the trigger's on_kill.
    PostHogCreateBackfillOperator(
        task_id="deferred_wait",
        posthog_conn_id=CONN,
        batch_export_id=EXPORT,
        start_at="{{ params.ranges[0][0] }}",
        end_at="{{ params.ranges[0][1] }}",
        deferrable=True,
        poll_interval=2,
        retries=0,
    )


with DAG(
    "system_outage_waits",
    params={"conn_id": "", "batch_export_id": "", "ranges": []},
    **COMMON,
):
    # Waits through a 3-minute PostHog outage, each as a user would set it up: retries=0, the default poll
    # interval (60 s) unless named otherwise, a timeout (600 s) longer than the outage plus a poll. Every path
    # must ride it out in its first try: the worker's loop, a poke and a rescheduled sensor, the trigger.
    OUTAGE_TIMEOUT = 600
    OUTAGE_WAITS: list[tuple[str, bool, dict[str, Any]]] = [
        ("sync_default", False, {}),
        ("sync_poll2", False, {"poll_interval": 2}),
        ("deferred_default", True, {}),
        *[(f"deferred_poll2_{i}", True, {"poll_interval": 2}) for i in range(2)],
    ]
    for i, (name, deferrable, poll) in enumerate(OUTAGE_WAITS):
        PostHogCreateBackfillOperator(
            task_id=name,
            posthog_conn_id=CONN,
            batch_export_id=EXPORT,
            start_at=f"{{{{ params.ranges[{i}][0] }}}}",
            end_at=f"{{{{ params.ranges[{i}][1] }}}}",
            deferrable=deferrable,
            timeout=OUTAGE_TIMEOUT,
            retries=0,
            **poll,
        )
    for j, mode in enumerate(("poke", "reschedule"), start=len(OUTAGE_WAITS)):
        # The backfill a sensor waits on, started (not waited for) before the outage.
        start = PostHogCreateBackfillOperator(
            task_id=f"start_{mode}_backfill",
            posthog_conn_id=CONN,
            batch_export_id=EXPORT,
            start_at=f"{{{{ params.ranges[{j}][0] }}}}",
            end_at=f"{{{{ params.ranges[{j}][1] }}}}",
            wait_for_completion=False,
            retries=0,
        )
        start >> PostHogBackfillSensor(
            task_id=f"{mode}_sensor",
            posthog_conn_id=CONN,
            batch_export_id=EXPORT,
            backfill_id=f"{{{{ ti.xcom_pull(task_ids='start_{mode}_backfill', key='backfill_id') }}}}",
            mode=mode,
            deferrable=False,
            timeout=OUTAGE_TIMEOUT,
            retries=0,
        )
