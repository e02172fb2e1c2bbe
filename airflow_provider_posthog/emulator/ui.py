"""HTML pages at the PostHog UI paths the provider's extra links build: local state, readable in a browser.

PostHog's UI shows a project's batch exports at ``/project/{id}/pipeline/batch-exports`` and one export at
``/project/{id}/pipeline/batch-exports/{export_id}`` with a ``?tab=`` of ``configuration``, ``metrics``,
``logs``, ``runs`` or ``backfills``. These pages read the state through the same service calls as the API
(after catching the state machine up), so they show exactly what the API answers, secrets stripped. They need
no API key: PostHog's UI authenticates with a login session, which a local emulator has no use for.
Every value shown is HTML-escaped; the pages use no script and no external resource.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.responses import HTMLResponse
from starlette.routing import Route

from .clock import ACTIVE
from .errors import ApiError
from .service import Page
from .timeutil import fmt

if TYPE_CHECKING:
    from starlette.requests import Request

    from .control import Control

TABS = ("configuration", "metrics", "logs", "runs", "backfills")
DEFAULT_TAB = "configuration"
LOG_LIMIT = 100
REFRESH_SECONDS = 5

_STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;margin:2rem;color:#1d1f27;max-width:80rem}
h1{margin:0 0 .25rem}.muted{color:#6b6f7b;font-size:.9rem}
nav{margin:1.25rem 0;border-bottom:1px solid #d0d3da}
nav a{display:inline-block;padding:.5rem 1rem;text-decoration:none;color:#1d1f27}
nav a.current{border-bottom:3px solid #f54e00;font-weight:600}
section{margin:1.5rem 0;padding:0 .75rem}section.current{border-left:4px solid #f54e00}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e4e6eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f6f8}code,.mono{font-family:ui-monospace,monospace;font-size:.85rem}
.status{padding:.1rem .45rem;border-radius:.25rem;font-weight:600;font-size:.8rem}
.status-ok{background:#d9f2e2;color:#14532d}.status-active{background:#dbeafe;color:#1e3a8a}
.status-ended{background:#fde2e1;color:#7f1d1d}.error{color:#991b1b;white-space:pre-wrap}.t{white-space:nowrap}
"""


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values; ``None`` shows as a dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True)
    return escape(str(value), quote=True)


def _t(value: Any) -> str:
    """A timestamp that does not wrap inside a table cell."""
    return f'<span class="t">{_e(value)}</span>'


def _status(status: str | None) -> str:
    kind = "ok" if status == "Completed" else "active" if status in ACTIVE else "ended"
    return f'<span class="status status-{kind}">{_e(status)}</span>'


def _table(headers: tuple[str, ...], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _page(title: str, body: str, *, status: int = 200, refresh: bool = False) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    text = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{body}"
        '<p class="muted">PostHog batch-exports emulator: a local stand-in for PostHog\'s UI.</p>'
        "</body></html>"
    )
    return HTMLResponse(text, status_code=status)


def _list_path(project: int | str) -> str:
    return f"/project/{quote(str(project), safe='')}/pipeline/batch-exports"


def _export_path(project: int | str, export_id: str) -> str:
    return f"{_list_path(project)}/{quote(export_id, safe='')}"


@dataclass
class ExportView:
    """What one export page shows, read under the control lock."""

    export: dict[str, Any]
    now: str
    runs: list[dict[str, Any]]
    backfills: list[dict[str, Any]]
    backfill_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return any(r["status"] in ACTIVE for r in self.runs) or any(
            b["status"] in ACTIVE for b in self.backfills
        )


