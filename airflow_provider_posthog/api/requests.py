"""PostHog batch-exports endpoints as data: the one URL builder, no I/O.

Each function returns a :class:`RequestSpec` (method, path, query, JSON body, idempotency). The sync and
async transports in ``hooks/posthog.py`` only send specs; pagination is computed here from the page bodies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from airflow_provider_posthog import __version__
from airflow_provider_posthog.exceptions import PostHogAPIError, PostHogConfigError

#: Sent on every request; computed once at import.
USER_AGENT = f"airflow-provider-posthog/{__version__}"

EXPORTS_PAGE_SIZE = 100
LOGS_MAX_LIMIT = 500
#: Sent as ``after`` on every single-run action: PostHog filters run lookups (retrieve, cancel, retry) by
#: ``created_at`` within the last 7 days unless ``after`` is given, which makes older runs 404.
RUNS_SINCE = "2000-01-01T00:00:00Z"
#: Safety bound on pages followed for one list call (100 runs or 50 backfills a page).
MAX_PAGES = 1000

Params = tuple[tuple[str, str], ...]
DateLike = dt.datetime | dt.date | str


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, transport-independent.

    :param path: absolute path from the host root, starting with ``/api/``.
    :param params: query parameters as ordered pairs (a name may repeat, e.g. ``status``).
    :param json: JSON body, or ``None``. Never logged and never put in exception messages.
    :param idempotent: safe to resend after an ambiguous failure (the server may have processed it).
    :param url: absolute URL to use instead of ``path`` + ``params`` (a cursor ``next`` link, rebased).
    """

    method: str
    path: str
    params: Params = ()
    json: Any = None
    idempotent: bool = True
    url: str | None = None

    def full_url(self, base_url: str) -> str:
        """Join with the connection's base URL (query string included)."""
        if self.url is not None:
            return self.url
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"{base_url}{self.path}{query}"


@dataclasses.dataclass(frozen=True)
class ApiResponse:
    """A decoded 2xx answer: HTTP status and JSON body (``None`` for an empty body)."""

    status: int
    body: Any


