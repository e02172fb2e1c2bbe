"""PostHogAsyncHook (aiohttp, for triggers): the async twin of ``PostHogHook``, same operations and policy.

The connection is looked up with ``compat.aget_connection()`` and the key is masked with
``compat.amask_secret()``: no sync lookup or sync masking ever runs inside the event loop. ``aiohttp`` is
imported inside functions, so importing this module costs no HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_posthog import compat
from airflow_provider_posthog.api import backfills, endpoints, jobs, unpause
from airflow_provider_posthog.api.errors import ServerSpeaksTLS
from airflow_provider_posthog.api.http import (
    LOGS_MAX_LIMIT,
    ApiResponse,
    DateLike,
    Operation,
    RequestSpec,
    Shared,
    Sleep,
)
from airflow_provider_posthog.api.retry import NO_DEADLINE, Deadline
from airflow_provider_posthog.exceptions import PostHogError
from airflow_provider_posthog.hooks.aiohttp_client import (
    aclose_shared_clients,
    dropped,
    not_sent,
    raise_if_speaks_tls,
    shared_async_session,
)
from airflow_provider_posthog.hooks.base import PostHogHookBase, advance, connection_test_message
from airflow_provider_posthog.hooks.shared_polls import announce_read, read_shared

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence

    from airflow_provider_posthog.api.connection import ConnectionSettings
    from airflow_provider_posthog.api.intervals import ExportSchedule
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun, LogEntry
    from airflow_provider_posthog.api.retry import RetryPolicy

__all__ = ["PostHogAsyncHook", "aclose_shared_clients", "shared_async_session"]

T = TypeVar("T")


if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[T], seconds: float) -> T:
        """``awaitable``, cut short after ``seconds`` (``TimeoutError``). Python 3.11's ``asyncio.wait_for``
        returns a result that arrives together with a cancellation of the caller and drops the cancellation
        (the trigger goes on as if Airflow had not stopped it); ``asyncio.timeout`` keeps it, and runs the
        request in the caller's task instead of a new task per request."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10
    _within = asyncio.wait_for


