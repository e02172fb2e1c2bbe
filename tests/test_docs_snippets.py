"""The docs do not lie: every ```python block compiles, every DAG block builds offline, tables match the code.

* Every ```python block in README.md and docs/**/*.md compiles.
* Every block that defines a DAG (``DAG(`` or ``@dag``) runs with ``exec`` in a fresh module namespace while
  ``socket.socket.connect`` raises, and yields at least one DAG containing each PostHog operator/sensor class
  the block instantiates. A block preceded by ``<!-- snippet: fragment -->`` is only compiled.
* Each per-class page (docs/operators/*.md, docs/sensors/*.md) has exactly one snippet, a DAG using that
  class, and a parameter table whose names, defaults and "Templated" column match the constructor and
  ``template_fields`` of the class.
"""

from __future__ import annotations

import ast
import inspect
import re
import socket
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow.sdk import DAG

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
FRAGMENT_MARK = "<!-- snippet: fragment -->"
CLASS_USE = re.compile(r"\b(PostHog\w+(?:Operator|Sensor))\s*\(")

#: Per-class pages and the class each documents (module path, class name).
CLASS_PAGES: dict[str, tuple[str, str]] = {
    "docs/operators/create_batch_export.md": ("operators.batch_export", "PostHogCreateBatchExportOperator"),
    "docs/operators/update_batch_export.md": ("operators.batch_export", "PostHogUpdateBatchExportOperator"),
    "docs/operators/delete_batch_export.md": ("operators.batch_export", "PostHogDeleteBatchExportOperator"),
    "docs/operators/pause_batch_export.md": ("operators.batch_export", "PostHogPauseBatchExportOperator"),
    "docs/operators/unpause_batch_export.md": ("operators.batch_export", "PostHogUnpauseBatchExportOperator"),
    "docs/operators/create_backfill.md": ("operators.backfill", "PostHogCreateBackfillOperator"),
    "docs/operators/retry_run.md": ("operators.backfill", "PostHogRetryRunOperator"),
    "docs/operators/cancel_run.md": ("operators.backfill", "PostHogCancelRunOperator"),
    "docs/operators/cancel_backfill.md": ("operators.backfill", "PostHogCancelBackfillOperator"),
    "docs/sensors/backfill.md": ("sensors.batch_export", "PostHogBackfillSensor"),
    "docs/sensors/batch_export_run.md": ("sensors.batch_export", "PostHogBatchExportRunSensor"),
}


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int
    code: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def defines_dag(self) -> bool:
        return "DAG(" in self.code or "@dag" in self.code


def _snippets(path: Path) -> list[Snippet]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        fragment = bool(before) and before[-1].strip() == FRAGMENT_MARK
        found.append(Snippet(path, text.count("\n", 0, match.start()) + 1, match.group(1), fragment))
    return found


SNIPPETS = [s for path in DOC_FILES for s in _snippets(path)]
DAG_SNIPPETS = [s for s in SNIPPETS if s.defines_dag and not s.fragment]


def _class(module: str, name: str) -> type:
    mod = __import__(f"airflow_provider_posthog.{module}", fromlist=[name])
    cls = getattr(mod, name)
    assert isinstance(cls, type)
    return cls


def build_dags(snippet: Snippet, monkeypatch: pytest.MonkeyPatch) -> list[DAG]:
    """Exec a snippet as a fresh module with the network cut off; return the DAGs it defined."""
    from airflow.sdk import DAG
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{snippet.id} opened a network connection while the DAG was built: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    name = "docs_snippet_" + re.sub(r"\W", "_", snippet.id)
    module = types.ModuleType(name)
    module.__file__ = str(snippet.path)
    monkeypatch.setitem(sys.modules, name, module)
    # How Airflow's DagBag collects `with DAG(...):` blocks that bind no name.
    monkeypatch.setattr(DagContext, "current_autoregister_module_name", name)
    monkeypatch.setattr(DagContext, "autoregistered_dags", set())
    exec(compile(snippet.code, snippet.id, "exec"), module.__dict__)
    dags = {id(dag): dag for dag, mod in DagContext.autoregistered_dags if mod is module}
    dags.update({id(v): v for v in vars(module).values() if isinstance(v, DAG)})
    return list(dags.values())


