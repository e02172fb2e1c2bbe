"""Airflow stores every trigger event in its database: no event may carry the API key, whatever PostHog (or a
hook error) quoted it in."""

from __future__ import annotations

import http.server
import json
import threading
from typing import TYPE_CHECKING, Any

import pytest
from fake_posthog import BACKFILL, EXPORT, SETTINGS, FakeAsyncHook, FakePostHog, run_row

from airflow_provider_posthog.exceptions import PostHogServerError, PostHogValidationError
from airflow_provider_posthog.hooks.posthog_async import aclose_shared_clients
from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_posthog.api.connection import ConnectionSettings

KEY = SETTINGS.api_key


class KeyedHook(FakeAsyncHook):
    """The fake hook, holding its settings the way the real one does once it read its connection."""

    async def _asettings(self, project_id: int | str | None = None) -> ConnectionSettings:
        self._settings_cache = SETTINGS
        return await super()._asettings(project_id)


def _trigger(fake: FakePostHog) -> PostHogBackfillTrigger:
    trigger = PostHogBackfillTrigger(batch_export_id=EXPORT, backfill_id=BACKFILL, poll_interval=0.01)
    hook = KeyedHook(fake)
    trigger._hook = lambda: hook  # type: ignore[method-assign]
    return trigger


async def _payload(trigger: PostHogBackfillTrigger) -> dict[str, Any]:
    (event,) = [event async for event in trigger.run()]
    return dict(event.payload)


@pytest.mark.parametrize("final", [True, False])
async def test_a_hook_error_quoting_the_key_in_code_and_attr_leaves_no_key_in_the_event(final: bool) -> None:
    cls = PostHogValidationError if final else PostHogServerError
    echoed = cls(
        f"PostHog API GET /api/projects/7/batch_exports/e1/backfills/b1/ failed ({KEY}): detail {KEY}",
        http_status=400 if final else 500,
        code=f"code_{KEY}",
        attr=f"attr_{KEY}",
        detail=KEY,
    )
    fake = FakePostHog().backfill(echoed)
    trigger = _trigger(fake)
    if not final:
        trigger.end_time = 0.0  # a transient error: the wait ends at its deadline, naming the last error
    payload = await _payload(trigger)
    assert KEY not in json.dumps(payload)
    assert "failed (***): detail ***" in payload["message"]
    assert payload["status"] == ("error" if final else "timeout")
    assert payload.get("final", False) is final


async def test_a_failed_run_quoting_the_key_leaves_no_key_in_the_event() -> None:
    fake = FakePostHog().backfill("Completed")
    fake.run_list = [run_row("Failed", run_id="bad", latest_error=f"auth {KEY} refused")]
    payload = await _payload(_trigger(fake))
    assert payload["status"] == "failed"
    assert payload["failed_runs"] and KEY not in json.dumps(payload)
    assert any(run.get("latest_error") == "auth *** refused" for run in payload["failed_runs"])


class _Echo(http.server.BaseHTTPRequestHandler):
    """A server that answers 404 quoting the Authorization header in every field of PostHog's envelope."""

    def do_GET(self) -> None:
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = json.dumps(
            {"type": f"invalid_request {key}", "code": f"not_found_{key}", "detail": key, "attr": key}
        ).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


async def test_a_real_hook_on_a_server_echoing_the_key_yields_an_event_without_it(
    monkeypatch: pytest.MonkeyPatch, echo_server: http.server.ThreadingHTTPServer
) -> None:
    key = "phx_real_hook_key_echoed_0123456"
    conn = {
        "conn_type": "posthog",
        "host": f"http://127.0.0.1:{echo_server.server_address[1]}",
        "password": key,
        "extra": {"project_id": 10001},
    }
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_ECHO", json.dumps(conn))
    trigger = PostHogBackfillTrigger(
        batch_export_id="e1", backfill_id="b1", posthog_conn_id="posthog_echo", poll_interval=0.01
    )
    try:
        payload = await _payload(trigger)
    finally:
        await aclose_shared_clients()
    assert payload["status"] == "error" and payload["final"] is True
    assert key not in json.dumps(payload)
    assert "not_found_***" in payload["message"]
    assert "No backfill b1 of batch export e1 in project 10001 was found" in payload["message"]
