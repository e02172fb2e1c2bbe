"""The provider registers with Airflow: entry point, matching package name, importable class paths.

``ProvidersManager`` drops a class path that fails to import with one easy-to-miss warning, so
every path declared in ``get_provider_info()`` is imported here and looked up in the manager.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points, version
from typing import Any

import airflow_provider_posthog

INFO: dict[str, Any] = airflow_provider_posthog.get_provider_info()


def _import_path(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_entry_point_resolves_to_get_provider_info() -> None:
    eps = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_")
    ]
    assert len(eps) == 1
    assert eps[0].load() is airflow_provider_posthog.get_provider_info


def test_package_name_matches_distribution() -> None:
    assert INFO["package-name"] == "airflow-provider-posthog"
    assert version("airflow-provider-posthog") == airflow_provider_posthog.__version__


def test_provider_info_is_valid_against_airflow_schema() -> None:
    import json
    from pathlib import Path

    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(INFO, schema)


def test_every_declared_module_and_class_imports() -> None:
    modules = [
        m
        for key in ("hooks", "operators", "sensors", "triggers")
        for e in INFO.get(key, [])
        for m in e["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    classes = [c["hook-class-name"] for c in INFO.get("connection-types", [])] + list(
        INFO.get("extra-links", [])
    )
    for path in classes:
        assert isinstance(_import_path(path), type), path


def test_get_provider_info_imports_nothing_heavy() -> None:
    """Airflow calls get_provider_info() in every CLI command: it must stay pure data."""
    code = (
        "import sys; import airflow_provider_posthog as p; p.get_provider_info(); "
        "heavy = ('airflow', 'requests', 'httpx', 'aiohttp', 'pendulum'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_airflow_providers_manager_sees_hook_and_links() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-posthog" in pm.providers
    try:  # Airflow 3.3 moved hook discovery to the task SDK and deprecated ProvidersManager.hooks.
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hooks = ProvidersManagerTaskRuntime().hooks
    except ImportError:
        hooks = pm.hooks
    for conn in INFO.get("connection-types", []):
        hook_info = hooks[conn["connection-type"]]
        assert hook_info is not None
        assert hook_info.hook_class_name == conn["hook-class-name"]
    for link in INFO.get("extra-links", []):
        assert link in pm.extra_links_class_names


def test_airflow_cli_lists_provider_without_warnings(tmp_path: Any) -> None:
    """`airflow providers list` shows us, and neither it nor discovery logs a warning or error."""
    import os

    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow_cli = os.path.join(os.path.dirname(sys.executable), "airflow")
    result = subprocess.run(
        [airflow_cli, "providers", "list"], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith("airflow-provider-posthog ")]
    assert len(rows) == 1
    assert airflow_provider_posthog.__version__ in rows[0]
    noise = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "posthog" in line.lower() and any(w in line.lower() for w in ("warn", "error", "exception"))
    ]
    assert noise == []
