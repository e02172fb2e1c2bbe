"""What every PostHog operator and sensor shares: the lazy hook, link XComs, backfill polls, completion.

Nothing here runs at DAG parse time: the hook module is imported inside ``hook`` and constructors only store
arguments.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_posthog import compat
from airflow_provider_posthog.exceptions import (
    PostHogConfigError,
    PostHogJobFailedError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.lineage.mixin import PostHogLineageMixin
from airflow_provider_posthog.links.posthog import XCOM_BACKFILLS_URL, XCOM_BATCH_EXPORT_URL, XCOM_RUNS_URL
from airflow_provider_posthog.tasks.cancel import cancel_if_active, log_best_effort
from airflow_provider_posthog.tasks.decisions import Decision, decide_backfill
from airflow_provider_posthog.tasks.templates import TemplateSourcesMixin
from airflow_provider_posthog.tasks.waiting import LOG_TAIL_RUNS, complete, describe_backfill, tail_lines

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Context
    from airflow.sdk.types import Logger

    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.tasks.waiting import Wait


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when a task is built (cheap, no I/O)."""
    return compat.airflow_conf().getboolean("operators", "default_deferrable", fallback=False)


class PostHogTaskMixin(TemplateSourcesMixin):
    """The lazy hook, the link XComs, backfill polls and the end of every wait.

    Expects ``posthog_conn_id`` and ``project_id`` attributes (set by the task's constructor). A wait ends
    in :meth:`finish_wait`: the exceptions it raises are the class attributes below.
    """

    posthog_conn_id: str
    project_id: int | str | None
    #: Raised when PostHog reports the job failed.
    failure_error: ClassVar[type[Exception]] = PostHogJobFailedError
    #: Raised when the task's deadline passed first.
    timeout_error: ClassVar[type[Exception]] = PostHogWaitTimeoutError
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

    def trigger_kwargs(self, wait: Wait, first_poll_at: float | None) -> dict[str, Any]:
        """What every PostHog trigger needs to continue ``wait`` in the triggerer (plain values only)."""
        return {
            "batch_export_id": wait.batch_export_id,
            "posthog_conn_id": self.posthog_conn_id,
            "project_id": self._project_id(),
            "poll_interval": wait.poll_interval,
            "end_time": wait.end_time,
            "first_poll_at": first_poll_at,
        }

    def poll_backfill(self, batch_export_id: str, backfill_id: str) -> Decision:
        """One poll of a backfill; once it is terminal its runs too (a completed one may hide failed runs)."""
        backfill = self.hook.get_backfill(batch_export_id, backfill_id)
        decision = decide_backfill(backfill)
        if not decision.done:
            return decision
        return decide_backfill(backfill, self.hook.list_backfill_runs(batch_export_id, backfill))

    def cancel_backfill_best_effort(self, batch_export_id: str, backfill_id: str) -> None:
        """Cancel a backfill a wait gave up on or was killed in: log, never raise (the task already fails)."""
        what = describe_backfill(batch_export_id, backfill_id)
        try:
            result = cancel_if_active(
                what,
                lambda: self.hook.get_backfill(batch_export_id, backfill_id).status,
                lambda: self.hook.cancel_backfill(batch_export_id, backfill_id),
            )
        except Exception as exc:
            log_best_effort(self.log, what, exc)
        else:
            log_best_effort(self.log, what, result)

    # -- the end of every wait ------------------------------------------------------------------------------
    def finish_wait(self, context: Context, event: Any, *, require: tuple[str, ...] = ()) -> dict[str, Any]:
        """Validate ``event`` and end the wait with it: return on success, raise otherwise.

        Every waiting task ends here (sync, poke and deferred alike), so what a success adds for the task
        (beyond the log line) belongs after ``complete`` returns: the asset event of a task with lineage
        (``lineage.mixin``) is emitted there, so a failure, timeout or soft-fail skip never emits one.
        """
        lineage = self if isinstance(self, PostHogLineageMixin) else None
        if lineage is not None:
            lineage._lineage_note_job(event)
        checked = complete(
            event,
            failure=self.failure_error,
            timeout=self.timeout_error,
            log_tails=self._log_tails,
            on_timeout=self.on_wait_timeout,
            require=require,
        )
        self.log.info("%s", checked["message"])
        if lineage is not None:
            lineage._lineage_wait_succeeded(context, checked)
        return checked

    def on_wait_timeout(self, event: Mapping[str, Any]) -> None:
        """What to do before failing a wait whose deadline passed (the operators cancel their backfill)."""

    def _log_tails(self, event: Mapping[str, Any]) -> dict[str, list[str]]:
        """The last log lines of each failed run (best effort; never hides the real failure)."""
        batch_export_id = str(event["batch_export_id"])
        tails: dict[str, list[str]] = {}
        for run in (event.get("failed_runs") or [])[:LOG_TAIL_RUNS]:
            run_id = str(run.get("id"))
            try:
                tails[run_id] = tail_lines(self.hook.get_run_logs(batch_export_id, run_id))
            except Exception as exc:
                self.log.warning("Could not fetch the logs of run %s: %s", run_id, exc)
        return tails
