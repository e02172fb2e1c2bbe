"""The four waiting tasks wired to lineage, with a mocked hook: what they read, when they emit, and never on
anything but a verified success. (Real runs against the emulator: ``tests/e2e/test_lineage_*.py``.)"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import record_factories as f
from lineage_cases import DESTINATIONS, SECRETS

from airflow_provider_posthog.api.models import BatchExport
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogJobFailedError,
    PostHogRemoteFailureError,
)
from airflow_provider_posthog.lineage.mixin import latest_completed_runs
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor, PostHogBatchExportRunSensor
from airflow_provider_posthog.tasks.waiting import make_event

S3_URI = "s3://analytics-lake/posthog/events"
UTC = dt.timezone.utc
CLASSES = {
    "backfill": (
        PostHogCreateBackfillOperator,
        {"batch_export_id": f.EXPORT, "start_at": "x", "end_at": "y"},
    ),
    "retry": (PostHogRetryRunOperator, {"batch_export_id": f.EXPORT, "run_id": "run-0"}),
    "backfill_sensor": (PostHogBackfillSensor, {"batch_export_id": f.EXPORT, "backfill_id": f.BACKFILL}),
    "run_sensor": (PostHogBatchExportRunSensor, {"batch_export_id": f.EXPORT, "run_id": "run-1"}),
}


class OutletEvents:
    """``context["outlet_events"]``: records what the task adds to each alias."""

    def __init__(self) -> None:
        self.added: list[tuple[str, Any, dict[str, Any]]] = []

    def __getitem__(self, alias: Any) -> Any:
        events = self

        class _Accessor:
            def add(self, asset: Any, extra: dict[str, Any]) -> None:
                events.added.append((alias.name, asset, extra))

        return _Accessor()


def _export() -> BatchExport:
    return BatchExport.from_api(
        {
            "id": f.EXPORT,
            "name": "e",
            "model": "events",
            "interval": "hour",
            "destination": DESTINATIONS["S3"],
        }
    )


def _hook() -> mock.MagicMock:
    hook = mock.MagicMock()
    hook.get_batch_export.return_value = _export()
    hook._settings.return_value = SimpleNamespace(base_url="https://us.posthog.com", project_id=12345)
    hook.get_backfill.return_value = f.backfill("Completed")
    hook.list_backfill_runs.return_value = [
        f.run("Completed", run_id="run-1"),
        f.run("Completed", run_id="run-2", start="2024-01-01T01:00:00Z", end="2024-01-01T02:00:00Z"),
        f.run("Completed", run_id="other", backfill_id="someone-else"),
        f.run("Cancelled", run_id="run-0"),
    ]
    hook.get_run.return_value = f.run("Completed", run_id="run-1", backfill_id=None)
    return hook


def _task(kind: str, **kwargs: Any) -> Any:
    from airflow.sdk import DAG

    cls, required = CLASSES[kind]
    with DAG("lineage_tasks", schedule=None):
        task = cls(task_id=kind, **{**required, **kwargs})
    task.__dict__["hook"] = _hook()
    return task


def _context(task: Any) -> dict[str, Any]:
    return {"ti": mock.MagicMock(), "task": task, "outlet_events": OutletEvents()}


def _success(**ids: Any) -> dict[str, Any]:
    return {**make_event("success", "done", batch_export_id=f.EXPORT, **ids), "records_completed": 20}


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_every_task_has_the_options_and_declares_its_alias(kind: str) -> None:
    from airflow.sdk import AssetAlias

    task = _task(kind)
    assert task.emit_asset_events is True and task.asset_uri is None
    assert task.asset_alias == f"posthog-batch-export:lineage_tasks.{kind}"
    assert AssetAlias(task.asset_alias) in task.outlets
    assert "asset_uri" in task.template_fields
    assert _task(kind, emit_asset_events=False).outlets == []
    assert _task(kind, asset_alias="mine").outlets == [AssetAlias("mine")]
    with pytest.raises(ValueError, match="asset_uri must be a non-empty string"):
        _task(kind, asset_uri=" ")
    with pytest.raises(TypeError, match="emit_asset_events must be True or False"):
        _task(kind, emit_asset_events="no")


def test_construction_reads_nothing() -> None:
    with mock.patch("airflow_provider_posthog.hooks.posthog.PostHogHook") as hook_class:
        for kind, (cls, required) in CLASSES.items():
            cls(task_id=kind, **required)
    hook_class.assert_not_called()


@pytest.mark.parametrize("kind", ["backfill", "retry", "backfill_sensor"])
def test_backfill_success_reads_the_export_once_and_emits_its_completed_runs(kind: str) -> None:
    """Also what a deferred ``execute_complete`` does: a fresh instance, only the trigger's event."""
    task = _task(kind)
    context = _context(task)
    task.execute_complete(context, _success(backfill_id=f.BACKFILL))
    ((alias, asset, extra),) = context["outlet_events"].added
    assert (alias, asset.uri) == (task.asset_alias, S3_URI)
    assert extra["backfill_id"] == f.BACKFILL and extra["run_ids"] == ["run-1", "run-2"]
    assert extra["records_completed"] == 20 and extra["batch_export_id"] == f.EXPORT
    assert extra["intervals"][1] == {"start": "2024-01-01T01:00:00+00:00", "end": "2024-01-01T02:00:00+00:00"}
    assert not any(secret in repr(extra) for secret in SECRETS)
    hook = task.hook
    hook.get_batch_export.assert_called_once_with(f.EXPORT)
    # The export's schedule goes with the runs' listing, so the hook need not read the export again.
    assert hook.list_backfill_runs.call_args.args[2].interval == "hour"
    # A second success of the same instance (a sensor re-poked) reads the export no more.
    task.execute_complete(context, _success(backfill_id=f.BACKFILL))
    hook.get_batch_export.assert_called_once()
    assert len(context["outlet_events"].added) == 2


