"""What the sync and the async hook share: everything that does no I/O.

Connection fields -> settings, the key's masking bookkeeping, request description, response decoding, the
non-I/O half of driving an operation (answering its clock requests, finishing it), UI links and the
connection-test messages. The twins in ``hooks/posthog.py`` and ``hooks/posthog_async.py`` only look the
connection up, send bytes and sleep, as httpx's ``Client``/``AsyncClient`` do over ``BaseClient``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pendulum
from airflow.sdk import BaseHook

from airflow_provider_posthog.api.backfills import BackfillLookup
from airflow_provider_posthog.api.connection import (
    ConnectionSettings,
    plain_http_host,
    settings_from_connection,
)
from airflow_provider_posthog.api.errors import (
    add_attempts,
    body_secrets,
    decode_response,
    scrub,
    transport_error,
    unauthorized_hint,
)
from airflow_provider_posthog.api.http import (
    NOW,
    USER_AGENT,
    ApiResponse,
    Operation,
    RequestSpec,
    Shared,
    Sleep,
    export_path,
    query,
    ui_url,
)
from airflow_provider_posthog.api.retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_ELAPSED,
    Deadline,
    RetryPolicy,
)
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConfigError,
    PostHogConnectionMismatchError,
    PostHogDeadlineError,
    PostHogError,
    PostHogNotFoundError,
    PostHogResponseTooLargeError,
    PostHogTransportError,
)

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")
V = TypeVar("V")

#: Headers of every request but the key, which is added per request so hooks with different keys can
#: share a pooled client.
COMMON_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json"}

# sha256 of keys already registered with the secrets masker in this process (not the keys themselves).
MASKED_KEYS: set[str] = set()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tls_client_hello() -> bytes:
    """The first flight of a TLS handshake (a ClientHello), for probing whether a server speaks TLS."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):  # the hello is written; the answer would come next
        tls.do_handshake()
    return outgoing.read()


def looks_like_tls(first: bytes) -> bool:
    """Whether a server's first bytes after a ClientHello are a TLS record (a handshake or an alert)."""
    return len(first) >= 3 and first[0] in (0x15, 0x16) and first[1] == 0x03


def advance(
    op: Operation[T], reply: Any = None, error: BaseException | None = None
) -> RequestSpec | Sleep | Shared[Any]:
    """Resume ``op`` with ``reply`` (or throw ``error`` into it) until it asks for I/O (a request, a sleep
    or a shared read).

    Clock requests are answered here; the operation's result leaves as ``StopIteration``.
    """
    while True:
        command = op.throw(error) if error is not None else op.send(reply)
        if command is not NOW:
            assert isinstance(command, (RequestSpec, Sleep, Shared))
            return command
        reply, error = pendulum.now("UTC"), None


@functools.lru_cache(maxsize=64)
def _policy(max_attempts: int, max_elapsed: float) -> RetryPolicy:
    """Hooks with the same retry numbers share one (immutable) policy."""
    return RetryPolicy(max_attempts=max_attempts, max_elapsed=max_elapsed)


_DEFAULT_LOOKUP = BackfillLookup()
_CLASS_LOGGERS: dict[type, Any] = {}


