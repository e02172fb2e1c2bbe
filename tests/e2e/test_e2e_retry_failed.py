"""Retrying only what failed, under real Airflow (``dag.test()``) against the emulator over real HTTP.

The emulator's auto-pause (PostHog pauses an export after 3 failed runs among its latest ones and cancels
its running backfills) is switched off here: the scenario needs three failed runs in one backfill.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

UTC = dt.timezone.utc


def _export(emu: Any) -> str:
    export = emu.control.seed_export(name="retry what failed", interval="hour")
    return str(export["id"])


def _hour(emu: Any, hours_ago: int) -> dt.datetime:
    now = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return now - dt.timedelta(hours=hours_ago)


def test_an_airflow_retry_re_exports_exactly_the_three_failed_hours(
    posthog_conn: Any, airflow_dags: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    emu.control.configure(auto_pause=False, run_duration=0.1, backfill_run_delay=0.01)
    export_id = _export(emu)
    for n in range(3):  # the backfill's first three runs fail
        emu.control.fail_next_run(export_id, error=f"S3 AccessDenied #{n} (emulated)")
    start, end = _hour(emu, 26), _hour(emu, 2)
    with airflow_dags.new("retry_only_failed_hours") as dag:
        PostHogCreateBackfillOperator(
            task_id="backfill",
            batch_export_id=export_id,
            start_at=start,
            end_at=end,
            poll_interval=0.2,
            deferrable=False,
            retries=1,
            retry_delay=dt.timedelta(0),
        )
    airflow_dags.register([dag])
    tries: list[int] = []
    real_execute = PostHogCreateBackfillOperator.execute

    def execute(self: Any, context: Any) -> Any:
        tries.append(context["ti"].try_number)
        return real_execute(self, context)

    monkeypatch.setattr(PostHogCreateBackfillOperator, "execute", execute)
    dr = dag.test()

    assert tries == [1, 2]
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)["backfill"] == ("success", 2)
    runs = emu.control.runs_for(export_id)
    assert len(runs) == 24 + 3  # the day once, and only the three failed hours again
    failed_hours = sorted(r["data_interval_start"] for r in runs if r["status"] == "Failed")
    assert len(failed_hours) == 3
    again = [r for r in runs if r["data_interval_start"] in failed_hours and r["status"] == "Completed"]
    assert len(again) == 3
    assert emu.control.count_requests("POST", "/backfills") == 1
    assert emu.control.count_requests("POST", "/retry") == 3
    (original,) = [
        b for b in emu.control.backfills_for(export_id) if b["id"] not in {r["backfill"] for r in again}
    ]
    xcoms = airflow_dags.xcoms(dag.dag_id, dr.run_id)
    assert xcoms[("backfill", "return_value")] == original["id"]
    assert sorted(xcoms[("backfill", "retry_backfill_ids")]) == sorted(r["backfill"] for r in again)


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferred"])
def test_the_retry_operator_retries_a_ten_day_old_failed_run(
    posthog_conn: Any, airflow_dags: Any, deferrable: bool
) -> None:
    from airflow_provider_posthog.operators.retry_failed import PostHogRetryFailedRunsOperator

    emu = posthog_conn
    export_id = _export(emu)
    start = _hour(emu, 24 * 10 + 5)
    old = emu.control.seed_run(
        export_id,
        start,
        start + dt.timedelta(hours=1),
        status="Failed",
        created_at=start + dt.timedelta(hours=1, minutes=1),
        latest_error="destination down (emulated)",
    )
    with airflow_dags.new(f"retry_old_failed_run_{'deferred' if deferrable else 'sync'}") as dag:
        PostHogRetryFailedRunsOperator(
            task_id="retry_failed",
            batch_export_id=export_id,
            run_ids=[old["id"]],
            poll_interval=0.2,
            deferrable=deferrable,
            retries=0,
        )
    airflow_dags.register([dag])
    dr = dag.test()

    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    runs = emu.control.runs_for(export_id)
    assert len(runs) == 2
    (new,) = [r for r in runs if r["id"] != old["id"]]
    assert new["status"] == "Completed"
    assert (new["data_interval_start"], new["data_interval_end"]) == (start, start + dt.timedelta(hours=1))
    assert emu.control.count_requests("POST", "/retry") == 1
    xcoms = airflow_dags.xcoms(dag.dag_id, dr.run_id)
    assert xcoms[("retry_failed", "return_value")] == [new["backfill"]]
    assert xcoms[("retry_failed", "retried_run_ids")] == [old["id"]]
