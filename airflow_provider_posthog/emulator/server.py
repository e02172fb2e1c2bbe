"""``PostHogEmulator``: the emulator as a context manager (uvicorn in a background thread on a free port)."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import uvicorn

from .app import TRANSPORTS, create_app
from .control import Control
from .settings import EmulatorSettings

if TYPE_CHECKING:
    import asyncio
    from types import TracebackType


def _protocol_class(kind: str) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol plus a registry of live transports, so a fault can drop a connection."""
    if kind == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]

    class Protocol(base):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._emulator_key = (
                _addr(transport.get_extra_info("peername")),
                _addr(transport.get_extra_info("sockname")),
            )
            TRANSPORTS[self._emulator_key] = transport

        def shutdown(self) -> None:
            # idle keep-alive connections: abort instead of close, so a TLS peer that never answers the
            # close_notify cannot hold the server's shutdown for the SSL shutdown timeout
            cycle: Any = getattr(self, "cycle", False)
            if cycle is None or (cycle is not False and cycle.response_complete):
                self.transport.abort()
                return
            super().shutdown()

        def connection_lost(self, exc: Exception | None) -> None:
            TRANSPORTS.pop(getattr(self, "_emulator_key", None), None)  # type: ignore[arg-type]
            super().connection_lost(exc)

    return Protocol


def _addr(value: Any) -> Any:
    return tuple(value[:2]) if value else None


def _http_kind() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


class PostHogEmulator:
    """Run the emulator on ``host:port`` (0 = a free port) until the ``with`` block ends.

    >>> with PostHogEmulator(EmulatorSettings()) as emu:   # doctest: +SKIP
    ...     requests.get(emu.api_url(), headers=emu.auth_headers)
    """

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        *,
        http: str | None = None,
        log_level: str = "warning",
        startup_timeout: float = 15.0,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        self.host = host
        self.requested_port = port
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.http_kind = http or _http_kind()
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.control = Control(self.settings)
        self.port: int = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- connection details -------------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        return self.settings.api_key

    @property
    def project_id(self) -> int:
        return self.settings.project_id

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def api_url(self, suffix: str = "", *, prefix: str = "projects", project_id: int | None = None) -> str:
        """``<base>/api/<prefix>/<project>/batch_exports/<suffix>``."""
        project = self.project_id if project_id is None else project_id
        return f"{self.base_url}/api/{prefix}/{project}/batch_exports/{suffix.lstrip('/')}"

    def ui_url(self, batch_export_id: str | None = None, tab: str | None = None) -> str:
        """The HTML page PostHog's UI has at this path: the project's exports, or one export (and tab)."""
        url = f"{self.base_url}/project/{self.project_id}/pipeline/batch-exports"
        if batch_export_id:
            url += f"/{quote(batch_export_id, safe='')}"
            if tab:
                url += f"?tab={quote(tab, safe='')}"
        return url

    def airflow_conn_json(self) -> str:
        """Value for ``AIRFLOW_CONN_POSTHOG_DEFAULT`` (JSON form)."""
        return json.dumps(
            {
                "conn_type": "posthog",
                "host": self.base_url,
                "password": self.api_key,
                "extra": {"project_id": str(self.project_id)},
            }
        )

    def airflow_conn_uri(self) -> str:
        """Value for ``AIRFLOW_CONN_POSTHOG_DEFAULT`` (URI form).

        The scheme travels inside the URL-encoded host, as Airflow's URI format allows, rather than as a
        ``scheme=http`` extra: Airflow's secrets masker warns about every extra value under five characters.
        """
        key, host = quote(self.api_key, safe=""), quote(self.base_url, safe="")
        return f"posthog://:{key}@{host}/?project_id={self.project_id}"

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> PostHogEmulator:
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        sock.listen(2048)
        sock.set_inheritable(True)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.control),
            http=_protocol_class(self.http_kind),
            lifespan="off",
            access_log=False,
            log_level=self.log_level,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
            date_header=False,  # the app dates each answer with the emulated clock
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="posthog-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("PostHog emulator failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> PostHogEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