def test_asset_uri_overrides_the_destination() -> None:
    task = _task("run_sensor", asset_uri="snowflake://acme/db/raw/events")
    context = _context(task)
    task.execute_complete(context, _success(run_id="run-1"))
    ((_, asset, extra),) = context["outlet_events"].added
    assert asset.uri == "snowflake://acme/db/raw/events"
    assert (extra["run_ids"], extra["backfill_id"], extra["records_completed"]) == (["run-1"], None, 10)
    task.hook.get_run.assert_called_once_with(f.EXPORT, "run-1")


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("backfill", "failed", PostHogJobFailedError),
        ("backfill", "timeout", Exception),
        ("backfill", "error", Exception),
        ("backfill_sensor", "failed", PostHogRemoteFailureError),
        ("run_sensor", "timeout", Exception),
    ],
)
def test_no_event_and_no_read_unless_the_wait_succeeded(kind: str, status: str, error: type) -> None:
    task = _task(kind)
    task.__dict__["cancel_on_kill"] = False
    context = _context(task)
    event = make_event(status, "not done", batch_export_id=f.EXPORT, backfill_id=f.BACKFILL)
    with pytest.raises(error):
        task.execute_complete(context, event)
    assert context["outlet_events"].added == []
    task.hook.get_batch_export.assert_not_called()
    # The OpenLineage failure facets still name the datasets and the job (the export read lazily).
    lineage = task.get_openlineage_facets_on_failure(None)
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://analytics-lake", "posthog/events")]
    assert lineage.run_facets["externalQuery"].externalQueryId == f.BACKFILL


def test_turned_off_or_outside_the_task_runner_reads_nothing() -> None:
    for task, context in (
        (off := _task("backfill", emit_asset_events=False), _context(off)),
        (bare := _task("backfill"), {"ti": mock.MagicMock(), "task": bare}),
    ):
        assert task.execute_complete(context, _success(backfill_id=f.BACKFILL)) == f.BACKFILL
        task.hook.get_batch_export.assert_not_called()
        assert not context.get("outlet_events") or context["outlet_events"].added == []


