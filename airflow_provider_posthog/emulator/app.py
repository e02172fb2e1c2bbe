"""HTTP routes: translate requests to ``Service``/``Control`` calls and answers to PostHog's shapes.

The API lives under ``/api/{projects|environments}/{project_id}/batch_exports/...`` (trailing slash optional);
the admin mirror of the control API lives under ``/_emulator/``; HTML pages for a browser (``ui.py``) live at
PostHog's UI paths ``/project/{project_id}/pipeline/batch-exports/...``. Faults and rate limits wrap the API
routes only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .control import RequestLogEntry
from .errors import ApiError, default_body_for_status, method_not_allowed, not_found, permission_denied
from .faults import throttled
from .service import Page, Query
from .settings import READ_SCOPE, WRITE_SCOPE
from .timeutil import fmt
from .ui import UiPages

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime

    from starlette.requests import Request
    from starlette.types import Receive, Scope, Send

    from .control import Control
    from .faults import Fault

logger = logging.getLogger(__name__)
# transports of live connections, keyed by (client addr, server addr); filled by server.py's protocol classes
TRANSPORTS: dict[tuple[Any, Any], Any] = {}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    if status == 204 or body is None:
        return Response(status_code=status, headers=headers)
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _error(exc: ApiError) -> Response:
    return _json(exc.status, exc.body(), exc.headers)


class DropConnection(Response):
    """Close the TCP connection without answering (a scripted ``drop_connection`` fault)."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = (_addr(scope.get("client")), _addr(scope.get("server")))
        transport = TRANSPORTS.get(key)
        if transport is not None:
            transport.abort()
            await asyncio.sleep(0.01)  # let the server notice the disconnect before we return
            return
        await send({"type": "http.response.start", "status": 500, "headers": []})
        raise ConnectionAbortedError("posthog emulator: connection dropped by a scripted fault")


def _addr(value: Any) -> Any:
    return tuple(value[:2]) if value else None


def trickled(answer: Response, seconds: float) -> Response:
    """``answer`` with its body sent one byte every ``seconds`` (a ``trickle`` fault).

    Status and headers go out at once and keep the body's ``Content-Length`` (uvicorn sends a declared
    length over several body messages), so only the timing differs from the real answer. When the client
    hangs up, Starlette stops the stream.
    """
    body = bytes(answer.body)
    if not body:
        return answer

    async def one_byte_at_a_time() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            await asyncio.sleep(seconds)
            yield body[i : i + 1]

    return StreamingResponse(
        one_byte_at_a_time(), status_code=answer.status_code, headers=dict(answer.headers.items())
    )


HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}"
    "</h1></center><hr><center>nginx</center></body></html>"
)
REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
}


@dataclass
class Ctx:
    """Everything an action needs, parsed from the request."""

    team: int
    params: dict[str, str]
    query: Query
    body: Any
    page: Page
    now: datetime


Action = Callable[[Ctx], "tuple[int, Any] | Any"]
_P = r"^/api/(?:projects|environments)/(?P<project>[^/]+)/batch_exports"
_E = _P + r"/(?P<export>[^/]+)"


