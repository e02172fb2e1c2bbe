"""PostHogHook (requests, for workers) and PostHogAsyncHook (httpx, for triggers).

The hooks only resolve the Airflow connection, carry bytes and sleep. What to send, how to page, how to map
errors, when to retry and how to find a new backfill live in ``airflow_provider_posthog.api`` and are shared
by both transports (``api/operations.py`` drives every method as a transport-free generator).

``requests``/``httpx`` are imported inside methods: operator modules may import this module at DAG parse
time under ``TYPE_CHECKING`` only, and nothing here does I/O before a method is called.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_posthog import compat
from airflow_provider_posthog.api import operations as ops
from airflow_provider_posthog.api import requests as rq
from airflow_provider_posthog.api.connection import ConnectionSettings, settings_from_connection
from airflow_provider_posthog.api.errors import add_attempts, decode_response, transport_error
from airflow_provider_posthog.api.retry import DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_ELAPSED, RetryPolicy
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConfigError,
    PostHogError,
    PostHogNotFoundError,
    PostHogTransportError,
)

if TYPE_CHECKING:
    import httpx
    import requests

    from airflow_provider_posthog.api.intervals import ExportSchedule
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun, LogEntry

T = TypeVar("T")
DateLike = rq.DateLike

#: Pool size of each shared async client. PostHog allows ~8 requests/s per key (480/min); against the emulator
#: a burst of 1000 requests took 3.0 s with 16 connections and 9.6 s with 64 (pool scheduling overhead).
ASYNC_MAX_CONNECTIONS = 16
ASYNC_POOL_TIMEOUT = 60.0

# sha256 of keys already registered with the secrets masker in this process (not the keys themselves).
_MASKED: set[str] = set()
# One httpx.AsyncClient per (event loop, base URL, TLS verify): shared TCP/TLS connections across hooks.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], httpx.AsyncClient]
] = weakref.WeakKeyDictionary()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _requests_not_sent(exc: BaseException) -> bool:
    """True when requests failed before the request could reach the server."""
    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason: Any = exc.args[0] if exc.args else None
        if isinstance(reason, urllib3.exceptions.MaxRetryError):
            reason = reason.reason
        return isinstance(
            reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        )
    return False


def _httpx_not_sent(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def shared_async_client(base_url: str, verify: bool | str = True) -> httpx.AsyncClient:
    """The pooled client of the running event loop for ``base_url`` (created on first use).

    Every PostHogAsyncHook in one triggerer loop shares it, so thousands of triggers reuse a few TCP/TLS
    connections instead of opening one per poll. Authorization is sent per request, so hooks with different
    keys can share a client.
    """
    import httpx

    loop = asyncio.get_running_loop()
    per_loop = _ASYNC_CLIENTS.setdefault(loop, {})
    key = (base_url, str(verify))
    client = per_loop.get(key)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            headers={"User-Agent": rq.USER_AGENT, "Accept": "application/json"},
            limits=httpx.Limits(
                max_connections=ASYNC_MAX_CONNECTIONS,
                max_keepalive_connections=ASYNC_MAX_CONNECTIONS,
                keepalive_expiry=4.0,
            ),
            follow_redirects=False,
            verify=verify,
        )
        per_loop[key] = client
    return client


async def aclose_shared_clients() -> None:
    """Close the pooled clients of the running loop (tests, graceful shutdown)."""
    clients = _ASYNC_CLIENTS.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()


class _PostHogHookBase(BaseHook):
    """What both hooks share: connection -> settings, retry policy, backfill lookup bounds."""

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
        backfill_lookup: ops.BackfillLookup | None = None,
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
        self.retry_policy = retry_policy or RetryPolicy(max_attempts=max_attempts, max_elapsed=max_retry_wait)
        lookup = backfill_lookup or ops.BackfillLookup()
        if backfill_lookup_timeout is not None:
            lookup = dataclasses.replace(lookup, timeout=backfill_lookup_timeout)
        self.backfill_lookup = lookup
        self._settings_cache: ConnectionSettings | None = None
        self._session: requests.Session | None = None  # sync hook only

    def _build_settings(self, conn: Any, extra: Mapping[str, Any]) -> ConnectionSettings:
        return settings_from_connection(
            host=conn.host,
            password=conn.password,
            port=conn.port,
            schema=conn.schema,
            extra=extra,
            project_id=self.project_id,
        )

    @staticmethod
    def _describe(spec: rq.RequestSpec) -> str:
        return f"PostHog API {spec.method} {spec.path}"


class PostHogHook(_PostHogHookBase):
    """Sync client for every PostHog batch-exports endpoint, for workers and the CLI.

    Connection: host = PostHog app URL (default ``https://us.posthog.com``), password = personal API key
    (``phx_...``), extra ``project_id`` (numeric), optional extra ``timeout`` / ``connect_timeout`` seconds,
    ``scheme`` (``http`` for a scheme-less local host) and ``verify`` (false or a CA bundle path).
    """

    if not compat.DECLARATIVE_CONNECTION_FORM_SUPPORTED:
        # Airflow 3.1 ignores get_provider_info()'s declarative form; 3.2+ warns when a hook defines this.
        @classmethod
        def get_ui_field_behaviour(cls) -> dict[str, Any]:
            """Hidden fields, labels and placeholders of the connection form on Airflow 3.1."""
            return compat.legacy_ui_field_behaviour(cls.conn_type)

        @classmethod
        def get_connection_form_widgets(cls) -> dict[str, Any]:
            """The extra fields (project id, timeout) of the connection form on Airflow 3.1."""
            return compat.legacy_connection_form_widgets(cls.conn_type)

    # -- plumbing -------------------------------------------------------------------------------------------

    def _settings(self, project_id: int | str | None = None) -> ConnectionSettings:
        if self._settings_cache is None:
            conn = self.get_connection(self.posthog_conn_id)
            settings = self._build_settings(conn, conn.extra_dejson)
            digest = _digest(settings.api_key)
            if digest not in _MASKED:
                from airflow.sdk.log import mask_secret

                mask_secret(settings.api_key)
                _MASKED.add(digest)
            self._settings_cache = settings
        return self._settings_cache.with_project(project_id)

    def get_conn(self) -> requests.Session:
        """The pooled ``requests.Session`` (no Authorization header on it: it is added per request)."""
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update({"User-Agent": rq.USER_AGENT, "Accept": "application/json"})
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _send_once(self, spec: rq.RequestSpec, settings: ConnectionSettings) -> rq.ApiResponse:
        import requests

        try:
            resp = self.get_conn().request(
                spec.method,
                spec.full_url(settings.base_url),
                json=spec.json,
                headers={"Authorization": f"Bearer {settings.api_key}"},
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
                verify=settings.verify,
            )
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise transport_error(
                method=spec.method,
                path=spec.path,
                error=exc,
                sent=not _requests_not_sent(exc),
                secrets=(settings.api_key,),
            ) from None
        except requests.RequestException as exc:
            raise PostHogAPIError(
                f"PostHog API {spec.method} {spec.path}: {type(exc).__name__}",
                method=spec.method,
                path=spec.path,
            ) from None
        return decode_response(
            method=spec.method,
            path=spec.path,
            status=resp.status_code,
            content=resp.content,
            content_type=resp.headers.get("Content-Type"),
            retry_after=resp.headers.get("Retry-After"),
            location=resp.headers.get("Location"),
            secrets=(settings.api_key,),
        )

    def _send(
        self, spec: rq.RequestSpec, settings: ConnectionSettings, policy: RetryPolicy | None = None
    ) -> rq.ApiResponse:
        retrying = (policy or self.retry_policy).retrying(
            idempotent=spec.idempotent, log=self.log, describe=self._describe(spec)
        )
        started = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(spec, settings)
        except PostHogError as exc:
            raise add_attempts(
                exc, retrying.statistics.get("attempt_number", 1), time.monotonic() - started
            ) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, op: ops.Operation[T], settings: ConnectionSettings) -> T:
        """Drive an operation: send its requests (with retries), sleep its sleeps, return its result."""
        try:
            command = next(op)
            while True:
                if isinstance(command, ops.Sleep):
                    time.sleep(command.seconds)
                    command = op.send(None)
                    continue
                try:
                    response = self._send(command, settings)
                except PostHogError as exc:
                    command = op.throw(exc)
                else:
                    command = op.send(response)
        except StopIteration as stop:
            return stop.value
        finally:
            op.close()

    # -- batch exports --------------------------------------------------------------------------------------

    def list_batch_exports(self, *, project_id: int | None = None) -> list[BatchExport]:
        """Every export of the project (all limit/offset pages), newest first."""
        s = self._settings(project_id)
        return self._run(ops.list_batch_exports(s.project_id), s)

    def get_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> BatchExport:
        s = self._settings(project_id)
        return self._run(ops.get_batch_export(s.project_id, batch_export_id), s)

    def create_batch_export(
        self, payload: Mapping[str, Any], *, project_id: int | None = None
    ) -> BatchExport:
        """Create an export. Resent only if the request provably never reached PostHog (or was throttled)."""
        s = self._settings(project_id)
        return self._run(ops.create_batch_export(s.project_id, payload), s)

    def update_batch_export(
        self,
        batch_export_id: str,
        payload: Mapping[str, Any],
        *,
        partial: bool = True,
        project_id: int | None = None,
    ) -> BatchExport:
        """PATCH (``partial=True``) or PUT the export; ``destination.config`` is merged by PostHog."""
        s = self._settings(project_id)
        return self._run(ops.update_batch_export(s.project_id, batch_export_id, payload, partial=partial), s)

    def delete_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = self._settings(project_id)
        self._run(ops.delete_batch_export(s.project_id, batch_export_id), s)

    def pause_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = self._settings(project_id)
        self._run(ops.pause_batch_export(s.project_id, batch_export_id), s)

    def unpause_batch_export(
        self, batch_export_id: str, *, backfill: bool = False, project_id: int | None = None
    ) -> None:
        """Unpause; ``backfill=True`` makes PostHog backfill the paused gap."""
        s = self._settings(project_id)
        self._run(ops.unpause_batch_export(s.project_id, batch_export_id, backfill=backfill), s)

    def get_batch_export_logs(
        self,
        batch_export_id: str,
        *,
        after: DateLike | None = None,
        before: DateLike | None = None,
        level: str | Sequence[str] | None = None,
        search: str | None = None,
        instance_id: str | None = None,
        limit: int = 500,
        project_id: int | None = None,
    ) -> list[LogEntry]:
        """Export-level log lines, newest first (at most ``limit`` ≤ 500).

        ``[]`` with one warning where this PostHog version refuses logs to personal API keys.
        """
        s = self._settings(project_id)
        op = ops.get_batch_export_logs(
            s.project_id,
            batch_export_id,
            after=after,
            before=before,
            level=level,
            search=search,
            instance_id=instance_id,
            limit=limit,
        )
        return self._run(op, s)

    # -- runs -----------------------------------------------------------------------------------------------

    def list_runs(
        self,
        batch_export_id: str,
        *,
        after: DateLike | None = None,
        before: DateLike | None = None,
        start: DateLike | None = None,
        end: DateLike | None = None,
        ordering: str | None = None,
        status: str | Sequence[str] | None = None,
        project_id: int | None = None,
    ) -> list[BatchExportRun]:
        """Every run matching the filters (all cursor pages).

        PostHog applies a 7-day window by default: ``after``/``before`` bound ``created_at`` (default
        ordering), ``start``/``end`` bound the data interval when ordering by ``data_interval_start``.
        """
        s = self._settings(project_id)
        op = ops.list_runs(
            s.project_id,
            batch_export_id,
            base_url=s.base_url,
            after=after,
            before=before,
            start=start,
            end=end,
            ordering=ordering,
            status=status,
        )
        return self._run(op, s)

    def get_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> BatchExportRun:
        """One run, whatever its age (PostHog hides runs older than 7 days unless asked with ``after``)."""
        s = self._settings(project_id)
        return self._run(ops.get_run(s.project_id, batch_export_id, run_id), s)

    def cancel_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> str:
        """Cancel a Starting/Running run and return its status read back afterwards (``"Cancelled"``).

        Already cancelled is fine; other finished states raise ``PostHogValidationError`` (400). Raises
        ``PostHogCancelNotEffectiveError`` when PostHog said yes but the run is still Starting/Running.
        """
        s = self._settings(project_id)
        return self._run(ops.cancel_run(s.project_id, batch_export_id, run_id), s)

    def retry_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> Backfill:
        """Re-export a run's interval; returns the one-interval backfill PostHog starts for it.

        Raises ``PostHogBackfillAlreadyRunningError`` when that interval's backfill is still running.
        """
        s = self._settings(project_id)
        op = ops.retry_run(
            s.project_id, batch_export_id, run_id, base_url=s.base_url, lookup=self.backfill_lookup
        )
        return self._run(op, s)

    def get_run_logs(
        self,
        batch_export_id: str,
        run_id: str,
        *,
        level: str | Sequence[str] | None = None,
        limit: int = 500,
        project_id: int | None = None,
    ) -> list[LogEntry]:
        """A run's log lines, newest first, from the export logs inside the run's lifetime."""
        s = self._settings(project_id)
        return self._run(ops.get_run_logs(s.project_id, batch_export_id, run_id, level=level, limit=limit), s)

    # -- backfills ------------------------------------------------------------------------------------------

    def list_backfills(
        self, batch_export_id: str, *, ordering: str | None = None, project_id: int | None = None
    ) -> list[Backfill]:
        s = self._settings(project_id)
        return self._run(
            ops.list_backfills(s.project_id, batch_export_id, base_url=s.base_url, ordering=ordering), s
        )

    def get_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> Backfill:
        s = self._settings(project_id)
        return self._run(ops.get_backfill(s.project_id, batch_export_id, backfill_id), s)

    def create_backfill(
        self, batch_export_id: str, start_at: DateLike, end_at: DateLike, *, project_id: int | None = None
    ) -> Backfill:
        """Backfill ``[start_at, end_at)`` (aware datetimes or ISO strings) and return the backfill row.

        Reads the export first and refuses (``PostHogConfigError``, before any POST) a range that is not
        on the export's schedule boundaries, naming the aligned ranges to use. Works with every PostHog
        version (201 + UUID, or 200 + workflow id and a row that appears a moment later) and sends
        date-only bounds to day/week exports that take them. Raises ``PostHogTooManyBackfillsError`` at once
        when the team's concurrent-backfill limit is reached, and ``PostHogBackfillAlreadyRunningError``
        (carrying the running backfill) when a backfill over the same range is still running.
        """
        s = self._settings(project_id)
        op = ops.create_backfill(
            s.project_id, batch_export_id, start_at, end_at, base_url=s.base_url, lookup=self.backfill_lookup
        )
        return self._run(op, s)

    def find_backfill(
        self,
        batch_export_id: str,
        start_at: DateLike,
        end_at: DateLike,
        *,
        active_only: bool = False,
        project_id: int | None = None,
    ) -> Backfill | None:
        """Newest backfill over exactly ``[start_at, end_at)`` (re-attach after a task retry), or ``None``."""
        s = self._settings(project_id)
        op = ops.find_backfill(
            s.project_id, batch_export_id, start_at, end_at, base_url=s.base_url, active_only=active_only
        )
        return self._run(op, s)

    def cancel_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> str:
        """Cancel a Starting/Running backfill and return its status read back (``"Cancelled"``).

        Same rules as :meth:`cancel_run`.
        """
        s = self._settings(project_id)
        return self._run(ops.cancel_backfill(s.project_id, batch_export_id, backfill_id), s)

    def list_backfill_runs(
        self,
        batch_export_id: str,
        backfill: Backfill,
        schedule: ExportSchedule | None = None,
        *,
        project_id: int | None = None,
    ) -> list[BatchExportRun]:
        """Every run of ``backfill``, including a first run aligned down to before its ``start_at``.

        ``schedule``: the export's schedule if the caller has it; otherwise the export is read once.
        """
        s = self._settings(project_id)
        op = ops.list_backfill_runs(
            s.project_id, batch_export_id, backfill, base_url=s.base_url, schedule=schedule
        )
        return self._run(op, s)

    # -- misc -----------------------------------------------------------------------------------------------

    def ui_url(
        self, batch_export_id: str | None = None, tab: str | None = None, *, project_id: int | None = None
    ) -> str:
        """PostHog UI link for the project's batch exports or one export (no network call)."""
        s = self._settings(project_id)
        return rq.ui_url(s.base_url, s.project_id, batch_export_id, tab)

    def test_connection(self) -> tuple[bool, str]:
        """Check host, key, scope and project with one cheap request. Never raises."""
        try:
            s = self._settings()
        except PostHogConfigError as exc:
            return False, str(exc)
        except Exception as exc:
            return (
                False,
                f"Cannot read the PostHog connection {self.posthog_conn_id!r}: {type(exc).__name__}: {exc}",
            )
        try:
            response = self._send(
                rq.list_batch_exports(s.project_id, limit=1), s, RetryPolicy(max_attempts=1)
            )
        except Exception as exc:
            return False, connection_test_message(exc, s)
        count = response.body.get("count") if isinstance(response.body, Mapping) else None
        found = f" ({count} batch exports)" if isinstance(count, int) else ""
        return True, f"Connected to PostHog at {s.base_url}: project {s.project_id} is readable{found}."


def connection_test_message(exc: BaseException, s: ConnectionSettings) -> str:
    """A message a person can act on, for each way a connection test fails."""
    detail = getattr(exc, "detail", None) or ""
    status = getattr(exc, "http_status", None)
    if isinstance(exc, PostHogAuthError) and status == 401:
        return (
            f"PostHog at {s.base_url} rejected the API key (HTTP 401: {detail or 'invalid key'}). "
            "Use a personal API key (phx_...) from Settings > Personal API keys, not a project key."
        )
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
    if isinstance(exc, PostHogTransportError):
        return (
            f"Could not reach PostHog at {s.base_url} ({exc.code}: {detail or exc}). Check the host, port, "
            "scheme, proxy and TLS settings of the connection."
        )
    if isinstance(exc, PostHogError):
        return f"PostHog at {s.base_url} did not accept the test request: {exc}"
    return f"Unexpected error while testing the PostHog connection: {type(exc).__name__}"


class PostHogAsyncHook(_PostHogHookBase):
    """Async twin of :class:`PostHogHook` for triggers: same operations, pooled ``httpx.AsyncClient``.

    The connection is looked up with ``compat.aget_connection()`` and the key is masked with
    ``compat.amask_secret()``: no sync lookup or sync masking ever runs inside the event loop.
    """

    async def _asettings(self, project_id: int | str | None = None) -> ConnectionSettings:
        if self._settings_cache is None:
            conn = await compat.aget_connection(self.posthog_conn_id)
            extra = await compat.aextra_dejson(conn)
            settings = self._build_settings(conn, extra)
            digest = _digest(settings.api_key)
            if digest not in _MASKED:
                await compat.amask_secret(settings.api_key)
                _MASKED.add(digest)
            self._settings_cache = settings
        return self._settings_cache.with_project(project_id)

    async def _send_once(self, spec: rq.RequestSpec, settings: ConnectionSettings) -> rq.ApiResponse:
        import httpx

        client = shared_async_client(settings.base_url, settings.verify)
        timeout = httpx.Timeout(
            settings.read_timeout,
            connect=settings.connect_timeout,
            pool=max(ASYNC_POOL_TIMEOUT, settings.read_timeout),
        )
        try:
            resp = await client.request(
                spec.method,
                spec.full_url(settings.base_url),
                json=spec.json,
                headers={"Authorization": f"Bearer {settings.api_key}"},
                timeout=timeout,
            )
        except (httpx.TransportError, httpx.DecodingError) as exc:
            if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
                raise PostHogAPIError(
                    f"PostHog API {spec.method} {spec.path}: {type(exc).__name__}",
                    method=spec.method,
                    path=spec.path,
                ) from None
            raise transport_error(
                method=spec.method,
                path=spec.path,
                error=exc,
                sent=not _httpx_not_sent(exc),
                secrets=(settings.api_key,),
            ) from None
        return decode_response(
            method=spec.method,
            path=spec.path,
            status=resp.status_code,
            content=resp.content,
            content_type=resp.headers.get("Content-Type"),
            retry_after=resp.headers.get("Retry-After"),
            location=resp.headers.get("Location"),
            secrets=(settings.api_key,),
        )

    async def _send(self, spec: rq.RequestSpec, settings: ConnectionSettings) -> rq.ApiResponse:
        retrying = self.retry_policy.async_retrying(
            idempotent=spec.idempotent, log=self.log, describe=self._describe(spec)
        )
        started = time.monotonic()
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send_once(spec, settings)
        except PostHogError as exc:
            raise add_attempts(
                exc, retrying.statistics.get("attempt_number", 1), time.monotonic() - started
            ) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, op: ops.Operation[T], settings: ConnectionSettings) -> T:
        try:
            command = next(op)
            while True:
                if isinstance(command, ops.Sleep):
                    await asyncio.sleep(command.seconds)
                    command = op.send(None)
                    continue
                try:
                    response = await self._send(command, settings)
                except PostHogError as exc:
                    command = op.throw(exc)
                else:
                    command = op.send(response)
        except StopIteration as stop:
            return stop.value
        finally:
            op.close()

    # -- the same methods as PostHogHook ------------------------------------------------------------------

    async def list_batch_exports(self, *, project_id: int | None = None) -> list[BatchExport]:
        s = await self._asettings(project_id)
        return await self._run(ops.list_batch_exports(s.project_id), s)

    async def get_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> BatchExport:
        s = await self._asettings(project_id)
        return await self._run(ops.get_batch_export(s.project_id, batch_export_id), s)

    async def create_batch_export(
        self, payload: Mapping[str, Any], *, project_id: int | None = None
    ) -> BatchExport:
        s = await self._asettings(project_id)
        return await self._run(ops.create_batch_export(s.project_id, payload), s)

    async def update_batch_export(
        self,
        batch_export_id: str,
        payload: Mapping[str, Any],
        *,
        partial: bool = True,
        project_id: int | None = None,
    ) -> BatchExport:
        s = await self._asettings(project_id)
        op = ops.update_batch_export(s.project_id, batch_export_id, payload, partial=partial)
        return await self._run(op, s)

    async def delete_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = await self._asettings(project_id)
        await self._run(ops.delete_batch_export(s.project_id, batch_export_id), s)

    async def pause_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = await self._asettings(project_id)
        await self._run(ops.pause_batch_export(s.project_id, batch_export_id), s)

    async def unpause_batch_export(
        self, batch_export_id: str, *, backfill: bool = False, project_id: int | None = None
    ) -> None:
        s = await self._asettings(project_id)
        await self._run(ops.unpause_batch_export(s.project_id, batch_export_id, backfill=backfill), s)

    async def get_batch_export_logs(
        self,
        batch_export_id: str,
        *,
        after: DateLike | None = None,
        before: DateLike | None = None,
        level: str | Sequence[str] | None = None,
        search: str | None = None,
        instance_id: str | None = None,
        limit: int = 500,
        project_id: int | None = None,
    ) -> list[LogEntry]:
        s = await self._asettings(project_id)
        op = ops.get_batch_export_logs(
            s.project_id,
            batch_export_id,
            after=after,
            before=before,
            level=level,
            search=search,
            instance_id=instance_id,
            limit=limit,
        )
        return await self._run(op, s)

    async def list_runs(
        self,
        batch_export_id: str,
        *,
        after: DateLike | None = None,
        before: DateLike | None = None,
        start: DateLike | None = None,
        end: DateLike | None = None,
        ordering: str | None = None,
        status: str | Sequence[str] | None = None,
        project_id: int | None = None,
    ) -> list[BatchExportRun]:
        s = await self._asettings(project_id)
        op = ops.list_runs(
            s.project_id,
            batch_export_id,
            base_url=s.base_url,
            after=after,
            before=before,
            start=start,
            end=end,
            ordering=ordering,
            status=status,
        )
        return await self._run(op, s)

    async def get_run(
        self, batch_export_id: str, run_id: str, *, project_id: int | None = None
    ) -> BatchExportRun:
        s = await self._asettings(project_id)
        return await self._run(ops.get_run(s.project_id, batch_export_id, run_id), s)

    async def cancel_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> str:
        s = await self._asettings(project_id)
        return await self._run(ops.cancel_run(s.project_id, batch_export_id, run_id), s)

    async def retry_run(
        self, batch_export_id: str, run_id: str, *, project_id: int | None = None
    ) -> Backfill:
        s = await self._asettings(project_id)
        op = ops.retry_run(
            s.project_id, batch_export_id, run_id, base_url=s.base_url, lookup=self.backfill_lookup
        )
        return await self._run(op, s)

    async def get_run_logs(
        self,
        batch_export_id: str,
        run_id: str,
        *,
        level: str | Sequence[str] | None = None,
        limit: int = 500,
        project_id: int | None = None,
    ) -> list[LogEntry]:
        s = await self._asettings(project_id)
        return await self._run(
            ops.get_run_logs(s.project_id, batch_export_id, run_id, level=level, limit=limit), s
        )

    async def list_backfills(
        self, batch_export_id: str, *, ordering: str | None = None, project_id: int | None = None
    ) -> list[Backfill]:
        s = await self._asettings(project_id)
        return await self._run(
            ops.list_backfills(s.project_id, batch_export_id, base_url=s.base_url, ordering=ordering), s
        )

    async def get_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> Backfill:
        s = await self._asettings(project_id)
        return await self._run(ops.get_backfill(s.project_id, batch_export_id, backfill_id), s)

    async def create_backfill(
        self, batch_export_id: str, start_at: DateLike, end_at: DateLike, *, project_id: int | None = None
    ) -> Backfill:
        s = await self._asettings(project_id)
        op = ops.create_backfill(
            s.project_id, batch_export_id, start_at, end_at, base_url=s.base_url, lookup=self.backfill_lookup
        )
        return await self._run(op, s)

    async def find_backfill(
        self,
        batch_export_id: str,
        start_at: DateLike,
        end_at: DateLike,
        *,
        active_only: bool = False,
        project_id: int | None = None,
    ) -> Backfill | None:
        s = await self._asettings(project_id)
        op = ops.find_backfill(
            s.project_id, batch_export_id, start_at, end_at, base_url=s.base_url, active_only=active_only
        )
        return await self._run(op, s)

    async def cancel_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> str:
        s = await self._asettings(project_id)
        return await self._run(ops.cancel_backfill(s.project_id, batch_export_id, backfill_id), s)

    async def list_backfill_runs(
        self,
        batch_export_id: str,
        backfill: Backfill,
        schedule: ExportSchedule | None = None,
        *,
        project_id: int | None = None,
    ) -> list[BatchExportRun]:
        s = await self._asettings(project_id)
        op = ops.list_backfill_runs(
            s.project_id, batch_export_id, backfill, base_url=s.base_url, schedule=schedule
        )
        return await self._run(op, s)

    async def ui_url(
        self, batch_export_id: str | None = None, tab: str | None = None, *, project_id: int | None = None
    ) -> str:
        s = await self._asettings(project_id)
        return rq.ui_url(s.base_url, s.project_id, batch_export_id, tab)
