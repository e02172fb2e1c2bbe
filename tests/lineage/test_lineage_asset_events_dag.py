"""Real ``dag.test()`` runs: a task that declares only an ``AssetAlias`` emits the destination's asset event,
Airflow stores it with its extra, and DAGs scheduled on the asset (or on the alias) are queued to run.

The producer is a minimal operator of this file calling the lineage building blocks the way the provider's
operators do; no PostHog call is involved (the emulator end-to-end tests cover that path).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pendulum
from lineage_cases import DESTINATIONS, EXPORT_ID, HOST, PROJECT, SECRETS, two_runs

from airflow_provider_posthog.lineage.assets import (
    default_alias_name,
    emit_export_asset_event,
    with_alias_outlet,
)
from airflow_provider_posthog.lineage.target import ExportTarget

if TYPE_CHECKING:
    from airflow.sdk import DAG

S3_URI = "s3://analytics-lake/posthog/events"
START = pendulum.datetime(2024, 5, 1, tz="UTC")


def _target() -> ExportTarget:
    data = {"id": EXPORT_ID, "model": "events", "destination": DESTINATIONS["S3"]}
    return ExportTarget.from_api(data, posthog_host=HOST, project_id=PROJECT)


def _emit_operator() -> type:
    from airflow.sdk import Asset, AssetAlias, BaseOperator

    class EmitOperator(BaseOperator):
        """``mode``: ``"built"`` declares the alias in the constructor (the proposed wiring), ``"runtime"``
        adds it to ``self.outlets`` inside ``execute``, ``"undeclared"`` writes to an alias it never lists."""

        def __init__(self, *, asset_alias: str, mode: str = "built", **kwargs: Any) -> None:
            if mode == "built":
                kwargs["outlets"] = with_alias_outlet(kwargs.get("outlets"), asset_alias)
            super().__init__(**kwargs)
            self.asset_alias = asset_alias
            self.mode = mode

        def execute(self, context: Any) -> None:
            if self.mode == "undeclared":
                context["outlet_events"][AssetAlias(self.asset_alias)].add(Asset(S3_URI), extra={"lost": 1})
                return
            if self.mode == "runtime":
                self.outlets = with_alias_outlet(self.outlets, self.asset_alias)
            emit_export_asset_event(context, self.asset_alias, _target(), two_runs(), backfill_id="bf-1")

    return EmitOperator


def _run(suffix: str, mode: str) -> tuple[str, str, Any]:
    """Build producer + two consumers, register them as the DAG processor would, run the producer."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Asset, AssetAlias

    from airflow_provider_posthog.compat import dagbag_class
    from tests.airflow_versions import sync_bag_to_db

    emit = _emit_operator()
    dags: list[DAG] = []
    with DAG(f"producer_{suffix}", schedule=None, start_date=START) as producer:
        alias = default_alias_name(producer.dag_id, "export")
        emit(task_id="export", asset_alias=alias, mode=mode)
    dags.append(producer)
    for name, schedule in (("on_asset", Asset(S3_URI)), ("on_alias", AssetAlias(alias))):
        with DAG(
            f"models_{name}_{suffix}", schedule=schedule, start_date=START, is_paused_upon_creation=False
        ) as consumer:
            EmptyOperator(task_id="run_models")
        dags.append(consumer)
    DagBundlesManager().sync_bundles_to_db()
    bag = dagbag_class()(dag_folder="/nonexistent-lineage-dags")
    for dag in dags:
        bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return producer.dag_id, alias, producer.test(logical_date=START)


def _events(dag_id: str) -> list[Any]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent)
                .where(AssetEvent.source_dag_id == dag_id)
                .options(joinedload(AssetEvent.asset), joinedload(AssetEvent.source_aliases))
            ).unique()
        )


def _queued_for(dag_ids: set[str]) -> tuple[set[str], set[str]]:
    """(DAGs with a queued asset event, DAGs the scheduler would now create a run for)."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        queued = set(session.scalars(select(AssetDagRunQueue.target_dag_id))) & dag_ids
        _, triggered = DagModel.dags_needing_dagruns(session)
        return queued, set(triggered) & dag_ids


def test_alias_declared_when_built_records_the_event_and_queues_consumers(lineage_db: None) -> None:
    dag_id, alias, dag_run = _run("built", "built")
    assert dag_run.state == "success"
    (event,) = _events(dag_id)
    assert (event.asset.name, event.asset.uri) == (S3_URI, S3_URI)
    assert [a.name for a in event.source_aliases] == [alias]
    assert event.source_task_id == "export"
    assert event.extra["batch_export_id"] == EXPORT_ID
    assert event.extra["backfill_id"] == "bf-1"
    assert event.extra["run_ids"] == ["run-1", "run-2"]
    assert event.extra["records_completed"] == 150
    assert event.extra["intervals"][0] == {
        "start": "2024-05-01T00:00:00+00:00",
        "end": "2024-05-01T01:00:00+00:00",
    }
    assert not any(secret in json.dumps(event.extra) for secret in SECRETS)
    consumers = {"models_on_asset_built", "models_on_alias_built"}
    assert _queued_for(consumers) == (consumers, consumers)


def test_alias_added_while_running_is_also_honoured(lineage_db: None) -> None:
    """Airflow reads the finishing task's outlets, not the parsed DAG's: declaring at build time is for the
    graph view and alias-scheduled DAGs' resolution, not a requirement of the task runner."""
    dag_id, alias, dag_run = _run("runtime", "runtime")
    assert dag_run.state == "success"
    (event,) = _events(dag_id)
    assert [a.name for a in event.source_aliases] == [alias]
    assert event.asset.uri == S3_URI
    consumers = {"models_on_asset_runtime", "models_on_alias_runtime"}
    assert _queued_for(consumers) == (consumers, consumers)


def test_event_on_an_undeclared_alias_is_dropped_silently(lineage_db: None) -> None:
    """Why ``emit_asset_event`` refuses an undeclared alias: the task succeeds and the event is lost."""
    dag_id, _, dag_run = _run("undeclared", "undeclared")
    assert dag_run.state == "success"
    assert _events(dag_id) == []
