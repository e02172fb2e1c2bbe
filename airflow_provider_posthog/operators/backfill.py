"""Operators that make PostHog export a window now (backfill, retry a run) or stop it (cancel)."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.lineage.mixin import LINEAGE_TEMPLATE_FIELDS, PostHogLineageMixin
from airflow_provider_posthog.links.posthog import ALL_LINKS
from airflow_provider_posthog.operators._base import PostHogBackfillWaitOperator, PostHogBaseOperator
from airflow_provider_posthog.operators.retry_failed import PostHogRetriedRunsWaitOperator
from airflow_provider_posthog.tasks.args import check_past, to_bool

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_posthog.api.jobs import CancellableJob
    from airflow_provider_posthog.api.models import Backfill


def adopter(backfill: Backfill, context: Context) -> str | None:
    """Who started a backfill a task re-attached to or adopted: ``None`` when it was an earlier try of this
    task in this round (the re-attach rule of ``tasks.reattach``), else a description for the log. A task
    cancels only a backfill it started."""
    from airflow_provider_posthog.tasks.reattach import RETRY, may_reattach

    if may_reattach(RETRY, backfill, context):
        return None
    return "another task, or an earlier run of this one"


class PostHogCreateBackfillOperator(PostHogRetriedRunsWaitOperator):
    """Backfill a batch export over ``[start_at, end_at)`` and (by default) wait until every run completed.

    A zero-width range (``start_at == end_at`` after rendering, what Airflow 3 gives the runs of cron
    schedules) means the last complete period of the DAG's own schedule ending at that time.

    Each new DAG run and each cleared task exports again; a retry of the same try round re-attaches to the
    backfill an earlier try created (``reattach="retry"``; the rule: ``tasks.reattach``).

    :param batch_export_id: the export to backfill (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two): one
        request when the task runs finds its id, pushed and linked as a given id is.
    :param start_at: inclusive start: aware datetime, pendulum, ISO-8601 string or template such as
        ``{{ data_interval_start }}`` (templated).
    :param end_at: exclusive end, in the past (templated).
    :param reattach: ``"retry"`` (default): only a retry re-attaches to what this round created; ``"always"``:
        re-attach to any running or completed backfill of the range; ``"never"``: always create one.
    :param reuse_existing: deprecated alias of ``reattach`` (``True``: ``"always"``, ``False``: ``"never"``).
    :param retry_failed_runs: on an Airflow retry of this task whose earlier try's backfill finished with
        failed runs, retry only those runs and wait for them (default ``True``); ``False``: export the whole
        range again. A new DAG run or a cleared task always exports the whole range.
    :param emit_asset_events: on success, emit an Airflow asset event for the export's destination (default
        ``True``; ``False``: no outlet, no event). See
        :class:`~airflow_provider_posthog.lineage.mixin.PostHogLineageMixin`.
    :param asset_alias: emit through this alias (not templated). Default: a plain ``Asset`` outlet when the
        asset is known when the DAG is parsed, else the alias ``posthog-batch-export:{dag_id}.{task_id}``.
    :param asset_uri: the asset URI instead of the destination's (templated; a literal one is declared as the
        task's ``Asset`` outlet).
    :param asset_destination: the export's destination, literally (a ``{"type", "config"}`` dict or a
        destination builder): its asset is declared as the task's outlet, and a different destination in
        PostHog's answer fails the task. Not templated.

    Waiting parameters (``wait_for_completion``, ``deferrable``, ``poll_interval``, ``timeout``,
    ``cancel_on_kill``): see :class:`~airflow_provider_posthog.operators._base.PostHogBackfillWaitOperator`.
    Returns the backfill id (also pushed as XCom ``backfill_id`` before any wait), on every path.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBackfillWaitOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
        "start_at",
        "end_at",
        *LINEAGE_TEMPLATE_FIELDS,
    )
    operator_extra_links = ALL_LINKS
    ui_color = "#f9bd2b"

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        start_at: Any,
        end_at: Any,
        reattach: str = "retry",
        reuse_existing: bool | None = None,
        retry_failed_runs: bool = True,
        emit_asset_events: bool = True,
        asset_alias: str | None = None,
        asset_uri: str | None = None,
        asset_destination: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_lineage(
            emit_asset_events=emit_asset_events,
            asset_alias=asset_alias,
            asset_uri=asset_uri,
            asset_destination=asset_destination,
        )
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.start_at = start_at
        self.end_at = end_at
        self.reattach = reattach
        self.reuse_existing = reuse_existing
        self.retry_failed_runs = retry_failed_runs
        if reuse_existing is not None:
            warnings.warn(
                "reuse_existing is deprecated; use reattach='always' (True) or reattach='never' (False).",
                DeprecationWarning,
                stacklevel=2,
            )

    def execute(self, context: Context) -> str:
        from airflow_provider_posthog.tasks.data_interval import resolve_range
        from airflow_provider_posthog.tasks.reattach import should_look, validate_reattach

        started = time.time()
        mode = validate_reattach(self.reattach, self.reuse_existing)
        ref = self.export_ref()
        start_at, end_at = resolve_range(
            self.start_at, self.end_at, context, start_name="start_at", end_name="end_at", log=self.log
        )
        check_past(end_at, "end_at")
        self.validate_wait_args()
        retry_failed = to_bool(self.retry_failed_runs, "retry_failed_runs")
        batch_export_id = self.export_id(ref)
        self.push_export_xcom(context, batch_export_id)
        backfill = None
        adopted_from: str | None = None
        if should_look(mode, context):
            found = self.hook.find_backfill(batch_export_id, start_at, end_at)
            if retry_failed:
                done = self.retry_only_failed(context, batch_export_id, found, started)
                if done is not None:
                    return done
            backfill = self.reattachable(context, mode, batch_export_id, found)
            adopted_from = None if backfill is None else adopter(backfill, context)
        if backfill is None:
            from airflow_provider_posthog.exceptions import PostHogBackfillAlreadyRunningError

            try:
                backfill = self.hook.create_backfill(batch_export_id, start_at, end_at)
            except PostHogBackfillAlreadyRunningError as exc:
                backfill = self.already_running(context, mode, batch_export_id, exc)
                adopted_from = adopter(backfill, context)
            else:
                self.log.info(
                    "Created backfill %s of batch export %s over [%s, %s).",
                    backfill.id,
                    batch_export_id,
                    start_at.isoformat(),
                    end_at.isoformat(),
                )
        return self.wait_for_backfill(context, batch_export_id, backfill, started, adopted_from=adopted_from)


