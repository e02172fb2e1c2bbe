"""The one place that knows which Airflow 3.x minor we run on (3.1, 3.2, 3.3).

Every other module imports the flag or helper it needs from here instead of comparing
version strings itself, so dropping an old Airflow later means deleting lines in one file.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_posthog import get_provider_info


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

# Task SDK exceptions: ``airflow.sdk.exceptions`` has them since 3.2 (3.3 warns on the ``airflow.exceptions``
# path); 3.1's SDK module holds only ``AirflowException``, the rest live in ``airflow.exceptions`` (same
# objects Airflow raises and catches there). One block, so a partial SDK module never mixes the two.
try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

__all__ = [
    "AIRFLOW_VERSION",
    "DECLARATIVE_CONNECTION_FORM_SUPPORTED",
    "TRIGGER_ON_KILL_SUPPORTED",
    "AirflowException",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "aextra_dejson",
    "aget_connection",
    "airflow_conf",
    "amask_secret",
    "atask_state",
    "dagbag_class",
    "legacy_connection_form_widgets",
    "legacy_ui_field_behaviour",
    "warm_task_state",
]

#: Airflow 3.2+ builds the connection form from ``get_provider_info()``'s ``conn-fields`` and
#: ``ui-field-behaviour``; 3.1 ignores them and shows the generic form (docs/connection.md).
DECLARATIVE_CONNECTION_FORM_SUPPORTED: bool = AIRFLOW_VERSION >= (3, 2)

#: Airflow 3.3 calls ``BaseTrigger.on_kill`` when a user marks a deferred task failed/success or clears it.
#: Older triggerers never call it, so the remote job keeps running there (documented in docs/triggers.md).
TRIGGER_ON_KILL_SUPPORTED: bool = AIRFLOW_VERSION >= (3, 3)


async def atask_state(ti: Any) -> str | None:
    """The state of the task instance a trigger serves, read through the triggerer's Task SDK channel.

    Airflow 3.3.2's triggerer cancels a trigger "by user action", and so calls its ``on_kill``, also when the
    trigger merely moves to another triggerer (one of two triggerers goes away): the task is then still
    ``deferred``. Raises when the state cannot be read (outside a triggerer, older Airflow).
    """
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetTaskStates

    comms = task_runner.SUPERVISOR_COMMS
    map_index = int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1)
    response = await comms.asend(
        GetTaskStates(
            dag_id=ti.dag_id,
            task_ids=[ti.task_id],
            run_ids=[ti.run_id],
            map_index=map_index if map_index >= 0 else None,
        )
    )
    states = getattr(response, "task_states", {}).get(ti.run_id, {})
    state = states.get(ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}")
    return None if state is None else str(state)


#: The background read ``warm_task_state`` started in this process (kept referenced until it is done).
_warming: set[Any] = set()
_warmed = False


def warm_task_state(ti: Any) -> None:
    """Start, once per triggerer process, a background read of a task's state, so that ``on_kill``'s own
    read is answered at once.

    Airflow 3.3's triggerer builds the client that answers its triggers' requests (an in-process Execution
    API) at the first request, in its main loop: 13 s on two quiet cores, 30-35 s under load, measured by
    the system tests; Airflow gives ``on_kill`` 30 s in all. A trigger whose connection is stored in
    Airflow's database pays that at its first poll anyway; with a connection from the environment or a
    secrets backend the first request would be ``on_kill``'s, and the cancel would be missed. Does nothing
    outside a triggerer (no supervisor channel) and after the first call.
    """
    global _warmed
    if _warmed or ti is None or not TRIGGER_ON_KILL_SUPPORTED:
        return
    from airflow.sdk.execution_time import task_runner

    if getattr(task_runner, "SUPERVISOR_COMMS", None) is None:
        return
    _warmed = True
    import asyncio
    import contextlib

    async def read() -> None:
        with contextlib.suppress(Exception):  # on_kill reads again and says what went wrong
            await atask_state(ti)

    task = asyncio.ensure_future(read())
    _warming.add(task)
    task.add_done_callback(_warming.discard)


async def aget_connection(conn_id: str) -> Any:
    """Look a connection up from inside an event loop without running the sync masker on the loop.

    Since 3.3.2 ``BaseHook.aget_connection`` masks asynchronously (detected by ``Connection.aextra_dejson``,
    which came with it). On 3.1-3.3.1 it masks synchronously on the loop, which raises in the triggerer
    (``DeadlockImminentError``), so the sync lookup runs in a worker thread instead, as
    common-compat's ``get_async_connection`` does.
    """
    from airflow.sdk import BaseHook, Connection

    if hasattr(Connection, "aextra_dejson"):
        return await BaseHook.aget_connection(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


async def aextra_dejson(conn: Any) -> dict[str, Any]:
    """A connection's extras from inside an event loop.

    ``Connection.aextra_dejson`` (3.3.2+) masks asynchronously. Before it, ``extra_dejson`` masks
    synchronously, which can raise ``DeadlockImminentError`` in the triggerer, so the JSON is
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


def airflow_conf() -> Any:
    """Airflow's config parser, imported on first use: ``airflow.sdk.conf`` (3.2+), the core parser on 3.1."""
    try:
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.1: no SDK parser yet
        from airflow.configuration import conf  # type: ignore[assignment,unused-ignore]
    return conf


def dagbag_class() -> Any:
    """``DagBag`` for tests and tooling: ``airflow.dag_processing.dagbag`` (3.2+) or ``airflow.models``."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef,unused-ignore]
    return DagBag


def legacy_ui_field_behaviour(conn_type: str) -> dict[str, Any]:
    """``get_ui_field_behaviour()`` for Airflow 3.1, derived from ``get_provider_info()``'s declarative entry.

    3.1 reads the hook methods only: hidden fields, labels and placeholders of the built-in fields here, the
    extra fields in :func:`legacy_connection_form_widgets`.
    """
    entry = next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type)
    declared = entry["ui-field-behaviour"]
    builtin = {"description", "host", "port", "login", "password", "schema", "extra"}
    return {
        "hidden_fields": list(declared.get("hidden-fields", [])),
        "relabeling": dict(declared.get("relabeling", {})),
        "placeholders": {k: v for k, v in declared.get("placeholders", {}).items() if k in builtin},
    }


def legacy_connection_form_widgets(conn_type: str) -> dict[str, Any]:
    """``get_connection_form_widgets()`` for Airflow 3.1: one field per declared ``conn-fields`` entry.

    Integer fields become ``IntegerField`` (a number input in the UI), the rest text fields. Only Airflow's
    UI calls this (it stubs wtforms/FAB when they are not installed), so the imports are local.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import IntegerField, StringField
    from wtforms.validators import NumberRange, Optional

    entry = next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type)
    widgets: dict[str, Any] = {}
    for name, spec in entry.get("conn-fields", {}).items():
        schema = spec.get("schema", {})
        types = schema.get("type")
        is_integer = "integer" in (types if isinstance(types, list) else [types])
        validators: list[Any] = [Optional()]
        if is_integer and schema.get("minimum") is not None:
            validators.append(NumberRange(min=schema["minimum"]))
        widgets[name] = (IntegerField if is_integer else StringField)(
            lazy_gettext(spec["label"]),
            widget=BS3TextFieldWidget(),
            validators=validators,
            description=spec.get("description", ""),
        )
    return widgets
