"""The copyable DAGs of the destination pages parse and serialize with no connection defined."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_posthog.destinations import DestinationBuilder

if TYPE_CHECKING:
    from unittest import mock

DOCS = Path(__file__).resolve().parents[2] / "docs" / "destinations"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
PAGES = sorted(DOCS.glob("*.md"))


def test_every_builder_has_a_page() -> None:
    from airflow_provider_posthog import destinations

    builders = {n for n in destinations.__all__ if n.endswith("Destination")}
    documented = {m for page in PAGES for m in re.findall(r"^# (\w+Destination)$", page.read_text(), re.M)}
    assert documented == builders


def _exec_dags(code: str, page: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run a snippet as a DAG file; collect its DAGs the way Airflow's DagBag does."""
    from airflow.sdk import DAG
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    name = f"docs_destinations_{page.stem}"
    module = types.ModuleType(name)
    module.__file__ = str(page)
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(DagContext, "current_autoregister_module_name", name)
    monkeypatch.setattr(DagContext, "autoregistered_dags", set())
    exec(compile(code, str(page), "exec"), module.__dict__)
    dags = {id(dag): dag for dag, mod in DagContext.autoregistered_dags if mod is module}
    dags.update({id(v): v for v in vars(module).values() if isinstance(v, DAG)})
    return list(dags.values())


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_dag_parses_and_serializes_without_connections(
    page: Path, no_lookup: mock.MagicMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.airflow_versions import dag_serialization

    DagSerialization = dag_serialization()

    blocks = FENCE.findall(page.read_text())
    assert len(blocks) == 1, "one copyable DAG per page"
    dags = _exec_dags(blocks[0], page, monkeypatch)
    assert len(dags) == 1
    builders = [
        t.destination
        for t in dags[0].tasks
        if isinstance(getattr(t, "destination", None), DestinationBuilder)
    ]
    assert len(builders) == 1
    json.dumps(DagSerialization.to_dict(dags[0]))  # what the DAG processor stores: must not fail
    assert no_lookup.call_count == 0
