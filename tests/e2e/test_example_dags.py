"""The example DAGs end to end: real Airflow (``dag.test()``), real HTTP to the emulator on 127.0.0.1.

One ``dag.test()`` per scenario: sync, deferrable (trigger runs in line) and the failure path for each use
case, plus cancel-on-timeout, re-attach across attempts and the trigger's on_kill against the emulator.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

S3_SECRET = "e2e-Secret-Access-Key-0123456789"
UTC = dt.timezone.utc
BACKFILL_DAG, BACKFILL_TASK = "posthog_backfill_and_wait", "backfill_posthog_export"


def _window(emu: Any, hours: int = 2) -> tuple[dt.datetime, dt.datetime]:
    end = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - dt.timedelta(hours=hours), end


def _export(emu: Any) -> str:
    export = emu.control.seed_export(
        name="e2e export",
        destination={"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}},
        interval="hour",
    )
    return str(export["id"])


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_backfill_and_wait(
    example_dags: dict[str, Any], posthog_conn: Any, deferrable: bool, airflow_dags: Any
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    start, end = _window(emu)
    dag = airflow_dags.with_task(example_dags[BACKFILL_DAG], BACKFILL_TASK, deferrable=deferrable)
    conf = {
        "batch_export_id": export_id,
        "start_at": start.isoformat(),
        "end_at": end.isoformat(),
        "poll_interval": 0.2,
    }
    dr = dag.test(run_conf=conf)
    assert dr.state == "success"
    backfills = emu.control.backfills_for(export_id)
    assert [b["status"] for b in backfills] == ["Completed"]
    runs = [r for r in emu.control.runs_for(export_id) if r.get("backfill") == backfills[0]["id"]]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"Completed"}
    xcoms = airflow_dags.xcoms(dag.dag_id, dr.run_id)
    task = BACKFILL_TASK
    assert xcoms[(task, "return_value")] == backfills[0]["id"] == xcoms[(task, "backfill_id")]
    assert xcoms[(task, "batch_export_id")] == export_id
    assert xcoms[(task, "backfills_url")].endswith(f"/pipeline/batch-exports/{export_id}?tab=backfills")
    assert xcoms[(task, "_link_PostHogRunsLink")].endswith("?tab=runs")  # links evaluated by the runner
    assert xcoms[("run_downstream_models", "return_value")] == backfills[0]["id"]
    if deferrable:
        assert emu.control.count_requests("GET", f"/backfills/{backfills[0]['id']}") >= 2


def test_backfill_failure_fails_the_task_with_the_runs_error(
    example_dags: dict[str, Any], posthog_conn: Any, capfd: pytest.CaptureFixture[str], airflow_dags: Any
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    emu.control.fail_next_run(export_id, error="S3 AccessDenied: emulated failure")
    start, end = _window(emu, hours=1)
    dag = airflow_dags.with_task(example_dags[BACKFILL_DAG], BACKFILL_TASK, deferrable=True, retries=0)
    conf = {
        "batch_export_id": export_id,
        "start_at": start.isoformat(),
        "end_at": end.isoformat(),
        "poll_interval": 0.2,
    }
    dr = dag.test(run_conf=conf)
    assert dr.state == "failed"
    out = capfd.readouterr().out
    assert "PostHogJobFailedError" in out
    assert "S3 AccessDenied: emulated failure" in out
    assert "    | " in out  # the tail of the run's logs is quoted


def _test_wait_dag(
    example_dags: dict[str, Any],
    airflow_dags: Any,
    deferrable: bool,
    export_id: str,
    start: dt.datetime,
    end: dt.datetime,
) -> Any:
    """Run the wait-for-scheduled-export example DAG over ``[start, end)`` with a fast sensor."""
    dag = airflow_dags.with_task(
        example_dags["posthog_wait_for_scheduled_export"],
        "wait_for_posthog_export",
        deferrable=deferrable,
        poke_interval=0.2,
        mode="poke",
    )
    conf = {
        "batch_export_id": export_id,
        "data_interval_start": start.isoformat(),
        "data_interval_end": end.isoformat(),
    }
    return dag.test(run_conf=conf)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_wait_for_scheduled_interval(
    example_dags: dict[str, Any], posthog_conn: Any, airflow_dags: Any, deferrable: bool
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    start, end = _window(emu, hours=2)
    emu.control.seed_run(
        export_id, start, start + dt.timedelta(hours=1), status="Completed", records_completed=5
    )
    # The second hour is still exporting when the DAG starts: the deferred sensor must wait for it.
    emu.control.seed_run(export_id, start + dt.timedelta(hours=1), end, status="Running")
    dr = _test_wait_dag(example_dags, airflow_dags, deferrable, export_id, start, end)
    assert dr.state == "success"
    assert {r["status"] for r in emu.control.runs_for(export_id)} == {"Completed"}


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_wait_for_scheduled_interval_fails_on_a_failed_run(
    example_dags: dict[str, Any],
    posthog_conn: Any,
    capfd: pytest.CaptureFixture[str],
    airflow_dags: Any,
    deferrable: bool,
) -> None:
    emu = posthog_conn
    export_id = _export(emu)
    start, end = _window(emu, hours=1)
    emu.control.seed_run(export_id, start, end, status="Failed", latest_error="warehouse full (emulated)")
    dr = _test_wait_dag(example_dags, airflow_dags, deferrable, export_id, start, end)
    assert dr.state == "failed"
    assert "warehouse full (emulated)" in capfd.readouterr().out


def test_manage_exports_as_code_keeps_secrets_out(
    example_dags: dict[str, Any],
    posthog_conn: Any,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    airflow_dags: Any,
) -> None:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session
    from sqlalchemy import select

    emu = posthog_conn
    dag = example_dags["posthog_manage_exports"]
    aws = {
        "conn_type": "aws",
        "login": "AKIAE2EEXAMPLE",
        "password": S3_SECRET,
        "extra": {"region_name": "eu-central-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
    dr = dag.test(run_conf={"export_name": "e2e managed", "interval": "day", "backfill_gap": False})
    assert dr.state == "success"
    export_id = airflow_dags.xcoms(dag.dag_id, dr.run_id)[("create_export", "return_value")]
    stored = emu.control.get_export(export_id)
    assert stored["name"] == "e2e managed" and stored["interval"] == "day" and stored["paused"] is False
    config = stored["destination"]["config"]
    # The connection's credentials and region did reach PostHog...
    assert config["aws_secret_access_key"] == S3_SECRET and config["aws_access_key_id"] == "AKIAE2EEXAMPLE"
    assert config["region"] == "eu-central-1" and config["bucket_name"] == "analytics-raw"
    # ... but not the logs, XCom or the rendered template fields.
    assert S3_SECRET not in capfd.readouterr().out
    assert S3_SECRET not in repr(airflow_dags.xcoms(dag.dag_id, dr.run_id))
    with create_session() as session:
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(RenderedTaskInstanceFields.dag_id == dag.dag_id)
        ).all()
    assert rendered and all(S3_SECRET not in repr(r.rendered_fields) for r in rendered)
    assert any("e2e managed" in repr(r.rendered_fields) for r in rendered)
    # Rerun: idempotent by name, no second export.
    dr = dag.test(run_conf={"export_name": "e2e managed", "interval": "hour", "backfill_gap": True})
    assert dr.state == "success"
    from airflow_provider_posthog.hooks.posthog import PostHogHook

    assert [e.id for e in PostHogHook().list_batch_exports() if e.name == "e2e managed"] == [export_id]
    assert emu.control.get_export(export_id)["interval"] == "hour"


def test_deferred_timeout_cancels_the_backfill(
    example_dags: dict[str, Any], posthog_conn: Any, airflow_dags: Any
) -> None:
    emu = posthog_conn
    emu.control.configure(run_duration=30.0)
    export_id = _export(emu)
    start, end = _window(emu, hours=2)
    dag = airflow_dags.with_task(
        example_dags[BACKFILL_DAG], BACKFILL_TASK, deferrable=True, retries=0, timeout=1.0
    )
    conf = {
        "batch_export_id": export_id,
        "start_at": start.isoformat(),
        "end_at": end.isoformat(),
        "poll_interval": 0.2,
    }
    dr = dag.test(run_conf=conf)
    assert dr.state == "failed"
    assert [b["status"] for b in emu.control.backfills_for(export_id)] == ["Cancelled"]


async def test_trigger_polls_through_transient_503s(posthog_conn: Any) -> None:
    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

    emu = posthog_conn
    export_id = _export(emu)
    start, end = _window(emu, hours=1)
    backfill = emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
    emu.control.add_fault(r"/backfills/", method="GET", status=503, count=2)
    trigger = PostHogBackfillTrigger(batch_export_id=export_id, backfill_id=backfill["id"], poll_interval=0.1)
    event = await trigger.run().__anext__()
    assert event.payload["status"] == "success", event.payload
    assert emu.control.count_requests("GET", "/backfills/") >= 3


# ---------------------------------------------------------------- operator/trigger against the emulator


def _context(try_number: int = 1) -> dict[str, Any]:
    """Try ``try_number`` of a task with one retry, in a DAG run that started a minute ago."""
    from types import SimpleNamespace
    from unittest import mock

    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, 1
    started = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    return {"ti": ti, "task": SimpleNamespace(retries=1), "dag_run": SimpleNamespace(start_date=started)}


def test_timeout_cancels_the_backfill_in_posthog(posthog_conn: Any) -> None:
    from airflow_provider_posthog.exceptions import PostHogWaitTimeoutError
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    emu.control.configure(run_duration=30.0)
    export_id = _export(emu)
    start, end = _window(emu, hours=3)
    op = PostHogCreateBackfillOperator(
        task_id="t", batch_export_id=export_id, start_at=start, end_at=end, poll_interval=0.2, timeout=0.5
    )
    with pytest.raises(PostHogWaitTimeoutError):
        op.execute(_context())  # type: ignore[arg-type]
    assert [b["status"] for b in emu.control.backfills_for(export_id)] == ["Cancelled"]


def test_retry_reattaches_exactly_one_backfill_across_two_attempts(posthog_conn: Any) -> None:
    from airflow_provider_posthog.exceptions import PostHogWaitTimeoutError
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    emu.control.configure(run_duration=1.0)
    export_id = _export(emu)
    start, end = _window(emu, hours=2)
    kwargs: dict[str, Any] = {
        "batch_export_id": export_id,
        "start_at": start,
        "end_at": end,
        "poll_interval": 0.2,
    }
    first = PostHogCreateBackfillOperator(task_id="t", timeout=0.3, cancel_on_kill=False, **kwargs)
    with pytest.raises(PostHogWaitTimeoutError):
        first.execute(_context())  # type: ignore[arg-type]  # attempt 1 dies mid-wait
    second = PostHogCreateBackfillOperator(task_id="t", **kwargs)
    backfill_id = second.execute(_context(try_number=2))  # type: ignore[arg-type]  # attempt 2 re-attaches
    backfills = emu.control.backfills_for(export_id)
    assert [b["id"] for b in backfills] == [backfill_id]
    assert backfills[0]["status"] == "Completed"
    assert emu.control.count_requests("POST", "/backfills") == 1


@pytest.mark.parametrize(("state", "after"), [("failed", "Cancelled"), ("deferred", "Running")])
async def test_trigger_on_kill_cancels_the_backfill_in_posthog(
    posthog_conn: Any, monkeypatch: pytest.MonkeyPatch, state: str, after: str
) -> None:
    """A user marked the deferred task failed: on_kill cancels its backfill. Airflow 3.3.2 also calls
    on_kill when the trigger only moves to another triggerer; the task is then still deferred (the state
    the triggerer's Task SDK channel reports) and the backfill must go on."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import TaskStatesResult

    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

    class Supervisor:
        async def asend(self, msg: Any) -> Any:
            return TaskStatesResult(task_states={"run-1": {"backfill": state}})

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Supervisor(), raising=False)
    emu = posthog_conn
    emu.control.configure(run_duration=30.0)
    export_id = _export(emu)
    start, end = _window(emu, hours=2)
    backfill = emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
    trigger = PostHogBackfillTrigger(
        batch_export_id=export_id, backfill_id=backfill["id"], poll_interval=0.1, cancel_on_kill=True
    )
    trigger.task_instance = SimpleNamespace(dag_id="d", task_id="backfill", run_id="run-1", map_index=-1)
    await trigger.on_kill()
    assert emu.control.get_backfill(backfill["id"])["status"] == after


