"""Deferrable waits on PostHog batch exports: poll in the triggerer, send one event, stop.

Both triggers poll through ``PostHogAsyncHook`` (pooled ``httpx.AsyncClient``, async connection lookup, the
hook's retry policy for 429/5xx/transport errors) and decide with ``utils.wait`` exactly like the sync paths.
Kwargs are plain values (str, float, bool, None) so they survive ``airflow.sdk.serde`` unchanged; the deadline
is an epoch timestamp computed by the task before it deferred.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_posthog.utils.wait import (
    ERROR,
    TIMEOUT,
    Decision,
    coerce_datetime,
    decide_backfill,
    decide_interval,
    decide_run,
    decision_event,
    make_event,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_posthog.hooks.posthog import PostHogAsyncHook

#: Bound on the best-effort cancel in ``on_kill`` (the triggerer's own bound defaults to 30 s).
ON_KILL_TIMEOUT = 20.0


def _transient(exc: BaseException) -> bool:
    """Errors worth another poll once the hook's own retries are spent: the remote job is unaffected."""
    from airflow_provider_posthog.exceptions import (
        PostHogRateLimitError,
        PostHogServerError,
        PostHogTransportError,
    )

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

    async def _cancel(self, hook: PostHogAsyncHook) -> None:
        """Cancel the remote job (only called when ``cancel_on_kill``)."""

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

    def _event(self, status: str, message: str) -> TriggerEvent:
        ids = self._ids()
        return TriggerEvent(
            make_event(
                status,
                message,
                batch_export_id=self.batch_export_id,
                backfill_id=ids.get("backfill_id"),
                run_id=ids.get("run_id"),
            )
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        try:
            hook = self._hook()
            # The task polled just before deferring: the first poll here waits for the next interval.
            if self.first_poll_at is not None:
                wake = self.first_poll_at if self.end_time is None else min(self.first_poll_at, self.end_time)
                await asyncio.sleep(max(0.0, wake - time.time()))
            while True:
                try:
                    decision = await self._check(hook)
                    errors = 0
                except Exception as exc:
                    if not _transient(exc) or errors + 1 >= self.max_poll_errors:
                        raise
                    errors += 1
                    self.log.warning(
                        "Polling %s failed (%s/%s), will poll again: %s",
                        self._what(),
                        errors,
                        self.max_poll_errors,
                        exc,
                    )
                else:
                    if decision.done:
                        yield TriggerEvent(
                            decision_event(decision, batch_export_id=self.batch_export_id, **self._ids())
                        )
                        return
                    self.log.info("%s", decision.message)
                now = time.time()
                if self.end_time is not None and now >= self.end_time:
                    yield self._event(
                        TIMEOUT,
                        f"Stopped waiting for {self._what()}: the task's deadline passed while PostHog "
                        "still reported it as running.",
                    )
                    return
                sleep = self.poll_interval
                if self.end_time is not None:
                    sleep = max(0.0, min(sleep, self.end_time - now))
                await asyncio.sleep(sleep)
        except Exception as exc:
            # The trigger failed, not (necessarily) the export: say so, never claim the job failed.
            yield self._event(
                ERROR,
                f"The PostHog trigger could not check {self._what()} ({type(exc).__name__}: {exc}). "
                "This is an error of the wait itself; the export may still be running in PostHog.",
            )
            return

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user marked the deferred task failed/success or cleared it; cancel best effort."""
        if not self.cancel_on_kill:
            return
        from airflow_provider_posthog.exceptions import PostHogCancelNotEffectiveError

        try:
            await asyncio.wait_for(self._cancel(self._hook()), timeout=ON_KILL_TIMEOUT)
            self.log.info("Cancelled %s because the task was killed.", self._what())
        except PostHogCancelNotEffectiveError as exc:
            self.log.warning(
                "%s is still running after the cancel sent on kill (%s); cancel it in PostHog.",
                self._what().capitalize(),
                exc,
            )
        except Exception as exc:
            self.log.warning("Could not cancel %s on kill: %s", self._what(), exc)


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
        return f"backfill {self.backfill_id} of batch export {self.batch_export_id}"

    async def _check(self, hook: PostHogAsyncHook) -> Decision:
        backfill = await hook.get_backfill(self.batch_export_id, self.backfill_id)
        decision = decide_backfill(backfill)
        if not decision.done:
            return decision
        runs = await hook.list_backfill_runs(self.batch_export_id, backfill)
        return decide_backfill(backfill, runs)

    async def _cancel(self, hook: PostHogAsyncHook) -> None:
        await hook.cancel_backfill(self.batch_export_id, self.backfill_id)


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
            coerce_datetime(data_interval_start, "data_interval_start")
        if data_interval_end is not None:
            coerce_datetime(data_interval_end, "data_interval_end")
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
            return f"run {self.run_id} of batch export {self.batch_export_id}"
        return (
            f"the runs of batch export {self.batch_export_id} covering "
            f"[{self.data_interval_start}, {self.data_interval_end})"
        )

    async def _check(self, hook: PostHogAsyncHook) -> Decision:
        if self.run_id is not None:
            return decide_run(await hook.get_run(self.batch_export_id, self.run_id))
        assert self.data_interval_start is not None and self.data_interval_end is not None
        start = coerce_datetime(self.data_interval_start, "data_interval_start")
        end = coerce_datetime(self.data_interval_end, "data_interval_end")
        runs = await hook.list_runs(
            self.batch_export_id,
            ordering="-data_interval_start",
            start=start.isoformat(),
            end=end.isoformat(),
        )
        return decide_interval(runs, start, end)

    async def _cancel(self, hook: PostHogAsyncHook) -> None:
        if self.run_id is not None:
            await hook.cancel_run(self.batch_export_id, self.run_id)
