"""OpenLineage datasets for a batch export: the PostHog model read, the destination written.

Dataset names follow the OpenLineage naming spec (https://openlineage.io/docs/spec/naming) and match what
Airflow's own providers emit for the same system, so lineage joins up with the tasks that read the
destination next. OpenLineage is imported inside the functions: the provider works without the
OpenLineage provider installed, and nothing is imported while a DAG file is parsed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.lineage.target import (
    DEFAULT_TABLE,
    POSTGRES_DEFAULT_PORT,
    REDSHIFT_DEFAULT_PORT,
    S3_TYPES,
    config_text,
    host_and_port,
    hostname_of,
    posthog_authority,
    snowflake_account,
    stable_s3_prefix,
    sum_known,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_posthog.lineage.assets import RunLike
    from airflow_provider_posthog.lineage.target import ExportTarget

#: Fields of the models as PostHog's batch export UI declares them (name, type). The events model's
#: columns differ by destination; these are the ones every destination receives.
MODEL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "events": (
        ("uuid", "string"),
        ("timestamp", "datetime"),
        ("event", "string"),
        ("distinct_id", "string"),
        ("properties", "json"),
    ),
    "persons": (
        ("team_id", "integer"),
        ("distinct_id", "string"),
        ("person_id", "string"),
        ("properties", "json"),
        ("person_version", "integer"),
        ("person_distinct_id_version", "integer"),
        ("created_at", "datetime"),
        ("is_deleted", "boolean"),
    ),
    "sessions": (
        ("team_id", "integer"),
        ("session_id", "string"),
        ("session_id_v7", "string"),
        ("distinct_id", "string"),
        ("start_timestamp", "datetime"),
        ("end_timestamp", "datetime"),
        ("urls", "array"),
        ("num_uniq_urls", "integer"),
        ("entry_current_url", "string"),
        ("entry_pathname", "string"),
        ("entry_hostname", "string"),
        ("end_current_url", "string"),
        ("end_pathname", "string"),
        ("end_hostname", "string"),
        ("entry_utm_source", "string"),
        ("entry_utm_campaign", "string"),
        ("entry_utm_medium", "string"),
        ("entry_utm_term", "string"),
        ("entry_utm_content", "string"),
        ("entry_referring_domain", "string"),
        ("pageview_count", "integer"),
        ("autocapture_count", "integer"),
        ("screen_count", "integer"),
        ("channel_type", "string"),
        ("session_duration", "integer"),
        ("is_bounce", "boolean"),
    ),
}
_FROM_TABLE = re.compile(r"\bfrom\s+([A-Za-z_][\w.]*)", re.IGNORECASE)
_AWS_REDSHIFT_SUFFIXES = (".redshift.amazonaws.com", ".redshift-serverless.amazonaws.com")


@dataclasses.dataclass(frozen=True)
class DatasetId:
    """An OpenLineage dataset identity, before any OpenLineage class is imported."""

    namespace: str
    name: str


def posthog_namespace(posthog_host: str, project_id: int | str) -> str:
    """``posthog://{host}/project/{project_id}``: one PostHog project is one data source."""
    return f"posthog://{posthog_authority(posthog_host)}/project/{project_id}"


def hogql_table(query: str | None) -> str | None:
    """The first table a HogQL query reads (``... FROM events ...`` -> ``events``), if it names one."""
    if not query:
        return None
    match = _FROM_TABLE.search(query)
    return match.group(1) if match else None


def input_dataset_id(target: ExportTarget) -> DatasetId:
    """The PostHog model the export reads; a custom query is named after the table it selects from."""
    name = target.model
    if target.hogql_query or target.model == "hogql":
        name = hogql_table(target.hogql_query) or target.model
    return DatasetId(posthog_namespace(target.posthog_host, target.project_id), name)


def model_fields(target: ExportTarget) -> list[tuple[str, str | None]]:
    """Field names (and types where PostHog declares them) of what the export reads."""
    fields = target.schema.get("fields") if target.schema else None
    if isinstance(fields, Sequence) and fields:
        names: list[tuple[str, str | None]] = []
        for field in fields:
            if isinstance(field, Mapping):
                name = field.get("alias") or field.get("expression")
                if name:
                    names.append((str(name), None))
        return names
    return list(MODEL_FIELDS.get(target.model, ()))


def redshift_authority(host: str, port: int) -> str:
    """``{cluster_identifier}.{region}:{port}`` for an AWS endpoint, as the naming spec and the Amazon
    provider name it; any other host is kept as is."""
    if host.endswith(_AWS_REDSHIFT_SUFFIXES):
        labels = host.split(".")
        if len(labels) > 3:
            return f"{labels[0]}.{labels[2]}:{port}"
    return f"{host}:{port}"


