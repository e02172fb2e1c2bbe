"""Airflow asset URIs for a batch export's destination, and the asset event a task emits on success.

The event goes through the outlet the task declared when it was built (``lineage.outlets``): a plain
``Asset`` when the DAG names the asset (``asset_uri``, or the destination given literally), else an
``AssetAlias`` the concrete ``Asset`` is attached to at run time, once PostHog said where the export writes:
https://airflow.apache.org/docs/apache-airflow/stable/authoring-and-scheduling/asset-scheduling.html

URIs follow the asset URI formats of Airflow's own providers (Amazon ``s3://`` and ``redshift://``, Google
``bigquery://``, Postgres ``postgres://``, Snowflake ``snowflake://``, Databricks ``databricks://``), written
already normalised, so the asset is the same whether or not that provider is installed. A destination
whose identity PostHog does not return (credentials and hosts kept in a PostHog integration, HTTP, NoOp,
Workflows) gets a ``posthog://`` URI naming the export instead. Only non-secret configuration keys are
ever read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from airflow_provider_posthog.api.identity import IDENTITY_KEYS, identity_config

# What a task declares when it is built lives in ``lineage.outlets`` (cheap at DAG parse time); importable
# from here too.
from airflow_provider_posthog.lineage.outlets import ALIAS_PREFIX as ALIAS_PREFIX
from airflow_provider_posthog.lineage.outlets import default_alias_name as default_alias_name
from airflow_provider_posthog.lineage.outlets import is_asset
from airflow_provider_posthog.lineage.outlets import with_alias_outlet as with_alias_outlet
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
    from collections.abc import Sequence
    from datetime import datetime

    from airflow.sdk import Asset, Context

    from airflow_provider_posthog.lineage.target import ExportTarget


class RunLike(Protocol):
    """What lineage needs of a batch export run (``api.models.BatchExportRun`` satisfies it)."""

    @property
    def id(self) -> str: ...
    @property
    def data_interval_start(self) -> datetime | None: ...
    @property
    def data_interval_end(self) -> datetime | None: ...
    @property
    def records_completed(self) -> int | None: ...
    @property
    def bytes_exported(self) -> int | None: ...


def _segment(value: str) -> str:
    """One URI path segment: percent-encode what would change the path's structure."""
    return quote(value, safe="-._~$@+=,;:!*'()")


def posthog_export_uri(posthog_host: str, project_id: int | str, export_id: str) -> str:
    """``posthog://{host}/project/{project_id}/batch_exports/{export_id}``: the export itself."""
    return (
        f"posthog://{posthog_authority(posthog_host)}/project/{_segment(str(project_id))}"
        f"/batch_exports/{_segment(str(export_id))}"
    )


def _s3(config: Mapping[str, Any]) -> str | None:
    bucket = config_text(config, "bucket_name")
    if not bucket:
        return None
    prefix = stable_s3_prefix(config_text(config, "prefix"))
    path = "/".join(_segment(part) for part in prefix.split("/") if part)
    return f"s3://{bucket}/{path}" if path else f"s3://{bucket}"


def _bigquery(config: Mapping[str, Any]) -> str | None:
    project = config_text(config, "project_id")
    dataset = config_text(config, "dataset_id")
    if not (project and dataset):
        return None
    table = config_text(config, "table_id") or DEFAULT_TABLE
    return f"bigquery://{project}/{_segment(dataset)}/{_segment(table)}"


def _sql(scheme: str, default_port: int, config: Mapping[str, Any]) -> str | None:
    host = config_text(config, "host")
    database = config_text(config, "database")
    if not (host and database):
        return None
    host_port = host_and_port(host, config.get("port"), default_port)
    if host_port is None:
        return None
    schema = config_text(config, "schema") or "public"
    table = config_text(config, "table_name") or DEFAULT_TABLE
    return (
        f"{scheme}://{host_port[0]}:{host_port[1]}/{_segment(database)}/{_segment(schema)}/{_segment(table)}"
    )


def _snowflake(config: Mapping[str, Any]) -> str | None:
    account = config_text(config, "account")
    database = config_text(config, "database")
    schema = config_text(config, "schema")
    if not (account and database and schema):
        return None
    table = config_text(config, "table_name") or DEFAULT_TABLE
    return (
        f"snowflake://{snowflake_account(account)}/{_segment(database)}/{_segment(schema)}/{_segment(table)}"
    )


