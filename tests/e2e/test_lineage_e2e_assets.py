"""Asset events end to end: real Airflow (``dag.test()``), real HTTP to the emulator on 127.0.0.1.

The export is created over HTTP with an S3 secret key, as a user would; the tasks then read it back from the
emulator (which strips secrets like PostHog does), so what reaches the metadata DB went the whole way.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
from typing import Any

import pytest

S3_KEY_ID = "AKIALINEAGEE2E0001"
S3_SECRET = "lineage-e2e-Secret-Key-9876543210"
BUCKET = "lineage-lake"
S3_URI = f"s3://{BUCKET}/posthog/events"
BACKFILL_DAG = "posthog_backfill_and_wait"
BACKFILL_TASK = "backfill_posthog_export"
MODELS_DAG = "posthog_models_on_export"
ALIAS = f"posthog-batch-export:{BACKFILL_DAG}.{BACKFILL_TASK}"
UTC = dt.timezone.utc


# ------------------------------------------------------------------------------------------------- helpers


def _create_export(interval: str = "hour") -> str:
    """Create the export through the provider's hook: a POST with the secret, as PostHog receives it."""
    from airflow_provider_posthog.hooks.posthog import PostHogHook

    export = PostHogHook().create_batch_export(
        {
            "name": "lineage e2e",
            "model": "events",
            "interval": interval,
            "destination": {
                "type": "S3",
                "config": {
                    "bucket_name": BUCKET,
                    "region": "eu-west-1",
                    "prefix": "posthog/events/{year}-{month}-{day}/",
                    "file_format": "Parquet",
                    "aws_access_key_id": S3_KEY_ID,
                    "aws_secret_access_key": S3_SECRET,
                },
            },
        }
    )
    return export.id


def _window(emu: Any, hours: int = 2) -> tuple[dt.datetime, dt.datetime]:
    end = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - dt.timedelta(hours=hours), end


def _iso(value: dt.datetime | str) -> str:
    """The emulator's value (a datetime, or PostHog's ``Z`` form) as the event's ISO 8601 UTC text."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).isoformat()


def _clear_queue(dag_id: str) -> None:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag_id))


def _queued(dag_id: str) -> tuple[bool, bool]:
    """(an asset event is queued for ``dag_id``, the scheduler would create a run of it now)."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        queued = dag_id in set(session.scalars(select(AssetDagRunQueue.target_dag_id)))
        _, triggered = DagModel.dags_needing_dagruns(session)
        return queued, dag_id in triggered


@pytest.fixture
def examples_registered(example_dags: dict[str, Any], airflow_dags: Any) -> dict[str, Any]:
    """The example DAGs in the metadata DB, the asset-scheduled one unpaused with an empty queue."""
    airflow_dags.register(example_dags.values(), unpause=(MODELS_DAG,))
    _clear_queue(MODELS_DAG)
    return example_dags


def _run_backfill_example(
    dags: dict[str, Any], airflow_dags: Any, export_id: str, emu: Any, **attrs: Any
) -> Any:
    dag = airflow_dags.with_task(dags[BACKFILL_DAG], BACKFILL_TASK, **attrs)
    start, end = _window(emu)
    conf = {
        "batch_export_id": export_id,
        "start_at": start.isoformat(),
        "end_at": end.isoformat(),
        "poll_interval": 0.2,
    }
    return dag.test(run_conf=conf)


# ------------------------------------------------------------------------------------------------ the tests


