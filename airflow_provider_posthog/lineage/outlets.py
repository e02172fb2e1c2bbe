"""What a task declares about lineage when it is built: the outlet its asset event goes through.

This runs when a DAG file is parsed (in the task's constructor), so it imports nothing heavy: reading the
export, naming the destination's asset and emitting the event happen when the task runs (``lineage.assets``).
Two paths (https://airflow.apache.org/docs/apache-airflow/stable/authoring-and-scheduling/asset-scheduling.html):

- the asset is known now (``asset_uri``, or a destination given literally): a plain ``Asset`` outlet, which
  the dag-processor registers with the DAG;
- it is known only when the task runs (the destination is read from PostHog): a fixed ``AssetAlias`` now,
  the concrete ``Asset`` attached to it at run time.
"""

from __future__ import annotations

from typing import Any

#: Prefix of the default alias name, so the provider's aliases are recognisable in the UI.
ALIAS_PREFIX = "posthog-batch-export"


def default_alias_name(dag_id: str | None, task_id: str) -> str:
    """One alias per task, known when the DAG file is parsed: ``posthog-batch-export:{dag_id}.{task_id}``."""
    return f"{ALIAS_PREFIX}:{dag_id}.{task_id}" if dag_id else f"{ALIAS_PREFIX}:{task_id}"


def with_alias_outlet(outlets: Any, alias_name: str) -> list[Any]:
    """``outlets`` (as a task accepts them: ``None``, one item or a list) plus ``AssetAlias(alias_name)``.

    For operator constructors: declaring the alias when the task is built puts it in the serialized DAG
    (graph view, DAGs scheduled on the alias) and in the outlets Airflow checks when the task succeeds.
    """
    from airflow.sdk import AssetAlias

    items = _as_list(outlets)
    if not any(isinstance(o, AssetAlias) and o.name == alias_name for o in items):
        items.append(AssetAlias(alias_name))
    return items


def _always_verifies(task: Any) -> bool:
    """Every success of the task follows a success PostHog confirmed (not ``wait_for_completion=False``)."""
    from airflow_provider_posthog.tasks.args import as_bool

    return as_bool(getattr(task, "wait_for_completion", True)) is True  # not a flag: the task fails on it


def _built_at_parse_time(task: Any) -> bool:
    """``False`` for an instance of a mapped task (``.partial().expand()``): Airflow builds it only when it
    runs, so an outlet its constructor adds is not in the serialized DAG, and Airflow drops the events of a
    plain asset it never registered (the alias path works there). The flag is ``BaseOperator``'s own."""
    return not getattr(task, "_BaseOperator__from_mapped", False)


def declare_outlets(
    task: Any, *, asset_alias: str | None, asset_uri: str | None, destination_uri: str | None
) -> tuple[str | None, str | None]:
    """Declare the outlet the task's asset event goes through; returns ``(asset URI, alias name)``, one set.

    A plain ``Asset`` when the asset is known now (a literal ``asset_uri``, else the URI ``asset_destination``
    names), no ``asset_alias`` was asked for, the task emits on every success (it waits), and its constructor
    runs when the DAG file is parsed, or the outlets given already list that asset (a mapped task). The
    dag-processor then registers the asset with the DAG, so emitting it cannot race: through an alias,
    Airflow inserts an asset it sees for the first time while it records the task's success, and two tasks
    doing that at once fail one of them. Otherwise the alias ``asset_alias`` (default: the task's).
    """
    from airflow.sdk import Asset

    from airflow_provider_posthog.tasks.templates import is_template

    known = destination_uri if asset_uri is None else (None if is_template(asset_uri) else asset_uri)
    if known is not None and asset_alias is None and _always_verifies(task):
        outlets = _as_list(task.outlets)
        listed = any(is_asset(o, known) for o in outlets)
        if listed or _built_at_parse_time(task):
            task.outlets = outlets if listed else [*outlets, Asset(known)]
            return known, None
    dag = task.get_dag()
    alias = asset_alias or default_alias_name(dag.dag_id if dag else None, task.task_id)
    task.outlets = with_alias_outlet(task.outlets, alias)
    return None, alias


def is_asset(outlet: Any, uri: str) -> bool:
    """``outlet`` is ``Asset(uri)``: the same name and normalised URI, so the same asset for Airflow."""
    from airflow.sdk import Asset

    if not isinstance(outlet, Asset):
        return False
    asset = Asset(uri)
    return (outlet.name, outlet.uri) == (asset.name, asset.uri)


def without_asset(outlets: Any, uri: str) -> list[Any]:
    """``outlets`` without ``Asset(uri)``: what a task that succeeded without emitting hands to Airflow, which
    records an event for every plain asset among the outlets of a task that succeeded."""
    return [o for o in _as_list(outlets) if not is_asset(o, uri)]


def _as_list(outlets: Any) -> list[Any]:
    """Outlets as a task accepts them (``None``, one item or a list), as a new list."""
    if outlets is None:
        return []
    if isinstance(outlets, (list, tuple)):
        return list(outlets)
    return [outlets]
