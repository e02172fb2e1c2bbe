"""What a DAG file pays to use the provider: importing every operator and sensor module, then building each
public task, loads few modules of ours and nothing that only a running task needs.

Airflow re-parses every DAG file every few seconds, so a module-level import added to an operator, a sensor
or one of their base classes costs every parse of every DAG that uses them. Each check runs in a fresh
interpreter that first does what every DAG file does anyway (import ``airflow.sdk``, build a DAG with a task),
then counts what is new.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

#: Modules of ours a DAG file may load in all (0.1.0 loaded 15; the operators and sensors alone are 7).
MAX_OWN_MODULES = 20

#: Modules of ours that only a running task needs: the API client, hooks, triggers, the wait machinery,
#: lineage's run-time part, destinations and the emulator; and the exceptions, which a DAG file loads only
#: when a task's arguments are wrong.
RUN_TIME_ONLY = (
    "airflow_provider_posthog.exceptions",
    "airflow_provider_posthog.api",
    "airflow_provider_posthog.hooks",
    "airflow_provider_posthog.triggers",
    "airflow_provider_posthog.destinations",
    "airflow_provider_posthog.emulator",
    "airflow_provider_posthog.notifications",
    "airflow_provider_posthog.tasks.waiting",
    "airflow_provider_posthog.tasks.data_interval",
    "airflow_provider_posthog.tasks.reattach",
    "airflow_provider_posthog.tasks.summary",
    "airflow_provider_posthog.tasks.template_snapshot",
    "airflow_provider_posthog.lineage.assets",
    "airflow_provider_posthog.lineage.target",
    "airflow_provider_posthog.lineage.openlineage",
)

#: Third-party packages a DAG file must not load because of us (only new modules count: whatever
#: ``airflow.sdk`` loads itself is not ours to save).
HEAVY_PACKAGES = frozenset(
    {
        "requests",
        "urllib3",
        "httpx",
        "httpcore",
        "aiohttp",
        "yarl",
        "multidict",
        "tenacity",
        "pendulum",
        "croniter",
        "ssl",
        "uvicorn",
        "starlette",
        "openlineage",
    }
)

#: Every public task of the operators and sensors packages, with the arguments it requires.
REQUIRED_ARGS: dict[str, dict[str, Any]] = {
    "PostHogCreateBackfillOperator": {
        "batch_export_id": "e",
        "start_at": "{{ data_interval_start }}",
        "end_at": "{{ data_interval_end }}",
    },
    "PostHogRetryRunOperator": {"batch_export_id": "e", "run_id": "r"},
    "PostHogCancelRunOperator": {"batch_export_id": "e", "run_id": "r"},
    "PostHogCancelBackfillOperator": {"batch_export_id": "e", "backfill_id": "b"},
    "PostHogRetryFailedRunsOperator": {"batch_export_id": "e", "backfill_id": "b"},
    "PostHogCreateBatchExportOperator": {
        "name": "n",
        "destination": {"type": "NoOp", "config": {}},
        "interval": "day",
    },
    "PostHogUpdateBatchExportOperator": {"batch_export_id": "e", "paused": True},
    "PostHogDeleteBatchExportOperator": {"batch_export_id": "e"},
    "PostHogPauseBatchExportOperator": {"batch_export_id": "e"},
    "PostHogUnpauseBatchExportOperator": {"batch_export_id": "e"},
    "PostHogBackfillSensor": {"batch_export_id": "e", "backfill_id": "b"},
    "PostHogBatchExportRunSensor": {"batch_export_id": "e", "asset_uri": "s3://bucket/events"},
}

CHILD = textwrap.dedent(
    """
    import datetime as dt, importlib, inspect, json, pkgutil, sys

    from airflow.sdk import DAG, BaseOperator, BaseSensorOperator

    START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    with DAG("baseline", schedule=None, start_date=START):  # what any DAG file loads, ours or not
        BaseOperator(task_id="t")
    before = set(sys.modules)
    public = {}
    for package in ("airflow_provider_posthog.operators", "airflow_provider_posthog.sensors"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            module = importlib.import_module(f"{package}.{info.name}")
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseOperator)
                    and obj.__module__ == module.__name__
                    and name.startswith("PostHog")
                    and name.endswith(("Operator", "Sensor"))
                    and "Wait" not in name
                    and not name.startswith("PostHogBase")
                ):
                    public[name] = obj
    imported = sorted(set(sys.modules) - before)
    required = json.loads(sys.argv[1])
    with DAG("parse_cost", schedule=None, start_date=START):
        for name, cls in sorted(public.items()):
            if name in required:
                cls(task_id=name, **required[name])
    built = sorted(set(sys.modules) - before)
    print(json.dumps({"imported": imported, "built": built, "public": sorted(public)}))
    """
)


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    """What a fresh interpreter loads on top of a plain DAG: ``imported`` by importing every operator and
    sensor module, ``built`` once it also built each public task in a DAG; ``public`` names those tasks."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(REQUIRED_ARGS)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _ours(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] == "airflow_provider_posthog"]


def test_every_public_task_is_built(loaded: dict[str, list[str]]) -> None:
    """The list below covers every public operator and sensor (a new one must be added to it)."""
    assert sorted(loaded["public"]) == sorted(REQUIRED_ARGS)


@pytest.mark.parametrize("stage", ["imported", "built"])
def test_a_dag_file_loads_few_modules_of_ours(loaded: dict[str, list[str]], stage: str) -> None:
    ours = _ours(loaded[stage])
    assert len(ours) <= MAX_OWN_MODULES, f"{len(ours)} modules of ours at parse time: {ours}"


@pytest.mark.parametrize("stage", ["imported", "built"])
def test_a_dag_file_loads_nothing_only_a_running_task_needs(loaded: dict[str, list[str]], stage: str) -> None:
    run_time = [m for m in loaded[stage] if m.startswith(RUN_TIME_ONLY)]
    heavy = [m for m in loaded[stage] if m.split(".")[0] in HEAVY_PACKAGES]
    assert not run_time, f"loaded at DAG parse time, but only a running task needs them: {run_time}"
    assert not heavy, f"heavy packages loaded at DAG parse time: {heavy}"