def test_emulator_get_export_strips_secrets_and_keeps_where_it_writes(posthog_conn: Any) -> None:
    from airflow_provider_posthog.hooks.posthog import PostHogHook

    export_id = _create_export()
    assert posthog_conn.control.get_export(export_id)["destination"]["config"]["aws_secret_access_key"]
    raw = PostHogHook().get_batch_export(export_id).raw  # over HTTP, as the tasks read it
    config = raw["destination"]["config"]
    assert (config["bucket_name"], config["prefix"], config["region"]) == (
        BUCKET,
        "posthog/events/{year}-{month}-{day}/",
        "eu-west-1",
    )
    assert "aws_secret_access_key" not in config and "aws_access_key_id" not in config
    assert S3_SECRET not in json.dumps(raw) and S3_KEY_ID not in json.dumps(raw)


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_backfill_example_emits_the_destination_asset_and_queues_the_models_dag(
    examples_registered: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    capfd: pytest.CaptureFixture[str],
    deferrable: bool,
) -> None:
    emu = posthog_conn
    export_id = _create_export()
    dr = _run_backfill_example(examples_registered, airflow_dags, export_id, emu, deferrable=deferrable)
    assert dr.state == "success"

    (backfill,) = emu.control.backfills_for(export_id)
    assert backfill["status"] == "Completed"
    runs = sorted(
        (r for r in emu.control.runs_for(export_id) if r.get("backfill") == backfill["id"]),
        key=lambda r: r["data_interval_start"],
    )
    assert len(runs) == 2 and {r["status"] for r in runs} == {"Completed"}
    # Lineage reads nothing the wait read: the runs and the export of the finished backfill's last poll,
    # in the worker or, resumed after a deferral, from the trigger's event.
    lists = [e for e in emu.control.request_log if e.method == "GET" and e.path.endswith("/runs/")]
    assert len(lists) == 1
    reads = [e for e in emu.control.request_log if e.method == "GET" and e.path.endswith(f"/{export_id}/")]
    assert len(reads) == 2  # the operator's check of the range, and the finished backfill's last poll

    (event,) = airflow_dags.asset_events(BACKFILL_DAG, dr.run_id)
    assert (event.asset.uri, event.asset.name) == (S3_URI, S3_URI)
    assert [a.name for a in event.source_aliases] == [ALIAS]
    assert event.source_task_id == BACKFILL_TASK
    extra = event.extra
    assert extra["batch_export_id"] == export_id
    assert extra["backfill_id"] == backfill["id"]
    assert extra["destination_type"] == "S3" and extra["model"] == "events"
    assert extra["posthog_project_id"] == str(emu.control.settings.project_id)
    assert extra["run_ids"] == [r["id"] for r in runs]
    assert extra["intervals"] == [
        {"start": _iso(r["data_interval_start"]), "end": _iso(r["data_interval_end"])} for r in runs
    ]
    assert extra["data_interval_start"] == _iso(runs[0]["data_interval_start"])
    assert extra["data_interval_end"] == _iso(runs[-1]["data_interval_end"])
    assert extra["records_completed"] == sum(r["records_completed"] for r in runs) > 0
    assert S3_SECRET not in json.dumps(extra) and S3_KEY_ID not in json.dumps(extra)
    assert S3_SECRET not in capfd.readouterr().out

    # The example DAG scheduled on the backfill task's alias is now due, as the scheduler sees it.
    assert _queued(MODELS_DAG) == (True, True)


