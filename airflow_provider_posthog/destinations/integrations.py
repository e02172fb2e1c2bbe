"""Destinations whose credentials PostHog keeps in a PostHog Integration: Databricks and Azure Blob.

PostHog's configs for these have no credential fields at all; the export names the team's Integration
(``integration_id``) that holds them, so no Airflow secret is read or sent. The Databricks connection only
supplies the SQL warehouse's ``http_path``, as the Databricks provider stores it in its extras.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_posthog.destinations.base import (
    FILE_FORMATS,
    DestinationBuilder,
    check_compression,
    choice,
    extra_field,
    get_connection,
    missing,
    optional_bool,
    optional_int,
    optional_str,
    require_str,
)
from airflow_provider_posthog.exceptions import PostHogConfigError


def _integration(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PostHogConfigError(
            f"integration_id is required: the id (a positive integer) of the PostHog Integration holding "
            f"the credentials (got {value!r})."
        )
    return value


class DatabricksDestination(DestinationBuilder):
    """PostHog's ``Databricks`` destination (behind a feature flag on PostHog's side).

    :param catalog: Unity Catalog catalog (templated).
    :param schema: schema (templated).
    :param table_name: table (templated).
    :param integration_id: the PostHog Databricks Integration (server hostname and OAuth client).
    :param http_path: the SQL warehouse's HTTP path (templated); default: the connection's extra
        ``http_path``.
    :param databricks_conn_id: Airflow ``databricks`` connection read for ``http_path`` only (templated);
        ``None`` when ``http_path`` is given.
    :param use_variant_type: write VARIANT columns (PostHog's default ``True``).
    :param use_automatic_schema_evolution: let the table gain new columns (PostHog's default ``True``).
    """

    destination_type = "Databricks"
    template_fields = ("catalog", "schema", "table_name", "http_path", "databricks_conn_id")
    _settings = (
        "catalog",
        "schema",
        "table_name",
        "integration_id",
        "http_path",
        "databricks_conn_id",
        "use_variant_type",
        "use_automatic_schema_evolution",
    )

    def __init__(
        self,
        *,
        catalog: str,
        schema: str,
        table_name: str,
        integration_id: int,
        http_path: str | None = None,
        databricks_conn_id: str | None = "databricks_default",
        use_variant_type: bool | None = None,
        use_automatic_schema_evolution: bool | None = None,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.catalog = catalog
        self.schema = schema
        self.table_name = table_name
        self.integration_id = integration_id
        self.http_path = http_path
        self.databricks_conn_id = databricks_conn_id
        self.use_variant_type = use_variant_type
        self.use_automatic_schema_evolution = use_automatic_schema_evolution
        self._check()

    def _check(self) -> None:
        super()._check()
        for name in ("catalog", "schema", "table_name"):
            require_str(getattr(self, name), name)
        _integration(self.integration_id)
        optional_str(self.http_path, "http_path")
        if self.http_path is None:
            require_str(self.databricks_conn_id, "databricks_conn_id (or give http_path)")
        optional_bool(self.use_variant_type, "use_variant_type")
        optional_bool(self.use_automatic_schema_evolution, "use_automatic_schema_evolution")

    def _config(self) -> dict[str, Any]:
        http_path = self.http_path
        if http_path is None:
            arg, conn_id = "databricks_conn_id", str(self.databricks_conn_id)
            http_path = extra_field(get_connection(conn_id, arg), "http_path")
            if not http_path:
                raise missing(conn_id, arg, "extra 'http_path' (or pass http_path=)")
        config: dict[str, Any] = {
            "http_path": http_path,
            "catalog": self.catalog,
            "schema": self.schema,
            "table_name": self.table_name,
        }
        for key in ("use_variant_type", "use_automatic_schema_evolution"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    def _integration_id(self) -> int:
        return _integration(self.integration_id)


class AzureBlobDestination(DestinationBuilder):
    """PostHog's ``AzureBlob`` destination (newer PostHog versions).

    :param container_name: the container (templated).
    :param integration_id: the PostHog Azure Blob Integration holding the storage credentials.
    :param prefix: blob name prefix (PostHog's default ``""``; templated).
    :param file_format: ``JSONLines`` (PostHog's default) or ``Parquet``.
    :param compression: as for :class:`~airflow_provider_posthog.destinations.S3Destination`.
    :param max_file_size_mb: split files above this size.
    """

    destination_type = "AzureBlob"
    template_fields = ("container_name", "prefix")
    _settings = (
        "container_name",
        "integration_id",
        "prefix",
        "file_format",
        "compression",
        "max_file_size_mb",
    )

    def __init__(
        self,
        *,
        container_name: str,
        integration_id: int,
        prefix: str | None = None,
        file_format: str | None = None,
        compression: str | None = None,
        max_file_size_mb: int | None = None,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.container_name = container_name
        self.integration_id = integration_id
        self.prefix = prefix
        self.file_format = file_format
        self.compression = compression
        self.max_file_size_mb = max_file_size_mb
        self._check()

    def _check(self) -> None:
        super()._check()
        require_str(self.container_name, "container_name")
        _integration(self.integration_id)
        if self.prefix is not None and not isinstance(self.prefix, str):
            raise PostHogConfigError(f"prefix must be a string (got {self.prefix!r}).")
        choice(self.file_format, "file_format", FILE_FORMATS)
        check_compression(self.file_format, self.compression)
        optional_int(self.max_file_size_mb, "max_file_size_mb")

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"container_name": self.container_name}
        optional = {
            "prefix": self.prefix,
            "file_format": self.file_format,
            "compression": self.compression,
            "max_file_size_mb": optional_int(self.max_file_size_mb, "max_file_size_mb"),
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        return config

    def _integration_id(self) -> int:
        return _integration(self.integration_id)
