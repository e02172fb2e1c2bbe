"""The retry matrix against the emulator's scripted faults, counting the requests PostHog actually saw."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import pytest
from hook_clients import HookClient, wait_until
from hook_helpers import FAST_POLICY

from airflow_provider_posthog.api.backfills import BackfillLookup
from airflow_provider_posthog.api.retry import RetryPolicy
from airflow_provider_posthog.emulator import EmulatorSettings
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTransportError,
    PostHogValidationError,
)
from airflow_provider_posthog.hooks.posthog import PostHogHook

if TYPE_CHECKING:
    from collections.abc import Iterator

LOOKUP = BackfillLookup(timeout=0.4, poll_initial=0.05, poll_max=0.1)
EXPORT_PATH = r"/batch_exports/[0-9a-f-]{36}/$"


@pytest.fixture
def posthog_emulator_settings() -> EmulatorSettings:
    return EmulatorSettings(run_duration=0.3, backfill_row_delay=0.1, backfill_run_delay=0.05)


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest, posthog_conn: Any) -> Iterator[HookClient]:
    c = HookClient(request.param, retry_policy=FAST_POLICY, backfill_lookup=LOOKUP)
    yield c
    c.close()


@pytest.fixture
def export(posthog_conn: Any) -> dict[str, Any]:
    e: dict[str, Any] = posthog_conn.control.seed_export(name="retries")
    posthog_conn.control.clear_request_log()
    return e


def _gets(emu: Any) -> list[int]:
    return [e.status for e in emu.control.request_log if e.method == "GET"]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_burst_recovers(client: HookClient, posthog_conn: Any, export: Any, status: int) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=status, count=2)
    assert client.get_batch_export(export["id"]).id == export["id"]
    assert _gets(posthog_conn) == [status, status, 200]


def test_burst_that_does_not_recover_fails_after_the_bound(
    client: HookClient, posthog_conn: Any, export: Any
) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=503, count=None)
    with pytest.raises(PostHogServerError, match=r"HTTP 503.*gave up after 4 attempts") as exc:
        client.get_batch_export(export["id"])
    assert exc.value.http_status == 503 and exc.value.method == "GET"
    assert _gets(posthog_conn) == [503] * 4


def test_time_budget_bounds_retries(posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=503, count=None)
    policy = RetryPolicy(max_attempts=100, max_elapsed=0.5, backoff_initial=0.1, backoff_max=0.1)
    started = time.monotonic()
    with pytest.raises(PostHogServerError):
        PostHogHook(retry_policy=policy).get_batch_export(export["id"])
    assert time.monotonic() - started < 2.0  # 0.5 s budget, generous for loaded CI machines
    assert 3 <= len(_gets(posthog_conn)) <= 11


def test_429_with_retry_after_is_honoured(posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=429, retry_after=1, count=1)
    hook = PostHogHook(retry_policy=RetryPolicy(max_attempts=3, backoff_initial=0.001, max_retry_after=5))
    started = time.monotonic()
    hook.get_batch_export(export["id"])
    assert time.monotonic() - started >= 0.95
    assert _gets(posthog_conn) == [429, 200]


def test_429_retry_after_is_capped(client: HookClient, posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=429, retry_after=30, count=2)
    started = time.monotonic()
    client.get_batch_export(export["id"])  # FAST_POLICY caps Retry-After at 50 ms
    assert time.monotonic() - started < 2
    assert _gets(posthog_conn) == [429, 429, 200]


def test_429_without_retry_after_backs_off(client: HookClient, posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.configure(retry_after_header=False)
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=429, count=3)
    client.get_batch_export(export["id"])
    assert _gets(posthog_conn) == [429, 429, 429, 200]


def test_429_that_persists_raises_rate_limit_error(
    client: HookClient, posthog_conn: Any, export: Any
) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=429, retry_after=0, count=None)
    policy = RetryPolicy(
        max_attempts=4, max_elapsed=1.0, max_throttled=1.0, backoff_initial=0.05, max_retry_after=0.05
    )
    started = time.monotonic()
    with pytest.raises(PostHogRateLimitError):
        PostHogHook(retry_policy=policy).get_batch_export(export["id"])
    # Throttles are bounded by their own time budget, not by max_attempts: more than 4 tries, within ~1 s.
    assert time.monotonic() - started < 3.0
    gets = _gets(posthog_conn)
    assert len(gets) > 4 and set(gets) == {429}


def test_many_throttles_in_a_row_are_absorbed(posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=429, retry_after=0, count=8)
    policy = RetryPolicy(max_attempts=4, max_elapsed=10.0, backoff_initial=0.01, max_retry_after=0.01)
    assert PostHogHook(retry_policy=policy).get_batch_export(export["id"]).id == export["id"]
    assert _gets(posthog_conn) == [429] * 8 + [200]


def test_dropped_connections_recover(client: HookClient, posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", drop_connection=True, count=2)
    assert client.get_batch_export(export["id"]).id == export["id"]
    assert _gets(posthog_conn) == [0, 0, 200]


def test_dropped_connections_that_persist(client: HookClient, posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", drop_connection=True, count=None)
    with pytest.raises(PostHogTransportError, match="gave up after 4 attempts"):
        client.get_batch_export(export["id"])
    assert _gets(posthog_conn) == [0] * 4


def test_html_error_page(client: HookClient, posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=502, html=True, count=1)
    assert client.get_batch_export(export["id"]).id == export["id"]
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=500, html=True, count=None)
    with pytest.raises(PostHogServerError, match=r"non-JSON error body \(text/html") as exc:
        client.get_batch_export(export["id"])
    assert "<html" not in str(exc.value).lower()
    assert _gets(posthog_conn) == [502, 200, 500, 500, 500, 500]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, PostHogValidationError),
        (401, PostHogAuthError),
        (403, PostHogAuthError),
        (404, PostHogNotFoundError),
        (405, PostHogAPIError),
    ],
)
def test_client_errors_are_not_retried(
    client: HookClient, posthog_conn: Any, export: Any, status: int, cls: type[Exception]
) -> None:
    posthog_conn.control.add_fault(EXPORT_PATH, method="GET", status=status, count=None)
    with pytest.raises(cls) as exc:
        client.get_batch_export(export["id"])
    assert type(exc.value) is cls and exc.value.http_status == status  # type: ignore[attr-defined]
    assert _gets(posthog_conn) == [status]


# -- non-idempotent POSTs ---------------------------------------------------------------------------------


def _bounds() -> tuple[dt.datetime, dt.datetime]:
    end = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    return end - dt.timedelta(hours=2), end


def _posts(emu: Any) -> list[int]:
    return [e.status for e in emu.control.request_log if e.method == "POST"]


def test_create_backfill_resent_after_5xx_only_when_nothing_appeared(
    client: HookClient, posthog_conn: Any, export: Any
) -> None:
    posthog_conn.control.add_fault("/backfills/$", method="POST", status=503, count=1)
    start, end = _bounds()
    backfill = client.create_backfill(export["id"], start, end)
    assert backfill.end_at == end
    assert _posts(posthog_conn) == [503, 201]
    assert len(posthog_conn.control.backfills_for(export["id"])) == 1


def test_create_backfill_dropped_connection_is_checked_then_resent(
    client: HookClient, posthog_conn: Any, export: Any
) -> None:
    """Dropped before PostHog processed it: nothing appears, so one more POST; still exactly one backfill.

    An older backfill over the same range exists and must not be taken for the new one.
    """
    start, end = _bounds()
    older = posthog_conn.control.seed_backfill(export["id"], start, end, status="Completed")
    posthog_conn.control.add_fault("/backfills/$", method="POST", drop_connection=True, count=1)
    backfill = client.create_backfill(export["id"], start, end)
    assert backfill.id != older["id"] and backfill.end_at == end
    assert _posts(posthog_conn) == [0, 201]
    assert len(posthog_conn.control.backfills_for(export["id"])) == 2


def test_create_backfill_throttled_is_resent(client: HookClient, posthog_conn: Any, export: Any) -> None:
    posthog_conn.control.add_fault("/backfills/$", method="POST", status=429, retry_after=0, count=1)
    start, end = _bounds()
    assert client.create_backfill(export["id"], start, end).end_at == end
    assert _posts(posthog_conn) == [429, 201]


def test_create_export_not_resent_after_5xx(client: HookClient, posthog_conn: Any) -> None:
    posthog_conn.control.add_fault("/batch_exports/$", method="POST", status=503, count=1)
    payload = {"name": "once", "interval": "hour", "destination": {"type": "NoOp", "config": {}}}
    with pytest.raises(PostHogServerError):
        client.create_batch_export(payload)
    assert _posts(posthog_conn) == [503]


def test_connection_refused_is_retried_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    monkeypatch.setenv(
        "AIRFLOW_CONN_POSTHOG_DEAD",
        f"posthog://:phx_deadkey12345@127.0.0.1:{port}?project_id=1&scheme=http",
    )
    calls: list[float] = []
    real = PostHogHook._send_once

    def counting(self: PostHogHook, *a: Any, **k: Any) -> Any:
        calls.append(time.monotonic())
        return real(self, *a, **k)

    monkeypatch.setattr(PostHogHook, "_send_once", counting)
    with pytest.raises(PostHogTransportError, match="gave up after 4 attempts") as exc:
        PostHogHook("posthog_dead", retry_policy=FAST_POLICY).create_batch_export({"name": "x"})
    assert len(calls) == 4 and "phx_deadkey12345" not in str(exc.value)


# -- test_connection against the emulator -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_test_connection_outcomes(posthog_conn: Any, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    emu = posthog_conn
    clients: list[HookClient] = []

    def conn(password: str | None = None, project: int = emu.project_id) -> HookClient:
        if password is None:
            client = HookClient(kind)
        else:
            monkeypatch.setenv(
                "AIRFLOW_CONN_POSTHOG_T",
                f"posthog://:{password}@{emu.base_url.split('://')[1]}?project_id={project}&scheme=http",
            )
            client = HookClient(kind, posthog_conn_id="posthog_t", retry_policy=FAST_POLICY)
        clients.append(client)
        return client

    try:
        ok, message = conn().test_connection()
        assert ok and message.startswith(
            f"Connected to PostHog at {emu.base_url}: project {emu.project_id} is readable"
        )
        ok, message = conn("phx_not_a_real_key_123").test_connection()
        assert (
            not ok and "rejected the API key (HTTP 401" in message and "phx_not_a_real_key_123" not in message
        )
        emu.control.add_api_key("phx_flags_only_key_1", scopes=("feature_flag:read",))
        ok, message = conn("phx_flags_only_key_1").test_connection()
        assert not ok and "lacks a scope" in message and "batch_export:read" in message
        emu.control.add_api_key("phx_project_2_only_1", project_ids=[2])
        ok, message = conn("phx_project_2_only_1").test_connection()
        assert not ok and f"may not access project {emu.project_id}" in message
        ok, message = conn(emu.api_key, project=424242).test_connection()
        assert not ok and "Project 424242 was not found" in message
    finally:
        for client in clients:
            client.close()
    assert [e.status for e in emu.control.request_log] == [200, 401, 403, 403, 404]  # one request each


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_read_timeout_from_connection_extra(
    posthog_conn: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    emu = posthog_conn
    export = emu.control.seed_export(name="slow")
    monkeypatch.setenv(
        "AIRFLOW_CONN_POSTHOG_SLOW",
        f"posthog://:{emu.api_key}@{emu.base_url.split('://')[1]}?project_id={emu.project_id}&scheme=http&timeout=0.2",
    )
    emu.control.add_fault(EXPORT_PATH, method="GET", status=None, latency=0.6, count=2)
    client = HookClient(kind, posthog_conn_id="posthog_slow", retry_policy=FAST_POLICY)
    try:
        started = time.monotonic()
        assert client.get_batch_export(export["id"]).id == export["id"]  # 2 timeouts, then a fast answer
        assert time.monotonic() - started < 3.0  # the request count below is the real proof
    finally:
        client.close()
    # The two slow answers are logged by the emulator when they finish, after the client gave up on them.
    wait_until(lambda: emu.control.count_requests("GET", export["id"]) == 3, timeout=5)
