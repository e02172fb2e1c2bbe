"""OpenLineage datasets per destination and model, built with the real OpenLineage classes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from lineage_cases import DESTINATIONS, EXPORT_ID, HOST, PROJECT, SECRETS, two_runs

from airflow_provider_posthog.lineage.openlineage import (
    MODEL_FIELDS,
    build_datasets,
    hogql_table,
    input_dataset_id,
    operator_lineage,
    output_dataset_id,
    redshift_authority,
)
from airflow_provider_posthog.lineage.target import ExportTarget

NAMESPACE = f"posthog://us.posthog.com/project/{PROJECT}"

EXPECTED_OUTPUTS = {
    "S3": ("s3://analytics-lake", "posthog/events"),
    "AwsS3": ("s3://b2", "exports"),
    "BigQuery": ("bigquery", "acme-analytics.posthog.events_raw"),
    "Postgres": ("postgres://db.example.com:5432", "warehouse.raw.posthog_events"),
    "Redshift": ("redshift://examplecluster.us-west-2:5439", "dev.posthog.events"),
    "Snowflake": ("snowflake://myorg-myaccount", "ANALYTICS.POSTHOG.EVENTS"),
    "Databricks": (NAMESPACE, f"batch_exports/{EXPORT_ID}"),
    "HTTP": (NAMESPACE, f"batch_exports/{EXPORT_ID}"),
    "NoOp": (NAMESPACE, f"batch_exports/{EXPORT_ID}"),
}


def _target(kind: str = "S3", **data: Any) -> ExportTarget:
    payload = {"id": EXPORT_ID, "model": "events", "destination": DESTINATIONS[kind], **data}
    return ExportTarget.from_api(payload, posthog_host=HOST, project_id=PROJECT)


def _as_json(obj: Any) -> str:
    from openlineage.client.serde import Serde

    return str(Serde.to_json(obj))


@pytest.mark.parametrize("kind", sorted(EXPECTED_OUTPUTS), ids=sorted(EXPECTED_OUTPUTS))
def test_output_dataset_per_destination(kind: str) -> None:
    sink = output_dataset_id(_target(kind))
    assert (sink.namespace, sink.name) == EXPECTED_OUTPUTS[kind]
    _, output = build_datasets(_target(kind), two_runs())
    assert (output.namespace, output.name) == EXPECTED_OUTPUTS[kind]
    assert not any(secret in _as_json(output) for secret in SECRETS)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"bucket_name": "b", "prefix": "{year}/"}, ("s3://b", "/")),
        ({"bucket_name": "b"}, ("s3://b", "/")),
        ({"host": "pg:6000", "database": "d"}, None),
    ],
    ids=["s3-template-only", "s3-no-prefix", "s3-missing-bucket"],
)
def test_s3_edge_cases(config: dict[str, Any], expected: tuple[str, str] | None) -> None:
    target = ExportTarget.from_api(
        {"id": "e", "destination": {"type": "S3", "config": config}}, posthog_host=HOST, project_id=1
    )
    sink = output_dataset_id(target)
    fallback = ("posthog://us.posthog.com/project/1", "batch_exports/e")
    assert (sink.namespace, sink.name) == (expected or fallback)


def test_databricks_with_workspace_host_follows_the_databricks_provider() -> None:
    destination = {
        "type": "Databricks",
        "config": {**DESTINATIONS["Databricks"]["config"], "server_hostname": "dbc-1.cloud.databricks.com"},
    }
    target = ExportTarget.from_api({"id": "e", "destination": destination}, posthog_host=HOST, project_id=1)
    sink = output_dataset_id(target)
    assert (sink.namespace, sink.name) == ("databricks://dbc-1.cloud.databricks.com", "main.posthog.events")


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (
            "examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com",
            5439,
            "examplecluster.us-west-2:5439",
        ),
        ("wg.123456789012.eu-central-1.redshift-serverless.amazonaws.com", 5439, "wg.eu-central-1:5439"),
        ("redshift.internal", 5440, "redshift.internal:5440"),
    ],
)
def test_redshift_authority(host: str, port: int, expected: str) -> None:
    assert redshift_authority(host, port) == expected


@pytest.mark.parametrize("model", ["events", "persons", "sessions"])
def test_input_is_the_model_with_its_schema(model: str) -> None:
    source, _ = build_datasets(_target(model=model))
    assert (source.namespace, source.name) == (NAMESPACE, model)
    schema = source.facets["schema"]
    assert [(f.name, f.type) for f in schema.fields] == list(MODEL_FIELDS[model])
    assert "schema" in _as_json(source)


def test_input_of_a_custom_query_uses_its_table_and_selected_fields() -> None:
    schema = {
        "fields": [
            {"expression": "event", "alias": "event"},
            {"expression": "toString(uuid)", "alias": "id"},
        ],
        "values": {},
        "hogql_query": "SELECT event, toString(uuid) AS id FROM events WHERE event = '$pageview'",
    }
    target = _target(model="hogql", schema=schema)
    source, _ = build_datasets(target)
    assert (source.namespace, source.name) == (NAMESPACE, "events")
    assert [(f.name, f.type) for f in source.facets["schema"].fields] == [("event", None), ("id", None)]


@pytest.mark.parametrize(
    ("query", "table"),
    [
        ("select * from persons", "persons"),
        ("SELECT a\nFROM   sessions AS s", "sessions"),
        ("SELECT 1 FROM (SELECT 1)", None),
        ("", None),
        (None, None),
    ],
)
def test_hogql_table(query: str | None, table: str | None) -> None:
    assert hogql_table(query) == table


def test_hogql_model_without_a_readable_table_keeps_the_model_name() -> None:
    target = _target(model="hogql", hogql_query="SELECT 1 FROM (SELECT 2)")
    assert input_dataset_id(target).name == "hogql"
    source, _ = build_datasets(target)
    assert "schema" not in source.facets  # nothing known: no facet rather than a wrong one


def test_complete_lineage_carries_counts_and_the_posthog_job_id() -> None:
    lineage = operator_lineage(_target("BigQuery"), two_runs(), external_id="bf-1")
    (output,) = lineage.outputs
    stats = output.outputFacets["outputStatistics"]
    assert (stats.rowCount, stats.size) == (150, 5120)
    assert lineage.run_facets["externalQuery"].externalQueryId == "bf-1"
    assert lineage.run_facets["externalQuery"].source == NAMESPACE
    assert [d.name for d in lineage.inputs] == ["events"]
    blob = json.dumps([json.loads(_as_json(d)) for d in (*lineage.inputs, *lineage.outputs)])
    assert not any(secret in blob for secret in SECRETS)


def test_failure_lineage_names_the_datasets_without_counts() -> None:
    lineage = operator_lineage(_target("Postgres"))
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == EXPECTED_OUTPUTS["Postgres"]
    assert output.outputFacets == {}
    assert lineage.run_facets == {}


def test_importing_the_lineage_package_imports_no_openlineage() -> None:
    code = (
        "import sys, airflow_provider_posthog.lineage.assets, airflow_provider_posthog.lineage.openlineage;"
        "bad = sorted(m for m in sys.modules if 'openlineage' in m and not m.startswith('airflow_provider'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
