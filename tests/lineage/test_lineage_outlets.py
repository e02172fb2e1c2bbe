"""Which outlet a task declares when it is built, and what it does with it when it runs.

A plain ``Asset`` outlet when the DAG names the asset (a literal ``asset_uri``, or ``asset_destination`` given
literally), so the dag-processor registers the asset and emitting it cannot race; the alias when the asset is
known only at run time. Real ``dag.test()`` runs (no PostHog call): ``test_lineage_outlets_dag.py``; against
the emulator: ``tests/e2e/test_lineage_e2e_assets.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from lineage_cases import DESTINATIONS, SECRETS
from test_lineage_tasks import CLASSES, EXPORT, S3_URI, _added, _context, _fake, _success, _task

from airflow_provider_posthog.destinations import (
    BigQueryDestination,
    PostgresDestination,
    S3Destination,
    SnowflakeDestination,
)
from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.lineage.assets import asset_destination_uri, destination_asset_uri
from airflow_provider_posthog.lineage.outlets import without_asset

#: The export's destination as a DAG gives it: PostHog's shape, a secret included (never read).
S3_LITERAL = {
    "type": "S3",
    "config": {
        "bucket_name": "analytics-lake",
        "prefix": "posthog/events/{year}/{month}/",
        "region": "eu-west-1",
        "aws_secret_access_key": "s3cr3t-value",
    },
}
SNOWFLAKE_URI = "snowflake://acme/db/raw/events"


def _asset(uri: str) -> Any:
    from airflow.sdk import Asset

    return Asset(uri)


def _alias(name: str) -> Any:
    from airflow.sdk import AssetAlias

    return AssetAlias(name)


# ------------------------------------------------------------------------------------------ built: which path


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_a_literal_asset_uri_is_declared_as_the_tasks_asset(kind: str) -> None:
    task = _task(kind, asset_uri=SNOWFLAKE_URI)
    assert task.outlets == [_asset(SNOWFLAKE_URI)]
    assert (task.outlet_asset_uri, task.asset_alias) == (SNOWFLAKE_URI, None)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_a_literal_destination_is_declared_as_the_asset_the_run_time_path_derives(kind: str) -> None:
    task = _task(kind, asset_destination=S3_LITERAL)
    assert task.outlets == [_asset(S3_URI)]
    assert (task.outlet_asset_uri, task.declared_destination_uri, task.asset_alias) == (S3_URI, S3_URI, None)
    # The same function names PostHog's answer when the task runs (the response carries no secret).
    answer = DESTINATIONS["S3"]
    assert destination_asset_uri(answer, posthog_host="h", project_id=1, export_id="e") == S3_URI
    # The task keeps the URI, not the destination (Airflow's own copy of the constructor's arguments aside).
    kept = {k: v for k, v in vars(task).items() if k != "_BaseOperator__init_kwargs"}
    assert not any(secret in repr(kept) for secret in SECRETS)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_an_asset_known_only_at_run_time_goes_through_the_alias(kind: str) -> None:
    alias = f"posthog-batch-export:lineage_tasks.{kind}"
    for options in (
        {},
        {"asset_uri": "s3://lake/{{ params.prefix }}"},
        {"asset_uri": "s3://lake/{% if params.x %}a{% endif %}"},
    ):
        task = _task(kind, **options)
        assert task.outlets == [_alias(alias)], options
        assert (task.outlet_asset_uri, task.asset_alias) == (None, alias)


def test_asking_for_an_alias_keeps_the_alias_with_a_known_asset() -> None:
    """A DAG scheduled on that alias keeps working; the asset is then attached to it at run time."""
    task = _task("backfill", asset_uri=SNOWFLAKE_URI, asset_alias="mine")
    assert task.outlets == [_alias("mine")] and task.outlet_asset_uri is None


def test_a_task_that_may_succeed_without_waiting_keeps_the_alias() -> None:
    """``wait_for_completion=False`` succeeds before PostHog confirmed anything: a declared asset would get an
    event on that success; the alias gets none."""
    task = _task("backfill", asset_uri=SNOWFLAKE_URI, wait_for_completion=False)
    assert task.outlets == [_alias("posthog-batch-export:lineage_tasks.backfill")]


def test_the_asset_is_added_once_next_to_the_users_outlets() -> None:
    mine = _asset("s3://other/x")
    task = _task("backfill", asset_uri=SNOWFLAKE_URI, outlets=[mine, _asset(SNOWFLAKE_URI)])
    assert task.outlets == [mine, _asset(SNOWFLAKE_URI)]
    assert _task("backfill", asset_uri=SNOWFLAKE_URI, outlets=mine).outlets == [mine, _asset(SNOWFLAKE_URI)]


def test_turned_off_declares_nothing_whatever_names_the_asset() -> None:
    assert _task("backfill", emit_asset_events=False, asset_uri=SNOWFLAKE_URI).outlets == []
    assert _task("backfill", emit_asset_events=False, asset_destination=S3_LITERAL).outlets == []


def test_an_instance_of_a_mapped_task_keeps_the_alias_unless_its_outlets_list_the_asset() -> None:
    """Airflow builds a mapped task's instances only when they run: an outlet their constructor adds is in no
    serialized DAG, and Airflow drops events of an asset it never registered. ``_airflow_from_mapped`` is what
    Airflow passes when it builds such an instance."""
    from airflow.sdk import DAG

    cls, required = CLASSES["backfill"]
    with DAG("lineage_tasks", schedule=None):
        bare = cls(task_id="m", asset_uri=SNOWFLAKE_URI, _airflow_from_mapped=True, **required)
        listed = cls(
            task_id="n",
            asset_uri=SNOWFLAKE_URI,
            outlets=[_asset(SNOWFLAKE_URI)],
            _airflow_from_mapped=True,
            **required,
        )
        mapped = cls.partial(task_id="p", asset_uri=SNOWFLAKE_URI, outlets=[_asset(SNOWFLAKE_URI)]).expand(
            batch_export_id=["a", "b"], start_at=[required["start_at"]], end_at=[required["end_at"]]
        )
    assert bare.outlets == [_alias("posthog-batch-export:lineage_tasks.m")]
    assert listed.outlets == [_asset(SNOWFLAKE_URI)] and listed.outlet_asset_uri == SNOWFLAKE_URI
    assert mapped.outlets == [_asset(SNOWFLAKE_URI)]  # what the serialized DAG carries for the mapped task


def test_the_serialized_dag_carries_the_declared_asset() -> None:
    """What the dag-processor stores (and registers the asset from) when it parses the DAG file."""
    from airflow.sdk import DAG

    from tests.airflow_versions import dag_serialization

    cls, required = CLASSES["backfill_sensor"]
    with DAG("lineage_outlets_serialized", schedule=None) as dag:
        cls(task_id="by_uri", asset_uri=SNOWFLAKE_URI, **required)
        cls(task_id="by_destination", asset_destination=S3_LITERAL, **required)
        cls(task_id="at_run_time", **required)
    serializer = dag_serialization()
    serialized = serializer.to_dict(dag)
    assert "s3cr3t-value" not in json.dumps(serialized, default=str)
    restored = serializer.from_dict(serialized)
    outlets = {  # Airflow 3.2+ restores Serialized* classes, 3.1 the SDK's
        task_id: [
            (type(o).__name__.removeprefix("Serialized"), o.name, getattr(o, "uri", None))
            for o in restored.get_task(task_id).outlets
        ]
        for task_id in ("by_uri", "by_destination", "at_run_time")
    }
    assert outlets == {
        "by_uri": [("Asset", SNOWFLAKE_URI, SNOWFLAKE_URI)],
        "by_destination": [("Asset", S3_URI, S3_URI)],
        "at_run_time": [("AssetAlias", "posthog-batch-export:lineage_outlets_serialized.at_run_time", None)],
    }


# ------------------------------------------------------------------------------- built: asset_destination


@pytest.mark.parametrize(
    ("destination", "uri"),
    [
        (S3_LITERAL, S3_URI),
        (DESTINATIONS["BigQuery"], "bigquery://acme-analytics/posthog/events_raw"),
        (DESTINATIONS["Postgres"], "postgres://db.example.com:5432/warehouse/raw/posthog_events"),
        (DESTINATIONS["Snowflake"], "snowflake://myorg-myaccount/ANALYTICS/POSTHOG/EVENTS"),
        # Builders: only their literal settings are read; the connection is not (no lookup at parse time).
        (
            S3Destination(bucket_name="lake", prefix="posthog/", region="{{ var.value.region }}"),
            "s3://lake/posthog",
        ),
        (BigQueryDestination(project_id="acme", dataset_id="raw"), "bigquery://acme/raw/events"),
        (
            SnowflakeDestination(account="MYORG-ACC", database="DB", schema="RAW", table_name="EV"),
            "snowflake://myorg-acc/DB/RAW/EV",
        ),
    ],
    ids=["dict-s3", "dict-bigquery", "dict-postgres", "dict-snowflake", "s3", "bigquery", "snowflake"],
)
def test_asset_destination_uri_per_destination(destination: Any, uri: str) -> None:
    assert asset_destination_uri(destination) == uri


@pytest.mark.parametrize(
    ("destination", "error", "message"),
    [
        (S3Destination(bucket_name="lake", prefix="posthog/{{ ds }}/"), ValueError, "prefix is templated"),
        (
            {"type": "S3", "config": {"bucket_name": "{{ var.value.b }}"}},
            ValueError,
            "bucket_name is templated",
        ),
        # The host is read from the connection when the task runs.
        (PostgresDestination(database="warehouse"), ValueError, r"\(Postgres\) does not name its asset"),
        (BigQueryDestination(dataset_id="raw"), ValueError, r"\(BigQuery\) does not name its asset"),
        ({"type": "NoOp", "config": {}}, ValueError, r"\(NoOp\) does not name its asset"),
        ({"config": {"bucket_name": "b"}}, TypeError, "asset_destination must be a destination"),
        ("s3://lake/x", TypeError, "asset_destination must be a destination"),
    ],
    ids=[
        "templated-prefix",
        "templated-bucket",
        "postgres-host",
        "bigquery-project",
        "noop",
        "no-type",
        "a-str",
    ],
)
def test_asset_destination_that_names_no_asset_now_is_refused_when_built(
    destination: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _task("backfill", asset_destination=destination)


def test_asset_uri_and_asset_destination_are_exclusive() -> None:
    with pytest.raises(ValueError, match="Give asset_uri or asset_destination, not both"):
        _task("backfill", asset_uri=S3_URI, asset_destination=S3_LITERAL)


def test_refusals_never_quote_a_value() -> None:
    secret_bucket = {"type": "S3", "config": {"bucket_name": "{{ s3cr3t-value }}"}}
    with pytest.raises(ValueError) as caught:
        _task("backfill", asset_destination=secret_bucket)
    assert "s3cr3t-value" not in str(caught.value)


# ----------------------------------------------------------------------------------- running: the event


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        ("backfill", {"backfill_id": "0190-backfill"}),
        ("retry", {"backfill_id": "0190-backfill"}),
        ("backfill_sensor", {"backfill_id": "0190-backfill"}),
        ("run_sensor", {"run_id": "run-1"}),
        ("interval_sensor", {}),
    ],
)
def test_the_event_goes_to_the_declared_asset(kind: str, event: dict[str, Any]) -> None:
    task = _task(kind, _fake(), asset_destination=S3_LITERAL)
    context = _context(task)
    task.execute_complete(context, _success(**event))
    ((alias, asset, extra),) = _added(context)
    assert (alias, asset) == (None, _asset(S3_URI))  # the extra of the declared asset's event, no alias
    assert extra["batch_export_id"] == EXPORT and extra["destination_type"] == "S3"
    assert not any(secret in repr(extra) for secret in SECRETS)
    task.post_execute(context)
    assert task.outlets == [_asset(S3_URI)]  # emitted: Airflow records the event


def test_a_declared_destination_that_differs_from_posthogs_fails_without_an_event() -> None:
    moved = {"type": "S3", "config": {"bucket_name": "old-lake", "prefix": "posthog/events/"}}
    task = _task("backfill", _fake(), asset_destination=moved)
    context = _context(task)
    with pytest.raises(PostHogConfigError) as caught:
        task.execute_complete(context, _success(backfill_id="0190-backfill"))
    message = str(caught.value)
    assert "writes to s3://analytics-lake/posthog/events" in message
    assert "declares the asset s3://old-lake/posthog/events" in message
    assert _added(context) == []
    from airflow_provider_posthog.compat import AirflowFailException

    assert isinstance(caught.value, AirflowFailException)  # a retry would find the same settings


def test_a_posthog_answer_that_names_no_destination_keeps_the_declared_asset() -> None:
    """PostHog keeps the Databricks workspace host in an integration and never returns it: nothing to
    contradict the DAG, so the declared asset gets the event."""
    from fake_posthog import export_row

    declared = {
        "type": "Databricks",
        "config": {
            "server_hostname": "adb-1.azuredatabricks.net",
            "catalog": "main",
            "schema": "posthog",
            "table_name": "events",
        },
    }
    uri = "databricks://adb-1.azuredatabricks.net/main/posthog/events"
    fake = _fake()
    fake.export = export_row(model="events", destination=DESTINATIONS["Databricks"])
    task = _task("backfill", fake, asset_destination=declared)
    context = _context(task)
    task.execute_complete(context, _success(backfill_id="0190-backfill"))
    ((alias, asset, _),) = _added(context)
    assert (alias, asset) == (None, _asset(uri))


def test_a_success_that_emitted_nothing_withdraws_the_declared_asset() -> None:
    """Airflow records an event for every plain asset outlet of a task that succeeded; only a success PostHog
    confirmed may leave it there. The DAG's task keeps it (the task runner runs a copy)."""
    task = _task("backfill", asset_uri=SNOWFLAKE_URI)
    running = task.prepare_for_execution()
    running.post_execute(_context(running))
    assert running.outlets == []
    assert task.outlets == [_asset(SNOWFLAKE_URI)]
    # The alias path has nothing to withdraw: an alias without an event records nothing.
    alias_task = _task("backfill")
    alias_task.post_execute(_context(alias_task))
    assert alias_task.outlets == [_alias("posthog-batch-export:lineage_tasks.backfill")]


def test_without_asset_keeps_every_other_outlet() -> None:
    other, alias = _asset("s3://other/x"), _alias("a")
    assert without_asset([other, _asset(S3_URI), alias], S3_URI) == [other, alias]
    assert without_asset(None, S3_URI) == []
