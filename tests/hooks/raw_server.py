"""A bare-socket HTTP server on 127.0.0.1 for answers no real server gives on purpose: headers trickled one
byte at a time, bodies that never end. Each connection's request head is read, then ``answer`` writes."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType


class RawServer:
    """Serve ``answer(server, conn)`` to every request until the ``with`` block ends.

    ``requests`` counts the requests, ``sent`` the bytes the answers wrote (through :meth:`send`), and
    ``hung_up`` is set once a client closed a connection before its answer was complete.
    """

    def __init__(self, answer: Callable[[RawServer, socket.socket], None]) -> None:
        self.answer = answer
        self.requests = 0
        self.sent = 0
        self.hung_up = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

    def trickle(self, conn: socket.socket, data: bytes, every: float) -> None:
        """``data`` one byte every ``every`` seconds, until it is all sent or the server stops."""
        for i in range(len(data)):
            if self.stopping.wait(every):
                return
            self.send(conn, data[i : i + 1])

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, name="raw-http-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._sock.close()

    def _accept(self) -> None:
        self._sock.settimeout(0.05)  # closing a listening socket does not wake accept() everywhere
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            with self._lock:
                self.requests += 1
            try:
                self.answer(self, conn)
            except OSError:  # the client hung up (reset or broken pipe)
                self.hung_up.set()
                return
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
