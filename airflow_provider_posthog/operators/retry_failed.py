"""Retry only what failed: the failed, cancelled or timed-out runs of a backfill, of a data-interval range or
of given run ids, then wait until each of those intervals has a completed run.

Which runs, and why a run still running is never retried: ``api.retries``. The wait is the one wait loop
(``tasks.waiting.Wait`` over an ``api.jobs.RunsJob``), in the worker or deferred to the triggerer.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.lineage.mixin import LINEAGE_TEMPLATE_FIELDS, PostHogLineageMixin
from airflow_provider_posthog.links.posthog import ALL_LINKS
from airflow_provider_posthog.operators._base import PostHogBackfillWaitOperator
from airflow_provider_posthog.tasks.args import config_error
from airflow_provider_posthog.tasks.templates import blank

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_posthog.api.jobs import RunsJob
    from airflow_provider_posthog.api.models import Backfill, BatchExport, BatchExportRun
    from airflow_provider_posthog.api.retries import Retried, RetryPlan


class PostHogRetriedRunsWaitOperator(PostHogLineageMixin, PostHogBackfillWaitOperator):
    """Base of operators that retry failed runs and wait for them (sync or deferred, one completion).

    The retries are PostHog's one-interval backfills, left to finish when the task is killed or times out:
    a retry of the task finds them running and waits for them instead of retrying again.
    """

    #: The retried intervals this task waits (or waited) on; after a deferral, rebuilt from the resume kwargs.
    _runs_job: RunsJob | None = None

    def retry_runs(self, plan: RetryPlan) -> Retried:
        """Retry each run of ``plan`` (one POST each, ``api.retries.retry_failed``)."""
        from airflow_provider_posthog.api.retries import retry_failed

        self.log.info("Batch export %s: %s.", plan.batch_export_id, plan.describe())
        retried = self.hook.run(retry_failed(plan, lookup=self.hook.backfill_lookup))
        self._runs_job = retried.job
        return retried

    def wait_for_runs(
        self, context: Context, job: RunsJob, started: float, *, resume: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Wait for ``job`` in the worker and return the wait's event, or defer (``resume`` are extra
        kwargs for ``execute_complete``)."""
        from airflow_provider_posthog.triggers.batch_export import PostHogRetriedRunsTrigger

        self._runs_job = job
        self._waiting_on = None  # nothing of this task's to cancel: the retries are left to finish
        self._owns_backfill = False
        wait, step = self.start_wait(job, started)
        if step.event is None and self.deferrable:
            self.log.info("Deferring; polling every %ss.", wait.poll_interval)
            self.defer(
                trigger=PostHogRetriedRunsTrigger(
                    intervals=job.to_plain(),
                    backfill_id=job.backfill_id,
                    **self.trigger_kwargs(wait, time.time() + wait.poll_interval),
                ),
                method_name="execute_complete",
                timeout=None,  # the trigger sends a timeout event at the wait's end
                kwargs={
                    "owns_backfill": False,
                    "retried": {
                        "batch_export_id": job.batch_export_id,
                        "backfill_id": job.backfill_id,
                        "intervals": job.to_plain(),
                    },
                    **(resume or {}),
                },
            )
        return self.wait_in_worker(wait, step)

    def _resume_runs(self, retried: Mapping[str, Any] | None) -> None:
        if retried is None:
            return
        from airflow_provider_posthog.api.jobs import RunsJob

        backfill_id = retried.get("backfill_id")
        self._runs_job = RunsJob.from_plain(
            str(retried["batch_export_id"]),
            list(retried.get("intervals") or []),
            None if backfill_id is None else str(backfill_id),
        )

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        owns_backfill: bool = True,
        retried: Mapping[str, Any] | None = None,
    ) -> Any:
        """Resume after the trigger; ``retried`` says the wait was on retried runs, not on a backfill."""
        self._resume_runs(retried)
        return super().execute_complete(context, event, owns_backfill)

    def _lineage_completed_runs(
        self, context: Context, event: Mapping[str, Any], export: BatchExport
    ) -> Sequence[BatchExportRun]:
        """After a deferral on retried runs: the runs that completed them (the backfill's own runs include
        the failed ones it retried)."""
        if self._runs_job is not None:
            return self.hook.run(self._runs_job.poll()).completed_runs
        return super()._lineage_completed_runs(context, event, export)

    # -- the backfill operator's Airflow retry --------------------------------------------------------------
    def retry_only_failed(
        self, context: Context, batch_export_id: str, found: Backfill | None, started: float
    ) -> str | None:
        """On an Airflow retry of this task: if the backfill its earlier try created finished with failed
        runs, retry only those and wait for them (returns the backfill id); ``None`` when that does not
        apply (the caller re-attaches or exports the range again, as before).

        It applies only to a backfill of this round (``tasks.reattach``: a new DAG run or a cleared task
        exports the whole range again) that ended ``Completed`` with every interval run: a backfill cancelled
        or stopped before some of its intervals has nothing to retry there, so the range is exported again.
        """
        from airflow_provider_posthog.api.retries import failed_runs_of_backfill
        from airflow_provider_posthog.api.statuses import Outcome
        from airflow_provider_posthog.tasks.reattach import RETRY, may_reattach

        if found is None or found.outcome is not Outcome.SUCCEEDED or not may_reattach(RETRY, found, context):
            return None
        plan = self.hook.run(failed_runs_of_backfill(batch_export_id, found.id))
        if plan.empty:
            return None  # nothing failed (or all fixed since): the re-attach rule applies
        if plan.missing:
            self.log.info(
                "Backfill %s left %s interval(s) without any run; exporting the whole range again instead of "
                "retrying its failed runs.",
                found.id,
                len(plan.missing),
            )
            return None
        self.log.info(
            "Backfill %s, created by an earlier try of this task, finished with failed runs: this retry "
            "retries only those (retry_failed_runs=True) instead of exporting the whole range again.",
            found.id,
        )
        retried = self.retry_runs(plan)
        context["ti"].xcom_push(key="backfill_id", value=found.id)
        context["ti"].xcom_push(key="retry_backfill_ids", value=list(retried.backfill_ids))
        if not self.validate_wait_args().wait_for_completion:
            return found.id
        return self.complete_backfill(context, self.wait_for_runs(context, retried.job, started))


