"""Export and backfill validation with PostHog's exact messages."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import S3_CONFIG, Api

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

BIGQUERY = {
    "project_id": "p",
    "dataset_id": "d",
    "private_key": "k",
    "private_key_id": "kid",
    "token_uri": "https://oauth2.googleapis.com/token",
    "client_email": "svc@example.com",
}
SNOWFLAKE = {"account": "a", "user": "u", "database": "d", "warehouse": "w", "schema": "s"}
POSTGRES = {"user": "u", "password": "p", "host": "db.example.com", "database": "d"}
REDSHIFT = {**POSTGRES, "host": "rs.example.com"}


def _create(api: Api, dtype: str, config: Any, **extra: Any) -> Any:
    body = {"name": "x", "interval": "hour", "destination": {"type": dtype, "config": config}, **extra}
    return api.post("", body)


def _error(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return response.json()


@pytest.mark.parametrize(
    ("dtype", "config"),
    [
        ("S3", S3_CONFIG),
        ("Snowflake", {**SNOWFLAKE, "password": "pw"}),
        ("Postgres", POSTGRES),
        ("Redshift", REDSHIFT),
        ("BigQuery", BIGQUERY),
        ("HTTP", {"url": "https://us.i.posthog.com/batch/", "token": "t"}),
        ("NoOp", {}),
    ],
)
def test_valid_configs_are_created(api: Api, dtype: str, config: dict[str, Any]) -> None:
    response = _create(api, dtype, config)
    assert response.status_code == 201, response.text


def test_config_type_unknown_null_missing(api: Api) -> None:
    wrong_type = _error(_create(api, "BigQuery", {**BIGQUERY, "project_id": 123}))
    assert wrong_type["detail"] == "Configuration has invalid type: got 'int', expected 'str'"
    assert wrong_type["type"] == "validation_error" and wrong_type["code"] == "invalid_input"
    unknown = _error(_create(api, "BigQuery", {**BIGQUERY, "hello": 1, "hello2": 2}))
    assert unknown["detail"] == "Configuration has unknown field/s: 'hello', 'hello2'"
    null = _error(_create(api, "BigQuery", {**BIGQUERY, "table_id": None}))
    assert null["detail"] == "Configuration has invalid type: got 'NoneType', expected 'str'"
    missing = _error(_create(api, "BigQuery", {k: v for k, v in BIGQUERY.items() if k != "dataset_id"}))
    assert missing["detail"] == "Configuration missing required field: 'dataset_id'"
    assert missing["attr"] == "destination__non_field_errors"


def test_string_scalars_are_coerced(api: Api) -> None:
    response = _create(api, "Postgres", {**POSTGRES, "port": "5432", "has_self_signed_cert": "false"})
    config = response.json()["destination"]["config"]
    assert config == {"host": "db.example.com", "database": "d", "port": 5432, "has_self_signed_cert": False}


def test_required_fields_and_enums(api: Api) -> None:
    missing_name = _error(api.post("", {"interval": "hour", "destination": {"type": "NoOp"}}))
    assert (missing_name["code"], missing_name["attr"], missing_name["detail"]) == (
        "required",
        "name",
        "This field is required.",
    )
    bad_interval = _error(_create(api, "NoOp", {}, interval="fortnight"))
    assert bad_interval["code"] == "invalid_choice" and bad_interval["attr"] == "interval"
    assert bad_interval["detail"] == '"fortnight" is not a valid choice.'
    null_interval = _error(_create(api, "NoOp", {}, interval=None))
    assert null_interval["detail"] == "This field may not be null."
    bad_model = _error(_create(api, "NoOp", {}, model="widgets"))
    assert bad_model["attr"] == "model" and bad_model["code"] == "invalid_choice"
    bad_type = _error(_create(api, "Kafka", {}))
    assert bad_type["attr"] == "destination__type"


def test_high_frequency_interval_needs_flag(api: Api, posthog_emulator: PostHogEmulator) -> None:
    response = _create(api, "NoOp", {}, interval="every 5 minutes")
    assert response.status_code == 403
    assert response.json()["detail"] == "Higher frequency batch exports are not enabled for this team."
    posthog_emulator.control.configure(feature_flags={"high-frequency-batch-exports"})
    assert _create(api, "NoOp", {}, interval="every 5 minutes").status_code == 201


def test_http_only_events_model(api: Api) -> None:
    error = _error(
        _create(api, "HTTP", {"url": "https://us.i.posthog.com/batch/", "token": "t"}, model="persons")
    )
    assert error["detail"] == "HTTP batch exports only support the events model" and error["attr"] is None


def test_hogql_query_normalised_into_schema(api: Api) -> None:
    response = _create(
        api, "NoOp", {}, hogql_query="SELECT   event,\n  properties.$browser AS browser FROM events"
    )
    assert response.status_code == 201, response.text
    schema = response.json()["schema"]
    assert schema["hogql_query"] == "SELECT event, properties.$browser AS browser FROM events"
    assert schema["fields"][1] == {"expression": "properties.$browser", "alias": "browser"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT", "Failed to parse query"),
        ("SELECT event,, FROM events", "Failed to parse query"),
        ("SELECT unknown_field FROM events", "Invalid HogQL query: Unable to resolve field: unknown_field"),
        ("SELECT event FROM events UNION ALL SELECT event FROM events", "UNIONs are not supported"),
        ("SELECT event FROM events JOIN persons ON 1 = 1", "JOINs are not supported"),
        ("SELECT event FROM persons", "Query must only SELECT FROM events"),
        ("SELECT event FROM (SELECT event FROM events)", "Subqueries or CTEs are not supported"),
    ],
)
def test_invalid_hogql(api: Api, query: str, message: str, docs_generation: None) -> None:
    assert _error(_create(api, "NoOp", {}, hogql_query=query))["detail"] == message


def test_snowflake_authentication(api: Api) -> None:
    no_password = _error(_create(api, "Snowflake", {**SNOWFLAKE, "authentication_type": "password"}))
    assert no_password["detail"] == "Password is required if authentication type is password"
    assert no_password["attr"] == "destination"
    no_key = _error(_create(api, "Snowflake", {**SNOWFLAKE, "authentication_type": "keypair"}))
    assert no_key["detail"] == "Private key is required if authentication type is key pair"
    ok = _create(api, "Snowflake", {**SNOWFLAKE, "authentication_type": "keypair", "private_key": "pem"})
    assert ok.status_code == 201
    assert (
        "private_key" not in ok.json()["destination"]["config"]
        and "user" not in ok.json()["destination"]["config"]
    )


COPY = {
    "s3_bucket": "b",
    "region_name": "us-east-1",
    "authorization": "default",
    "bucket_credentials": {"aws_access_key_id": "a", "aws_secret_access_key": "s"},
}


@pytest.mark.parametrize(
    ("config", "ok"),
    [
        ({"mode": "INSERT", "copy_inputs": {}}, True),
        ({"mode": "INSERT", "copy_inputs": None}, True),
        ({"mode": "COPY", "copy_inputs": COPY}, True),
        (
            {
                "mode": "COPY",
                "copy_inputs": {
                    **COPY,
                    "authorization": {"aws_access_key_id": "a", "aws_secret_access_key": "s"},
                },
            },
            True,
        ),
        ({"mode": "COPY"}, False),
        ({"mode": "COPY", "copy_inputs": {k: v for k, v in COPY.items() if k != "s3_bucket"}}, False),
        ({"mode": "COPY", "copy_inputs": {k: v for k, v in COPY.items() if k != "region_name"}}, False),
        ({"mode": "COPY", "copy_inputs": {**COPY, "bucket_credentials": {"aws_access_key_id": "a"}}}, False),
        ({"mode": "COPY", "copy_inputs": {**COPY, "bucket_credentials": {}}}, False),
        ({"mode": "COPY", "copy_inputs": {**COPY, "authorization": ""}}, False),
    ],
)
def test_redshift_copy(api: Api, config: dict[str, Any], ok: bool) -> None:
    response = _create(api, "Redshift", {**REDSHIFT, **config})
    if ok:
        assert response.status_code == 201, response.text
    else:
        assert "Missing required" in _error(response)["detail"]


@pytest.mark.parametrize(
    ("file_format", "compression", "message"),
    [
        ("JSONLines", None, None),
        ("JSONLines", "gzip", None),
        ("Parquet", None, None),
        ("Parquet", "gzip", None),
        ("Parquet", "brotli", None),
        ("Parquet", "zstd", None),
        (
            "JSONLines",
            "zstd",
            "Compression zstd is not supported for file format JSONLines. "
            "Supported compressions are ['gzip', 'brotli']",
        ),
        (
            "Parquet",
            "unknown",
            "Compression unknown is not supported for file format Parquet. "
            "Supported compressions are ['zstd', 'lz4', 'snappy', 'gzip', 'brotli']",
        ),
        (
            "unknown",
            None,
            "File format unknown is not supported. Supported file formats are ['Parquet', 'JSONLines']",
        ),
    ],
)
def test_s3_format_and_compression(
    api: Api, file_format: str, compression: str | None, message: str | None
) -> None:
    config: dict[str, Any] = {**S3_CONFIG, "file_format": file_format}
    if compression:
        config["compression"] = compression
    response = _create(api, "S3", config)
    if message is None:
        assert response.status_code == 201, response.text
    else:
        error = _error(response)
        assert error["detail"] == message and error["attr"] == "destination"


def test_databricks_flag_and_integration(api: Api, posthog_emulator: PostHogEmulator) -> None:
    config = {"http_path": "/sql", "catalog": "c", "schema": "s", "table_name": "t"}
    flag_off = _create(api, "Databricks", config)
    assert flag_off.status_code == 403
    assert flag_off.json()["detail"] == "The Databricks destination is not enabled for this team."
    posthog_emulator.control.configure(feature_flags={"databricks-batch-exports"})
    assert _create(api, "Databricks", config).json() == {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": "Integration is required for Databricks batch exports",
        "attr": "destination",
    }
    body = {
        "name": "x",
        "interval": "hour",
        "destination": {"type": "Databricks", "config": config, "integration": 999},
    }
    assert api.post("", body).json() == {
        "type": "validation_error",
        "code": "does_not_exist",
        "detail": 'Invalid pk "999" - object does not exist.',
        "attr": "destination__integration",
    }
    posthog_emulator.control.add_integration(7, "databricks")
    body["destination"]["integration"] = 7  # type: ignore[index]
    created = api.post("", body)
    assert created.status_code == 201 and created.json()["destination"]["integration"] == 7


# -- backfills ---------------------------------------------------------------------------------------------
def _backfill(api: Api, export_id: str, start: Any, end: Any) -> Any:
    return api.post(f"{export_id}/backfills", {"start_at": start, "end_at": end})


@pytest.mark.parametrize("field", ["start_at", "end_at"])
def test_backfill_not_a_date(api: Api, field: str) -> None:
    export = api.create_export()
    bounds = {
        "start_at": "2021-01-01T00:00:00+00:00",
        "end_at": "2021-01-02T00:00:00+00:00",
        field: "not a date",
    }
    error = _error(api.post(f"{export['id']}/backfills", bounds))
    assert error["detail"] == "Input not a date is not a valid ISO formatted datetime."
    assert error["attr"] is None and error["code"] == "invalid_input"


def test_backfill_naive(api: Api) -> None:
    export = api.create_export()
    error = _error(_backfill(api, export["id"], "2021-01-01T01:00:00", "2021-01-02T00:00:00+00:00"))
    assert error["detail"] == "Input 2021-01-01T01:00:00 is naive."


def test_backfill_end_in_future(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export()
    now = posthog_emulator.control.now()
    error = _error(
        _backfill(
            api,
            export["id"],
            (now - timedelta(hours=2)).isoformat(),
            (now + timedelta(minutes=30)).isoformat(),
        )
    )
    assert "is in the future" in error["detail"]


@pytest.mark.parametrize("end", ["2021-01-01T00:00:00+00:00", "2020-12-31T00:00:00+00:00"])
def test_backfill_start_not_before_end(api: Api, end: str, docs_generation: None) -> None:
    export = api.create_export()
    error = _error(_backfill(api, export["id"], "2021-01-01T00:00:00+00:00", end))
    assert error["detail"] == "The initial backfill datetime 'start_at' happens after 'end_at'"


def test_backfill_timezones_in_workflow_id(api: Api, docs_generation: None) -> None:
    export = api.create_export()
    response = _backfill(api, export["id"], "2021-01-01T00:00:00-05:00", "2021-10-01T00:00:00-04:00")
    assert response.status_code == 200
    assert response.json() == {
        "backfill_id": f"{export['id']}-Backfill-2021-01-01T05:00:00+00:00-2021-10-01T04:00:00+00:00"
    }


def test_legacy_backfill_action(api: Api, posthog_emulator: PostHogEmulator, docs_generation: None) -> None:
    export = api.create_export()
    response = api.post(
        f"{export['id']}/backfill", {"start_at": "2021-01-01T00:00:00Z", "end_at": "2021-01-01T02:00:00Z"}
    )
    assert response.status_code == 200 and "-Backfill-" in response.json()["backfill_id"]
    posthog_emulator.control.advance(30)
    assert api.get(f"{export['id']}/backfills").json()["results"][0]["status"] == "Completed"


def test_backfill_for_unknown_export(api: Api) -> None:
    response = _backfill(
        api, "00000000-0000-0000-0000-000000000000", "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z"
    )
    assert response.status_code == 404 and response.json()["detail"] == "BatchExport not found."


def test_docs_backfill_earliest_data(
    api: Api, posthog_emulator: PostHogEmulator, docs_generation: None
) -> None:
    control = posthog_emulator.control
    export = api.create_export(interval="day")
    control.configure(earliest_data_at="2021-01-02T00:10:00Z")
    assert _backfill(api, export["id"], "2021-01-01T00:00:00Z", "2021-01-03T00:00:00Z").status_code == 200
    control.advance(5)
    assert api.get(f"{export['id']}/backfills").json()["results"][0]["start_at"] == "2021-01-02T00:00:00Z"
    control.configure(earliest_data_at="2021-01-03T00:10:00Z")
    error = _error(_backfill(api, export["id"], "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z"))
    assert error["detail"] == (
        "The provided backfill date range contains no data. "
        "The earliest possible backfill start date is 2021-01-03 00:00:00"
    )
    control.configure(no_data=True)
    error = _error(_backfill(api, export["id"], "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z"))
    assert error["detail"] == "There is no data to backfill for this model."


def test_backfill_open_end_only_for_http_noop(api: Api, docs_generation: None) -> None:
    s3 = api.create_export()
    response = _backfill(api, s3["id"], "2021-01-01T00:00:00Z", None)
    assert response.status_code == 500 and response.json()["type"] == "server_error"
    noop = api.create_export(destination={"type": "NoOp", "config": {}})
    response = _backfill(api, noop["id"], "2021-01-01T00:00:00Z", None)
    assert response.status_code == 200
    assert response.json()["backfill_id"] == f"{noop['id']}-Backfill-2021-01-01T00:00:00+00:00-None"


def test_docs_too_many_concurrent_backfills(
    api: Api, posthog_emulator: PostHogEmulator, docs_generation: None
) -> None:
    control = posthog_emulator.control
    control.configure(max_concurrent_backfills=2)
    control.add_project(2)
    export = api.create_export()
    other_team = control.seed_export(project_id=2)
    for _ in range(5):
        control.seed_backfill(other_team["id"], "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z")
    first = control.seed_backfill(export["id"], "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z")
    control.seed_backfill(export["id"], "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z", status="Completed")
    assert _backfill(api, export["id"], "2021-01-01T00:00:00Z", "2021-01-01T01:00:00Z").status_code == 200
    response = _backfill(api, export["id"], "2021-01-01T00:00:00Z", "2021-01-01T01:00:00Z")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "too_many_concurrent_backfills" and body["type"] == "server_error"
    assert "This team already has 2 batch export backfills running" in body["detail"]
    control.set_backfill_status(first["id"], "Completed")
    assert _backfill(api, export["id"], "2021-01-01T01:00:00Z", "2021-01-01T02:00:00Z").status_code == 200