class ApiRouter:
    """PostHog's routes -> actions, with the scope each action needs."""

    def __init__(self, control: Control) -> None:
        self.control = control
        s = control.service
        r, w = READ_SCOPE, WRITE_SCOPE
        table: list[tuple[str, dict[str, tuple[str, Action]]]] = [
            (
                _P + r"/?$",
                {
                    "GET": (r, lambda c: s.list_exports(c.team, c.query, c.page)),
                    "POST": (w, lambda c: (201, s.create_export(c.team, c.body, c.now))),
                },
            ),
            (_P + r"/test/?$", {"GET": ("test:" + r, lambda c: s.destination_test(c.query))}),
            (
                _P + r"/run_test_step_new/?$",
                {"POST": ("test:" + w, lambda c: s.run_test_step(c.team, None, c.body))},
            ),
            (
                _E + r"/?$",
                {
                    "GET": (r, lambda c: s.store.render_export(s.export(c.team, c.params["export"]))),
                    "PUT": (
                        w,
                        lambda c: s.update_export(c.team, c.params["export"], c.body, c.now, partial=False),
                    ),
                    "PATCH": (
                        w,
                        lambda c: s.update_export(c.team, c.params["export"], c.body, c.now, partial=True),
                    ),
                    "DELETE": (w, lambda c: s.delete_export(c.team, c.params["export"], c.now)),
                },
            ),
            (_E + r"/pause/?$", {"POST": (w, lambda c: s.pause(c.team, c.params["export"], c.now))}),
            (
                _E + r"/unpause/?$",
                {"POST": (w, lambda c: s.unpause(c.team, c.params["export"], c.body, c.now))},
            ),
            (
                _E + r"/backfill/?$",
                {
                    "POST": (
                        "docs:" + w,
                        lambda c: s.create_backfill(c.team, c.params["export"], c.body, c.now),
                    )
                },
            ),
            (
                _E + r"/logs/?$",
                {"GET": ("logs:" + r, lambda c: s.export_logs(c.team, c.params["export"], c.query, c.page))},
            ),
            (
                _E + r"/run_test_step/?$",
                {"POST": ("test:" + w, lambda c: s.run_test_step(c.team, c.params["export"], c.body))},
            ),
            (
                _E + r"/runs/?$",
                {"GET": (r, lambda c: s.list_runs(c.team, c.params["export"], c.query, c.page, c.now))},
            ),
            (
                _E + r"/runs/(?P<run>[^/]+)/?$",
                {
                    "GET": (
                        r,
                        lambda c: s.get_run(c.team, c.params["export"], c.params["run"], c.query, c.now),
                    )
                },
            ),
            (
                _E + r"/runs/(?P<run>[^/]+)/cancel/?$",
                {
                    "POST": (
                        w,
                        lambda c: s.cancel_run(c.team, c.params["export"], c.params["run"], c.query, c.now),
                    )
                },
            ),
            (
                _E + r"/runs/(?P<run>[^/]+)/retry/?$",
                {
                    "POST": (
                        w,
                        lambda c: s.retry_run(c.team, c.params["export"], c.params["run"], c.query, c.now),
                    )
                },
            ),
            (
                _E + r"/runs/(?P<run>[^/]+)/logs/?$",
                {
                    "GET": (
                        "logs:" + r,
                        lambda c: s.run_logs(
                            c.team, c.params["export"], c.params["run"], c.query, c.page, c.now
                        ),
                    )
                },
            ),
            (
                _E + r"/backfills/?$",
                {
                    "GET": (
                        r,
                        lambda c: s.list_backfills(c.team, c.params["export"], c.query, c.page, c.now),
                    ),
                    "POST": (w, lambda c: s.create_backfill(c.team, c.params["export"], c.body, c.now)),
                },
            ),
            (
                _E + r"/backfills/(?P<backfill>[^/]+)/?$",
                {
                    "GET": (
                        r,
                        lambda c: s.get_backfill(c.team, c.params["export"], c.params["backfill"], c.now),
                    )
                },
            ),
            (
                _E + r"/backfills/(?P<backfill>[^/]+)/cancel/?$",
                {
                    "POST": (
                        w,
                        lambda c: s.cancel_backfill(c.team, c.params["export"], c.params["backfill"], c.now),
                    )
                },
            ),
        ]
        self.routes = [(re.compile(p), m) for p, m in table]

    def match(self, path: str) -> tuple[dict[str, tuple[str, Action]], dict[str, str]] | None:
        for pattern, methods in self.routes:
            found = pattern.match(path)
            if found:
                return methods, found.groupdict()
        return None

    def required_scope(self, tag: str) -> str | None:
        """None = no personal-API-key access for this action in the current generation."""
        settings = self.control.settings
        if tag.startswith("test:"):
            return tag[5:] if settings.api_generation == "new" else None
        if tag.startswith("logs:"):
            return tag[5:] if settings.logs_for_personal_keys else None
        if tag.startswith("docs:"):
            return tag[5:]
        return tag


def _api_key(request: Request, body: Any) -> tuple[str | None, str]:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), "Authorization header"
    if isinstance(body, dict) and isinstance(body.get("personal_api_key"), str):
        return body["personal_api_key"], "body"
    from_query = request.query_params.get("personal_api_key")
    if from_query:
        return from_query, "query string"
    return None, ""


