"""A connection that does not fit its server fails at once with one line that says what to change.

Real servers on 127.0.0.1, both transports: an ``https://`` host on a plain-HTTP server, an ``http://``
host on an HTTPS server, a ``verify`` CA file that holds no certificate. Each is tried once (the hook keeps
its default retry policy of 5 attempts), and the error is an ``AirflowFailException``, so Airflow does not
retry the task either; a deferred wait ends with an event the task turns into the same final failure.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from airflow_provider_posthog.emulator.tls import make_tls_files
from airflow_provider_posthog.exceptions import (
    AirflowFailException,
    PostHogConfigError,
    PostHogConnectionMismatchError,
    PostHogError,
    PostHogFinalTriggerError,
    PostHogTriggerError,
)
from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook, aclose_shared_clients

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_posthog.emulator.tls import TLSFiles

KEY = "phx_final_errors_key_0123456789"
PROJECT = 12345
LIST = b'{"count": 0, "next": null, "previous": null, "results": []}'


class _Handler(http.server.BaseHTTPRequestHandler):
    """PostHog's export list for any GET; a request that is not HTTP gets http.server's own 400."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(LIST)))
        self.end_headers()
        self.wfile.write(LIST)

    def log_message(self, *args: Any) -> None:
        pass


class PlainServer(http.server.ThreadingHTTPServer):
    """A plain-HTTP server that counts the connections made to it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    @property
    def port(self) -> int:
        return int(self.server_address[1])


S = TypeVar("S", bound="PlainServer")


class TLSServer(PlainServer):
    """An HTTPS server: TLS on every connection. A plain-HTTP request fails its handshake and the connection
    is closed without an answer, as HTTPS servers do; ``plain_requests`` counts those."""

    def __init__(self, files: TLSFiles) -> None:
        super().__init__()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(files.certfile), str(files.keyfile))
        self.plain_requests = 0

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(5)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":
                self.plain_requests += 1
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            request.close()
            return
        super().finish_request(tls, client_address)


def _serving(server: S) -> Iterator[S]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def plain_server() -> Iterator[PlainServer]:
    yield from _serving(PlainServer())


@pytest.fixture
def tls_server(tls_files: TLSFiles) -> Iterator[TLSServer]:
    yield from _serving(TLSServer(tls_files))


def _connect(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> None:
    conn = {"conn_type": "posthog", "host": host, "password": KEY, "extra": {"project_id": PROJECT, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_FINAL", json.dumps(conn))


def _call(kind: str) -> tuple[BaseException | None, tuple[bool, str], float]:
    """List the exports once (default retry policy: 5 attempts), then test the connection; the error, the
    test's result and how long the list call took."""
    if kind == "sync":
        hook = PostHogHook(posthog_conn_id="posthog_final")
        started = time.monotonic()
        try:
            hook.list_batch_exports()
        except PostHogError as exc:
            return exc, hook.test_connection(), time.monotonic() - started
        return None, hook.test_connection(), time.monotonic() - started

    async def run() -> tuple[BaseException | None, tuple[bool, str], float]:
        ahook = PostHogAsyncHook(posthog_conn_id="posthog_final")
        started = time.monotonic()
        try:
            try:
                await ahook.list_batch_exports()
            except PostHogError as exc:
                return exc, await ahook.test_connection(), time.monotonic() - started
            return None, await ahook.test_connection(), time.monotonic() - started
        finally:
            await aclose_shared_clients()

    return asyncio.run(run())


