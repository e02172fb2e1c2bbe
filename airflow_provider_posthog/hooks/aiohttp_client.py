"""The triggers' transport: one pooled ``aiohttp.ClientSession`` per event loop, base URL and TLS setting.

aiohttp, not httpx: measured on one GET over a kept-alive TLS connection to a local server, httpx (with
httpcore and anyio under it) spent 1.78 ms of CPU per request and aiohttp 0.54 ms (its HTTP parser is C). A
triggerer's CPU is almost all HTTP, so this sets how many waits one triggerer carries.

The sessions of a loop are closed when the loop shuts down (``asyncio.run`` and Airflow's triggerer finalize
the loop's async generators; one of them holds the sessions), so no "Unclosed client session" is logged.

An HTTPS server drops a plain-HTTP request without an answer, which looks like any dropped connection; the
transport then asks the server for a TLS handshake (:func:`aserver_speaks_tls`) and, if it answers, raises
:class:`~airflow_provider_posthog.api.errors.ServerSpeaksTLS`, which the error mapping turns into a final
"use https://" (as the sync transport does).

``aiohttp`` is imported inside functions, so importing this module costs no HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.errors import ServerSpeaksTLS
from airflow_provider_posthog.hooks.base import COMMON_HEADERS, looks_like_tls, tls_client_hello

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator

    import aiohttp

#: Connections of each shared session. PostHog allows ~8 requests/s per key (480/min); more requests wait in
#: aiohttp's connector (a queue that costs the same for any number of waiters) within their attempt deadline.
ASYNC_MAX_CONNECTIONS = 16
#: Seconds an idle pooled connection is kept (below the usual 5 s of servers and load balancers).
KEEPALIVE_SECONDS = 4.0
#: Seconds the TLS probe of a server that dropped a plain-HTTP request may take at most.
TLS_PROBE_SECONDS = 5.0

_Key = tuple[str, str]


class _LoopSessions:
    """The sessions of one event loop, and the async generator that closes them when the loop shuts down."""

    def __init__(self) -> None:
        self.sessions: dict[_Key, aiohttp.ClientSession] = {}
        self.closer: Any = None

    async def close(self) -> None:
        sessions, self.sessions = self.sessions, {}
        for session in sessions.values():
            await session.close()


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSessions] = weakref.WeakKeyDictionary()


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop, owned: _LoopSessions) -> AsyncIterator[None]:
    """Suspended for the loop's life; ``loop.shutdown_asyncgens()`` resumes it into ``finally``."""
    try:
        yield
    finally:
        if _LOOPS.get(loop) is owned:
            del _LOOPS[loop]  # the sessions refer to the loop: drop them with it
        await owned.close()


def _loop_sessions() -> _LoopSessions:
    loop = asyncio.get_running_loop()
    owned = _LOOPS.get(loop)
    if owned is None:
        owned = _LOOPS[loop] = _LoopSessions()
        owned.closer = _close_at_shutdown(loop, owned)
        # Run it to its ``yield`` now: its first step registers it with the loop's async generators.
        with contextlib.suppress(StopIteration):
            owned.closer.__anext__().send(None)
    return owned


def ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    """What ``verify`` asks for, as httpx and requests read it: ``False`` (no verification), a CA bundle
    file or directory, or ``True``: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set, else certifi's roots (the
    bundle requests uses), so a machine without system CA certificates still verifies PostHog."""
    import ssl

    if verify is False:
        return False
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(
            cafile=os.environ.get("SSL_CERT_FILE") or None, capath=os.environ.get("SSL_CERT_DIR") or None
        )
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def shared_async_session(base_url: str, verify: bool | str = True) -> aiohttp.ClientSession:
    """The pooled session of the running event loop for ``base_url`` (created on first use).

    Every PostHogAsyncHook in one triggerer loop shares it, so thousands of triggers reuse a few TCP/TLS
    connections instead of opening one per poll. Authorization is sent per request and no cookie is kept,
    so hooks with different keys share a session and nothing passes from one to another.
    """
    import aiohttp

    owned = _loop_sessions()
    key = (base_url, str(verify))
    session = owned.sessions.get(key)
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(
            limit=ASYNC_MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS, ssl=ssl_context(verify)
        )
        proxy, proxy_auth = env_proxy(base_url)
        session = owned.sessions[key] = aiohttp.ClientSession(
            connector=connector,
            headers=COMMON_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            # Not trust_env: it looks the proxy and ~/.netrc up in a thread at every request (two thread
            # hops per poll), and a netrc entry for the host would clash with the Authorization header.
            proxy=proxy,
            proxy_auth=proxy_auth,
            timeout=aiohttp.ClientTimeout(total=None),  # each request passes its own
        )
        # aiohttp resends an idempotent request once, unlogged, when the server drops the connection; the
        # hook's retry policy is the one that decides, counts and logs attempts.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
    return session


def env_proxy(base_url: str) -> tuple[Any, Any]:
    """The proxy (and its credentials) that ``HTTP(S)_PROXY``/``NO_PROXY`` give ``base_url``, as requests and
    httpx read them: ``(None, None)`` for none. Read once per session: its requests all go to that host."""
    import yarl
    from aiohttp.helpers import get_env_proxy_for_url

    try:
        return get_env_proxy_for_url(yarl.URL(base_url))
    except LookupError:
        return None, None


def not_sent(exc: BaseException) -> bool:
    """Whether an aiohttp error proves the request never reached the server (connect or TLS failed)."""
    import aiohttp

    return isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, ServerSpeaksTLS))


def dropped(exc: BaseException) -> bool:
    """Whether the server closed the connection without an answer (what an HTTPS server does to HTTP)."""
    import aiohttp

    return isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)) and not isinstance(
        exc, aiohttp.ClientConnectorError
    )


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


async def raise_if_speaks_tls(url: Any, connect_timeout: float | None) -> None:
    """After a plain-HTTP request was dropped: :class:`ServerSpeaksTLS` if the server answers TLS."""
    if url.scheme != "http":
        return
    seconds = min(TLS_PROBE_SECONDS, connect_timeout or TLS_PROBE_SECONDS)
    port = url.port or 80
    if await aserver_speaks_tls(url.host, port, seconds):
        raise ServerSpeaksTLS(f"{url.host}:{port} speaks TLS")


async def aclose_shared_clients() -> None:
    """Close the pooled sessions of the running loop (tests, graceful shutdown)."""
    owned = _LOOPS.get(asyncio.get_running_loop())
    if owned is not None:
        await owned.closer.aclose()  # its ``finally`` forgets the loop's sessions and closes them
