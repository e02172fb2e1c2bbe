"""The protocol between operations and drivers: requests as data, decoded answers, paths, paging. No I/O.

An operation (``api/endpoints.py``, ``api/backfills.py``, ``api/jobs.py``) is a generator. It yields a
:class:`RequestSpec` (the driver sends it with the retry policy and sends back an :class:`ApiResponse`, or
throws the mapped exception into the generator), a :class:`Sleep` (the driver sleeps) or :data:`NOW` (the
driver sends back the current UTC time), and returns a typed result. Operations never read the clock, know
the host or the project: paths are relative to the project's API root (``/api/projects/{id}/``), next links
to the host, and the driver joins them to the connection's base URL and project.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Generator, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from airflow_provider_posthog import __version__
from airflow_provider_posthog.exceptions import PostHogAPIError, PostHogConfigError

T = TypeVar("T")

#: Sent on every request; computed once at import.
USER_AGENT = f"airflow-provider-posthog/{__version__}"

EXPORTS_PAGE_SIZE = 100
LOGS_MAX_LIMIT = 500
#: Safety bound on pages followed for one list call (100 runs or 50 backfills a page).
MAX_PAGES = 1000

Params = tuple[tuple[str, str], ...]
DateLike = dt.datetime | dt.date | str


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, transport-independent.

    :param path: path below the project's API root, e.g. ``batch_exports/{id}/runs/`` (see
        :func:`export_path`); :meth:`api_path` gives the path from the host root.
    :param params: query parameters as ordered pairs (a name may repeat, e.g. ``status``).
    :param json: JSON body, or ``None``. Never logged and never put in exception messages.
    :param idempotent: safe to resend after an ambiguous failure (the server may have processed it).
    :param url: path and query to use instead of ``path`` + ``params`` (a cursor ``next`` link, made
        relative), joined to the base URL like ``path``.
    """

    method: str
    path: str
    params: Params = ()
    json: Any = None
    idempotent: bool = True
    url: str | None = None

    def api_path(self, project_id: int) -> str:
        """The path from the host root, ``/api/projects/{project_id}/...`` (what messages name)."""
        return f"/api/projects/{int(project_id)}/{self.path}"

    def full_url(self, base_url: str, project_id: int) -> str:
        """Join with the connection's base URL and project (query string included)."""
        if self.url is not None:
            return f"{base_url}{self.url}"
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"{base_url}{self.api_path(project_id)}{query}"


@dataclasses.dataclass(frozen=True)
class ApiResponse:
    """A decoded 2xx answer: HTTP status and JSON body (``None`` for an empty body)."""

    status: int
    body: Any


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Ask the driver to sleep (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


class _Now:
    """Ask the driver for the current time (an aware UTC ``pendulum.DateTime``)."""

    def __repr__(self) -> str:
        return "NOW"


NOW = _Now()

Command = RequestSpec | Sleep | _Now
Operation = Generator[Command, Any, T]


def json_object(response: ApiResponse) -> Mapping[str, Any]:
    """The body of an answer that must be a JSON object."""
    body = response.body
    if not isinstance(body, Mapping):
        raise PostHogAPIError(f"PostHog answered HTTP {response.status} with an unexpected JSON body.")
    return body


def fetch_object(spec: RequestSpec) -> Operation[Mapping[str, Any]]:
    """Send ``spec`` and return its JSON object body."""
    response: ApiResponse = yield spec
    return json_object(response)


# -- paths and values ---------------------------------------------------------------------------------------


def _segment(value: object) -> str:
    text = str(value).strip() if value is not None else ""
    if not text:
        raise PostHogConfigError("A path segment must not be empty.")
    return quote(text, safe="")


def export_path(*parts: object) -> str:
    """``batch_exports/...`` below the project's API root, with a trailing slash (optional for PostHog)."""
    segments = "/".join(_segment(p) for p in parts)
    return "batch_exports/" + (f"{segments}/" if segments else "")


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


def query(pairs: Iterable[tuple[str, Any]]) -> Params:
    """Query pairs without the ``None`` values; sequences repeat the name, datetimes are formatted."""
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


# -- paging -------------------------------------------------------------------------------------------------


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
    params["offset"] = str(int(params.get("offset", "0")) + got)
    return dataclasses.replace(spec, params=tuple(params.items()))


def relative_link(url: str) -> str:
    """PostHog's absolute ``next`` link as ``/api/...?query``, to be joined to our own base URL.

    PostHog builds ``next`` from the host it thinks it serves (behind a proxy that can be an internal
    name or ``http``); following it verbatim could also send the API key to another host.
    """
    parts = urlsplit(url)
    idx = parts.path.find("/api/")
    if idx < 0:
        raise PostHogAPIError("PostHog returned a pagination link outside /api/.")
    query_string = f"?{parts.query}" if parts.query else ""
    return f"{parts.path[idx:]}{query_string}"


def next_cursor_request(spec: RequestSpec, body: Any) -> RequestSpec | None:
    """Next cursor page (runs, backfills): PostHog's ``next`` made relative, until it is ``null``."""
    nxt = body.get("next") if isinstance(body, Mapping) else None
    if not nxt or not isinstance(nxt, str):
        return None
    return dataclasses.replace(spec, url=relative_link(nxt), params=())


def follow_cursor(spec: RequestSpec) -> Operation[list[Mapping[str, Any]]]:
    """Every row of a cursor-paged list, up to :data:`MAX_PAGES` pages; stops if a link repeats."""
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    current: RequestSpec | None = spec
    while current is not None and len(seen) < MAX_PAGES:
        response: ApiResponse = yield current
        out.extend(page_results(response.body))
        current = next_cursor_request(current, response.body)
        if current is not None:
            if current.url in seen:  # a server bug must not loop forever
                break
            seen.add(current.url or "")
    return out


# -- UI links -----------------------------------------------------------------------------------------------

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
