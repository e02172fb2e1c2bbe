"""Fixtures for destination builders: env-var connections, a lookup tripwire, a mask recorder, validators."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "openapi-batch-exports.json"
#: Keys PostHog treats as secret per destination type (stripped from its responses).
POSTHOG_SECRET_KEYS: dict[str, frozenset[str]] = {
    "S3": frozenset({"aws_access_key_id", "aws_secret_access_key"}),
    "Snowflake": frozenset({"user", "password", "private_key", "private_key_passphrase"}),
    "Postgres": frozenset({"user", "password"}),
    "Redshift": frozenset({"user", "password", "aws_access_key_id", "aws_secret_access_key"}),
    "BigQuery": frozenset({"private_key", "private_key_id", "client_email", "token_uri"}),
    "HTTP": frozenset({"token"}),
}


def secret_values(destination: dict[str, Any]) -> list[str]:
    """Every value under a key PostHog treats as secret for this type, at any depth."""
    keys = POSTHOG_SECRET_KEYS.get(destination["type"], frozenset())
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in keys and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)

    walk(destination["config"])
    return found


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Define an Airflow connection as ``AIRFLOW_CONN_<ID>`` JSON, the way a deployment would."""

    def _set(conn_id: str, **fields: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))

    return _set


@pytest.fixture
def no_lookup() -> Iterator[mock.MagicMock]:
    """Fails the test if anything looks a connection up."""
    with mock.patch(
        "airflow.sdk.BaseHook.get_connection", side_effect=AssertionError("connection looked up")
    ) as patched:
        yield patched


@pytest.fixture
def masked() -> Iterator[list[str]]:
    """Every value handed to Airflow's ``mask_secret`` (which still runs), in order."""
    from airflow.sdk import log as sdk_log

    real = sdk_log.mask_secret
    calls: list[str] = []

    def record(secret: Any, name: str | None = None) -> None:
        calls.append(secret)
        real(secret, name)

    with mock.patch.object(sdk_log, "mask_secret", side_effect=record):
        yield calls


@cache
def _components() -> dict[str, Any]:
    return copy.deepcopy(json.loads(SPEC_PATH.read_text())["components"])


def openapi_covers(destination_type: str) -> bool:
    return destination_type in _components()["schemas"]["BatchExportDestinationTypeEnum"]["enum"]


def validate_openapi(destination: dict[str, Any]) -> None:
    """The request body validates against PostHog's own ``BatchExportDestination`` schema."""
    from openapi_schema_validator import OAS30WriteValidator

    schema = {"$ref": "#/components/schemas/BatchExportDestination", "components": _components()}
    errors = [e.message for e in OAS30WriteValidator(schema).iter_errors(destination)]
    assert not errors, errors


def validate_like_posthog(destination: dict[str, Any]) -> None:
    """PostHog's config rules as the emulator implements them (written independently of the builders)."""
    from airflow_provider_posthog.emulator.destinations import check_destination_rules, validate_config

    dtype, config = destination["type"], destination["config"]
    coerced = validate_config(dtype, config, check_required=True)
    integration = destination.get("integration_id")
    kinds = {"Databricks": "databricks", "AzureBlob": "azure-blob"}
    integrations = {integration: {"team_id": 1, "kind": kinds[dtype]}} if integration else {}
    check_destination_rules(
        dtype,
        coerced,
        integration,
        flags=frozenset({"databricks-batch-exports"}),
        integrations=integrations,
        team_id=1,
        generation="docs",
    )
