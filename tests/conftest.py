"""Test-wide environment, set before anything imports Airflow (Airflow reads its configuration at import).

Each test area keeps its own fixtures in its own ``conftest.py`` (tests/emulator, tests/hooks, ...).
The emulator fixtures (``posthog_emulator`` ...) come from the package's own ``pytest11`` plugin.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "example_dags"))
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "f6pxXj0Rm3uvM1Ua_Sl5Z3LQ7RLJbPHRPP1JxX0nDfk=")


@pytest.fixture
def factories() -> ModuleType:
    """Record builders for tests that mock the hook (``factories.backfill(status)``, ``.run(status)``)."""
    import record_factories

    return record_factories
