"""PostHogHook (requests, for workers): transport, and one line per public method over an operation.

What to send, how to page, how to map errors, when to retry, how to find a new backfill, how to poll or cancel
a job live in ``airflow_provider_posthog.api``; everything else without I/O lives in ``hooks/base.py``. The
triggers' twin is ``hooks/posthog_async.py``.

``requests`` is imported inside methods: operator modules may import this module at DAG parse time under
``TYPE_CHECKING`` only, and nothing here does I/O before a method is called.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import log as sdk_log

from airflow_provider_posthog import compat
from airflow_provider_posthog.api import backfills, endpoints, jobs, unpause
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
from airflow_provider_posthog.hooks.base import PostHogHookBase, advance, connection_test_message
from airflow_provider_posthog.hooks.requests_session import (
    READ_CHUNK,
    Watchdog,
    new_session,
    requests_not_sent,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import requests

    from airflow_provider_posthog.api.connection import ConnectionSettings
    from airflow_provider_posthog.api.intervals import ExportSchedule
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun, LogEntry
    from airflow_provider_posthog.api.retry import RetryPolicy

T = TypeVar("T")


class PostHogHook(PostHogHookBase):
    """Sync client for every PostHog batch-exports endpoint, for workers and the CLI.

    Connection: host = PostHog app URL (default ``https://us.posthog.com``), password = personal API key
    (``phx_...``), extra ``project_id`` (numeric), optional extra ``timeout`` / ``connect_timeout`` seconds,
    ``scheme`` (``http`` for a scheme-less local host), ``verify`` (false or a CA bundle path) and
    ``max_response_bytes``.
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
            self._session = new_session()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _send_once(self, spec: RequestSpec, settings: ConnectionSettings, deadline: Deadline) -> ApiResponse:
        """One attempt with an overall deadline (requests' timeouts apply to each read, not to the answer)."""
        import requests

        budget = self._attempt_budget(settings, deadline)
        if budget <= 0:
            raise self._cut_short(spec, settings, 0.0)
        with Watchdog(budget) as watchdog:
            try:
                resp = self.get_conn().request(
                    spec.method,
                    spec.full_url(settings.base_url, settings.project_id),
                    json=spec.json,
                    headers=self._headers(settings),
                    timeout=(min(settings.connect_timeout, budget), min(settings.read_timeout, budget)),
                    allow_redirects=False,
                    verify=settings.verify,
                    stream=True,
                )
                with contextlib.closing(resp):
                    content = self._read(spec, settings, resp)
                    cut = watchdog.stop()
            except PostHogError:
                raise
            except Exception as exc:
                # A shut socket surfaces as whatever the read was doing: a reset, a truncated body, ...
                if watchdog.stop():
                    raise self._cut_short(spec, settings, budget) from None
                if isinstance(
                    exc,
                    (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError),
                ):
                    raise self._transport_error(
                        spec, settings, exc, sent=not requests_not_sent(exc)
                    ) from None
                if isinstance(exc, requests.RequestException):
                    raise self._unsendable(spec, settings, exc) from None
                raise
        if cut:  # even headers cut short can pass for an answer: urllib3 hands over what it parsed
            raise self._cut_short(spec, settings, budget)
        return self._decode(spec, settings, resp.status_code, content, resp.headers)

    def _read(self, spec: RequestSpec, settings: ConnectionSettings, resp: requests.Response) -> bytes:
        """The whole body, refusing it once it passes ``max_response_bytes``."""
        self._refuse_declared_size(spec, settings, resp.headers)
        body = bytearray()
        for chunk in resp.iter_content(READ_CHUNK):
            self._take(spec, settings, body, chunk)
        return bytes(body)

    def _send(
        self,
        spec: RequestSpec,
        settings: ConnectionSettings,
        policy: RetryPolicy | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> ApiResponse:
        retrying = self._policy(policy).retrying(
            idempotent=spec.idempotent,
            log=self.log,
            deadline=deadline,
        )
        started = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(spec, settings, deadline)
        except PostHogError as exc:
            raise self._gave_up(exc, retrying, started) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    def run(
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
        return self._drive(op, self._settings(project_id), Deadline.from_epoch(deadline), fresh_within)

    def _drive(
        self, op: Operation[T], settings: ConnectionSettings, until: Deadline, fresh_within: float
    ) -> T:
        """The driver: answer each request and shared read of ``op``, sleep its sleeps, until it returns."""
        with contextlib.closing(op):
            try:
                command = advance(op)
                while True:
                    if isinstance(command, Sleep):
                        time.sleep(until.clamp(command.seconds))
                        command = advance(op)
                        continue
                    try:
                        reply = self._answer(command, settings, until, fresh_within)
                    except PostHogError as exc:
                        command = advance(op, error=exc)
                    else:
                        command = advance(op, reply)
            except StopIteration as stop:
                return stop.value

    def _answer(
        self,
        command: RequestSpec | Shared[Any],
        settings: ConnectionSettings,
        until: Deadline,
        fresh_within: float,
    ) -> Any:
        """A request's answer, or a shared read's: read here, unshared (each task runs in a process of
        its own, with nobody to share with)."""
        if isinstance(command, Shared):
            return self._drive(command.alone(), settings, until, fresh_within)
        return self._send(command, settings, deadline=until)

    # -- batch exports --------------------------------------------------------------------------------------

    def list_batch_exports(self, *, project_id: int | None = None) -> list[BatchExport]:
        """Every export of the project (all limit/offset pages), newest first."""
        return self.run(endpoints.list_batch_exports(), project_id)

    def get_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> BatchExport:
        """One export (PostHog strips the destination's secrets)."""
        return self.run(endpoints.get_batch_export(batch_export_id), project_id)

    def create_batch_export(
        self, payload: Mapping[str, Any], *, project_id: int | None = None
    ) -> BatchExport:
        """Create an export. Resent only if the request provably never reached PostHog (or was throttled)."""
        return self.run(endpoints.create_batch_export(payload), project_id)

    def update_batch_export(
        self,
        batch_export_id: str,
        payload: Mapping[str, Any],
        *,
        partial: bool = True,
        project_id: int | None = None,
    ) -> BatchExport:
        """PATCH (``partial=True``) or PUT the export; ``destination.config`` is merged by PostHog."""
        return self.run(endpoints.update_batch_export(batch_export_id, payload, partial=partial), project_id)

    def delete_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        """Delete the export (PostHog also cancels its running backfills)."""
        self.run(endpoints.delete_batch_export(batch_export_id), project_id)

    def pause_batch_export(self, batch_export_id: str, *, project_id: int | None = None) -> None:
        """Pause the export's schedule (a no-op when it is paused already)."""
        self.run(endpoints.pause_batch_export(batch_export_id), project_id)

    def unpause_batch_export(
        self, batch_export_id: str, *, backfill: bool = False, project_id: int | None = None
    ) -> None:
        """Unpause; ``backfill=True`` first backfills the paused gap from PostHog's ``last_paused_at`` (never
        PostHog's own backfill flag, which exports the whole history when that is unset)."""
        op = unpause.unpause_batch_export(batch_export_id, backfill=backfill, lookup=self.backfill_lookup)
        self.run(op, project_id)

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
        return self.run(
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
        return self.run(
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

    def get_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> BatchExportRun:
        """One run, whatever its age (PostHog hides runs older than 7 days unless asked with ``after``)."""
        return self.run(endpoints.get_run(batch_export_id, run_id), project_id)

    def cancel_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> str:
        """Cancel a Starting/Running run and return its status read back afterwards (``"Cancelled"``).

        A run that already finished is left as it is and its status returned. Raises
        ``PostHogCancelNotEffectiveError`` when PostHog said yes but the run is still Starting/Running.
        """
        result = self.run(jobs.cancel(jobs.RunJob(batch_export_id, run_id)), project_id)
        return result.status

    def retry_run(self, batch_export_id: str, run_id: str, *, project_id: int | None = None) -> Backfill:
        """Re-export a run's interval; returns the one-interval backfill PostHog starts for it.

        Raises ``PostHogBackfillAlreadyRunningError`` when that interval's backfill is still running.
        """
        return self.run(backfills.retry_run(batch_export_id, run_id, lookup=self.backfill_lookup), project_id)

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
        return self.run(endpoints.get_run_logs(batch_export_id, run_id, level=level, limit=limit), project_id)

    # -- backfills ------------------------------------------------------------------------------------------

    def list_backfills(
        self, batch_export_id: str, *, ordering: str | None = None, project_id: int | None = None
    ) -> list[Backfill]:
        """Every backfill of the export (all cursor pages)."""
        return self.run(endpoints.list_backfills(batch_export_id, ordering=ordering), project_id)

    def get_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> Backfill:
        """One backfill, with its ``progress`` where PostHog reports it."""
        return self.run(endpoints.get_backfill(batch_export_id, backfill_id), project_id)

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
        return self.run(
            backfills.create_backfill(batch_export_id, start_at, end_at, lookup=self.backfill_lookup),
            project_id,
        )

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
        return self.run(
            backfills.find_backfill(batch_export_id, start_at, end_at, active_only=active_only), project_id
        )

    def cancel_backfill(
        self, batch_export_id: str, backfill_id: str, *, project_id: int | None = None
    ) -> str:
        """Cancel a Starting/Running backfill and return its status read back (``"Cancelled"``).

        Same rules as :meth:`cancel_run`.
        """
        result = self.run(jobs.cancel(jobs.BackfillJob(batch_export_id, backfill_id)), project_id)
        return result.status

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
        return self.run(
            endpoints.list_backfill_runs(batch_export_id, backfill, schedule=schedule), project_id
        )

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
