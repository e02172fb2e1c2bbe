"""Scripted faults, rate limits and the request log."""

from __future__ import annotations

import re
import socket
import time
from typing import TYPE_CHECKING

import pytest
import requests

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api


def test_status_fault_for_a_count_of_calls(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.add_fault(r"/batch_exports/?$", method="GET", status=503, count=2)
    for _ in range(2):
        response = api.get("")
        assert response.status_code == 503
        assert response.json() == {
            "type": "server_error",
            "code": "error",
            "detail": "A server error occurred.",
            "attr": None,
        }
    assert api.get("").status_code == 200
    assert api.post("", {"name": "x"}).status_code == 400  # other method not affected


def test_fault_429_with_and_without_retry_after(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.add_fault("batch_exports", status=429, retry_after=7)
    control.add_fault("batch_exports", status=429)
    first = api.get("")
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert first.json()["type"] == "throttled_error" and first.json()["code"] == "throttled"
    second = api.get("")
    assert second.status_code == 429 and "Retry-After" not in second.headers


def test_html_error_page_fault(api: Api, posthog_emulator: PostHogEmulator) -> None:
    posthog_emulator.control.add_fault("batch_exports", status=502, html=True)
    response = api.get("")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def test_latency_fault(api: Api, posthog_emulator: PostHogEmulator) -> None:
    posthog_emulator.control.add_fault("batch_exports", status=None, latency=0.3)
    started = time.monotonic()
    response = api.get("")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_dropped_connection_fault(api: Api, posthog_emulator: PostHogEmulator) -> None:
    posthog_emulator.control.add_fault("batch_exports", drop_connection=True)
    with pytest.raises(requests.ConnectionError):
        requests.get(api.url(), headers=posthog_emulator.auth_headers, timeout=5)
    assert api.get("").status_code == 200
    assert [e.status for e in posthog_emulator.control.request_log] == [0, 200]


def test_unlimited_fault_until_cleared(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.add_fault("runs", status=500, count=None)
    export = api.create_export()
    for _ in range(3):
        assert api.get(f"{export['id']}/runs").status_code == 500
    control.clear_faults()
    assert api.get(f"{export['id']}/runs").status_code == 200


def test_request_log_counts_calls(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    api.get(f"{export['id']}/runs", params={"ordering": "created_at"})
    api.get("nope-not-uuid")
    log = control.request_log
    assert [(e.method, e.status) for e in log] == [("POST", 201), ("GET", 200), ("GET", 404)]
    assert log[1].path == f"/api/projects/{api.emulator.project_id}/batch_exports/{export['id']}/runs"
    assert log[1].query == "ordering=created_at"
    assert control.count_requests("GET", "/runs") == 1
    control.clear_request_log()
    assert control.request_log == []


def test_rate_limit_per_minute_with_retry_after(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.configure(rate_limit_per_minute=3)
    for _ in range(3):
        assert api.get("").status_code == 200
    throttled = api.get("")
    assert throttled.status_code == 429
    body = throttled.json()
    assert body["type"] == "throttled_error" and body["code"] == "throttled" and body["attr"] is None
    assert body["detail"].startswith("Request was throttled. Expected available in ")
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    control.add_api_key("phx_other")
    assert api.get("", key="phx_other").status_code == 200  # the bucket is per key
    control.advance(61)
    assert api.get("").status_code == 200


def test_rate_limit_per_hour_without_retry_after(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.configure(rate_limit_per_hour=2, retry_after_header=False)
    assert api.get("").status_code == 200
    control.advance(120)
    assert api.get("").status_code == 200
    control.advance(120)
    throttled = api.get("")
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
    assert throttled.json()["detail"] == "Request was throttled. Expected available in 3360 seconds."
    control.advance(3400)
    assert api.get("").status_code == 200


def test_unauthenticated_calls_are_not_throttled(api: Api, posthog_emulator: PostHogEmulator) -> None:
    posthog_emulator.control.configure(rate_limit_per_minute=1)
    assert api.get("").status_code == 200
    assert api.session.get(api.url()).status_code == 401
    assert api.get("").status_code == 429


def test_admin_http_routes(api: Api, posthog_emulator: PostHogEmulator) -> None:
    base = f"{posthog_emulator.base_url}/_emulator"
    export = requests.post(f"{base}/exports", json={"name": "seeded"}, timeout=5).json()
    assert api.get(export["id"]).json()["name"] == "seeded"
    run = requests.post(
        f"{base}/runs",
        json={
            "batch_export_id": export["id"],
            "data_interval_start": None,
            "data_interval_end": "2024-01-01T00:00:00Z",
            "status": "Running",
        },
        timeout=5,
    ).json()
    assert run["status"] == "Running" and run["data_interval_start"] is None
    requests.post(
        f"{base}/runs/{run['id']}/status", json={"status": "Failed", "latest_error": "x"}, timeout=5
    )
    assert api.get(f"{export['id']}/runs/{run['id']}").json()["status"] == "Failed"
    before = requests.get(f"{base}/now", timeout=5).json()["now"]
    after = requests.post(f"{base}/advance", json={"seconds": 3600}, timeout=5).json()["now"]
    assert after > before
    requests.post(f"{base}/faults", json={"path_regex": "batch_exports", "status": 500}, timeout=5)
    assert api.get("").status_code == 500
    log = requests.get(f"{base}/requests", timeout=5).json()
    assert [e["status"] for e in log][-1] == 500
    assert requests.post(f"{base}/nonsense", timeout=5).status_code == 400
    assert requests.post(f"{base}/reset", timeout=5).json() == {"ok": True}
    assert api.get("").json()["count"] == 0


def _raw_get(emulator: PostHogEmulator, path: str) -> socket.socket:
    """A GET sent over a bare socket, so the test sees when each byte of the answer arrives."""
    sock = socket.create_connection(("127.0.0.1", emulator.port), timeout=5)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {emulator.api_key}\r\n\r\n".encode()
    )
    return sock


def test_trickle_fault_sends_the_real_answer_one_byte_at_a_time(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    """Headers at once (with the body's length), then one byte per ``trickle`` seconds."""
    posthog_emulator.control.add_fault("batch_exports", method="GET", trickle=0.1)
    started = time.monotonic()
    with _raw_get(posthog_emulator, f"/api/projects/{posthog_emulator.project_id}/batch_exports/") as sock:
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        headers_at = time.monotonic() - started
        assert head.startswith(b"HTTP/1.1 200 ")
        declared = re.search(rb"(?i)content-length: (\d+)", head)
        assert b"chunked" not in head.lower()
        arrivals = []
        for _ in range(4):
            assert len(sock.recv(64)) == 1  # one byte per send, however much the client asks for
            arrivals.append(time.monotonic() - started)
    assert headers_at < 0.09
    assert arrivals[0] >= 0.09 and arrivals[-1] >= 0.39
    assert declared and int(declared[1]) > 4  # the client hung up mid-body; the next call is answered
    assert api.get("").status_code == 200
    assert [e.status for e in posthog_emulator.control.request_log] == [200, 200]


def test_trickled_answer_is_complete_and_can_carry_a_status(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    normal = api.get("")
    control.add_fault("batch_exports", method="GET", trickle=0.005)
    started = time.monotonic()
    slow = api.get("")
    assert time.monotonic() - started >= 0.005 * len(normal.content)
    assert (slow.status_code, slow.content) == (200, normal.content)
    base = f"{posthog_emulator.base_url}/_emulator"
    fault = {"path_regex": "batch_exports", "status": 503, "trickle": 0.005}
    assert requests.post(f"{base}/faults", json=fault, timeout=5).json()["ok"] is True
    listed = requests.get(f"{base}/faults", timeout=5).json()
    assert [(f["status"], f["trickle"]) for f in listed] == [(503, 0.005)]
    unavailable = api.get("")
    assert unavailable.status_code == 503 and unavailable.json()["detail"] == "A server error occurred."
    with pytest.raises(ValueError, match="trickle"):
        control.add_fault("batch_exports", trickle=-1)
