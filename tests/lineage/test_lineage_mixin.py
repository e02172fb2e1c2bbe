"""The mixin the operators and sensors use: options, alias declaration, asset event, OpenLineage hooks."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from lineage_cases import DESTINATIONS, EXPORT_ID, HOST, PROJECT, two_runs

from airflow_provider_posthog.lineage.mixin import LINEAGE_TEMPLATE_FIELDS, PostHogLineageMixin

S3_URI = "s3://analytics-lake/posthog/events"
START = pendulum.datetime(2024, 5, 1, tz="UTC")
EXPORT = {"id": EXPORT_ID, "model": "events", "destination": DESTINATIONS["S3"]}


def _op_class() -> type:
    from airflow.sdk import BaseOperator

    class ExportTask(PostHogLineageMixin, BaseOperator):
        """What a provider operator does: read the export, see its runs complete, report success."""

        template_fields = LINEAGE_TEMPLATE_FIELDS

        def __init__(
            self,
            *,
            emit_asset_events: bool = True,
            asset_alias: str | None = None,
            asset_uri: str | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self._init_lineage(
                emit_asset_events=emit_asset_events, asset_alias=asset_alias, asset_uri=asset_uri
            )

        def execute(self, context: Any) -> None:
            self._lineage_target_from_api(EXPORT, posthog_host=HOST, project_id=PROJECT, job_id="bf-1")
            self._lineage_success(context, two_runs(), backfill_id="bf-1")

    return ExportTask


def test_alias_defaults_to_dag_and_task_and_is_declared() -> None:
    from airflow.sdk import DAG, AssetAlias

    with DAG("d", schedule=None, start_date=START):
        task = _op_class()(task_id="t")
    assert task.asset_alias == "posthog-batch-export:d.t"
    assert task.outlets == [AssetAlias("posthog-batch-export:d.t")]


def test_alias_outside_a_dag_and_custom_alias() -> None:
    from airflow.sdk import Asset, AssetAlias

    cls = _op_class()
    assert cls(task_id="t").asset_alias == "posthog-batch-export:t"
    mine = Asset("s3://x/y")
    task = cls(task_id="t", asset_alias="my-alias", outlets=[mine])
    assert task.outlets == [mine, AssetAlias("my-alias")]


def test_turned_off_declares_nothing() -> None:
    task = _op_class()(task_id="t", emit_asset_events=False)
    assert task.asset_alias is None
    assert task.outlets == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"emit_asset_events": "yes"}, "emit_asset_events must be True or False"),
        ({"asset_alias": " "}, "asset_alias must be a non-empty string"),
        ({"asset_uri": ""}, "asset_uri must be a non-empty string"),
    ],
)
def test_bad_options_name_the_argument(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        _op_class()(task_id="t", **kwargs)


def test_openlineage_hooks_need_the_export_first() -> None:
    task = _op_class()(task_id="t")
    assert task.get_openlineage_facets_on_complete(None) is None
    assert task.get_openlineage_facets_on_failure(None) is None
    task._lineage_target_from_api(EXPORT, posthog_host=HOST, project_id=PROJECT, job_id="bf-7")
    failed = task.get_openlineage_facets_on_failure(None)
    assert [(d.namespace, d.name) for d in failed.outputs] == [("s3://analytics-lake", "posthog/events")]
    assert failed.run_facets["externalQuery"].externalQueryId == "bf-7"


def _run_dag(dag_id: str, **op_kwargs: Any) -> Any:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.sdk import DAG

    from airflow_provider_posthog.compat import dagbag_class
    from tests.airflow_versions import sync_bag_to_db

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        task = _op_class()(task_id="export", **op_kwargs)
    DagBundlesManager().sync_bundles_to_db()
    bag = dagbag_class()(dag_folder="/nonexistent-lineage-dags")
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return task, dag.test(logical_date=START)


def _events(dag_id: str) -> list[Any]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    with create_session() as session:
        query = select(AssetEvent).where(AssetEvent.source_dag_id == dag_id)
        return list(session.scalars(query.options(joinedload(AssetEvent.asset))).unique())


def test_in_a_real_run_the_event_follows_the_options(lineage_db: None) -> None:
    _, dag_run = _run_dag("mixin_default")
    assert dag_run.state == "success"
    (event,) = _events("mixin_default")
    assert event.asset.uri == S3_URI
    assert event.extra["backfill_id"] == "bf-1" and event.extra["records_completed"] == 150

    _, dag_run = _run_dag("mixin_override", asset_uri="postgres://wh:5432/db/raw/{{ dag.dag_id }}")
    assert dag_run.state == "success"
    (event,) = _events("mixin_override")
    assert event.asset.uri == "postgres://wh:5432/db/raw/mixin_override"  # templated

    _, dag_run = _run_dag("mixin_off", emit_asset_events=False)
    assert dag_run.state == "success"
    assert _events("mixin_off") == []