def test_the_scheduler_creates_the_models_run_with_the_event(
    examples_registered: dict[str, Any], posthog_conn: Any, airflow_dags: Any
) -> None:
    """The scheduler's own run creation consumes the event: the models DAG runs with this extra."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.asset import AssetEvent
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    emu = posthog_conn
    export_id = _create_export()
    dr = _run_backfill_example(examples_registered, airflow_dags, export_id, emu, deferrable=False)
    assert dr.state == "success"
    (event,) = airflow_dags.asset_events(BACKFILL_DAG, dr.run_id)

    with create_session() as session:
        before = set(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == MODELS_DAG)))
        model = session.scalars(select(DagModel).where(DagModel.dag_id == MODELS_DAG)).one()
        runner = SchedulerJobRunner(job=Job())
        if "triggered_date_by_dag" in inspect.signature(runner._create_dag_runs_asset_triggered).parameters:
            _, triggered = DagModel.dags_needing_dagruns(session)  # Airflow 3.1 takes them as an argument
            runner._create_dag_runs_asset_triggered(
                dag_models=[model], triggered_date_by_dag=triggered, session=session
            )
        else:
            runner._create_dag_runs_asset_triggered(dag_models=[model], session=session)
        session.flush()
        created = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == MODELS_DAG, DagRun.run_id.not_in(before))
            .options(
                selectinload(DagRun.consumed_asset_events).selectinload(AssetEvent.asset),
                selectinload(DagRun.consumed_asset_events).selectinload(AssetEvent.source_aliases),
            )
        ).all()
        assert len(created) == 1 and created[0].run_type == "asset_triggered"
        # Events of earlier tests' runs are consumed too (all since this DAG's last asset-triggered run).
        consumed = {e.id: e for e in created[0].consumed_asset_events}
        assert max(consumed) == event.id
        assert consumed[event.id].extra["batch_export_id"] == export_id
        accessor = _triggering_events(consumed[event.id])
    assert _queued(MODELS_DAG) == (False, False)  # consumed

    # The models task reads the event the way its run receives it (Airflow's own accessor, keyed by alias).
    build_models = examples_registered[MODELS_DAG].get_task("build_models").python_callable
    (landed,) = build_models(params={"full_refresh": False}, triggering_asset_events=accessor)
    assert landed == {
        "uri": S3_URI,
        "batch_export_id": export_id,
        "backfill_id": event.extra["backfill_id"],
        "intervals": event.extra["intervals"],
        "records_completed": event.extra["records_completed"],
    }


def _triggering_events(event: Any) -> Any:
    """``triggering_asset_events`` of a run that consumed ``event``, built as the task runner builds it."""
    from airflow.sdk.api.datamodels._generated import (
        AssetAliasReferenceAssetEventDagRun,
        AssetReferenceAssetEventDagRun,
    )
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    reference = AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name=event.asset.name, uri=event.asset.uri, extra={}),
        extra=event.extra,
        source_task_id=event.source_task_id,
        source_dag_id=event.source_dag_id,
        source_run_id=event.source_run_id,
        source_map_index=event.source_map_index,
        source_aliases=[AssetAliasReferenceAssetEventDagRun(name=a.name) for a in event.source_aliases],
        timestamp=event.timestamp,
    )
    return TriggeringAssetEventsAccessor.build([reference])


def test_failed_backfill_emits_nothing(
    examples_registered: dict[str, Any], posthog_conn: Any, airflow_dags: Any
) -> None:
    emu = posthog_conn
    export_id = _create_export()
    emu.control.fail_next_run(export_id, error="S3 AccessDenied: emulated failure")
    dr = _run_backfill_example(examples_registered, airflow_dags, export_id, emu, deferrable=False, retries=0)
    assert dr.state == "failed"
    assert [b["status"] for b in emu.control.backfills_for(export_id)] == ["Completed"]  # with a failed run
    assert airflow_dags.asset_events(BACKFILL_DAG, dr.run_id) == []
    assert _queued(MODELS_DAG) == (False, False)


def test_emit_asset_events_false_emits_nothing_and_declares_no_alias(
    examples_registered: dict[str, Any], posthog_conn: Any, airflow_dags: Any
) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    export_id = _create_export()
    start, end = _window(posthog_conn)
    with airflow_dags.new("lineage_e2e_off") as dag:
        PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_id=export_id,
            start_at=start.isoformat(),
            end_at=end.isoformat(),
            poll_interval=0.2,
            deferrable=False,
            emit_asset_events=False,
        )
    assert dag.get_task("backfill").outlets == []
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "success"
    assert airflow_dags.asset_events(dag.dag_id, dr.run_id) == []


# ---------------------------------------------------------------------------------------------- the sensors


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_backfill_sensor_emits_on_success(posthog_conn: Any, airflow_dags: Any, deferrable: bool) -> None:
    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

    emu = posthog_conn
    export_id = _create_export()
    start, end = _window(emu)
    backfill = PostHogHook().create_backfill(export_id, start, end)
    dag_id = f"lineage_e2e_backfill_sensor_{'deferrable' if deferrable else 'poke'}"
    with airflow_dags.new(dag_id) as dag:
        PostHogBackfillSensor(
            task_id="wait",
            batch_export_id=export_id,
            backfill_id=backfill.id,
            poke_interval=0.2,
            deferrable=deferrable,
            asset_alias="models-input",
        )
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "success"
    (event,) = airflow_dags.asset_events(dag_id, dr.run_id)
    assert event.asset.uri == S3_URI
    assert [a.name for a in event.source_aliases] == ["models-input"]
    runs = [r for r in emu.control.runs_for(export_id) if r.get("backfill") == backfill.id]
    assert event.extra["backfill_id"] == backfill.id
    assert sorted(event.extra["run_ids"]) == sorted(r["id"] for r in runs) and len(runs) == 2
    assert event.extra["records_completed"] == sum(r["records_completed"] for r in runs)
    assert S3_SECRET not in json.dumps(event.extra)


def test_backfill_sensor_soft_fail_on_a_failed_backfill_emits_nothing(
    posthog_conn: Any, airflow_dags: Any
) -> None:
    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

    emu = posthog_conn
    export_id = _create_export()
    emu.control.fail_next_run(export_id, error="emulated failure")
    start, end = _window(emu)
    backfill = PostHogHook().create_backfill(export_id, start, end)
    with airflow_dags.new("lineage_e2e_backfill_sensor_failed") as dag:
        PostHogBackfillSensor(
            task_id="wait",
            batch_export_id=export_id,
            backfill_id=backfill.id,
            poke_interval=0.2,
            soft_fail=True,
        )
    airflow_dags.register([dag])
    dr = dag.test()
    (ti,) = dr.get_task_instances()
    assert ti.state == "skipped"
    assert airflow_dags.asset_events(dag.dag_id, dr.run_id) == []


def test_run_sensor_emits_for_one_run_and_for_an_interval(posthog_conn: Any, airflow_dags: Any) -> None:
    from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

    emu = posthog_conn
    export_id = _create_export()
    start, end = _window(emu)
    middle = start + dt.timedelta(hours=1)
    now = emu.control.now()
    single = emu.control.seed_run(export_id, start, middle, status="Completed", records_completed=7)
    # The second hour failed first and was retried: only the newer, completed run counts.
    emu.control.seed_run(
        export_id, middle, end, status="Failed", latest_error="x", created_at=now - dt.timedelta(minutes=9)
    )
    retried = emu.control.seed_run(
        export_id,
        middle,
        end,
        status="Completed",
        records_completed=5,
        created_at=now - dt.timedelta(minutes=5),
    )
    with airflow_dags.new("lineage_e2e_run_sensors") as dag:
        PostHogBatchExportRunSensor(
            task_id="one_run", batch_export_id=export_id, run_id=single["id"], poke_interval=0.2
        )
        PostHogBatchExportRunSensor(
            task_id="interval",
            batch_export_id=export_id,
            data_interval_start=start.isoformat(),
            data_interval_end=end.isoformat(),
            poke_interval=0.2,
            deferrable=True,
        )
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "success"
    by_task = {e.source_task_id: e for e in airflow_dags.asset_events(dag.dag_id, dr.run_id)}
    assert set(by_task) == {"one_run", "interval"}
    one = by_task["one_run"].extra
    assert (one["run_ids"], one["backfill_id"], one["records_completed"]) == ([single["id"]], None, 7)
    assert one["intervals"] == [{"start": start.isoformat(), "end": middle.isoformat()}]
    interval = by_task["interval"].extra
    assert interval["run_ids"] == [single["id"], retried["id"]]
    assert interval["records_completed"] == 12
    assert (interval["data_interval_start"], interval["data_interval_end"]) == (
        start.isoformat(),
        end.isoformat(),
    )
    assert {e.asset.uri for e in by_task.values()} == {S3_URI}
    assert [a.name for a in by_task["interval"].source_aliases] == [
        "posthog-batch-export:lineage_e2e_run_sensors.interval"
    ]


def test_retry_run_operator_emits_for_the_retried_interval(posthog_conn: Any, airflow_dags: Any) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogRetryRunOperator

    emu = posthog_conn
    export_id = _create_export()
    start, end = _window(emu, hours=1)
    failed = emu.control.seed_run(export_id, start, end, status="Failed", latest_error="emulated")
    with airflow_dags.new("lineage_e2e_retry_run") as dag:
        PostHogRetryRunOperator(
            task_id="retry",
            batch_export_id=export_id,
            run_id=failed["id"],
            poll_interval=0.2,
            deferrable=True,
        )
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "success"
    (backfill,) = emu.control.backfills_for(export_id)
    (new_run,) = [r for r in emu.control.runs_for(export_id) if r.get("backfill") == backfill["id"]]
    (event,) = airflow_dags.asset_events(dag.dag_id, dr.run_id)
    assert event.asset.uri == S3_URI
    assert [a.name for a in event.source_aliases] == ["posthog-batch-export:lineage_e2e_retry_run.retry"]
    assert (event.extra["backfill_id"], event.extra["run_ids"]) == (backfill["id"], [new_run["id"]])
    assert event.extra["intervals"] == [{"start": start.isoformat(), "end": end.isoformat()}]
    assert event.extra["records_completed"] == new_run["records_completed"]


# ------------------------------------------------- the asset known when the DAG is parsed: a plain outlet


def _outlet_producers(dag_id: str) -> set[tuple[str, str]]:
    """``(task_id, uri)`` of the active assets the metadata DB lists as outlets of ``dag_id``'s tasks: what
    the DAG processor registers when it stores the parsed DAG (the alias path registers none)."""
    from airflow.models.asset import AssetActive, AssetModel, TaskOutletAssetReference
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskOutletAssetReference.task_id, AssetModel.uri)
            .join(AssetModel, AssetModel.id == TaskOutletAssetReference.asset_id)
            .join(AssetActive, (AssetActive.name == AssetModel.name) & (AssetActive.uri == AssetModel.uri))
            .where(TaskOutletAssetReference.dag_id == dag_id)
        )
        return {(task_id, uri) for task_id, uri in rows}


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_a_literal_asset_uri_is_registered_when_parsed_and_gets_the_event(
    posthog_conn: Any, airflow_dags: Any, deferrable: bool
) -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Asset

    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    export_id = _create_export()
    start, end = _window(emu)
    suffix = "deferrable" if deferrable else "sync"
    uri = f"s3://{BUCKET}/posthog/by-uri-{suffix}"  # the user's own name for what lands under the prefix
    with airflow_dags.new(f"lineage_e2e_outlet_uri_{suffix}") as dag:
        PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_id=export_id,
            start_at=start.isoformat(),
            end_at=end.isoformat(),
            poll_interval=0.2,
            deferrable=deferrable,
            asset_uri=uri,
        )
    consumer_id = f"lineage_e2e_outlet_models_{suffix}"
    with DAG(consumer_id, schedule=Asset(uri), start_date=dag.start_date, catchup=False) as models:
        EmptyOperator(task_id="run_models")
    airflow_dags.register([dag, models], unpause=(consumer_id,))
    assert _outlet_producers(dag.dag_id) == {("backfill", uri)}  # before any run

    dr = dag.test()
    assert dr.state == "success"
    (backfill,) = emu.control.backfills_for(export_id)
    runs = sorted(
        (r for r in emu.control.runs_for(export_id) if r.get("backfill") == backfill["id"]),
        key=lambda r: r["data_interval_start"],
    )
    (event,) = airflow_dags.asset_events(dag.dag_id, dr.run_id)
    assert (event.asset.name, event.asset.uri) == (uri, uri)
    assert event.source_aliases == []  # no alias: nothing for Airflow to insert when the task succeeds
    assert event.extra["batch_export_id"] == export_id and event.extra["backfill_id"] == backfill["id"]
    assert event.extra["run_ids"] == [r["id"] for r in runs] and len(runs) == 2
    assert event.extra["records_completed"] == sum(r["records_completed"] for r in runs) > 0
    assert S3_SECRET not in json.dumps(event.extra)
    assert _queued(consumer_id) == (True, True)


def test_a_literal_destination_builder_declares_the_destinations_asset(
    posthog_conn: Any, airflow_dags: Any
) -> None:
    """The sensor is given the export's destination as the DAG creating it would: an ``S3Destination``
    whose keys come from a connection (never read here). Its asset is the one the alias path derives from
    PostHog's answer."""
    from airflow_provider_posthog.destinations import S3Destination
    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

    emu = posthog_conn
    export_id = _create_export()
    start, end = _window(emu)
    backfill = PostHogHook().create_backfill(export_id, start, end)
    destination = S3Destination(
        bucket_name=BUCKET, prefix="posthog/events/{year}-{month}-{day}/", aws_conn_id="no_such_connection"
    )
    with airflow_dags.new("lineage_e2e_outlet_destination") as dag:
        PostHogBackfillSensor(
            task_id="wait",
            batch_export_id=export_id,
            backfill_id=backfill.id,
            poke_interval=0.2,
            deferrable=True,
            asset_destination=destination,
        )
    airflow_dags.register([dag])
    assert _outlet_producers(dag.dag_id) == {("wait", S3_URI)}
    dr = dag.test()
    assert dr.state == "success"
    (event,) = airflow_dags.asset_events(dag.dag_id, dr.run_id)
    assert (event.asset.uri, event.source_aliases) == (S3_URI, [])
    assert event.extra["backfill_id"] == backfill.id and len(event.extra["run_ids"]) == 2


def test_a_destination_posthog_contradicts_fails_without_a_retry_or_an_event(
    posthog_conn: Any, airflow_dags: Any
) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    export_id = _create_export()
    start, end = _window(emu)
    with airflow_dags.new("lineage_e2e_outlet_contradicted") as dag:
        PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_id=export_id,
            start_at=start.isoformat(),
            end_at=end.isoformat(),
            poll_interval=0.2,
            deferrable=False,
            retries=2,
            asset_destination={
                "type": "S3",
                "config": {"bucket_name": "old-lake", "prefix": "posthog/events/"},
            },
        )
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "failed"
    assert airflow_dags.task_states(dag.dag_id, dr.run_id) == {"backfill": ("failed", 1)}
    assert [b["status"] for b in emu.control.backfills_for(export_id)] == ["Completed"]  # the export ran
    assert airflow_dags.asset_events(dag.dag_id, dr.run_id) == []
