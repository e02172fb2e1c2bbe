"""Real ``dag.test()`` runs: what a user reads in the task log.

- A templated id that rendered empty, or could not be rendered, fails the task before any API call, quoting
  the template and naming the param or Variable it reads (the example DAG, then one task per kind of
  reference: Airflow 3.3's real rendering, params and Variables).
- A backfill wait links its backfills tab and logs each progress state once (the emulator over real HTTP).
"""

from __future__ import annotations

import collections
import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
START = pendulum.datetime(2024, 1, 1, tz="UTC")
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def airflow_db() -> Iterator[None]:
    """Create or upgrade the tables without dropping anything another test area stored."""
    from airflow.utils import db

    db.initdb()
    yield


@pytest.fixture(scope="module")
def example_dags(airflow_db: None) -> dict[str, Any]:
    from airflow_provider_posthog.compat import dagbag_class

    bag = dagbag_class()(dag_folder=str(EXAMPLES))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


@pytest.fixture
def posthog_emulator_settings() -> Any:
    from airflow_provider_posthog.emulator import EmulatorSettings

    # Runs take a second, polls come every 0.1 s: many polls see the same progress.
    return EmulatorSettings(run_duration=1.0, backfill_row_delay=0.1, backfill_run_delay=0.05)


def _states(dag_id: str, run_id: str) -> dict[str, str | None]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        return {ti.task_id: ti.state for ti in tis}


