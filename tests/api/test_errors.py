"""HTTP answers and transport failures -> the exception hierarchy (api/errors.py)."""

from __future__ import annotations

import email.utils
import time

import pytest
from op_driver import api_error

from airflow_provider_posthog.api.errors import (
    add_attempts,
    body_secrets,
    decode_response,
    error_from_response,
    not_found_object,
    parse_retry_after,
    scrub,
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


# -- secrets: every field PostHog sends back is scrubbed -----------------------------------------------------

KEY = "phx_echoed_key_0123456789"
DEST_SECRET = "AKIA-destination-secret-42"


def _exposed(exc: PostHogAPIError) -> str:
    """Everything an exception carries out of the task: message, args, attributes."""
    return " ".join(map(str, (str(exc), repr(exc), exc.args, vars(exc))))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500])
def test_the_key_is_scrubbed_from_every_field_of_an_error_body(status: int) -> None:
    body = {
        "type": f"validation_error {KEY}",
        "code": f"invalid_{KEY}",
        "detail": {"destination": [f"bad value {DEST_SECRET}", {"nested": KEY}]},
        "attr": f"destination__config__{KEY}",
        "extra": {KEY: [KEY, DEST_SECRET]},
    }
    exc = api_error(status, body, secrets=(KEY, DEST_SECRET))
    exposed = _exposed(exc)
    assert KEY not in exposed and DEST_SECRET not in exposed
    assert "***" in str(exc.code) and "***" in str(exc.detail)
    if status == 400:  # the field PostHog blames is still named, without the key
        assert exc.attr == "destination__config__***" and "[field: destination__config__***]" in str(exc)
    # without the secrets, the same body does reach the message: the scrub above is what removed them
    assert KEY in str(api_error(status, body))


def test_scrub_reaches_every_string_of_nested_values() -> None:
    value = {"a": [KEY, ("x", f"pre-{KEY}-post")], KEY: {"n": 1, "b": None, "t": True}}
    assert scrub(value, (KEY,)) == {
        "a": ["***", ("x", "pre-***-post")],
        "***": {"n": 1, "b": None, "t": True},
    }
    assert scrub("phx_abcdef and phx_abc", ("phx_abc", "phx_abcdef")) == "*** and ***"  # longest first
    assert scrub("abc", ("abc",)) == "abc"  # too short to be a secret: "api" must stay readable
    assert scrub(42, (KEY,)) == 42


def test_body_secrets_are_the_destination_credentials_of_a_request() -> None:
    body = {
        "name": "export",
        "destination": {
            "type": "S3",
            "config": {
                "bucket_name": "b",
                "aws_secret_access_key": DEST_SECRET,
                "AWS_ACCESS_KEY_ID": "AKIA1",
            },
        },
        "more": [{"password": "pw-1234"}],
    }
    assert sorted(body_secrets(body)) == sorted([DEST_SECRET, "AKIA1", "pw-1234"])
    assert body_secrets(None) == []


def test_a_redirect_never_names_credentials_of_its_location() -> None:
    common = {"method": "GET", "path": "/p", "content_type": None, "retry_after": None}
    with pytest.raises(PostHogAPIError) as exc:
        decode_response(
            **common,  # type: ignore[arg-type]
            status=302,
            content=b"",
            location=f"https://{KEY}:pw@eu.posthog.com:8443/api/x?key={KEY}",
            secrets=(KEY,),
        )
    assert "to https://eu.posthog.com:8443;" in str(exc.value) and KEY not in str(exc.value)


# -- a 404 names what was not found --------------------------------------------------------------------------

EXPORT_ID = "0e21c3f4-7a5b-4c7e-9d1f-2a3b4c5d6e7f"


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (f"/api/projects/10001/batch_exports/{EXPORT_ID}/", f"batch export {EXPORT_ID} in project 10001"),
        (
            f"/api/projects/10001/batch_exports/{EXPORT_ID}/pause/",
            f"batch export {EXPORT_ID} in project 10001",
        ),
        (
            f"/api/projects/10001/batch_exports/{EXPORT_ID}/runs/run-9/",
            f"run run-9 of batch export {EXPORT_ID} in project 10001",
        ),
        (
            f"/api/projects/10001/batch_exports/{EXPORT_ID}/runs/run-9/cancel/",
            f"run run-9 of batch export {EXPORT_ID} in project 10001",
        ),
        (
            f"/api/environments/7/batch_exports/{EXPORT_ID}/backfills/bf-1/",
            f"backfill bf-1 of batch export {EXPORT_ID} in project 7",
        ),
        (
            f"/api/projects/10001/batch_exports/{EXPORT_ID}/runs/",
            f"batch export {EXPORT_ID} in project 10001",
        ),
        ("/api/projects/10001/batch_exports/", "project 10001 (or its batch exports)"),
    ],
)
def test_a_404_names_the_object_it_was_about(path: str, named: str) -> None:
    assert not_found_object(path) == named
    exc = error_from_response(
        method="GET", path=path, status=404, content=b'{"type": "invalid_request", "code": "not_found"}'
    )
    assert isinstance(exc, PostHogNotFoundError)
    assert f"No {named} was found: check the project id and the ids." in str(exc)


def test_a_404_of_a_path_outside_the_api_keeps_the_general_hint() -> None:
    assert not_found_object("/somewhere/else") is None
    exc = error_from_response(method="GET", path="/somewhere/else", status=404, content=b"")
    assert "Check the project id and the object id." in str(exc)


# -- a 401 speaks to the key the connection holds ------------------------------------------------------------


def test_a_401_for_a_personal_key_does_not_call_it_a_project_key() -> None:
    body = {"type": "authentication_error", "code": "authentication_failed", "detail": "Invalid key."}
    personal = api_error(401, body, personal_key=True)
    assert isinstance(personal, PostHogAuthError)
    assert "project key" not in str(personal)
    assert "Check the personal API key in the connection's password" in str(personal)
    assert "created on this PostHog host" in str(personal)
    other = api_error(401, body, personal_key=False)
    assert "does not look like a personal API key: use one (phx_...)" in str(other)
    assert "project keys (phc_...) only send events" in str(other)
