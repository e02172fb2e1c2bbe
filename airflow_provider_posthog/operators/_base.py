"""Shared pieces of the PostHog operators: the lazy hook, XCom/link pushes, and the backfill wait.

Nothing here runs at DAG parse time: the hook module is imported inside ``hook``, constructors only store
arguments, and every check that needs rendered templates happens in ``execute``.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_posthog import compat
from airflow_provider_posthog.exceptions import (
    PostHogJobFailedError,
    PostHogTriggerError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.links.posthog import (
    XCOM_BACKFILLS_URL,
    XCOM_BATCH_EXPORT_URL,
    XCOM_RUNS_URL,
)
from airflow_provider_posthog.utils.wait import (
    ERROR,
    FAILED,
    LOG_TAIL_LINES,
    SUCCESS,
    TIMEOUT,
    coerce_bool,
    coerce_seconds,
    deadline,
    decide_backfill,
    decision_event,
    failure_message,
    make_event,
    validate_event,
)

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import Logger

    from airflow_provider_posthog.api.models import Backfill
    from airflow_provider_posthog.exceptions import PostHogBackfillAlreadyRunningError
    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.utils.wait import Decision


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when a task is built (cheap, no I/O)."""
    return compat.airflow_conf().getboolean("operators", "default_deferrable", fallback=False)


