"""Overall deadlines and the size cap of both transports, over real sockets on 127.0.0.1.

A read timeout bounds each read, not the answer: a server that trickles one byte every half second never
trips a 1 s read timeout. Every attempt therefore has an overall deadline (``connect_timeout + timeout``)
and every call may have one (``run(op, deadline=...)``); answers above ``max_response_bytes`` are refused.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from hook_clients import HookClient
from hook_helpers import FAST_POLICY, set_conn
from raw_server import RawServer

from airflow_provider_posthog.api import endpoints
from airflow_provider_posthog.api.retry import RetryPolicy
from airflow_provider_posthog.exceptions import (
    PostHogDeadlineError,
    PostHogRateLimitError,
    PostHogResponseTooLargeError,
    PostHogServerError,
)
from airflow_provider_posthog.hooks import requests_session
from airflow_provider_posthog.hooks.posthog import PostHogHook

if TYPE_CHECKING:
    import socket
    from pathlib import Path

    from airflow_provider_posthog.emulator import PostHogEmulator

TRICKLE = 0.5  # seconds per byte: never a 1 s read timeout
READ_TIMEOUT, CONNECT_TIMEOUT = 1.0, 0.2
REQUEST_TIMEOUT = READ_TIMEOUT + CONNECT_TIMEOUT
ONE_ATTEMPT = RetryPolicy(max_attempts=1)
EXPORT_PATH = r"/batch_exports/[0-9a-f-]{36}/$"
RAW_PROJECT = 1


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _client(kind: str, policy: RetryPolicy = ONE_ATTEMPT) -> HookClient:
    return HookClient(kind, retry_policy=policy)


def _connect(
    monkeypatch: pytest.MonkeyPatch, base_url: str, emulator: PostHogEmulator | None = None, **extra: Any
) -> None:
    """The default connection at ``base_url``: 1 s read timeout, 0.2 s connect timeout unless told."""
    fields: dict[str, Any] = {"timeout": READ_TIMEOUT, "connect_timeout": CONNECT_TIMEOUT, **extra}
    if emulator is None:
        set_conn(monkeypatch, host=base_url, extra={"project_id": RAW_PROJECT, **fields})
    else:
        extra_fields = {"project_id": emulator.project_id, **fields}
        set_conn(monkeypatch, host=base_url, password=emulator.api_key, extra=extra_fields)


@pytest.fixture
def export(posthog_emulator: PostHogEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """An export on the emulator, with the default connection pointing there (short timeouts)."""
    _connect(monkeypatch, posthog_emulator.base_url, posthog_emulator)
    seeded: dict[str, Any] = posthog_emulator.control.seed_export(name="deadlines")
    posthog_emulator.control.clear_request_log()
    return str(seeded["id"])


def _timed(call: Any) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


# -- the deadline of one attempt ----------------------------------------------------------------------------


def test_a_trickled_body_is_cut_at_the_request_deadline_and_the_hook_goes_on(
    kind: str, posthog_emulator: PostHogEmulator, export: str
) -> None:
    control = posthog_emulator.control
    client = _client(kind)
    try:
        assert client.get_batch_export(export).id == export  # the cut is on a pooled connection
        control.add_fault(EXPORT_PATH, method="GET", trickle=TRICKLE)
        error, elapsed = _timed(lambda: client.get_batch_export(export))
        assert isinstance(error, PostHogDeadlineError), error
        assert f"GET /api/projects/{posthog_emulator.project_id}/batch_exports/{export}/" in str(error)
        assert f"no complete answer within {REQUEST_TIMEOUT:.1f}s" in str(error)
        assert REQUEST_TIMEOUT - 0.05 <= elapsed < REQUEST_TIMEOUT + 1
        # The cut connection is not handed to the next request: it gets the whole answer at once.
        error, elapsed = _timed(lambda: client.get_batch_export(export))
        assert error is None and elapsed < 0.5
    finally:
        client.close()
    assert [e.status for e in control.request_log] == [200] * 3  # PostHog answered; the client hung up


def _trickled_headers(server: RawServer, conn: socket.socket) -> None:
    server.send(conn, b"HTTP/1.1 200 OK\r\n")
    server.trickle(
        conn, b"Content-Type: application/json\r\nX-Padding: " + b"x" * 60 + b"\r\n\r\n{}", TRICKLE
    )


def test_trickled_headers_are_cut_at_the_request_deadline(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status line comes at once, the headers never end: nothing of it may pass for an answer."""
    with RawServer(_trickled_headers) as server:
        _connect(monkeypatch, server.base_url)
        client = _client(kind)
        try:
            error, elapsed = _timed(lambda: client.get_batch_export("e1"))
        finally:
            client.close()
        assert isinstance(error, PostHogDeadlineError), error
        assert REQUEST_TIMEOUT - 0.05 <= elapsed < REQUEST_TIMEOUT + 1
        assert server.hung_up.wait(2 * TRICKLE + 1)  # the client closed the connection
        assert server.requests == 1


