"""Local emulator of PostHog's batch-exports REST API, with HTML pages at PostHog's UI paths.

Guide: https://github.com/airflow-provider-posthog/airflow-provider-posthog/blob/main/docs/emulator.md

Imports are lazy so ``import airflow_provider_posthog.emulator`` (e.g. by the pytest plugin) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .control import Control
    from .server import PostHogEmulator
    from .settings import EmulatorSettings

__all__ = ["Control", "EmulatorSettings", "PostHogEmulator"]


def __getattr__(name: str) -> Any:
    if name == "PostHogEmulator":
        from .server import PostHogEmulator

        return PostHogEmulator
    if name == "EmulatorSettings":
        from .settings import EmulatorSettings

        return EmulatorSettings
    if name == "Control":
        from .control import Control

        return Control
    raise AttributeError(name)
