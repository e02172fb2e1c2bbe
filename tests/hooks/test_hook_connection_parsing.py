"""Connection fields -> base URL, key, project, timeouts, on awkward inputs (UI, CLI, URI and JSON forms)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_posthog.api.connection import (
    ConnectionSettings,
    normalise_base_url,
    parse_project_id,
    parse_timeouts,
    settings_from_connection,
)
from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.hooks.posthog import PostHogHook

KEY = "phx_abcdefghijklmnop"


@pytest.mark.parametrize(
    ("host", "scheme", "port", "expected"),
    [
        (None, None, None, "https://us.posthog.com"),
        ("", None, None, "https://us.posthog.com"),
        ("eu.posthog.com", None, None, "https://eu.posthog.com"),
        ("EU.PostHog.com", None, None, "https://eu.posthog.com"),
        ("https://eu.posthog.com", None, None, "https://eu.posthog.com"),
        ("https://eu.posthog.com/", None, None, "https://eu.posthog.com"),
        ("https://eu.posthog.com/api", None, None, "https://eu.posthog.com"),
        ("https://eu.posthog.com/api/", None, None, "https://eu.posthog.com"),
        ("  https://us.posthog.com//  ", None, None, "https://us.posthog.com"),
        ("https://us.posthog.com:443", None, None, "https://us.posthog.com"),
        ("http://localhost:8000", None, None, "http://localhost:8000"),
        ("localhost:8000", "http", None, "http://localhost:8000"),
        ("127.0.0.1", "http", 8010, "http://127.0.0.1:8010"),
        ("127.0.0.1", None, 8010, "https://127.0.0.1:8010"),
        ("https://posthog.example.com/analytics/api", None, None, "https://posthog.example.com/analytics"),
        ("posthog.example.com/analytics/", None, None, "https://posthog.example.com/analytics"),
        ("http://[::1]:8000", None, None, "http://[::1]:8000"),
    ],
)
def test_host_forms_normalise_to_one_base_url(
    host: str | None, scheme: str | None, port: int | None, expected: str
) -> None:
    assert normalise_base_url(host, scheme=scheme, port=port) == expected


@pytest.mark.parametrize(
    ("host", "scheme", "message"),
    [
        ("ftp://eu.posthog.com", None, "http(s)"),
        ("https://eu.posthog.com?x=1", None, "query"),
        ("https://user:pw@eu.posthog.com", None, "credentials"),
        ("https://us.i.posthog.com", None, "ingestion host"),
        ("eu.i.posthog.com", None, "https://eu.posthog.com"),
        ("eu.posthog.com", "gopher", "scheme"),
        ("https://", None, "no host name"),
    ],
)
def test_bad_hosts_fail_clearly(host: str, scheme: str | None, message: str) -> None:
    with pytest.raises(PostHogConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalise_base_url(host, scheme=scheme)


def test_uri_path_becomes_prefix_and_api_is_stripped() -> None:
    assert normalise_base_url("ph.example.com", path="api") == "https://ph.example.com"
    assert normalise_base_url("ph.example.com", path="posthog") == "https://ph.example.com/posthog"


@pytest.mark.parametrize(
    ("value", "expected"), [(123, 123), ("123", 123), (" 42 ", 42), (7.0, 7), ("0007", 7)]
)
def test_project_id_accepts_numbers(value: object, expected: int) -> None:
    assert parse_project_id(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "No PostHog project id"),
        ("", "No PostHog project id"),
        ("abc", "must be a positive number"),
        ("12a", "must be a positive number"),
        ("@current", "must be a positive number"),
        (0, "must be a positive number"),
        ("-3", "must be a positive number"),
        (True, "boolean"),
        (1.5, "must be a positive number"),
    ],
)
def test_project_id_rejects_non_numeric(value: object, message: str) -> None:
    with pytest.raises(PostHogConfigError, match=message):
        parse_project_id(value)


def test_missing_key_and_project_key_fail_without_echoing_the_key() -> None:
    with pytest.raises(PostHogConfigError, match="no API key"):
        settings_from_connection(host=None, password=None, extra={"project_id": 1})
    with pytest.raises(PostHogConfigError, match="project API key") as exc:
        settings_from_connection(host=None, password="phc_secretprojectkey", extra={"project_id": 1})
    assert "phc_secretprojectkey" not in str(exc.value)
    with pytest.raises(PostHogConfigError, match="whitespace") as exc:
        settings_from_connection(host=None, password="phx_a b", extra={"project_id": 1})
    assert "phx_a b" not in str(exc.value)


def test_timeouts_from_extra() -> None:
    assert parse_timeouts({}) == (10.0, 30.0)
    assert parse_timeouts({"timeout": "5"}) == (5.0, 5.0)
    assert parse_timeouts({"timeout": 60, "connect_timeout": 3}) == (3.0, 60.0)
    assert parse_timeouts({"extra__posthog__timeout": "12"}) == (10.0, 12.0)
    for bad in ("abc", "-1", 0, "nan"):
        with pytest.raises(PostHogConfigError, match="timeout"):
            parse_timeouts({"timeout": bad})


def test_settings_repr_hides_key_and_override_project() -> None:
    s = settings_from_connection(host="eu.posthog.com", password=KEY, extra={"project_id": "12"})
    assert s == ConnectionSettings("https://eu.posthog.com", KEY, 12, 10.0, 30.0, True)
    assert KEY not in repr(s)
    assert s.with_project(99).project_id == 99
    assert s.with_project(None) is s
    with pytest.raises(PostHogConfigError):
        s.with_project("x")
    # The hook argument wins over the extra; the UI-prefixed extra key is understood too.
    s2 = settings_from_connection(host=None, password=KEY, extra={"extra__posthog__project_id": "5"})
    assert s2.project_id == 5
    s3 = settings_from_connection(host=None, password=KEY, extra={"project_id": "5"}, project_id=6)
    assert s3.project_id == 6
    assert (
        settings_from_connection(host=None, password=KEY, extra={"project_id": 1, "verify": "false"}).verify
        is False
    )


# -- the same through Airflow's own connection parsing (env var URI and JSON forms) --------------------------


@pytest.mark.parametrize(
    ("env", "base_url", "project"),
    [
        ("posthog://:phx_urikey12345@eu.posthog.com?project_id=123", "https://eu.posthog.com", 123),
        ("posthog://:phx_urikey12345@127.0.0.1:8123?project_id=1&scheme=http", "http://127.0.0.1:8123", 1),
        ("posthog://:phx_urikey12345@ph.example.com/api?project_id=9&timeout=5", "https://ph.example.com", 9),
        (
            json.dumps(
                {
                    "conn_type": "posthog",
                    "host": "https://eu.posthog.com/api/",
                    "password": "phx_urikey12345",
                    "extra": {"project_id": "77"},
                }
            ),
            "https://eu.posthog.com",
            77,
        ),
        (
            json.dumps({"conn_type": "posthog", "password": "phx_urikey12345", "extra": {"project_id": 5}}),
            "https://us.posthog.com",
            5,
        ),
    ],
    ids=["uri-eu", "uri-local-http", "uri-api-path", "json-eu", "json-default-host"],
)
def test_env_connection_forms(monkeypatch: pytest.MonkeyPatch, env: str, base_url: str, project: int) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_FORMS", env)
    hook = PostHogHook(posthog_conn_id="posthog_forms")
    s = hook._settings()
    assert (s.base_url, s.project_id, s.api_key) == (base_url, project, "phx_urikey12345")
    assert hook.ui_url("abc", "runs") == f"{base_url}/project/{project}/pipeline/batch-exports/abc?tab=runs"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("posthog://eu.posthog.com?project_id=1", "no API key"),
        ("posthog://:phc_projectkey123@eu.posthog.com?project_id=1", "project API key"),
        ("posthog://:phx_urikey12345@eu.posthog.com", "No PostHog project id"),
        ("posthog://:phx_urikey12345@eu.posthog.com?project_id=abc", "must be a positive number"),
    ],
)
def test_incomplete_connections_fail_before_any_request(
    monkeypatch: pytest.MonkeyPatch, env: str, message: str, requests_mock: object
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_BAD", env)
    hook = PostHogHook(posthog_conn_id="posthog_bad")
    with pytest.raises(PostHogConfigError, match=message):
        hook.list_batch_exports()
    ok, msg = hook.test_connection()
    assert not ok and message in msg
    assert requests_mock.call_count == 0  # type: ignore[attr-defined]
