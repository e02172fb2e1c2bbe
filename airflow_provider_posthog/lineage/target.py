"""What lineage needs to know about one batch export: where it reads from, where it writes to.

Built from the export as PostHog returns it (``GET .../batch_exports/{id}/``). PostHog strips the
destination's secret keys from that response; this module copies only the keys lineage reads, so even a
config that still held a secret could not carry it into an asset event or a lineage event.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_posthog.api.identity import identity_config

#: PostHog's default model when an export does not say.
DEFAULT_MODEL = "events"


@dataclasses.dataclass(frozen=True)
class ExportTarget:
    """One batch export as lineage sees it. ``posthog_host`` is the connection's base URL."""

    posthog_host: str
    project_id: int | str
    export_id: str
    destination_type: str
    destination_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: str = DEFAULT_MODEL
    #: PostHog's ``schema`` of the export: ``{"fields": [{"expression", "alias"}], "hogql_query": ...}``
    #: when a custom query selects the exported fields, else ``None``.
    schema: Mapping[str, Any] | None = None
    hogql_query: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, posthog_host: str, project_id: int | str) -> ExportTarget:
        """From the export's JSON as PostHog returns it (``BatchExport.raw`` in this package's client)."""
        destination = data.get("destination")
        destination = destination if isinstance(destination, Mapping) else {}
        schema = data.get("schema")
        schema = schema if isinstance(schema, Mapping) else None
        query = data.get("hogql_query") or (schema.get("hogql_query") if schema else None)
        return cls(
            posthog_host=posthog_host,
            project_id=project_id,
            export_id=str(data.get("id") or ""),
            destination_type=str(destination.get("type") or ""),
            destination_config=identity_config(destination),
            model=str(data.get("model") or DEFAULT_MODEL),
            schema=schema,
            hogql_query=str(query) if query else None,
        )

    @property
    def destination(self) -> dict[str, Any]:
        """The ``{"type", "config"}`` shape PostHog uses, with identity keys only."""
        return {"type": self.destination_type, "config": dict(self.destination_config)}


# Parsing shared by the asset URIs and the OpenLineage names (pure functions, no Airflow imports).

#: Ports PostHog applies when a config leaves them out; Airflow's providers default to the same.
POSTGRES_DEFAULT_PORT = 5432
REDSHIFT_DEFAULT_PORT = 5439
#: Table PostHog writes to when ``table_name``/``table_id`` is not set.
DEFAULT_TABLE = "events"
S3_TYPES = frozenset({"S3", "AwsS3", "S3Compatible"})


def config_text(config: Mapping[str, Any], key: str) -> str | None:
    """A config value as stripped text; ``None`` when missing or blank."""
    value = config.get(key)
    text = str(value).strip() if value is not None else ""
    return text or None


def hostname_of(host: str) -> str | None:
    """The lower-case host name of ``host``, ``https://host/`` or ``host:port``."""
    try:
        return urlsplit(host if "://" in host else f"//{host}").hostname
    except ValueError:
        return None


def host_and_port(host: str, port: Any, default: int) -> tuple[str, int] | None:
    """``(hostname, port)`` from a config host that may carry a scheme or a port of its own."""
    try:
        parts = urlsplit(host if "://" in host else f"//{host}")
        hostname, embedded = parts.hostname, parts.port
        number = int(port) if port not in (None, "") else (embedded or default)
    except (TypeError, ValueError):
        return None
    return (hostname, number) if hostname else None


def posthog_authority(posthog_host: str) -> str:
    """``us.posthog.com`` (or ``host:port/prefix`` for a self-hosted instance) from the base URL."""
    raw = posthog_host if "://" in posthog_host else f"https://{posthog_host}"
    parts = urlsplit(raw.strip())
    base = parts.path.rstrip("/")
    if base.endswith("/api"):
        base = base[: -len("/api")]
    return f"{parts.netloc.lower()}{base}"


def stable_s3_prefix(prefix: str | None) -> str:
    """The part of an S3 key prefix that is the same for every run.

    PostHog fills ``{...}`` placeholders in the prefix per run (date parts, table name), so the stable
    part is the directory before the first placeholder; slashes at both ends are dropped.
    """
    text = (prefix or "").strip()
    if "{" in text:
        text = text[: text.index("{")]
        text = text[: text.rfind("/") + 1] if "/" in text else ""
    return text.strip("/")


def snowflake_account(account: str) -> str:
    """The account identifier as Snowflake URIs use it: lower case, no scheme, no
    ``.snowflakecomputing.com``."""
    text = account.strip().lower()
    text = re.sub(r"^[a-z]+://", "", text).split("/", 1)[0]
    return text.removesuffix(".snowflakecomputing.com")


def sum_known(values: list[int | None]) -> int | None:
    """Sum of the reported counts; ``None`` when none was reported (unknown is not zero)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None
