"""pytest11 plugin: ``posthog_emulator``, ``posthog_emulator_settings`` and ``posthog_conn`` fixtures.

One server runs per test session (started on first use); every test gets fresh state and its own settings.
Importing this module is cheap (stdlib + pytest only): it is loaded by every pytest run where the package
is installed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .server import PostHogEmulator
    from .settings import EmulatorSettings


@pytest.fixture(scope="session")
def _posthog_emulator_server() -> Iterator[PostHogEmulator]:
    from .server import PostHogEmulator
    from .settings import EmulatorSettings

    with PostHogEmulator(EmulatorSettings()) as emulator:
        yield emulator


@pytest.fixture
def posthog_emulator_settings() -> EmulatorSettings:
    """Override in your conftest/test module to change the emulator's settings for those tests."""
    from .settings import EmulatorSettings

    return EmulatorSettings()


@pytest.fixture
def posthog_emulator(
    _posthog_emulator_server: PostHogEmulator, posthog_emulator_settings: EmulatorSettings
) -> Iterator[PostHogEmulator]:
    """A running emulator with fresh state and ``posthog_emulator_settings`` applied."""
    emulator = _posthog_emulator_server
    control = emulator.control
    wanted = {
        f.name: getattr(posthog_emulator_settings, f.name)
        for f in dataclasses.fields(posthog_emulator_settings)
    }
    control.configure(**wanted)
    control.reset(full=True)
    yield emulator
    control.clear_faults()


@pytest.fixture
def posthog_conn(posthog_emulator: PostHogEmulator, monkeypatch: pytest.MonkeyPatch) -> PostHogEmulator:
    """The emulator, with ``AIRFLOW_CONN_POSTHOG_DEFAULT`` pointing at it for this test."""
    monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_DEFAULT", posthog_emulator.airflow_conn_json())
    return posthog_emulator