class PostHogHookBase(BaseHook):
    """Connection -> settings, retry policy, backfill lookup bounds, decoding: the hooks' common half."""

    conn_name_attr = "posthog_conn_id"
    default_conn_name = "posthog_default"
    conn_type = "posthog"
    hook_name = "PostHog"

    def __init__(
        self,
        posthog_conn_id: str = default_conn_name,
        project_id: int | str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_wait: float = DEFAULT_MAX_ELAPSED,
        *,
        retry_policy: RetryPolicy | None = None,
        backfill_lookup_timeout: float | None = None,
        backfill_lookup: BackfillLookup | None = None,
        **kwargs: Any,
    ) -> None:
        """
        :param posthog_conn_id: Airflow connection (type ``posthog``).
        :param project_id: overrides the connection's ``project_id`` (each method also takes ``project_id=``).
        :param max_attempts: attempts per request, first one included (retries: 429, 5xx, network errors).
        :param max_retry_wait: seconds one request may spend retrying, waits included.
        :param retry_policy: full control over the retry numbers (wins over the two above).
        :param backfill_lookup_timeout: seconds to wait for a just-created backfill to become visible.
        """
        super().__init__(**kwargs)
        self.posthog_conn_id = posthog_conn_id
        self.project_id = project_id
        self.retry_policy = retry_policy or _policy(max_attempts, max_retry_wait)
        lookup = backfill_lookup or _DEFAULT_LOOKUP
        if backfill_lookup_timeout is not None:
            lookup = dataclasses.replace(lookup, timeout=backfill_lookup_timeout)
        self.backfill_lookup = lookup
        self._settings_cache: ConnectionSettings | None = None

    @property
    def log(self) -> Any:
        """One logger per hook class, not one per hook: a triggerer holds a hook per waiting trigger. The
        first hook of a class gets it from Airflow's ``LoggingMixin`` (same name, same configuration)."""
        logger = _CLASS_LOGGERS.get(type(self))
        if logger is None:
            logger = _CLASS_LOGGERS[type(self)] = super().log
        return logger

    # -- settings and the key -----------------------------------------------------------------------------

    def _build_settings(self, conn: Any, extra: Mapping[str, Any]) -> ConnectionSettings:
        settings = settings_from_connection(
            host=conn.host,
            password=conn.password,
            port=conn.port,
            schema=conn.schema,
            extra=extra,
            project_id=self.project_id,
        )
        host = plain_http_host(settings.base_url)
        if host is not None:  # settings are built once per hook: one warning per task or trigger
            self.log.warning(
                "The PostHog connection %r sends the API key unencrypted over plain http:// to %s; use "
                "https:// in its host.",
                self.posthog_conn_id,
                host,
            )
        return settings

    def scrubbed(self, value: V) -> V:
        """``value`` (a message, an event) without the connection's API key, once the hook has read it: for
        what leaves the hook and is stored, such as a trigger's event."""
        settings = self._settings_cache
        return value if settings is None else scrub(value, (settings.api_key,))

    @staticmethod
    def _key_masked(settings: ConnectionSettings) -> bool:
        return _digest(settings.api_key) in MASKED_KEYS

    @staticmethod
    def _note_masked(settings: ConnectionSettings) -> None:
        MASKED_KEYS.add(_digest(settings.api_key))

    # -- one request --------------------------------------------------------------------------------------

    @staticmethod
    def _attempt_budget(settings: ConnectionSettings, deadline: Deadline) -> float:
        """Seconds one attempt may take: connect plus the whole answer, and never past the call's deadline."""
        return deadline.clamp(settings.request_timeout)

    @staticmethod
    def _cut_short(spec: RequestSpec, settings: ConnectionSettings, seconds: float) -> PostHogDeadlineError:
        path = spec.api_path(settings.project_id)
        return PostHogDeadlineError(
            f"PostHog API {spec.method} {path}: no complete answer within {seconds:.1f}s (the request's "
            f"overall deadline: connect_timeout + timeout of the connection, or the end of the wait).",
            method=spec.method,
            path=path,
            code="deadline",
            detail=f"no complete answer within {seconds:.1f}s",
        )

    @staticmethod
    def _too_large(spec: RequestSpec, settings: ConnectionSettings) -> PostHogResponseTooLargeError:
        path = spec.api_path(settings.project_id)
        return PostHogResponseTooLargeError(
            f"PostHog API {spec.method} {path} answered with more than {settings.max_response_bytes} bytes; "
            "refused instead of read into memory. Check that the connection host is the PostHog app, or "
            "raise the connection extra 'max_response_bytes'.",
            method=spec.method,
            path=path,
        )

    @classmethod
    def _refuse_declared_size(
        cls, spec: RequestSpec, settings: ConnectionSettings, headers: Mapping[str, str]
    ) -> None:
        """The size cap, before any of the body is read: an answer that declares more is refused."""
        try:
            declared = int(headers.get("Content-Length") or 0)
        except ValueError:
            return
        if declared > settings.max_response_bytes:
            raise cls._too_large(spec, settings)

    @classmethod
    def _take(cls, spec: RequestSpec, settings: ConnectionSettings, body: bytearray, chunk: bytes) -> None:
        """The size cap while the body streams in: add ``chunk``, refuse once the answer passes the cap."""
        body += chunk
        if len(body) > settings.max_response_bytes:
            raise cls._too_large(spec, settings)

    @staticmethod
    def _headers(settings: ConnectionSettings) -> dict[str, str]:
        return {"Authorization": f"Bearer {settings.api_key}"}

    def _policy(self, policy: RetryPolicy | None) -> RetryPolicy:
        return policy or self.retry_policy

    @staticmethod
    def _decode(
        spec: RequestSpec,
        settings: ConnectionSettings,
        status: int,
        content: bytes,
        headers: Mapping[str, str],
    ) -> ApiResponse:
        """Decode an answer; an error PostHog echoes the key or the request's destination secrets in is
        scrubbed of them in every field."""
        response = decode_response(
            method=spec.method,
            path=spec.api_path(settings.project_id),
            status=status,
            content=content,
            content_type=headers.get("Content-Type"),
            retry_after=headers.get("Retry-After"),
            location=headers.get("Location"),
            secrets=(settings.api_key, *body_secrets(spec.json)),
            personal_key=settings.api_key.startswith("phx_"),
        )
        return dataclasses.replace(response, date=headers.get("Date"))

    @staticmethod
    def _transport_error(
        spec: RequestSpec, settings: ConnectionSettings, exc: BaseException, *, sent: bool
    ) -> PostHogTransportError | PostHogConnectionMismatchError:
        return transport_error(
            method=spec.method,
            path=spec.api_path(settings.project_id),
            error=exc,
            sent=sent,
            secrets=(settings.api_key,),
            base_url=settings.base_url,
        )

    @staticmethod
    def _unsendable(spec: RequestSpec, settings: ConnectionSettings, exc: BaseException) -> PostHogAPIError:
        """A request the HTTP library refused to build or send (bad URL, scheme): not retried."""
        path = spec.api_path(settings.project_id)
        return PostHogAPIError(
            f"PostHog API {spec.method} {path}: {type(exc).__name__}", method=spec.method, path=path
        )

    @staticmethod
    def _gave_up(exc: PostHogError, retrying: tenacity.BaseRetrying, started: float) -> BaseException:
        return add_attempts(exc, retrying.statistics.get("attempt_number", 1), time.monotonic() - started)

    # -- no I/O at all ------------------------------------------------------------------------------------

    @staticmethod
    def _ui_url(settings: ConnectionSettings, batch_export_id: str | None, tab: str | None) -> str:
        return ui_url(settings.base_url, settings.project_id, batch_export_id, tab)

    @staticmethod
    def _connection_test_request(settings: ConnectionSettings) -> RequestSpec:
        """The cheapest request that needs host, key, scope and project: one export of the list."""
        return RequestSpec("GET", export_path(), query([("limit", 1), ("offset", 0)]))

    #: One attempt: a connection test answers within a UI request.
    _CONNECTION_TEST_POLICY = RetryPolicy(max_attempts=1)

    def _connection_unreadable(self, exc: Exception) -> str:
        if isinstance(exc, PostHogConfigError):
            return str(exc)
        return f"Cannot read the PostHog connection {self.posthog_conn_id!r}: {type(exc).__name__}: {exc}"

    @staticmethod
    def _connection_ok(settings: ConnectionSettings, response: ApiResponse) -> str:
        count = response.body.get("count") if isinstance(response.body, Mapping) else None
        found = f" ({count} batch exports)" if isinstance(count, int) else ""
        return (
            f"Connected to PostHog at {settings.base_url}: project {settings.project_id} is readable{found}."
        )


