"""A ``requests`` session whose requests have an overall deadline (the sync hook's transport).

requests applies its read timeout to each read, so a server that trickles its answer (headers included) can
hold a request for as long as it likes. A :class:`Watchdog` timer shuts the request's socket down at the
deadline and the blocked read fails at once. The session's pools tell the current thread's watchdog which
connection its request got, and take it back once the connection returns to the pool, its answer read.

``requests`` and ``urllib3`` are imported inside functions, like in ``hooks/posthog.py``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.hooks.base import COMMON_HEADERS

if TYPE_CHECKING:
    import requests

#: Bytes read at a time from an answer (the size cap is checked after each read).
READ_CHUNK = 64 * 1024


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


def new_session() -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    pools = _watched_pool_classes()
    _quiet_when_cut()

    class WatchedAdapter(HTTPAdapter):
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
