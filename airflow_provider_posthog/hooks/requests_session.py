"""A ``requests`` session whose requests have an overall deadline (the sync hook's transport).

requests applies its read timeout to each read, so a server that trickles its answer (headers included) can
hold a request for as long as it likes. A :class:`Watchdog` timer shuts the request's socket down at the
deadline and the blocked read fails at once. The session's pools tell the current thread's watchdog which
connection its request got, and take it back once the connection returns to the pool, its answer read.

An HTTPS server drops a plain-HTTP request without an answer, which looks like any dropped connection; the
session's adapter then asks the server for a TLS handshake (:func:`server_speaks_tls`) and, if it answers,
fails with :class:`~airflow_provider_posthog.api.errors.ServerSpeaksTLS` in the error, which the error mapping
turns into a final "use https://".

``requests`` and ``urllib3`` are imported inside functions, like in ``hooks/posthog.py``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_posthog.api.errors import ServerSpeaksTLS
from airflow_provider_posthog.hooks.base import COMMON_HEADERS, looks_like_tls, tls_client_hello

if TYPE_CHECKING:
    import requests

#: Bytes read at a time from an answer (the size cap is checked after each read).
READ_CHUNK = 64 * 1024
#: Seconds the TLS probe of a server that dropped a plain-HTTP request may take at most.
TLS_PROBE_SECONDS = 5.0


def server_speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether the server at ``host:port`` answers a TLS ClientHello with a TLS record."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(tls_client_hello())
            first = b""
            while len(first) < 3:
                chunk = sock.recv(3 - len(first))
                if not chunk:
                    break
                first += chunk
    except OSError:
        return False
    return looks_like_tls(first)


def requests_not_sent(exc: BaseException) -> bool:
    """True when requests failed before the request could reach the server."""
    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason: Any = exc.args[0] if exc.args else None
        if isinstance(reason, urllib3.exceptions.MaxRetryError):
            reason = reason.reason
        return isinstance(
            reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        )
    return False


_USING = threading.local()

#: Seconds between tries to shut a connection that was still connecting when its watchdog fired.
_REFIRE = 0.05


class Watchdog:
    """Cuts the current thread's request short after ``seconds`` by shutting its connection's socket."""

    def __init__(self, seconds: float) -> None:
        self.conn: Any = None
        self.fired = False
        self._done = False
        self._released = False
        self._lock = threading.Lock()
        self._timer = self._arm(seconds)

    def _arm(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self._fire)
        timer.daemon = True
        return timer

    def __enter__(self) -> Watchdog:
        _USING.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        _USING.watchdog = None

    def stop(self) -> bool:
        """Disarm; True if the deadline came first (the answer read so far may be cut off)."""
        with self._lock:
            self._done = True
            self._timer.cancel()
            return self.fired

    def using(self, conn: Any) -> None:
        with self._lock:
            self.conn, self._released = conn, False

    def released(self, conn: Any) -> None:
        """``conn`` went back to the pool, its answer read to the end: no longer this request's to shut."""
        with self._lock:
            if conn is not None and self.conn is conn:
                self.conn, self._released = None, True

    def _fire(self) -> None:
        with self._lock:
            if self._done or self._released:
                return
            self.fired = True
            sock = getattr(self.conn, "sock", None)
            if sock is None:
                # Not connected yet (bounded by the connect timeout): shut the socket once it exists.
                self._timer = self._arm(_REFIRE)
                self._timer.start()
                return
        _shut(sock)


def _shut(sock: Any) -> None:
    """Shut a socket down under a blocked reader. For TLS, the plain socket's shutdown: ``SSLSocket``'s own
    would also unwrap it, and a read racing that raises ``ValueError`` instead of a connection error."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
    if isinstance(raw, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)


class _QuietWhenCut(logging.Filter):
    """Drops urllib3's "Failed to parse headers" warning (with a traceback) for headers a watchdog cut off:
    the request fails with ``PostHogDeadlineError``, which says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        watchdog = getattr(_USING, "watchdog", None)
        return watchdog is None or not watchdog.fired


@functools.cache
def _quiet_when_cut() -> None:
    logging.getLogger("urllib3.connection").addFilter(_QuietWhenCut())


@functools.cache
def _watched_pool_classes() -> dict[str, type]:
    """urllib3 pools that tell the current thread's watchdog which connection a request got."""
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def _get_conn(pool: Any, base: Any, timeout: float | None) -> Any:
        conn = base._get_conn(pool, timeout)
        watchdog = getattr(_USING, "watchdog", None)
        if watchdog is not None:
            watchdog.using(conn)
        return conn

    def _put_conn(pool: Any, base: Any, conn: Any) -> None:
        watchdog = getattr(_USING, "watchdog", None)
        if watchdog is not None:
            watchdog.released(conn)
        base._put_conn(pool, conn)

    class WatchedPool(HTTPConnectionPool):
        def _get_conn(self, timeout: float | None = None) -> Any:
            return _get_conn(self, HTTPConnectionPool, timeout)

        def _put_conn(self, conn: Any) -> None:
            _put_conn(self, HTTPConnectionPool, conn)

    class WatchedHTTPSPool(HTTPSConnectionPool):
        def _get_conn(self, timeout: float | None = None) -> Any:
            return _get_conn(self, HTTPSConnectionPool, timeout)

        def _put_conn(self, conn: Any) -> None:
            _put_conn(self, HTTPSConnectionPool, conn)

    return {"http": WatchedPool, "https": WatchedHTTPSPool}


def _dropped_plain_http(request: Any, exc: BaseException, proxies: Any) -> bool:
    """A plain-HTTP request, sent straight to the server (no proxy), that the server dropped unanswered."""
    import urllib3
    from requests.utils import select_proxy

    if urlsplit(request.url).scheme != "http" or select_proxy(request.url, proxies or {}):
        return False
    reason: Any = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.ProtocolError)


def new_session() -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    pools = _watched_pool_classes()
    _quiet_when_cut()

    class WatchedAdapter(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().send(request, *args, **kwargs)
            except requests.exceptions.ConnectionError as exc:
                if _dropped_plain_http(request, exc, kwargs.get("proxies")):
                    timeout = kwargs.get("timeout")
                    connect = timeout[0] if isinstance(timeout, tuple) else timeout
                    seconds = min(TLS_PROBE_SECONDS, connect or TLS_PROBE_SECONDS)
                    url = urlsplit(request.url)
                    if server_speaks_tls(url.hostname or "", url.port or 80, seconds):
                        raise requests.exceptions.ConnectionError(
                            ServerSpeaksTLS(f"{url.hostname}:{url.port or 80} speaks TLS"), request=request
                        ) from exc
                raise

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if hasattr(manager, "pool_classes_by_scheme"):
                manager.pool_classes_by_scheme = pools
            return manager

    session = requests.Session()
    session.headers.update(COMMON_HEADERS)
    for prefix in ("http://", "https://"):
        session.mount(prefix, WatchedAdapter())
    return session