def test_a_trickled_body_over_tls_is_cut_too(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under TLS the watchdog shuts the plain socket: the read fails as a connection error, not otherwise."""
    from airflow_provider_posthog.emulator import EmulatorSettings, PostHogEmulator
    from airflow_provider_posthog.emulator.tls import make_tls_files

    files = make_tls_files(tmp_path / "tls")
    tls = PostHogEmulator(
        EmulatorSettings(), ssl_certfile=str(files.certfile), ssl_keyfile=str(files.keyfile)
    )
    with tls:
        _connect(monkeypatch, tls.base_url, tls, verify=str(files.ca_bundle))
        export = tls.control.seed_export(name="tls")["id"]
        client = _client(kind)
        try:
            assert client.get_batch_export(export).id == export  # the cut is on a pooled connection
            tls.control.add_fault(EXPORT_PATH, method="GET", trickle=TRICKLE)
            error, elapsed = _timed(lambda: client.get_batch_export(export))
            assert isinstance(error, PostHogDeadlineError), error
            assert REQUEST_TIMEOUT - 0.05 <= elapsed < REQUEST_TIMEOUT + 1
            assert client.get_batch_export(export).id == export
        finally:
            client.close()


# -- the deadline of a call ---------------------------------------------------------------------------------


def test_the_call_deadline_cuts_an_attempt_that_had_longer(
    kind: str, posthog_emulator: PostHogEmulator, export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connect(monkeypatch, posthog_emulator.base_url, posthog_emulator, timeout=30, connect_timeout=10)
    posthog_emulator.control.add_fault(EXPORT_PATH, method="GET", trickle=TRICKLE)
    client = _client(kind, FAST_POLICY)
    try:
        op = endpoints.get_batch_export(export)
        error, elapsed = _timed(lambda: client.run(op, deadline=time.time() + 1))
    finally:
        client.close()
    assert isinstance(error, PostHogDeadlineError), error
    assert 0.9 <= elapsed < 2 and "within 1.0s" in str(error)
    assert len(posthog_emulator.control.request_log) == 1  # no retry after the call's deadline


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        ({"status": 503}, PostHogServerError),
        ({"status": 429, "retry_after": 30}, PostHogRateLimitError),
    ],
    ids=["503", "429-retry-after-30"],
)
def test_the_call_deadline_bounds_the_retry_budgets(
    kind: str, posthog_emulator: PostHogEmulator, export: str, fault: dict[str, Any], error_type: type
) -> None:
    """The default policy would retry a 503 for 120 s and a 429 for 600 s; the call ends at its deadline."""
    posthog_emulator.control.add_fault(EXPORT_PATH, method="GET", count=None, **fault)
    client = _client(kind, RetryPolicy())
    try:
        op = endpoints.get_batch_export(export)
        error, elapsed = _timed(lambda: client.run(op, deadline=time.time() + 2))
    finally:
        client.close()
    assert isinstance(error, error_type), error
    assert elapsed < 2.5
    assert len(posthog_emulator.control.request_log) >= 1


# -- the size cap -------------------------------------------------------------------------------------------


def _endless(server: RawServer, conn: socket.socket, chunk: bytes) -> None:
    while not server.stopping.is_set():
        server.send(conn, chunk)


def _declared_huge(server: RawServer, conn: socket.socket) -> None:
    server.send(
        conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    )
    _endless(server, conn, b"[" + b" " * 16383)


def _chunked_endless(server: RawServer, conn: socket.socket) -> None:
    server.send(
        conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    _endless(server, conn, b"4000\r\n" + b" " * 16384 + b"\r\n")


def _undeclared_endless(server: RawServer, conn: socket.socket) -> None:
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    _endless(server, conn, b" " * 16384)


@pytest.mark.parametrize("answer", [_declared_huge, _chunked_endless, _undeclared_endless])
def test_an_answer_above_the_cap_is_refused_unread_and_not_retried(
    kind: str, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    """Each answer never ends: refusing it at all proves the client stopped reading."""
    with RawServer(answer) as server:
        _connect(monkeypatch, server.base_url, max_response_bytes=100_000, timeout=30)
        client = _client(kind, FAST_POLICY)
        try:
            error, elapsed = _timed(lambda: client.get_batch_export("e1"))
        finally:
            client.close()
        assert isinstance(error, PostHogResponseTooLargeError), error
        assert "more than 100000 bytes" in str(error) and "'max_response_bytes'" in str(error)
        assert elapsed < 1 and server.requests == 1
        assert server.hung_up.wait(2)


def test_a_real_answer_above_the_cap_names_the_request(
    kind: str, posthog_emulator: PostHogEmulator, export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connect(monkeypatch, posthog_emulator.base_url, posthog_emulator, max_response_bytes=50)
    capped = _client(kind, FAST_POLICY)
    try:
        with pytest.raises(
            PostHogResponseTooLargeError, match=f"GET /api/projects/.*/{export}/ answered with"
        ):
            capped.get_batch_export(export)
    finally:
        capped.close()
    _connect(monkeypatch, posthog_emulator.base_url, posthog_emulator, max_response_bytes=100_000)
    roomy = _client(kind)
    try:
        assert roomy.get_batch_export(export).id == export  # under the cap: read as usual
    finally:
        roomy.close()
    assert [e.status for e in posthog_emulator.control.request_log] == [200, 200]


# -- the sync watchdog --------------------------------------------------------------------------------------


def test_watchdogs_do_not_outlive_their_requests(
    posthog_emulator: PostHogEmulator, export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watchdog left armed would live 40 s (the default timeouts) after its request: none is left."""
    _connect(monkeypatch, posthog_emulator.base_url, posthog_emulator, timeout=30, connect_timeout=10)
    before = set(threading.enumerate())
    hook = PostHogHook(retry_policy=ONE_ATTEMPT)
    for _ in range(100):
        assert hook.get_batch_export(export).id == export
    posthog_emulator.control.add_fault(EXPORT_PATH, method="GET", trickle=TRICKLE)
    with pytest.raises(PostHogDeadlineError):  # a watchdog that fired
        hook.run(endpoints.get_batch_export(export), deadline=time.time() + 0.5)
    assert hook.get_batch_export(export).id == export
    hook.close()
    settle = time.monotonic() + 0.5
    while (left := [t for t in threading.enumerate() if t not in before]) and time.monotonic() < settle:
        time.sleep(0.01)
    assert left == []


def test_a_watchdog_firing_as_the_answer_completes_spoils_nothing(
    posthog_emulator: PostHogEmulator, export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a timer can lose: it fires after the last byte was read, before it is disarmed. The answer
    stands, and the keep-alive connection, back in the pool by then, is not shut under the next request."""
    from urllib3.connection import HTTPConnection

    connects: list[object] = []
    real_connect = HTTPConnection.connect

    def counting_connect(conn: HTTPConnection) -> None:
        connects.append(conn)
        real_connect(conn)

    monkeypatch.setattr(HTTPConnection, "connect", counting_connect)
    hook = PostHogHook(retry_policy=ONE_ATTEMPT)
    assert hook.get_batch_export(export).id == export
    real_stop = requests_session.Watchdog.stop

    def fire_first(watchdog: Any) -> bool:
        watchdog._fire()
        return real_stop(watchdog)

    monkeypatch.setattr(requests_session.Watchdog, "stop", fire_first)
    for _ in range(3):
        assert hook.get_batch_export(export).id == export
    hook.close()
    assert len(connects) == 1
    assert [e.status for e in posthog_emulator.control.request_log] == [200] * 4