def test_docs_have_snippets_and_every_class_page_exists() -> None:
    pages = {str(s.path.relative_to(ROOT)) for s in DAG_SNIPPETS}
    assert set(CLASS_PAGES) <= pages, sorted(set(CLASS_PAGES) - pages)
    assert len(SNIPPETS) >= 20
    assert len(DAG_SNIPPETS) >= len(CLASS_PAGES) + 2  # + README and connection.md


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_compiles(snippet: Snippet) -> None:
    compile(snippet.code, snippet.id, "exec")


@pytest.mark.parametrize("snippet", DAG_SNIPPETS, ids=[s.id for s in DAG_SNIPPETS])
def test_dag_snippet_builds_offline(snippet: Snippet, monkeypatch: pytest.MonkeyPatch) -> None:
    dags = build_dags(snippet, monkeypatch)
    assert dags, f"{snippet.id} defines no DAG"
    task_types = {type(task).__name__ for dag in dags for task in dag.tasks}
    used = set(CLASS_USE.findall(snippet.code))
    assert used, f"{snippet.id} uses no PostHog operator or sensor"
    assert used <= task_types, f"{snippet.id}: {sorted(used - task_types)} not in its DAG"


def test_network_guard_is_effective(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard used above really stops a connection attempt made while a snippet runs."""
    code = "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n"
    with pytest.raises(AssertionError, match="opened a network connection"):
        build_dags(Snippet(ROOT / "README.md", 0, code, False), monkeypatch)


def _parameter_table(text: str) -> dict[str, tuple[str, str]]:
    """``{name: (default cell, templated cell)}`` from the page's "## Parameters" table."""
    section = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`(\w+)`\s*\|([^|]*)\|([^|]*)\|", line)
        if match:
            rows[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    return rows


def _own_parameters(cls: type) -> dict[str, Any]:
    """Constructor parameters defined by this provider's classes in the MRO (name -> default)."""
    params: dict[str, Any] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("airflow_provider_posthog") or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
            if p.name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY:
                params.setdefault(p.name, p.default)
    return params


@pytest.mark.parametrize("page", sorted(CLASS_PAGES))
def test_class_page_matches_code(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = _class(*CLASS_PAGES[page])
    path = ROOT / page
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {cls.__name__}\n")
    assert f"`airflow_provider_posthog.{CLASS_PAGES[page][0]}.{cls.__name__}`" in text

    snippets = _snippets(path)
    assert len(snippets) == 1, f"{page} should have exactly one snippet"
    dags = build_dags(snippets[0], monkeypatch)
    assert any(isinstance(task, cls) for dag in dags for task in dag.tasks)

    table = _parameter_table(text)
    params = _own_parameters(cls)
    assert set(table) == set(params), f"documented {sorted(table)} != constructor {sorted(params)}"
    template_fields = set(getattr(cls, "template_fields", ()))
    for name, (default_cell, templated_cell) in table.items():
        default = params[name]
        if default_cell == "required":
            assert default is inspect.Parameter.empty, f"{name} has a default ({default!r})"
        else:
            assert default is not inspect.Parameter.empty, f"{name} is required in the code"
            literal = re.fullmatch(r"`([^`]*)`", default_cell)
            try:
                documented = ast.literal_eval(literal.group(1)) if literal else None
            except (ValueError, SyntaxError):
                documented = None  # prose such as `[operators] default_deferrable`: computed from None
            assert documented == default, f"{name}: documented {default_cell}, code {default!r}"
        assert templated_cell in ("yes", "no"), f"{name}: Templated must be yes or no"
        assert (templated_cell == "yes") == (name in template_fields), f"{name}: templated is wrong"


LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s#]*)(?:#([\w-]+))?\)")
#: Written by ``make bench``, not part of a fresh clone until the lead commits a run's results.
GENERATED = {ROOT / "benchmarks" / "RESULTS.md"}


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", text), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_relative_links_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for target, anchor in LINK.findall(text):
        resolved = (path.parent / target).resolve() if target else path
        where = path.relative_to(ROOT)
        assert resolved.exists() or resolved in GENERATED, f"{where} links to missing {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved.read_text(encoding="utf-8")), f"{target}#{anchor} is missing"
