"""A server in PostHog's place that answers what PostHog never sends, over real HTTP on 127.0.0.1.

The backfill it serves is ``Completed``; what comes after is hostile: the runs list in another shape (a failed
run under another key), a GET that answers another backfill, or pages whose cursor changes on every page.
Real Airflow (``dag.test()``) runs a backfill sensor on it, poking and deferred: the wait fails at the poll
that got the answer, with a message that says what came, never with success and never at its timeout. The
hooks, sync and async, list runs through a ``next`` link to another host: only the connection's host is asked.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

KEY = "phx_HostileServerTestKey0123456789abcdefghijk"
EXPORT = str(uuid.uuid4())
BACKFILL = str(uuid.uuid4())
ROOT = f"/api/projects/1/batch_exports/{EXPORT}/"
TIMEOUT = 30.0

Script = dict[str, Any]


def run_row(rid: str, status: str, hour: int) -> dict[str, Any]:
    return {
        "id": rid,
        "status": status,
        "batch_export": EXPORT,
        "backfill": BACKFILL,
        "data_interval_start": f"2026-11-28T{16 + hour:02d}:00:00Z",
        "data_interval_end": f"2026-11-28T{17 + hour:02d}:00:00Z",
        "created_at": "2026-11-28T20:00:01Z",
        "records_completed": 10 if status == "Completed" else 0,
        "latest_error": "S3 AccessDenied" if status == "Failed" else None,
    }


BACKFILL_ROW = {
    "id": BACKFILL,
    "status": "Completed",
    "batch_export": EXPORT,
    "start_at": "2026-11-28T16:00:00Z",
    "end_at": "2026-11-28T18:00:00Z",
    "created_at": "2026-11-28T20:00:00Z",
    "finished_at": "2026-11-28T20:05:00Z",
}
EXPORT_ROW = {
    "id": EXPORT,
    "name": "hostile",
    "interval": "hour",
    "paused": False,
    "destination": {"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}},
}
RUNS = [run_row(str(uuid.uuid4()), "Completed", 0), run_row(str(uuid.uuid4()), "Failed", 1)]


class Hostile:
    """A threading HTTP server answering ``answer(path, query)`` -> (status, JSON body); records each path."""

    def __init__(self, answer: Callable[[str, dict[str, list[str]]], tuple[int, Any]]) -> None:
        self.answer = answer
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                outer.requests.append(self.path)
                status, body = outer.answer(parts.path, parse_qs(parts.query))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def posthog_then(runs: Callable[[dict[str, list[str]]], Any], backfill: Any = BACKFILL_ROW) -> Any:
    """PostHog's export and backfill rows, then ``runs(query)`` for the runs list; 404 for the rest."""

    def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path == ROOT:
            return 200, EXPORT_ROW
        if path == f"{ROOT}backfills/{BACKFILL}/":
            return 200, backfill
        if path == f"{ROOT}runs/":
            return 200, runs(query)
        return 404, {"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": None}

    return answer


def endless_cursor(query: dict[str, list[str]]) -> Any:
    n = int(query.get("cursor", ["0"])[0]) + 1
    return {
        "next": f"http://127.0.0.1:1{ROOT}runs/?cursor={n}",
        "results": [run_row(f"r{n}", "Completed", 0)],
    }


