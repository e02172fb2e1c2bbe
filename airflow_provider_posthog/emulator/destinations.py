"""Destination config schemas: keys, types, required keys and secret keys per destination type.

Written from PostHog's public source and docs alone (not shared with the client side), so a misreading on
one side is caught by the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ApiError, permission_denied, validation


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "str" | "int" | "bool" | "dict" | "list" | "any"
    required: bool = False
    nullable: bool = False


def _f(name: str, kind: str = "str", *, req: bool = False, null: bool = False) -> Field:
    return Field(name, kind, req, null)


_BASE = [_f("exclude_events", "list", null=True), _f("include_events", "list", null=True)]

_S3 = [
    _f("bucket_name", req=True),
    _f("region", req=True),
    _f("prefix", req=True),
    _f("aws_access_key_id", null=True),
    _f("aws_secret_access_key", null=True),
    _f("compression", null=True),
    _f("encryption", null=True),
    _f("kms_key_id", null=True),
    _f("endpoint_url", null=True),
    _f("file_format"),
    _f("max_file_size_mb", "int", null=True),
    _f("use_virtual_style_addressing", "bool"),
]

SCHEMAS: dict[str, list[Field]] = {
    "S3": _S3,
    "Snowflake": [
        _f("account", req=True),
        _f("user", req=True),
        _f("database", req=True),
        _f("warehouse", req=True),
        _f("schema", req=True),
        _f("table_name"),
        _f("authentication_type"),
        _f("password", null=True),
        _f("private_key", null=True),
        _f("private_key_passphrase", null=True),
        _f("role", null=True),
    ],
    "Postgres": [
        _f("user", req=True),
        _f("password", req=True),
        _f("host", req=True),
        _f("database", req=True),
        _f("schema"),
        _f("table_name"),
        _f("port", "int"),
        _f("has_self_signed_cert", "bool"),
    ],
    "Redshift": [
        _f("user", req=True),
        _f("password", req=True),
        _f("host", req=True),
        _f("database", req=True),
        _f("schema"),
        _f("table_name"),
        _f("port", "int"),
        _f("properties_data_type"),
        _f("mode"),
        _f("copy_inputs", "dict", null=True),
    ],
    "BigQuery": [
        _f("project_id", req=True),
        _f("dataset_id", req=True),
        _f("private_key", req=True),
        _f("private_key_id", req=True),
        _f("token_uri", req=True),
        _f("client_email", req=True),
        _f("table_id"),
        _f("use_json_type", "bool"),
    ],
    "Databricks": [
        _f("http_path", req=True),
        _f("catalog", req=True),
        _f("schema", req=True),
        _f("table_name", req=True),
        _f("use_variant_type", "bool"),
        _f("use_automatic_schema_evolution", "bool"),
    ],
    "AzureBlob": [
        _f("container_name", req=True),
        _f("prefix"),
        _f("compression", null=True),
        _f("file_format"),
        _f("max_file_size_mb", "int", null=True),
    ],
    "HTTP": [_f("url", req=True), _f("token", req=True)],
    "Workflows": [_f("hog_function_id", req=True)],
    "NoOp": [_f("arg")],
    # New generation: integration-based S3 flavours.
    "AwsS3": [
        _f("bucket_name", req=True),
        _f("region", req=True),
        _f("prefix", req=True),
        _f("compression", null=True),
        _f("file_format"),
        _f("max_file_size_mb", "int", null=True),
        _f("legacy_parquet_extension", "bool"),
        _f("encryption", null=True),
        _f("kms_key_id", null=True),
    ],
    "S3Compatible": [
        _f("bucket_name", req=True),
        _f("region", req=True),
        _f("prefix", req=True),
        _f("compression", null=True),
        _f("file_format"),
        _f("max_file_size_mb", "int", null=True),
        _f("legacy_parquet_extension", "bool"),
        _f("use_virtual_style_addressing", "bool"),
    ],
}

DOCS_TYPES = (
    "S3",
    "Snowflake",
    "Postgres",
    "Redshift",
    "BigQuery",
    "Databricks",
    "AzureBlob",
    "Workflows",
    "HTTP",
    "NoOp",
)
NEW_TYPES = (*DOCS_TYPES, "AwsS3", "S3Compatible")

SECRET_FIELDS: dict[str, frozenset[str]] = {
    "S3": frozenset({"aws_access_key_id", "aws_secret_access_key"}),
    "AwsS3": frozenset({"aws_access_key_id", "aws_secret_access_key"}),
    "S3Compatible": frozenset({"aws_access_key_id", "aws_secret_access_key"}),
    "Snowflake": frozenset({"user", "password", "private_key", "private_key_passphrase"}),
    "Postgres": frozenset({"user", "password"}),
    "Redshift": frozenset({"user", "password", "aws_access_key_id", "aws_secret_access_key"}),
    "BigQuery": frozenset({"private_key", "private_key_id", "client_email", "token_uri"}),
    "HTTP": frozenset({"token"}),
}

FILE_FORMATS = ["Parquet", "JSONLines"]
COMPRESSIONS = {"Parquet": ["zstd", "lz4", "snappy", "gzip", "brotli"], "JSONLines": ["gzip", "brotli"]}
_TRUE = {"y", "yes", "t", "true", "on", "1"}
_PY_TYPE = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list}


def strip_secrets(destination_type: str, config: Any) -> Any:
    """Remove secret keys at any nesting depth; parent dicts stay (possibly ``{}``)."""
    secrets = SECRET_FIELDS.get(destination_type, frozenset())
    if not secrets:
        return _copy(config)
    return _strip(config, secrets)


def _strip(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, secrets) for k, v in value.items() if k not in secrets}
    if isinstance(value, list):
        return [_strip(v, secrets) for v in value]
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _config_error(detail: str) -> ApiError:
    return validation(detail, "destination__non_field_errors")


def validate_config(destination_type: str, config: dict[str, Any], *, check_required: bool) -> dict[str, Any]:
    """Unknown keys, then missing required keys, then types; returns the coerced config (no defaults)."""
    fields = [*SCHEMAS[destination_type], *_BASE]
    by_name = {f.name: f for f in fields}
    unknown = sorted(k for k in config if k not in by_name)
    if unknown:
        names = ", ".join(f"'{k}'" for k in unknown)
        raise _config_error(f"Configuration has unknown field/s: {names}")
    if check_required:
        for f in fields:
            if f.required and f.name not in config:
                raise _config_error(f"Configuration missing required field: '{f.name}'")
    out: dict[str, Any] = {}
    for key, value in config.items():
        out[key] = _coerce(by_name[key], value)
    return out


def _coerce(f: Field, value: Any) -> Any:
    if value is None:
        if f.nullable:
            return None
        raise _config_error(f"Configuration has invalid type: got 'NoneType', expected '{f.kind}'")
    if f.kind == "any":
        return value
    if f.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value.strip().lower() in _TRUE
    elif f.kind == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif isinstance(value, _PY_TYPE[f.kind]) and not (f.kind == "str" and isinstance(value, bool)):
        return value
    got = type(value).__name__
    raise _config_error(f"Configuration has invalid type: got '{got}', expected '{f.kind}'")


def check_destination_rules(
    destination_type: str,
    merged_config: dict[str, Any],
    integration: int | None,
    *,
    flags: frozenset[str],
    integrations: dict[int, dict[str, Any]],
    team_id: int,
    generation: str,
) -> None:
    """``validate_destination`` rules (attr ``destination``) and the destination feature-flag gates."""
    if destination_type == "Databricks":
        if "databricks-batch-exports" not in flags:
            raise permission_denied("The Databricks destination is not enabled for this team.")
        _check_integration(integration, "databricks", "Databricks", integrations, team_id, required=True)
    if destination_type == "AzureBlob":
        _check_integration(integration, "azure-blob", "Azure Blob", integrations, team_id, required=True)
    if destination_type == "Workflows" and "backfill-workflows-destination" not in flags:
        raise permission_denied("Backfilling Workflows is not enabled for this team.")
    if destination_type == "Snowflake":
        auth = merged_config.get("authentication_type", "password")
        if auth == "password" and not merged_config.get("password"):
            raise validation("Password is required if authentication type is password", "destination")
        if auth == "keypair" and not merged_config.get("private_key"):
            raise validation("Private key is required if authentication type is key pair", "destination")
    if destination_type in ("S3", "AwsS3", "S3Compatible", "AzureBlob"):
        file_format = merged_config.get("file_format", "JSONLines")
        if file_format not in FILE_FORMATS:
            raise validation(
                f"File format {file_format} is not supported. Supported file formats are {FILE_FORMATS}",
                "destination",
            )
        compression = merged_config.get("compression")
        if compression is not None and compression not in COMPRESSIONS[file_format]:
            raise validation(
                f"Compression {compression} is not supported for file format {file_format}. "
                f"Supported compressions are {COMPRESSIONS[file_format]}",
                "destination",
            )
    if destination_type == "Redshift" and merged_config.get("mode", "INSERT") == "COPY":
        _check_copy_inputs(merged_config.get("copy_inputs"))
    if destination_type == "HTTP" and generation == "new":
        url = merged_config.get("url")
        if url not in ("https://us.i.posthog.com/batch/", "https://eu.i.posthog.com/batch/"):
            raise validation(f"Invalid destination URL: {url}", "destination")


def _check_integration(
    integration: int | None,
    kind: str,
    label: str,
    integrations: dict[int, dict[str, Any]],
    team_id: int,
    *,
    required: bool,
) -> None:
    if integration is None:
        if required:
            raise validation(f"Integration is required for {label} batch exports", "destination")
        return
    found = integrations.get(integration)
    if found is None:
        raise validation(
            f'Invalid pk "{integration}" - object does not exist.',
            "destination__integration",
            "does_not_exist",
        )
    if found["team_id"] != team_id:
        raise validation("Integration does not belong to this team.", "destination")
    if found["kind"] != kind:
        raise validation(f"Integration is not a {label} integration.", "destination")


def _check_copy_inputs(copy_inputs: Any) -> None:
    if not copy_inputs or not isinstance(copy_inputs, dict):
        raise validation("Missing required inputs for 'COPY'", "destination")
    for key in ("s3_bucket", "region_name", "authorization", "bucket_credentials"):
        if copy_inputs.get(key) is None:
            raise validation("Missing required input for 'COPY'", "destination")
    creds = copy_inputs["bucket_credentials"]
    if (
        not isinstance(creds, dict)
        or not creds.get("aws_access_key_id")
        or not creds.get("aws_secret_access_key")
    ):
        raise validation("Missing required bucket credentials for 'COPY'", "destination")
    authorization = copy_inputs["authorization"]
    if isinstance(authorization, dict):
        if not authorization.get("aws_access_key_id") or not authorization.get("aws_secret_access_key"):
            raise validation("Missing required credentials for 'COPY'", "destination")
    elif isinstance(authorization, str):
        if not authorization.strip():
            raise validation("Missing required IAM role for 'COPY'", "destination")
    elif not isinstance(authorization, int):
        raise validation("Missing required credentials for 'COPY'", "destination")
