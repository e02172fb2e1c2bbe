"""Deferrable waits on PostHog batch exports: poll in the triggerer, send one event, stop.

Both triggers poll their job (``api.jobs``) through ``PostHogAsyncHook`` (pooled ``aiohttp.ClientSession``,
async connection lookup, the hook's retry policy) and step with ``tasks.waiting.Wait`` exactly like the sync
paths, so PostHog being unreachable is tolerated the same way everywhere. Kwargs are plain values (str, float,
bool, None) so they survive ``airflow.sdk.serde`` unchanged; the deadline is an epoch timestamp computed by
the task before it deferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_posthog import compat
from airflow_provider_posthog.api.jobs import (
    BackfillJob,
    CancellableJob,
    IntervalJob,
    RunJob,
    RunsJob,
    cancel,
)
from airflow_provider_posthog.exceptions import AirflowFailException
from airflow_provider_posthog.tasks.args import to_datetime
from airflow_provider_posthog.tasks.waiting import CANCEL_SECONDS, Wait, log_cancel, log_step

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_posthog.api.decisions import Decision
    from airflow_provider_posthog.api.jobs import Job
    from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook


class _PostHogPollingTrigger(BaseTrigger):
    """Shared loop: poll, yield one terminal/timeout/error event, then return.

    ``max_poll_errors`` is accepted (and ignored) so that triggers stored by an earlier version of this
    provider still load: PostHog being unreachable is now bounded by ``end_time`` and
    ``unreachable_timeout``.
    """

    def __init__(
        self,
        *,
        batch_export_id: str,
        posthog_conn_id: str = "posthog_default",
        project_id: int | None = None,
        poll_interval: float = 60.0,
        end_time: float | None = None,
        cancel_on_kill: bool = False,
        unreachable_timeout: float | None = None,
        unreachable_since: float | None = None,
        first_poll_at: float | None = None,
        export: dict[str, Any] | None = None,
        max_poll_errors: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(batch_export_id, str) or not batch_export_id:
            raise ValueError("batch_export_id must be a non-empty string")
        for name, value in (
            ("end_time", end_time),
            ("first_poll_at", first_poll_at),
            ("unreachable_timeout", unreachable_timeout),
            ("unreachable_since", unreachable_since),
        ):
            if value is not None and not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number (epoch seconds or seconds) or None")
        self.batch_export_id = batch_export_id
        self.posthog_conn_id = str(posthog_conn_id)
        self.project_id = None if project_id is None else int(project_id)
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)
        self.cancel_on_kill = bool(cancel_on_kill)
        self.unreachable_timeout = None if unreachable_timeout is None else float(unreachable_timeout)
        self.unreachable_since = None if unreachable_since is None else float(unreachable_since)
        self.first_poll_at = None if first_poll_at is None else float(first_poll_at)
        if export is not None and (not isinstance(export, dict) or export.get("id") != batch_export_id):
            raise ValueError("export must be the identity of batch export batch_export_id, or None")
        self.export = export
        self._wait: Wait | None = None

    # -- subclass API ---------------------------------------------------------------------------------------
    def _make_job(self) -> Job:
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------------------------------
    def _base_kwargs(self) -> dict[str, Any]:
        return {
            "batch_export_id": self.batch_export_id,
            "posthog_conn_id": self.posthog_conn_id,
            "project_id": self.project_id,
            "poll_interval": self.poll_interval,
            "end_time": self.end_time,
            "cancel_on_kill": self.cancel_on_kill,
            "unreachable_timeout": self.unreachable_timeout,
            "unreachable_since": self.unreachable_since,
            "first_poll_at": self.first_poll_at,
            # Only when set: a trigger without it still loads in a triggerer of an earlier version.
            **({} if self.export is None else {"export": self.export}),
        }

    def _hook(self) -> PostHogAsyncHook:
        from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook

        return PostHogAsyncHook(posthog_conn_id=self.posthog_conn_id, project_id=self.project_id)

    @property
    def wait(self) -> Wait:
        """The wait this trigger runs; it lives as long as the trigger, so progress lines are not repeated.

        Built on first use and kept in a plain attribute, not a ``functools.cached_property``: that writes
        to the instance ``__dict__`` and so makes Python build one (768 bytes per trigger, among thousands).
        """
        wait = self._wait
        if wait is None:
            wait = self._wait = Wait(
                self._make_job(),
                poll_interval=self.poll_interval,
                end_time=self.end_time,
                unreachable_timeout=self.unreachable_timeout,
                unreachable_since=self.unreachable_since,
                export=None if self.export is None else dict(self.export),
            )
        return wait

    @property
    def job(self) -> Job:
        return self.wait.job

    async def _poll(self, hook: PostHogAsyncHook) -> Decision | Exception:
        """One poll (one call to the hook, bounded by the wait's end, the last one with a short grace): the
        decision or the exception. Its reads are shared with the other waits of this triggerer that read
        the same thing, with answers at most one poll interval old."""
        try:
            deadline = self.wait.start_poll(time.time())
            return await hook.arun(self.wait.operation(), deadline=deadline, fresh_within=self.poll_interval)
        except Exception as exc:
            return exc

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wait = self.wait
        hook: PostHogAsyncHook | None = None
        try:
            if self._cancellable() is not None:
                compat.warm_task_state(self.task_instance)
            hook = self._hook()
            # The task polled just before deferring: the first poll here waits for the next interval, and
            # the waits of this triggerer that poll meanwhile read what it will need along with their own.
            if self.first_poll_at is not None:
                with contextlib.suppress(Exception):  # the first poll meets and reports the same trouble
                    await hook._announce(self.job.poll(), fresh_within=self.poll_interval)
                await asyncio.sleep(wait.sleep_until(self.first_poll_at, time.time()))
            while True:
                step = wait.step(await self._poll(hook), time.time())
                log_step(self.log, step)
                if step.event is not None:
                    yield self._event(step.event, hook)
                    return
                await asyncio.sleep(step.sleep)
        except Exception as exc:
            event = wait.error_event(exc)
            if isinstance(exc, AirflowFailException):
                event["final"] = True  # a wrong connection, key or id: the task fails without a retry
            yield self._event(event, hook)
            return

    @staticmethod
    def _event(payload: dict[str, Any], hook: PostHogAsyncHook | None) -> TriggerEvent:
        """The event to yield, without the API key anywhere in it: Airflow stores events in its database."""
        return TriggerEvent(payload if hook is None else hook.scrubbed(payload))

    def _cancellable(self) -> CancellableJob | None:
        """The job ``on_kill`` cancels: asked for, and one that has a cancel (a backfill, a single run)."""
        job = self.job
        return job if self.cancel_on_kill and isinstance(job, (BackfillJob, RunJob)) else None

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user marked the deferred task failed/success or cleared it; cancel best effort.

        Airflow 3.3.2 also calls it when the trigger only moves to another triggerer (one of several went
        away): the task is then still deferred and the other triggerer goes on waiting, so nothing is
        cancelled. When the task's state cannot be read, nothing is cancelled either: a wrongly cancelled
        backfill fails a wait that would have succeeded and exports again, a missed cancel only leaves it
        to finish (the warning names it).

        Airflow 3.3.2 also sends the cancel of a stopped trigger again with every sync until it has
        finished, which cancels ``on_kill`` itself unless it is done within one sync: so the work runs in a
        task of its own, and ``on_kill`` waits for it through those repeated cancels, for at most
        :data:`~airflow_provider_posthog.tasks.waiting.CANCEL_SECONDS`.
        """
        job = self._cancellable()
        if job is None:
            return
        work = asyncio.ensure_future(self._cancel_if_stopped(job))
        until = time.monotonic() + CANCEL_SECONDS
        while not work.done():
            left = until - time.monotonic()
            if left <= 0:
                work.cancel()
                self.log.warning(
                    "Gave up cancelling %s after %.0f s; cancel it in PostHog.",
                    job.describe(),
                    CANCEL_SECONDS,
                )
                return
            try:
                await asyncio.wait({work}, timeout=left)
            except asyncio.CancelledError:
                # Airflow's repeated cancel of this trigger: keep waiting, bounded (``uncancel``: 3.11+).
                uncancel = getattr(asyncio.current_task(), "uncancel", None)
                if uncancel is not None:
                    uncancel()

    async def _cancel_if_stopped(self, job: CancellableJob) -> None:
        try:
            state = await compat.atask_state(self.task_instance)
        except Exception as exc:
            self.log.warning(
                "Not cancelling %s: could not read whether its task was stopped or its trigger moved to "
                "another triggerer (%s). If the task was stopped, cancel it in PostHog.",
                job.describe(),
                exc,
            )
            return
        if state == "deferred":
            self.log.info(
                "The task of %s is still deferred (its trigger moved): not cancelling.", job.describe()
            )
            return
        try:
            result = await self._hook().arun(cancel(job), deadline=time.time() + CANCEL_SECONDS)
        except Exception as exc:
            log_cancel(self.log, job.describe(), exc)
        else:
            log_cancel(self.log, job.describe(), result)


class PostHogBackfillTrigger(_PostHogPollingTrigger):
    """Wait for a backfill to finish; success only if it completed and none of its runs failed.

    :param batch_export_id: the export the backfill belongs to.
    :param backfill_id: the backfill to watch.
    :param posthog_conn_id: Airflow connection id.
    :param project_id: overrides the connection's project id.
    :param poll_interval: seconds between polls.
    :param end_time: epoch seconds after which a ``timeout`` event is sent (``None``: wait forever).
    :param cancel_on_kill: cancel the backfill when a user kills the deferred task (Airflow 3.3+).
    :param unreachable_timeout: seconds PostHog may stay unreachable before an ``error`` event (``None``:
        until ``end_time``).
    :param unreachable_since: epoch seconds since when the deferring task found PostHog unreachable, so the
        count goes on in the triggerer (``None``: PostHog answered).
    :param first_poll_at: epoch seconds of the first poll; the deferring task just polled, so it passes
        ``now + poll_interval`` and deferral costs no extra request (``None``: poll at once).
    :param export: the identity (``BatchExport.identity()``) of the export the deferring task's poll read:
        the success event names it, so the trigger does not read the export again (``None``: it reads it
        when it needs it).
    """

    def __init__(self, *, backfill_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(backfill_id, str) or not backfill_id:
            raise ValueError("backfill_id must be a non-empty string")
        self.backfill_id = backfill_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_posthog.triggers.batch_export.PostHogBackfillTrigger",
            {**self._base_kwargs(), "backfill_id": self.backfill_id},
        )

    def _make_job(self) -> Job:
        return BackfillJob(self.batch_export_id, self.backfill_id)


class PostHogBatchExportRunTrigger(_PostHogPollingTrigger):
    """Wait for one run (``run_id``) or for every run covering ``[data_interval_start, data_interval_end)``.

    :param run_id: the run to watch; or ``None`` together with both interval bounds (ISO-8601 strings).
    :param data_interval_start: start of the interval (inclusive), ISO-8601 with offset.
    :param data_interval_end: end of the interval (exclusive), ISO-8601 with offset.

    The other parameters are those of :class:`PostHogBackfillTrigger`. ``cancel_on_kill`` applies to a single
    run only: an interval wait watches PostHog's own schedule, which it does not own.
    """

    def __init__(
        self,
        *,
        run_id: str | None = None,
        data_interval_start: str | None = None,
        data_interval_end: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if run_id is None and (data_interval_start is None or data_interval_end is None):
            raise ValueError("give run_id, or both data_interval_start and data_interval_end")
        if data_interval_start is not None:
            to_datetime(data_interval_start, "data_interval_start")
        if data_interval_end is not None:
            to_datetime(data_interval_end, "data_interval_end")
        self.run_id = run_id
        self.data_interval_start = data_interval_start
        self.data_interval_end = data_interval_end

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_posthog.triggers.batch_export.PostHogBatchExportRunTrigger",
            {
                **self._base_kwargs(),
                "run_id": self.run_id,
                "data_interval_start": self.data_interval_start,
                "data_interval_end": self.data_interval_end,
            },
        )

    def _make_job(self) -> Job:
        if self.run_id is not None:
            return RunJob(self.batch_export_id, self.run_id)
        assert self.data_interval_start is not None and self.data_interval_end is not None
        return IntervalJob(
            self.batch_export_id,
            to_datetime(self.data_interval_start, "data_interval_start"),
            to_datetime(self.data_interval_end, "data_interval_end"),
        )


class PostHogRetriedRunsTrigger(_PostHogPollingTrigger):
    """Wait until each retried interval of an export has a completed run (the newest counted run of each
    interval decides it; see :class:`~airflow_provider_posthog.api.jobs.RunsJob`).

    :param intervals: the retried intervals as plain values: ``{"start", "end", "replaces", "since"}`` with
        ISO-8601 datetimes (``RunsJob.to_plain()``).
    :param backfill_id: the backfill whose failed runs were retried, if any (events carry it).

    The other parameters are those of :class:`PostHogBackfillTrigger`; ``cancel_on_kill`` is always off: the
    retries are PostHog's one-interval backfills, left to finish (a retry of the task waits for them).
    """

    def __init__(
        self, *, intervals: list[dict[str, Any]], backfill_id: str | None = None, **kwargs: Any
    ) -> None:
        kwargs["cancel_on_kill"] = False
        super().__init__(**kwargs)
        if not isinstance(intervals, list):
            raise ValueError("intervals must be a list of {start, end, replaces, since} mappings")
        self.intervals = [dict(i) for i in intervals]
        self.backfill_id = backfill_id
        self.job  # noqa: B018 - reads every interval now: a malformed one fails here, not in the triggerer

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_posthog.triggers.batch_export.PostHogRetriedRunsTrigger",
            {**self._base_kwargs(), "intervals": self.intervals, "backfill_id": self.backfill_id},
        )

    def _make_job(self) -> Job:
        return RunsJob.from_plain(self.batch_export_id, self.intervals, self.backfill_id)
