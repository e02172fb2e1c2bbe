"""Each builder: nothing read at parse time, the exact PostHog config at run time, secrets masked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .cases import CASES, Case
from .conftest import openapi_covers, secret_values, validate_like_posthog, validate_openapi

if TYPE_CHECKING:
    from collections.abc import Callable
    from unittest import mock


def _define(set_conn: Callable[..., None], case: Case) -> None:
    for conn_id, fields in case.connections.items():
        set_conn(conn_id, **fields)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_construction_reads_no_connection(case: Case, no_lookup: mock.MagicMock) -> None:
    """What a DAG file does at parse time: no connection is defined and none is looked up."""
    builder = case.make()
    repr(builder)
    assert no_lookup.call_count == 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_build_gives_posthogs_exact_destination(case: Case, set_conn: Callable[..., None]) -> None:
    _define(set_conn, case)
    destination = case.make().build()
    assert destination == case.expected
    validate_like_posthog(destination)
    if openapi_covers(destination["type"]):
        validate_openapi(destination)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_secrets_are_masked_and_in_no_repr(
    case: Case, set_conn: Callable[..., None], masked: list[Any]
) -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact
    from airflow.serialization.helpers import serialize_template_field

    _define(set_conn, case)
    builder = case.make()
    destination = builder.build()
    secrets = secret_values(destination)
    if destination["type"] in ("Databricks", "AzureBlob"):
        assert secrets == []  # PostHog keeps these credentials in an Integration
        assert "dapi-not-sent-to-posthog-123" not in repr(destination)
    else:
        assert secrets, "the case must carry credentials"
    for value in secrets:
        assert value in masked, f"{value[:6]}... was not handed to mask_secret"
        line = f"connecting with {value} now"
        assert value not in str(redact(line))
        assert value not in repr(builder)
        assert value not in str(builder)
        assert value not in str(serialize_template_field(builder, "destination"))
        assert value not in repr(vars(builder))


def test_a_pem_key_logged_line_by_line_is_hidden(set_conn: Callable[..., None]) -> None:
    """Each body line of a key is registered on its own (a fresh key: the masker is process-wide)."""
    import uuid

    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    from airflow_provider_posthog.destinations import SnowflakeDestination

    body = [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(3)]
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----\n"
    for line in body:
        assert line in str(redact(f"key line: {line}"))  # not masked before the build
    set_conn(
        "sf_pem",
        conn_type="snowflake",
        login="KEY_USER",
        schema="RAW",
        extra={"account": "a1", "warehouse": "w", "database": "d", "private_key_content": pem},
    )
    assert SnowflakeDestination(snowflake_conn_id="sf_pem").build()["config"]["private_key"] == pem
    for line in body:
        assert line not in str(redact(f"key line: {line}"))
