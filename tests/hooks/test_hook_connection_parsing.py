"""Connection fields -> base URL, key, project, timeouts, on awkward inputs (UI, CLI, URI and JSON forms)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

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
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook

if TYPE_CHECKING:
    from pathlib import Path

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


# -- verify: a CA bundle path must exist, checked when the hook first needs its settings ---------------------


def test_verify_accepts_booleans_and_existing_paths(tmp_path: Path) -> None:
    from airflow_provider_posthog.emulator.tls import make_tls_files

    bundle = make_tls_files(tmp_path / "tls").ca_bundle
    for value, expected in [(None, True), ("true", True), (False, False), ("0", False)]:
        extra = {"project_id": 1, "verify": value}
        assert settings_from_connection(host=None, password=KEY, extra=extra).verify is expected
    for path in (bundle, tmp_path):  # a bundle file or a directory of CA certificates
        extra = {"project_id": 1, "verify": str(path)}
        assert settings_from_connection(host=None, password=KEY, extra=extra).verify == str(path)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_missing_ca_bundle_is_a_config_error_at_run_time_not_an_oserror(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str, requests_mock: object
) -> None:
    missing = str(tmp_path / "internal-ca.pem")
    conn = {"conn_type": "posthog", "password": KEY, "extra": {"project_id": 1, "verify": missing}}
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_CA", json.dumps(conn))
    hook = (PostHogHook if kind == "sync" else PostHogAsyncHook)(posthog_conn_id="posthog_ca")  # no error yet
    if kind == "sync":
        with pytest.raises(PostHogConfigError) as exc:
            hook.list_batch_exports()  # type: ignore[union-attr]
        ok, message = hook.test_connection()  # type: ignore[misc]
    else:
        with pytest.raises(PostHogConfigError) as exc:
            asyncio.run(hook.list_batch_exports())  # type: ignore[arg-type]
        ok, message = asyncio.run(hook.test_connection())  # type: ignore[arg-type]
    assert missing in str(exc.value) and "true, false, or the path to an existing CA bundle" in str(exc.value)
    assert not ok and message == str(exc.value)
    assert requests_mock.call_count == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [12345, "12345", 12345.0])
def test_project_id_from_the_ui_number_field_or_a_cli_string(value: object) -> None:
    """The UI's number input saves an int; CLI/env connections keep strings: both mean the same project."""
    s = settings_from_connection(host=None, password=KEY, extra={"project_id": value})
    assert s.project_id == 12345
    with pytest.raises(PostHogConfigError, match="must be a positive number such as 12345"):
        settings_from_connection(host=None, password=KEY, extra={"project_id": "my-project"})


