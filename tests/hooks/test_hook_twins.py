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
from airflow_provider_posthog.hooks.base import PostHogHookBase
from airflow_provider_posthog.hooks.posthog import PostHogAsyncHook, PostHogHook

if TYPE_CHECKING:
    from collections.abc import Callable


def _public(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_") and not isinstance(member, classmethod)
    }


def test_both_hooks_offer_the_same_methods_with_the_same_signatures() -> None:
    sync, async_ = _public(PostHogHook), _public(PostHogAsyncHook)
    assert set(sync) - {"get_conn", "close"} == set(async_)
    for name, method in async_.items():
        assert inspect.iscoroutinefunction(method), name
        assert inspect.signature(method) == inspect.signature(sync[name]), name
        if name != "ui_url":  # the async one says why it is async
            assert method.__doc__ == sync[name].__doc__, name


@pytest.mark.parametrize("name", ["get_batch_export_logs", "get_run_logs"])
def test_log_limits_default_to_the_endpoint_maximum(name: str) -> None:
    for source in (PostHogHook, PostHogAsyncHook, endpoints):
        assert inspect.signature(getattr(source, name)).parameters["limit"].default == LOGS_MAX_LIMIT


def test_the_senders_are_symmetric() -> None:
    """Both ``_send`` take the retry policy; both drivers share one base without I/O."""
    assert issubclass(PostHogHook, PostHogHookBase) and issubclass(PostHogAsyncHook, PostHogHookBase)
    sync = inspect.signature(PostHogHook._send)
    async_ = inspect.signature(PostHogAsyncHook._send)
    assert list(sync.parameters) == list(async_.parameters) == ["self", "spec", "settings", "policy"]


def test_hook_module_imports_no_http_library_eagerly() -> None:
    """Operators import the hook lazily; the sync hook imports requests only when it sends."""
    code = (
        "import sys; import airflow_provider_posthog.hooks.posthog; "
        "import airflow_provider_posthog.api.backfills; "
        "print('requests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


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
        .replace("self._settings(", "await self._asettings(")
        .replace("self._run(", "await self._run(")
        .replace("self._send(", "await self._send(")
    )


def test_each_async_method_is_its_sync_twin_awaiting_the_io() -> None:
    """The public bodies are one text: the async hook is the sync one with ``await`` (as unasync checks)."""
    sync = _public(PostHogHook)
    for name, method in _public(PostHogAsyncHook).items():
        expected = _normalized(_as_async(inspect.getsource(sync[name])))
        assert _normalized(inspect.getsource(method)) == expected, name