def test_the_example_dag_names_its_empty_param_and_variable(
    example_dags: dict[str, Any], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_POSTHOG_BATCH_EXPORT_ID", "")
    monkeypatch.delenv("AIRFLOW_CONN_POSTHOG_DEFAULT", raising=False)  # any API call would fail differently
    dag = example_dags["posthog_backfill_and_wait"]
    dr = dag.test()
    assert dr.state == "failed"
    # A config error is not retried (the task has retries=1).
    assert _states(dag.dag_id, dr.run_id)["backfill_posthog_export"] == "failed"
    out = capfd.readouterr().out
    assert "PostHogConfigError" in out
    assert (
        "batch_export_id rendered empty from the template "
        "\"{{ params.batch_export_id or var.value.get('posthog_batch_export_id', '') }}\": "
        "param 'batch_export_id' is None; pass it in the DAG run's conf (the Trigger form) or give the param "
        "a default; and Airflow Variable 'posthog_batch_export_id' is empty; set it (Admin > Variables, or "
        "the environment variable AIRFLOW_VAR_POSTHOG_BATCH_EXPORT_ID)."
    ) in out
    assert "posthog_default" not in out  # failed before the connection was looked up


def _templates_dag() -> Any:
    """One task per kind of reference, registered in the bundle like a parsed DAG file."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.sdk import DAG, Param

    from airflow_provider_posthog.compat import dagbag_class
    from airflow_provider_posthog.operators.backfill import PostHogCancelRunOperator
    from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

    try:
        from tests.airflow_versions import sync_bag_to_db
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import sync_bag_to_db  # type: ignore[no-redef,unused-ignore]

    params = {"p_none": Param(None, type=["null", "string"]), "p_empty": Param("", type="string")}
    with DAG("posthog_template_errors", schedule=None, start_date=START, params=params) as dag:
        for task_id, template in {
            "var_empty": "{{ var.value.ph_logs_empty }}",
            "var_missing": "{{ var.value.ph_logs_missing }}",
            "var_get_missing": "{{ var.value.get('ph_logs_missing', '') }}",
            "param_none": "{{ params.p_none }}",
            "param_empty": "{{ params.p_empty }}",
            "param_undeclared": "{{ params.p_undeclared }}",
        }.items():
            PostHogCancelRunOperator(task_id=task_id, batch_export_id=template, run_id="run-1", retries=2)
        PostHogBackfillSensor(
            task_id="sensor_param_none",
            batch_export_id="0190-export",
            backfill_id="{{ params.p_none }}",
            poke_interval=0.1,
            timeout=5,
        )
    DagBundlesManager().sync_bundles_to_db()
    bag = dagbag_class()(dag_folder=str(EXAMPLES / "__none__"))
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag


def test_each_kind_of_reference_is_explained(
    airflow_db: None, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_PH_LOGS_EMPTY", "")
    monkeypatch.delenv("AIRFLOW_VAR_PH_LOGS_MISSING", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_POSTHOG_DEFAULT", raising=False)
    dag = _templates_dag()
    dr = dag.test(logical_date=START)
    assert dr.state == "failed"
    states = _states(dag.dag_id, dr.run_id)
    assert set(states.values()) == {"failed"} and len(states) == 7  # none retried
    out = capfd.readouterr().out
    set_it = "set it (Admin > Variables, or the environment variable AIRFLOW_VAR_{})"
    expected = [
        "batch_export_id rendered empty from the template '{{ var.value.ph_logs_empty }}': Airflow Variable "
        f"'ph_logs_empty' is empty; {set_it.format('PH_LOGS_EMPTY')}.",
        # Airflow raises while rendering a missing Variable read by name: the task says which and how to fix.
        "batch_export_id: the template '{{ var.value.ph_logs_missing }}' could not be rendered: Airflow "
        f"Variable 'ph_logs_missing' does not exist; {set_it.format('PH_LOGS_MISSING')}.",
        "batch_export_id rendered empty from the template \"{{ var.value.get('ph_logs_missing', '') }}\": "
        f"Airflow Variable 'ph_logs_missing' does not exist; {set_it.format('PH_LOGS_MISSING')}.",
        # A None param renders the string 'None', which is never taken for an id.
        "batch_export_id rendered 'None' from the template '{{ params.p_none }}': param 'p_none' is None; "
        "pass it in the DAG run's conf (the Trigger form) or give the param a default.",
        "batch_export_id rendered empty from the template '{{ params.p_empty }}': param 'p_empty' is empty; "
        "pass it in the DAG run's conf (the Trigger form) or give the param a default.",
        "batch_export_id: the template '{{ params.p_undeclared }}' could not be rendered: this DAG run has "
        "no param 'p_undeclared'; declare it in the DAG's params with a default, or pass it in the DAG "
        "run's conf.",
        "backfill_id rendered 'None' from the template '{{ params.p_none }}': param 'p_none' is None; pass "
        "it in the DAG run's conf (the Trigger form) or give the param a default.",
    ]
    missing = [message for message in expected if message not in out]
    assert not missing, missing
    assert "batch_export_id is required" not in out and "backfill_id is required" not in out


def test_a_backfill_wait_links_its_tab_and_logs_each_state_once(
    example_dags: dict[str, Any],
    posthog_conn: Any,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = posthog_conn
    export_id = str(
        emu.control.seed_export(
            name="logs export",
            destination={"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}},
            interval="hour",
        )["id"]
    )
    end = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    dag = example_dags["posthog_backfill_and_wait"]
    monkeypatch.setattr(dag.get_task("backfill_posthog_export"), "deferrable", False)
    conf = {
        "batch_export_id": export_id,
        "start_at": (end - dt.timedelta(hours=3)).isoformat(),
        "end_at": end.isoformat(),
        "poll_interval": 0.1,
    }
    dr = dag.test(run_conf=conf)
    assert dr.state == "success"
    (backfill,) = emu.control.backfills_for(export_id)
    out = capfd.readouterr().out
    link = re.findall(
        rf"Waiting for backfill {backfill['id']} of batch export {export_id}; follow it in "
        r"PostHog: (\S+)",
        out,
    )
    assert link == [
        f"{emu.base_url}/project/{emu.project_id}/pipeline/batch-exports/{export_id}?tab=backfills"
    ]
    progress = collections.Counter(re.findall(r"Backfill \S+ is \w+ \(\d+/\d+ runs finished\)\.", out))
    polls = emu.control.count_requests("GET", f"/backfills/{backfill['id']}")
    assert progress and set(progress.values()) == {1}, progress
    assert polls > len(progress) + 1  # the same state was polled more than once, and logged once
