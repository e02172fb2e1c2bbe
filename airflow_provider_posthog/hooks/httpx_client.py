"""The triggers' transport: one pooled ``httpx.AsyncClient`` per event loop and base URL.

An HTTPS server drops a plain-HTTP request without an answer, which looks like any dropped connection; the
client's transport then asks the server for a TLS handshake (:func:`aserver_speaks_tls`) and, if it answers,
fails with :class:`~airflow_provider_posthog.api.errors.ServerSpeaksTLS` as the error's cause, which the error
mapping turns into a final "use https://" (as the sync transport does).

``httpx`` is imported inside functions, so importing this module costs no HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.errors import ServerSpeaksTLS
from airflow_provider_posthog.hooks.base import COMMON_HEADERS, looks_like_tls, tls_client_hello

if TYPE_CHECKING:
    import ssl

    import httpx

#: Pool size of each shared async client. PostHog allows ~8 requests/s per key (480/min); against the emulator
#: a burst of 1000 requests took 3.0 s with 16 connections and 9.6 s with 64 (pool scheduling overhead).
ASYNC_MAX_CONNECTIONS = 16
ASYNC_POOL_TIMEOUT = 60.0
#: Seconds the TLS probe of a server that dropped a plain-HTTP request may take at most.
TLS_PROBE_SECONDS = 5.0

# One httpx.AsyncClient per (event loop, base URL, TLS verify): shared TCP/TLS connections across hooks.
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], httpx.AsyncClient]
] = weakref.WeakKeyDictionary()
# With each client, the gate its requests pass (``send_gate``).
_SEND_GATES: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Semaphore]
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


async def aserver_speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether the server at ``host:port`` answers a TLS ClientHello with a TLS record."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(tls_client_hello())
        await asyncio.wait_for(writer.drain(), timeout)
        first = await asyncio.wait_for(reader.readexactly(3), timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return looks_like_tls(first)


@functools.cache
def _probing_transport_class() -> type[httpx.AsyncHTTPTransport]:
    """httpx's transport, probing for TLS when a server drops a plain-HTTP request unanswered."""
    import httpx

    class ProbingTransport(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            try:
                return await super().handle_async_request(request)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                if request.url.scheme != "http":
                    raise
                timeout: Any = request.extensions.get("timeout", {}).get("connect")
                seconds = min(TLS_PROBE_SECONDS, timeout or TLS_PROBE_SECONDS)
                port = request.url.port or 80
                if await aserver_speaks_tls(request.url.host, port, seconds):
                    speaks = ServerSpeaksTLS(f"{request.url.host}:{port} speaks TLS")
                    raise httpx.ConnectError(str(speaks), request=request) from speaks
                raise

    return ProbingTransport


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
        limits = httpx.Limits(
            max_connections=ASYNC_MAX_CONNECTIONS,
            max_keepalive_connections=ASYNC_MAX_CONNECTIONS,
            keepalive_expiry=4.0,
        )
        tls = _ssl_context(verify) if isinstance(verify, str) else verify
        client = httpx.AsyncClient(
            headers=COMMON_HEADERS,
            limits=limits,
            follow_redirects=False,
            verify=tls,
            # Proxies from the environment keep their own transports (mounts); direct requests use this one.
            transport=_probing_transport_class()(verify=tls, limits=limits),
        )
        per_loop[key] = client
    return client


def send_gate(base_url: str, verify: bool | str = True) -> asyncio.Semaphore:
    """The gate before the shared client of ``base_url`` in the running loop: as many requests at once as
    the pool has connections, the others wait here.

    httpcore's pool scans every request queued in it, for each connection, whenever a request enters or
    leaves, so its cost grows with the square of its queue: measured with 5,000 triggers in one loop, a
    burst that queued thousands of requests there raised the CPU per poll from 4 ms to 600 ms and never
    recovered (the loop lagged, so more requests queued). Waiting at a semaphore costs the same for any
    number of waiters.
    """
    loop = asyncio.get_running_loop()
    per_loop = _SEND_GATES.setdefault(loop, {})
    key = (base_url, str(verify))
    gate = per_loop.get(key)
    if gate is None:
        gate = per_loop[key] = asyncio.Semaphore(ASYNC_MAX_CONNECTIONS)
    return gate


async def aclose_shared_clients() -> None:
    """Close the pooled clients of the running loop (tests, graceful shutdown)."""
    _SEND_GATES.pop(asyncio.get_running_loop(), None)
    clients = _ASYNC_CLIENTS.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()
