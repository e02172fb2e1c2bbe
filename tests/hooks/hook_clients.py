"""Run the sync and the async hook through one interface, so each emulator test covers both transports."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook, aclose_shared_clients

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_posthog.api.http import Operation

T = TypeVar("T")


class HookClient:
    """Calls ``PostHogHook`` methods directly, or ``PostHogAsyncHook`` methods on one private event loop.

    The loop lives for the whole test so the pooled async client is really reused between calls.
    """

    def __init__(self, kind: str, **hook_kwargs: Any) -> None:
        self.kind = kind
        self._loop: asyncio.AbstractEventLoop | None = None
        self.hook: PostHogHook | PostHogAsyncHook
        if kind == "sync":
            self.hook = PostHogHook(**hook_kwargs)
        else:
            self.hook = PostHogAsyncHook(**hook_kwargs)
            self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        attr = getattr(self.hook, name)
        if self._loop is None:
            return attr
        loop = self._loop

        def call(*args: Any, **kwargs: Any) -> Any:
            return loop.run_until_complete(attr(*args, **kwargs))

        return call

    def run(
        self, op: Operation[T], project_id: int | str | None = None, *, deadline: float | None = None
    ) -> T:
        """Drive an operation: ``run`` of the sync hook, ``arun`` of the async one."""
        if isinstance(self.hook, PostHogHook):
            return self.hook.run(op, project_id, deadline=deadline)
        assert self._loop is not None
        return self._loop.run_until_complete(self.hook.arun(op, project_id, deadline=deadline))

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(aclose_shared_clients())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())  # as asyncio.run() does
            self._loop.close()
            self._loop = None


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
