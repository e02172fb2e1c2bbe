"""HTTP answers and transport failures -> the exception hierarchy (api/errors.py)."""

from __future__ import annotations

import email.utils
import time

import pytest
from op_driver import api_error

from airflow_provider_posthog.api.errors import (
    add_attempts,
    decode_response,
    error_from_response,
    parse_retry_after,
)
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTooManyBackfillsError,
    PostHogValidationError,
)


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
    exc = api_error(status, body)
    assert type(exc) is cls
    assert exc.http_status == status and exc.method == "POST" and exc.path == "/api/projects/1/batch_exports/"
    text = str(exc)
    assert "POST /api/projects/1/batch_exports/" in text and f"HTTP {status}" in text
    if isinstance(body, dict):
        assert body["detail"] in text and exc.detail == body["detail"]


def test_error_details() -> None:
    v = api_error(400, {"code": "invalid_input", "detail": "Integration is required", "attr": "destination"})
    assert v.attr == "destination" and "[field: destination]" in str(v)
    t = api_error(
        429, {"code": "throttled", "detail": "Request was throttled. Expected available in 7 seconds."}
    )
    assert isinstance(t, PostHogRateLimitError) and t.retry_after == 7.0
    t2 = api_error(429, {"code": "throttled", "detail": "x"}, retry_after="3")
    assert isinstance(t2, PostHogRateLimitError) and t2.retry_after == 3.0
    scope = api_error(403, {"detail": "API key missing required scope 'batch_export:write'"})
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
    echoed = api_error(
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


def test_add_attempts_keeps_type() -> None:
    exc = add_attempts(api_error(503, {"detail": "down"}), 5, 12.34)
    assert isinstance(exc, PostHogServerError) and "gave up after 5 attempts in 12.3s" in str(exc)
