"""The triggers' transport: one pooled ``httpx.AsyncClient`` per event loop and base URL.

``httpx`` is imported inside functions, so importing this module costs no HTTP library.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

from airflow_provider_posthog.hooks.base import COMMON_HEADERS

if TYPE_CHECKING:
    import ssl

    import httpx

#: Pool size of each shared async client. PostHog allows ~8 requests/s per key (480/min); against the emulator
#: a burst of 1000 requests took 3.0 s with 16 connections and 9.6 s with 64 (pool scheduling overhead).
ASYNC_MAX_CONNECTIONS = 16
ASYNC_POOL_TIMEOUT = 60.0

# One httpx.AsyncClient per (event loop, base URL, TLS verify): shared TCP/TLS connections across hooks.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], httpx.AsyncClient]
] = weakref.WeakKeyDictionary()


def httpx_not_sent(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _ssl_context(ca_path: str) -> ssl.SSLContext:
    """A CA bundle file or directory as httpx wants it (a path string for ``verify`` is deprecated there)."""
    import os
    import ssl

    if os.path.isdir(ca_path):
        return ssl.create_default_context(capath=ca_path)
    return ssl.create_default_context(cafile=ca_path)


def shared_async_client(base_url: str, verify: bool | str = True) -> httpx.AsyncClient:
    """The pooled client of the running event loop for ``base_url`` (created on first use).

    Every PostHogAsyncHook in one triggerer loop shares it, so thousands of triggers reuse a few TCP/TLS
    connections instead of opening one per poll. Authorization is sent per request, so hooks with different
    keys can share a client.
    """
    import httpx

    loop = asyncio.get_running_loop()
    per_loop = _ASYNC_CLIENTS.setdefault(loop, {})
    key = (base_url, str(verify))
    client = per_loop.get(key)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            headers=COMMON_HEADERS,
            limits=httpx.Limits(
                max_connections=ASYNC_MAX_CONNECTIONS,
                max_keepalive_connections=ASYNC_MAX_CONNECTIONS,
                keepalive_expiry=4.0,
            ),
            follow_redirects=False,
            verify=_ssl_context(verify) if isinstance(verify, str) else verify,
        )
        per_loop[key] = client
    return client


async def aclose_shared_clients() -> None:
    """Close the pooled clients of the running loop (tests, graceful shutdown)."""
    clients = _ASYNC_CLIENTS.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()
