"""Every operator and sensor kind, run by real Airflow (``dag.test()``) against the emulator over HTTP: the
URLs its extra links open, as Airflow's task runner evaluates them after the task (``_link_<Link>`` XComs).

PostHog's UI has a page per batch export (tabs ``configuration``, ``metrics``, ``logs``, ``runs``,
``backfills``) and none per backfill or per run, so every kind links the export it acted on: its page, its
backfills tab and its runs tab. The delete operator links nothing (the export is gone).
"""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any

UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)
LINKS = ("PostHogBatchExportLink", "PostHogBackfillsLink", "PostHogRunsLink")
S3 = {"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}}


def _task_classes() -> dict[str, Any]:
    """Every public operator and sensor class of the provider that DAGs use (not the bases of others)."""
    import importlib
    import pkgutil

    from airflow_provider_posthog import operators, sensors

    found = {
        name: cls
        for package in (operators, sensors)
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
        for module in [importlib.import_module(f"{package.__name__}.{info.name}")]
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and cls.__module__ == module.__name__
        and name.startswith("PostHog")
        and name.endswith(("Operator", "Sensor"))
    }
    bases = {base for cls in found.values() for base in cls.__mro__[1:]}
    return {name: cls for name, cls in found.items() if cls not in bases}


def test_every_operator_and_sensor_but_delete_carries_the_three_links() -> None:
    classes = _task_classes()
    assert len(classes) >= 12, sorted(classes)
    for name, cls in classes.items():
        names = [type(link).__name__ for link in cls.operator_extra_links]
        assert names == ([] if name == "PostHogDeleteBatchExportOperator" else list(LINKS)), name


def test_each_kind_links_the_export_it_acted_on(posthog_conn: Any, airflow_dags: Any) -> None:
    from airflow_provider_posthog.operators.backfill import (
        PostHogCancelBackfillOperator,
        PostHogCancelRunOperator,
        PostHogCreateBackfillOperator,
        PostHogRetryRunOperator,
    )
    from airflow_provider_posthog.operators.batch_export import (
        PostHogCreateBatchExportOperator,
        PostHogDeleteBatchExportOperator,
        PostHogPauseBatchExportOperator,
        PostHogUnpauseBatchExportOperator,
        PostHogUpdateBatchExportOperator,
    )
    from airflow_provider_posthog.operators.retry_failed import PostHogRetryFailedRunsOperator
    from airflow_provider_posthog.sensors.batch_export import (
        PostHogBackfillSensor,
        PostHogBatchExportRunSensor,
    )

    emu = posthog_conn
    export = str(emu.control.seed_export(name="links e2e", destination=S3, interval="hour")["id"])
    hour = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    # Two failed runs: PostHog pauses an export at 3 among its latest runs.
    failed = emu.control.seed_run(export, hour - 5 * HOUR, hour - 4 * HOUR, status="Failed")
    failed_too = emu.control.seed_run(export, hour - 11 * HOUR, hour - 10 * HOUR, status="Failed")
    running = emu.control.seed_run(export, hour - 7 * HOUR, hour - 6 * HOUR, status="Running", duration=600)
    backfill = emu.control.seed_backfill(export, hour - 9 * HOUR, hour - 8 * HOUR, status="Running")
    with airflow_dags.new("links_every_kind") as dag:
        create = PostHogCreateBatchExportOperator(
            task_id="create_export", name="links e2e created", destination=S3, interval="hour", paused=True
        )
        delete = PostHogDeleteBatchExportOperator(
            task_id="delete_export", batch_export_id="{{ ti.xcom_pull(task_ids='create_export') }}"
        )
        update = PostHogUpdateBatchExportOperator(
            task_id="update_export", batch_export_id=export, name="links e2e renamed"
        )
        pause = PostHogPauseBatchExportOperator(task_id="pause_export", batch_export_id=export)
        unpause = PostHogUnpauseBatchExportOperator(task_id="unpause_export", batch_export_id=export)
        create_backfill = PostHogCreateBackfillOperator(
            task_id="create_backfill",
            batch_export_id=export,
            start_at=hour - 2 * HOUR,
            end_at=hour - HOUR,
            deferrable=False,
            poll_interval=0.2,
        )
        backfill_sensor = PostHogBackfillSensor(
            task_id="backfill_sensor",
            batch_export_id=export,
            backfill_id="{{ ti.xcom_pull(task_ids='create_backfill') }}",
            poke_interval=0.2,
        )
        run_sensor = PostHogBatchExportRunSensor(
            task_id="run_sensor",
            batch_export_id=export,
            data_interval_start=hour - 2 * HOUR,
            data_interval_end=hour - HOUR,
            poke_interval=0.2,
        )
        retry = PostHogRetryRunOperator(
            task_id="retry_run",
            batch_export_id=export,
            run_id=failed["id"],
            deferrable=False,
            poll_interval=0.2,
        )
        retry_failed = PostHogRetryFailedRunsOperator(
            task_id="retry_failed_runs",
            batch_export_id=export,
            run_ids=[failed_too["id"]],
            deferrable=False,
            poll_interval=0.2,
        )
        cancel_run = PostHogCancelRunOperator(
            task_id="cancel_run", batch_export_id=export, run_id=running["id"]
        )
        cancel_backfill = PostHogCancelBackfillOperator(
            task_id="cancel_backfill", batch_export_id=export, backfill_id=backfill["id"]
        )
        create >> delete
        update >> pause >> unpause >> create_backfill >> [backfill_sensor, run_sensor]
        [backfill_sensor, run_sensor] >> retry >> retry_failed >> cancel_run >> cancel_backfill
    airflow_dags.register([dag])
    dr = dag.test()
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    xcoms = airflow_dags.xcoms(dag.dag_id, dr.run_id)
    created = xcoms[("create_export", "return_value")]
    assert created != export

    def page(export_id: str) -> str:
        return f"{emu.base_url}/project/{emu.project_id}/pipeline/batch-exports/{export_id}"

    linked = {t.task_id: (created if t.task_id == "create_export" else export) for t in dag.tasks}
    del linked["delete_export"]
    assert len(linked) == len(_task_classes()) - 1  # one task of every kind that has links
    for task_id, export_id in linked.items():
        got = tuple(xcoms.get((task_id, f"_link_{name}")) for name in LINKS)
        assert got == (page(export_id), f"{page(export_id)}?tab=backfills", f"{page(export_id)}?tab=runs"), (
            task_id
        )
    delete_keys = {key for task_id, key in xcoms if task_id == "delete_export"}
    assert not {key for key in delete_keys if key.startswith("_link_") or key.endswith("_url")}, delete_keys