class UiPages:
    """The HTML routes; mounted by ``app.py`` before the API's catch-all route."""

    def __init__(self, control: Control) -> None:
        self.control = control

    def routes(self) -> list[Route]:
        base = "/project/{project}/pipeline/batch-exports"
        return [
            Route(base, self.export_list, methods=["GET"]),
            Route(base + "/", self.export_list, methods=["GET"]),
            Route(base + "/{export_id}", self.export_page, methods=["GET"]),
            Route(base + "/{export_id}/", self.export_page, methods=["GET"]),
        ]

    # -- state ------------------------------------------------------------------------------------------
    def _team(self, raw: str) -> int | None:
        """The project as the API resolves it (``@current`` included); None if it does not exist."""
        if raw == "@current":
            team = self.control.settings.project_id
        else:
            try:
                team = int(raw)
            except ValueError:
                return None
        return team if team in self.control.store.projects else None

    def read_export(self, raw_project: str, export_id: str) -> ExportView | None:
        """The export, its recent runs (the runs list's default 7-day window), backfills and logs."""
        control = self.control
        service = control.service
        page = Page("", ())
        with control.lock:
            now = control.tick()
            team = self._team(raw_project)
            if team is None:
                return None
            try:
                export = service.export(team, export_id)
            except ApiError:
                return None
            export_id = export["id"]
            runs = service.list_runs(team, export_id, {}, page, now)["results"]
            backfills = service.list_backfills(team, export_id, {}, page, now)["results"]
            logs = service.export_logs(team, export_id, {"limit": [str(LOG_LIMIT)]}, page)["results"]
            store = control.store
            backfill_runs = {
                b["id"]: [
                    store.render_run(r)
                    for r in sorted(store.runs_of_backfill(b["id"]), key=lambda r: r["data_interval_end"])
                ]
                for b in backfills
            }
            return ExportView(
                store.render_export(export), fmt(now) or "", runs, backfills, backfill_runs, logs
            )

    def read_exports(self, raw_project: str) -> tuple[int, list[dict[str, Any]], str] | None:
        control = self.control
        with control.lock:
            now = control.tick()
            team = self._team(raw_project)
            if team is None:
                return None
            found = control.service.list_exports(team, {"limit": ["1000"]}, Page("", ()))
            return team, found["results"], fmt(now) or ""

    # -- pages ------------------------------------------------------------------------------------------
    async def export_list(self, request: Request) -> HTMLResponse:
        raw_project = request.path_params["project"]
        found = self.read_exports(raw_project)
        if found is None:
            return _not_found(f"Project {raw_project} not found", "This emulator has no such project.")
        team, exports, now = found
        rows = []
        for export in exports:
            latest = export["latest_runs"][0]["status"] if export["latest_runs"] else None
            rows.append(
                f'<tr><td><a href="{_e(_export_path(team, export["id"]))}">{_e(export["name"])}</a></td>'
                f"<td>{_e(export['destination']['type'])}</td><td>{_e(export['interval'])}</td>"
                f"<td>{_e(export['paused'])}</td><td>{_status(latest) if latest else _e(None)}</td>"
                f'<td class="mono">{_e(export["id"])}</td></tr>'
            )
        body = (
            f'<h1>Batch exports</h1><p class="muted">Project {_e(team)} &middot; emulated time {_e(now)}</p>'
            + _table(
                ("Name", "Destination", "Interval", "Paused", "Latest run", "ID"),
                rows,
                "No batch exports yet.",
            )
        )
        return _page(f"Batch exports · project {team} · PostHog emulator", body)

    async def export_page(self, request: Request) -> HTMLResponse:
        raw_project = request.path_params["project"]
        export_id = request.path_params["export_id"]
        view = self.read_export(raw_project, export_id)
        if view is None:
            back = f'<p><a href="{_e(_list_path(raw_project))}">All batch exports of this project</a></p>'
            return _not_found(
                "Batch export not found", f"No batch export {export_id} in project {raw_project}.", back
            )
        tab = request.query_params.get("tab") or DEFAULT_TAB
        if tab not in TABS:
            tab = DEFAULT_TAB  # PostHog's UI falls back to its default tab too
        export = view.export
        team = export["team_id"]
        current = ' class="current" aria-current="page"'
        nav = "".join(f'<a href="?tab={t}"{current if t == tab else ""}>{t.capitalize()}</a>' for t in TABS)
        sections = {
            "configuration": _configuration(export),
            "metrics": _metrics(view),
            "logs": _logs(view.logs),
            "runs": _runs(view.runs),
            "backfills": _backfills(view),
        }
        order = [tab] + [t for t in TABS if t != tab]
        panels = "".join(
            f'<section id="{t}" class="{"current" if t == tab else ""}">'
            f"<h2>{t.capitalize()}</h2>{sections[t]}</section>"
            for t in order
        )
        summary = (
            f'<p><a href="{_e(_list_path(team))}">&larr; Batch exports</a></p>'
            f"<h1>{_e(export['name'])}</h1>"
            f'<p class="muted">{_e(export["destination"]["type"])} &middot; '
            f"every {_e(export['interval'])} &middot; "
            f"{'paused' if export['paused'] else 'active'} &middot; model {_e(export['model'])} &middot; "
            f'<span class="mono">{_e(export["id"])}</span> &middot; emulated time {_e(view.now)}</p>'
        )
        title = f"{export['name'] or export['id']} · {tab} · PostHog emulator"
        return _page(title, summary + f'<nav aria-label="tabs">{nav}</nav>' + panels, refresh=view.active)


def _not_found(title: str, detail: str, extra: str = "") -> HTMLResponse:
    body = f"<h1>404 &middot; {_e(title)}</h1><p>{_e(detail)}</p>{extra}"
    return _page(f"404 {title} · PostHog emulator", body, status=404)