class PostHogRetryRunOperator(PostHogLineageMixin, PostHogBackfillWaitOperator):
    """Retry a run (PostHog starts a one-interval backfill) and wait for it like the backfill operator.

    :param batch_export_id: the export (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two).
    :param run_id: the run to retry (templated); any age.
    :param reattach: as :class:`PostHogCreateBackfillOperator`: ``"retry"`` (default), ``"always"``,
        ``"never"``.
    :param emit_asset_events: as :class:`PostHogCreateBackfillOperator` (default ``True``).
    :param asset_alias: as :class:`PostHogCreateBackfillOperator`.
    :param asset_uri: as :class:`PostHogCreateBackfillOperator` (templated).
    :param asset_destination: as :class:`PostHogCreateBackfillOperator`.

    Returns the backfill id.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBackfillWaitOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
        "run_id",
        *LINEAGE_TEMPLATE_FIELDS,
    )
    operator_extra_links = ALL_LINKS
    ui_color = "#f9bd2b"

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        run_id: str,
        reattach: str = "retry",
        emit_asset_events: bool = True,
        asset_alias: str | None = None,
        asset_uri: str | None = None,
        asset_destination: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._init_lineage(
            emit_asset_events=emit_asset_events,
            asset_alias=asset_alias,
            asset_uri=asset_uri,
            asset_destination=asset_destination,
        )
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.run_id = run_id
        self.reattach = reattach

    def execute(self, context: Context) -> str:
        from airflow_provider_posthog.tasks.reattach import should_look, validate_reattach

        started = time.time()
        mode = validate_reattach(self.reattach)
        ref = self.export_ref()
        run_id = self.require_field("run_id")
        self.validate_wait_args()
        batch_export_id = self.export_id(ref)
        self.push_export_xcom(context, batch_export_id)
        context["ti"].xcom_push(key="run_id", value=run_id)
        run = self.hook.get_run(batch_export_id, run_id)
        backfill = None
        adopted_from: str | None = None
        if should_look(mode, context) and run.data_interval_start and run.data_interval_end:
            found = self.hook.find_backfill(batch_export_id, run.data_interval_start, run.data_interval_end)
            if found is not None and found.id != run.backfill_id:
                backfill = self.reattachable(context, mode, batch_export_id, found)
                adopted_from = None if backfill is None else adopter(backfill, context)
        if backfill is None:
            from airflow_provider_posthog.exceptions import PostHogBackfillAlreadyRunningError

            try:
                backfill = self.hook.retry_run(batch_export_id, run_id)
            except PostHogBackfillAlreadyRunningError as exc:
                backfill = self.already_running(context, mode, batch_export_id, exc)
                adopted_from = adopter(backfill, context)
            else:
                self.log.info(
                    "Retrying run %s of batch export %s: backfill %s.", run_id, batch_export_id, backfill.id
                )
        return self.wait_for_backfill(context, batch_export_id, backfill, started, adopted_from=adopted_from)


class _PostHogCancelOperator(PostHogBaseOperator):
    """Cancel something if it is still active; finished already is only an error with ``strict=True``.

    The status is read back after the cancel: PostHog can acknowledge a cancel it did not carry out, and
    then ``PostHogCancelNotEffectiveError`` (naming the run or backfill) fails the task.
    """

    operator_extra_links = ALL_LINKS

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        strict: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.strict = strict

    def _cancel(self, job: CancellableJob, strict: bool) -> str:
        from airflow_provider_posthog.api.jobs import cancel
        from airflow_provider_posthog.exceptions import PostHogError

        result = self.hook.run(cancel(job))
        if result.already_finished and strict:
            raise PostHogError(result.message + " (strict=True makes this an error)")
        self.log.info("%s", result.message)
        return result.status


class PostHogCancelRunOperator(_PostHogCancelOperator):
    """Cancel a run that is ``Starting`` or ``Running``. Returns the run's status after the call.

    :param batch_export_id: the export (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two).
    :param run_id: the run (templated).
    :param strict: fail when the run already finished (default: log its status and succeed).
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
        "run_id",
    )

    def __init__(self, *, run_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id

    def execute(self, context: Context) -> str:
        ref = self.export_ref()
        run_id = self.require_field("run_id")
        strict = to_bool(self.strict, "strict")
        batch_export_id = self.export_id(ref)
        self.push_export_xcom(context, batch_export_id)
        context["ti"].xcom_push(key="run_id", value=run_id)
        from airflow_provider_posthog.api.jobs import RunJob

        return self._cancel(RunJob(batch_export_id, run_id), strict)


class PostHogCancelBackfillOperator(_PostHogCancelOperator):
    """Cancel a backfill that is ``Starting`` or ``Running``. Returns the backfill's status after the call.

    :param batch_export_id: the export (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two).
    :param backfill_id: the backfill (templated).
    :param strict: fail when the backfill already finished (default: log its status and succeed).
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
        "backfill_id",
    )

    def __init__(self, *, backfill_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backfill_id = backfill_id

    def execute(self, context: Context) -> str:
        ref = self.export_ref()
        backfill_id = self.require_field("backfill_id")
        strict = to_bool(self.strict, "strict")
        batch_export_id = self.export_id(ref)
        self.push_export_xcom(context, batch_export_id)
        context["ti"].xcom_push(key="backfill_id", value=backfill_id)
        from airflow_provider_posthog.api.jobs import BackfillJob

        return self._cancel(BackfillJob(batch_export_id, backfill_id), strict)
