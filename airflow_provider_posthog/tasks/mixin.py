"""What every PostHog operator and sensor shares: the lazy hook, the export it names, link XComs, one poll,
one cancel, completion.

Nothing here runs at DAG parse time: constructors only store arguments, and the hook, the wait machinery
(``tasks.waiting``) and ``api`` are imported inside the methods that run in the task, so importing an
operator or sensor module (every DAG file does, on every parse) loads none of them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog import compat
from airflow_provider_posthog.links.posthog import XCOM_BACKFILLS_URL, XCOM_BATCH_EXPORT_URL, XCOM_RUNS_URL
from airflow_provider_posthog.tasks.args import ExportRef, config_error, to_completeness
from airflow_provider_posthog.tasks.templates import TemplateSourcesMixin

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context
    from airflow.sdk.types import Logger

    from airflow_provider_posthog.api.decisions import Decision
    from airflow_provider_posthog.api.jobs import CancellableJob
    from airflow_provider_posthog.api.models import BatchExportRun
    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.tasks.waiting import Wait


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when a task is built (cheap, no I/O)."""
    return compat.airflow_conf().getboolean("operators", "default_deferrable", fallback=False)


class PostHogTaskMixin(TemplateSourcesMixin):
    """The lazy hook, the link XComs, one poll, one cancel and the end of every wait.

    Expects ``posthog_conn_id`` and ``project_id`` attributes (set by the task's constructor). A wait ends
    in :meth:`finish_wait`: the exceptions it raises are the class attributes below, and a success goes
    through :meth:`on_wait_succeeded`, the one point where a mixin (lineage) adds to it.
    """

    posthog_conn_id: str
    project_id: int | str | None
    #: The export by name instead of ``batch_export_id`` (tasks that take one set it; see :meth:`export_ref`).
    batch_export_name: Any = None
    #: The id :meth:`resolve_export` found for ``batch_export_name`` in this process (``None``: none yet).
    resolved_export_id: str | None = None
    #: What a completed wait does with runs that exported fewer records than PostHog counted:
    #: ``"warn"``, ``"fail"`` or ``"off"`` (waiting tasks take it as an argument).
    completeness: Any = "warn"
    #: The backfill or run id of the last event this task's wait ended with (success or not).
    waited_job_id: str | None = None
    #: The last decision a poll of this process returned.
    _decided: Decision | None = None
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
            raise config_error(f"project_id={self.project_id!r} is not a number.") from exc

    # -- the export the task names: an id, or a name found when the task runs -------------------------------
    def export_ref(self) -> ExportRef:
        """The rendered ``batch_export_id`` or ``batch_export_name``, exactly one; no request."""
        name = self.optional_field("batch_export_name")
        given = self.optional_field("batch_export_id")
        if given is None and name is None and self.template_source("batch_export_id") is not None:
            from airflow_provider_posthog.exceptions import PostHogConfigError

            try:
                self.require_field("batch_export_id")  # says why its template gave nothing
            except PostHogConfigError as exc:
                raise config_error(
                    f"{exc} No batch_export_name was given either; give one of the two."
                ) from None
        return ExportRef.of(given, name)

    def export_id(self, ref: ExportRef) -> str:
        """The id of the export ``ref`` names (see :meth:`resolve_export`)."""
        found = self.resolve_export(ref)
        assert found is not None
        return found

    def resolve_export(self, ref: ExportRef, *, missing_ok: bool = False) -> str | None:
        """``ref.id`` as given (no request), or the id of the one export named ``ref.name`` (one list request,
        when the task runs, never at parse time). Several exports with that name are an error naming their
        ids (PostHog does not keep names unique); none is one too, unless ``missing_ok`` (then ``None``)."""
        if ref.id is not None:
            return ref.id
        from airflow_provider_posthog.api.endpoints import batch_exports_named

        assert ref.name is not None
        found = self.hook.run(batch_exports_named(ref.name))
        if len(found.matches) == 1:
            self.resolved_export_id = found.matches[0].id
            self.log.info("Batch export %r is %s.", ref.name, self.resolved_export_id)
            return self.resolved_export_id
        if found.matches:
            raise config_error(
                f"batch_export_name={ref.name!r} matches {len(found.matches)} batch exports "
                f"({', '.join(e.id for e in found.matches)}); PostHog does not keep names unique: rename or "
                "delete the duplicates, or pass batch_export_id instead."
            )
        if missing_ok:
            return None
        similar = "".join(f" Not the same name: {e.name!r} ({e.id})." for e in found.similar[:5])
        raise config_error(
            f"batch_export_name={ref.name!r} matches no batch export: none of the project's "
            f"{found.listed} export(s) has exactly that name (deleted exports do not count).{similar} "
            "Check the name in PostHog's UI, or pass batch_export_id instead."
        )

    def push_export_xcom(self, context: Context, batch_export_id: str, *, announce: bool = True) -> None:
        """Push the export id and the three UI URLs (what the extra links read); no request. ``announce``
        logs the export's page (a rescheduled sensor pushes again but says it once)."""
        ti = context["ti"]
        ti.xcom_push(key="batch_export_id", value=batch_export_id)
        for key, tab in (
            (XCOM_BATCH_EXPORT_URL, None),
            (XCOM_BACKFILLS_URL, "backfills"),
            (XCOM_RUNS_URL, "runs"),
        ):
            ti.xcom_push(key=key, value=self.hook.ui_url(batch_export_id, tab))
        if announce:
            self.log.info("PostHog batch export: %s", self.hook.ui_url(batch_export_id, None))

    def trigger_kwargs(self, wait: Wait, first_poll_at: float | None) -> dict[str, Any]:
        """What every PostHog trigger needs to continue ``wait`` in the triggerer (plain values only)."""
        return {
            "batch_export_id": wait.batch_export_id,
            "posthog_conn_id": self.posthog_conn_id,
            "project_id": self._project_id(),
            "poll_interval": wait.poll_interval,
            "end_time": wait.end_time,
            "unreachable_timeout": wait.unreachable_timeout,
            "unreachable_since": wait.unreachable_since,
            "first_poll_at": first_poll_at,
            "export": wait.export,
        }

    def poll(self, wait: Wait) -> Decision | Exception:
        """One poll of ``wait``'s job (one call to the hook, bounded by the wait's end): its decision, or the
        exception it raised, for :meth:`Wait.step` to judge."""
        self._decided = None
        try:
            self._decided = self.hook.run(wait.operation(), deadline=wait.start_poll(time.time()))
        except Exception as exc:
            return exc
        return self._decided

    def cancel_best_effort(self, job: CancellableJob) -> None:
        """Cancel a job a wait gave up on or was killed in: log, never raise (the task already fails)."""
        from airflow_provider_posthog.api.jobs import cancel
        from airflow_provider_posthog.tasks.waiting import CANCEL_SECONDS, log_cancel

        try:
            result = self.hook.run(cancel(job), deadline=time.time() + CANCEL_SECONDS)
        except Exception as exc:
            log_cancel(self.log, job.describe(), exc)
        else:
            log_cancel(self.log, job.describe(), result)

    # -- the end of every wait ------------------------------------------------------------------------------
    def wait_errors(self) -> tuple[type[Exception], type[Exception]]:
        """What a wait raises when PostHog reports its job failed, and when its deadline passed first."""
        from airflow_provider_posthog.exceptions import PostHogJobFailedError, PostHogWaitTimeoutError

        return PostHogJobFailedError, PostHogWaitTimeoutError

    def finish_wait(self, context: Context, event: Any, *, require: tuple[str, ...] = ()) -> dict[str, Any]:
        """Validate ``event`` and end the wait with it: return on success, raise otherwise.

        Every waiting task ends here (sync, poke and deferred alike); what a success adds for the task
        belongs in :meth:`on_wait_succeeded`, so a failure, timeout or soft-fail skip never reaches it.
        """
        from airflow_provider_posthog.exceptions import PostHogFinalTriggerError, PostHogTriggerError
        from airflow_provider_posthog.tasks.waiting import ERROR, complete

        # What PostHog wrote into runs (their errors) may quote the key: none of it reaches a message. A
        # trigger's event is scrubbed already; a poll in this process is scrubbed here.
        event = self.hook.scrubbed(event)
        if isinstance(event, dict):
            self.waited_job_id = event.get("backfill_id") or event.get("run_id") or self.waited_job_id
        self.push_summary(context, event)
        failure, timeout = self.wait_errors()
        try:
            checked = complete(
                event,
                failure=failure,
                timeout=timeout,
                log_tails=self._log_tails,
                on_timeout=self.on_wait_timeout,
                require=require,
            )
        except PostHogTriggerError as exc:
            if isinstance(event, dict) and event.get("status") == ERROR and event.get("final") is True:
                raise PostHogFinalTriggerError(str(exc)) from None  # a retry would fail alike
            raise
        self.log.info("%s", checked["message"])
        self.check_completeness(checked)
        decided = self._decided
        if decided is not None and decided.done:
            completed: Sequence[BatchExportRun] | None = decided.completed_runs
        else:  # the event crossed from a trigger
            from airflow_provider_posthog.tasks.waiting import event_completed_runs

            completed = event_completed_runs(checked)
        self.on_wait_succeeded(context, checked, completed)
        return checked

    # -- completeness and the summary (tasks.summary) ------------------------------------------------------
    def completeness_mode(self) -> str:
        """The rendered ``completeness`` argument, checked (``"warn"`` for tasks that take none)."""
        return to_completeness(getattr(self, "completeness", "warn"))

    def check_completeness(self, event: Mapping[str, Any]) -> None:
        """A success whose runs exported fewer records than PostHog counted: a warning, or (``"fail"``) a
        failure that is not retried; nothing with ``"off"`` or when PostHog counted nothing to compare."""
        from airflow_provider_posthog.api.decisions import incomplete_message
        from airflow_provider_posthog.exceptions import PostHogIncompleteExportError

        mode = self.completeness_mode()
        incomplete = event.get("incomplete_runs") or []
        if mode == "off" or not incomplete:
            return
        text = incomplete_message(incomplete)
        if mode == "fail":
            raise PostHogIncompleteExportError(f"{event.get('message')} But {text} (completeness='fail')")
        self.log.warning("%s (completeness='warn')", text)

    def push_summary(self, context: Context, event: Any) -> None:
        """Push the wait's summary XCom (``tasks.summary``) for any event that passes validation, success or
        not, before the task succeeds or fails on it (a failure notifier reads it too)."""
        from airflow_provider_posthog.exceptions import PostHogTriggerError
        from airflow_provider_posthog.tasks.summary import SUMMARY_XCOM_KEY, build_summary
        from airflow_provider_posthog.tasks.waiting import validate_event

        ti = context.get("ti")
        try:
            checked = validate_event(event)
        except PostHogTriggerError:
            return  # no outcome to summarise; finish_wait fails on it
        if ti is None:  # called outside a task run: nowhere to push
            return
        export_id = str(checked["batch_export_id"])
        summary = build_summary(
            checked,
            completeness=self.completeness_mode(),
            started_at=self._task_started_at(context),
            finished_at=time.time(),
            url=self.hook.ui_url(export_id, "backfills" if checked.get("backfill_id") else "runs"),
        )
        ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)

    def _task_started_at(self, context: Context) -> float | None:
        """When the task started waiting, in epoch seconds: its try's start (a deferred task keeps it), or a
        rescheduled sensor's first poke; ``None`` when Airflow does not say."""
        ti = context.get("ti")
        started = getattr(ti, "start_date", None)
        if getattr(self, "reschedule", False) and context.get("task_reschedule_count"):
            with contextlib.suppress(Exception):  # best effort: the summary then counts from this poke
                started = ti.get_first_reschedule_date(context) or started  # type: ignore[union-attr]
        return started.timestamp() if isinstance(started, dt.datetime) else None

    def on_wait_succeeded(
        self, context: Context, event: Mapping[str, Any], completed_runs: Sequence[BatchExportRun] | None
    ) -> None:
        """PostHog confirmed the success (``event``); ``completed_runs`` are the runs the success counted
        (from the event after a deferral; ``None`` when it carries none). Nothing by default."""

    def on_wait_timeout(self, event: Mapping[str, Any]) -> None:
        """What to do before failing a wait whose deadline passed (the operators cancel their backfill)."""

    def _log_tails(self, event: Mapping[str, Any]) -> dict[str, list[str]]:
        """The last log lines of each failed run (best effort; never hides the real failure)."""
        from airflow_provider_posthog.tasks.waiting import LOG_TAIL_RUNS, tail_lines

        batch_export_id = str(event["batch_export_id"])
        tails: dict[str, list[str]] = {}
        for run in (event.get("failed_runs") or [])[:LOG_TAIL_RUNS]:
            run_id = str(run.get("id"))
            try:
                tails[run_id] = self.hook.scrubbed(
                    tail_lines(self.hook.get_run_logs(batch_export_id, run_id))
                )
            except Exception as exc:
                self.log.warning("Could not fetch the logs of run %s: %s", run_id, exc)
        return tails
