"""HTTP status + PostHog's error envelope -> the exception hierarchy of ``exceptions.py``.

Pure functions shared by the sync and async transports. Messages name the method, the path (never the
query string, host or body), the object a 404 was about and PostHog's ``detail``; known secrets (the API key,
the destination credentials of the request) are scrubbed from every field PostHog sends back, before any of
it is read.
"""

from __future__ import annotations

import email.utils
import json
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypeVar, overload
from urllib.parse import unquote, urlsplit

from airflow_provider_posthog.api.http import ApiResponse
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConnectError,
    PostHogConnectionMismatchError,
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

#: Keys PostHog strips from responses because they are secret (its ``secret_fields``), at any depth.
SECRET_CONFIG_KEYS: frozenset[str] = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "password",
        "private_key",
        "private_key_id",
        "private_key_passphrase",
        "client_email",
        "token_uri",
        "token",
        "user",
    }
)

V = TypeVar("V")


@overload
def scrub(value: str, secrets: Iterable[str]) -> str: ...
@overload
def scrub(value: V, secrets: Iterable[str]) -> V: ...
def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every secret of 4+ characters replaced by ``***`` in every string it holds: a string,
    or the keys and values of JSON-like mappings and lists at any depth (the one scrub of error bodies,
    exception messages and trigger events). Longest secret first, so one that contains another is replaced
    whole; other values are returned as they are."""
    ordered = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    return _scrub(value, ordered) if ordered else value


def _scrub(value: Any, ordered: list[str]) -> Any:
    if isinstance(value, str):
        for secret in ordered:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, Mapping):
        return {_scrub(k, ordered): _scrub(v, ordered) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, ordered) for item in value]
    if isinstance(value, tuple):
        return tuple(_scrub(item, ordered) for item in value)
    return value


def body_secrets(body: Any) -> list[str]:
    """The values of a request body's secret fields (:data:`SECRET_CONFIG_KEYS`, at any depth): what PostHog
    may quote back in an error about it."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if str(key).lower() in SECRET_CONFIG_KEYS and isinstance(value, (str, int)) and value != "":
                    found.append(str(value))
                else:
                    walk(value)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)

    walk(body)
    return found


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


def unauthorized_hint(personal_key: bool | None) -> str:
    """What to do about a 401, for the kind of key the connection holds (never the key itself)."""
    if personal_key is False:
        return (
            "The connection's password does not look like a personal API key: use one (phx_...) from "
            "Settings > Personal API keys; project keys (phc_...) only send events."
        )
    return (
        "Check the personal API key in the connection's password: complete, not deleted or rolled, and "
        "created on this PostHog host (US and EU Cloud keys differ)."
    )


def not_found_object(path: str) -> str | None:
    """What a request path is about, for a 404 to name: ``"backfill B of batch export E in project P"``."""
    segments = [unquote(s) for s in urlsplit(path).path.split("/") if s]
    if len(segments) < 3 or segments[0] != "api" or segments[1] not in ("projects", "environments"):
        return None
    project = f"project {segments[2]}"
    rest = segments[3:]
    if not rest or rest[0] != "batch_exports":
        return project
    if len(rest) < 2:
        return f"{project} (or its batch exports)"
    export = f"batch export {rest[1]} in {project}"
    if len(rest) >= 4 and rest[2] == "runs":
        return f"run {rest[3]} of {export}"
    if len(rest) >= 4 and rest[2] == "backfills":
        return f"backfill {rest[3]} of {export}"
    return export


def _hint(status: int, code: str | None, detail: str | None, path: str, personal_key: bool | None) -> str:
    if status == 401:
        return " " + unauthorized_hint(personal_key)
    if status == 403:
        if detail and "missing required scope" in detail:
            return " Give the personal API key that scope in PostHog (Settings > Personal API keys)."
        if detail and "personal api key access" in detail.lower():
            return " This PostHog version does not allow this action with a personal API key."
        return " Check that the key's user and scopes have access to this project."
    if status == 404:
        what = not_found_object(path)
        if what is None:
            return " Check the project id and the object id."
        return f" No {what} was found: check the project id and the ids."
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
    personal_key: bool | None = None,
) -> PostHogAPIError:
    """The exception for a non-2xx answer. Never includes request bodies; ``secrets`` are scrubbed from every
    field of PostHog's answer before any is read. ``personal_key``: whether the connection's key looks like a
    personal API key (the 401 hint depends on it)."""
    secrets = tuple(secrets)
    envelope = scrub(_decode_envelope(content, content_type), secrets)
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
        detail = detail[:_MAX_DETAIL]
    elif envelope is None and content:
        kind = (content_type or "unknown content type").split(";")[0].strip()
        detail = f"non-JSON error body ({kind}, {len(content)} bytes)"

    what = f"PostHog API {method} {path} failed with HTTP {status}"
    if code:
        what += f" ({code})"
    message = what + (f": {detail}" if detail else "")
    if attr:
        message += f" [field: {attr}]"
    message += _hint(status, code, detail, path, personal_key)

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


def redirect_error(
    *, method: str, path: str, status: int, location: str | None, secrets: Iterable[str] = ()
) -> PostHogAPIError:
    """Redirects are not followed (a redirected POST turns into a GET and may drop the key)."""
    target = ""
    if location:
        parts = urlsplit(location)
        try:
            port = parts.port
        except ValueError:
            port = None
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        target = scrub(f" to {parts.scheme}://{netloc}", secrets) if host else ""
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


