"""The key stays out of what the hooks raise and say, whatever the server echoes; plain http:// is warned
about; 404 and 401 messages name what went wrong. Real HTTP on 127.0.0.1, both transports."""

from __future__ import annotations

import http.server
import json
import threading
from typing import TYPE_CHECKING, Any

import pytest
from hook_clients import HookClient
from hook_helpers import FAST_POLICY

from airflow_provider_posthog.exceptions import PostHogAuthError, PostHogError, PostHogNotFoundError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_posthog.emulator.server import PostHogEmulator

KEY = "phx_echoed_by_a_hostile_server_0123"
DEST_SECRET = "dest-secret-access-key-98765"
PROJECT = 10001


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with an error whose every field quotes the key and the request body."""

    status = 400

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length).decode() if length else ""
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = json.dumps(
            {
                "type": f"validation_error for {key}",
                "code": f"bad_key_{key}",
                "detail": {"you sent": [key, sent], "authorization": f"Bearer {key}"},
                "attr": f"destination__{key}",
                "hint": {key: sent},
            }
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _set_conn(monkeypatch: pytest.MonkeyPatch, host: str, key: str = KEY) -> None:
    conn = {"conn_type": "posthog", "host": host, "password": key, "extra": {"project_id": PROJECT}}
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_DEFAULT", json.dumps(conn))


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _exposed(exc: BaseException) -> str:
    return " ".join(map(str, (str(exc), repr(exc), exc.args, vars(exc))))


@pytest.mark.parametrize("status", [400, 404, 500])
def test_an_error_that_echoes_the_key_in_every_field_carries_it_nowhere(
    monkeypatch: pytest.MonkeyPatch,
    echo_server: http.server.ThreadingHTTPServer,
    kind: str,
    status: int,
) -> None:
    monkeypatch.setattr(_Echo, "status", status)
    _set_conn(monkeypatch, f"http://127.0.0.1:{echo_server.server_address[1]}")
    client = HookClient(kind, retry_policy=FAST_POLICY)
    try:
        with pytest.raises(PostHogError) as listed:
            client.list_batch_exports()
        payload = {
            "name": "export",
            "interval": "hour",
            "destination": {
                "type": "S3",
                "config": {"bucket_name": "b", "aws_secret_access_key": DEST_SECRET},
            },
        }
        with pytest.raises(PostHogError) as created:
            client.create_batch_export(payload)
        ok, message = client.test_connection()
    finally:
        client.close()
    for exc in (listed.value, created.value):
        exposed = _exposed(exc)
        assert KEY not in exposed and DEST_SECRET not in exposed
        assert "***" in str(getattr(exc, "code", ""))  # the field was there, scrubbed
    assert "bad_key_***" in str(created.value)
    assert not ok and KEY not in message


def test_plain_http_to_another_host_is_warned_about_once_per_hook(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    _set_conn(monkeypatch, "http://posthog.internal.example:8000")
    client = HookClient(kind)
    try:
        for export in (None, "e1", "e2"):  # each reads the connection's settings (no request)
            client.ui_url(export)
    finally:
        client.close()
    out = capsys.readouterr()
    text = out.out + out.err
    warning = (
        "The PostHog connection 'posthog_default' sends the API key unencrypted over plain http:// to "
        "posthog.internal.example; use https:// in its host."
    )
    assert text.count(warning) == 1 and KEY not in text


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:8010",
        "http://127.8.9.10:8010",
        "http://localhost:8010",
        "http://[::1]:8010",
        "https://posthog.internal.example",
    ],
)
def test_https_and_this_machine_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    _set_conn(monkeypatch, host)
    client = HookClient("sync")
    client.ui_url()
    out = capsys.readouterr()
    assert "unencrypted" not in out.out + out.err


def test_a_404_names_the_export_run_and_backfill_it_was_about(client: HookClient) -> None:
    missing = "0e21c3f4-7a5b-4c7e-9d1f-2a3b4c5d6e7f"
    with pytest.raises(PostHogNotFoundError) as export:
        client.get_batch_export(missing)
    assert f"No batch export {missing} in project {PROJECT} was found" in str(export.value)
    existing = client.create_batch_export(
        {"name": "named 404", "interval": "hour", "destination": {"type": "NoOp", "config": {}}}
    ).id
    with pytest.raises(PostHogNotFoundError) as run:
        client.get_run(existing, "8f0a9d5e-0000-4000-8000-000000000001")
    assert (
        f"No run 8f0a9d5e-0000-4000-8000-000000000001 of batch export {existing} in project {PROJECT} "
        "was found"
    ) in str(run.value)
    with pytest.raises(PostHogNotFoundError) as backfill:
        client.get_backfill(existing, "8f0a9d5e-0000-4000-8000-000000000002")
    assert f"No backfill 8f0a9d5e-0000-4000-8000-000000000002 of batch export {existing}" in str(
        backfill.value
    )


def test_a_401_for_a_personal_key_does_not_call_it_a_project_key(
    posthog_emulator: PostHogEmulator, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    _set_conn(monkeypatch, posthog_emulator.base_url, key="phx_revoked_or_mistyped_key_000")
    client = HookClient(kind, retry_policy=FAST_POLICY)
    try:
        with pytest.raises(PostHogAuthError) as exc:
            client.list_batch_exports()
        ok, message = client.test_connection()
    finally:
        client.close()
    for text in (str(exc.value), message):
        assert "project key" not in text
        assert "Check the personal API key in the connection's password" in text
    assert not ok and message.startswith(
        f"PostHog at {posthog_emulator.base_url} rejected the API key (HTTP 401"
    )
