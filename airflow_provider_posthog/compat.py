"""The one place that knows which Airflow 3.x minor we run on (3.1, 3.2, 3.3).

Kept tiny on purpose: every other module imports the flag or helper it needs from here instead of comparing
version strings itself, so dropping an old Airflow later means deleting lines in one file.
"""

from __future__ import annotations

import json
from typing import Any


def _airflow_version() -> tuple[int, int]:
    try:
        from airflow import __version__ as version
    except ImportError:  # pragma: no cover - airflow is a hard dependency
        return (0, 0)
    major, minor, *_ = ([*version.split("+")[0].split("."), "0", "0"])[:3]
    try:
        return (int(major), int(minor))
    except ValueError:  # pragma: no cover - dev builds such as "3.4.0.dev0" still parse above
        return (0, 0)


AIRFLOW_VERSION: tuple[int, int] = _airflow_version()

#: Airflow 3.3 calls ``BaseTrigger.on_kill`` when a user marks a deferred task failed/success or clears it.
#: Older triggerers never call it, so the remote job keeps running there (documented in docs/triggers.md).
TRIGGER_ON_KILL_SUPPORTED: bool = AIRFLOW_VERSION >= (3, 3)


async def aextra_dejson(conn: Any) -> dict[str, Any]:
    """A connection's extras from inside an event loop.

    ``Connection.aextra_dejson`` (3.3.2+) masks asynchronously. Before it, ``extra_dejson`` masks
    synchronously, which can raise ``DeadlockImminentError`` in the triggerer (NOTES §3.2), so the JSON is
    parsed without the masker: our extras hold no secret (the key lives in ``password``, masked separately).
    """
    method = getattr(conn, "aextra_dejson", None)
    if method is not None:
        return dict(await method())
    return dict(json.loads(conn.extra)) if conn.extra else {}


async def amask_secret(secret: str) -> None:
    """Register a secret with Airflow's masker from inside an event loop (never the sync masker there)."""
    try:
        from airflow.sdk.log import amask_secret as _amask_secret
    except ImportError:  # Airflow < 3.3: run the sync masker off the loop
        from airflow.sdk.log import mask_secret
        from asgiref.sync import sync_to_async

        await sync_to_async(mask_secret)(secret)
        return
    await _amask_secret(secret)
