"""An export named instead of its id, end to end: real Airflow (``dag.test()``), the emulator over HTTP.

A name that matches one export backfills that export, pushes its id as XCom ``batch_export_id`` and in the
links, in the worker and through the triggerer; a name that matches nothing, or two exports, fails the task on
its first try naming the name (and the ids), after the one list request and nothing else.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

UTC = dt.timezone.utc
S3 = {"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}}
LIST = "/batch_exports/"


def _hours_ago(emu: Any, hours: int) -> dt.datetime:
    now = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return now - dt.timedelta(hours=hours)


def _seed(emu: Any, *names: str) -> list[str]:
    return [str(emu.control.seed_export(name=name, destination=S3)["id"]) for name in names]


def _backfill_dag(airflow_dags: Any, emu: Any, dag_id: str, name: str, *, deferrable: bool) -> Any:
    import pendulum
    from airflow.sdk import DAG

    start = pendulum.datetime(2024, 1, 1, tz="UTC")
    with DAG(dag_id, schedule=None, start_date=start, catchup=False, params={"export_name": name}) as dag:
        PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_name="{{ params.export_name }}",
            start_at=_hours_ago(emu, 3).isoformat(),
            end_at=_hours_ago(emu, 1).isoformat(),
            poll_interval=0.2,
            deferrable=deferrable,
            retries=2,
            retry_delay=dt.timedelta(0),
        )
    airflow_dags.register([dag])
    return dag


def _api_calls(emu: Any) -> list[tuple[str, str]]:
    return [(e.method, e.path) for e in emu.control.request_log]


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_a_name_that_matches_one_export_backfills_it_and_pushes_its_id(
    posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str], deferrable: bool
) -> None:
    emu = posthog_conn
    wanted, other = _seed(emu, "events to S3", "events to S3 (staging)")
    dag = _backfill_dag(airflow_dags, emu, f"names_one_{deferrable}", "events to S3", deferrable=deferrable)
    dr = dag.test(run_conf={"export_name": "events to S3"})
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    (backfill,) = emu.control.backfills_for(wanted)
    assert backfill["status"] == "Completed"
    assert emu.control.backfills_for(other) == []
    xcoms = airflow_dags.xcoms(dag.dag_id, dr.run_id)
    assert xcoms[("backfill", "batch_export_id")] == wanted
    assert xcoms[("backfill", "return_value")] == backfill["id"]
    for key in ("batch_export_url", "backfills_url", "runs_url"):
        assert f"/batch-exports/{wanted}" in xcoms[("backfill", key)]
    lists = [c for c in _api_calls(emu) if c[0] == "GET" and c[1].endswith(LIST)]
    assert len(lists) == 1  # one lookup, then only the id: the trigger too
    assert f"Batch export 'events to S3' is {wanted}." in capfd.readouterr().out


def test_a_name_that_matches_nothing_fails_at_once_after_one_request(
    posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emu = posthog_conn
    (existing,) = _seed(emu, "events to S3")
    dag = _backfill_dag(airflow_dags, emu, "names_none", "events to s3", deferrable=False)
    emu.control.clear_request_log()
    dr = dag.test(run_conf={"export_name": "events to s3"})
    assert dr.state == "failed"
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)["backfill"] == ("failed", 1)  # despite retries=2
    out = capfd.readouterr().out
    assert "batch_export_name='events to s3' matches no batch export" in out
    assert f"Not the same name: 'events to S3' ({existing})" in out
    assert [c[0] for c in _api_calls(emu)] == ["GET"] and _api_calls(emu)[0][1].endswith(LIST)
    assert emu.control.backfills_for(existing) == []


def test_a_name_two_exports_share_fails_naming_both_ids_after_one_request(
    posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emu = posthog_conn
    first, second = _seed(emu, "events to S3", "events to S3")
    dag = _backfill_dag(airflow_dags, emu, "names_two", "events to S3", deferrable=False)
    emu.control.clear_request_log()
    dr = dag.test(run_conf={"export_name": "events to S3"})
    assert dr.state == "failed"
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)["backfill"] == ("failed", 1)
    out = capfd.readouterr().out
    line = next(x for x in out.splitlines() if "matches 2 batch exports" in x)
    assert "batch_export_name='events to S3'" in line and first in line and second in line
    assert [c[0] for c in _api_calls(emu)] == ["GET"] and _api_calls(emu)[0][1].endswith(LIST)
    assert emu.control.backfills_for(first) == emu.control.backfills_for(second) == []


def test_a_deferred_sensor_waits_on_the_export_it_found_by_name(posthog_conn: Any, airflow_dags: Any) -> None:
    emu = posthog_conn
    (export_id,) = _seed(emu, "events to S3")
    backfill = emu.control.seed_backfill(
        export_id, _hours_ago(emu, 3), _hours_ago(emu, 1), status="Running", simulate=True
    )
    with airflow_dags.new("names_sensor") as dag:
        PostHogBackfillSensor(
            task_id="wait",
            batch_export_name="events to S3",
            backfill_id=backfill["id"],
            poke_interval=0.2,
            timeout=60,
            deferrable=True,
        )
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    assert airflow_dags.xcoms(dag.dag_id, dr.run_id)[("wait", "batch_export_id")] == export_id
    lists = [c for c in _api_calls(emu) if c[0] == "GET" and c[1].endswith(LIST)]
    assert len(lists) == 1