class PostHogTaskMixin:
    """What every PostHog operator and sensor shares: the lazy hook, the link XComs, failed runs' log tails.

    Expects ``posthog_conn_id`` and ``project_id`` attributes (set by the task's constructor).
    """

    posthog_conn_id: str
    project_id: int | str | None
    if TYPE_CHECKING:

        @property
        def log(self) -> Logger: ...

    @cached_property
    def hook(self) -> PostHogHook:
        from airflow_provider_posthog.hooks.posthog import PostHogHook

        return PostHogHook(posthog_conn_id=self.posthog_conn_id, project_id=self._project_id())

    def _project_id(self) -> int | None:
        if self.project_id is None or self.project_id == "":
            return None
        try:
            return int(self.project_id)
        except (TypeError, ValueError) as exc:
            from airflow_provider_posthog.exceptions import PostHogConfigError

            raise PostHogConfigError(f"project_id={self.project_id!r} is not a number.") from exc

    def push_export_xcom(self, context: Context, batch_export_id: str) -> None:
        """Push the export id and the three UI URLs (what the extra links read). No I/O besides XCom."""
        ti = context["ti"]
        ti.xcom_push(key="batch_export_id", value=batch_export_id)
        for key, tab in (
            (XCOM_BATCH_EXPORT_URL, None),
            (XCOM_BACKFILLS_URL, "backfills"),
            (XCOM_RUNS_URL, "runs"),
        ):
            try:
                url = self.hook.ui_url(batch_export_id, tab)
            except Exception as exc:  # a link is a convenience; never fail the task over it
                self.log.warning("Could not build the PostHog UI URL: %s", exc)
                return
            ti.xcom_push(key=key, value=url)
        self.log.info("PostHog batch export: %s", self.hook.ui_url(batch_export_id, None))

    def _poll_backfill(self, batch_export_id: str, backfill_id: str) -> Decision:
        """One poll of a backfill; once it is terminal its runs too (a completed one may hide failed runs)."""
        backfill = self.hook.get_backfill(batch_export_id, backfill_id)
        decision = decide_backfill(backfill)
        if not decision.done:
            return decision
        return decide_backfill(backfill, self.hook.list_backfill_runs(batch_export_id, backfill))

    def _log_tails(self, batch_export_id: str, event: dict[str, Any]) -> dict[str, list[str]]:
        """The last log lines of each failed run (best effort; never hides the real failure)."""
        tails: dict[str, list[str]] = {}
        for run in (event.get("failed_runs") or [])[:3]:
            run_id = str(run.get("id"))
            try:
                entries = self.hook.get_run_logs(batch_export_id, run_id)
            except Exception as exc:
                self.log.warning("Could not fetch the logs of run %s: %s", run_id, exc)
                continue
            ordered = sorted(entries, key=lambda e: e.timestamp.timestamp() if e.timestamp else 0.0)
            tails[run_id] = [
                f"{e.timestamp.isoformat() if e.timestamp else '?'} {e.level} {e.message}"
                for e in ordered[-LOG_TAIL_LINES:]
            ]
        return tails


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
    """Base of operators that start a backfill and wait for it: sync loop, deferral, one completion path.

    :param wait_for_completion: wait until the backfill finished (otherwise return its id at once).
    :param deferrable: wait in the triggerer instead of a worker slot. Default: ``[operators]
        default_deferrable``.
    :param poll_interval: seconds between status checks (default 60; PostHog allows 4800 requests/hour/key).
    :param timeout: seconds to wait for the backfill before giving up (``None``: no limit besides
        ``execution_timeout``). Whichever of ``timeout`` and ``execution_timeout`` ends first wins.
    :param cancel_on_kill: cancel the backfill when the task is killed, times out or gives up waiting.
    """

    template_fields: tuple[str, ...] = (*PostHogBaseOperator.template_fields, "poll_interval", "timeout")

    def __init__(
        self,
        *,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float | str = 60,
        timeout: float | str | None = None,
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.cancel_on_kill = cancel_on_kill
        self._wait_batch_export_id: str | None = None
        self._wait_backfill_id: str | None = None
        self._waiting = False

    def validate_wait_args(self) -> tuple[float, float | None]:
        """Check the waiting arguments (rendered) before any API call; returns (poll_interval, timeout)."""
        coerce_bool(self.wait_for_completion, "wait_for_completion")
        coerce_bool(self.cancel_on_kill, "cancel_on_kill")
        poll = coerce_seconds(self.poll_interval, "poll_interval") or 0.0
        return poll, coerce_seconds(self.timeout, "timeout", allow_none=True)

    # -- re-attach (the rule lives in utils.reattach) ------------------------------------------------------
    def reattachable(
        self, context: Context, mode: str, batch_export_id: str, found: Backfill | None
    ) -> Backfill | None:
        """``found`` if ``mode`` lets this try re-attach to it and it is running or completed without a failed
        run; ``None`` (create a new backfill) otherwise."""
        from airflow_provider_posthog.api.statuses import Outcome
        from airflow_provider_posthog.utils.reattach import may_reattach

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
            # Completed, but a retry after "some of its runs failed" must export again, not fail again.
            verdict = self._poll_backfill(batch_export_id, found.id)
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
        from airflow_provider_posthog.utils.reattach import ALWAYS, may_reattach

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
        self, context: Context, batch_export_id: str, backfill: Backfill, started: float
    ) -> str:
        """Push ids, then return, wait (sync) or defer; returns the backfill id on every path."""
        self._wait_batch_export_id, self._wait_backfill_id = batch_export_id, backfill.id
        context["ti"].xcom_push(key="backfill_id", value=backfill.id)
        if not coerce_bool(self.wait_for_completion, "wait_for_completion"):
            if self.deferrable:
                self.log.warning("deferrable=True has no effect with wait_for_completion=False.")
            return backfill.id
        poll, timeout = self.validate_wait_args()
        end_time = deadline(started, timeout, self.execution_timeout)
        decision = self._poll_backfill(batch_export_id, backfill.id)
        if decision.done:
            return self.complete_backfill(context, self._event(decision))
        if self.deferrable:
            from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

            self.log.info("%s Deferring; polling every %ss.", decision.message, poll)
            if self.cancel_on_kill and not compat.TRIGGER_ON_KILL_SUPPORTED:
                self.log.warning(
                    "This Airflow does not call trigger on_kill (3.3+ does): marking the deferred task "
                    "failed will not cancel backfill %s in PostHog; timeouts still cancel it.",
                    backfill.id,
                )
            self.defer(
                trigger=PostHogBackfillTrigger(
                    batch_export_id=batch_export_id,
                    backfill_id=backfill.id,
                    posthog_conn_id=self.posthog_conn_id,
                    project_id=self._project_id(),
                    poll_interval=poll,
                    end_time=end_time,
                    cancel_on_kill=bool(self.cancel_on_kill),
                    first_poll_at=time.time() + poll,
                ),
                method_name="execute_complete",
                # None on purpose: the trigger sends a timeout event at ``end_time`` so execute_complete can
                # cancel the backfill; a framework timeout would fail the task without on_kill and leak it.
                timeout=None,
            )
        self._waiting = True
        try:
            while True:
                self.log.info("%s", decision.message)
                now = time.time()
                if end_time is not None and now >= end_time:
                    event = make_event(
                        TIMEOUT,
                        f"Stopped waiting for backfill {backfill.id}: the task's deadline passed while "
                        "PostHog still reported it as running.",
                        batch_export_id=batch_export_id,
                        backfill_id=backfill.id,
                    )
                    break
                time.sleep(poll if end_time is None else max(0.0, min(poll, end_time - now)))
                decision = self._poll_backfill(batch_export_id, backfill.id)
                if decision.done:
                    event = self._event(decision)
                    break
        finally:
            self._waiting = False
        return self.complete_backfill(context, event)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger: validate the event, then the same completion as the sync path."""
        checked = validate_event(event)
        self._wait_batch_export_id = checked["batch_export_id"]
        self._wait_backfill_id = checked.get("backfill_id")
        return self.complete_backfill(context, checked)

    # -- the one completion path ----------------------------------------------------------------------------
    def complete_backfill(self, context: Context, event: dict[str, Any]) -> str:
        status = event["status"]
        batch_export_id = str(event["batch_export_id"])
        backfill_id = event.get("backfill_id")
        if not backfill_id:
            raise PostHogTriggerError("The PostHog event names no backfill_id.")
        if status == SUCCESS:
            self.log.info("%s", event["message"])
            return str(backfill_id)
        if status == FAILED:
            raise PostHogJobFailedError(failure_message(event, self._log_tails(batch_export_id, event)))
        if status == TIMEOUT:
            if self.cancel_on_kill:
                self._cancel_backfill(batch_export_id, str(backfill_id))
            raise PostHogWaitTimeoutError(str(event["message"]))
        if status == ERROR:
            raise PostHogTriggerError(str(event["message"]))
        raise PostHogTriggerError(f"Unknown PostHog event status {status!r}.")

    def on_kill(self) -> None:
        """Worker side of cancel-on-kill (sync waits; a deferred task is handled by the trigger's on_kill)."""
        if not (self.cancel_on_kill and self._wait_batch_export_id and self._wait_backfill_id):
            return
        self._cancel_backfill(self._wait_batch_export_id, self._wait_backfill_id)

    # -- helpers --------------------------------------------------------------------------------------------
    def _event(self, decision: Decision) -> dict[str, Any]:
        assert self._wait_batch_export_id is not None
        return decision_event(
            decision, batch_export_id=self._wait_batch_export_id, backfill_id=self._wait_backfill_id
        )

    def _cancel_backfill(self, batch_export_id: str, backfill_id: str) -> None:
        """Best effort: log, never raise (we are already failing or being killed)."""
        from airflow_provider_posthog.api.statuses import CANCELLABLE_STATUSES
        from airflow_provider_posthog.exceptions import PostHogCancelNotEffectiveError

        try:
            backfill = self.hook.get_backfill(batch_export_id, backfill_id)
            if backfill.status not in CANCELLABLE_STATUSES:
                self.log.info("Backfill %s is %s; nothing to cancel.", backfill_id, backfill.status)
                return
            status = self.hook.cancel_backfill(batch_export_id, backfill_id)
            self.log.warning(
                "Cancelled backfill %s of batch export %s (now %s).", backfill_id, batch_export_id, status
            )
        except PostHogCancelNotEffectiveError as exc:
            self.log.warning(
                "Backfill %s of batch export %s is still running after the cancel: %s Cancel it in PostHog.",
                backfill_id,
                batch_export_id,
                exc,
            )
        except Exception as exc:
            self.log.warning("Could not cancel backfill %s: %s", backfill_id, exc)
