"""Bad settings fail at construction naming the argument; bad connections fail at build naming the conn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_posthog.destinations import (
    AzureBlobDestination,
    BigQueryDestination,
    DatabricksDestination,
    HTTPDestination,
    PostgresDestination,
    RedshiftDestination,
    S3Destination,
    SnowflakeDestination,
)
from airflow_provider_posthog.exceptions import PostHogConfigError

from .cases import AWS, GCP_KEY

if TYPE_CHECKING:
    from collections.abc import Callable
    from unittest import mock

S3: dict[str, Any] = {"bucket_name": "b", "prefix": "p/"}
DBX: dict[str, Any] = {"catalog": "c", "schema": "s", "table_name": "t", "integration_id": 1}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: S3Destination(**{**S3, "bucket_name": ""}), "bucket_name is required"),
        (lambda: S3Destination(bucket_name="b", prefix=None), "prefix is required"),  # type: ignore[arg-type]
        (lambda: S3Destination(**S3, file_format="CSV"), r"file_format='CSV' is not allowed.*JSONLines"),
        (lambda: S3Destination(**S3, compression="zstd"), r"compression='zstd'.*'JSONLines'.*gzip"),
        (lambda: S3Destination(**S3, file_format="Parquet", compression="zip"), r"compression='zip'.*snappy"),
        (lambda: S3Destination(**S3, max_file_size_mb=0), "max_file_size_mb must be an integer >= 1"),
        (lambda: S3Destination(**S3, use_virtual_style_addressing="yes"), "use_virtual_style_addressing"),  # type: ignore[arg-type]
        (lambda: S3Destination(**S3, include_events="$pageview"), "include_events must be a list"),  # type: ignore[arg-type]
        (
            lambda: S3Destination(**S3, exclude_events=["ok", ""]),
            "exclude_events must be a list of non-empty",
        ),
        (lambda: S3Destination(**S3, aws_conn_id=""), "aws_conn_id is required"),
        (lambda: BigQueryDestination(dataset_id=""), "dataset_id is required"),
        (lambda: BigQueryDestination(dataset_id="d", use_json_type=1), "use_json_type"),  # type: ignore[arg-type]
        (lambda: SnowflakeDestination(account=""), "account is required"),
        (lambda: SnowflakeDestination(snowflake_conn_id=""), "snowflake_conn_id is required"),
        (lambda: PostgresDestination(table_name=""), "table_name is required"),
        (lambda: RedshiftDestination(mode="UPSERT"), r"mode='UPSERT' is not allowed.*INSERT.*COPY"),
        (lambda: RedshiftDestination(properties_data_type="json"), r"properties_data_type='json'.*super"),
        (lambda: RedshiftDestination(mode="COPY", copy_aws_conn_id="a"), "copy_s3_bucket"),
        (lambda: RedshiftDestination(mode="COPY", copy_s3_bucket="b"), "copy_aws_conn_id"),
        (lambda: RedshiftDestination(copy_s3_bucket="b"), "copy_\\* arguments need mode='COPY'"),
        (lambda: DatabricksDestination(**{**DBX, "integration_id": 0}), "integration_id is required"),
        (lambda: DatabricksDestination(**{**DBX, "catalog": ""}), "catalog is required"),
        (
            lambda: DatabricksDestination(**DBX, databricks_conn_id=None),
            "databricks_conn_id .*or give http_path",
        ),
        (lambda: AzureBlobDestination(container_name="c", integration_id="7"), "integration_id"),  # type: ignore[arg-type]
        (
            lambda: AzureBlobDestination(container_name="c", integration_id=7, file_format="csv"),
            "file_format",
        ),
        (lambda: HTTPDestination(url="eu.i.posthog.com/batch/", token_conn_id="t"), "url must be an http"),
        (lambda: HTTPDestination(url="https://eu.i.posthog.com/batch/", token_conn_id=""), "token_conn_id"),
    ],
)
def test_bad_settings_name_the_argument(
    make: Callable[[], Any], match: str, no_lookup: mock.MagicMock
) -> None:
    with pytest.raises(PostHogConfigError, match=match):
        make()
    assert no_lookup.call_count == 0


@pytest.mark.parametrize(
    ("make", "connections", "match"),
    [
        (lambda: S3Destination(**S3, aws_conn_id="nope"), {}, "aws_conn_id='nope': no Airflow connection"),
        (
            lambda: S3Destination(**S3, aws_conn_id="a"),
            {"a": {"conn_type": "aws", "login": "AKIAX1234567", "extra": {"region_name": "eu-west-1"}}},
            r"aws_conn_id='a' has no password \(AWS secret access key\)",
        ),
        (
            lambda: S3Destination(**S3, aws_conn_id="a"),
            {"a": {"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}},
            r"aws_conn_id='a' has no login \(AWS access key id\)",
        ),
        (
            lambda: S3Destination(**S3, aws_conn_id="a"),
            {"a": {**AWS, "extra": {"role_arn": "arn:aws:iam::1:role/x"}}},
            "sets extra 'role_arn'; PostHog cannot assume a role",
        ),
        (
            lambda: S3Destination(**S3, aws_conn_id="a"),
            {"a": {**AWS, "extra": {"region_name": "x", "aws_session_token": "tok-123456"}}},
            "aws_session_token",
        ),
        (
            lambda: S3Destination(**S3, aws_conn_id="a"),
            {"a": {**AWS, "extra": {}}},
            "region is required: pass region= or set extra 'region_name' on connection aws_conn_id='a'",
        ),
        (
            lambda: BigQueryDestination(dataset_id="d", gcp_conn_id="g"),
            {"g": {"conn_type": "google_cloud_platform", "extra": {"project": "p"}}},
            "gcp_conn_id='g' has no service account key",
        ),
        (
            lambda: BigQueryDestination(dataset_id="d", gcp_conn_id="g"),
            {"g": {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": "{not json"}}},
            "gcp_conn_id='g': the service account key is not a JSON object",
        ),
        (
            lambda: BigQueryDestination(dataset_id="d", gcp_conn_id="g"),
            {
                "g": {
                    "conn_type": "google_cloud_platform",
                    "extra": {"keyfile_dict": {**GCP_KEY, "private_key": ""}},
                }
            },
            "gcp_conn_id='g' has no 'private_key' in its service account key",
        ),
        (
            lambda: SnowflakeDestination(snowflake_conn_id="s"),
            {
                "s": {
                    "conn_type": "snowflake",
                    "login": "u",
                    "extra": {"account": "a", "warehouse": "w", "database": "d"},
                    "schema": "x",
                }
            },
            r"snowflake_conn_id='s' has no password \(nor extra 'private_key_content'",
        ),
        (
            lambda: SnowflakeDestination(snowflake_conn_id="s"),
            {
                "s": {
                    "conn_type": "snowflake",
                    "login": "u",
                    "password": "pw-123456",
                    "extra": {"account": "a"},
                }
            },
            r"database is required.*the extra 'database' of connection snowflake_conn_id='s'",
        ),
        (
            lambda: SnowflakeDestination(snowflake_conn_id="s"),
            {"s": {"conn_type": "snowflake", "login": "u", "extra": {"authenticator": "oauth"}}},
            "authenticator 'oauth'; PostHog supports only password or key-pair",
        ),
        (
            lambda: PostgresDestination(postgres_conn_id="p"),
            {"p": {"conn_type": "postgres", "host": "h", "login": "u", "schema": "db"}},
            "postgres_conn_id='p' has no password",
        ),
        (
            lambda: PostgresDestination(postgres_conn_id="p"),
            {"p": {"conn_type": "postgres", "host": "h", "login": "u", "password": "pw-123456"}},
            r"database is required.*postgres_conn_id='p'",
        ),
        (
            lambda: RedshiftDestination(redshift_conn_id="r"),
            {
                "r": {
                    "conn_type": "redshift",
                    "host": "h",
                    "login": "u",
                    "schema": "db",
                    "extra": {"iam": True},
                }
            },
            "redshift_conn_id='r' has no password; IAM authentication cannot be handed to PostHog",
        ),
        (
            lambda: RedshiftDestination(
                redshift_conn_id="r", mode="COPY", copy_s3_bucket="b", copy_aws_conn_id="a"
            ),
            {
                "r": {
                    "conn_type": "redshift",
                    "host": "h",
                    "login": "u",
                    "password": "pw-123456",
                    "schema": "db",
                },
                "a": {**AWS, "extra": {}},
            },
            "copy_region_name is required",
        ),
        (
            lambda: DatabricksDestination(**DBX, databricks_conn_id="d"),
            {"d": {"conn_type": "databricks", "host": "h", "password": "dapi-123456"}},
            "databricks_conn_id='d' has no extra 'http_path'",
        ),
        (
            lambda: HTTPDestination(url="https://eu.i.posthog.com/batch/", token_conn_id="t"),
            {"t": {"conn_type": "http"}},
            r"token_conn_id='t' has no password \(the project API key\)",
        ),
    ],
)
def test_connection_problems_name_the_connection_and_field(
    make: Callable[[], Any],
    connections: dict[str, dict[str, Any]],
    match: str,
    set_conn: Callable[..., None],
) -> None:
    for conn_id, fields in connections.items():
        set_conn(conn_id, **fields)
    builder = make()  # constructing is fine: the connection is only read by build()
    with pytest.raises(PostHogConfigError, match=match) as info:
        builder.build()
    for fields in connections.values():
        for value in (fields.get("password"), fields.get("login")):
            if value and len(value) > 4:
                assert value not in str(info.value)


def test_databricks_with_http_path_reads_no_connection(no_lookup: mock.MagicMock) -> None:
    destination = DatabricksDestination(**DBX, http_path="/sql/1.0/warehouses/x").build()
    assert destination["config"]["http_path"] == "/sql/1.0/warehouses/x"
    assert destination["integration_id"] == 1
    assert no_lookup.call_count == 0


def test_snowflake_key_file_on_the_worker(set_conn: Callable[..., None], tmp_path: Any) -> None:
    from .cases import PEM

    key_file = tmp_path / "rsa_key.p8"
    key_file.write_text(PEM)
    set_conn(
        "s",
        conn_type="snowflake",
        login="KEY_USER",
        schema="RAW",
        extra={"account": "a1", "warehouse": "w", "database": "d", "private_key_file": str(key_file)},
    )
    config = SnowflakeDestination(snowflake_conn_id="s").build()["config"]
    assert config["authentication_type"] == "keypair"
    assert config["private_key"] == PEM
    assert "private_key_passphrase" not in config  # an unencrypted key: no password on the connection
    assert "password" not in config
