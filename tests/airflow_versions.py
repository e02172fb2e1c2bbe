"""Names that moved between the Airflow minors the suite runs on (3.1, 3.2, 3.3), for tests only.

The provider's own version differences live in ``airflow_provider_posthog.compat``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_posthog import compat


def sync_bag_to_db(*args: Any, **kwargs: Any) -> Any:
    """``sync_bag_to_db``: ``airflow.dag_processing.dagbag`` (3.2+) or ``airflow.models.dagbag`` (3.1)."""
    try:
        from airflow.dag_processing.dagbag import sync_bag_to_db as sync
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import sync_bag_to_db as sync  # type: ignore[no-redef,unused-ignore]
    return sync(*args, **kwargs)


def dag_serialization() -> Any:
    """The DAG serializer: ``DagSerialization`` (3.2+) or ``SerializedDAG`` (3.1); same class methods."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization
    return DagSerialization


def param_validation_error() -> type[Exception]:
    """``ParamValidationError``: ``airflow.sdk.exceptions`` (3.2+) or ``airflow.exceptions`` (3.1)."""
    try:
        from airflow.sdk.exceptions import ParamValidationError
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import ParamValidationError  # type: ignore[no-redef,attr-defined,unused-ignore]
    return ParamValidationError  # type: ignore[no-any-return,unused-ignore]


def merged_params(params: Any, conf: dict[str, Any]) -> Any:
    """The DAG's params with a run's conf applied, as a trigger does: ``deep_merge`` (3.2+), else a copy
    updated with the conf (3.1)."""
    if hasattr(params, "deep_merge"):
        return params.deep_merge(conf)
    import copy

    merged = copy.deepcopy(params)
    merged.update(conf)
    return merged


#: Airflow 3.3 gives tasks ``context["task_state_store"]``, which carries a rescheduled sensor's outage from
#: poke to poke; on 3.1/3.2 each poke counts afresh.
TASK_STATE_STORE: bool = compat.AIRFLOW_VERSION >= (3, 3)
