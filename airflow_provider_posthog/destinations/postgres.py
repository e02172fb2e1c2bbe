"""Postgres destination, from a ``postgres`` connection (host, port, login, password; database in schema).

The Postgres provider's connection keeps the *database* name in its schema field (the UI labels it
"Database"); PostHog's ``schema`` is the Postgres schema inside it, a setting of the builder. See
https://airflow.apache.org/docs/apache-airflow-providers-postgres/stable/connections/postgres.html.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_posthog.destinations.base import (
    DestinationBuilder,
    get_connection,
    optional_bool,
    optional_str,
    require_str,
    sql_login_config,
)


class PostgresDestination(DestinationBuilder):
    """PostHog's ``Postgres`` destination.

    :param schema: the Postgres schema (PostHog's default ``public``; templated).
    :param table_name: the table (PostHog's default ``events``; templated).
    :param database: overrides the connection's database (templated).
    :param postgres_conn_id: Airflow ``postgres`` connection (templated).
    :param has_self_signed_cert: the server uses a self-signed certificate.
    """

    destination_type = "Postgres"
    template_fields = ("schema", "table_name", "database", "postgres_conn_id")
    _settings = ("schema", "table_name", "database", "postgres_conn_id", "has_self_signed_cert")

    def __init__(
        self,
        *,
        schema: str | None = None,
        table_name: str | None = None,
        database: str | None = None,
        postgres_conn_id: str = "postgres_default",
        has_self_signed_cert: bool | None = None,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.schema = schema
        self.table_name = table_name
        self.database = database
        self.postgres_conn_id = postgres_conn_id
        self.has_self_signed_cert = has_self_signed_cert
        self._check()

    def _check(self) -> None:
        super()._check()
        for name in ("schema", "table_name", "database"):
            optional_str(getattr(self, name), name)
        require_str(self.postgres_conn_id, "postgres_conn_id")
        optional_bool(self.has_self_signed_cert, "has_self_signed_cert")

    def _config(self) -> dict[str, Any]:
        arg, conn_id = "postgres_conn_id", self.postgres_conn_id
        config = sql_login_config(get_connection(conn_id, arg), conn_id, arg, self.database)
        optional = {
            "schema": self.schema,
            "table_name": self.table_name,
            "has_self_signed_cert": self.has_self_signed_cert,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        return config
