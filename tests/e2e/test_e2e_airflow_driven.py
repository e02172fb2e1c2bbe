"""The Airflow-driven export example end to end: a paused PostHog export, each DAG run backfills its own hour.

Real Airflow (``dag.test(logical_date=...)`` on the DAG's own ``@hourly`` timetable, so the data interval is
Airflow's zero-width one) and real HTTP to the emulator on 127.0.0.1, whose schedule is on: an unpaused export
would get a scheduled run for each hour, a paused one none. Each run must export exactly its own hour, once,
and nothing else; the request log of one DAG run is what docs/airflow-driven-exports.md quotes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

UTC = dt.timezone.utc
EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
DAG_ID = "posthog_airflow_driven_export"
CHECK, EXPORT = "check_export_is_paused", "export_data_interval"
HOUR = dt.timedelta(hours=1)
BATCH_EXPORT = "/api/projects/10001/batch_exports/{id}"


@pytest.fixture
def posthog_emulator_settings() -> Any:
    """Runs take 0.4 s; the emulator's schedule is on, as PostHog's is for every unpaused export."""
    from airflow_provider_posthog.emulator import EmulatorSettings

    return EmulatorSettings(
        run_duration=0.4, backfill_row_delay=0.1, backfill_run_delay=0.05, schedule_runs=True
    )


@pytest.fixture
def example_dags(airflow_dags: Any) -> dict[str, Any]:
    """Freshly parsed: a DAG object that ran before holds rendered fields, not the templates."""
    return airflow_dags.parse(EXAMPLES)


def _export(emu: Any, *, paused: bool) -> str:
    export = emu.control.seed_export(
        name="airflow-driven hourly export",
        destination={"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}},
        interval="hour",
        paused=paused,
    )
    return str(export["id"])


def _tick(emu: Any) -> dt.datetime:
    """The latest top of the hour on PostHog's clock: the DAG run there stands for the hour before it."""
    return emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _requests(emu: Any) -> Counter[str]:
    """The request log as ``{"METHOD /path with ids as {id}": count}``."""
    return Counter(
        f"{e.method} {re.sub(r'/[0-9a-f-]{36}/', '/{id}/', e.path + '/').rstrip('/')}"
        for e in emu.control.request_log
    )


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_each_dag_run_exports_its_own_hour_and_nothing_else(
    example_dags: dict[str, Any], posthog_conn: Any, airflow_dags: Any, deferrable: bool
) -> None:
    emu = posthog_conn
    export_id = _export(emu, paused=True)
    tick = _tick(emu)
    dag = airflow_dags.with_task(example_dags[DAG_ID], EXPORT, deferrable=deferrable)
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"  # Airflow 3's default for "@hourly"
    conf = {"batch_export_id": export_id, "poll_interval": 0.2}
    per_run: list[Counter[str]] = []
    # Two consecutive scheduled runs, older first, as catchup or an Airflow backfill would create them.
    for logical_date in (tick - HOUR, tick):
        emu.control.clear_request_log()
        dr = dag.test(logical_date=logical_date, run_conf=conf)
        assert dr.data_interval_start == dr.data_interval_end == logical_date  # zero-width, Airflow's own
        assert dr.state == "success", airflow_dags.task_states(DAG_ID, dr.run_id)
        assert airflow_dags.task_states(DAG_ID, dr.run_id) == {CHECK: ("success", 1), EXPORT: ("success", 1)}
        per_run.append(_requests(emu))
    backfills = emu.control.backfills_for(export_id)
    assert [(b["start_at"], b["end_at"], b["status"]) for b in backfills] == [
        (tick - 2 * HOUR, tick - HOUR, "Completed"),
        (tick - HOUR, tick, "Completed"),
    ]
    # Each hour exported once, by its own DAG run's backfill; PostHog's schedule added nothing.
    runs = emu.control.runs_for(export_id)
    assert sorted((r["data_interval_start"], r["data_interval_end"], r["backfill"]) for r in runs) == [
        (tick - 2 * HOUR, tick - HOUR, backfills[0]["id"]),
        (tick - HOUR, tick, backfills[1]["id"]),
    ]
    assert {r["status"] for r in runs} == {"Completed"}
    assert emu.control.get_export(export_id)["paused"] is True
    for requests in per_run:
        polls = requests.pop(f"GET {BATCH_EXPORT}/backfills/{{id}}")
        assert 1 <= polls <= 10, polls  # runs take 0.4 s here, polled every 0.2 s to 1 s
        assert requests == {
            # The check task; the operator (the range must be on the export's interval grid); the judgement
            # of the finished backfill, which also names the destination of the asset event.
            f"GET {BATCH_EXPORT}": 3,
            f"GET {BATCH_EXPORT}/backfills": 1,  # what exists before the POST (recognises its own after it)
            f"POST {BATCH_EXPORT}/backfills": 1,
            f"GET {BATCH_EXPORT}/runs": 1,  # every run over the hour: the backfill's, or one it adopted
        }


def test_an_unpaused_export_fails_the_run_before_anything_is_exported(
    example_dags: dict[str, Any], posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emu = posthog_conn
    export_id = _export(emu, paused=False)
    dag = example_dags[DAG_ID]
    dr = dag.test(logical_date=_tick(emu), run_conf={"batch_export_id": export_id, "poll_interval": 0.2})
    assert dr.state == "failed"
    states = airflow_dags.task_states(DAG_ID, dr.run_id)
    assert states[CHECK] == ("failed", 1) and states[EXPORT][0] == "upstream_failed"
    assert f"Batch export {export_id} is not paused" in capfd.readouterr().out
    assert emu.control.count_requests("POST") == 0 and emu.control.backfills_for(export_id) == []