def _seg(value: object, what: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not text:
        raise PostHogConfigError(f"{what} must not be empty.")
    return quote(text, safe="")


def project_path(project_id: int, *parts: object) -> str:
    """``/api/projects/{project_id}/batch_exports/...`` with a trailing slash (optional for PostHog)."""
    segs = "/".join(_seg(p, "A path segment") for p in parts)
    return f"/api/projects/{int(project_id)}/batch_exports/" + (f"{segs}/" if segs else "")


def format_datetime(value: DateLike) -> str:
    """ISO-8601 for PostHog: aware datetimes in UTC (``+00:00``); dates and strings as given.

    Naive datetimes are rejected: PostHog answers 400 for them and guessing a zone is how windows drift.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PostHogConfigError(
                f"Datetime {value.isoformat()} is naive; pass a timezone-aware datetime."
            )
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    if not text:
        raise PostHogConfigError("A datetime argument must not be empty.")
    return text


def _params(pairs: Iterable[tuple[str, Any]]) -> Params:
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if value is None:
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            out.extend((name, str(v)) for v in value)
        elif isinstance(value, (dt.datetime, dt.date)):
            out.append((name, format_datetime(value)))
        elif isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        else:
            out.append((name, str(value)))
    return tuple(out)


# -- batch exports -----------------------------------------------------------------------------


def list_batch_exports(project_id: int, *, limit: int = EXPORTS_PAGE_SIZE, offset: int = 0) -> RequestSpec:
    return RequestSpec("GET", project_path(project_id), _params([("limit", limit), ("offset", offset)]))


def get_batch_export(project_id: int, batch_export_id: str) -> RequestSpec:
    return RequestSpec("GET", project_path(project_id, batch_export_id))


def create_batch_export(project_id: int, payload: Mapping[str, Any]) -> RequestSpec:
    return RequestSpec("POST", project_path(project_id), json=dict(payload), idempotent=False)


def update_batch_export(
    project_id: int, batch_export_id: str, payload: Mapping[str, Any], *, partial: bool = True
) -> RequestSpec:
    method = "PATCH" if partial else "PUT"
    return RequestSpec(method, project_path(project_id, batch_export_id), json=dict(payload))


def delete_batch_export(project_id: int, batch_export_id: str) -> RequestSpec:
    return RequestSpec("DELETE", project_path(project_id, batch_export_id))


def pause_batch_export(project_id: int, batch_export_id: str) -> RequestSpec:
    # Pausing twice is a no-op on PostHog's side: safe to resend.
    return RequestSpec("POST", project_path(project_id, batch_export_id, "pause"), json={})


def unpause_batch_export(project_id: int, batch_export_id: str, *, backfill: bool = False) -> RequestSpec:
    # Unpausing an unpaused export is a no-op (no second gap backfill): safe to resend.
    body = {"backfill": True} if backfill else {}
    return RequestSpec("POST", project_path(project_id, batch_export_id, "unpause"), json=body)


def batch_export_logs(
    project_id: int,
    batch_export_id: str,
    *,
    after: DateLike | None = None,
    before: DateLike | None = None,
    level: str | Sequence[str] | None = None,
    search: str | None = None,
    instance_id: str | None = None,
    limit: int = LOGS_MAX_LIMIT,
) -> RequestSpec:
    """Export-level logs; ``level`` is sent comma-separated (``ERROR,WARNING``)."""
    if not 1 <= int(limit) <= LOGS_MAX_LIMIT:
        raise PostHogConfigError(f"Log limit must be between 1 and {LOGS_MAX_LIMIT}, got {limit}.")
    levels = [level] if isinstance(level, str) else list(level or [])
    level_param = ",".join(lv.strip().upper() for lv in levels if lv.strip()) or None
    return RequestSpec(
        "GET",
        project_path(project_id, batch_export_id, "logs"),
        _params(
            [
                ("limit", int(limit)),
                ("after", after),
                ("before", before),
                ("level", level_param),
                ("search", search),
                ("instance_id", instance_id),
            ]
        ),
    )


# -- runs ----------------------------------------------------------------------------------


def list_runs(
    project_id: int,
    batch_export_id: str,
    *,
    after: DateLike | None = None,
    before: DateLike | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    ordering: str | None = None,
    status: str | Sequence[str] | None = None,
) -> RequestSpec:
    """First page of runs. Remember PostHog's default 7-day ``created_at`` window."""
    statuses = [status] if isinstance(status, str) else list(status or [])
    return RequestSpec(
        "GET",
        project_path(project_id, batch_export_id, "runs"),
        _params(
            [
                ("ordering", ordering),
                ("after", after),
                ("before", before),
                ("start", start),
                ("end", end),
                ("status", statuses or None),
            ]
        ),
    )


_ANY_AGE: Params = (("after", RUNS_SINCE),)


def get_run(project_id: int, batch_export_id: str, run_id: str) -> RequestSpec:
    return RequestSpec("GET", project_path(project_id, batch_export_id, "runs", run_id), _ANY_AGE)


def cancel_run(project_id: int, batch_export_id: str, run_id: str) -> RequestSpec:
    path = project_path(project_id, batch_export_id, "runs", run_id, "cancel")
    return RequestSpec("POST", path, _ANY_AGE, json={})


def retry_run(project_id: int, batch_export_id: str, run_id: str) -> RequestSpec:
    # Starts a backfill: not idempotent.
    path = project_path(project_id, batch_export_id, "runs", run_id, "retry")
    return RequestSpec("POST", path, _ANY_AGE, json={}, idempotent=False)


# -- backfills -----------------------------------------------------------------------------


def list_backfills(project_id: int, batch_export_id: str, *, ordering: str | None = None) -> RequestSpec:
    return RequestSpec(
        "GET", project_path(project_id, batch_export_id, "backfills"), _params([("ordering", ordering)])
    )


def get_backfill(project_id: int, batch_export_id: str, backfill_id: str) -> RequestSpec:
    return RequestSpec("GET", project_path(project_id, batch_export_id, "backfills", backfill_id))


def create_backfill(
    project_id: int, batch_export_id: str, start_at: DateLike | None, end_at: DateLike | None
) -> RequestSpec:
    body = {
        "start_at": None if start_at is None else format_datetime(start_at),
        "end_at": None if end_at is None else format_datetime(end_at),
    }
    return RequestSpec(
        "POST", project_path(project_id, batch_export_id, "backfills"), json=body, idempotent=False
    )


def cancel_backfill(project_id: int, batch_export_id: str, backfill_id: str) -> RequestSpec:
    return RequestSpec(
        "POST", project_path(project_id, batch_export_id, "backfills", backfill_id, "cancel"), json={}
    )


# -- pagination ------------------------------------------------------------------------------------


def page_results(body: Any) -> list[Mapping[str, Any]]:
    """The ``results`` of a page; a bare list is tolerated."""
    if isinstance(body, list):
        return [r for r in body if isinstance(r, Mapping)]
    if isinstance(body, Mapping):
        results = body.get("results")
        if isinstance(results, list):
            return [r for r in results if isinstance(r, Mapping)]
    return []


def next_offset_request(spec: RequestSpec, body: Any) -> RequestSpec | None:
    """Next limit/offset page (exports list), or ``None`` when PostHog says there is no next page."""
    if not isinstance(body, Mapping) or not body.get("next"):
        return None
    got = len(page_results(body))
    if got == 0:
        return None
    params = dict(spec.params)
    offset = int(params.get("offset", "0")) + got
    params["offset"] = str(offset)
    return dataclasses.replace(spec, params=tuple(params.items()))


def rebase_url(base_url: str, url: str) -> str:
    """Point PostHog's absolute ``next`` link at our base URL.

    PostHog builds ``next`` from the host it thinks it serves (behind a proxy that can be an internal
    name or ``http``); following it verbatim could also send the API key to another host. Only the
    ``/api/...`` path and the query are kept.
    """
    parts = urlsplit(url)
    path = parts.path
    idx = path.find("/api/")
    if idx < 0:
        raise PostHogAPIError("PostHog returned a pagination link outside /api/.")
    query = f"?{parts.query}" if parts.query else ""
    return f"{base_url}{path[idx:]}{query}"


def next_cursor_request(spec: RequestSpec, body: Any, base_url: str) -> RequestSpec | None:
    """Next cursor page (runs, backfills): follow ``next`` (rebased onto ``base_url``) until ``null``."""
    if not isinstance(body, Mapping):
        return None
    nxt = body.get("next")
    if not nxt or not isinstance(nxt, str):
        return None
    return dataclasses.replace(spec, url=rebase_url(base_url, nxt), params=())


# -- UI links -------------------------------------------------------------------------------------

UI_TABS = ("configuration", "metrics", "logs", "runs", "backfills")


def ui_url(
    base_url: str, project_id: int | str, batch_export_id: str | None = None, tab: str | None = None
) -> str:
    """PostHog UI link: the batch exports page of a project, or one export (optionally a tab). No I/O."""
    root = f"{base_url.rstrip('/')}/project/{quote(str(project_id), safe='')}/pipeline/batch-exports"
    if not batch_export_id:
        return root
    url = f"{root}/{quote(str(batch_export_id), safe='')}"
    if tab:
        if tab not in UI_TABS:
            raise PostHogConfigError(f"Unknown PostHog batch export tab {tab!r}; expected one of {UI_TABS}.")
        url += f"?tab={tab}"
    return url
