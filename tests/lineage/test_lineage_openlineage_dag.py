"""The OpenLineage provider's own listener, in a real ``dag.test()``, sends what ``operator_lineage`` builds.

Runs in a subprocess with a fresh AIRFLOW_HOME: the OpenLineage provider caches its configuration (the file
transport) on first use, so it must be set before anything in the process reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

DAG_FILE = textwrap.dedent(
    """
    import sys

    import pendulum
    from airflow.sdk import DAG, BaseOperator

    sys.path.insert(0, {cases_dir!r})
    from lineage_cases import DESTINATIONS, EXPORT_ID, HOST, PROJECT, two_runs

    from airflow_provider_posthog.lineage.openlineage import operator_lineage
    from airflow_provider_posthog.lineage.target import ExportTarget


    class ExportOperator(BaseOperator):
        def __init__(self, *, fail, **kwargs):
            super().__init__(**kwargs)
            self.fail = fail
            self.runs = ()

        def target(self):
            data = {{"id": EXPORT_ID, "model": "persons", "destination": DESTINATIONS["Snowflake"]}}
            return ExportTarget.from_api(data, posthog_host=HOST, project_id=PROJECT)

        def execute(self, context):
            if self.fail:
                raise RuntimeError("backfill bf-9 failed in PostHog")
            self.runs = two_runs()

        def get_openlineage_facets_on_complete(self, task_instance):
            return operator_lineage(self.target(), self.runs, external_id="bf-1")

        def get_openlineage_facets_on_failure(self, task_instance):
            return operator_lineage(self.target(), external_id="bf-9")


    with DAG("ol_lineage", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as the_dag:
        ExportOperator(task_id="ok", fail=False)
        ExportOperator(task_id="bad", fail=True)

    if __name__ == "__main__":
        from airflow.utils import db

        db.initdb()
        print("STATE", the_dag.test().state)
    """
)


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ol_lineage.py").write_text(DAG_FILE.format(cases_dir=str(HERE)), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
    }
    done = subprocess.run(
        [sys.executable, str(dags / "ol_lineage.py")], env=env, capture_output=True, text=True, timeout=240
    )
    assert "STATE failed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines() if line.strip()]


def _datasets(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in (*event["inputs"], *event["outputs"])]


def test_listener_sends_our_datasets_on_complete_and_on_failure(tmp_path: Path) -> None:
    events = {(e["job"]["name"], e["eventType"]): e for e in _events(tmp_path)}
    expected = [
        ("posthog://us.posthog.com/project/12345", "persons"),
        ("snowflake://myorg-myaccount", "ANALYTICS.POSTHOG.EVENTS"),
    ]

    complete = events["ol_lineage.ok", "COMPLETE"]
    assert _datasets(complete) == expected
    (source,) = complete["inputs"]
    assert [f["name"] for f in source["facets"]["schema"]["fields"]][:3] == [
        "team_id",
        "distinct_id",
        "person_id",
    ]
    (sink,) = complete["outputs"]
    assert sink["outputFacets"]["outputStatistics"]["rowCount"] == 150
    assert sink["outputFacets"]["outputStatistics"]["size"] == 5120
    assert complete["run"]["facets"]["externalQuery"]["externalQueryId"] == "bf-1"

    failed = events["ol_lineage.bad", "FAIL"]
    assert _datasets(failed) == expected
    assert "outputFacets" not in failed["outputs"][0] or not failed["outputs"][0]["outputFacets"]
    assert failed["run"]["facets"]["errorMessage"]["message"] == "backfill bf-9 failed in PostHog"
    assert failed["run"]["facets"]["externalQuery"]["externalQueryId"] == "bf-9"
