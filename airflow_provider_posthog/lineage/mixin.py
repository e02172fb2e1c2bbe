"""Lineage for the provider's operators and sensors: one mixin, three options, two calls.

A task mixes ``PostHogLineageMixin`` in before ``BaseOperator``, calls ``_init_lineage`` at the end of its
``__init__``, ``_lineage_target_from_api`` once it has read the export from PostHog, and
``_lineage_success`` when it succeeds. OpenLineage then finds ``get_openlineage_facets_on_complete`` and
``_on_failure`` on the task. Nothing here touches the network: the task passes in what it fetched.
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

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset, Context

    from airflow_provider_posthog.lineage.assets import RunLike

#: Add to the task's ``template_fields``.
LINEAGE_TEMPLATE_FIELDS = ("asset_uri",)


class PostHogLineageMixin:
    """Asset events and OpenLineage facets for a task that watches a batch export succeed."""

    emit_asset_events: bool
    asset_alias: str | None
    asset_uri: str | None
    _lineage_target: ExportTarget | None = None
    _lineage_runs: Sequence[RunLike] = ()
    _lineage_job_id: str | None = None

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
            self._lineage_job_id = job_id
        return self._lineage_target

    def _lineage_success(
        self,
        context: Context,
        runs: Sequence[RunLike],
        *,
        backfill_id: str | None = None,
        run_id: str | None = None,
    ) -> Asset | None:
        """Record the runs that completed and emit the asset event (unless turned off)."""
        self._lineage_runs = tuple(runs)
        self._lineage_job_id = backfill_id or run_id or self._lineage_job_id
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
        return emit_asset_event(context, self.asset_alias, uri, extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """Input: the PostHog model; output: the destination, with the counts of the completed runs."""
        from airflow_provider_posthog.lineage.openlineage import operator_lineage

        if self._lineage_target is None:
            return None
        return operator_lineage(self._lineage_target, self._lineage_runs, external_id=self._lineage_job_id)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """The same datasets without counts; the OpenLineage provider adds the error message."""
        from airflow_provider_posthog.lineage.openlineage import operator_lineage

        if self._lineage_target is None:
            return None
        return operator_lineage(self._lineage_target, external_id=self._lineage_job_id)