def _sql_dataset(kind: str, config: Mapping[str, Any]) -> DatasetId | None:
    host, database = config_text(config, "host"), config_text(config, "database")
    if not (host and database):
        return None
    default = POSTGRES_DEFAULT_PORT if kind == "Postgres" else REDSHIFT_DEFAULT_PORT
    host_port = host_and_port(host, config.get("port"), default)
    if host_port is None:
        return None
    if kind == "Postgres":
        namespace = f"postgres://{host_port[0]}:{host_port[1]}"
    else:
        namespace = f"redshift://{redshift_authority(*host_port)}"
    schema = config_text(config, "schema") or "public"
    return DatasetId(namespace, f"{database}.{schema}.{config_text(config, 'table_name') or DEFAULT_TABLE}")


def _destination_dataset(kind: str, config: Mapping[str, Any]) -> DatasetId | None:
    table = config_text(config, "table_name") or DEFAULT_TABLE
    if kind in S3_TYPES:
        bucket = config_text(config, "bucket_name")
        return (
            DatasetId(f"s3://{bucket}", stable_s3_prefix(config_text(config, "prefix")) or "/")
            if bucket
            else None
        )
    if kind == "BigQuery":
        project, dataset = config_text(config, "project_id"), config_text(config, "dataset_id")
        if project and dataset:
            return DatasetId(
                "bigquery", f"{project}.{dataset}.{config_text(config, 'table_id') or DEFAULT_TABLE}"
            )
        return None
    if kind in ("Postgres", "Redshift"):
        return _sql_dataset(kind, config)
    if kind == "Snowflake":
        account, database, schema = (config_text(config, k) for k in ("account", "database", "schema"))
        if account and database and schema:
            return DatasetId(f"snowflake://{snowflake_account(account)}", f"{database}.{schema}.{table}")
        return None
    if kind == "Databricks":
        host, catalog, schema = (config_text(config, k) for k in ("server_hostname", "catalog", "schema"))
        hostname = hostname_of(host) if host else None
        if hostname and catalog and schema and config_text(config, "table_name"):
            return DatasetId(f"databricks://{hostname}", f"{catalog}.{schema}.{table}")
    return None


def output_dataset_id(target: ExportTarget) -> DatasetId:
    """Where the export writes, per the naming spec; the export itself when PostHog's response does not
    say enough (HTTP, NoOp, Workflows, or a destination whose host lives in a PostHog integration)."""
    found = _destination_dataset(target.destination_type, target.destination_config)
    if found is not None:
        return found
    return DatasetId(
        posthog_namespace(target.posthog_host, target.project_id), f"batch_exports/{target.export_id}"
    )


def build_datasets(target: ExportTarget, runs: Sequence[RunLike] = ()) -> tuple[Dataset, Dataset]:
    """The input dataset (with a schema facet when fields are known) and the output dataset (with
    output statistics when the runs report counts)."""
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    source = input_dataset_id(target)
    fields = model_fields(target)
    facets: dict[str, Any] = {}
    if fields:
        facets["schema"] = SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=name, type=kind) for name, kind in fields]
        )
    input_dataset = Dataset(namespace=source.namespace, name=source.name, facets=facets)

    sink = output_dataset_id(target)
    rows = sum_known([run.records_completed for run in runs])
    size = sum_known([run.bytes_exported for run in runs])
    output_facets: dict[str, Any] = {}
    if rows is not None or size is not None:
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=rows, size=size)
    output_dataset = OutputDataset(
        namespace=sink.namespace, name=sink.name, facets={}, outputFacets=output_facets
    )
    return input_dataset, output_dataset


def operator_lineage(
    target: ExportTarget,
    runs: Sequence[RunLike] = (),
    *,
    external_id: str | None = None,
) -> OperatorLineage:
    """``OperatorLineage`` for ``get_openlineage_facets_on_complete``/``_on_failure``.

    On failure pass no runs: the datasets still say what the task was moving, without counts. The
    OpenLineage provider itself adds the ``errorMessage`` run facet from the task's exception.
    ``external_id`` (the backfill or run id) links the event to the job in PostHog.
    """
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    input_dataset, output_dataset = build_datasets(target, runs)
    run_facets: dict[str, Any] = {}
    if external_id:
        run_facets["externalQuery"] = ExternalQueryRunFacet(
            externalQueryId=external_id, source=posthog_namespace(target.posthog_host, target.project_id)
        )
    return OperatorLineage(inputs=[input_dataset], outputs=[output_dataset], run_facets=run_facets)
