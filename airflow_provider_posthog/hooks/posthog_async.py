"""PostHogAsyncHook (httpx, for triggers): the async twin of ``PostHogHook``, same operations and policy.

The connection is looked up with ``compat.aget_connection()`` and the key is masked with
``compat.amask_secret()``: no sync lookup or sync masking ever runs inside the event loop. ``httpx`` is
imported inside functions, so importing this module costs no HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_posthog import compat
from airflow_provider_posthog.api import backfills, endpoints
from airflow_provider_posthog.api.http import (
    LOGS_MAX_LIMIT,
    ApiResponse,
    DateLike,
    Operation,
    RequestSpec,
    Sleep,
)
from airflow_provider_posthog.exceptions import PostHogError
from airflow_provider_posthog.hooks.base import (
    COMMON_HEADERS,
    PostHogHookBase,
    advance,
    connection_test_message,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping, Sequence

    import httpx

    from airflow_provider_posthog.api.connection import ConnectionSettings
    from airflow_provider_posthog.api.intervals import ExportSchedule
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun, LogEntry
    from airflow_provider_posthog.api.retry import RetryPolicy

T = TypeVar("T")

#: Pool size of each shared async client. PostHog allows ~8 requests/s per key (480/min); against the emulator
#: a burst of 1000 requests took 3.0 s with 16 connections and 9.6 s with 64 (pool scheduling overhead).
ASYNC_MAX_CONNECTIONS = 16
ASYNC_POOL_TIMEOUT = 60.0

# One httpx.AsyncClient per (event loop, base URL, TLS verify): shared TCP/TLS connections across hooks.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], httpx.AsyncClient]
] = weakref.WeakKeyDictionary()


def _httpx_not_sent(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _ssl_context(ca_path: str) -> ssl.SSLContext:
    """A CA bundle file or directory as httpx wants it (a path string for ``verify`` is deprecated there)."""
    import os
    import ssl

    if os.path.isdir(ca_path):
        return ssl.create_default_context(capath=ca_path)
    return ssl.create_default_context(cafile=ca_path)


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
            headers=COMMON_HEADERS,
            limits=httpx.Limits(
                max_connections=ASYNC_MAX_CONNECTIONS,
                max_keepalive_connections=ASYNC_MAX_CONNECTIONS,
                keepalive_expiry=4.0,
            ),
            follow_redirects=False,
            verify=_ssl_context(verify) if isinstance(verify, str) else verify,
        )
        per_loop[key] = client
    return client


async def aclose_shared_clients() -> None:
    """Close the pooled clients of the running loop (tests, graceful shutdown)."""
    clients = _ASYNC_CLIENTS.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()


class PostHogAsyncHook(PostHogHookBase):
    """Async twin of :class:`~airflow_provider_posthog.hooks.posthog.PostHogHook` for triggers.

    Same methods, signatures, operations and retry policy; requests go through a pooled ``httpx.AsyncClient``
    shared by every hook of the event loop.
    """

    # -- I/O: connection, sending, sleeping -----------------------------------------------------------------

    async def _asettings(self, project_id: int | str | None = None) -> ConnectionSettings:
        if self._settings_cache is None:
            conn = await compat.aget_connection(self.posthog_conn_id)
            settings = self._build_settings(conn, await compat.aextra_dejson(conn))
            if not self._key_masked(settings):
                await compat.amask_secret(settings.api_key)
                self._note_masked(settings)
            self._settings_cache = settings
        return self._settings_cache.with_project(project_id)

    async def _send_once(self, spec: RequestSpec, settings: ConnectionSettings) -> ApiResponse:
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
                headers=self._headers(settings),
                timeout=timeout,
            )
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise self._unsendable(spec, exc) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise self._transport_error(spec, settings, exc, sent=not _httpx_not_sent(exc)) from None
        return self._decode(spec, settings, resp.status_code, resp.content, resp.headers)

    async def _send(
        self, spec: RequestSpec, settings: ConnectionSettings, policy: RetryPolicy | None = None
    ) -> ApiResponse:
        retrying = self._policy(policy).async_retrying(
            idempotent=spec.idempotent, log=self.log, describe=self._describe(spec)
        )
        started = time.monotonic()
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send_once(spec, settings)
        except PostHogError as exc:
            raise self._gave_up(exc, retrying, started) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, op: Operation[T], settings: ConnectionSettings) -> T:
        """Drive an operation: send its requests (with retries), sleep its sleeps, return its result."""
        with contextlib.closing(op):
            try:
                command = advance(op)
                while True:
                    if isinstance(command, Sleep):
                        await asyncio.sleep(command.seconds)
                        command = advance(op)
                        continue
                    try:
                        response = await self._send(command, settings)
                    except PostHogError as exc:
                        command = advance(op, error=exc)
                    else:
                        command = advance(op, response)
            except StopIteration as stop:
                return stop.value

    # The public methods below mirror PostHogHook's one for one (a test compares the signatures); their
    # docstrings are PostHogHook's (copied in hooks/posthog.py).

    # -- batch exports --------------------------------------------------------------------------------------

    async def list_batch_exports(self, *, project_id: int | None = None) -> list[BatchExport]:
        s = await self._asettings(project_id)
        return await self._run(endpoints.list_batch_exports(s.project_id), s)

    async def get_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> BatchExport:
        s = await self._asettings(project_id)
        return await self._run(endpoints.get_batch_export(s.project_id, batch_export_id), s)

    async def create_batch_export(
        self, payload: Mapping[str, Any], *, project_id: int | None = None
    ) -> BatchExport:
        s = await self._asettings(project_id)
        return await self._run(endpoints.create_batch_export(s.project_id, payload), s)

    async def update_batch_export(
        self,
        batch_export_id: str,
        payload: Mapping[str, Any],
        *,
        partial: bool = True,
        project_id: int | None = None,
    ) -> BatchExport:
        s = await self._asettings(project_id)
        op = endpoints.update_batch_export(s.project_id, batch_export_id, payload, partial=partial)
        return await self._run(op, s)

    async def delete_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = await self._asettings(project_id)
        await self._run(endpoints.delete_batch_export(s.project_id, batch_export_id), s)

    async def pause_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = await self._asettings(project_id)
        await self._run(endpoints.pause_batch_export(s.project_id, batch_export_id), s)

    async def unpause_batch_export(
        self, batch_export_id: str, *, backfill: bool = False, project_id: int | None = None
    ) -> None:
        s = await self._asettings(project_id)
        await self._run(endpoints.unpause_batch_export(s.project_id, batch_export_id, backfill=backfill), s)

    async def get_batch_export_logs(
        self,
        batch_export_id: str,
        *,
        after: DateLike | None = None,
        before: DateLike | None = None,
        level: str | Sequence[str] | None = None,
        search: str | None = None,
        instance_id: str | None = None,
        limit: int = LOGS_MAX_LIMIT,
        project_id: int | None = None,
    ) -> list[LogEntry]:
        s = await self._asettings(project_id)
        op = endpoints.get_batch_export_logs(
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

    # -- runs -----------------------------------------------------------------------------------------------

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
        op = endpoints.list_runs(
            s.project_id,
            batch_export_id,
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
        return await self._run(endpoints.get_run(s.project_id, batch_export_id, run_id), s)

    async def cancel_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> str:
        s = await self._asettings(project_id)
        return await self._run(endpoints.cancel_run(s.project_id, batch_export_id, run_id), s)

    async def retry_run(
        self, batch_export_id: str, run_id: str, *, project_id: int | None = None
    ) -> Backfill:
        s = await self._asettings(project_id)
        return await self._run(
            backfills.retry_run(s.project_id, batch_export_id, run_id, lookup=self.backfill_lookup), s
        )

    async def get_run_logs(
        self,
        batch_export_id: str,
        run_id: str,
        *,
        level: str | Sequence[str] | None = None,
        limit: int = LOGS_MAX_LIMIT,
        project_id: int | None = None,
    ) -> list[LogEntry]:
        s = await self._asettings(project_id)
        op = endpoints.get_run_logs(s.project_id, batch_export_id, run_id, level=level, limit=limit)
        return await self._run(op, s)

    # -- backfills ------------------------------------------------------------------------------------------

    async def list_backfills(
        self, batch_export_id: str, *, ordering: str | None = None, project_id: int | None = None
    ) -> list[Backfill]:
        s = await self._asettings(project_id)
        return await self._run(endpoints.list_backfills(s.project_id, batch_export_id, ordering=ordering), s)

    async def get_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> Backfill:
        s = await self._asettings(project_id)
        return await self._run(endpoints.get_backfill(s.project_id, batch_export_id, backfill_id), s)

    async def create_backfill(
        self, batch_export_id: str, start_at: DateLike, end_at: DateLike, *, project_id: int | None = None
    ) -> Backfill:
        s = await self._asettings(project_id)
        op = backfills.create_backfill(
            s.project_id, batch_export_id, start_at, end_at, lookup=self.backfill_lookup
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
        op = backfills.find_backfill(s.project_id, batch_export_id, start_at, end_at, active_only=active_only)
        return await self._run(op, s)

    async def cancel_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> str:
        s = await self._asettings(project_id)
        return await self._run(endpoints.cancel_backfill(s.project_id, batch_export_id, backfill_id), s)

    async def list_backfill_runs(
        self,
        batch_export_id: str,
        backfill: Backfill,
        schedule: ExportSchedule | None = None,
        *,
        project_id: int | None = None,
    ) -> list[BatchExportRun]:
        s = await self._asettings(project_id)
        op = endpoints.list_backfill_runs(s.project_id, batch_export_id, backfill, schedule=schedule)
        return await self._run(op, s)

    # -- misc -----------------------------------------------------------------------------------------------

    async def ui_url(
        self, batch_export_id: str | None = None, tab: str | None = None, *, project_id: int | None = None
    ) -> str:
        """PostHog UI link for the project's batch exports or one export (no API call).

        Async only because the connection lookup is: inside the triggerer it must not block the loop.
        """
        return self._ui_url(await self._asettings(project_id), batch_export_id, tab)

    async def test_connection(self) -> tuple[bool, str]:
        """Check host, key, scope and project with one cheap request, without retrying. Never raises."""
        try:
            s = await self._asettings()
        except Exception as exc:
            return False, self._connection_unreadable(exc)
        try:
            response = await self._send(self._connection_test_request(s), s, self._CONNECTION_TEST_POLICY)
        except Exception as exc:
            return False, connection_test_message(exc, s)
        return True, self._connection_ok(s, response)