def _assert_final(error: BaseException | None, elapsed: float) -> None:
    assert isinstance(error, PostHogConnectionMismatchError)
    assert isinstance(error, PostHogConfigError) and isinstance(error, AirflowFailException)
    assert "\n" not in str(error) and "gave up after" not in str(error)
    assert elapsed < 5.0  # one attempt: the default policy would back off 1 s, 2 s, ... between five
    from airflow_provider_posthog.api.retry import RetryPolicy, transient

    assert not transient(error)
    assert not RetryPolicy().should_retry(error, idempotent=True)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_https_host_on_a_plain_http_server_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, plain_server: PlainServer, kind: str
) -> None:
    _connect(monkeypatch, f"https://127.0.0.1:{plain_server.port}")
    error, (ok, message), elapsed = _call(kind)
    _assert_final(error, elapsed)
    line = (
        f"PostHog host https://127.0.0.1:{plain_server.port} answered in plain HTTP: use http:// in the "
        "connection's host, or point it at an HTTPS server."
    )
    assert str(error) == f"PostHog API GET /api/projects/{PROJECT}/batch_exports/: {line}"
    assert not ok and message == f"Could not reach PostHog at https://127.0.0.1:{plain_server.port}: {line}"
    assert plain_server.connections == 2  # one for the call, one for the connection test: no retry
    _connect(monkeypatch, f"http://127.0.0.1:{plain_server.port}")  # the fix the message names works
    error, (ok, message), _ = _call(kind)
    assert error is None and ok, message


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_http_host_on_an_https_server_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, tls_server: TLSServer, tls_files: TLSFiles, kind: str
) -> None:
    _connect(monkeypatch, f"http://127.0.0.1:{tls_server.port}")
    error, (ok, message), elapsed = _call(kind)
    _assert_final(error, elapsed)
    line = (
        f"PostHog host http://127.0.0.1:{tls_server.port} is an HTTPS server and dropped the plain-HTTP "
        "request: use https:// in the connection's host."
    )
    assert str(error) == f"PostHog API GET /api/projects/{PROJECT}/batch_exports/: {line}"
    assert "RemoteDisconnected" not in message and "Max retries" not in message
    assert not ok and message == f"Could not reach PostHog at http://127.0.0.1:{tls_server.port}: {line}"
    assert tls_server.plain_requests == 2  # one for the call, one for the connection test: no retry
    _connect(monkeypatch, f"https://127.0.0.1:{tls_server.port}", verify=str(tls_files.ca_bundle))
    error, (ok, message), _ = _call(kind)
    assert error is None and ok, message


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_verify_file_that_is_no_certificate_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch, tls_server: TLSServer, tmp_path: Path, kind: str
) -> None:
    junk = tmp_path / "internal-ca.pem"
    junk.write_text("this is not a certificate\n")
    _connect(monkeypatch, f"https://127.0.0.1:{tls_server.port}", verify=str(junk))
    error, (ok, message), elapsed = _call(kind)
    assert isinstance(error, PostHogConfigError) and isinstance(error, AirflowFailException)
    line = (
        f"Connection extra 'verify' is {str(junk)!r}, which holds no CA certificate: set 'verify' to a CA "
        "bundle file in PEM form (-----BEGIN CERTIFICATE-----) that signed PostHog's certificate, or to "
        "true for the system's CAs."
    )
    assert str(error) == line and "NO_CERTIFICATE_OR_CRL_FOUND" not in str(error)
    assert not ok and message == line
    assert tls_server.connections == 0  # refused before any request
    assert elapsed < 5.0


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_untrusted_certificate_is_final_too(
    monkeypatch: pytest.MonkeyPatch, tls_server: TLSServer, kind: str
) -> None:
    """Without the CA that signed it, the server's certificate cannot be verified on any retry."""
    _connect(monkeypatch, f"https://127.0.0.1:{tls_server.port}")
    error, (ok, message), elapsed = _call(kind)
    _assert_final(error, elapsed)
    assert "The TLS certificate of 127.0.0.1 could not be verified (self-signed certificate)" in str(error)
    assert "set the connection extra 'verify' to the CA bundle that signed it" in str(error)
    assert not ok and message.startswith(f"Could not reach PostHog at https://127.0.0.1:{tls_server.port}: ")
    assert tls_server.connections == 2


def test_a_deferred_wait_on_a_mismatched_host_ends_the_task_without_retry(
    monkeypatch: pytest.MonkeyPatch, plain_server: PlainServer
) -> None:
    """The trigger's error event says the error is final; the task raises an ``AirflowFailException``."""
    from airflow_provider_posthog.tasks.mixin import PostHogTaskMixin
    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

    _connect(monkeypatch, f"https://127.0.0.1:{plain_server.port}")
    trigger = PostHogBackfillTrigger(
        batch_export_id="e1", backfill_id="b1", posthog_conn_id="posthog_final", poll_interval=0.01
    )

    async def events() -> list[Any]:
        try:
            return [event async for event in trigger.run()]
        finally:
            await aclose_shared_clients()

    (event,) = asyncio.run(events())
    payload = event.payload
    assert payload["status"] == "error" and payload["final"] is True
    assert "answered in plain HTTP: use http:// in the connection's host" in payload["message"]
    assert plain_server.connections == 1

    class Task(PostHogTaskMixin):
        posthog_conn_id = "posthog_final"
        project_id = None

    with pytest.raises(PostHogFinalTriggerError) as exc:
        Task().finish_wait({}, payload)
    assert isinstance(exc.value, AirflowFailException)
    assert "answered in plain HTTP" in str(exc.value)
    # an error event without the mark (the waiting machinery failed) stays retryable
    with pytest.raises(PostHogTriggerError) as retryable:
        Task().finish_wait({}, {**payload, "final": False})
    assert not isinstance(retryable.value, AirflowFailException)
