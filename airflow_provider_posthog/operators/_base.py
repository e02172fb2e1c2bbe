"""Base classes of the PostHog operators: connection arguments, and starting a backfill then waiting for it.

Nothing here runs at DAG parse time: constructors only store arguments, every check that needs rendered
templates happens in ``execute``, and what only a running task needs (``api``, the re-attach rule, the wait
machinery) is imported there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_posthog import compat
from airflow_provider_posthog.tasks.args import WaitArgs
from airflow_provider_posthog.tasks.mixin import PostHogTaskMixin, default_deferrable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Context

    from airflow_provider_posthog.api.jobs import BackfillJob, Job
    from airflow_provider_posthog.api.models import Backfill
    from airflow_provider_posthog.exceptions import PostHogBackfillAlreadyRunningError
    from airflow_provider_posthog.tasks.waiting import Step, Wait


class PostHogBaseOperator(PostHogTaskMixin, BaseOperator):
    """Base of every PostHog operator: connection arguments and a lazily built hook.

    :param posthog_conn_id: Airflow connection id (conn type ``posthog``).
    :param project_id: PostHog project id; overrides the connection's ``project_id`` extra.
    """

    template_fields: tuple[str, ...] = ("posthog_conn_id", "project_id")

    def __init__(
        self,
        *,
        posthog_conn_id: str = "posthog_default",
        project_id: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.posthog_conn_id = posthog_conn_id
        self.project_id = project_id


class PostHogBackfillWaitOperator(PostHogBaseOperator):
    """Base of operators that start a backfill and wait for it: sync loop or deferral, one completion.

    :param wait_for_completion: wait until the backfill finished (otherwise return its id at once).
    :param deferrable: wait in the triggerer instead of a worker slot. Default: ``[operators]
        default_deferrable``.
    :param poll_interval: seconds between status checks (default 60; PostHog allows 4800 requests/hour/key).
    :param timeout: seconds to wait for the backfill before giving up (``None``: no limit besides
        ``execution_timeout``). Whichever of ``timeout`` and ``execution_timeout`` ends first wins.
    :param cancel_on_kill: cancel the backfill when the task is killed or its timeout passes (not when it
        gives up because PostHog stayed unreachable: the cancel could not reach it, and a retry re-attaches).
    :param unreachable_timeout: seconds PostHog may stay unreachable (5xx, throttling, dropped connections,
        timeouts) before the wait fails; ``None`` (default): keep waiting until ``timeout`` or
        ``execution_timeout``. Errors that cannot fix themselves (400, 401/403, 404) end the wait at once.
    :param completeness: what a completed wait does with runs that exported fewer records than PostHog
        counted for their interval (``records_completed < records_total_count``): ``"warn"`` (default) logs
        one warning naming them, ``"fail"`` fails the task (not retried), ``"off"`` does not check
        (templated). Runs whose count PostHog left empty are not judged.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "poll_interval",
        "timeout",
        "unreachable_timeout",
        "completeness",
    )

    def __init__(
        self,
        *,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float | str = 60,
        timeout: float | str | None = None,
        cancel_on_kill: bool = True,
        unreachable_timeout: float | str | None = None,
        completeness: str = "warn",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.completeness = completeness
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.cancel_on_kill = cancel_on_kill
        self.unreachable_timeout = unreachable_timeout
        self._wait_args: WaitArgs | None = None
        self._waiting_on: BackfillJob | None = None  # once a backfill is known
        #: Whether this task started the backfill it waits on (only then may it cancel it).
        self._owns_backfill = True

    def validate_wait_args(self) -> WaitArgs:
        """Check the (rendered) waiting arguments once, before any API call."""
        if self._wait_args is None:
            self.completeness_mode()
            self._wait_args = WaitArgs.parse(
                wait_for_completion=self.wait_for_completion,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                cancel_on_kill=self.cancel_on_kill,
                unreachable_timeout=self.unreachable_timeout,
            )
        return self._wait_args

    # -- re-attach (the rule lives in tasks.reattach) -------------------------------------------------------
    def reattachable(
        self, context: Context, mode: str, batch_export_id: str, found: Backfill | None
    ) -> Backfill | None:
        """``found`` if ``mode`` lets this try re-attach to it and it is running or completed without a failed
        run; ``None`` (create a new backfill) otherwise."""
        from airflow_provider_posthog.api.statuses import Outcome
        from airflow_provider_posthog.tasks.reattach import may_reattach

        if found is None:
            return None
        if not may_reattach(mode, found, context):
            self.log.info(
                "Backfill %s over the same range (status %s, created %s) is not from an earlier try of this "
                "task; exporting again (reattach=%r).",
                found.id,
                found.status,
                found.created_at.isoformat() if found.created_at else "?",
                mode,
            )
            return None
        if found.outcome is Outcome.FAILED:
            self.log.info(
                "Backfill %s over the same range ended %s; creating a new one.", found.id, found.status
            )
            return None
        if found.outcome is Outcome.SUCCEEDED:
            from airflow_provider_posthog.api.jobs import BackfillJob

            # Completed, but a retry after "some of its runs failed" must export again, not fail again.
            verdict = self.hook.run(BackfillJob(batch_export_id, found.id).poll())
            if verdict.outcome is Outcome.FAILED:
                self.log.info("%s Creating a new backfill.", verdict.message)
                return None
        self.log.info(
            "Re-attaching to backfill %s over the same range (status %s) instead of creating a duplicate.",
            found.id,
            found.status,
        )
        return found

    def already_running(
        self, context: Context, mode: str, batch_export_id: str, exc: PostHogBackfillAlreadyRunningError
    ) -> Backfill:
        """PostHog refuses a second backfill of a range still running: re-attach if ``mode`` allows, else fail
        at once naming the running backfill (a retry would meet the same refusal)."""
        from airflow_provider_posthog.api.models import Backfill
        from airflow_provider_posthog.tasks.reattach import ALWAYS, may_reattach

        running = exc.backfill
        if not isinstance(running, Backfill):
            running = self.hook.get_backfill(batch_export_id, exc.backfill_id)
        if may_reattach(mode, running, context):
            self.log.info(
                "Backfill %s over the same range is still %s; re-attaching to it (reattach=%r).",
                running.id,
                running.status,
                mode,
            )
            return running
        raise compat.AirflowFailException(
            f"{exc} It was not started by an earlier try of this task (reattach={mode!r}), so this task does "
            f"not adopt it. To wait for backfill {running.id} instead, use reattach={ALWAYS!r} or a "
            "PostHogBackfillSensor on it; or cancel it and run this task again."
        ) from exc

    # -- entry used by subclasses after they obtained a backfill ---------------------------------------------
    def wait_for_backfill(
        self,
        context: Context,
        batch_export_id: str,
        backfill: Backfill,
        started: float,
        *,
        adopted_from: str | None = None,
    ) -> str:
        """Push ids, then return, wait (sync) or defer; returns the backfill id on every path.

        ``adopted_from`` says who started a backfill this task adopted (another task, or PostHog answering
        that the same backfill already runs): the task then never cancels it, on kill or on timeout, since
        that would stop someone else's work.
        """
        from airflow_provider_posthog.api.jobs import BackfillJob

        args = self.validate_wait_args()
        self._waiting_on = BackfillJob(batch_export_id, backfill.id)
        self._owns_backfill = adopted_from is None
        if args.cancel_on_kill:
            if adopted_from is None:
                self.log.info(
                    "This task started backfill %s: it cancels it if killed or timed out.", backfill.id
                )
            else:
                self.log.info(
                    "Backfill %s was started by %s, not by this task: it is not cancelled if this task is "
                    "killed or times out (cancel_on_kill applies only to a backfill the task started).",
                    backfill.id,
                    adopted_from,
                )
        context["ti"].xcom_push(key="backfill_id", value=backfill.id)
        if not args.wait_for_completion:
            if self.deferrable:
                self.log.warning("deferrable=True has no effect with wait_for_completion=False.")
            return backfill.id
        wait, step = self.start_wait(self._waiting_on, started)
        if step.event is None and self.deferrable:
            self._defer(wait, self._cancels_backfill())
        return self.complete_backfill(context, self.wait_in_worker(wait, step))

    def start_wait(self, job: Job, started: float) -> tuple[Wait, Step]:
        """The wait on ``job`` under the task's own limits (counted from ``started``), its PostHog page
        logged, and its first step."""
        from airflow_provider_posthog.tasks.waiting import Wait, deadline, log_step

        args = self.validate_wait_args()
        wait = Wait(
            job,
            poll_interval=args.poll_interval,
            end_time=deadline(started, args.timeout, self.execution_timeout),
            unreachable_timeout=args.unreachable_timeout,
        )
        wait.log_link(self.log, self.hook.ui_url)
        step = wait.step(self.poll(wait), time.time())
        log_step(self.log, step)
        return wait, step

    def wait_in_worker(self, wait: Wait, step: Step) -> dict[str, Any]:
        """The worker's wait loop: sleep, poll, step, until a step carries the wait's event."""
        from airflow_provider_posthog.tasks.waiting import log_step

        while step.event is None:
            time.sleep(step.sleep)
            step = wait.step(self.poll(wait), time.time())
            log_step(self.log, step)
        return step.event

    def _defer(self, wait: Wait, cancel_on_kill: bool) -> None:
        from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

        assert wait.backfill_id is not None
        self.log.info("Deferring; polling every %ss.", wait.poll_interval)
        if cancel_on_kill and not compat.TRIGGER_ON_KILL_SUPPORTED:
            self.log.warning(
                "This Airflow does not call trigger on_kill (3.3+ does): marking the deferred task "
                "failed will not cancel backfill %s in PostHog; timeouts still cancel it.",
                wait.backfill_id,
            )
        self.defer(
            trigger=PostHogBackfillTrigger(
                backfill_id=wait.backfill_id,
                cancel_on_kill=cancel_on_kill,
                **self.trigger_kwargs(wait, time.time() + wait.poll_interval),
            ),
            method_name="execute_complete",
            # None on purpose: the trigger sends a timeout event at ``end_time`` so execute_complete can
            # cancel the backfill; a framework timeout would fail the task without on_kill and leak it.
            timeout=None,
            kwargs=None if self._owns_backfill else {"owns_backfill": False},
        )

    def _cancels_backfill(self) -> bool:
        """``cancel_on_kill``, for a backfill this task started (never for one it adopted)."""
        return self.validate_wait_args().cancel_on_kill and self._owns_backfill

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, owns_backfill: bool = True
    ) -> str:
        """Resume after the trigger: the same completion as the sync path (``owns_backfill`` carries over
        whether this task started the backfill)."""
        self._owns_backfill = bool(owns_backfill)
        return self.complete_backfill(context, event)

    def complete_backfill(self, context: Context, event: Any) -> str:
        """End the wait with ``event`` (see :meth:`finish_wait`); returns the backfill id."""
        return str(self.finish_wait(context, event, require=("backfill_id",))["backfill_id"])

    def on_wait_timeout(self, event: Mapping[str, Any]) -> None:
        from airflow_provider_posthog.api.jobs import BackfillJob

        if self._cancels_backfill():
            self.cancel_best_effort(BackfillJob(str(event["batch_export_id"]), str(event["backfill_id"])))

    def on_kill(self) -> None:
        """Worker side of cancel-on-kill (sync waits; a deferred task is handled by the trigger's on_kill)."""
        # Set only once the arguments were validated and a backfill is known.
        if self._waiting_on is not None and self._wait_args is not None and self._cancels_backfill():
            self.cancel_best_effort(self._waiting_on)