def _run_ids(value: Any) -> list[str]:
    """``run_ids`` after templating: a list, or a string of ids separated by commas or blanks (a rendered
    list such as ``"['a', 'b']"`` too)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text.replace("'", '"'))
            except ValueError:
                raise config_error(f"run_ids={text!r} is not a list of run ids.") from None
        else:
            value = text.replace(",", " ").split()
    if not isinstance(value, (list, tuple)):
        raise config_error(
            f"run_ids must be a list of run ids or a comma-separated string, got {type(value).__name__}."
        )
    ids: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip() or item.strip().startswith("{{"):
            raise config_error(f"run_ids holds {item!r}, which is not a run id.")
        if item.strip() not in ids:
            ids.append(item.strip())
    if not ids:
        raise config_error("run_ids is empty; give at least one run id.")
    return ids


class PostHogRetryFailedRunsOperator(PostHogRetriedRunsWaitOperator):
    """Retry the failed, cancelled or timed-out runs of a backfill, of a data-interval range or of given run
    ids (runs of any age), then wait until each of those intervals has a completed run.

    For each data interval the newest run counts: an interval retried since and completed is not retried
    again, and one whose newest run is still running is waited for, never retried. So a retry of this task,
    or a rerun, retries only what is still failed.

    :param batch_export_id: the export (templated); or ``batch_export_name`` (templated) to find it by name.
    :param backfill_id: retry the failed runs of this finished backfill (templated).
    :param start_at: with ``end_at``: retry the failed runs whose data interval lies in ``[start_at, end_at)``
        (templated; aware datetimes or ISO-8601; a zero-width pair means the DAG schedule's last period).
    :param end_at: see ``start_at``.
    :param run_ids: retry these runs (templated): a list, or ids separated by commas.

    Give exactly one of ``backfill_id``, ``start_at``/``end_at`` and ``run_ids``. Waiting parameters
    (``wait_for_completion``, ``deferrable``, ``poll_interval``, ``timeout``, ``unreachable_timeout``): see
    :class:`~airflow_provider_posthog.operators._base.PostHogBackfillWaitOperator`; there is no
    ``cancel_on_kill`` (the retries are left to finish). Lineage options: see
    :class:`~airflow_provider_posthog.operators.backfill.PostHogCreateBackfillOperator`.

    Returns the ids of the backfills PostHog started for the retries (empty when nothing needed a retry);
    pushes them as XCom ``retry_backfill_ids``, and the retried run ids as ``retried_run_ids``.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBackfillWaitOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
        "backfill_id",
        "start_at",
        "end_at",
        "run_ids",
        *LINEAGE_TEMPLATE_FIELDS,
    )
    operator_extra_links = ALL_LINKS
    ui_color = "#f9bd2b"

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        backfill_id: str | None = None,
        start_at: Any = None,
        end_at: Any = None,
        run_ids: Any = None,
        emit_asset_events: bool = True,
        asset_alias: str | None = None,
        asset_uri: str | None = None,
        asset_destination: Any = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("cancel_on_kill"):
            raise ValueError(
                "PostHogRetryFailedRunsOperator has no cancel_on_kill: the retries are left to finish, and a "
                "retry of the task waits for them."
            )
        kwargs["cancel_on_kill"] = False
        super().__init__(**kwargs)
        self._init_lineage(
            emit_asset_events=emit_asset_events,
            asset_alias=asset_alias,
            asset_uri=asset_uri,
            asset_destination=asset_destination,
        )
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.backfill_id = backfill_id
        self.start_at = start_at
        self.end_at = end_at
        self.run_ids = run_ids

    def _selection(self, context: Context) -> tuple[str, Any]:
        """Which runs, checked before any API call: ``("backfill", id)``, ``("range", (start, end))`` or
        ``("runs", [ids])``."""
        from airflow_provider_posthog.tasks.data_interval import resolve_range

        given = [
            name
            for name in ("backfill_id", "start_at", "end_at", "run_ids")
            if not blank(getattr(self, name)) and getattr(self, name) != []
        ]
        kinds = {"start_at": "start_at/end_at", "end_at": "start_at/end_at"}
        chosen = sorted({kinds.get(n, n) for n in given})
        if len(chosen) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise config_error(
                f"Give exactly one of backfill_id, start_at and end_at together, or run_ids{got}."
            )
        if chosen == ["backfill_id"]:
            return "backfill", self.require_field("backfill_id")
        if chosen == ["run_ids"]:
            return "runs", _run_ids(self.run_ids)
        if len(given) != 2:
            missing = "end_at" if "start_at" in given else "start_at"
            raise config_error(f"{missing} is required with {given[0]}: give both bounds of the range.")
        window = resolve_range(
            self.start_at, self.end_at, context, start_name="start_at", end_name="end_at", log=self.log
        )
        return "range", window

    def execute(self, context: Context) -> list[str]:
        started = time.time()
        ref = self.export_ref()
        kind, selection = self._selection(context)
        self.validate_wait_args()
        batch_export_id = self.export_id(ref)
        self.push_export_xcom(context, batch_export_id)
        from airflow_provider_posthog.api import retries
        from airflow_provider_posthog.exceptions import PostHogError

        if kind == "backfill":
            context["ti"].xcom_push(key="backfill_id", value=selection)
            plan = self.hook.run(retries.failed_runs_of_backfill(batch_export_id, selection))
            if plan.missing:
                shown = ", ".join(f"[{s.isoformat()}, {e.isoformat()})" for s, e in plan.missing[:3])
                more = f" and {len(plan.missing) - 3} more" if len(plan.missing) > 3 else ""
                raise PostHogError(
                    f"Backfill {selection} has no run at all for {len(plan.missing)} of its intervals "
                    f"({shown}{more}): it stopped before them (cancelled, or its export was paused), so "
                    "there is no run to retry there: backfill that range again."
                )
        elif kind == "range":
            start, end = selection
            plan = self.hook.run(retries.failed_runs_between(batch_export_id, start, end))
        else:
            plan = self.hook.run(retries.failed_runs_by_id(batch_export_id, selection))
        retried = self.retry_runs(plan)
        backfill_ids = list(retried.backfill_ids)
        context["ti"].xcom_push(key="retried_run_ids", value=list(retried.retried_run_ids))
        context["ti"].xcom_push(key="retry_backfill_ids", value=backfill_ids)
        if not self.validate_wait_args().wait_for_completion:
            if self.deferrable:
                self.log.warning("deferrable=True has no effect with wait_for_completion=False.")
            return backfill_ids
        event = self.wait_for_runs(context, retried.job, started, resume={"backfill_ids": backfill_ids})
        self.finish_wait(context, event)
        return backfill_ids

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        owns_backfill: bool = False,
        retried: Mapping[str, Any] | None = None,
        backfill_ids: Sequence[str] | None = None,
    ) -> Any:
        """Resume after the trigger: the same completion as the sync path; returns the retries' backfill
        ids, as ``execute`` does."""
        self._resume_runs(retried)
        self.finish_wait(context, event)
        return [str(b) for b in backfill_ids or ()]
