"""Operators and sensors against the emulator (PostHog's current server code, real HTTP) where real PostHog
differs from its docs: completed backfills with failed runs, unaligned ranges, identical running backfills,
cancels that do not take, and runs older than PostHog's default 7-day listing window."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

UTC = dt.timezone.utc


def _hour(emu: Any, hours_ago: int = 0) -> dt.datetime:
    now = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return now - dt.timedelta(hours=hours_ago)


def _export(emu: Any, interval: str = "hour") -> str:
    export = emu.control.seed_export(
        name=f"behaviour {interval}",
        destination={"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}},
        interval=interval,
    )
    return str(export["id"])


def _context(try_number: int = 1) -> dict[str, Any]:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, 1
    started = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    return {"ti": ti, "task": SimpleNamespace(retries=1), "dag_run": SimpleNamespace(start_date=started)}


def test_completed_backfill_with_a_failed_run_fails_operator_and_sensor(posthog_conn: Any) -> None:
    from airflow_provider_posthog.exceptions import PostHogJobFailedError, PostHogRemoteFailureError
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator
    from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

    emu = posthog_conn
    export_id = _export(emu)
    emu.control.fail_next_run(export_id, error="S3 AccessDenied (emulated)")
    start, end = _hour(emu, 2), _hour(emu)
    op = PostHogCreateBackfillOperator(
        task_id="b",
        batch_export_id=export_id,
        start_at=start,
        end_at=end,
        poll_interval=0.1,
        deferrable=False,
    )
    with pytest.raises(PostHogJobFailedError, match="S3 AccessDenied"):
        op.execute(_context())  # type: ignore[arg-type]
    (backfill,) = emu.control.backfills_for(export_id)
    assert backfill["status"] == "Completed"  # PostHog says Completed; one of its runs failed
    sensor = PostHogBackfillSensor(
        task_id="s", batch_export_id=export_id, backfill_id=backfill["id"], poke_interval=0.1, timeout=30
    )
    with pytest.raises(PostHogRemoteFailureError, match="1 of its run"):
        sensor.poke(_context())  # type: ignore[arg-type]


def test_a_failed_first_run_aligned_before_start_at_fails_the_sensor(posthog_conn: Any) -> None:
    """PostHog aligns a backfill's first run down to the export's interval: it starts before ``start_at``."""
    from airflow_provider_posthog.exceptions import PostHogRemoteFailureError
    from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

    emu = posthog_conn
    export_id = _export(emu)
    emu.control.fail_next_run(export_id, error="first interval failed (emulated)")
    start, end = _hour(emu, 3) + dt.timedelta(minutes=30), _hour(emu, 1)
    backfill = emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
    sensor = PostHogBackfillSensor(
        task_id="s", batch_export_id=export_id, backfill_id=backfill["id"], poke_interval=0.1, timeout=30
    )
    for _ in range(100):
        try:
            if sensor.poke(_context()):  # type: ignore[arg-type]
                pytest.fail("a backfill whose first run failed succeeded")
        except PostHogRemoteFailureError as exc:
            assert "first interval failed (emulated)" in str(exc)
            break
        emu.control.advance(1)
    else:
        pytest.fail("the backfill never finished")
    runs = [r for r in emu.control.runs_for(export_id) if r.get("backfill") == backfill["id"]]
    failed = [r for r in runs if r["status"] == "Failed"]
    assert failed and failed[0]["data_interval_start"] < start


def test_unaligned_range_fails_before_any_post_naming_aligned_bounds(posthog_conn: Any) -> None:
    from airflow_provider_posthog.exceptions import PostHogConfigError
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    export_id = _export(emu)
    start, end = _hour(emu, 3) + dt.timedelta(minutes=30), _hour(emu, 1)
    op = PostHogCreateBackfillOperator(task_id="b", batch_export_id=export_id, start_at=start, end_at=end)
    with pytest.raises(PostHogConfigError) as err:
        op.execute(_context())  # type: ignore[arg-type]
    assert _hour(emu, 3).isoformat() in str(err.value) or _hour(emu, 2).isoformat() in str(err.value)
    assert emu.control.count_requests("POST", "/backfills") == 0


def test_identical_running_backfill_is_adopted_with_reattach_always(posthog_conn: Any) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    export_id = _export(emu)
    start, end = _hour(emu, 2), _hour(emu)
    running = emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
    op = PostHogCreateBackfillOperator(
        task_id="b",
        batch_export_id=export_id,
        start_at=start,
        end_at=end,
        reattach="always",
        poll_interval=0.1,
        deferrable=False,
    )
    assert op.execute(_context()) == running["id"]  # type: ignore[arg-type]
    assert emu.control.count_requests("POST", "/backfills") == 0


@pytest.mark.parametrize("kind", ["run", "backfill"])
def test_cancel_operators_fail_when_posthog_did_not_cancel(posthog_conn: Any, kind: str) -> None:
    from airflow_provider_posthog.exceptions import PostHogCancelNotEffectiveError
    from airflow_provider_posthog.operators.backfill import (
        PostHogCancelBackfillOperator,
        PostHogCancelRunOperator,
    )

    emu = posthog_conn
    emu.control.configure(run_duration=60.0)
    export_id = _export(emu)
    start, end = _hour(emu, 2), _hour(emu)
    if kind == "run":
        obj = emu.control.seed_run(export_id, start, end, status="Running")
        op: Any = PostHogCancelRunOperator(task_id="c", batch_export_id=export_id, run_id=obj["id"])
    else:
        obj = emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
        op = PostHogCancelBackfillOperator(task_id="c", batch_export_id=export_id, backfill_id=obj["id"])
    emu.control.ignore_next_cancels(1, kind=kind)
    with pytest.raises(PostHogCancelNotEffectiveError, match=obj["id"]):
        op.execute(_context())
    assert op.execute(_context()) == "Cancelled"  # a second cancel takes


def test_timeout_logs_a_warning_naming_a_backfill_that_did_not_cancel(
    posthog_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_posthog.exceptions import PostHogWaitTimeoutError
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    emu.control.configure(run_duration=60.0)
    export_id = _export(emu)
    emu.control.ignore_next_cancels(1, kind="backfill")
    start, end = _hour(emu, 2), _hour(emu)
    op = PostHogCreateBackfillOperator(
        task_id="b", batch_export_id=export_id, start_at=start, end_at=end, poll_interval=0.1, timeout=0.3
    )
    with pytest.raises(PostHogWaitTimeoutError):
        op.execute(_context())  # type: ignore[arg-type]
    (backfill,) = emu.control.backfills_for(export_id)
    assert backfill["status"] == "Running"
    out = capfd.readouterr().out
    assert f"Backfill {backfill['id']} of batch export {export_id} is still running after the cancel" in out
    assert "warning" in out.lower()


async def test_trigger_on_kill_warns_when_the_cancel_did_not_take(posthog_conn: Any) -> None:
    from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

    emu = posthog_conn
    emu.control.configure(run_duration=60.0)
    export_id = _export(emu)
    start, end = _hour(emu, 2), _hour(emu)
    backfill = emu.control.seed_backfill(export_id, start, end, status="Running", simulate=True)
    emu.control.ignore_next_cancels(1, kind="backfill")
    trigger = PostHogBackfillTrigger(
        batch_export_id=export_id, backfill_id=backfill["id"], poll_interval=0.1, cancel_on_kill=True
    )
    with mock.patch.object(type(trigger), "log", new_callable=mock.PropertyMock) as log:
        await trigger.on_kill()
    warning = log.return_value.warning
    warning.assert_called_once()
    assert backfill["id"] in " ".join(str(a) for a in warning.call_args.args)
    assert emu.control.get_backfill(backfill["id"])["status"] == "Running"


def test_runs_older_than_seven_days_are_found(posthog_conn: Any) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogRetryRunOperator
    from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

    emu = posthog_conn
    export_id = _export(emu)
    start = _hour(emu, 24 * 10)
    created = start + dt.timedelta(hours=1, minutes=5)
    old = emu.control.seed_run(
        export_id, start, start + dt.timedelta(hours=1), status="Failed", created_at=created
    )
    ok = emu.control.seed_run(
        export_id, start - dt.timedelta(hours=1), start, status="Completed", created_at=created
    )
    sensor = PostHogBatchExportRunSensor(
        task_id="s", batch_export_id=export_id, run_id=ok["id"], poke_interval=0.1, timeout=30
    )
    assert sensor.poke(_context()) is True  # type: ignore[arg-type]
    op = PostHogRetryRunOperator(
        task_id="r", batch_export_id=export_id, run_id=old["id"], poll_interval=0.1, deferrable=False
    )
    backfill_id = op.execute(_context())  # type: ignore[arg-type]
    backfill = emu.control.get_backfill(backfill_id)
    assert backfill["status"] == "Completed"