def connection_test_message(exc: BaseException, s: ConnectionSettings) -> str:
    """A message a person can act on, for each way a connection test fails."""
    detail = getattr(exc, "detail", None) or ""
    status = getattr(exc, "http_status", None)
    if isinstance(exc, PostHogAuthError) and status == 401:
        return (
            f"PostHog at {s.base_url} rejected the API key (HTTP 401: {detail or 'invalid key'}). "
            + unauthorized_hint(s.api_key.startswith("phx_"))
        )
    if isinstance(exc, PostHogConnectionMismatchError):
        return f"Could not reach PostHog at {s.base_url}: {detail}"
    if isinstance(exc, PostHogAuthError):
        if "missing required scope" in detail:
            return (
                f"The API key lacks a scope PostHog requires ({detail}). Give it batch_export:read "
                "(and batch_export:write to create exports or backfills) under Settings > Personal API keys."
            )
        if "access to the requested project" in detail:
            return (
                f"The API key may not access project {s.project_id} ({detail}). Add the project to the key's "
                "allowed projects or use a key scoped to it."
            )
        return (
            f"Access to project {s.project_id} was denied (HTTP 403: {detail or 'forbidden'}). "
            "The key's user must be a member of the project's organization and the key needs scope "
            "batch_export:read."
        )
    if isinstance(exc, PostHogNotFoundError):
        return (
            f"Project {s.project_id} was not found at {s.base_url} (HTTP 404). Check the numeric project id "
            "(Settings > Project) and the host: https://us.posthog.com (US), https://eu.posthog.com (EU), or "
            "your self-hosted URL."
        )
    if isinstance(exc, PostHogTransportError) and detail and f"{exc.code}: " not in str(exc):
        return f"Could not reach PostHog at {s.base_url}: {detail}"  # a diagnosed TLS/refused/DNS failure
    if isinstance(exc, PostHogTransportError):
        return (
            f"Could not reach PostHog at {s.base_url} ({exc.code}: {detail or exc}). Check the host, port, "
            "scheme, proxy and TLS settings of the connection."
        )
    if isinstance(exc, PostHogError):
        return f"PostHog at {s.base_url} did not accept the test request: {exc}"
    return f"Unexpected error while testing the PostHog connection: {type(exc).__name__}"
