"""Asset URIs per destination, the event's extra, and the alias guard (no metadata DB needed)."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from lineage_cases import DESTINATIONS, EXPORT_ID, HOST, POSTHOG_EXPORT_URI, PROJECT, SECRETS, run, two_runs

from airflow_provider_posthog.lineage.assets import (
    asset_event_extra,
    default_alias_name,
    destination_asset_uri,
    emit_asset_event,
    make_asset,
    posthog_export_uri,
    with_alias_outlet,
)
from airflow_provider_posthog.lineage.target import ExportTarget, stable_s3_prefix

EXPECTED_URIS = {
    "S3": "s3://analytics-lake/posthog/events",
    "AwsS3": "s3://b2/exports",
    "BigQuery": "bigquery://acme-analytics/posthog/events_raw",
    "Postgres": "postgres://db.example.com:5432/warehouse/raw/posthog_events",
    "Redshift": "redshift://examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com:5439/dev/posthog/events",
    "Snowflake": "snowflake://myorg-myaccount/ANALYTICS/POSTHOG/EVENTS",
    # PostHog keeps the Databricks workspace host in an integration it never returns.
    "Databricks": POSTHOG_EXPORT_URI,
    "HTTP": POSTHOG_EXPORT_URI,
    "NoOp": POSTHOG_EXPORT_URI,
}


def _uri(destination: dict[str, Any]) -> str:
    return destination_asset_uri(destination, posthog_host=HOST, project_id=PROJECT, export_id=EXPORT_ID)


@pytest.mark.parametrize("kind", sorted(EXPECTED_URIS), ids=sorted(EXPECTED_URIS))
def test_uri_per_destination_is_stable_under_airflows_normalisation(kind: str) -> None:
    uri = _uri(DESTINATIONS[kind])
    assert uri == EXPECTED_URIS[kind]
    # Airflow accepts it and leaves it unchanged, whether or not the scheme's provider is installed.
    asset = make_asset(uri)
    assert (asset.name, asset.uri) == (uri, uri)
    assert not any(secret in uri for secret in SECRETS)


# The providers' normalisers (not installed here) demand these shapes; a URI that broke them would be
# rejected or rewritten once the provider is installed, and stop matching consumers' Asset(...) declarations.
PROVIDER_RULES = {
    "postgres": (4, True),  # /database/schema/table, explicit port
    "redshift": (4, True),
    "snowflake": (4, False),
    "bigquery": (3, False),  # /dataset/table under the project
    "databricks": (4, False),
}


@pytest.mark.parametrize("kind", ["Postgres", "Redshift", "Snowflake", "BigQuery"])
def test_uri_already_satisfies_the_providers_normaliser(kind: str) -> None:
    parts = urllib.parse.urlsplit(_uri(DESTINATIONS[kind]))
    segments, needs_port = PROVIDER_RULES[parts.scheme]
    assert parts.netloc
    assert len(parts.path.split("/")) == segments
    assert all(parts.path.split("/")[1:])
    assert (parts.port is not None) if needs_port else True


def test_databricks_with_a_workspace_host_uses_the_providers_uri() -> None:
    destination = {
        "type": "Databricks",
        "config": {
            **DESTINATIONS["Databricks"]["config"],
            "server_hostname": "https://Dbc-1.cloud.databricks.com/",
        },
    }
    assert _uri(destination) == "databricks://dbc-1.cloud.databricks.com/main/posthog/events"


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        (
            {"type": "Postgres", "config": {"host": "db:6543", "database": "d"}},
            "postgres://db:6543/d/public/events",
        ),
        (
            {"type": "Postgres", "config": {"host": "db", "port": "5433", "database": "d"}},
            "postgres://db:5433/d/public/events",
        ),
        (
            {"type": "Redshift", "config": {"host": "r.example", "database": "d"}},
            "redshift://r.example:5439/d/public/events",
        ),
        ({"type": "BigQuery", "config": {"project_id": "p", "dataset_id": "ds"}}, "bigquery://p/ds/events"),
        ({"type": "S3", "config": {"bucket_name": "b", "prefix": "{year}/{month}"}}, "s3://b"),
        ({"type": "S3", "config": {"bucket_name": "b", "prefix": "my data/x"}}, "s3://b/my%20data/x"),
        # Newer PostHog moves hosts, accounts and projects into integrations: no identity, no system URI.
        (
            {"type": "Postgres", "config": {"database": "d", "schema": "s", "table_name": "t"}},
            POSTHOG_EXPORT_URI,
        ),
        (
            {"type": "Snowflake", "config": {"database": "d", "schema": "s", "warehouse": "w"}},
            POSTHOG_EXPORT_URI,
        ),
        ({"type": "BigQuery", "config": {"dataset_id": "ds", "table_id": "t"}}, POSTHOG_EXPORT_URI),
        ({"type": "AzureBlob", "config": {"container_name": "c"}}, POSTHOG_EXPORT_URI),
        ({"type": "S3", "config": None}, POSTHOG_EXPORT_URI),
        ({}, POSTHOG_EXPORT_URI),
    ],
    ids=[
        "pg-port-in-host",
        "pg-port-as-text",
        "redshift-default-port",
        "bq-default-table",
        "s3-all-template",
        "s3-space",
        "pg-integration",
        "snowflake-integration",
        "bq-integration",
        "azure",
        "no-config",
        "no-destination",
    ],
)
def test_uri_edge_cases(destination: dict[str, Any], expected: str) -> None:
    assert _uri(destination) == expected
    make_asset(expected)


@pytest.mark.parametrize(
    ("prefix", "stable"),
    [
        ("", ""),
        ("/a/b/", "a/b"),
        ("a/b/{year}-{month}/", "a/b"),
        ("a/events-{table}/", "a"),
        ("{table}/x", ""),
        ("plain", "plain"),
    ],
)
def test_stable_s3_prefix(prefix: str, stable: str) -> None:
    assert stable_s3_prefix(prefix) == stable


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://us.posthog.com", "posthog://us.posthog.com/project/1/batch_exports/e"),
        ("https://EU.posthog.com/", "posthog://eu.posthog.com/project/1/batch_exports/e"),
        ("http://127.0.0.1:8000", "posthog://127.0.0.1:8000/project/1/batch_exports/e"),
        (
            "https://ph.example.com/analytics/api",
            "posthog://ph.example.com/analytics/project/1/batch_exports/e",
        ),
        ("eu.posthog.com", "posthog://eu.posthog.com/project/1/batch_exports/e"),
    ],
)
def test_posthog_uri_names_host_project_and_export(host: str, expected: str) -> None:
    assert posthog_export_uri(host, 1, "e") == expected
    assert make_asset(expected).uri == expected


def _target(kind: str = "S3", model: str = "events") -> ExportTarget:
    data = {"id": EXPORT_ID, "model": model, "destination": DESTINATIONS[kind]}
    return ExportTarget.from_api(data, posthog_host=HOST, project_id=PROJECT)


def test_target_keeps_no_credential_even_if_the_response_had_one() -> None:
    for kind in DESTINATIONS:
        target = _target(kind)
        assert not any(secret in json.dumps(target.destination) for secret in SECRETS), kind


def test_extra_carries_ids_intervals_and_counts() -> None:
    extra = asset_event_extra(_target(), two_runs(), backfill_id="bf-1")
    assert extra == {
        "posthog_project_id": "12345",
        "batch_export_id": EXPORT_ID,
        "destination_type": "S3",
        "model": "events",
        "backfill_id": "bf-1",
        "run_ids": ["run-1", "run-2"],
        "intervals": [
            {"start": "2024-05-01T00:00:00+00:00", "end": "2024-05-01T01:00:00+00:00"},
            {"start": "2024-05-01T01:00:00+00:00", "end": "2024-05-01T02:00:00+00:00"},
        ],
        "data_interval_start": "2024-05-01T00:00:00+00:00",
        "data_interval_end": "2024-05-01T02:00:00+00:00",
        "records_completed": 150,
        "bytes_exported": 5120,
    }
    assert json.loads(json.dumps(extra)) == extra
    assert not any(secret in json.dumps(extra) for secret in SECRETS)


def test_extra_says_unknown_counts_are_unknown_not_zero() -> None:
    runs = [run("r", None, "2024-05-01T01:00:00Z", None)]
    extra = asset_event_extra(_target(), runs)
    assert extra["records_completed"] is None and extra["bytes_exported"] is None
    assert extra["intervals"] == [{"start": None, "end": "2024-05-01T01:00:00+00:00"}]
    assert extra["data_interval_start"] is None
    assert extra["backfill_id"] is None


def test_alias_name_is_known_at_parse_time() -> None:
    assert default_alias_name("dag", "task") == "posthog-batch-export:dag.task"
    assert default_alias_name(None, "task") == "posthog-batch-export:task"


def test_with_alias_outlet_appends_once_and_keeps_user_outlets() -> None:
    from airflow.sdk import Asset, AssetAlias

    mine = Asset("s3://other/x")
    assert with_alias_outlet(None, "a") == [AssetAlias("a")]
    assert with_alias_outlet(mine, "a") == [mine, AssetAlias("a")]
    assert with_alias_outlet([mine, AssetAlias("a")], "a") == [mine, AssetAlias("a")]


class _Task:
    task_id = "t"

    def __init__(self, outlets: list[Any]) -> None:
        self.outlets = outlets


def test_emit_refuses_an_alias_the_task_does_not_declare() -> None:
    """Airflow would drop the event silently; failing loudly is the only way the user learns."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    context: Any = {"task": _Task([]), "outlet_events": OutletEventAccessors()}
    with pytest.raises(ValueError, match="asset_alias 'a' is not among the outlets of task 't'"):
        emit_asset_event(context, "a", "s3://b/p", {})


def test_emit_records_the_event_on_the_alias() -> None:
    from airflow.sdk import AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors

    events = OutletEventAccessors()
    context: Any = {"task": _Task([AssetAlias("a")]), "outlet_events": events}
    asset = emit_asset_event(context, "a", "s3://b/p", {"k": 1})
    (alias_event,) = events[AssetAlias("a")].asset_alias_events
    assert alias_event.source_alias_name == "a"
    assert (alias_event.dest_asset_key.name, alias_event.dest_asset_key.uri) == (asset.name, "s3://b/p")
    assert alias_event.extra == {"k": 1}
