"""Typed PostHog batch export destinations whose credentials come from Airflow connections.

Pass a builder wherever a PostHog operator takes ``destination``. Constructing one (at DAG parse time)
checks its settings and reads nothing; the connection is read when the task runs, and every secret is
registered with Airflow's log masker first. A plain ``{"type": ..., "config": {...}}`` dict still works.
"""

from __future__ import annotations

from airflow_provider_posthog.destinations.aws import RedshiftDestination, S3Destination
from airflow_provider_posthog.destinations.base import DestinationBuilder, resolve_destination
from airflow_provider_posthog.destinations.bigquery import BigQueryDestination
from airflow_provider_posthog.destinations.http_destination import HTTPDestination
from airflow_provider_posthog.destinations.integrations import AzureBlobDestination, DatabricksDestination
from airflow_provider_posthog.destinations.postgres import PostgresDestination
from airflow_provider_posthog.destinations.snowflake import SnowflakeDestination

__all__ = [
    "AzureBlobDestination",
    "BigQueryDestination",
    "DatabricksDestination",
    "DestinationBuilder",
    "HTTPDestination",
    "PostgresDestination",
    "RedshiftDestination",
    "S3Destination",
    "SnowflakeDestination",
    "resolve_destination",
]