async def test_trigger_never_uses_the_sync_connection_lookup(posthog_conn: Any) -> None:
    """dag.test() runs triggers in line and would hide a sync lookup that breaks the real triggerer.

    Before Airflow 3.3.2 the lookup runs sync in a worker thread on purpose (compat.aget_connection); only a
    sync lookup on the loop's own thread is the bug.
    """
    import threading
    from unittest import mock

    from airflow.sdk import BaseHook

    from airflow_provider_posthog.triggers.batch_export import PostHogBatchExportRunTrigger

    emu = posthog_conn
    export_id = _export(emu)
    start, end = _window(emu, hours=1)
    run = emu.control.seed_run(export_id, start, end, status="Completed", records_completed=3)
    trigger = PostHogBatchExportRunTrigger(batch_export_id=export_id, run_id=run["id"], poll_interval=0.1)
    loop_thread, real_lookup = threading.get_ident(), BaseHook.get_connection

    def lookup(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == loop_thread:
            raise RuntimeError("sync get_connection called inside the event loop")
        return real_lookup(*args, **kwargs)

    with mock.patch.object(BaseHook, "get_connection", side_effect=lookup):
        event = await trigger.run().__anext__()
    assert event.payload["status"] == "success", event.payload
    assert event.payload["records_completed"] == 3