def _databricks(config: Mapping[str, Any]) -> str | None:
    # PostHog keeps the workspace host in the Databricks integration and never returns it; a config that
    # carries one (``server_hostname``) gets the Databricks provider's URI.
    host = config_text(config, "server_hostname")
    catalog = config_text(config, "catalog")
    schema = config_text(config, "schema")
    table = config_text(config, "table_name")
    if not (host and catalog and schema and table):
        return None
    hostname = hostname_of(host)
    if not hostname:
        return None
    return f"databricks://{hostname}/{_segment(catalog)}/{_segment(schema)}/{_segment(table)}"


def named_destination_uri(destination: Mapping[str, Any]) -> str | None:
    """The asset URI of the destination system's table or prefix (``{"type", "config"}`` as PostHog returns
    it, or as a DAG gives it); ``None`` when the settings do not say enough to name it."""
    dest_type = str(destination.get("type") or "")
    config = identity_config(destination)
    uri: str | None = None
    if dest_type in S3_TYPES:
        uri = _s3(config)
    elif dest_type == "BigQuery":
        uri = _bigquery(config)
    elif dest_type == "Postgres":
        uri = _sql("postgres", POSTGRES_DEFAULT_PORT, config)
    elif dest_type == "Redshift":
        uri = _sql("redshift", REDSHIFT_DEFAULT_PORT, config)
    elif dest_type == "Snowflake":
        uri = _snowflake(config)
    elif dest_type == "Databricks":
        uri = _databricks(config)
    return uri


def asset_destination_uri(destination: Any) -> str:
    """The asset URI of a destination the DAG gives literally (``asset_destination=``), derived by the same
    function that names the destination PostHog returns when the task runs.

    ``destination`` is PostHog's ``{"type": ..., "config": {...}}`` or a destination builder (read through
    its attributes: lineage does not import ``destinations``). Only the non-secret keys that name the
    target are read, and no message quotes a value. Raises when the literal settings do not name the asset:
    a templated setting, or one the builder reads from its connection when the task runs (a Postgres host).
    """
    from airflow_provider_posthog.tasks.templates import is_template

    kind: Any = None
    config: Any = None
    if isinstance(destination, Mapping):
        kind, config = destination.get("type"), destination.get("config", {})
    elif isinstance(getattr(destination, "destination_type", None), str):  # a destination builder
        kind = destination.destination_type
        config = {key: getattr(destination, key) for key in IDENTITY_KEYS if hasattr(destination, key)}
    if not isinstance(kind, str) or not kind or not isinstance(config, Mapping):
        raise TypeError(
            "asset_destination must be a destination as PostHog writes it, {'type': 'S3', 'config': {...}}, "
            f"or a destination builder (got {type(destination).__name__})."
        )
    # A templated setting the URI depends on (an S3 prefix, not a region) is only known when the task runs.
    templated = sorted(key for key in IDENTITY_KEYS if is_template(config.get(key)))
    uri, other = (
        named_destination_uri({"type": kind, "config": {**config, **dict.fromkeys(templated, stand_in)}})
        for stand_in in ("a", "b")
    )
    if uri != other:
        raise ValueError(
            f"asset_destination: {', '.join(templated)} is templated, so the asset is only known when the "
            "task runs. Give literal values, a literal asset_uri= instead, or leave asset_destination out."
        )
    if uri is None:
        raise ValueError(
            f"asset_destination ({kind}) does not name its asset from the values given in the DAG (the "
            "table's host, account or project may come from a connection when the task runs, or the type "
            "has no table or prefix of its own). Pass asset_uri= instead."
        )
    return uri


def destination_asset_uri(
    destination: Mapping[str, Any], *, posthog_host: str, project_id: int | str, export_id: str
) -> str:
    """The asset URI of where the export writes, or the export's ``posthog://`` URI when PostHog's
    response does not say enough to name the destination system's table or prefix."""
    return named_destination_uri(destination) or posthog_export_uri(posthog_host, project_id, export_id)


