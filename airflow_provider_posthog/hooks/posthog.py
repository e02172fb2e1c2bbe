"""PostHogHook (requests, for workers) and, re-exported, PostHogAsyncHook (httpx, for triggers).

The hooks only resolve the Airflow connection, carry bytes and sleep. What to send, how to page, how to map
errors, when to retry and how to find a new backfill live in ``airflow_provider_posthog.api``; everything
else without I/O lives in ``hooks/base.py``, so the two transports cannot drift apart.

``requests`` is imported inside methods: operator modules may import this module at DAG parse time under
``TYPE_CHECKING`` only, and nothing here does I/O before a method is called.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import log as sdk_log

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
from airflow_provider_posthog.hooks.posthog_async import (
    PostHogAsyncHook,
    aclose_shared_clients,
    shared_async_client,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import requests

    from airflow_provider_posthog.api.connection import ConnectionSettings
    from airflow_provider_posthog.api.intervals import ExportSchedule
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun, LogEntry
    from airflow_provider_posthog.api.retry import RetryPolicy

__all__ = [
    "PostHogAsyncHook",
    "PostHogHook",
    "aclose_shared_clients",
    "connection_test_message",
    "shared_async_client",
]

T = TypeVar("T")


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


class PostHogHook(PostHogHookBase):
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

    #: The pooled session, created on first use.
    _session: requests.Session | None = None

    # -- I/O: connection, sending, sleeping -----------------------------------------------------------------

    def _settings(self, project_id: int | str | None = None) -> ConnectionSettings:
        if self._settings_cache is None:
            conn = self.get_connection(self.posthog_conn_id)
            settings = self._build_settings(conn, conn.extra_dejson)
            if not self._key_masked(settings):
                sdk_log.mask_secret(settings.api_key)
                self._note_masked(settings)
            self._settings_cache = settings
        return self._settings_cache.with_project(project_id)

    def get_conn(self) -> requests.Session:
        """The pooled ``requests.Session`` (no Authorization header on it: it is added per request)."""
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update(COMMON_HEADERS)
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _send_once(self, spec: RequestSpec, settings: ConnectionSettings) -> ApiResponse:
        import requests

        try:
            resp = self.get_conn().request(
                spec.method,
                spec.full_url(settings.base_url),
                json=spec.json,
                headers=self._headers(settings),
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
                verify=settings.verify,
            )
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise self._transport_error(spec, settings, exc, sent=not _requests_not_sent(exc)) from None
        except requests.RequestException as exc:
            raise self._unsendable(spec, exc) from None
        return self._decode(spec, settings, resp.status_code, resp.content, resp.headers)

    def _send(
        self, spec: RequestSpec, settings: ConnectionSettings, policy: RetryPolicy | None = None
    ) -> ApiResponse:
        retrying = self._policy(policy).retrying(
            idempotent=spec.idempotent, log=self.log, describe=self._describe(spec)
        )
        started = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(spec, settings)
        except PostHogError as exc:
            raise self._gave_up(exc, retrying, started) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, op: Operation[T], settings: ConnectionSettings) -> T:
        """Drive an operation: send its requests (with retries), sleep its sleeps, return its result."""
        with contextlib.closing(op):
            try:
                command = advance(op)
                while True:
                    if isinstance(command, Sleep):
                        time.sleep(command.seconds)
                        command = advance(op)
                        continue
                    try:
                        response = self._send(command, settings)
                    except PostHogError as exc:
                        command = advance(op, error=exc)
                    else:
                        command = advance(op, response)
            except StopIteration as stop:
                return stop.value

    # -- batch exports --------------------------------------------------------------------------------------

    def list_batch_exports(self, *, project_id: int | None = None) -> list[BatchExport]:
        """Every export of the project (all limit/offset pages), newest first."""
        s = self._settings(project_id)
        return self._run(endpoints.list_batch_exports(s.project_id), s)

    def get_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> BatchExport:
        s = self._settings(project_id)
        return self._run(endpoints.get_batch_export(s.project_id, batch_export_id), s)

    def create_batch_export(
        self, payload: Mapping[str, Any], *, project_id: int | None = None
    ) -> BatchExport:
        """Create an export. Resent only if the request provably never reached PostHog (or was throttled)."""
        s = self._settings(project_id)
        return self._run(endpoints.create_batch_export(s.project_id, payload), s)

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
        op = endpoints.update_batch_export(s.project_id, batch_export_id, payload, partial=partial)
        return self._run(op, s)

    def delete_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = self._settings(project_id)
        self._run(endpoints.delete_batch_export(s.project_id, batch_export_id), s)

    def pause_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        s = self._settings(project_id)
        self._run(endpoints.pause_batch_export(s.project_id, batch_export_id), s)

    def unpause_batch_export(
        self, batch_export_id: str, *, backfill: bool = False, project_id: int | None = None
    ) -> None:
        """Unpause; ``backfill=True`` makes PostHog backfill the paused gap."""
        s = self._settings(project_id)
        self._run(endpoints.unpause_batch_export(s.project_id, batch_export_id, backfill=backfill), s)

    def get_batch_export_logs(
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
        s = self._settings(project_id)
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
        return self._run(op, s)

    def get_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> BatchExportRun:
        """One run, whatever its age (PostHog hides runs older than 7 days unless asked with ``after``)."""
        s = self._settings(project_id)
        return self._run(endpoints.get_run(s.project_id, batch_export_id, run_id), s)

    def cancel_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> str:
        """Cancel a Starting/Running run and return its status read back afterwards (``"Cancelled"``).

        Already cancelled is fine; other finished states raise ``PostHogValidationError`` (400). Raises
        ``PostHogCancelNotEffectiveError`` when PostHog said yes but the run is still Starting/Running.
        """
        s = self._settings(project_id)
        return self._run(endpoints.cancel_run(s.project_id, batch_export_id, run_id), s)

    def retry_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> Backfill:
        """Re-export a run's interval; returns the one-interval backfill PostHog starts for it.

        Raises ``PostHogBackfillAlreadyRunningError`` when that interval's backfill is still running.
        """
        s = self._settings(project_id)
        return self._run(
            backfills.retry_run(s.project_id, batch_export_id, run_id, lookup=self.backfill_lookup), s
        )

    def get_run_logs(
        self,
        batch_export_id: str,
        run_id: str,
        *,
        level: str | Sequence[str] | None = None,
        limit: int = LOGS_MAX_LIMIT,
        project_id: int | None = None,
    ) -> list[LogEntry]:
        """A run's log lines, newest first, from the export logs inside the run's lifetime."""
        s = self._settings(project_id)
        op = endpoints.get_run_logs(s.project_id, batch_export_id, run_id, level=level, limit=limit)
        return self._run(op, s)

    # -- backfills ------------------------------------------------------------------------------------------

    def list_backfills(
        self, batch_export_id: str, *, ordering: str | None = None, project_id: int | None = None
    ) -> list[Backfill]:
        s = self._settings(project_id)
        return self._run(endpoints.list_backfills(s.project_id, batch_export_id, ordering=ordering), s)

    def get_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> Backfill:
        s = self._settings(project_id)
        return self._run(endpoints.get_backfill(s.project_id, batch_export_id, backfill_id), s)

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
        op = backfills.create_backfill(
            s.project_id, batch_export_id, start_at, end_at, lookup=self.backfill_lookup
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
        op = backfills.find_backfill(s.project_id, batch_export_id, start_at, end_at, active_only=active_only)
        return self._run(op, s)

    def cancel_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> str:
        """Cancel a Starting/Running backfill and return its status read back (``"Cancelled"``).

        Same rules as :meth:`cancel_run`.
        """
        s = self._settings(project_id)
        return self._run(endpoints.cancel_backfill(s.project_id, batch_export_id, backfill_id), s)

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
        op = endpoints.list_backfill_runs(s.project_id, batch_export_id, backfill, schedule=schedule)
        return self._run(op, s)

    # -- misc -----------------------------------------------------------------------------------------------

    def ui_url(
        self, batch_export_id: str | None = None, tab: str | None = None, *, project_id: int | None = None
    ) -> str:
        """PostHog UI link for the project's batch exports or one export (no network call)."""
        return self._ui_url(self._settings(project_id), batch_export_id, tab)

    def test_connection(self) -> tuple[bool, str]:
        """Check host, key, scope and project with one cheap request, without retrying. Never raises."""
        try:
            s = self._settings()
        except Exception as exc:
            return False, self._connection_unreadable(exc)
        try:
            response = self._send(self._connection_test_request(s), s, self._CONNECTION_TEST_POLICY)
        except Exception as exc:
            return False, connection_test_message(exc, s)
        return True, self._connection_ok(s, response)


# One docstring per public method, written on the sync hook, for both twins.
for _name, _method in vars(PostHogAsyncHook).items():
    if callable(_method) and not _name.startswith("_") and _method.__doc__ is None:
        _method.__doc__ = getattr(PostHogHook, _name).__doc__