# -- TLS, refused and DNS failures: one readable line, both transports, real sockets on 127.0.0.1 ------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_network_failures_read_as_one_line_with_the_fix(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    import socket

    from airflow_provider_posthog.emulator.server import PostHogEmulator
    from airflow_provider_posthog.exceptions import PostHogAPIError

    def attempt(host: str) -> tuple[BaseException, str]:
        conn = {"conn_type": "posthog", "host": host, "password": KEY, "extra": {"project_id": 1}}
        monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_NET", json.dumps(conn))
        kwargs = {"posthog_conn_id": "posthog_net", "max_attempts": 1}
        if kind == "sync":
            hook = PostHogHook(**kwargs)
            with pytest.raises(PostHogAPIError) as exc:
                hook.list_batch_exports()
            return exc.value, hook.test_connection()[1]
        ahook = PostHogAsyncHook(**kwargs)

        async def run() -> tuple[BaseException, str]:
            try:
                with pytest.raises(PostHogAPIError) as exc:
                    await ahook.list_batch_exports()
                return exc.value, (await ahook.test_connection())[1]
            finally:
                from airflow_provider_posthog.hooks.posthog_async import aclose_shared_clients

                await aclose_shared_clients()

        return asyncio.run(run())

    with PostHogEmulator() as emu:  # plain HTTP
        error, message = attempt(f"https://127.0.0.1:{emu.port}")
    assert f"PostHog host https://127.0.0.1:{emu.port} answered in plain HTTP: use http://" in str(error)
    assert message.startswith(f"Could not reach PostHog at https://127.0.0.1:{emu.port}: PostHog host")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    error, message = attempt(f"http://127.0.0.1:{port}")
    assert f"Connection to 127.0.0.1:{port} was refused: is the server running" in str(error)
    assert "was refused" in message and "\n" not in message


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_tls_certificates_and_dns_read_as_one_line_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    """A self-signed server: untrusted by default (named, pointing at ``verify``), trusted through a CA bundle
    file in ``verify``; an unresolvable host name is named."""
    import socket

    from airflow_provider_posthog.emulator.server import PostHogEmulator
    from airflow_provider_posthog.emulator.settings import EmulatorSettings
    from airflow_provider_posthog.emulator.tls import make_tls_files
    from airflow_provider_posthog.exceptions import PostHogAPIError
    from airflow_provider_posthog.hooks.posthog_async import aclose_shared_clients

    def hook_for(host: str, extra: dict[str, Any]) -> Any:
        conn = {
            "conn_type": "posthog",
            "host": host,
            "password": KEY,
            "extra": {"project_id": 12345, **extra},
        }
        monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_TLS", json.dumps(conn))
        cls = PostHogHook if kind == "sync" else PostHogAsyncHook
        return cls(posthog_conn_id="posthog_tls", max_attempts=1)

    def call(hook: Any) -> tuple[BaseException | None, tuple[bool, str]]:
        if kind == "sync":
            try:
                hook.list_batch_exports()
            except PostHogAPIError as exc:
                return exc, hook.test_connection()
            return None, hook.test_connection()

        async def run() -> tuple[BaseException | None, tuple[bool, str]]:
            try:
                try:
                    await hook.list_batch_exports()
                except PostHogAPIError as exc:
                    return exc, await hook.test_connection()
                return None, await hook.test_connection()
            finally:
                await aclose_shared_clients()

        return asyncio.run(run())

    files = make_tls_files(tmp_path / "tls")
    settings = EmulatorSettings(api_key=KEY, project_id=12345)
    with PostHogEmulator(settings, ssl_certfile=str(files.certfile), ssl_keyfile=str(files.keyfile)) as emu:
        error, (ok, message) = call(hook_for(emu.base_url, {}))
        assert error is not None and not ok
        assert "The TLS certificate of 127.0.0.1 could not be verified" in str(error)
        assert "set the connection extra 'verify' to the CA bundle that signed it" in str(error)
        assert message.startswith(f"Could not reach PostHog at {emu.base_url}: The TLS certificate")
        error, (ok, message) = call(hook_for(emu.base_url, {"verify": str(files.ca_bundle)}))
        assert error is None and ok, message

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    error, (ok, message) = call(hook_for("https://posthog.example.internal", {}))
    assert "The host name 'posthog.example.internal' could not be resolved (DNS)" in str(error)
    assert not ok and "could not be resolved" in message


def test_max_response_bytes_from_extra() -> None:
    def cap(extra: dict[str, Any]) -> int:
        return settings_from_connection(
            host=None, password=KEY, extra={"project_id": 1, **extra}
        ).max_response_bytes

    assert cap({}) == cap({"max_response_bytes": ""}) == 10 * 1024 * 1024
    assert cap({"max_response_bytes": "2048"}) == cap({"max_response_bytes": 2048}) == 2048
    assert (
        cap({"max_response_bytes": 2048.0}) == cap({"extra__posthog__max_response_bytes": " 2048 "}) == 2048
    )


@pytest.mark.parametrize("value", ["abc", "0", -5, "1.5", 1.5, "10MB", True])
def test_max_response_bytes_refuses_anything_but_a_positive_whole_number(value: object) -> None:
    with pytest.raises(PostHogConfigError) as exc:
        settings_from_connection(
            host=None, password=KEY, extra={"project_id": 1, "max_response_bytes": value}
        )
    message = str(exc.value)
    assert message.startswith(
        "Connection extra 'max_response_bytes' must be a positive whole number of bytes"
    )
    assert "10485760 (10 MiB, the default when it is not set)" in message
    assert message.endswith(f"got {str(value)!r}.")
