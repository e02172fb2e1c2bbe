"""Real ``dag.test()`` runs of a task whose asset is declared when it is built (no PostHog call: the task
hands lineage the export as PostHog would return it). The asset is registered with the DAG before any run,
and the event lands on it without an alias; a success that emitted nothing records no event; a declared
destination PostHog contradicts fails the task without one."""

from __future__ import annotations

from typing import Any

import pendulum
from lineage_cases import DESTINATIONS, EXPORT_ID, HOST, PROJECT, two_runs

from airflow_provider_posthog.lineage.mixin import LINEAGE_TEMPLATE_FIELDS, PostHogLineageMixin

S3_URI = "s3://analytics-lake/posthog/events"
START = pendulum.datetime(2024, 5, 1, tz="UTC")
EXPORT = {"id": EXPORT_ID, "model": "events", "destination": DESTINATIONS["S3"]}


def _op_class() -> type:
    from airflow.sdk import BaseOperator

    class ExportTask(PostHogLineageMixin, BaseOperator):
        """Hands lineage ``export`` as PostHog's answer. ``verified=False``: succeed without PostHog
        confirming anything (what ``wait_for_completion=False`` would do if it declared the asset)."""

        template_fields = LINEAGE_TEMPLATE_FIELDS

        def __init__(
            self,
            *,
            asset_uri: str | None = None,
            asset_destination: Any = None,
            verified: bool = True,
            export: dict[str, Any] = EXPORT,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self._init_lineage(
                emit_asset_events=True,
                asset_alias=None,
                asset_uri=asset_uri,
                asset_destination=asset_destination,
            )
            self.verified = verified
            self.export = export

        def execute(self, context: Any) -> None:
            if self.verified:
                self._lineage_target_from_api(
                    self.export, posthog_host=HOST, project_id=PROJECT, job_id="bf-1"
                )
                self._lineage_success(context, two_runs(), backfill_id="bf-1")

    return ExportTask


def _register(*dags: Any) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    from airflow_provider_posthog.compat import dagbag_class
    from tests.airflow_versions import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = dagbag_class()(dag_folder="/nonexistent-lineage-dags")
    for dag in dags:
        bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def _producer(dag_id: str, **op_kwargs: Any) -> Any:
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        _op_class()(task_id="export", **op_kwargs)
    return dag


def _events(dag_id: str) -> list[Any]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    with create_session() as session:
        query = (
            select(AssetEvent)
            .where(AssetEvent.source_dag_id == dag_id)
            .options(joinedload(AssetEvent.asset), joinedload(AssetEvent.source_aliases))
        )
        events = list(session.scalars(query).unique())
        session.expunge_all()
        return events


def _producers_of(uri: str) -> set[tuple[str, str]]:
    """``(dag_id, task_id)`` of the tasks the metadata DB lists as producing the active asset ``uri``."""
    from airflow.models.asset import AssetActive, AssetModel, TaskOutletAssetReference
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskOutletAssetReference.dag_id, TaskOutletAssetReference.task_id)
            .join(AssetModel, AssetModel.id == TaskOutletAssetReference.asset_id)
            .join(AssetActive, (AssetActive.name == AssetModel.name) & (AssetActive.uri == AssetModel.uri))
            .where(AssetModel.uri == uri)
        )
        return {(dag_id, task_id) for dag_id, task_id in rows}


def test_the_asset_is_registered_when_parsed_and_the_event_lands_on_it(lineage_db: None) -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Asset

    uri = "s3://analytics-lake/outlets-by-destination"
    destination = {
        "type": "S3",
        "config": {"bucket_name": "analytics-lake", "prefix": "outlets-by-destination/"},
    }
    export = {**EXPORT, "destination": {**destination, "config": {**destination["config"], "region": "x"}}}
    producer = _producer("outlets_by_destination", asset_destination=destination, export=export)
    with DAG(
        "outlets_models", schedule=Asset(uri), start_date=START, is_paused_upon_creation=False
    ) as models:
        EmptyOperator(task_id="run_models")
    _register(producer, models)
    # Registered from the parsed DAG, before the task ever ran: nothing to insert when it succeeds.
    assert _producers_of(uri) == {("outlets_by_destination", "export")}

    dag_run = producer.test(logical_date=START)
    assert dag_run.state == "success"
    (event,) = _events("outlets_by_destination")
    assert (event.asset.name, event.asset.uri) == (uri, uri)
    assert event.source_aliases == []
    assert (event.extra["backfill_id"], event.extra["run_ids"]) == ("bf-1", ["run-1", "run-2"])
    assert event.extra["records_completed"] == 150


def test_a_literal_asset_uri_gets_the_event_without_an_alias(lineage_db: None) -> None:
    producer = _producer("outlets_by_uri", asset_uri=S3_URI)
    _register(producer)
    assert ("outlets_by_uri", "export") in _producers_of(S3_URI)
    assert producer.test(logical_date=START).state == "success"
    (event,) = _events("outlets_by_uri")
    assert event.asset.uri == S3_URI and event.source_aliases == []
    assert event.extra["batch_export_id"] == EXPORT_ID


def test_a_success_without_an_emission_records_no_event(lineage_db: None) -> None:
    """Airflow records an event for each plain asset outlet of a task that succeeded; the mixin withdraws the
    declared one when the success emitted nothing."""
    producer = _producer("outlets_unverified", asset_uri=S3_URI, verified=False)
    _register(producer)
    assert producer.test(logical_date=START).state == "success"
    assert _events("outlets_unverified") == []


def test_a_contradicted_destination_fails_the_task_without_an_event(lineage_db: None) -> None:
    moved = {"type": "S3", "config": {"bucket_name": "old-lake", "prefix": "posthog/events/"}}
    producer = _producer("outlets_contradicted", asset_destination=moved)
    _register(producer)
    dag_run = producer.test(logical_date=START)
    assert dag_run.state == "failed"
    (ti,) = dag_run.get_task_instances()
    assert ti.state == "failed"
    assert _events("outlets_contradicted") == []
