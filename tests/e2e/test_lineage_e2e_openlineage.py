"""OpenLineage end to end: ``airflow dags test`` in a subprocess, the OpenLineage provider's own listener and
file transport, the provider's operator against the emulator over HTTP.

A subprocess with a fresh AIRFLOW_HOME: the OpenLineage provider reads its transport once per process, and
this is exactly how a user would try it (``airflow db migrate``, then ``airflow dags test``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

from test_lineage_e2e_assets import BUCKET, S3_KEY_ID, S3_SECRET, _create_export, _window

if TYPE_CHECKING:
    from pathlib import Path

DAG_ID = "posthog_lineage_ol"
DAG_FILE = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):
        for task_id, export_id in (("export_ok", {ok!r}), ("export_fails", {bad!r})):
            PostHogCreateBackfillOperator(
                task_id=task_id,
                batch_export_id=export_id,
                start_at={start!r},
                end_at={end!r},
                poll_interval=0.2,
                deferrable=False,
                retries=0,
            )
    """
)


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_dags_test_sends_posthog_model_and_destination_datasets(tmp_path: Path, posthog_conn: Any) -> None:
    emu = posthog_conn
    ok, bad = _create_export(), _create_export()
    emu.control.fail_next_run(bad, error="S3 AccessDenied: emulated failure")
    start, end = _window(emu)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "lineage_ol.py").write_text(
        DAG_FILE.format(dag_id=DAG_ID, ok=ok, bad=bad, start=start.isoformat(), end=end.isoformat()),
        encoding="utf-8",
    )
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_POSTHOG_DEFAULT": emu.airflow_conn_json(),
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "lineage-e2e",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
    }
    migrated = _airflow(["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    started = time.monotonic()
    done = _airflow(["dags", "test", DAG_ID], env)
    output = done.stdout + done.stderr
    assert "state=failed" in output, output[-4000:]  # export_fails failed, as arranged
    print(f"airflow dags test: {time.monotonic() - started:.1f}s")

    text = events_file.read_text(encoding="utf-8")
    assert S3_SECRET not in text and S3_KEY_ID not in text
    assert S3_SECRET not in output
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for line in text.splitlines():
        if line.strip():
            event = json.loads(line)
            events[event["job"]["name"], event["eventType"]] = event

    posthog_namespace = (
        f"posthog://{emu.base_url.split('://', 1)[1]}/project/{emu.control.settings.project_id}"
    )
    expected = [(posthog_namespace, "events"), (f"s3://{BUCKET}", "posthog/events")]

    complete = events[f"{DAG_ID}.export_ok", "COMPLETE"]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == expected[:1]
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == expected[1:]
    fields = [f["name"] for f in complete["inputs"][0]["facets"]["schema"]["fields"]]
    assert {"uuid", "event", "distinct_id", "timestamp", "properties"} <= set(fields)
    (backfill,) = emu.control.backfills_for(ok)
    runs = [r for r in emu.control.runs_for(ok) if r.get("backfill") == backfill["id"]]
    statistics = complete["outputs"][0]["outputFacets"]["outputStatistics"]
    assert statistics["rowCount"] == sum(r["records_completed"] for r in runs) > 0
    assert complete["run"]["facets"]["externalQuery"]["externalQueryId"] == backfill["id"]

    failed = events[f"{DAG_ID}.export_fails", "FAIL"]
    assert [(d["namespace"], d["name"]) for d in (*failed["inputs"], *failed["outputs"])] == expected
    assert not failed["outputs"][0].get("outputFacets")
    assert "emulated failure" in failed["run"]["facets"]["errorMessage"]["message"]
    (bad_backfill,) = emu.control.backfills_for(bad)
    assert failed["run"]["facets"]["externalQuery"]["externalQueryId"] == bad_backfill["id"]