def check_declared_uri(declared_uri: str, target: ExportTarget) -> str | None:
    """Compare the asset the DAG declared from its ``asset_destination`` with where PostHog says the export
    writes; returns PostHog's URI (``None`` when its answer does not name the destination).

    A difference fails the task without a retry (the export's settings changed since the DAG was written, or
    the DAG names another export's destination): emitting the declared asset would start the DAGs scheduled
    on it for data that landed elsewhere. The export itself has completed.
    """
    from airflow_provider_posthog.exceptions import PostHogConfigError

    actual = named_destination_uri(target.destination)
    if actual is not None and make_asset(actual).uri != make_asset(declared_uri).uri:
        raise PostHogConfigError(
            f"Batch export {target.export_id} writes to {actual} (its destination as PostHog returns it), "
            f"but the task declares the asset {declared_uri} (asset_destination). No asset event was "
            "emitted; the export itself completed. Make asset_destination match the export, then clear "
            "this task."
        )
    return actual


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def asset_event_extra(
    target: ExportTarget, runs: Sequence[RunLike] = (), *, backfill_id: str | None = None
) -> dict[str, Any]:
    """JSON-safe ``extra`` of the asset event: ids, exported intervals, counts; never a destination
    setting. Counts are ``None`` when PostHog reported none (not 0: unknown is not empty)."""
    starts = [run.data_interval_start for run in runs if run.data_interval_start is not None]
    ends = [run.data_interval_end for run in runs if run.data_interval_end is not None]
    return {
        "posthog_project_id": str(target.project_id),
        "batch_export_id": target.export_id,
        "destination_type": target.destination_type,
        "model": target.model,
        "backfill_id": backfill_id,
        "run_ids": [run.id for run in runs],
        "intervals": [
            {"start": _iso(run.data_interval_start), "end": _iso(run.data_interval_end)} for run in runs
        ],
        "data_interval_start": _iso(min(starts)) if starts else None,
        "data_interval_end": _iso(max(ends)) if ends else None,
        "records_completed": sum_known([run.records_completed for run in runs]),
        "bytes_exported": sum_known([run.bytes_exported for run in runs]),
    }


def make_asset(uri: str) -> Asset:
    """The ``Asset`` a consumer DAG declares as ``Asset(uri)``: same name, same normalised URI."""
    from airflow.sdk import Asset

    return Asset(uri)


def emit_asset_event(context: Context, alias_name: str, uri: str, extra: Mapping[str, Any]) -> Asset:
    """Attach an event for ``uri`` to the task's alias; Airflow records it when the task succeeds.

    The alias must be among the task's ``outlets`` by the time the task finishes: Airflow keeps only alias
    events whose alias the finishing task lists, and drops the rest without a warning.
    """
    from airflow.sdk import AssetAlias

    task = context["task"]
    if not any(isinstance(o, AssetAlias) and o.name == alias_name for o in task.outlets):
        raise ValueError(
            f"asset_alias {alias_name!r} is not among the outlets of task {task.task_id!r}; "
            "declare AssetAlias(asset_alias) in the task's outlets when it is built."
        )
    asset = make_asset(uri)
    context["outlet_events"][AssetAlias(alias_name)].add(asset, extra=dict(extra))
    return asset


def emit_outlet_event(context: Context, uri: str, extra: Mapping[str, Any]) -> Asset:
    """Give the event of the task's declared ``Asset(uri)`` outlet its ``extra``; Airflow records it when the
    task succeeds (an event for every plain asset among the outlets of a task that succeeded)."""
    task = context["task"]
    for outlet in task.outlets:
        if is_asset(outlet, uri):
            context["outlet_events"][outlet].extra = dict(extra)
            return outlet
    raise ValueError(
        f"Asset {uri!r} is not among the outlets of task {task.task_id!r}: Airflow records events only for "
        "the outlets a task declared when it was built."
    )


def emit_export_asset_event(
    context: Context,
    alias_name: str,
    target: ExportTarget,
    runs: Sequence[RunLike] = (),
    *,
    backfill_id: str | None = None,
) -> Asset:
    """The one call a task makes on success: the destination's asset, with ids, intervals and counts."""
    uri = destination_asset_uri(
        target.destination,
        posthog_host=target.posthog_host,
        project_id=target.project_id,
        export_id=target.export_id,
    )
    return emit_asset_event(
        context, alias_name, uri, asset_event_extra(target, runs, backfill_id=backfill_id)
    )
