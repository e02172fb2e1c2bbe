"""One table of builders, the connections they read and the exact PostHog destination they must build."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.destinations import (
    AzureBlobDestination,
    BigQueryDestination,
    DatabricksDestination,
    DestinationBuilder,
    HTTPDestination,
    PostgresDestination,
    RedshiftDestination,
    S3Destination,
    SnowflakeDestination,
)

if TYPE_CHECKING:
    from collections.abc import Callable

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDtestkeyline1\n"
    "q9Zk3YtestkeylineTWOxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\n"
    "-----END PRIVATE KEY-----\n"
)
GCP_KEY = {
    "type": "service_account",
    "project_id": "key-project",
    "private_key_id": "3f9c2d1e0b8a7f6e5d4c3b2a1908f7e6d5c4b3a2",
    "private_key": PEM,
    "client_email": "exporter@key-project.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
    "client_id": "109876543210987654321",
}
AWS = {
    "conn_type": "aws",
    "login": "AKIAIOSFODNN7EXAMPLE",
    "password": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "extra": {"region_name": "eu-central-1"},
}
AWS_KEYS = {
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


@dataclass
class Case:
    id: str
    make: Callable[[], DestinationBuilder]
    expected: dict[str, Any]
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)


CASES: list[Case] = [
    Case(
        "s3",
        lambda: S3Destination(
            bucket_name="analytics-raw",
            prefix="posthog/events/",
            aws_conn_id="aws_test",
            file_format="Parquet",
            compression="zstd",
            max_file_size_mb=256,
            include_events=["$pageview", "signup"],
        ),
        {
            "type": "S3",
            "config": {
                "bucket_name": "analytics-raw",
                "region": "eu-central-1",
                "prefix": "posthog/events/",
                **AWS_KEYS,
                "file_format": "Parquet",
                "compression": "zstd",
                "max_file_size_mb": 256,
                "include_events": ["$pageview", "signup"],
            },
        },
        {"aws_test": AWS},
    ),
    Case(
        "s3-compatible-extra-keys",
        lambda: S3Destination(
            bucket_name="lake",
            prefix="",
            region="us-east-1",
            aws_conn_id="minio",
            use_virtual_style_addressing=False,
            exclude_events=["$feature_flag_called"],
        ),
        {
            "type": "S3",
            "config": {
                "bucket_name": "lake",
                "region": "us-east-1",
                "prefix": "",
                "aws_access_key_id": "minio-access-key-01",
                "aws_secret_access_key": "minio-secret-key-0123456789",
                "endpoint_url": "http://minio.internal:9000",
                "use_virtual_style_addressing": False,
                "exclude_events": ["$feature_flag_called"],
            },
        },
        {
            "minio": {
                "conn_type": "aws",
                "extra": {
                    "aws_access_key_id": "minio-access-key-01",
                    "aws_secret_access_key": "minio-secret-key-0123456789",
                    "endpoint_url": "http://ignored.example:9000",
                    "service_config": {"s3": {"endpoint_url": "http://minio.internal:9000"}},
                },
            }
        },
    ),
    Case(
        "bigquery-prefixed-json-string",
        lambda: BigQueryDestination(dataset_id="posthog", table_id="events_raw", gcp_conn_id="gcp_test"),
        {
            "type": "BigQuery",
            "config": {
                "project_id": "conn-project",
                "dataset_id": "posthog",
                "private_key": GCP_KEY["private_key"],
                "private_key_id": GCP_KEY["private_key_id"],
                "client_email": GCP_KEY["client_email"],
                "token_uri": GCP_KEY["token_uri"],
                "table_id": "events_raw",
            },
        },
        {
            "gcp_test": {
                "conn_type": "google_cloud_platform",
                "extra": {
                    "extra__google_cloud_platform__keyfile_dict": json.dumps(GCP_KEY),
                    "extra__google_cloud_platform__project": "conn-project",
                },
            }
        },
    ),
    Case(
        "bigquery-dict-project-from-key",
        lambda: BigQueryDestination(dataset_id="posthog", use_json_type=True),
        {
            "type": "BigQuery",
            "config": {
                "project_id": "key-project",
                "dataset_id": "posthog",
                "private_key": GCP_KEY["private_key"],
                "private_key_id": GCP_KEY["private_key_id"],
                "client_email": GCP_KEY["client_email"],
                "token_uri": GCP_KEY["token_uri"],
                "use_json_type": True,
            },
        },
        {"google_cloud_default": {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": GCP_KEY}}},
    ),
    Case(
        "snowflake-password",
        lambda: SnowflakeDestination(table_name="POSTHOG_EVENTS", snowflake_conn_id="sf_test"),
        {
            "type": "Snowflake",
            "config": {
                "account": "xy12345.eu-west-1",
                "user": "POSTHOG_EXPORTER",
                "database": "ANALYTICS",
                "warehouse": "LOAD_WH",
                "schema": "RAW",
                "role": "LOADER",
                "table_name": "POSTHOG_EVENTS",
                "authentication_type": "password",
                "password": "snowflake-pass-7731",
            },
        },
        {
            "sf_test": {
                "conn_type": "snowflake",
                "login": "POSTHOG_EXPORTER",
                "password": "snowflake-pass-7731",
                "schema": "RAW",
                "extra": {
                    "account": "xy12345",
                    "region": "eu-west-1",
                    "warehouse": "LOAD_WH",
                    "extra__snowflake__database": "ANALYTICS",
                    "role": "LOADER",
                },
            }
        },
    ),
    Case(
        "snowflake-keypair-base64",
        lambda: SnowflakeDestination(database="OTHER_DB", schema="POSTHOG", warehouse="WH2"),
        {
            "type": "Snowflake",
            "config": {
                "account": "org-acct",
                "user": "POSTHOG_KEY_USER",
                "database": "OTHER_DB",
                "warehouse": "WH2",
                "schema": "POSTHOG",
                "authentication_type": "keypair",
                "private_key": PEM,
                "private_key_passphrase": "key-passphrase-5512",
            },
        },
        {
            "snowflake_default": {
                "conn_type": "snowflake",
                "login": "POSTHOG_KEY_USER",
                "password": "key-passphrase-5512",
                "extra": {
                    "account": "org-acct",
                    "private_key_content": base64.b64encode(PEM.encode()).decode(),
                },
            }
        },
    ),
    Case(
        "postgres",
        lambda: PostgresDestination(
            schema="posthog", table_name="events_raw", postgres_conn_id="pg_test", has_self_signed_cert=True
        ),
        {
            "type": "Postgres",
            "config": {
                "user": "posthog_writer",
                "password": "pg-pass-99120",
                "host": "db.example.com",
                "database": "analytics",
                "port": 5433,
                "schema": "posthog",
                "table_name": "events_raw",
                "has_self_signed_cert": True,
            },
        },
        {
            "pg_test": {
                "conn_type": "postgres",
                "host": "db.example.com",
                "port": 5433,
                "login": "posthog_writer",
                "password": "pg-pass-99120",
                "schema": "analytics",
            }
        },
    ),
    Case(
        "redshift-insert",
        lambda: RedshiftDestination(database="dev", properties_data_type="super"),
        {
            "type": "Redshift",
            "config": {
                "user": "rs_loader",
                "password": "rs-pass-440011",
                "host": "cluster.abc.eu-west-1.redshift.amazonaws.com",
                "database": "dev",
                "port": 5439,
                "properties_data_type": "super",
            },
        },
        {
            "redshift_default": {
                "conn_type": "redshift",
                "host": "cluster.abc.eu-west-1.redshift.amazonaws.com",
                "port": 5439,
                "login": "rs_loader",
                "password": "rs-pass-440011",
                "schema": "ignored_db",
            }
        },
    ),
    Case(
        "redshift-copy",
        lambda: RedshiftDestination(
            redshift_conn_id="rs_test",
            mode="COPY",
            copy_s3_bucket="staging",
            copy_s3_key_prefix="posthog/",
            copy_aws_conn_id="aws_test",
            copy_iam_role_arn="arn:aws:iam::123456789012:role/redshift-copy",
        ),
        {
            "type": "Redshift",
            "config": {
                "user": "rs_loader",
                "password": "rs-pass-440011",
                "host": "cluster.example.com",
                "database": "analytics",
                "mode": "COPY",
                "copy_inputs": {
                    "s3_bucket": "staging",
                    "region_name": "eu-central-1",
                    "s3_key_prefix": "posthog/",
                    "authorization": "arn:aws:iam::123456789012:role/redshift-copy",
                    "bucket_credentials": AWS_KEYS,
                },
            },
        },
        {
            "rs_test": {
                "conn_type": "redshift",
                "host": "cluster.example.com",
                "login": "rs_loader",
                "password": "rs-pass-440011",
                "schema": "analytics",
            },
            "aws_test": AWS,
        },
    ),
    Case(
        "databricks",
        lambda: DatabricksDestination(
            catalog="main", schema="posthog", table_name="events", integration_id=42, use_variant_type=False
        ),
        {
            "type": "Databricks",
            "config": {
                "http_path": "/sql/1.0/warehouses/abc123",
                "catalog": "main",
                "schema": "posthog",
                "table_name": "events",
                "use_variant_type": False,
            },
            "integration_id": 42,
        },
        {
            "databricks_default": {
                "conn_type": "databricks",
                "host": "adb-1.azuredatabricks.net",
                "password": "dapi-not-sent-to-posthog-123",
                "extra": {"http_path": "/sql/1.0/warehouses/abc123"},
            }
        },
    ),
    Case(
        "azure-blob",
        lambda: AzureBlobDestination(
            container_name="posthog",
            integration_id=7,
            prefix="exports/",
            file_format="JSONLines",
            compression="gzip",
        ),
        {
            "type": "AzureBlob",
            "config": {
                "container_name": "posthog",
                "prefix": "exports/",
                "file_format": "JSONLines",
                "compression": "gzip",
            },
            "integration_id": 7,
        },
    ),
    Case(
        "http",
        lambda: HTTPDestination(url="https://eu.i.posthog.com/batch/", token_conn_id="posthog_target"),
        {
            "type": "HTTP",
            "config": {"url": "https://eu.i.posthog.com/batch/", "token": "phc_targetProjectKey123"},
        },
        {"posthog_target": {"conn_type": "http", "password": "phc_targetProjectKey123"}},
    ),
]
