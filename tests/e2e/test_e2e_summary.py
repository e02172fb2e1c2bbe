"""Completeness, the summary XCom and the notifier end to end: real Airflow (``dag.test()``), real HTTP to the
emulator on 127.0.0.1, where a run can be told to lose records (``records_completed < records_total_count``).

Each test stays under the emulator's auto-pause threshold (at most one failed run per export)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from airflow_provider_posthog.tasks.summary import SUMMARY_KEYS

UTC = dt.timezone.utc


def _window(emu: Any, hours: int = 2) -> tuple[dt.datetime, dt.datetime]:
    end = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - dt.timedelta(hours=hours), end


def _export(emu: Any) -> str:
    return str(emu.control.seed_export(name="summary e2e", interval="hour")["id"])


def _backfill_dag(airflow_dags: Any, dag_id: str, export_id: str, start: Any, end: Any, **kwargs: Any) -> Any:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    with airflow_dags.new(dag_id) as dag:
        PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_id=export_id,
            start_at=start.isoformat(),
            end_at=end.isoformat(),
            poll_interval=0.2,
            retries=0,
            **kwargs,
        )
    airflow_dags.register([dag])
    return dag


# -- the emulator --------------------------------------------------------------------------------------------


def test_the_emulator_loses_records_when_told_over_http(posthog_emulator: Any) -> None:
    emu = posthog_emulator
    export_id = _export(emu)
    admin = f"{emu.base_url}/_emulator/lose_records"
    assert httpx.post(admin, json={"batch_export_id": export_id, "count": 30}).status_code == 200
    bad = httpx.post(admin, json={"batch_export_id": export_id, "count": 1, "fraction": 0.5})
    assert bad.status_code >= 400  # exactly one of count and fraction
    start, end = _window(emu, hours=2)
    emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
    emu.control.advance(30)
    runs = sorted(emu.control.runs_for(export_id), key=lambda r: r["data_interval_start"])
    per_run = emu.control.settings.records_per_run
    assert [(r["status"], r["records_completed"], r["records_total_count"]) for r in runs] == [
        ("Completed", per_run - 30, per_run),  # the first run to complete lost 30
        ("Completed", per_run, per_run),  # the queue held one loss
    ]
    assert runs[0]["bytes_exported"] == (per_run - 30) * 512


@pytest.mark.parametrize("generation", ["docs", "new"])
def test_the_count_appears_as_posthog_fills_it(posthog_emulator: Any, generation: str) -> None:
    """Older PostHog counts when it creates the run; current PostHog fills the count afterwards."""
    emu = posthog_emulator
    emu.control.configure(api_generation=generation, run_duration=30)
    export_id = _export(emu)
    start, end = _window(emu, hours=1)
    emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
    emu.control.advance(5)
    (running,) = emu.control.runs_for(export_id)
    assert running["status"] in ("Starting", "Running")
    assert running["records_total_count"] == (100 if generation == "docs" else None)
    emu.control.advance(60)
    (done,) = emu.control.runs_for(export_id)
    assert (done["records_completed"], done["records_total_count"]) == (100, 100)


# -- completeness --------------------------------------------------------------------------------------------


def test_warn_succeeds_with_one_warning_naming_the_run_and_counts(
    posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    emu.control.lose_records(export_id, count=25)
    start, end = _window(emu, hours=2)
    dag = _backfill_dag(airflow_dags, "summary_e2e_warn", export_id, start, end)
    dr = dag.test()
    assert dr.state == "success"
    lossy = next(r for r in emu.control.runs_for(export_id) if r["records_completed"] == 75)
    out = capfd.readouterr().out
    warning = [ln for ln in out.splitlines() if "exported fewer records than PostHog counted" in ln]
    assert len(warning) == 1
    assert f"run {lossy['id']}" in warning[0] and "75 of 100 record(s)" in warning[0]
    summary = airflow_dags.xcoms(dag.dag_id, dr.run_id)[("backfill", "summary")]
    assert summary["complete"] is False
    assert (summary["records_exported"], summary["records_expected"]) == (175, 200)
    assert [r["id"] for r in summary["incomplete_runs"]] == [lossy["id"]]


def test_fail_fails_the_task_naming_the_run_and_still_pushes_the_summary(
    posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    emu.control.lose_records(export_id, fraction=0.5)
    start, end = _window(emu, hours=1)
    dag = _backfill_dag(airflow_dags, "summary_e2e_fail", export_id, start, end, completeness="fail")
    dr = dag.test()
    assert dr.state == "failed"
    (run,) = emu.control.runs_for(export_id)
    out = capfd.readouterr().out
    assert "PostHogIncompleteExportError" in out
    assert f"run {run['id']}" in out and "50 of 100 record(s)" in out
    states = airflow_dags.task_states(dag.dag_id, dr.run_id)
    assert states["backfill"] == ("failed", 1)  # not retried
    summary = airflow_dags.xcoms(dag.dag_id, dr.run_id)[("backfill", "summary")]
    assert summary["status"] == "success" and summary["complete"] is False


def test_a_bad_completeness_fails_before_any_request(posthog_conn: Any, airflow_dags: Any) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    start, end = _window(emu, hours=1)
    emu.control.clear_request_log()
    dag = _backfill_dag(airflow_dags, "summary_e2e_bad_mode", export_id, start, end, completeness="strict")
    assert dag.test().state == "failed"
    assert emu.control.request_log == []


# -- the same summary keys on every path --------------------------------------------------------------------


def test_the_summary_has_the_same_keys_on_the_sync_deferred_and_sensor_paths(
    posthog_conn: Any, airflow_dags: Any
) -> None:
    from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

    emu = posthog_conn
    export_id = _export(emu)
    start, end = _window(emu, hours=2)
    summaries: dict[str, dict[str, Any]] = {}
    for deferrable in (False, True):
        name = "deferred" if deferrable else "sync"
        dag = _backfill_dag(
            airflow_dags,
            f"summary_e2e_op_{name}",
            export_id,
            start,
            end,
            deferrable=deferrable,
            reattach="never",
        )
        dr = dag.test()
        assert dr.state == "success", name
        summaries[name] = airflow_dags.xcoms(dag.dag_id, dr.run_id)[("backfill", "summary")]
    for mode, deferrable in (("poke", False), ("reschedule", False), ("poke", True)):
        name = "sensor-deferred" if deferrable else f"sensor-{mode}"
        with airflow_dags.new(f"summary_e2e_{name.replace('-', '_')}") as dag:
            PostHogBatchExportRunSensor(
                task_id="wait",
                batch_export_id=export_id,
                data_interval_start=start.isoformat(),
                data_interval_end=end.isoformat(),
                poke_interval=0.2,
                mode=mode,
                deferrable=deferrable,
            )
        airflow_dags.register([dag])
        dr = dag.test()
        assert dr.state == "success", name
        summaries[name] = airflow_dags.xcoms(dag.dag_id, dr.run_id)[("wait", "summary")]
    for name, summary in summaries.items():
        assert tuple(summary) == SUMMARY_KEYS, name
        assert summary["status"] == "success" and summary["batch_export_id"] == export_id, name
        assert summary["runs_by_status"] == {"Completed": 2}, name
        assert summary["records_expected"] == summary["records_exported"] == 200, name
        assert summary["complete"] is True, name
        assert summary["duration_seconds"] is not None and summary["duration_seconds"] >= 0, name
    assert summaries["sync"]["backfill_id"] and summaries["deferred"]["backfill_id"]
    assert summaries["sync"]["url"].endswith("?tab=backfills")
    assert summaries["sensor-poke"]["url"].endswith("?tab=runs")
    # The sensors judged the newest run of each hour: the deferred backfill's.
    assert summaries["sensor-poke"]["run_ids"] == summaries["deferred"]["run_ids"]
    assert summaries["sensor-deferred"] == {
        **summaries["sensor-poke"],
        **{k: summaries["sensor-deferred"][k] for k in ("started_at", "finished_at", "duration_seconds")},
    }


# -- the example DAG: a notifier on success and on failure --------------------------------------------------


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_the_notify_example_reports_on_success_and_on_failure(
    example_dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    capfd: pytest.CaptureFixture[str],
    outcome: str,
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    if outcome == "failure":
        emu.control.fail_next_run(export_id, error="warehouse full (emulated)")
    dag = example_dags["posthog_notify_on_export"]
    dr = dag.test(run_conf={"batch_export_id": export_id, "hours": 1, "poll_interval": 0.2})
    out = capfd.readouterr().out
    (backfill,) = emu.control.backfills_for(export_id)
    if outcome == "success":
        assert dr.state == "success"
        assert f"PostHog backfill: backfill {backfill['id']} of batch export {export_id} completed." in out
        assert "Records exported: 100 of 100 counted by PostHog" in out
    else:
        assert dr.state == "failed"
        assert (
            f"PostHog backfill FAILED: backfill {backfill['id']} of batch export {export_id} failed." in out
        )
        assert "warehouse full (emulated)" in out
