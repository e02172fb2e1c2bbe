"""Lineage for the provider's operators and sensors: four options, one call on success.

A task mixes ``PostHogLineageMixin`` (a ``tasks.mixin.PostHogTaskMixin``, which gives it ``hook``) in
before ``BaseOperator``, calls ``_init_lineage`` at the end of its ``__init__`` and adds
``LINEAGE_TEMPLATE_FIELDS`` to its ``template_fields``. The mixin overrides ``on_wait_succeeded``, which
``finish_wait`` calls after a verified success only, so a failure, a cancel, a timeout or a soft-fail skip
never emits, and ``post_execute``, which drops a declared ``Asset`` outlet from a success that emitted
nothing (Airflow records an event for each plain asset outlet of a task that succeeded). OpenLineage then
finds ``get_openlineage_facets_on_complete`` and ``_on_failure`` on the task.
Lineage builds on the task layer; the task layer knows nothing of lineage.

A success names the export and runs its wait read (its event carries the export's identity and up to 100
counted runs, also across a deferral); PostHog is read after the success only for what the event lacks (the
export once per task instance, cached, and the runs that completed) or, for OpenLineage, after a failure
that came before the export was read; never when the DAG file is parsed.
Operators and sensors inherit this class, so every DAG file imports it: it imports only what building a task
needs (``lineage.outlets``); ``assets``, ``target`` and ``openlineage`` are imported when the task runs (a
task given ``asset_destination`` reads ``assets`` when it is built, to name that asset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.lineage.outlets import declare_outlets, without_asset
from airflow_provider_posthog.tasks.mixin import PostHogTaskMixin

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset, Context
    from airflow.sdk.types import Logger

    from airflow_provider_posthog.api.models import BatchExport, BatchExportRun
    from airflow_provider_posthog.lineage.assets import RunLike
    from airflow_provider_posthog.lineage.target import ExportTarget

#: Add to the task's ``template_fields``.
LINEAGE_TEMPLATE_FIELDS = ("asset_uri",)


class PostHogLineageMixin(PostHogTaskMixin):
    """Asset events and OpenLineage facets for a task that waits for a batch export job to succeed.

    :param emit_asset_events: emit an asset event for the export's destination on success (default).
        ``False`` declares no outlet and emits nothing.
    :param asset_alias: emit through this ``AssetAlias`` even when the asset is known when the DAG is parsed.
        Default: a plain ``Asset`` outlet when it is known, else ``posthog-batch-export:{dag_id}.{task_id}``.
        Fixed when the DAG is parsed (not templated).
    :param asset_uri: the asset's URI instead of the one derived from the destination (templated; a literal
        one is declared as the task's ``Asset`` outlet).
    :param asset_destination: the export's destination as the DAG knows it (``{"type", "config"}`` or a
        destination builder, literal values): declares the asset it names as the task's outlet; when the task
        runs, a different destination in PostHog's answer fails the task. The rule: ``lineage.outlets``.
    """

    emit_asset_events: bool
    asset_alias: str | None
    asset_uri: str | None
    #: The URI of the plain ``Asset`` outlet declared when the task was built (``None``: the alias path).
    outlet_asset_uri: str | None = None
    #: The URI ``asset_destination`` names, compared with PostHog's answer when the task runs.
    declared_destination_uri: str | None = None
    batch_export_id: Any
    _lineage_target: ExportTarget | None = None
    _lineage_export_obj: BatchExport | None = None
    _lineage_runs: Sequence[RunLike] = ()
    #: PostHog confirmed the job succeeded (a task that did not wait reports no lineage on completion).
    _lineage_verified: bool = False
    #: This process gave the asset event to Airflow (else ``post_execute`` withdraws the declared asset).
    _lineage_emitted: bool = False
    if TYPE_CHECKING:

        @property
        def log(self) -> Logger: ...

    def _init_lineage(
        self,
        *,
        emit_asset_events: bool,
        asset_alias: str | None,
        asset_uri: str | None,
        asset_destination: Any = None,
    ) -> None:
        """Validate the options and declare the outlet (``lineage.outlets``); call after
        ``BaseOperator.__init__``."""
        if not isinstance(emit_asset_events, bool):
            raise TypeError(f"emit_asset_events must be True or False, got {emit_asset_events!r}.")
        if asset_alias is not None and (not isinstance(asset_alias, str) or not asset_alias.strip()):
            raise ValueError(f"asset_alias must be a non-empty string or None, got {asset_alias!r}.")
        if asset_uri is not None and (not isinstance(asset_uri, str) or not asset_uri.strip()):
            raise ValueError(f"asset_uri must be a non-empty string (a URI) or None, got {asset_uri!r}.")
        if asset_uri is not None and asset_destination is not None:
            raise ValueError("Give asset_uri or asset_destination, not both: each names the task's asset.")
        self.emit_asset_events = emit_asset_events
        self.asset_uri = asset_uri
        self.asset_alias = None
        self.declared_destination_uri = None
        if asset_destination is not None:  # only a DAG that passes it pays for naming its asset now
            from airflow_provider_posthog.lineage.assets import asset_destination_uri

            self.declared_destination_uri = asset_destination_uri(asset_destination)
        if emit_asset_events:
            self.outlet_asset_uri, self.asset_alias = declare_outlets(
                self,
                asset_alias=asset_alias,
                asset_uri=asset_uri,
                destination_uri=self.declared_destination_uri,
            )

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
        from airflow_provider_posthog.lineage.target import ExportTarget

        self._lineage_target = ExportTarget.from_api(export, posthog_host=posthog_host, project_id=project_id)
        if job_id:
            self.waited_job_id = job_id
        return self._lineage_target

    # -- reading PostHog after a success ------------------------------------------------------------------
    def _lineage_known(self, event: Mapping[str, Any], batch_export_id: str) -> bool:
        """Take the export the wait read from its event (its identity: ``BatchExport.identity()``), so
        nothing is read again; ``False`` when the event names none (an older trigger's event)."""
        from collections.abc import Mapping

        known = event.get("export")
        if not isinstance(known, Mapping) or str(known.get("id") or "") != batch_export_id:
            return False
        settings = self.hook._settings()  # base URL and project: what names the PostHog side; no request
        self._lineage_target_from_api(known, posthog_host=settings.base_url, project_id=settings.project_id)
        return True

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
        """Once PostHog confirmed the success: emit the asset event for the export and runs the wait read
        (the event carries them); what it lacks is read. Outside Airflow's task runner (no
        ``outlet_events``) nothing is read."""
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
            runs = completed_runs
            if runs is None:
                runs = self._lineage_completed_runs(context, event, self._lineage_load(batch_export_id))
            elif not self._lineage_known(event, batch_export_id):
                self._lineage_load(batch_export_id)
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
        """Record the runs that completed and emit the asset event (unless turned off) through the outlet
        declared when the task was built."""
        from airflow_provider_posthog.lineage.assets import (
            asset_event_extra,
            check_declared_uri,
            destination_asset_uri,
            emit_asset_event,
            emit_outlet_event,
            named_destination_uri,
        )

        self._lineage_verified = True
        self._lineage_runs = tuple(runs)
        self.waited_job_id = backfill_id or run_id or self.waited_job_id
        target = self._lineage_target
        if not self.emit_asset_events or target is None:
            return None
        if self.asset_uri:
            uri = self.asset_uri  # the user's choice, not checked: it may rename the asset on purpose
            named = named_destination_uri(target.destination)
            if named is not None and named != uri:
                self.log.info("asset_uri=%s names the asset; PostHog's destination is %s.", uri, named)
        elif self.declared_destination_uri:
            check_declared_uri(self.declared_destination_uri, target)
            uri = self.declared_destination_uri
        else:
            uri = destination_asset_uri(
                target.destination,
                posthog_host=target.posthog_host,
                project_id=target.project_id,
                export_id=target.export_id,
            )
        extra = asset_event_extra(target, self._lineage_runs, backfill_id=backfill_id)
        if self.outlet_asset_uri is not None:
            asset, via = emit_outlet_event(context, uri, extra), "its outlet"
        elif self.asset_alias is not None:
            asset, via = emit_asset_event(context, self.asset_alias, uri, extra), f"alias {self.asset_alias}"
        else:
            return None
        self._lineage_emitted = True
        self.log.info(
            "Asset event for %s (through %s): %s run(s), %s record(s).",
            asset.uri,
            via,
            len(self._lineage_runs),
            extra["records_completed"],
        )
        return asset

    def post_execute(self, context: Any, result: Any = None) -> None:
        """Airflow records an event for every plain ``Asset`` outlet of a task that succeeded: a success that
        emitted none (nothing PostHog confirmed) withdraws the declared asset from this run's outlets."""
        parent: Any = super()
        parent.post_execute(context, result)
        if self.outlet_asset_uri is not None and not self._lineage_emitted:
            task: Any = self  # a BaseOperator; the task runner runs a copy of it, the DAG's task is untouched
            task.outlets = without_asset(task.outlets, self.outlet_asset_uri)

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
