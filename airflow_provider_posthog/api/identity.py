"""What names an export's destination without revealing how to reach it: the keys that may leave a process.

Lineage names assets with them, and a trigger's event carries them (``BatchExport.identity``), so a task
resumed after a deferral names the asset without reading the export again. Imports nothing heavy: lineage
reads it when a DAG file names its asset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Destination config keys that name where the data lands (per destination type, PostHog's config), and
#: nothing else: no credential is among them.
IDENTITY_KEYS = frozenset(
    {
        "bucket_name",
        "prefix",
        "region",
        "project_id",
        "dataset_id",
        "table_id",
        "account",
        "database",
        "schema",
        "table_name",
        "host",
        "port",
        "catalog",
        "server_hostname",
        "container_name",
    }
)


def identity_config(destination: Mapping[str, Any]) -> dict[str, Any]:
    """The destination config reduced to the keys that name the target (never credentials)."""
    config = destination.get("config")
    if not isinstance(config, Mapping):
        return {}
    return {
        key: value for key, value in config.items() if key in IDENTITY_KEYS and not isinstance(value, Mapping)
    }
