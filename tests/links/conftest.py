"""The links' end-to-end test runs tasks with ``dag.test()``: the e2e fixtures (metadata DB, DAG registry, a
fast emulator) serve it too."""

from __future__ import annotations

from tests.e2e.conftest import airflow_dags, airflow_db, posthog_emulator_settings

__all__ = ["airflow_dags", "airflow_db", "posthog_emulator_settings"]
