"""A counting HTTP proxy in front of an emulator, one per Airflow process whose requests are to be told apart.

The emulator's request log says what was asked, not by whom. Pointing one process's connection (its own
environment variable) at its own proxy counts that process's requests: e.g. how many polls each triggerer
sends for the triggers it holds. Runs as threads of the harness; never logs a header (the API key).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|/\d+(?=/)")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


def request_kind(method: str, path: str) -> str:
    """``GET /api/projects/{id}/batch_exports/{id}/backfills/{id}/``: a request without its ids."""
    return f"{method} {_ID.sub('/{id}', path)}"


class CountingProxy:
    """Forward everything to ``target``; count requests per kind (``request_kind``)."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=target, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the hooks' clients expect

            def log_message(self, format: str, *args: object) -> None:
                """Silent: the harness prints figures, not an access log."""

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                with proxy._lock:
                    proxy.counts[request_kind(self.command, self.path.split("?", 1)[0])] += 1
                try:
                    resp = proxy._client.request(self.command, self.path, content=body, headers=headers)
                except httpx.HTTPError:
                    self.close_connection = True  # the emulator dropped it: so does the proxy
                    return
                self.send_response(resp.status_code)
                for key, value in resp.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"proxy-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