def test_a_failed_read_after_success_fails_the_task_so_a_retry_emits() -> None:
    task = _task("backfill")
    task.hook.get_batch_export.side_effect = PostHogAPIError("GET .../batch_exports/x/: 503", http_status=503)
    context = _context(task)
    with pytest.raises(PostHogAPIError):
        task.execute_complete(context, _success(backfill_id=f.BACKFILL))
    assert context["outlet_events"].added == []


def test_openlineage_on_complete_carries_the_counts_and_survives_a_failed_read() -> None:
    task = _task("backfill")
    task.execute_complete(_context(task), _success(backfill_id=f.BACKFILL))
    lineage = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("posthog://us.posthog.com/project/12345", "events")
    ]
    assert lineage.outputs[0].outputFacets["outputStatistics"].rowCount == 20

    broken = _task("backfill")
    broken.hook.get_batch_export.side_effect = PostHogAPIError("boom", http_status=500)
    assert broken.get_openlineage_facets_on_complete(None) is None


def _interval_sensor() -> Any:
    return _task(
        "run_sensor",
        run_id=None,
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-01T02:00:00+00:00",
        mode="poke",
    )


def _interval_runs() -> list[Any]:
    second = {"start": "2024-01-01T01:00:00Z", "end": "2024-01-01T02:00:00Z", "backfill_id": None}
    return [
        f.run("Completed", run_id="hour-1", backfill_id=None),
        f.run("Failed", run_id="hour-2-first", created_at="2024-01-02T00:00:00Z", **second),
        f.run("Completed", run_id="hour-2-retry", created_at="2024-01-02T00:05:00Z", **second),
    ]


def test_interval_sensor_emits_the_runs_it_decided_on_without_listing_again() -> None:
    task = _interval_sensor()
    task.hook.list_runs.return_value = _interval_runs()
    context = _context(task)
    assert task.poke(context) is True
    ((_, _, extra),) = context["outlet_events"].added
    assert extra["run_ids"] == ["hour-1", "hour-2-retry"]
    assert (extra["data_interval_start"], extra["data_interval_end"]) == (
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T02:00:00+00:00",
    )
    task.hook.list_runs.assert_called_once()


def test_interval_sensor_resumed_after_deferral_lists_the_runs_again() -> None:
    task = _interval_sensor()
    task.hook.list_runs.return_value = _interval_runs()
    context = _context(task)
    task.execute_complete(context, _success())
    ((_, _, extra),) = context["outlet_events"].added
    assert extra["run_ids"] == ["hour-1", "hour-2-retry"] and extra["records_completed"] == 20
    task.hook.list_runs.assert_called_once()


def test_latest_completed_runs_keeps_the_newest_completed_run_per_interval_inside_the_window() -> None:
    start, end = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, 2, tzinfo=UTC)
    outside = f.run("Completed", run_id="outside", start="2023-12-31T23:00:00Z", end="2024-01-01T00:00:00Z")
    older = f.run("Completed", run_id="older", created_at="2024-01-01T00:00:00Z")
    runs = [*_interval_runs(), outside, older]
    assert [r.id for r in latest_completed_runs(runs, start, end)] == ["hour-1", "hour-2-retry"]


def test_no_openlineage_datasets_when_the_task_did_not_wait() -> None:
    """``wait_for_completion=False``: the backfill was only started, nothing is claimed as written."""
    task = _task("backfill", wait_for_completion=False, start_at="2024-01-01T00:00:00+00:00")
    task.end_at = "2024-01-01T02:00:00+00:00"
    task.hook.find_backfill.return_value = None
    task.hook.create_backfill.return_value = f.backfill("Running")
    context = {**_context(task), "dag_run": SimpleNamespace(start_date=None)}
    assert task.execute(context) == f.BACKFILL
    assert context["outlet_events"].added == []
    assert task.get_openlineage_facets_on_complete(None) is None
    task.hook.get_batch_export.assert_not_called()
