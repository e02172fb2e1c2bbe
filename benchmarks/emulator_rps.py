"""How many ``GET .../runs/{id}`` per second the emulator serves over keep-alive (target: >= 500 rps).

``python benchmarks/emulator_rps.py [--seconds 10] [--clients 2] [--threads 2] [--tls]``

The emulator runs in its own process (started through its CLI, like a user would), so its CPU is not shared
with the load generator. Clients are separate processes, each with a few threads holding one keep-alive
``http.client`` connection each (a light client, so the figure measures the server, not ``requests``).
Seeding uses the admin routes (``/_emulator/...``). Prints one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_posthog.emulator.tls import make_tls_files


def _admin(base_url: str, action: str, body: dict[str, Any], context: ssl.SSLContext | None) -> Any:
    request = urllib.request.Request(
        f"{base_url}/_emulator/{action}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def _client_thread(
    base_url: str, path: str, key: str, deadline: float, certfile: str | None, out: list[Any]
) -> None:
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=certfile)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=context, timeout=10
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    ok = errors = 0
    latencies: list[float] = []
    while True:
        started = time.perf_counter()
        if started >= deadline:
            break
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status == 200 and body.startswith(b"{"):
            ok += 1
        else:
            errors += 1
    conn.close()
    out.append((ok, errors, latencies))


def _client_process(
    base_url: str,
    path: str,
    key: str,
    start_at: float,
    seconds: float,
    threads: int,
    certfile: str | None,
    queue: Any,
) -> None:
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    results: list[Any] = []
    workers = [
        threading.Thread(target=_client_thread, args=(base_url, path, key, deadline, certfile, results))
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    latencies = [lat for r in results for lat in r[2]]
    queue.put((ok, errors, statistics.median(latencies) if latencies else 0.0, _p99(latencies)))


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--threads", type=int, default=2, help="keep-alive connections per client process")
    parser.add_argument("--tls", action="store_true", help="serve and call over HTTPS")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="emulator-rps-"))
    command = [
        sys.executable,
        "-m",
        "airflow_provider_posthog.emulator",
        "--port",
        "0",
        "--run-duration",
        "1e9",
    ]
    certfile: str | None = None
    context: ssl.SSLContext | None = None
    if args.tls:
        files = make_tls_files(tmp)
        cert, keyfile = files.certfile, files.keyfile
        certfile = str(cert)
        context = ssl.create_default_context(cafile=certfile)
        command += ["--ssl-certfile", certfile, "--ssl-keyfile", str(keyfile)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert server.stdout is not None
        info: dict[str, Any] = {}
        while not info:
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("the emulator did not start")
            if line.startswith("{"):
                info = json.loads(line)
        base_url, key, project = info["base_url"], info["api_key"], info["project_id"]
        export = _admin(base_url, "exports", {"name": "rps"}, context)
        run = _admin(
            base_url,
            "runs",
            {
                "batch_export_id": export["id"],
                "data_interval_start": "2024-01-01T00:00:00Z",
                "data_interval_end": "2024-01-01T01:00:00Z",
                "status": "Running",
            },
            context,
        )
        path = f"/api/projects/{project}/batch_exports/{export['id']}/runs/{run['id']}/"
        queue: Any = multiprocessing.Queue()
        start_at = time.time() + 0.5
        procs = [
            multiprocessing.Process(
                target=_client_process,
                args=(base_url, path, key, start_at, args.seconds, args.threads, certfile, queue),
            )
            for _ in range(args.clients)
        ]
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=args.seconds + 60) for _ in procs]
        for proc in procs:
            proc.join()
        ok = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        figures = {
            "endpoint": "GET /api/projects/{id}/batch_exports/{id}/runs/{run_id}/",
            "scheme": "https" if args.tls else "http",
            "seconds": args.seconds,
            "client_processes": args.clients,
            "connections": args.clients * args.threads,
            "requests_ok": ok,
            "errors": errors,
            "rps": round(ok / args.seconds, 1),
            "median_latency_ms": round(1000 * statistics.median(r[2] for r in results), 2),
            "p99_latency_ms_worst_client": round(1000 * max(r[3] for r in results), 2),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(figures))
        return 0 if errors == 0 else 1
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
