"""HTTP status + PostHog's error envelope -> the exception hierarchy of ``exceptions.py``.

Pure functions shared by the sync and async transports. Messages name the method, the path (never the
query string, host or body) and PostHog's ``detail``; known secrets are scrubbed from anything PostHog echoes.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_posthog.api.http import ApiResponse
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConnectError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTooManyBackfillsError,
    PostHogTransportError,
    PostHogValidationError,
)

RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})
TOO_MANY_BACKFILLS_CODE = "too_many_concurrent_backfills"
_MAX_DETAIL = 500


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of 4+ characters replaced by ``***`` (longest first, so a secret that
    contains another is replaced whole)."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); ``None`` if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _retry_after_from_detail(detail: str | None) -> float | None:
    # DRF's Throttled detail: "Request was throttled. Expected available in N seconds."
    if not detail or "available in" not in detail:
        return None
    tail = detail.split("available in", 1)[1].strip().split(" ", 1)[0]
    try:
        return max(0.0, float(tail))
    except ValueError:
        return None


def _decode_envelope(content: bytes, content_type: str | None) -> Mapping[str, Any] | None:
    if not content:
        return None
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, Mapping) else None


def refuses_personal_keys(exc: BaseException) -> bool:
    """A 403 because this PostHog version closes the action to personal API keys (any wording's case).

    Newer PostHog says "personal API key access", older versions "Personal API Key access".
    """
    detail = getattr(exc, "detail", None) or ""
    return isinstance(exc, PostHogAuthError) and "personal api key access" in detail.lower()


def _hint(status: int, code: str | None, detail: str | None) -> str:
    if status == 401:
        return (
            " Check the connection's password: it must be a valid personal API key (phx_...),"
            " not a project key."
        )
    if status == 403:
        if detail and "missing required scope" in detail:
            return " Give the personal API key that scope in PostHog (Settings > Personal API keys)."
        if detail and "personal api key access" in detail.lower():
            return " This PostHog version does not allow this action with a personal API key."
        return " Check that the key's user and scopes have access to this project."
    if status == 404:
        return " Check the project id and the object id."
    if code == TOO_MANY_BACKFILLS_CODE:
        return " Wait for running backfills to finish or cancel some before creating more."
    return ""


def error_from_response(
    *,
    method: str,
    path: str,
    status: int,
    content: bytes,
    content_type: str | None = None,
    retry_after: str | None = None,
    secrets: Iterable[str] = (),
) -> PostHogAPIError:
    """The exception for a non-2xx answer. Never includes request bodies; scrubs ``secrets`` from details."""
    secrets = tuple(secrets)
    envelope = _decode_envelope(content, content_type)
    code: str | None = None
    detail: str | None = None
    attr: str | None = None
    if envelope is not None:
        code = str(envelope["code"]) if envelope.get("code") is not None else None
        raw_detail = envelope.get("detail")
        if raw_detail is not None:
            detail = raw_detail if isinstance(raw_detail, str) else json.dumps(raw_detail)
        attr = str(envelope["attr"]) if envelope.get("attr") is not None else None
    if detail is not None:
        detail = scrub(detail, secrets)[:_MAX_DETAIL]
    elif envelope is None and content:
        kind = (content_type or "unknown content type").split(";")[0].strip()
        detail = f"non-JSON error body ({kind}, {len(content)} bytes)"

    what = f"PostHog API {method} {path} failed with HTTP {status}"
    if code:
        what += f" ({code})"
    message = what + (f": {detail}" if detail else "")
    if attr:
        message += f" [field: {attr}]"
    message += _hint(status, code, detail)

    kwargs: dict[str, Any] = {
        "http_status": status,
        "method": method,
        "path": path,
        "code": code,
        "detail": detail,
        "attr": attr,
    }
    if status == 429 and code == TOO_MANY_BACKFILLS_CODE:
        return PostHogTooManyBackfillsError(message, **kwargs)
    if status == 429:
        wait = parse_retry_after(retry_after)
        if wait is None:
            wait = _retry_after_from_detail(detail)
        return PostHogRateLimitError(message, retry_after=wait, **kwargs)
    if status in (401, 403):
        return PostHogAuthError(message, **kwargs)
    if status == 404:
        return PostHogNotFoundError(message, **kwargs)
    if status == 400:
        return PostHogValidationError(message, **kwargs)
    if status >= 500:
        return PostHogServerError(message, **kwargs)
    return PostHogAPIError(message, **kwargs)


def redirect_error(*, method: str, path: str, status: int, location: str | None) -> PostHogAPIError:
    """Redirects are not followed (a redirected POST turns into a GET and may drop the key)."""
    target = ""
    if location:
        parts = urlsplit(location)
        target = f" to {parts.scheme}://{parts.netloc}" if parts.netloc else ""
    return PostHogAPIError(
        f"PostHog API {method} {path} was redirected (HTTP {status}){target}; set the connection host to the "
        "URL PostHog redirects to (e.g. https:// instead of http://).",
        http_status=status,
        method=method,
        path=path,
    )


def invalid_json_error(*, method: str, path: str, status: int, content_type: str | None) -> PostHogAPIError:
    """A 2xx that is not JSON: almost always a host that is not the PostHog app (a proxy or login page)."""
    kind = (content_type or "unknown content type").split(";")[0].strip()
    return PostHogAPIError(
        f"PostHog API {method} {path} answered HTTP {status} with a non-JSON body ({kind}); check that the "
        "connection host is the PostHog app URL (e.g. https://us.posthog.com).",
        http_status=status,
        method=method,
        path=path,
    )


def _error_texts(error: BaseException) -> str:
    """Every message in the chain requests/urllib3 and httpx/httpcore wrap around the OS or TLS error."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    texts: list[str] = []
    while stack and len(seen) < 20:
        exc = stack.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        texts.append(f"{type(exc).__name__}: {exc}")
        stack += [exc.__cause__, exc.__context__, getattr(exc, "reason", None), *exc.args]
    return "\n".join(texts)


def diagnose_network_error(error: BaseException, base_url: str | None) -> str | None:
    """One readable line with the likely fix for a TLS, refused or DNS failure of either transport."""
    parts = urlsplit(base_url or "")
    host = parts.hostname or "the host"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    text = _error_texts(error)
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return (
            f"TLS handshake with {host}:{port} failed: the server speaks plain HTTP; use http:// in the "
            "connection host."
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed: ", 1)[1].split(" (_ssl", 1)[0].split("\n")[0]
        return (
            f"The TLS certificate of {host} could not be verified ({reason}); set the connection extra "
            "'verify' to the CA bundle that signed it (or false to skip verification)."
        )
    if "ConnectionRefusedError" in text or "Connection refused" in text:
        return (
            f"Connection to {host}:{port} was refused: is the server running, and are the connection's "
            "host and port right?"
        )
    if "gaierror" in text or "NameResolutionError" in text or "Name or service not known" in text:
        return f"The host name {host!r} could not be resolved (DNS): check the connection host."
    return None


def transport_error(
    *,
    method: str,
    path: str,
    error: BaseException,
    sent: bool,
    secrets: Iterable[str] = (),
    base_url: str | None = None,
) -> PostHogTransportError:
    """A connection/timeout failure. ``sent=False`` means the request provably never reached PostHog."""
    cls = PostHogTransportError if sent else PostHogConnectError
    hint = diagnose_network_error(error, base_url)
    if hint is not None:
        return cls(
            f"PostHog API {method} {path}: {hint}",
            method=method,
            path=path,
            code=type(error).__name__,
            detail=hint,
        )
    text = scrub(str(error), secrets)[:300]
    message = f"PostHog API {method} {path}: {type(error).__name__}: {text}" if text else ""
    message = message or f"PostHog API {method} {path}: {type(error).__name__}"
    return cls(message, method=method, path=path, code=type(error).__name__, detail=text or None)


def add_attempts(exc: BaseException, attempts: int, elapsed: float) -> BaseException:
    """Say in the message how hard we tried (the exception type and attributes stay as they are)."""
    if attempts > 1 and exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} (gave up after {attempts} attempts in {elapsed:.1f}s)", *exc.args[1:])
    return exc


def parse_json_body(content: bytes) -> Any:
    """Decode a 2xx body; raises ``ValueError`` when it is not JSON (caller maps it)."""
    if not content or not content.strip():
        return None
    return json.loads(content)


def decode_response(
    *,
    method: str,
    path: str,
    status: int,
    content: bytes,
    content_type: str | None,
    retry_after: str | None,
    location: str | None,
    secrets: Iterable[str] = (),
) -> ApiResponse:
    """The one response layer of both transports: 2xx -> decoded body, anything else -> mapped exception."""
    if 200 <= status < 300:
        try:
            return ApiResponse(status, parse_json_body(content))
        except (ValueError, UnicodeDecodeError):
            raise invalid_json_error(
                method=method, path=path, status=status, content_type=content_type
            ) from None
    if 300 <= status < 400:
        raise redirect_error(method=method, path=path, status=status, location=location)
    raise error_from_response(
        method=method,
        path=path,
        status=status,
        content=content,
        content_type=content_type,
        retry_after=retry_after,
        secrets=secrets,
    )
