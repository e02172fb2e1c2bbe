"""End-to-end fixtures: a migrated Airflow DB in the session's temp AIRFLOW_HOME, the example DAGs, a fast
emulator. Everything runs in one pytest process so the in-process Execution API starts only once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    from airflow.utils import db

    db.resetdb(skip_init=False)
    yield


@pytest.fixture(scope="session")
def example_dags(airflow_db: None) -> dict[str, Any]:
    from airflow_provider_posthog.compat import dagbag_class

    bag = dagbag_class()(dag_folder=str(EXAMPLES))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


@pytest.fixture
def posthog_emulator_settings() -> Any:
    from airflow_provider_posthog.emulator import EmulatorSettings

    return EmulatorSettings(run_duration=0.4, backfill_row_delay=0.1, backfill_run_delay=0.05)
