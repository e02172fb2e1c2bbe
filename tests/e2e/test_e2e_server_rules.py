"""PostHog's server rules end to end: real Airflow (``dag.test()``) against the emulator over real HTTP.

A backfill that reaches an interval whose scheduled run is still running adopts that run and tags no run
with itself; an export whose runs keep failing is paused by PostHog, which cancels its backfills; an export
created paused has no ``last_paused_at`` to backfill from.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

UTC = dt.timezone.utc


def _hour(emu: Any, hours_ago: int) -> dt.datetime:
    now = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return now - dt.timedelta(hours=hours_ago)


def _backfill_dag(
    airflow_dags: Any, dag_id: str, export_id: str, start: dt.datetime, end: dt.datetime
) -> Any:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    with airflow_dags.new(dag_id) as dag:
        PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_id=export_id,
            start_at=start,
            end_at=end,
            poll_interval=0.2,
            timeout=60,
            deferrable=False,
            emit_asset_events=False,
        )
    airflow_dags.register([dag])
    return dag


@pytest.mark.parametrize("outcome", ["Completed", "Failed"])
def test_a_backfill_that_adopted_the_scheduled_run_ends_as_that_run_did(
    posthog_conn: Any,
    airflow_dags: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    outcome: str,
) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    emu.control.configure(run_duration=0.5)
    export_id = str(emu.control.seed_export(name=f"adopted {outcome}", interval="hour")["id"])
    start, end = _hour(emu, 3), _hour(emu, 2)
    dag = _backfill_dag(airflow_dags, f"adopted_{outcome.lower()}", export_id, start, end)
    seeded: list[dict[str, Any]] = []
    real_execute = PostHogCreateBackfillOperator.execute

    def execute(self: Any, context: Any) -> Any:
        # The scheduled run of that hour is still running when the task starts its backfill.
        seeded.append(emu.control.seed_run(export_id, start, end, status="Running", duration=2.0))
        if outcome == "Failed":
            emu.control.fail_next_run(export_id, error="S3 AccessDenied (emulated)")
        return real_execute(self, context)

    monkeypatch.setattr(PostHogCreateBackfillOperator, "execute", execute)
    dr = dag.test()
    (scheduled,) = seeded
    out = capfd.readouterr().out + caplog.text
    (backfill,) = emu.control.backfills_for(export_id)
    assert backfill["status"] == "Completed"  # what PostHog says, whatever the adopted run did
    assert [r["id"] for r in emu.control.runs_for(export_id)] == [scheduled["id"]]  # nothing tagged
    states = airflow_dags.task_states(dag.dag_id, dr.run_id)
    if outcome == "Completed":
        assert dr.state == "success", states
        assert "1 run(s), 1 of them adopted (already under way)" in out
    else:
        assert dr.state == "failed", states
        assert "were left to run(s) already under way" in out
        assert scheduled["id"] in out and "S3 AccessDenied (emulated)" in out


def test_a_backfill_cancelled_by_an_automatic_pause_says_why(
    posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emu = posthog_conn
    emu.control.configure(run_duration=0.3, auto_pause=True, auto_pause_threshold=3)
    export_id = str(emu.control.seed_export(name="auto-paused", interval="hour")["id"])
    for _ in range(3):
        emu.control.fail_next_run(export_id, error="Postgres password authentication failed (emulated)")
    dag = _backfill_dag(airflow_dags, "auto_paused", export_id, _hour(emu, 8), _hour(emu, 2))
    dr = dag.test()
    out = capfd.readouterr().out + caplog.text
    assert dr.state == "failed"
    assert emu.control.get_export(export_id)["paused"] is True
    (backfill,) = emu.control.backfills_for(export_id)
    assert backfill["status"] == "Cancelled"
    assert f"was cancelled: batch export {export_id} is paused; its 3 most recent run(s) failed" in out
    assert "Postgres password authentication failed (emulated)" in out
    assert "ended with status 'Cancelled'" not in out


def test_unpause_with_a_backfill_of_an_export_created_paused_changes_nothing(
    posthog_conn: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_posthog.operators.batch_export import PostHogUnpauseBatchExportOperator

    emu = posthog_conn
    export_id = str(emu.control.seed_export(name="created paused", interval="hour", paused=True)["id"])
    with airflow_dags.new("unpause_unknown_start") as dag:
        PostHogUnpauseBatchExportOperator(task_id="unpause", batch_export_id=export_id, backfill=True)
    airflow_dags.register([dag])
    dr = dag.test()
    out = capfd.readouterr().out + caplog.text
    assert dr.state == "failed"
    assert "has no last_paused_at" in out and "Pass backfill_start" in out
    assert emu.control.get_export(export_id)["paused"] is True  # nothing half-done
    assert emu.control.backfills_for(export_id) == []
    assert emu.control.count_requests("POST") == 0


def test_unpause_with_an_explicit_start_backfills_the_gap_then_unpauses(
    posthog_conn: Any, airflow_dags: Any
) -> None:
    from airflow_provider_posthog.operators.batch_export import PostHogUnpauseBatchExportOperator

    emu = posthog_conn
    export_id = str(emu.control.seed_export(name="paused by PATCH", interval="hour", paused=True)["id"])
    start = _hour(emu, 3)
    with airflow_dags.new("unpause_explicit_start") as dag:
        PostHogUnpauseBatchExportOperator(
            task_id="unpause",
            batch_export_id=export_id,
            backfill=True,
            backfill_start="{{ params.since }}",
            params={"since": start.isoformat()},
        )
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "success"
    assert emu.control.get_export(export_id)["paused"] is False
    (backfill,) = emu.control.backfills_for(export_id)
    assert (backfill["start_at"], backfill["end_at"]) == (start, _hour(emu, 0))
