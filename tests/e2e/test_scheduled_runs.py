"""The example DAGs on their own schedules, as Airflow 3 runs them by default.

``schedule="@daily"`` builds a ``CronTriggerTimetable``, so every run has a zero-width data interval. Each
test runs ``dag.test(logical_date=...)``: the data interval is Airflow's own (asserted), never built by hand,
and the operators must derive the day it stands for. Real HTTP to the emulator; attempts, retries and DAG
runs are Airflow's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

UTC = dt.timezone.utc
EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
BACKFILL_TASK = "backfill_posthog_export"


def _midnight(emu: Any, days_ago: int = 0) -> dt.datetime:
    today = emu.control.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=days_ago)


def _export(emu: Any, interval: str = "day") -> str:
    export = emu.control.seed_export(
        name=f"scheduled {interval} export",
        destination={"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}},
        interval=interval,
    )
    return str(export["id"])


@pytest.fixture
def example_dags(airflow_dags: Any) -> dict[str, Any]:
    """Freshly parsed example DAGs: running a task renders its template fields in place, so a DAG object that
    ran before (the session's, in other test files) no longer holds the templates these tests are about."""
    return airflow_dags.parse(EXAMPLES)


def _backfill_dag(example_dags: dict[str, Any], airflow_dags: Any, **attrs: Any) -> Any:
    return airflow_dags.with_task(example_dags["posthog_backfill_and_wait"], BACKFILL_TASK, **attrs)


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_backfill_example_on_a_scheduled_tick_backfills_the_previous_day(
    example_dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    capfd: pytest.CaptureFixture[str],
    deferrable: bool,
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    tick = _midnight(emu)
    dag = _backfill_dag(example_dags, airflow_dags, deferrable=deferrable)
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"  # Airflow 3's default for "@daily"
    dr = dag.test(logical_date=tick, run_conf={"batch_export_id": export_id, "poll_interval": 0.2})
    assert dr.data_interval_start == dr.data_interval_end == tick  # what broke 0.1.0
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    (backfill,) = emu.control.backfills_for(export_id)
    assert backfill["status"] == "Completed"
    assert (backfill["start_at"], backfill["end_at"]) == (tick - dt.timedelta(days=1), tick)
    runs = [r for r in emu.control.runs_for(export_id) if r.get("backfill") == backfill["id"]]
    assert [r["status"] for r in runs] == ["Completed"]
    assert emu.control.count_requests("POST", "/backfills") == 1
    assert airflow_dags.task_states(dag.dag_id, dr.run_id) == {
        BACKFILL_TASK: ("success", 1),
        "run_downstream_models": ("success", 1),
    }
    assert "(a zero-width data interval); using the last complete period" in capfd.readouterr().out


def test_two_dag_runs_of_the_same_day_export_it_twice(
    example_dags: dict[str, Any], posthog_conn: Any, airflow_dags: Any
) -> None:
    """A scheduled run, then a manual run later the same day: both stand for yesterday; each exports it."""
    emu = posthog_conn
    export_id = _export(emu)
    tick = _midnight(emu)
    dag = _backfill_dag(example_dags, airflow_dags, deferrable=False)
    conf = {"batch_export_id": export_id, "poll_interval": 0.2}
    first = dag.test(logical_date=tick, run_conf=conf)
    second = dag.test(logical_date=tick + dt.timedelta(minutes=1), run_conf=conf)
    assert first.state == second.state == "success"
    backfills = emu.control.backfills_for(export_id)
    assert len(backfills) == 2 and {b["status"] for b in backfills} == {"Completed"}
    assert len({(b["start_at"], b["end_at"]) for b in backfills}) == 1
    assert emu.control.count_requests("POST", "/backfills") == 2


def test_a_retry_reattaches_instead_of_exporting_twice(
    example_dags: dict[str, Any], posthog_conn: Any, airflow_dags: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Try 1 gives up waiting (timeout, backfill left running); Airflow retries; try 2 re-attaches to it."""
    emu = posthog_conn
    emu.control.configure(run_duration=1.5)
    export_id = _export(emu)
    tick = _midnight(emu)
    dag = _backfill_dag(
        example_dags,
        airflow_dags,
        deferrable=False,
        retries=1,
        retry_delay=dt.timedelta(0),
        timeout=0.3,
        cancel_on_kill=False,
    )
    real_execute = type(dag.get_task(BACKFILL_TASK)).execute
    tries: list[int] = []

    def execute(self: Any, context: Any) -> Any:
        tries.append(context["ti"].try_number)
        if context["ti"].try_number > 1:
            self.timeout = None  # the retry waits to the end
        return real_execute(self, context)

    monkeypatch.setattr(type(dag.get_task(BACKFILL_TASK)), "execute", execute)
    dr = dag.test(logical_date=tick, run_conf={"batch_export_id": export_id, "poll_interval": 0.2})
    assert tries == [1, 2]
    assert dr.state == "success"
    (backfill,) = emu.control.backfills_for(export_id)
    assert backfill["status"] == "Completed"
    assert emu.control.count_requests("POST", "/backfills") == 1
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)[BACKFILL_TASK] == ("success", 2)


def test_a_bad_argument_fails_after_exactly_one_try_despite_retries(
    example_dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    dag = _backfill_dag(
        example_dags, airflow_dags, deferrable=False, retries=2, retry_delay=dt.timedelta(0), reattach="bogus"
    )
    dr = dag.test(logical_date=_midnight(emu), run_conf={"batch_export_id": export_id, "poll_interval": 0.2})
    assert dr.state == "failed"
    state, try_number = airflow_dags.task_states(dag.dag_id, dr.run_id)[BACKFILL_TASK]
    assert (state, try_number) == ("failed", 1)
    assert "reattach='bogus' is not one of ['retry', 'always', 'never']" in capfd.readouterr().out
    assert emu.control.count_requests() == 0  # nothing reached PostHog


def test_an_identical_backfill_already_running_fails_at_once_naming_it(
    example_dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu = posthog_conn
    emu.control.configure(run_duration=30.0)
    export_id = _export(emu)
    tick = _midnight(emu)
    running = emu.control.seed_backfill(
        export_id, tick - dt.timedelta(days=1), tick, status="Running", simulate=True
    )
    dag = _backfill_dag(example_dags, airflow_dags, deferrable=False, retries=2, retry_delay=dt.timedelta(0))
    dr = dag.test(logical_date=tick, run_conf={"batch_export_id": export_id, "poll_interval": 0.2})
    assert dr.state == "failed"
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)[BACKFILL_TASK] == ("failed", 1)
    out = capfd.readouterr().out
    assert f"Backfill {running['id']}" in out and "reattach='always'" in out
    assert emu.control.count_requests("POST", "/backfills") == 0
    assert [b["id"] for b in emu.control.backfills_for(export_id)] == [running["id"]]


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_wait_example_on_a_scheduled_tick_waits_for_the_previous_days_runs(
    example_dags: dict[str, Any], posthog_conn: Any, airflow_dags: Any, deferrable: bool
) -> None:
    import threading
    import time

    emu = posthog_conn
    emu.control.configure(run_duration=600.0)
    export_id = _export(emu, interval="hour")
    tick = _midnight(emu)
    day = tick - dt.timedelta(days=1)
    for hour in range(23):
        start = day + dt.timedelta(hours=hour)
        emu.control.seed_run(export_id, start, start + dt.timedelta(hours=1), status="Completed")
    # The last hour is still exporting when the DAG run starts; it completes once the sensor has looked.
    last = emu.control.seed_run(export_id, tick - dt.timedelta(hours=1), tick, status="Running")

    def complete_after_first_check() -> None:
        deadline = time.monotonic() + 60
        while emu.control.count_requests("GET", "/runs") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        emu.control.set_run_status(last["id"], "Completed")

    threading.Thread(target=complete_after_first_check, daemon=True).start()
    # A run of the day before must not count.
    emu.control.seed_run(export_id, day - dt.timedelta(hours=1), day, status="Failed")
    dag = airflow_dags.with_task(
        example_dags["posthog_wait_for_scheduled_export"],
        "wait_for_posthog_export",
        deferrable=deferrable,
        poke_interval=0.2,
        mode="poke",
    )
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    dr = dag.test(logical_date=tick, run_conf={"batch_export_id": export_id})
    assert dr.data_interval_start == dr.data_interval_end == tick
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    assert emu.control.count_requests("GET", "/runs") >= 2  # it waited for the last hour
    assert airflow_dags.task_states(dag.dag_id, dr.run_id) == {
        "wait_for_posthog_export": ("success", 1),
        "load_exported_data": ("success", 1),
    }


def _readme_dag(export_id: str) -> Any:
    """The DAG of README's "Use it in a DAG" snippet, pointed at ``export_id`` and polling fast."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it in a DAG", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    code = code.replace('"0190b7c2-..."', repr(export_id))
    code = code.replace("poll_interval=60", "poll_interval=0.2").replace(
        "poke_interval=60", "poke_interval=0.2"
    )
    code, bound = re.subn(r"^with (DAG\(.*\)):$", r"with \1 as readme_dag:", code, flags=re.M)
    assert bound == 1, "README's example should define one DAG in a `with DAG(...):` line"
    namespace: dict[str, Any] = {"__name__": "readme_snippet"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["readme_dag"]


def test_readme_example_succeeds_on_a_scheduled_tick(posthog_conn: Any, airflow_dags: Any) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    dag = _readme_dag(export_id)
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    # In the README the sensor waits for PostHog's own scheduled runs; here the backfill's runs stand in for
    # them, so the sensor must run after it (dag.test() runs independent tasks in no fixed order, and a sensor
    # that ran first would wait for runs that never come).
    dag.get_task("backfill") >> dag.get_task("wait_for_export")
    # dag.test() needs the DAG serialized in a bundle; the snippet is not a file of one, so register it.
    airflow_dags.register([dag])
    tick = _midnight(emu)
    dr = dag.test(logical_date=tick)
    assert dr.data_interval_start == dr.data_interval_end == tick
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    (backfill,) = emu.control.backfills_for(export_id)
    assert (backfill["start_at"], backfill["end_at"], backfill["status"]) == (
        tick - dt.timedelta(days=1),
        tick,
        "Completed",
    )
    runs = emu.control.runs_for(export_id)
    assert len(runs) == 1 and {r["status"] for r in runs} == {"Completed"}
    assert emu.control.count_requests("POST", "/backfills") == 1
