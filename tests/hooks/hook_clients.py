"""Run the sync and the async hook through one interface, so each emulator test covers both transports."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.hooks.posthog import PostHogAsyncHook, PostHogHook, aclose_shared_clients

if TYPE_CHECKING:
    from collections.abc import Callable


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

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(aclose_shared_clients())
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
