"""Destinations as PostHog returns them (secret keys already stripped), shared by the lineage tests."""

from __future__ import annotations

from typing import Any

from airflow_provider_posthog.api.models import BatchExportRun

HOST = "https://us.posthog.com"
PROJECT = 12345
EXPORT_ID = "0190b7c2-aaaa-bbbb-cccc-000000000001"
POSTHOG_EXPORT_URI = f"posthog://us.posthog.com/project/{PROJECT}/batch_exports/{EXPORT_ID}"

#: Secret-looking values that must never reach a URI, an extra or a lineage event.
SECRETS = ("AKIASECRET", "s3cr3t-value", "-----BEGIN PRIVATE KEY-----", "pg-password", "http-token")

DESTINATIONS: dict[str, dict[str, Any]] = {
    "S3": {
        "type": "S3",
        "config": {
            "bucket_name": "analytics-lake",
            "region": "eu-west-1",
            "prefix": "posthog/events/{year}/{month}/",
            "file_format": "Parquet",
            # A response never carries these; the lineage code must ignore them even if one slipped in.
            "aws_access_key_id": "AKIASECRET",
            "aws_secret_access_key": "s3cr3t-value",
        },
    },
    "AwsS3": {"type": "AwsS3", "config": {"bucket_name": "b2", "region": "us-east-1", "prefix": "exports/"}},
    "BigQuery": {
        "type": "BigQuery",
        "config": {
            "project_id": "acme-analytics",
            "dataset_id": "posthog",
            "table_id": "events_raw",
            "private_key": "-----BEGIN PRIVATE KEY-----",
        },
    },
    "Postgres": {
        "type": "Postgres",
        "config": {
            "host": "DB.Example.com",
            "database": "warehouse",
            "schema": "raw",
            "table_name": "posthog_events",
            "password": "pg-password",
        },
    },
    "Redshift": {
        "type": "Redshift",
        "config": {
            "host": "examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com",
            "port": 5439,
            "database": "dev",
            "schema": "posthog",
            "table_name": "events",
        },
    },
    "Snowflake": {
        "type": "Snowflake",
        "config": {
            "account": "MYORG-MYACCOUNT",
            "database": "ANALYTICS",
            "schema": "POSTHOG",
            "warehouse": "COMPUTE_WH",
            "table_name": "EVENTS",
        },
    },
    "Databricks": {
        "type": "Databricks",
        "config": {
            "http_path": "/sql/1.0/warehouses/abc",
            "catalog": "main",
            "schema": "posthog",
            "table_name": "events",
        },
        "integration": 7,
    },
    "HTTP": {"type": "HTTP", "config": {"url": "https://us.i.posthog.com/batch/", "token": "http-token"}},
    "NoOp": {"type": "NoOp", "config": {}},
}


def run(
    run_id: str, start: str | None, end: str, records: int | None, size: int | None = None
) -> BatchExportRun:
    """A completed run as the client parses it from PostHog's JSON."""
    return BatchExportRun.from_api(
        {
            "id": run_id,
            "status": "Completed",
            "data_interval_start": start,
            "data_interval_end": end,
            "records_completed": records,
            "bytes_exported": size,
            "batch_export": EXPORT_ID,
            "backfill": "bf-1",
        }
    )


def two_runs() -> list[BatchExportRun]:
    return [
        run("run-1", "2024-05-01T00:00:00Z", "2024-05-01T01:00:00Z", 120, 4096),
        run("run-2", "2024-05-01T01:00:00Z", "2024-05-01T02:00:00Z", 30, 1024),
    ]
