"""Deferrable waits on PostHog batch exports: poll in the triggerer, send one event, stop.

Both triggers poll through ``PostHogAsyncHook`` (pooled ``httpx.AsyncClient``, async connection lookup, the
hook's retry policy for 429/5xx/transport errors) and step with ``tasks.waiting`` exactly like the sync paths.
Kwargs are plain values (str, float, bool, None) so they survive ``airflow.sdk.serde`` unchanged; the deadline
is an epoch timestamp computed by the task before it deferred.
"""

from __future__ import annotations

import asyncio
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_posthog.exceptions import (
    PostHogRateLimitError,
    PostHogServerError,
    PostHogTransportError,
)
from airflow_provider_posthog.tasks.args import to_datetime
from airflow_provider_posthog.tasks.cancel import acancel_if_active, log_best_effort
from airflow_provider_posthog.tasks.decisions import Decision, decide_backfill, decide_interval, decide_run
from airflow_provider_posthog.tasks.waiting import (
    Wait,
    describe_backfill,
    describe_interval,
    describe_run,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_posthog.hooks.posthog import PostHogAsyncHook
    from airflow_provider_posthog.tasks.cancel import Cancel

#: Bound on the best-effort cancel in ``on_kill`` (the triggerer's own bound defaults to 30 s).
ON_KILL_TIMEOUT = 20.0


def _transient(exc: BaseException) -> bool:
    """Errors worth another poll once the hook's own retries are spent: the remote job is unaffected."""
    return isinstance(exc, (PostHogServerError, PostHogTransportError, PostHogRateLimitError, TimeoutError))


class _PostHogPollingTrigger(BaseTrigger):
    """Shared loop: poll, yield one terminal/timeout/error event, then return."""

    def __init__(
        self,
        *,
        batch_export_id: str,
        posthog_conn_id: str = "posthog_default",
        project_id: int | None = None,
        poll_interval: float = 60.0,
        end_time: float | None = None,
        cancel_on_kill: bool = False,
        max_poll_errors: int = 5,
        first_poll_at: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(batch_export_id, str) or not batch_export_id:
            raise ValueError("batch_export_id must be a non-empty string")
        for name, value in (("end_time", end_time), ("first_poll_at", first_poll_at)):
            if value is not None and not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be an epoch timestamp (float) or None")
        self.batch_export_id = batch_export_id
        self.posthog_conn_id = str(posthog_conn_id)
        self.project_id = None if project_id is None else int(project_id)
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)
        self.cancel_on_kill = bool(cancel_on_kill)
        self.max_poll_errors = int(max_poll_errors)
        self.first_poll_at = None if first_poll_at is None else float(first_poll_at)

    # -- subclass API ---------------------------------------------------------------------------------------
    def _ids(self) -> dict[str, str | None]:
        raise NotImplementedError

    def _what(self) -> str:
        raise NotImplementedError

    async def _check(self, hook: PostHogAsyncHook) -> Decision:
        raise NotImplementedError

    async def _cancel(self, hook: PostHogAsyncHook) -> Cancel | None:
        """Cancel the remote job if it is still active (only called when ``cancel_on_kill``)."""
        return None

    # -- shared machinery -----------------------------------------------------------------------------------
    def _base_kwargs(self) -> dict[str, Any]:
        return {
            "batch_export_id": self.batch_export_id,
            "posthog_conn_id": self.posthog_conn_id,
            "project_id": self.project_id,
            "poll_interval": self.poll_interval,
            "end_time": self.end_time,
            "cancel_on_kill": self.cancel_on_kill,
            "max_poll_errors": self.max_poll_errors,
            "first_poll_at": self.first_poll_at,
        }

    def _hook(self) -> PostHogAsyncHook:
        from airflow_provider_posthog.hooks.posthog import PostHogAsyncHook

        return PostHogAsyncHook(posthog_conn_id=self.posthog_conn_id, project_id=self.project_id)

    @cached_property
    def wait(self) -> Wait:
        """The wait this trigger runs; it lives as long as the trigger, so progress lines are not repeated."""
        ids = self._ids()
        return Wait(
            what=self._what(),
            batch_export_id=self.batch_export_id,
            backfill_id=ids.get("backfill_id"),
            run_id=ids.get("run_id"),
            poll_interval=self.poll_interval,
            end_time=self.end_time,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wait, errors = self.wait, 0
        try:
            hook = self._hook()
            # The task polled just before deferring: the first poll here waits for the next interval.
            if self.first_poll_at is not None:
                await asyncio.sleep(wait.sleep_until(self.first_poll_at, time.time()))
            while True:
                decision: Decision | None = None
                try:
                    decision = await self._check(hook)
                    errors = 0
                except Exception as exc:
                    if not _transient(exc) or errors + 1 >= self.max_poll_errors:
                        raise
                    errors += 1
                    self.log.warning(
                        "Polling %s failed (%s/%s), will poll again: %s",
                        wait.what,
                        errors,
                        self.max_poll_errors,
                        exc,
                    )
                step = wait.step(decision, time.time())
                if step.progress:
                    self.log.info("%s", step.progress)
                if step.event is not None:
                    yield TriggerEvent(step.event)
                    return
                await asyncio.sleep(step.sleep)
        except Exception as exc:
            yield TriggerEvent(wait.error_event(exc))
            return

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user marked the deferred task failed/success or cleared it; cancel best effort."""
        if not self.cancel_on_kill:
            return
        what = self.wait.what
        try:
            result = await asyncio.wait_for(self._cancel(self._hook()), timeout=ON_KILL_TIMEOUT)
        except Exception as exc:
            log_best_effort(self.log, what, exc)
        else:
            if result is not None:
                log_best_effort(self.log, what, result)


class PostHogBackfillTrigger(_PostHogPollingTrigger):
    """Wait for a backfill to finish; success only if it completed and none of its runs failed.

    :param batch_export_id: the export the backfill belongs to.
    :param backfill_id: the backfill to watch.
    :param posthog_conn_id: Airflow connection id.
    :param project_id: overrides the connection's project id.
    :param poll_interval: seconds between polls.
    :param end_time: epoch seconds after which a ``timeout`` event is sent (``None``: wait forever).
    :param cancel_on_kill: cancel the backfill when a user kills the deferred task (Airflow 3.3+).
    :param max_poll_errors: consecutive transient poll failures (after the hook's retries) tolerated.
    :param first_poll_at: epoch seconds of the first poll; the deferring task just polled, so it passes
        ``now + poll_interval`` and deferral costs no extra request (``None``: poll at once).
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

    def _ids(self) -> dict[str, str | None]:
        return {"backfill_id": self.backfill_id}

    def _what(self) -> str:
        return describe_backfill(self.batch_export_id, self.backfill_id)

    async def _check(self, hook: PostHogAsyncHook) -> Decision:
        backfill = await hook.get_backfill(self.batch_export_id, self.backfill_id)
        decision = decide_backfill(backfill)
        if not decision.done:
            return decision
        runs = await hook.list_backfill_runs(self.batch_export_id, backfill)
        return decide_backfill(backfill, runs)

    async def _cancel(self, hook: PostHogAsyncHook) -> Cancel | None:
        async def read() -> str:
            return (await hook.get_backfill(self.batch_export_id, self.backfill_id)).status

        return await acancel_if_active(
            self.wait.what, read, lambda: hook.cancel_backfill(self.batch_export_id, self.backfill_id)
        )


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

    def _ids(self) -> dict[str, str | None]:
        return {"run_id": self.run_id}

    def _what(self) -> str:
        if self.run_id is not None:
            return describe_run(self.batch_export_id, self.run_id)
        return describe_interval(
            self.batch_export_id, str(self.data_interval_start), str(self.data_interval_end)
        )

    async def _check(self, hook: PostHogAsyncHook) -> Decision:
        if self.run_id is not None:
            return decide_run(await hook.get_run(self.batch_export_id, self.run_id))
        assert self.data_interval_start is not None and self.data_interval_end is not None
        start = to_datetime(self.data_interval_start, "data_interval_start")
        end = to_datetime(self.data_interval_end, "data_interval_end")
        runs = await hook.list_runs(
            self.batch_export_id,
            ordering="-data_interval_start",
            start=start.isoformat(),
            end=end.isoformat(),
        )
        return decide_interval(runs, start, end)

    async def _cancel(self, hook: PostHogAsyncHook) -> Cancel | None:
        run_id = self.run_id
        if run_id is None:
            return None

        async def read() -> str:
            return (await hook.get_run(self.batch_export_id, run_id)).status

        return await acancel_if_active(
            self.wait.what, read, lambda: hook.cancel_run(self.batch_export_id, run_id)
        )
