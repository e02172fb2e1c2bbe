"""The CLI as a real subprocess, the pytest plugin's cheap import, and the context manager options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_posthog.emulator import EmulatorSettings, PostHogEmulator
from airflow_provider_posthog.emulator.settings import DEFAULT_PROJECT_ID
from airflow_provider_posthog.emulator.tls import make_tls_files

if TYPE_CHECKING:
    from pathlib import Path


def test_cli_serves_a_curl_like_session() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_posthog.emulator", "--port", "0", "--api-key", "phx_cli",
         "--project-id", "7", "--run-duration", "0.2", "--api-generation", "docs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info, "the CLI never printed its JSON line"
        assert info["api_key"] == "phx_cli" and info["project_id"] == 7
        conn = json.loads(info["AIRFLOW_CONN_POSTHOG_DEFAULT"])
        assert conn["host"] == info["base_url"] and conn["password"] == "phx_cli"
        assert conn["extra"] == {"project_id": "7"}
        port = info["base_url"].rsplit(":", 1)[1]
        assert (
            info["AIRFLOW_CONN_POSTHOG_DEFAULT_URI"]
            == f"posthog://:phx_cli@http%3A%2F%2F127.0.0.1%3A{port}/?project_id=7"
        )
        base = f"{info['base_url']}/api/projects/7/batch_exports/"
        headers = {"Authorization": "Bearer phx_cli"}
        assert requests.get(base, headers=headers, timeout=5).json()["count"] == 0
        export = requests.post(
            base,
            headers=headers,
            json={"name": "cli", "interval": "hour", "destination": {"type": "NoOp", "config": {}}},
            timeout=5,
        ).json()
        backfill = requests.post(
            f"{base}{export['id']}/backfills/",
            headers=headers,
            json={"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-01T02:00:00Z"},
            timeout=5,
        )
        assert backfill.status_code == 200
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # poll like a user would, with plain HTTP
            rows = requests.get(f"{base}{export['id']}/backfills/", headers=headers, timeout=5).json()[
                "results"
            ]
            if rows and rows[0]["status"] == "Completed":
                break
            time.sleep(0.1)
        assert rows and rows[0]["status"] == "Completed"
        runs = requests.get(f"{base}{export['id']}/runs/", headers=headers, timeout=5).json()["results"]
        assert [r["status"] for r in runs] == ["Completed", "Completed"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_plugin_import_is_cheap_and_airflow_free() -> None:
    code = (
        "import sys, airflow_provider_posthog.emulator.pytest_plugin, airflow_provider_posthog.emulator; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('airflow', 'uvicorn', 'starlette')"
        " or m.startswith(('airflow_provider_posthog.api', 'airflow_provider_posthog.hooks'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_emulator_never_imports_airflow() -> None:
    code = (
        "import sys; from airflow_provider_posthog.emulator import PostHogEmulator, EmulatorSettings\n"
        "with PostHogEmulator(EmulatorSettings()) as emu: pass\n"
        "bad = [m for m in sys.modules\n"
        "       if m.split('.')[0] == 'airflow' or m.startswith('airflow_provider_posthog.api')]\n"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def test_posthog_conn_fixture_sets_connection(posthog_conn: PostHogEmulator) -> None:
    value = json.loads(os.environ["AIRFLOW_CONN_POSTHOG_DEFAULT"])
    assert value["host"] == posthog_conn.base_url and value["conn_type"] == "posthog"


def test_context_manager_with_tls_and_own_settings(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    certfile, keyfile = files.certfile, files.keyfile
    settings = EmulatorSettings(api_key="phx_tls", project_id=42)
    with PostHogEmulator(settings, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)) as emu:
        assert emu.base_url.startswith("https://127.0.0.1:")
        assert (
            emu.airflow_conn_uri()
            == f"posthog://:phx_tls@https%3A%2F%2F127.0.0.1%3A{emu.port}/?project_id=42"
        )
        response = requests.get(emu.api_url(), headers=emu.auth_headers, verify=str(certfile), timeout=5)
        assert response.status_code == 200 and response.json()["count"] == 0
        assert emu.control.request_log[0].path == "/api/projects/42/batch_exports/"
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.api_url(), timeout=2, verify=False)


def test_cli_defaults_to_new_generation_and_schedules_runs() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_posthog.emulator", "--port", "0", "--schedule-runs",
         "--schedule-history", "3", "--legacy-pak-wording", "--no-logs-pak-access"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not info:
            line = proc.stdout.readline()
            if line.startswith("{"):
                info = json.loads(line)
        assert info["api_generation"] == "new"
        assert info["project_id"] == DEFAULT_PROJECT_ID == EmulatorSettings().project_id
        settings = requests.get(f"{info['base_url']}/_emulator/settings", timeout=5).json()
        assert settings["schedule_runs"] is True and settings["schedule_history"] == 3.0
        assert settings["legacy_pak_wording"] is True and settings["logs_pak_access"] is False
        base = f"{info['base_url']}/api/projects/{DEFAULT_PROJECT_ID}/batch_exports/"
        headers = {"Authorization": "Bearer phx_emulator_key"}
        export = requests.post(
            base,
            headers=headers,
            json={"name": "cli", "interval": "hour", "destination": {"type": "NoOp", "config": {}}},
            timeout=5,
        ).json()
        runs = requests.get(f"{base}{export['id']}/runs/", headers=headers, timeout=5).json()["results"]
        assert len(runs) == 3 and all(r["backfill"] is None for r in runs)
        logs = requests.get(f"{base}{export['id']}/logs/", headers=headers, timeout=5)
        assert logs.status_code == 403
        assert logs.json()["detail"] == "This action does not support Personal API Key access"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def _warns_short_secret(conn_value: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether reading this connection's extra makes Airflow's masker warn about a too-short secret."""
    from airflow.sdk import BaseHook
    from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker

    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_DEFAULT", conn_value)
    monkeypatch.setattr(SecretsMasker, "_has_warned_short_secret", False)
    conn = BaseHook.get_connection("posthog_default")
    assert str(conn.extra_dejson["project_id"]).isdigit()
    return bool(SecretsMasker._has_warned_short_secret)


