"""Servers polled by the triggerer-capacity benchmark, each run in its own process over TLS on 127.0.0.1.

``python -m benchmarks.servers KIND --n N --certfile C --keyfile K`` starts one of:

* ``posthog``: the project's emulator (``airflow_provider_posthog.emulator``) with N running waits seeded;
* ``dbt``: a minimal fake of dbt Cloud's ``GET /api/v2/accounts/{account}/runs/{run}/`` that always says
  "running" (status 3), which is all ``DbtCloudRunJobTrigger`` polls;
* ``airbyte``: a minimal fake of Airbyte's ``GET /v1/jobs/{job}`` that always says ``running``, which is all
  ``AirbyteSyncTrigger`` polls (OSS mode: no OAuth token request).

The server lives in a separate process so that its CPU never counts as trigger CPU. It prints one JSON line
(``base_url``, ``targets``, ``conn`` = the Airflow connection as JSON) and then answers line commands on
stdin: ``stats`` prints the request counts as one JSON line, ``reset`` clears them, ``quit`` (or EOF) stops
it. It also stops by itself after ``--max-seconds``, so no run can leave it behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestLog:
    """Thread-safe request counters: total, per status code and per path (one path = one waiting trigger)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_status: Counter[int] = Counter()
        self.by_path: Counter[str] = Counter()

    def add(self, path: str, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1
            self.by_path[path] += 1

    def reset(self) -> None:
        with self._lock:
            self.by_status.clear()
            self.by_path.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            per_path = list(self.by_path.values())
            return {
                "total": sum(self.by_status.values()),
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "paths": len(per_path),
                "per_path_min": min(per_path, default=0),
                "per_path_max": max(per_path, default=0),
            }


def logging_middleware(app: ASGIApp, log: RequestLog) -> ASGIApp:
    """Wrap an ASGI app so every HTTP response is counted by path and status."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            log.add(str(scope["path"]), status)

    return wrapped


def dbt_app(log: RequestLog) -> ASGIApp:
    """Fake dbt Cloud v2 run endpoint: every run is RUNNING (3), as ``DbtCloudHook.get_job_details`` reads."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/api/v2/accounts/{account_id}/runs/{run_id}/")
    async def get_run(account_id: int, run_id: int) -> dict[str, Any]:
        return {
            "status": {"code": 200, "is_success": True, "user_message": "Success!", "developer_message": ""},
            "data": {
                "id": run_id,
                "account_id": account_id,
                "job_definition_id": 1,
                "status": 3,
                "status_humanized": "Running",
                "in_progress": True,
                "is_complete": False,
                "created_at": "2026-01-01 00:00:00.000000+00:00",
            },
        }

    return logging_middleware(app, log)


def airbyte_app(log: RequestLog) -> ASGIApp:
    """Fake Airbyte public API job endpoint: every job is ``running`` (``airbyte_api`` JobResponse shape)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: int) -> dict[str, Any]:
        return {
            "jobId": job_id,
            "status": "running",
            "jobType": "sync",
            "startTime": "2026-01-01T00:00:00Z",
            "connectionId": "00000000-0000-0000-0000-000000000001",
            "lastUpdatedAt": "2026-01-01T00:00:00Z",
            "duration": "PT1M",
            "bytesSynced": 0,
            "rowsSynced": 0,
        }

    return logging_middleware(app, log)


def serve_asgi(app: ASGIApp, certfile: str, keyfile: str) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` with uvicorn over TLS on a free 127.0.0.1 port in a thread; return (base_url, stop)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8192)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        backlog=8192,
        lifespan="off",
        timeout_keep_alive=30,  # as the emulator: idle connections are the client's to close
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("uvicorn did not start within 30 s")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"https://127.0.0.1:{port}", stop


def start_fake(kind: str, n: int, certfile: str, keyfile: str, log: RequestLog) -> dict[str, Any]:
    """Start the dbt or Airbyte fake and describe it: base URL, N target ids, Airflow connection JSON."""
    app = dbt_app(log) if kind == "dbt" else airbyte_app(log)
    base_url, stop = serve_asgi(app, certfile, keyfile)
    host = base_url.removeprefix("https://")
    if kind == "dbt":
        # DbtCloudHook builds https://{conn.host}/api/v2/accounts/...; login = account id, password = token.
        conn = {"conn_type": "dbt_cloud", "host": host, "login": "1", "password": "dbt_fake_token"}
    else:
        # AirbyteHook hands conn.host to airbyte_api as server_url; no login/password = OSS mode, no OAuth.
        conn = {"conn_type": "airbyte", "host": f"{base_url}/v1"}
    return {"base_url": base_url, "targets": list(range(1, n + 1)), "conn": conn, "_stop": stop}


def start_posthog(n: int, certfile: str, keyfile: str, rate_limit_per_minute: int | None) -> dict[str, Any]:
    """Start the emulator over TLS with N long-running backfills to wait on (one per trigger)."""
    from airflow_provider_posthog.emulator import EmulatorSettings, PostHogEmulator

    from benchmarks.posthog_targets import seed_waits

    settings = EmulatorSettings(run_duration=10**9, rate_limit_per_minute=rate_limit_per_minute)
    emu = PostHogEmulator(settings, host="127.0.0.1", port=0, ssl_certfile=certfile, ssl_keyfile=keyfile)
    emu.__enter__()
    targets = seed_waits(emu.control, n)
    emu.control.clear_request_log()

    def stop() -> None:
        emu.__exit__(None, None, None)

    return {
        "base_url": emu.base_url,
        "targets": targets,
        "conn": json.loads(emu.airflow_conn_json()),
        "_stop": stop,
        "_emulator": emu,
    }


def emulator_stats(emu: Any) -> dict[str, Any]:
    """Summarise the emulator's own request log in the same shape as :class:`RequestLog`."""
    by_status: Counter[int] = Counter()
    by_path: Counter[str] = Counter()
    for entry in emu.control.request_log:
        by_status[int(entry.status)] += 1
        by_path[str(entry.path)] += 1
    per_path = list(by_path.values())
    return {
        "total": sum(by_status.values()),
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "paths": len(per_path),
        "per_path_min": min(per_path, default=0),
        "per_path_max": max(per_path, default=0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=["posthog", "dbt", "airbyte"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--rate-limit-per-minute", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)

    # Watchdog: the process ends by itself even if the parent dies without closing our stdin.
    threading.Timer(args.max_seconds, lambda: os._exit(3)).start()

    log = RequestLog()
    if args.kind == "posthog":
        info = start_posthog(args.n, args.certfile, args.keyfile, args.rate_limit_per_minute)
    else:
        info = start_fake(args.kind, args.n, args.certfile, args.keyfile, log)
    emu = info.pop("_emulator", None)
    stop = info.pop("_stop")
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            stats = emulator_stats(emu) if emu is not None else log.snapshot()
            print(json.dumps(stats), flush=True)
        elif command == "reset":
            if emu is not None:
                emu.control.clear_request_log()
            else:
                log.reset()
            print("{}", flush=True)
        elif command == "quit":
            break
    stop()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
