"""Fixtures for hook tests: env-var connections, fast emulator settings and a hook client per transport.

Constants and the fast retry policy live in hook_helpers.py. A module runs its emulator tests against both
PostHog API generations with ``pytestmark = BOTH_GENERATIONS``; otherwise the ``new`` one serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hook_clients import HookClient
from hook_helpers import EMULATOR_LOOKUP, FAST_POLICY, HOST, PROJECT, set_conn

from airflow_provider_posthog.emulator import EmulatorSettings

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def mock_conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    set_conn(monkeypatch)
    yield f"{HOST}/api/projects/{PROJECT}/batch_exports/"


@pytest.fixture
def posthog_emulator_settings(request: pytest.FixtureRequest) -> EmulatorSettings:
    """Runs and backfills that finish within a second; the API generation a module parametrizes."""
    return EmulatorSettings(
        api_generation=getattr(request, "param", "new"),
        run_duration=0.3,
        backfill_row_delay=0.2,
        backfill_run_delay=0.05,
        backfill_starting_time=0.1,
    )


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest, posthog_conn: Any) -> Iterator[HookClient]:
    """The sync or the async hook, connected to the emulator."""
    c = HookClient(request.param, retry_policy=FAST_POLICY, backfill_lookup=EMULATOR_LOOKUP)
    yield c
    c.close()