class PostHogAsyncHook(PostHogHookBase):
    """Async twin of :class:`~airflow_provider_posthog.hooks.posthog.PostHogHook` for triggers.

    Same methods, signatures, operations and retry policy; requests go through a pooled
    ``aiohttp.ClientSession`` shared by every hook of the event loop.
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

    async def _send_once(
        self, spec: RequestSpec, settings: ConnectionSettings, deadline: Deadline
    ) -> ApiResponse:
        """One attempt with an overall deadline (aiohttp's socket timeouts apply to each read, not to the
        answer)."""
        import aiohttp

        budget = self._attempt_budget(settings, deadline)
        if budget <= 0:
            raise self._cut_short(spec, settings, 0.0)
        try:
            return await _within(self._exchange(spec, settings), budget)
        except aiohttp.InvalidURL as exc:
            raise self._unsendable(spec, settings, exc) from None
        except (aiohttp.ClientError, ServerSpeaksTLS) as exc:  # before TimeoutError: aiohttp's subclass it
            raise self._transport_error(spec, settings, exc, sent=not not_sent(exc)) from None
        except (asyncio.TimeoutError, TimeoutError):  # two classes before Python 3.11
            raise self._cut_short(spec, settings, budget) from None

    async def _exchange(self, spec: RequestSpec, settings: ConnectionSettings) -> ApiResponse:
        import aiohttp
        import yarl

        session = shared_async_session(settings.base_url, settings.verify)
        # Sent as built: the query is percent-encoded already (a "+" in a timestamp must stay %2B).
        url = yarl.URL(spec.full_url(settings.base_url, settings.project_id), encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        try:
            async with session.request(
                spec.method,
                url,
                json=spec.json,
                headers=self._headers(settings),
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                self._refuse_declared_size(spec, settings, resp.headers)
                body = bytearray()
                async for chunk in resp.content.iter_any():
                    self._take(spec, settings, body, chunk)
        except aiohttp.ClientError as exc:
            if dropped(exc):
                await raise_if_speaks_tls(url, settings.connect_timeout)
            raise
        return self._decode(spec, settings, resp.status, bytes(body), resp.headers)

    async def _send(
        self,
        spec: RequestSpec,
        settings: ConnectionSettings,
        policy: RetryPolicy | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> ApiResponse:
        retrying = self._policy(policy).async_retrying(
            idempotent=spec.idempotent,
            log=self.log,
            deadline=deadline,
        )
        started = time.monotonic()
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send_once(spec, settings, deadline)
        except PostHogError as exc:
            raise self._gave_up(exc, retrying, started) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    async def arun(
        self,
        op: Operation[T],
        project_id: int | str | None = None,
        *,
        deadline: float | None = None,
        fresh_within: float = 0.0,
    ) -> T:
        """Drive an operation of ``airflow_provider_posthog.api``: send its requests (retried by the hook's
        policy), sleep its sleeps, return its result.

        ``deadline`` (epoch seconds) bounds the whole call: a request still retrying, throttled or being
        answered slowly at that time is cut short with ``PostHogDeadlineError``.

        ``fresh_within`` (seconds): how old the answer to a poll's read, read for another wait of the same
        event loop, may be and still serve this call (``0``: only a read still in flight is joined). Only
        the async hook shares reads; the sync hook reads each one itself.
        """
        return await self._drive(
            op, await self._asettings(project_id), Deadline.from_epoch(deadline), fresh_within
        )

    async def _announce(self, op: Operation[Any], *, fresh_within: float) -> None:
        """Tell the event loop's shared reads what ``op``'s first read will ask, without asking it: a wait
        that polls in a poll interval is then covered by the reads of the waits that poll before it. Sends
        nothing (an operation's commands are computed without I/O); nothing is noted when the first command
        is not a shared read over a range."""
        with contextlib.closing(op):
            try:
                command = advance(op)
            except StopIteration:
                return
        if isinstance(command, Shared) and command.span is not None:
            announce_read(command, await self._asettings(), fresh_within)

    async def _drive(
        self, op: Operation[T], settings: ConnectionSettings, until: Deadline, fresh_within: float
    ) -> T:
        """The driver: answer each request and shared read of ``op``, sleep its sleeps, until it returns."""
        with contextlib.closing(op):
            try:
                command = advance(op)
                while True:
                    if isinstance(command, Sleep):
                        await asyncio.sleep(until.clamp(command.seconds))
                        command = advance(op)
                        continue
                    try:
                        reply = await self._answer(command, settings, until, fresh_within)
                    except PostHogError as exc:
                        command = advance(op, error=exc)
                    else:
                        command = advance(op, reply)
            except StopIteration as stop:
                return stop.value

    async def _answer(
        self,
        command: RequestSpec | Shared[Any],
        settings: ConnectionSettings,
        until: Deadline,
        fresh_within: float,
    ) -> Any:
        """A request's answer, or a shared read's: through the event loop's table of shared reads
        (``hooks/shared_polls.py``), so that the waits of one triggerer asking the same thing share a read."""
        if isinstance(command, Shared):
            return await read_shared(self, command, settings, until, fresh_within)
        return await self._send(command, settings, deadline=until)

    # -- batch exports --------------------------------------------------------------------------------------

    async def list_batch_exports(self, *, project_id: int | None = None) -> list[BatchExport]:
        """Every export of the project (all limit/offset pages), newest first."""
        return await self.arun(endpoints.list_batch_exports(), project_id)

    async def get_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> BatchExport:
        """One export (PostHog strips the destination's secrets)."""
        return await self.arun(endpoints.get_batch_export(batch_export_id), project_id)

    async def create_batch_export(
        self, payload: Mapping[str, Any], *, project_id: int | None = None
    ) -> BatchExport:
        """Create an export. Resent only if the request provably never reached PostHog (or was throttled)."""
        return await self.arun(endpoints.create_batch_export(payload), project_id)

    async def update_batch_export(
        self,
        batch_export_id: str,
        payload: Mapping[str, Any],
        *,
        partial: bool = True,
        project_id: int | None = None,
    ) -> BatchExport:
        """PATCH (``partial=True``) or PUT the export; ``destination.config`` is merged by PostHog."""
        return await self.arun(
            endpoints.update_batch_export(batch_export_id, payload, partial=partial), project_id
        )

    async def delete_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        """Delete the export (PostHog also cancels its running backfills)."""
        await self.arun(endpoints.delete_batch_export(batch_export_id), project_id)

    async def pause_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        """Pause the export's schedule (a no-op when it is paused already)."""
        await self.arun(endpoints.pause_batch_export(batch_export_id), project_id)

    async def unpause_batch_export(
        self, batch_export_id: str, *, backfill: bool = False, project_id: int | None = None
    ) -> None:
        """Unpause; ``backfill=True`` first backfills the paused gap from PostHog's ``last_paused_at`` (never
        PostHog's own backfill flag, which exports the whole history when that is unset)."""
        op = unpause.unpause_batch_export(batch_export_id, backfill=backfill, lookup=self.backfill_lookup)
        await self.arun(op, project_id)

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
        """Export-level log lines, newest first (at most ``limit`` ≤ 500).

        ``[]`` with one warning where this PostHog version refuses logs to personal API keys.
        """
        return await self.arun(
            endpoints.get_batch_export_logs(
                batch_export_id,
                after=after,
                before=before,
                level=level,
                search=search,
                instance_id=instance_id,
                limit=limit,
            ),
            project_id,
        )

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
        """Every run matching the filters (all cursor pages).

        PostHog applies a 7-day window by default: ``after``/``before`` bound ``created_at`` (default
        ordering), ``start``/``end`` bound the data interval when ordering by ``data_interval_start``.
        """
        return await self.arun(
            endpoints.list_runs(
                batch_export_id,
                after=after,
                before=before,
                start=start,
                end=end,
                ordering=ordering,
                status=status,
            ),
            project_id,
        )

    async def get_run(
        self, batch_export_id: str, run_id: str, *, project_id: int | None = None
    ) -> BatchExportRun:
        """One run, whatever its age (PostHog hides runs older than 7 days unless asked with ``after``)."""
        return await self.arun(endpoints.get_run(batch_export_id, run_id), project_id)

    async def cancel_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> str:
        """Cancel a Starting/Running run and return its status read back afterwards (``"Cancelled"``).

        A run that already finished is left as it is and its status returned. Raises
        ``PostHogCancelNotEffectiveError`` when PostHog said yes but the run is still Starting/Running.
        """
        result = await self.arun(jobs.cancel(jobs.RunJob(batch_export_id, run_id)), project_id)
        return result.status

    async def retry_run(
        self, batch_export_id: str, run_id: str, *, project_id: int | None = None
    ) -> Backfill:
        """Re-export a run's interval; returns the one-interval backfill PostHog starts for it.

        Raises ``PostHogBackfillAlreadyRunningError`` when that interval's backfill is still running.
        """
        return await self.arun(
            backfills.retry_run(batch_export_id, run_id, lookup=self.backfill_lookup), project_id
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
        """A run's log lines, newest first, from the export logs inside the run's lifetime."""
        return await self.arun(
            endpoints.get_run_logs(batch_export_id, run_id, level=level, limit=limit), project_id
        )

    # -- backfills ------------------------------------------------------------------------------------------

    async def list_backfills(
        self, batch_export_id: str, *, ordering: str | None = None, project_id: int | None = None
    ) -> list[Backfill]:
        """Every backfill of the export (all cursor pages)."""
        return await self.arun(endpoints.list_backfills(batch_export_id, ordering=ordering), project_id)

    async def get_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> Backfill:
        """One backfill, with its ``progress`` where PostHog reports it."""
        return await self.arun(endpoints.get_backfill(batch_export_id, backfill_id), project_id)

    async def create_backfill(
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
        return await self.arun(
            backfills.create_backfill(batch_export_id, start_at, end_at, lookup=self.backfill_lookup),
            project_id,
        )

    async def find_backfill(
        self,
        batch_export_id: str,
        start_at: DateLike,
        end_at: DateLike,
        *,
        active_only: bool = False,
        project_id: int | None = None,
    ) -> Backfill | None:
        """Newest backfill over exactly ``[start_at, end_at)`` (re-attach after a task retry), or ``None``."""
        return await self.arun(
            backfills.find_backfill(batch_export_id, start_at, end_at, active_only=active_only), project_id
        )

    async def cancel_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> str:
        """Cancel a Starting/Running backfill and return its status read back (``"Cancelled"``).

        Same rules as :meth:`cancel_run`.
        """
        result = await self.arun(jobs.cancel(jobs.BackfillJob(batch_export_id, backfill_id)), project_id)
        return result.status

    async def list_backfill_runs(
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
        return await self.arun(
            endpoints.list_backfill_runs(batch_export_id, backfill, schedule=schedule), project_id
        )

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
