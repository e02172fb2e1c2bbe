"""Lineage for the provider's operators and sensors: three options, one call on success.

A task mixes ``PostHogLineageMixin`` (a ``tasks.mixin.PostHogTaskMixin``, which gives it ``hook``) in
before ``BaseOperator``, calls ``_init_lineage`` at the end of its ``__init__`` and adds
``LINEAGE_TEMPLATE_FIELDS`` to its ``template_fields``. The mixin overrides ``on_wait_succeeded``, which
``finish_wait`` calls after a verified success only, so a failure, a cancel, a timeout or a soft-fail skip
never emits. OpenLineage then finds ``get_openlineage_facets_on_complete`` and ``_on_failure`` on the task.
Lineage builds on the task layer; the task layer knows nothing of lineage.

PostHog is read after the success (the export once per task instance, cached, and the runs that completed)
or, for OpenLineage, after a failure that came before the export was read; never when the DAG file is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.lineage.assets import (
    asset_event_extra,
    default_alias_name,
    destination_asset_uri,
    emit_asset_event,
    with_alias_outlet,
)
from airflow_provider_posthog.lineage.target import ExportTarget
from airflow_provider_posthog.tasks.mixin import PostHogTaskMixin

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset, Context
    from airflow.sdk.types import Logger

    from airflow_provider_posthog.api.models import BatchExport, BatchExportRun
    from airflow_provider_posthog.lineage.assets import RunLike

#: Add to the task's ``template_fields``.
LINEAGE_TEMPLATE_FIELDS = ("asset_uri",)


class PostHogLineageMixin(PostHogTaskMixin):
    """Asset events and OpenLineage facets for a task that waits for a batch export job to succeed.

    :param emit_asset_events: emit an asset event for the export's destination on success (default).
        ``False`` declares no alias and emits nothing.
    :param asset_alias: the ``AssetAlias`` the event is attached to. Default
        ``posthog-batch-export:{dag_id}.{task_id}``. Fixed when the DAG is parsed (not templated).
    :param asset_uri: the asset's URI instead of the one derived from the destination (templated).
    """

    emit_asset_events: bool
    asset_alias: str | None
    asset_uri: str | None
    batch_export_id: Any
    _lineage_target: ExportTarget | None = None
    _lineage_export_obj: BatchExport | None = None
    _lineage_runs: Sequence[RunLike] = ()
    #: PostHog confirmed the job succeeded (a task that did not wait reports no lineage on completion).
    _lineage_verified: bool = False
    if TYPE_CHECKING:

        @property
        def log(self) -> Logger: ...

    def _init_lineage(
        self, *, emit_asset_events: bool, asset_alias: str | None, asset_uri: str | None
    ) -> None:
        """Validate the options and declare the alias; call after ``BaseOperator.__init__``."""
        if not isinstance(emit_asset_events, bool):
            raise TypeError(f"emit_asset_events must be True or False, got {emit_asset_events!r}.")
        if asset_alias is not None and (not isinstance(asset_alias, str) or not asset_alias.strip()):
            raise ValueError(f"asset_alias must be a non-empty string or None, got {asset_alias!r}.")
        if asset_uri is not None and (not isinstance(asset_uri, str) or not asset_uri.strip()):
            raise ValueError(f"asset_uri must be a non-empty string (a URI) or None, got {asset_uri!r}.")
        self.emit_asset_events = emit_asset_events
        self.asset_uri = asset_uri
        self.asset_alias = None
        if emit_asset_events:
            task: Any = self  # a BaseOperator: the mixin only comes before it in the bases
            dag = task.get_dag()
            self.asset_alias = asset_alias or default_alias_name(dag.dag_id if dag else None, task.task_id)
            task.outlets = with_alias_outlet(task.outlets, self.asset_alias)

    def _lineage_target_from_api(
        self,
        export: Mapping[str, Any],
        *,
        posthog_host: str,
        project_id: int | str,
        job_id: str | None = None,
    ) -> ExportTarget:
        """Remember the export (its JSON as PostHog returned it) for the asset event and OpenLineage;
        ``job_id`` (backfill or run id), once known, links the OpenLineage run to PostHog's job."""
        self._lineage_target = ExportTarget.from_api(export, posthog_host=posthog_host, project_id=project_id)
        if job_id:
            self.waited_job_id = job_id
        return self._lineage_target

    # -- reading PostHog after a success ------------------------------------------------------------------
    def _lineage_load(self, batch_export_id: str) -> BatchExport:
        """The export, read once per task instance (``GET .../batch_exports/{id}/``, secrets stripped)."""
        export = self._lineage_export_obj
        if export is None or export.id != batch_export_id:
            hook = self.hook
            export = hook.get_batch_export(batch_export_id)
            settings = hook._settings()  # base URL and project: what names the PostHog side; no request
            self._lineage_export_obj = export
            self._lineage_target_from_api(
                export.raw, posthog_host=settings.base_url, project_id=settings.project_id
            )
        return export

    def _lineage_completed_runs(
        self, context: Context, event: Mapping[str, Any], export: BatchExport
    ) -> Sequence[BatchExportRun]:
        """The runs the wait succeeded on: those the backfill's poll counted (its own completed runs and the
        export's runs it adopted), or the one run.

        Tasks that wait for something else (an interval of runs) override this.
        """
        from airflow_provider_posthog.api.jobs import BackfillJob

        batch_export_id = str(event["batch_export_id"])
        backfill_id, run_id = event.get("backfill_id"), event.get("run_id")
        if backfill_id:
            return self.hook.run(BackfillJob(batch_export_id, str(backfill_id)).poll()).completed_runs
        if run_id:
            return [self.hook.get_run(batch_export_id, str(run_id))]
        return []

    def on_wait_succeeded(
        self, context: Context, event: Mapping[str, Any], completed_runs: Sequence[BatchExportRun] | None
    ) -> None:
        """Once PostHog confirmed the success: read the export (and, after a deferral, the runs), then emit
        the asset event. Outside Airflow's task runner (no ``outlet_events``) nothing is read."""
        super().on_wait_succeeded(context, event, completed_runs)
        self._lineage_wait_succeeded(context, event, completed_runs)

    def _lineage_wait_succeeded(
        self,
        context: Context,
        event: Mapping[str, Any],
        completed_runs: Sequence[BatchExportRun] | None = None,
    ) -> Asset | None:
        from airflow_provider_posthog.exceptions import PostHogError

        backfill_id = str(event["backfill_id"]) if event.get("backfill_id") else None
        run_id = str(event["run_id"]) if event.get("run_id") else None
        self._lineage_verified = True
        if not self.emit_asset_events or "outlet_events" not in context:
            return None
        batch_export_id = str(event["batch_export_id"])
        try:
            export = self._lineage_load(batch_export_id)
            runs = (
                completed_runs
                if completed_runs is not None
                else self._lineage_completed_runs(context, event, export)
            )
        except PostHogError:
            self.log.error(
                "PostHog reported success, but reading batch export %s for its asset event failed; "
                "failing so that a retry emits it (set emit_asset_events=False to skip the event).",
                batch_export_id,
            )
            raise
        return self._lineage_success(context, runs, backfill_id=backfill_id, run_id=run_id)

    def _lineage_success(
        self,
        context: Context,
        runs: Sequence[RunLike],
        *,
        backfill_id: str | None = None,
        run_id: str | None = None,
    ) -> Asset | None:
        """Record the runs that completed and emit the asset event (unless turned off)."""
        self._lineage_verified = True
        self._lineage_runs = tuple(runs)
        self.waited_job_id = backfill_id or run_id or self.waited_job_id
        target = self._lineage_target
        if not self.emit_asset_events or target is None or self.asset_alias is None:
            return None
        uri = self.asset_uri or destination_asset_uri(
            target.destination,
            posthog_host=target.posthog_host,
            project_id=target.project_id,
            export_id=target.export_id,
        )
        extra = asset_event_extra(target, self._lineage_runs, backfill_id=backfill_id)
        asset = emit_asset_event(context, self.asset_alias, uri, extra)
        self.log.info(
            "Asset event for %s (alias %s): %s run(s), %s record(s).",
            asset.uri,
            self.asset_alias,
            len(self._lineage_runs),
            extra["records_completed"],
        )
        return asset

    # -- OpenLineage --------------------------------------------------------------------------------------
    def _lineage_target_or_read(self) -> ExportTarget | None:
        """The target, read from PostHog if the task has not read it (best effort: lineage never fails
        or hides the task's own outcome)."""
        if self._lineage_target is not None:
            return self._lineage_target
        from airflow_provider_posthog.tasks.args import require_id

        try:
            self._lineage_load(self.resolved_export_id or require_id(self.batch_export_id, "batch_export_id"))
        except Exception as exc:
            self.log.warning("No OpenLineage datasets: could not read the batch export (%s).", exc)
            return None
        return self._lineage_target

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """Input: the PostHog model; output: the destination, with the counts of the completed runs.

        ``None`` when the task succeeded without waiting (``wait_for_completion=False``): nothing has been
        exported yet, so no dataset is claimed.
        """
        from airflow_provider_posthog.lineage.openlineage import operator_lineage

        if not self._lineage_verified:
            return None
        target = self._lineage_target_or_read()
        if target is None:
            return None
        return operator_lineage(target, self._lineage_runs, external_id=self.waited_job_id)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """The same datasets without counts; the OpenLineage provider adds the error message."""
        from airflow_provider_posthog.lineage.openlineage import operator_lineage

        target = self._lineage_target_or_read()
        if target is None:
            return None
        return operator_lineage(target, external_id=self.waited_job_id)
