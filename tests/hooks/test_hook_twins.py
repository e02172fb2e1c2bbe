"""The sync and async hooks are one API: same public methods, signatures, defaults and docstrings."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_posthog.api import endpoints
from airflow_provider_posthog.api.http import LOGS_MAX_LIMIT
from airflow_provider_posthog.hooks import posthog as hook_module
from airflow_provider_posthog.hooks import posthog_async as async_hook_module
from airflow_provider_posthog.hooks.base import PostHogHookBase
from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook

if TYPE_CHECKING:
    from collections.abc import Callable


def _public(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_") and not isinstance(member, classmethod)
    }


#: Sync name -> async name where they differ: the driver is ``run`` in one and ``arun`` in the other.
RENAMED = {"run": "arun"}


def _twins() -> list[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    """(async name, sync method, async method) of every public method."""
    sync = _public(PostHogHook)
    return [
        (RENAMED.get(name, name), method, getattr(PostHogAsyncHook, RENAMED.get(name, name)))
        for name, method in sync.items()
        if name not in ("get_conn", "close")
    ]


def test_both_hooks_offer_the_same_methods_with_the_same_signatures() -> None:
    sync, async_ = _public(PostHogHook), _public(PostHogAsyncHook)
    assert {RENAMED.get(name, name) for name in sync} - {"get_conn", "close"} == set(async_)
    for name, sync_method, method in _twins():
        assert inspect.iscoroutinefunction(method), name
        assert inspect.signature(method) == inspect.signature(sync_method), name


def test_each_method_is_documented_in_both_modules_alike() -> None:
    """Docstrings are written where the methods are defined (nothing copies them at import)."""
    for name, sync_method, method in _twins():
        assert sync_method.__doc__ and method.__doc__, name
        if name != "ui_url":  # the async one says why it is async
            assert method.__doc__ == sync_method.__doc__, name
    assert "__doc__ =" not in inspect.getsource(hook_module) + inspect.getsource(async_hook_module)


@pytest.mark.parametrize("name", ["get_batch_export_logs", "get_run_logs"])
def test_log_limits_default_to_the_endpoint_maximum(name: str) -> None:
    for source in (PostHogHook, PostHogAsyncHook, endpoints):
        assert inspect.signature(getattr(source, name)).parameters["limit"].default == LOGS_MAX_LIMIT


def test_the_senders_are_symmetric() -> None:
    """Both ``_send`` take the retry policy and the call's deadline; both share one base without I/O."""
    assert issubclass(PostHogHook, PostHogHookBase) and issubclass(PostHogAsyncHook, PostHogHookBase)
    for method in ("_send", "_send_once"):
        sync = inspect.signature(getattr(PostHogHook, method))
        async_ = inspect.signature(getattr(PostHogAsyncHook, method))
        assert sync == async_, method
    assert list(inspect.signature(PostHogHook._send).parameters) == [
        "self",
        "spec",
        "settings",
        "policy",
        "deadline",
    ]


def test_hook_module_imports_no_http_library_and_not_its_twin() -> None:
    """Operators import the hook lazily; the sync hook imports requests only when it sends, and never the
    async hook (triggers import that one themselves)."""
    code = (
        "import sys; import airflow_provider_posthog.hooks.posthog; "
        "import airflow_provider_posthog.api.backfills; "
        "print('requests' in sys.modules, 'airflow_provider_posthog.hooks.posthog_async' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
    # Not even lazily, inside a function.
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(inspect.getsource(hook_module)))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert "airflow_provider_posthog.hooks.base" in imported
    assert not any(name and name.endswith("posthog_async") for name in imported), imported


def _normalized(source: str) -> str:
    """A method's code without its docstring, in one canonical layout."""
    func = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
    if ast.get_docstring(func) is not None:
        func.body = func.body[1:]
    return ast.unparse(func)


def _as_async(sync_source: str) -> str:
    """The sync method as its async twin must read: the same code, awaiting the I/O."""
    return (
        sync_source.replace("def ", "async def ", 1)
        .replace("def run(", "def arun(", 1)
        .replace("self._settings(", "await self._asettings(")
        .replace("self.run(", "await self.arun(")
        .replace("self._send(", "await self._send(")
        .replace("self._drive(", "await self._drive(")
        .replace("self._answer(", "await self._answer(")
        .replace("self._send_once(", "await self._send_once(")
        .replace("time.sleep(", "await asyncio.sleep(")
        .replace(".retrying(", ".async_retrying(")
        .replace("for attempt in", "async for attempt in")
    )


def test_each_async_method_is_its_sync_twin_awaiting_the_io() -> None:
    """The public bodies and the drivers are one text: the async hook is the sync one with ``await`` (as
    unasync checks)."""
    drivers = [
        (name, getattr(PostHogHook, name), getattr(PostHogAsyncHook, name)) for name in ("_send", "_drive")
    ]
    for name, sync_method, method in [*_twins(), *drivers]:
        expected = _normalized(_as_async(inspect.getsource(sync_method)))
        assert _normalized(inspect.getsource(method)) == expected, name