class ServerSpeaksTLS(Exception):
    """Raised by a transport when a server that dropped a plain-HTTP request answered a TLS handshake: an
    ``http://`` host on an HTTPS server (which closes the connection without an HTTP answer)."""


class Diagnosis(NamedTuple):
    """One readable line with the fix for a network failure, and whether trying again can help."""

    text: str
    #: The connection does not fit the server (scheme, certificate): no retry fixes it.
    final: bool


def _chain(error: BaseException) -> list[BaseException]:
    """Every exception requests/urllib3 and aiohttp wrap around the OS or TLS error."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    found: list[BaseException] = []
    while stack and len(seen) < 20:
        exc = stack.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        found.append(exc)
        stack += [exc.__cause__, exc.__context__, getattr(exc, "reason", None), *exc.args]
    return found


def diagnose(error: BaseException, base_url: str | None) -> Diagnosis | None:
    """The likely fix for a TLS, scheme, refused or DNS failure of either transport, or ``None``."""
    parts = urlsplit(base_url or "")
    host = parts.hostname or "the host"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the connection's host"
    chain = _chain(error)
    text = "\n".join(f"{type(exc).__name__}: {exc}" for exc in chain)
    if any(isinstance(exc, ServerSpeaksTLS) for exc in chain):
        return Diagnosis(
            f"PostHog host {origin} is an HTTPS server and dropped the plain-HTTP request: use https:// in "
            "the connection's host.",
            final=True,
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return Diagnosis(
            f"PostHog host {origin} answered in plain HTTP: use http:// in the connection's host, or point "
            "it at an HTTPS server.",
            final=True,
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed: ", 1)[1].split(" (_ssl", 1)[0].split("\n")[0]
        return Diagnosis(
            f"The TLS certificate of {host} could not be verified ({reason}); set the connection extra "
            "'verify' to the CA bundle that signed it (or false to skip verification).",
            final=True,
        )
    if "ConnectionRefusedError" in text or "Connection refused" in text:
        return Diagnosis(
            f"Connection to {host}:{port} was refused: is the server running, and are the connection's "
            "host and port right?",
            final=False,
        )
    if "gaierror" in text or "NameResolutionError" in text or "Name or service not known" in text:
        return Diagnosis(
            f"The host name {host!r} could not be resolved (DNS): check the connection host.", final=False
        )
    return None


def diagnose_network_error(error: BaseException, base_url: str | None) -> str | None:
    """One readable line with the likely fix for a TLS, refused or DNS failure of either transport."""
    found = diagnose(error, base_url)
    return None if found is None else found.text


def transport_error(
    *,
    method: str,
    path: str,
    error: BaseException,
    sent: bool,
    secrets: Iterable[str] = (),
    base_url: str | None = None,
) -> PostHogTransportError | PostHogConnectionMismatchError:
    """A connection/timeout failure. ``sent=False`` means the request provably never reached PostHog.

    A connection that does not fit its server (wrong scheme, unverifiable certificate) is
    :class:`PostHogConnectionMismatchError`: final, since every retry would fail alike.
    """
    found = diagnose(error, base_url)
    if found is not None:
        cls: type[PostHogTransportError | PostHogConnectionMismatchError]
        if found.final:
            cls = PostHogConnectionMismatchError
        else:
            cls = PostHogTransportError if sent else PostHogConnectError
        return cls(
            f"PostHog API {method} {path}: {found.text}",
            method=method,
            path=path,
            code=type(error).__name__,
            detail=found.text,
        )
    cls_ = PostHogTransportError if sent else PostHogConnectError
    text = scrub(str(error), secrets)[:300]
    message = f"PostHog API {method} {path}: {type(error).__name__}: {text}" if text else ""
    message = message or f"PostHog API {method} {path}: {type(error).__name__}"
    return cls_(message, method=method, path=path, code=type(error).__name__, detail=text or None)


def add_attempts(exc: BaseException, attempts: int, elapsed: float) -> BaseException:
    """Say in the message how hard we tried (the exception type and attributes stay as they are)."""
    if attempts > 1 and exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} (gave up after {attempts} attempts in {elapsed:.1f}s)", *exc.args[1:])
    return exc


def _interned_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {sys.intern(key): value for key, value in pairs}


#: Decodes with the keys of every object interned: a process that keeps thousands of answers (a triggerer's
#: shared reads) holds one copy of ``"status"`` or ``"data_interval_start"``, not one per answer.
_DECODER = json.JSONDecoder(object_pairs_hook=_interned_keys)


def parse_json_body(content: bytes) -> Any:
    """Decode a 2xx body; raises ``ValueError`` when it is not JSON (caller maps it)."""
    if not content or not content.strip():
        return None
    # As json.loads does: the encoding detected from the first bytes (PostHog sends UTF-8).
    return _DECODER.decode(content.decode(json.detect_encoding(content), "surrogatepass"))


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
    personal_key: bool | None = None,
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
        raise redirect_error(method=method, path=path, status=status, location=location, secrets=secrets)
    raise error_from_response(
        method=method,
        path=path,
        status=status,
        content=content,
        content_type=content_type,
        retry_after=retry_after,
        secrets=secrets,
        personal_key=personal_key,
    )
