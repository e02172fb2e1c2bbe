"""End-to-end fixtures: a migrated Airflow DB in the session's temp AIRFLOW_HOME, the example DAGs, a fast
emulator, and ``airflow_dags``: what every e2e module does with DAGs (parse a folder, build one, register it
for ``dag.test()``, change a task for one test) and reads back after a run (task instances, XComs, asset
events). Everything runs in one pytest process so the in-process Execution API starts only once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from airflow.sdk import DAG

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


class AirflowDags:
    """DAGs in and out of the metadata DB, for ``dag.test()`` runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch

    # -- in --------------------------------------------------------------------------------------------------
    @staticmethod
    def parse(folder: Path | str = EXAMPLES) -> dict[str, Any]:
        """The DAGs of ``folder``, freshly parsed (``dag.test()`` renders template fields in place, so a test
        about templates needs DAG objects no earlier run touched)."""
        from airflow_provider_posthog.compat import dagbag_class

        bag = dagbag_class()(dag_folder=str(folder))
        assert not bag.import_errors, bag.import_errors
        return dict(bag.dags)

    @staticmethod
    def new(dag_id: str) -> DAG:
        """An unscheduled DAG to build tasks in (``with airflow_dags.new("id") as dag: ...``)."""
        import pendulum
        from airflow.sdk import DAG

        return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)

    @staticmethod
    def register(dags: Iterable[DAG], *, unpause: tuple[str, ...] = ()) -> None:
        """Serialize DAGs built in a test into the metadata DB, as the DAG processor would (``dag.test()``
        runs only DAGs a bundle holds); unpause the given ones."""
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import update

        from airflow_provider_posthog.compat import dagbag_class
        from tests.airflow_versions import sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()
        bag = dagbag_class()(dag_folder="/nonexistent-e2e-dags")
        for dag in dags:
            bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        if unpause:
            with create_session() as session:
                session.execute(update(DagModel).where(DagModel.dag_id.in_(unpause)).values(is_paused=False))

    def with_task(self, dag: DAG, task_id: str, **attrs: Any) -> DAG:
        """``dag`` with attributes of one task changed for this test only (restored afterwards)."""
        task = dag.get_task(task_id)
        for name, value in attrs.items():
            self._monkeypatch.setattr(task, name, value)
        return dag

    # -- out -------------------------------------------------------------------------------------------------
    @staticmethod
    def task_states(dag_id: str, run_id: str) -> dict[str, tuple[str | None, int]]:
        """``{task_id: (state, try_number)}`` of a DAG run."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.scalars(
                select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            ).all()
            return {ti.task_id: (ti.state, ti.try_number) for ti in rows}

    @staticmethod
    def xcoms(dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
        """``{(task_id, key): value}`` of a DAG run."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.scalars(
                select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
            ).all()
            return {(r.task_id, r.key): XComModel.deserialize_value(r) for r in rows}

    @staticmethod
    def asset_events(dag_id: str, run_id: str) -> list[Any]:
        """The asset events a DAG run's tasks emitted, with their asset and source aliases loaded."""
        from airflow.models.asset import AssetEvent
        from airflow.utils.session import create_session
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        with create_session() as session:
            query = (
                select(AssetEvent)
                .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
                .options(joinedload(AssetEvent.asset), joinedload(AssetEvent.source_aliases))
            )
            events = list(session.scalars(query).unique())
            session.expunge_all()
            return events


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    from airflow.utils import db

    db.resetdb(skip_init=False)
    yield


@pytest.fixture
def airflow_dags(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> AirflowDags:
    return AirflowDags(monkeypatch)


@pytest.fixture(scope="session")
def example_dags(airflow_db: None) -> dict[str, Any]:
    """The example DAGs, parsed once per session (tests change them through ``airflow_dags.with_task``)."""
    return AirflowDags.parse(EXAMPLES)


@pytest.fixture
def posthog_emulator_settings() -> Any:
    from airflow_provider_posthog.emulator import EmulatorSettings

    return EmulatorSettings(run_duration=0.4, backfill_row_delay=0.1, backfill_run_delay=0.05)
