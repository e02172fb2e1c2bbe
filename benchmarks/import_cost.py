"""Parse-time import cost: what a DAG file pays to import a provider's operators and sensors.

Every DAG file pays ``from airflow.sdk import DAG, BaseOperator, BaseSensorOperator`` anyway; the figure that
matters is what importing the provider's operator and sensor modules *adds* on top of it, since Airflow
re-parses every DAG file every few seconds. Each sample is a fresh interpreter (bytecode already compiled: one
warm-up run per variant first) that imports the baseline, then times the provider imports with
``perf_counter`` and lists which top-level packages they dragged in. Variants are interleaved A B C A B C ...
so machine noise hits all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from benchmarks.procs import ROOT, child_env

if TYPE_CHECKING:
    from pathlib import Path

BASELINE = "from airflow.sdk import DAG, BaseOperator, BaseSensorOperator"

CHILD = """
import sys, time, json, importlib
t0 = time.perf_counter()
{baseline}
t1 = time.perf_counter()
before = set(sys.modules)
t2 = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
t3 = time.perf_counter()
new = sorted(set(sys.modules) - before)
print(json.dumps({{"baseline_s": t1 - t0, "added_s": t3 - t2, "new_modules": len(new),
                  "new_packages": sorted({{m.split(".")[0] for m in new}}),
                  "our_modules": [m for m in new if m.split(".")[0] == "airflow_provider_posthog"],
                  "notable": [m for m in new if m.split(".")[0] in {notable!r} or ".hooks" in m]}}))
"""

#: Packages whose presence after a "parse-time" import means a heavy dependency was pulled in.
NOTABLE = (
    "httpx",
    "httpcore",
    "requests",
    "aiohttp",
    "airbyte_api",
    "pendulum",
    "tenacity",
    "ssl",
    "uvicorn",
)


def our_modules() -> list[str]:
    """Every module of our operators and sensors packages (whatever files the operators helper created)."""
    modules = []
    for package in ("operators", "sensors"):
        base = ROOT / "airflow_provider_posthog" / package
        modules.append(f"airflow_provider_posthog.{package}")
        modules += [
            f"airflow_provider_posthog.{package}.{p.stem}"
            for p in sorted(base.glob("*.py"))
            if p.stem != "__init__"
        ]
    return modules


def variants() -> dict[str, list[str]]:
    """Contender name -> modules a DAG file imports to use its operators and sensors."""
    return {
        "ours": our_modules(),
        "dbt": ["airflow.providers.dbt.cloud.operators.dbt", "airflow.providers.dbt.cloud.sensors.dbt"],
        "airbyte": [
            "airflow.providers.airbyte.operators.airbyte",
            "airflow.providers.airbyte.sensors.airbyte",
        ],
    }


def sample(modules: list[str], workdir: Path) -> dict[str, Any]:
    """One fresh interpreter: baseline import, then the timed provider imports."""
    code = CHILD.format(baseline=BASELINE, modules=modules, notable=NOTABLE)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        env=child_env(workdir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"import of {modules} failed: {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def measure(samples: int, workdir: Path, log: Any = print) -> dict[str, Any]:
    """Interleaved samples for every variant: {variant: {"modules", "samples": [...], "last": sample}}."""
    workdir.mkdir(parents=True, exist_ok=True)
    plan = variants()
    results: dict[str, dict[str, Any]] = {
        name: {"modules": mods, "samples": []} for name, mods in plan.items()
    }
    for name, mods in plan.items():  # warm-up: compile bytecode, fill the page cache
        results[name]["warmup"] = sample(mods, workdir)
    for i in range(samples):
        for name, mods in plan.items():
            s = sample(mods, workdir)
            results[name]["samples"].append(s)
            results[name]["last"] = s
        log(
            f"  import cost sample {i + 1}/{samples}: "
            + ", ".join(f"{n} +{r['samples'][-1]['added_s'] * 1000:.1f} ms" for n, r in results.items())
        )
    return results