def test_the_default_connection_does_not_make_airflow_warn_about_short_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow masks every value of a connection's extra and warns for those under five characters."""
    assert len(str(DEFAULT_PROJECT_ID)) >= 5
    emulator = PostHogEmulator(EmulatorSettings(), port=8010)  # never started: the values only
    assert emulator.airflow_conn_uri() == (
        f"posthog://:phx_emulator_key@http%3A%2F%2F127.0.0.1%3A8010/?project_id={DEFAULT_PROJECT_ID}"
    )
    assert not _warns_short_secret(emulator.airflow_conn_json(), monkeypatch)
    assert not _warns_short_secret(emulator.airflow_conn_uri(), monkeypatch)
    one_digit = PostHogEmulator(EmulatorSettings(project_id=1), port=8010)
    from airflow import __version__ as airflow_version

    # What the old default did, from Airflow 3.2 on (3.1's task-side masker has no short-secret warning).
    warns_for_short = tuple(int(p) for p in airflow_version.split(".")[:2]) >= (3, 2)
    assert _warns_short_secret(one_digit.airflow_conn_json(), monkeypatch) is warns_for_short


def test_help_is_self_contained_and_links_the_docs() -> None:
    from airflow_provider_posthog.emulator.cli import DOCS_URL, build_parser

    text = build_parser().format_help()
    assert (
        DOCS_URL
        == "https://github.com/airflow-provider-posthog/airflow-provider-posthog/blob/main/docs/emulator.md"
    )
    assert DOCS_URL in text and "docs/emulator.md" not in text.replace(DOCS_URL, "")
    assert f"/api/projects/{DEFAULT_PROJECT_ID}/batch_exports/" in text
    assert f"/project/{DEFAULT_PROJECT_ID}/pipeline/batch-exports" in text
    assert "AIRFLOW_CONN_POSTHOG_DEFAULT" in text and "/_emulator/fail_next_run" in text
    assert f"(default {DEFAULT_PROJECT_ID})" in text
