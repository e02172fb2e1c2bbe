"""The example DAGs' trigger forms explain themselves and validate dates; the files parse offline.

The DAG files are parsed as Airflow's DAG processor does, with no PostHog connection defined and every network
call refused; each ``Param`` is then checked through Airflow's own ``Param.resolve``.
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
DAG_IDS = {
    "posthog_airflow_driven_export",
    "posthog_backfill_and_wait",
    "posthog_manage_exports",
    "posthog_models_on_export",
    "posthog_notify_on_export",
    "posthog_wait_for_scheduled_export",
}
DATE_PARAMS = {
    ("posthog_backfill_and_wait", "start_at"),
    ("posthog_backfill_and_wait", "end_at"),
    ("posthog_wait_for_scheduled_export", "data_interval_start"),
    ("posthog_wait_for_scheduled_export", "data_interval_end"),
}
GOOD_DATES = ["2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00Z", "2024-03-31T01:30:00.250000+02:00"]
BAD_DATES = [
    "2024-13-01T00:00:00Z",  # month 13
    "2024-01-01T25:00:00Z",  # hour 25
    "2024-01-01 00:00",  # no seconds, no time zone
    "2024-01-01T00:00:00",  # no time zone: ambiguous
    "yesterday",
    "{{ data_interval_start }}",
]


class NetworkUsed(AssertionError):
    pass


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise NetworkUsed(f"network call while parsing the example DAGs: {args!r}")


@pytest.fixture(scope="module")
def dags() -> Iterator[dict[str, Any]]:
    """The example DAGs parsed with no ``posthog_default`` connection and no network."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AIRFLOW_CONN_POSTHOG_DEFAULT", raising=False)
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket.socket, "connect_ex", _refuse)
        mp.setattr(socket, "getaddrinfo", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:  # Airflow 3.1
            from airflow.models.dagbag import DagBag  # type: ignore[no-redef,unused-ignore]

        bag = DagBag(dag_folder=str(EXAMPLES))
        assert not bag.import_errors, bag.import_errors
        yield bag.dags


def _params() -> list[tuple[str, str]]:
    """(dag_id, param name) of every example DAG's params, read without the fixture (for parametrize)."""
    import ast

    found = []
    for path in sorted(EXAMPLES.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DAG"):
                continue
            kwargs = {k.arg: k.value for k in node.keywords}
            dag_id = ast.literal_eval(kwargs["dag_id"])
            params = kwargs.get("params")
            assert isinstance(params, ast.Dict), f"{dag_id}: params must be a literal dict of Params"
            found += [(dag_id, ast.literal_eval(k)) for k in params.keys if k is not None]
    return found


ALL_PARAMS = _params()


def test_every_example_dag_parses_offline_and_has_params(dags: dict[str, Any]) -> None:
    assert set(dags) == DAG_IDS
    assert {dag_id for dag_id, _ in ALL_PARAMS} == DAG_IDS
    for dag_id, name in ALL_PARAMS:
        assert name in dags[dag_id].params, (dag_id, name)


@pytest.mark.parametrize(("dag_id", "name"), ALL_PARAMS, ids=[f"{d}.{n}" for d, n in ALL_PARAMS])
def test_every_param_has_a_description_and_a_type(dags: dict[str, Any], dag_id: str, name: str) -> None:
    from airflow.sdk import Param

    param = dags[dag_id].params.get_param(name)
    assert isinstance(param, Param)
    assert isinstance(param.description, str) and len(param.description.strip()) >= 20, param.description
    assert param.schema.get("type"), f"{dag_id}.{name} has no JSON-schema type"
    assert param.schema.get("title"), f"{dag_id}.{name} has no title for the trigger form"
    assert copy.copy(param).resolve() == param.value  # the default itself is valid


def test_the_date_params_are_exactly_the_date_time_ones(dags: dict[str, Any]) -> None:
    dated = {
        (dag_id, name)
        for dag_id, name in ALL_PARAMS
        if dags[dag_id].params.get_param(name).schema.get("format") == "date-time"
    }
    assert dated == DATE_PARAMS


@pytest.mark.parametrize(("dag_id", "name"), sorted(DATE_PARAMS), ids=[n for _, n in sorted(DATE_PARAMS)])
def test_date_params_reject_malformed_dates_and_accept_good_ones(
    dags: dict[str, Any], dag_id: str, name: str
) -> None:
    from tests.airflow_versions import param_validation_error

    ParamValidationError = param_validation_error()

    param = dags[dag_id].params.get_param(name)
    for good in GOOD_DATES:
        assert copy.copy(param).resolve(good) == good
    assert copy.copy(param).resolve(None) is None  # empty: the DAG run's data interval is used
    for bad in BAD_DATES:
        with pytest.raises(ParamValidationError, match="date-time"):
            copy.copy(param).resolve(bad)


def test_a_bad_trigger_conf_is_rejected_before_any_task_runs(dags: dict[str, Any]) -> None:
    """As Airflow does on a trigger: the serialized DAG's params, merged with the run's conf, validate."""
    from tests.airflow_versions import dag_serialization, merged_params, param_validation_error

    DagSerialization = dag_serialization()

    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dags["posthog_backfill_and_wait"]))
    good = {"start_at": "2024-01-01T00:00:00+00:00", "end_at": "2024-01-02T00:00:00Z", "poll_interval": 0.2}
    assert merged_params(dag.params, good).validate()["poll_interval"] == 0.2
    assert merged_params(dag.params, {}).validate()["start_at"] is None  # empty: the run's data interval
    for bad in ({"end_at": "2024-01-32T00:00:00+00:00"}, {"start_at": "2024-01-01"}, {"poll_interval": 0}):
        with pytest.raises((ValueError, param_validation_error()), match="Invalid input for param"):
            merged_params(dag.params, {**good, **bad}).validate()


def test_manage_exports_params_offer_only_posthog_intervals(dags: dict[str, Any]) -> None:
    from tests.airflow_versions import param_validation_error

    ParamValidationError = param_validation_error()

    params = dags["posthog_manage_exports"].params
    interval = params.get_param("interval")
    assert interval.schema["enum"] == ["hour", "day", "week", "every 5 minutes", "every 15 minutes"]
    with pytest.raises(ParamValidationError):
        copy.copy(interval).resolve("minute")
    with pytest.raises(ParamValidationError):
        copy.copy(params.get_param("export_name")).resolve("")
    with pytest.raises(ParamValidationError):
        copy.copy(params.get_param("backfill_gap")).resolve("yes")
