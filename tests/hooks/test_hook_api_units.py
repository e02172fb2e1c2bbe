"""Pure api/ modules: request descriptions, pagination, error mapping, retry decisions and waits."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time

import pendulum
import pytest

from airflow_provider_posthog.api import requests as rq
from airflow_provider_posthog.api.errors import (
    add_attempts,
    decode_response,
    error_from_response,
    parse_retry_after,
    transport_error,
)
from airflow_provider_posthog.api.retry import RetryPolicy
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConfigError,
    PostHogConnectError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTooManyBackfillsError,
    PostHogTransportError,
    PostHogValidationError,
)

BASE = "https://us.posthog.com"


def test_endpoint_catalogue_paths_and_idempotency() -> None:
    specs = {
        "list": rq.list_batch_exports(1),
        "create": rq.create_batch_export(1, {"name": "x"}),
        "get": rq.get_batch_export(1, "e"),
        "put": rq.update_batch_export(1, "e", {"name": "y"}, partial=False),
        "patch": rq.update_batch_export(1, "e", {"name": "y"}),
        "delete": rq.delete_batch_export(1, "e"),
        "pause": rq.pause_batch_export(1, "e"),
        "unpause": rq.unpause_batch_export(1, "e", backfill=True),
        "logs": rq.batch_export_logs(1, "e", level=["error", "warning"], limit=10),
        "runs": rq.list_runs(1, "e", status=["Failed", "FailedRetryable"], after="-2d"),
        "run": rq.get_run(1, "e", "r"),
        "cancel_run": rq.cancel_run(1, "e", "r"),
        "retry_run": rq.retry_run(1, "e", "r"),
        "backfills": rq.list_backfills(1, "e", ordering="-created_at"),
        "backfill": rq.get_backfill(1, "e", "b"),
        "create_backfill": rq.create_backfill(
            1,
            "e",
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "2024-01-02T00:00:00Z",
        ),
        "cancel_backfill": rq.cancel_backfill(1, "e", "b"),
    }
    p = "/api/projects/1/batch_exports/"
    assert {k: (s.method, s.path) for k, s in specs.items()} == {
        "list": ("GET", p),
        "create": ("POST", p),
        "get": ("GET", p + "e/"),
        "put": ("PUT", p + "e/"),
        "patch": ("PATCH", p + "e/"),
        "delete": ("DELETE", p + "e/"),
        "pause": ("POST", p + "e/pause/"),
        "unpause": ("POST", p + "e/unpause/"),
        "logs": ("GET", p + "e/logs/"),
        "runs": ("GET", p + "e/runs/"),
        "run": ("GET", p + "e/runs/r/"),
        "cancel_run": ("POST", p + "e/runs/r/cancel/"),
        "retry_run": ("POST", p + "e/runs/r/retry/"),
        "backfills": ("GET", p + "e/backfills/"),
        "backfill": ("GET", p + "e/backfills/b/"),
        "create_backfill": ("POST", p + "e/backfills/"),
        "cancel_backfill": ("POST", p + "e/backfills/b/cancel/"),
    }
    not_idempotent = {k for k, s in specs.items() if not s.idempotent}
    assert not_idempotent == {"create", "retry_run", "create_backfill"}
    assert specs["unpause"].json == {"backfill": True}
    assert specs["create_backfill"].json == {
        "start_at": "2024-01-01T05:00:00+00:00",
        "end_at": "2024-01-02T00:00:00Z",
    }
    assert specs["logs"].full_url(BASE) == f"{BASE}{p}e/logs/?limit=10&level=ERROR%2CWARNING"
    assert specs["runs"].params == (("after", "-2d"), ("status", "Failed"), ("status", "FailedRetryable"))


def test_path_segments_are_quoted_and_validated() -> None:
    assert rq.get_run(1, "a/b", "c d").path == "/api/projects/1/batch_exports/a%2Fb/runs/c%20d/"
    with pytest.raises(PostHogConfigError):
        rq.get_batch_export(1, "")
    with pytest.raises(PostHogConfigError, match="naive"):
        rq.create_backfill(1, "e", dt.datetime(2024, 1, 1), "2024-01-02")
    with pytest.raises(PostHogConfigError, match="between 1 and 500"):
        rq.batch_export_logs(1, "e", limit=501)


def test_offset_pagination() -> None:
    first = rq.list_batch_exports(1)
    body = {
        "count": 150,
        "next": "https://x/api/?offset=100",
        "results": [{"id": str(i)} for i in range(100)],
    }
    nxt = rq.next_offset_request(first, body)
    assert nxt is not None and dict(nxt.params) == {"limit": "100", "offset": "100"}
    assert rq.next_offset_request(nxt, {"next": None, "results": [{"id": "x"}]}) is None
    assert rq.next_offset_request(nxt, {"next": "https://x/api/", "results": []}) is None  # no endless loop


def test_cursor_next_is_rebased_onto_our_host() -> None:
    spec = rq.list_runs(1, "e")
    body = {
        "next": "http://internal:8000/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x",
        "results": [],
    }
    nxt = rq.next_cursor_request(spec, body, "https://ph.example.com/prefix")
    assert nxt is not None
    assert (
        nxt.full_url("ignored")
        == "https://ph.example.com/prefix/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x"
    )
    assert rq.next_cursor_request(spec, {"next": None}, BASE) is None
    with pytest.raises(PostHogAPIError, match="outside /api/") as exc:  # PostHog's fault, not the user's
        rq.rebase_url(BASE, "https://evil.example.com/steal")
    assert not isinstance(exc.value, PostHogConfigError)


def test_ui_url() -> None:
    assert rq.ui_url(BASE, 5) == f"{BASE}/project/5/pipeline/batch-exports"
    assert rq.ui_url(BASE, 5, "e", "backfills") == f"{BASE}/project/5/pipeline/batch-exports/e?tab=backfills"
    with pytest.raises(PostHogConfigError):
        rq.ui_url(BASE, 5, "e", "nope")


def _err(status: int, body: object = None, **kw: object) -> PostHogAPIError:
    content = json.dumps(body).encode() if body is not None else b""
    return error_from_response(
        method="POST", path="/api/projects/1/batch_exports/", status=status, content=content, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            400,
            {"type": "validation_error", "code": "invalid_input", "detail": "bad", "attr": "destination"},
            PostHogValidationError,
        ),
        (
            401,
            {"type": "authentication_error", "code": "authentication_failed", "detail": "invalid"},
            PostHogAuthError,
        ),
        (
            403,
            {"code": "permission_denied", "detail": "API key missing required scope 'batch_export:write'"},
            PostHogAuthError,
        ),
        (404, {"code": "not_found", "detail": "Not found."}, PostHogNotFoundError),
        (405, {"code": "method_not_allowed", "detail": 'Method "DELETE" not allowed.'}, PostHogAPIError),
        (
            429,
            {
                "type": "throttled_error",
                "code": "throttled",
                "detail": "Request was throttled. Expected available in 7 seconds.",
            },
            PostHogRateLimitError,
        ),
        (
            429,
            {
                "type": "server_error",
                "code": "too_many_concurrent_backfills",
                "detail": "This team already has 2 batch export backfills running.",
            },
            PostHogTooManyBackfillsError,
        ),
        (
            500,
            {"type": "server_error", "code": "error", "detail": "A server error occurred."},
            PostHogServerError,
        ),
        (503, None, PostHogServerError),
    ],
)
def test_status_maps_to_exception(status: int, body: object, cls: type[Exception]) -> None:
    exc = _err(status, body)
    assert type(exc) is cls
    assert exc.http_status == status and exc.method == "POST" and exc.path == "/api/projects/1/batch_exports/"
    text = str(exc)
    assert "POST /api/projects/1/batch_exports/" in text and f"HTTP {status}" in text
    if isinstance(body, dict):
        assert body["detail"] in text and exc.detail == body["detail"]


def test_error_details() -> None:
    v = _err(400, {"code": "invalid_input", "detail": "Integration is required", "attr": "destination"})
    assert v.attr == "destination" and "[field: destination]" in str(v)
    t = _err(429, {"code": "throttled", "detail": "Request was throttled. Expected available in 7 seconds."})
    assert isinstance(t, PostHogRateLimitError) and t.retry_after == 7.0
    t2 = _err(429, {"code": "throttled", "detail": "x"}, retry_after="3")
    assert isinstance(t2, PostHogRateLimitError) and t2.retry_after == 3.0
    scope = _err(403, {"detail": "API key missing required scope 'batch_export:write'"})
    assert "batch_export:write" in str(scope) and "Personal API keys" in str(scope)
    html = error_from_response(
        method="GET",
        path="/p",
        status=502,
        content=b"<html>bad gateway</html>",
        content_type="text/html; charset=utf-8",
    )
    assert (
        isinstance(html, PostHogServerError)
        and "non-JSON error body (text/html" in str(html)
        and "<html>" not in str(html)
    )
    echoed = _err(
        401, {"detail": "Personal API key phx_leaky_secret_1 is invalid"}, secrets=("phx_leaky_secret_1",)
    )
    assert "phx_leaky_secret_1" not in str(echoed) and "***" in str(echoed)


def test_decode_response() -> None:
    common = {
        "method": "GET",
        "path": "/p",
        "content_type": "application/json",
        "retry_after": None,
        "location": None,
    }
    assert decode_response(status=200, content=b'{"a": 1}', **common).body == {"a": 1}  # type: ignore[arg-type]
    assert decode_response(status=204, content=b"", **common).body is None  # type: ignore[arg-type]
    with pytest.raises(PostHogAPIError, match="non-JSON body"):
        decode_response(status=200, content=b"<html>login</html>", **common)  # type: ignore[arg-type]
    with pytest.raises(PostHogAPIError, match=r"redirected.*https://eu\.posthog\.com"):
        decode_response(**{**common, "location": "https://eu.posthog.com/api/x"}, status=301, content=b"")  # type: ignore[arg-type]


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(date, now=now) or 0) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_retry_decisions() -> None:
    policy = RetryPolicy()
    server = {s: _err(s, {"detail": "x"}) for s in (500, 501, 502, 503, 504)}
    sent = transport_error(method="GET", path="/p", error=TimeoutError("read timed out"), sent=True)
    not_sent = transport_error(method="GET", path="/p", error=ConnectionRefusedError("refused"), sent=False)
    assert isinstance(not_sent, PostHogConnectError) and isinstance(not_sent, PostHogTransportError)
    throttled = _err(429, {"code": "throttled"})
    too_many = _err(429, {"code": "too_many_concurrent_backfills"})
    for idem in (True, False):
        assert policy.should_retry(throttled, idempotent=idem)
        assert policy.should_retry(not_sent, idempotent=idem)
        assert not policy.should_retry(too_many, idempotent=idem)
        for s in (400, 401, 403, 404, 405):
            assert not policy.should_retry(_err(s, {"detail": "x"}), idempotent=idem)
    assert all(policy.should_retry(server[s], idempotent=True) for s in (500, 502, 503, 504))
    assert not policy.should_retry(server[501], idempotent=True)
    assert policy.should_retry(sent, idempotent=True)
    # Ambiguous failures of a non-idempotent POST are never resent blindly.
    assert not any(policy.should_retry(server[s], idempotent=False) for s in (500, 502, 503, 504))
    assert not policy.should_retry(sent, idempotent=False)


def test_waits() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=8.0, max_retry_after=60.0)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [policy.wait_for(None, attempt) for _ in range(50)]
        assert all(base / 2 <= w <= base for w in waits)
        assert len(set(waits)) > 1  # jitter
    honoured = PostHogRateLimitError("x", retry_after=12.0)
    honoured_waits = [policy.wait_for(honoured, 1) for _ in range(50)]
    assert all(12.0 <= w <= 18.0 for w in honoured_waits) and len(set(honoured_waits)) > 1  # jittered
    assert all(
        60.0 <= policy.wait_for(PostHogRateLimitError("x", retry_after=600.0), 1) <= 90.0 for _ in range(20)
    )  # capped
    assert 0.5 <= policy.wait_for(PostHogRateLimitError("x", retry_after=None), 1) <= 1.0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retrying_is_bounded_by_attempts_and_time() -> None:
    calls: list[float] = []

    def fail() -> None:
        calls.append(time.monotonic())
        raise _err(503, {"detail": "down"})

    policy = RetryPolicy(max_attempts=3, max_elapsed=60, backoff_initial=0.001, backoff_max=0.002)
    with pytest.raises(PostHogServerError):
        for attempt in policy.retrying(idempotent=True):
            with attempt:
                fail()
    assert len(calls) == 3
    calls.clear()
    slow = RetryPolicy(max_attempts=50, max_elapsed=0.3, backoff_initial=0.1, backoff_max=0.1)
    started = time.monotonic()
    with pytest.raises(PostHogServerError):
        for attempt in slow.retrying(idempotent=True):
            with attempt:
                fail()
    assert time.monotonic() - started < 1.5 and 2 <= len(calls) <= 6


def test_add_attempts_keeps_type() -> None:
    exc = add_attempts(_err(503, {"detail": "down"}), 5, 12.34)
    assert isinstance(exc, PostHogServerError) and "gave up after 5 attempts in 12.3s" in str(exc)


def test_format_datetime() -> None:
    assert (
        rq.format_datetime(pendulum.datetime(2024, 1, 1, 5, tz="Europe/Berlin"))
        == "2024-01-01T04:00:00+00:00"
    )
    assert rq.format_datetime(dt.date(2024, 1, 1)) == "2024-01-01"
    assert rq.format_datetime(" -7d ") == "-7d"


def test_hook_module_imports_no_http_library_eagerly() -> None:
    """Operators import the hook lazily; the hook itself imports requests only when it sends."""
    import subprocess
    import sys

    code = (
        "import sys; import airflow_provider_posthog.hooks.posthog; "
        "import airflow_provider_posthog.api.operations; print('requests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_throttles_have_their_own_longer_budget() -> None:
    """A key throttled for longer than ``max_elapsed`` still gets through within ``max_throttled``."""
    started = time.monotonic()
    calls = 0

    def throttled_for_half_a_second() -> str:
        nonlocal calls
        calls += 1
        if time.monotonic() - started < 0.5:
            raise PostHogRateLimitError("throttled", retry_after=0.05, http_status=429)
        return "ok"

    policy = RetryPolicy(
        max_attempts=2, max_elapsed=0.2, max_throttled=5.0, max_retry_after=0.05, backoff_initial=0.01
    )
    for attempt in policy.retrying(idempotent=True):
        with attempt:
            result = throttled_for_half_a_second()
    assert result == "ok" and calls > 2  # more than max_attempts, longer than max_elapsed
    short = RetryPolicy(max_attempts=2, max_elapsed=0.2, max_throttled=0.2, max_retry_after=0.05)
    started, calls = time.monotonic(), 0
    with pytest.raises(PostHogRateLimitError):
        for attempt in short.retrying(idempotent=True):
            with attempt:
                throttled_for_half_a_second()