class EmulatorApp:
    """Builds the Starlette application around one ``Control``."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.router = ApiRouter(control)

    # -- API ----------------------------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        method, path = request.method, request.url.path
        fault = self.control.faults.take(method, path) if path.startswith("/api/") else None
        response = await self._answer(request, method, path, fault)
        if fault is not None and fault.trickle > 0 and not isinstance(response, DropConnection):
            return trickled(response, fault.trickle)
        return response

    async def _answer(self, request: Request, method: str, path: str, fault: Fault | None) -> Response:
        if fault is not None:
            if fault.latency:
                await asyncio.sleep(fault.latency)
            if fault.drop_connection:
                self._log(request, 0, None)
                return DropConnection()
            if fault.status is not None:
                self._log(request, fault.status, None)
                return self._fault_response(fault.status, fault.retry_after, fault.html, fault.body)
        raw = await request.body() if method in ("POST", "PUT", "PATCH") else b""
        key: str | None = None
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            response = _error(
                ApiError(400, "invalid_request", "parse_error", f"JSON parse error - {exc}", None)
            )
            self._log(request, 400, None)
            return response
        try:
            key, status, payload, headers = self._dispatch(request, method, path, body)
        except ApiError as exc:
            self._log(request, exc.status, key)
            return _error(exc)
        except Exception:  # an emulator bug must still look like PostHog's 500
            logger.exception("posthog emulator: unhandled error on %s %s", method, path)
            self._log(request, 500, key)
            return _json(500, default_body_for_status(500))
        self._log(request, status, key)
        return _json(status, payload, headers)

    def _dispatch(
        self, request: Request, method: str, path: str, body: Any
    ) -> tuple[str | None, int, Any, dict[str, str] | None]:
        matched = self.router.match(path)
        if matched is None:
            raise not_found("Endpoint not found.")
        methods, params = matched
        control = self.control
        store = control.store
        with control.lock:
            key, source = _api_key(request, body)
            if key is None:
                raise ApiError(
                    401,
                    "authentication_error",
                    "not_authenticated",
                    "Authentication credentials were not provided.",
                )
            api_key = store.keys.get(key)
            if api_key is None:
                raise ApiError(
                    401,
                    "authentication_error",
                    "authentication_failed",
                    f"Personal API key found in request {source} is invalid.",
                )
            raw_project = params["project"]
            if raw_project == "@current":
                team_id = control.settings.project_id
            else:
                try:
                    team_id = int(raw_project)
                except ValueError:
                    raise not_found() from None
            project = store.projects.get(team_id)
            if project is None:
                raise not_found()
            entry = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
            if entry is None:
                raise method_not_allowed(method)
            tag, action = entry
            if tag.startswith("docs:") and control.settings.api_generation == "new":
                raise not_found("Endpoint not found.")
            scope = self.router.required_scope(tag)
            if scope is None:
                raise permission_denied(control.settings.no_pak_message)
            if not (
                scope in api_key.scopes
                or "*" in api_key.scopes
                or (scope == READ_SCOPE and WRITE_SCOPE in api_key.scopes)
            ):
                raise permission_denied(f"API key missing required scope '{scope}'")
            if api_key.project_ids is not None and team_id not in api_key.project_ids:
                raise permission_denied(
                    f"API key does not have access to the requested project: ID {team_id}."
                )
            if project.organization_id != control.settings.organization_id:
                raise permission_denied("You don't have access to the project.")
            now = control.tick()
            wait = control.rate_limiter.check(key, now)
            if wait is not None:
                raise throttled(wait, control.settings.retry_after_header)
            ctx = Ctx(team_id, params, _query(request), body, self._page(request), now)
            result = action(ctx)
        if isinstance(result, tuple):
            status, payload = result
            return key, status, payload, None
        return key, 200, result, None

    @staticmethod
    def _page(request: Request) -> Page:
        url = request.url
        return Page(f"{url.scheme}://{url.netloc}{url.path}", request.query_params.multi_items())

    def _fault_response(
        self, status: int, retry_after: float | None, html: bool, body: dict[str, Any] | None
    ) -> Response:
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        if html:
            page = HTML_PAGE.format(status=status, reason=REASONS.get(status, "Error"))
            return Response(page, status_code=status, headers=headers, media_type="text/html")
        if body is None:
            body = default_body_for_status(status)
            if status == 429:
                wait = int(retry_after) if retry_after is not None else 1
                body["detail"] = (
                    f"Request was throttled. Expected available in {wait} second{'s' if wait != 1 else ''}."
                )
        return _json(status, body, headers)

    def _log(self, request: Request, status: int, key: str | None) -> None:
        control = self.control
        with control.lock:
            control.record(
                RequestLogEntry(
                    request.method, request.url.path, request.url.query, status, control.clock.now(), key
                )
            )

    # -- admin (/_emulator/) -------------------------------------------------------------------------
    async def admin(self, request: Request) -> Response:
        name = request.path_params["action"].strip("/")
        raw = await request.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
            result = self._admin(request.method, name, data, request)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return _json(200, result)

    def _admin(self, method: str, name: str, data: dict[str, Any], request: Request) -> Any:
        c = self.control
        parts = name.split("/")
        if name == "reset" and method == "POST":
            c.reset()
            return {"ok": True}
        if name == "now":
            return {"now": fmt(c.now())}
        if name == "advance" and method == "POST":
            return {"now": fmt(c.advance(float(data.get("seconds", 0))))}
        if name == "clock" and method == "POST":
            # Put the emulated clock at real time + offset_seconds, either way: a PostHog whose clock is not
            # this machine's (to be set before seeding; later events keep the times they were planned at).
            with c.lock:
                c.clock.offset = timedelta(seconds=float(data["offset_seconds"]))
                return {"now": fmt(c.tick())}
        if name == "settings":
            if method in ("POST", "PATCH"):
                c.configure(**data)
            s = c.settings
            return {k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in vars(s).items()}
        if name == "api_keys" and method == "POST":
            c.add_api_key(data["key"], data.get("scopes", (READ_SCOPE, WRITE_SCOPE)), data.get("project_ids"))
            return {"ok": True}
        if name == "projects" and method == "POST":
            c.add_project(int(data["project_id"]), int(data.get("organization_id", 1)))
            return {"ok": True}
        if name == "integrations" and method == "POST":
            c.add_integration(int(data["id"]), data["kind"], data.get("project_id"))
            return {"ok": True}
        if name == "exports" and method == "POST":
            return c.seed_export(**data)
        if name == "runs" and method == "POST":
            return c.seed_run(**data)
        if name == "backfills" and method == "POST":
            return c.seed_backfill(**data)
        if name == "ignore_next_cancels" and method == "POST":
            c.ignore_next_cancels(int(data.get("count", 1)), str(data.get("kind", "any")))
            return {"ok": True}
        if name == "fail_next_run" and method == "POST":
            c.fail_next_run(**data)
            return {"ok": True}
        if name == "lose_records" and method == "POST":
            c.lose_records(**data)
            return {"ok": True}
        if name == "faults":
            if method == "POST":
                fault = c.add_fault(**data)
                return {"ok": True, "path_regex": fault.path_regex}
            if method == "DELETE":
                c.clear_faults()
                return {"ok": True}
            return [
                {
                    "path_regex": f.path_regex,
                    "method": f.method,
                    "status": f.status,
                    "trickle": f.trickle,
                    "hits": f.hits,
                }
                for f in c.faults.active
            ]
        if name == "requests":
            if method == "DELETE":
                c.clear_request_log()
                return {"ok": True}
            return [e.as_dict() for e in c.request_log]
        if len(parts) == 3 and parts[2] == "status" and method == "POST":
            if parts[0] == "runs":
                return c.set_run_status(parts[1], data["status"], data.get("latest_error"))
            if parts[0] == "backfills":
                return c.set_backfill_status(parts[1], data["status"])
        if len(parts) == 2 and method == "GET":
            kind, ident = parts
            if kind == "exports":
                return _jsonable(c.get_export(ident))
            if kind == "runs":
                return _jsonable(c.get_run(ident))
            if kind == "backfills":
                return _jsonable(c.get_backfill(ident))
            if kind == "logs":
                return _jsonable(c.logs_for(ident))
        raise KeyError(f"no admin action {method} /_emulator/{name}")

    def starlette(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        return Starlette(
            routes=[
                Route("/_emulator/{action:path}", self.admin, methods=methods),
                *UiPages(self.control).routes(),
                Route("/{path:path}", self.api, methods=methods),
            ],
            middleware=[Middleware(DateHeader, control=self.control)],
        )


class DateHeader:
    """Every answer's ``Date`` from the emulated clock, as a server states its own time (server.py turns
    uvicorn's real-time header off), so a moved clock shows in the header as it does in ``created_at``."""

    def __init__(self, app: Any, control: Control) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Any) -> None:
            if message["type"] == "http.response.start":
                now = format_datetime(self.control.clock.now(), usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", now)]}
            await send(message)

        await self.app(scope, receive, dated)


def _query(request: Request) -> Query:
    out: Query = {}
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return fmt(value)
    return value


def create_app(control: Control) -> Starlette:
    """The ASGI app for ``control`` (what ``server.py`` hands to uvicorn)."""
    return EmulatorApp(control).starlette()