SCENARIOS: dict[str, tuple[Any, str]] = {
    "another-shape": (
        posthog_then(lambda query: {"runs": RUNS, "next": None}),
        "with a JSON object of 2 key(s) whose 'results' is missing; expected a page of rows",
    ),
    "another-backfill": (
        posthog_then(lambda query: {"next": None, "results": RUNS}, dict(BACKFILL_ROW, id=str(uuid.uuid4()))),
        f"when asked for backfill {BACKFILL}.",
    ),
    "pages-without-end": (
        posthog_then(endless_cursor),
        "did not end after 500 pages; stopped instead of returning part of the list.",
    ),
}


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], Hostile]]:
    """``hostile(answer)``: the server, with ``posthog_default`` pointing at it."""
    servers: list[Hostile] = []

    def start(answer: Any) -> Hostile:
        server = Hostile(answer).__enter__()
        servers.append(server)
        conn = {
            "conn_type": "posthog",
            "host": server.base_url,
            "password": KEY,
            "extra": {"project_id": "1"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_POSTHOG_DEFAULT", json.dumps(conn))
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.mark.parametrize("how", ["poke", "deferrable"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_backfill_wait_on_a_hostile_answer_fails_at_once_saying_what_came(
    scenario: str, how: str, hostile: Any, airflow_dags: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor

    answer, says = SCENARIOS[scenario]
    server = hostile(answer)
    with airflow_dags.new(f"hostile_{scenario.replace('-', '_')}_{how}") as dag:
        PostHogBackfillSensor(
            task_id="wait",
            batch_export_id=EXPORT,
            backfill_id=BACKFILL,
            poke_interval=1.0,
            timeout=TIMEOUT,
            retries=0,
            deferrable=how == "deferrable",
        )
    airflow_dags.register([dag])
    started = time.monotonic()
    dr = dag.test()
    took = time.monotonic() - started
    out = capfd.readouterr().out

    assert dr.state == "failed"
    assert airflow_dags.task_states(dag.dag_id, dr.run_id) == {"wait": ("failed", 1)}
    assert says in out
    assert (
        "PostHogUnexpectedResponseError" in out or how == "deferrable"
    )  # the triggerer hands the message on
    assert KEY not in out
    assert took < TIMEOUT  # at the poll that got the answer, not at the timeout
    backfill_gets = [p for p in server.requests if p.startswith(f"{ROOT}backfills/{BACKFILL}/")]
    assert len(backfill_gets) == 1  # one poll: an answer that cannot be trusted is not asked again
    assert airflow_dags.asset_events(dag.dag_id, dr.run_id) == []


def test_a_next_link_to_another_host_is_asked_of_the_connections_host_only(hostile: Any) -> None:
    """Sync and async hooks alike: the key never goes where PostHog's ``next`` points."""
    import asyncio

    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook, aclose_shared_clients

    with Hostile(lambda path, query: (200, {"next": None, "results": []})) as elsewhere:

        def runs(query: dict[str, list[str]]) -> Any:
            if "cursor" in query:
                return {"next": None, "results": RUNS[1:]}
            return {"next": f"{elsewhere.base_url}{ROOT}runs/?cursor=2", "results": RUNS[:1]}

        server = hostile(posthog_then(runs))
        synced = PostHogHook().list_runs(EXPORT)

        async def listed() -> list[Any]:
            try:
                return await PostHogAsyncHook().list_runs(EXPORT)
            finally:
                await aclose_shared_clients()

        awaited = asyncio.run(listed())
        assert [r.id for r in synced] == [r.id for r in awaited] == [r["id"] for r in RUNS]
        assert elsewhere.requests == []
        assert server.requests.count(f"{ROOT}runs/?cursor=2") == 2


@pytest.mark.parametrize("hook", ["sync", "async"])
def test_a_list_whose_pages_do_not_end_fails_through_either_hook(hook: str, hostile: Any) -> None:
    import asyncio

    from airflow_provider_posthog.exceptions import PostHogUnexpectedResponseError
    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook, aclose_shared_clients

    server = hostile(posthog_then(endless_cursor))

    async def listed() -> list[Any]:
        try:
            return await PostHogAsyncHook().list_runs(EXPORT)
        finally:
            await aclose_shared_clients()

    with pytest.raises(PostHogUnexpectedResponseError, match="did not end after 500 pages") as exc:
        PostHogHook().list_runs(EXPORT) if hook == "sync" else asyncio.run(listed())
    assert len(server.requests) == 500 and KEY not in str(exc.value)