def _configuration(export: dict[str, Any]) -> str:
    destination = export["destination"]
    fields = [
        ("Name", export["name"]),
        ("ID", export["id"]),
        ("Destination type", destination["type"]),
        ("Interval", export["interval"]),
        ("Paused", export["paused"]),
        ("Model", export["model"]),
        ("Created", export["created_at"]),
        ("Last updated", export["last_updated_at"]),
        ("Last paused", export["last_paused_at"]),
        ("Start at", export["start_at"]),
        ("End at", export["end_at"]),
    ]
    for key in ("timezone", "offset_day", "offset_hour"):
        if key in export:
            fields.append((key.replace("_", " ").capitalize(), export[key]))
    rows = [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in fields]
    config_rows = [
        f'<tr><th class="mono">{_e(k)}</th><td class="mono">{_e(v)}</td></tr>'
        for k, v in sorted(destination["config"].items())
    ]
    return (
        f"<table><tbody>{''.join(rows)}</tbody></table><h3>Destination config</h3>"
        + _table(("Key", "Value"), config_rows, "No config.")
        + '<p class="muted">Secret keys are not shown, as PostHog\'s API leaves them out.</p>'
    )


def _count(items: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return counts


def _metrics(view: ExportView) -> str:
    records = sum(r["records_completed"] or 0 for r in view.runs)
    rows = [f"<tr><th>Runs</th><td>{_e(len(view.runs))}</td></tr>"]
    rows += [f"<tr><th>{_status(s)}</th><td>{_e(n)}</td></tr>" for s, n in sorted(_count(view.runs).items())]
    rows.append(f"<tr><th>Records exported</th><td>{_e(records)}</td></tr>")
    rows.append(f"<tr><th>Backfills</th><td>{_e(len(view.backfills))}</td></tr>")
    return (
        f"<table><tbody>{''.join(rows)}</tbody></table>" + '<p class="muted">Over the runs listed below.</p>'
    )


def _run_row(run: dict[str, Any], *, with_backfill: bool = True) -> str:
    backfill = run.get("backfill")
    cells = [
        _status(run["status"]),
        f"{_t(run['data_interval_start'])} &rarr; {_t(run['data_interval_end'])}",
        _t(run["created_at"]),
        _t(run["finished_at"]),
        _e(run["records_completed"]),
        f'<span class="error">{_e(run["latest_error"])}</span>' if run["latest_error"] else _e(None),
    ]
    if with_backfill:
        cells.append(
            f'<a href="#backfill-{_e(backfill)}" class="mono">{_e(backfill)}</a>' if backfill else "scheduled"
        )
    cells.append(f'<span class="mono">{_e(run["id"])}</span>')
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


_RUN_HEADERS = ("Status", "Data interval", "Created", "Finished", "Records", "Error")


def _runs(runs: list[dict[str, Any]]) -> str:
    rows = [_run_row(r) for r in runs]
    note = (
        '<p class="muted">Runs created in the last 7 days, newest first (PostHog\'s runs list default).</p>'
    )
    return note + _table((*_RUN_HEADERS, "Backfill", "Run ID"), rows, "No runs in the last 7 days.")


def _backfills(view: ExportView) -> str:
    if not view.backfills:
        return '<p class="muted">No backfills.</p>'
    parts = []
    for backfill in view.backfills:
        progress = backfill.get("progress")
        done = f"{progress['finished_runs']}/{progress['total_runs']} runs" if progress else None
        runs = view.backfill_runs.get(backfill["id"], [])
        counts = ", ".join(f"{n} {s}" for s, n in sorted(_count(runs).items())) or "no runs yet"
        head = (
            f'<h3 id="backfill-{_e(backfill["id"])}">{_status(backfill["status"])} '
            f"{_e(backfill['start_at'])} &rarr; {_e(backfill['end_at'])}</h3>"
            f'<p class="muted">Created {_e(backfill["created_at"])} &middot; '
            f"finished {_e(backfill['finished_at'])}"
            f" &middot; progress {_e(done)} &middot; {_e(counts)}"
        )
        if backfill.get("adjusted_start_at"):
            head += f" &middot; adjusted start {_e(backfill['adjusted_start_at'])}"
        head += f' &middot; <span class="mono">{_e(backfill["id"])}</span></p>'
        rows = [_run_row(r, with_backfill=False) for r in runs]
        parts.append(head + _table((*_RUN_HEADERS, "Run ID"), rows, "No runs yet."))
    return "".join(parts)


def _logs(logs: list[dict[str, Any]]) -> str:
    rows = [
        f"<tr><td>{_t(e['timestamp'])}</td><td>{_e(e['level'])}</td>"
        f'<td class="mono">{_e(e["instance_id"])}</td><td>{_e(e["message"])}</td></tr>'
        for e in logs
    ]
    return _table(("Time", "Level", "Run instance", "Message"), rows, "No log entries.")
