"""Shared constants and helpers of the hook tests (imported by test modules and conftest)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_posthog.api.backfills import BackfillLookup
from airflow_provider_posthog.api.retry import RetryPolicy

KEY = "phx_unit_test_key_0123456789abcdef"
HOST = "https://ph.example.test"
PROJECT = 7

#: Small waits so retry tests take milliseconds; Retry-After is capped at 50 ms.
FAST_POLICY = RetryPolicy(
    max_attempts=4, max_elapsed=10.0, backoff_initial=0.001, backoff_max=0.01, max_retry_after=0.05
)
FAST_LOOKUP = BackfillLookup(timeout=3.0, poll_initial=0.02, poll_max=0.1, max_posts=2)
#: Finds a just-created backfill within the emulator's row delay, polling often.
EMULATOR_LOOKUP = BackfillLookup(timeout=10.0, poll_initial=0.05, poll_max=0.2)

#: ``pytestmark`` of a module whose emulator tests run against both PostHog API generations (the
#: ``posthog_emulator_settings`` fixture of conftest.py reads the generation).
BOTH_GENERATIONS = pytest.mark.parametrize("posthog_emulator_settings", ["docs", "new"], indirect=True)


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = "posthog_default", **fields: Any) -> None:
    """Define an Airflow connection through the environment (JSON form)."""
    body: dict[str, Any] = {
        "conn_type": "posthog",
        "host": HOST,
        "password": KEY,
        "extra": {"project_id": PROJECT},
    }
    body.update(fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
