"""The protocol between operations and drivers: requests as data, decoded answers, paths, paging. No I/O.

An operation (``api/endpoints.py``, ``api/backfills.py``, ``api/jobs.py``) is a generator. It yields a
:class:`RequestSpec` (the driver sends it with the retry policy and sends back an :class:`ApiResponse`, or
throws the mapped exception into the generator), a :class:`Sleep` (the driver sleeps), :data:`NOW` (the
driver sends back the current UTC time) or, in a poll, a :class:`Shared` read (the driver drives its
``fetch`` operation, or joins the same read of another wait, and sends back the answer narrowed to the
wait's range, or throws the read's exception into the generator), and returns a typed result. Operations
never read the clock, know the host or the project: paths are relative to the project's API root
(``/api/projects/{id}/``), next links to the host, and the driver joins them to the connection's base URL
and project.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import quote, unquote, urlencode, urlsplit

from airflow_provider_posthog import __version__
from airflow_provider_posthog.exceptions import PostHogConfigError, PostHogUnexpectedResponseError

T = TypeVar("T")

#: Sent on every request; computed once at import.
USER_AGENT = f"airflow-provider-posthog/{__version__}"

EXPORTS_PAGE_SIZE = 100
LOGS_MAX_LIMIT = 500
#: Pages one list call follows at most (PostHog sends 100 runs, 50 backfills or 100 exports a page: 50,000
#: runs, a year of an hourly export's scheduled and backfill runs twice over). A list with more pages fails
#: with a message that says so; it is never returned cut short.
MAX_PAGES = 500

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
    """A decoded 2xx answer: HTTP status, JSON body (``None`` for an empty body) and the server's ``Date``
    header (its clock, which ``api/clock.py`` compares with this machine's)."""

    status: int
    body: Any
    date: str | None = None


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Ask the driver to sleep (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


class _Now:
    """Ask the driver for the current time (an aware UTC ``pendulum.DateTime``)."""

    def __repr__(self) -> str:
        return "NOW"


NOW = _Now()

#: A data-interval range ``(start, end)``: aware datetimes, ``start`` inclusive, ``end`` exclusive.
Span = tuple[dt.datetime, dt.datetime]


@dataclasses.dataclass(frozen=True, eq=False)
class Shared(Generic[T]):
    """A read the driver may share with other waits of its process (built by ``api/sharing.py``); the
    driver sends back ``narrow(answer)`` or throws the read's error into the operation.

    :param key: what is read: method, path and query (without ``span``); compared, never sent.
    :param fetch: the unshared operation that reads it, over the range it is given (``None`` for an exact
        read).
    :param span: the data-interval range this wait needs, for a read that a wider range answers too.
    :param select: narrows the answer of a (possibly wider) read to ``span``.
    """

    key: RequestSpec
    fetch: Callable[[Span | None], Operation[Any]]
    span: Span | None = None
    select: Callable[[Any, Span | None], T] | None = None

    def narrow(self, value: Any) -> T:
        """The part of a read's answer this wait asked for."""
        return value if self.select is None else self.select(value, self.span)

    def alone(self) -> Operation[T]:
        """This read unshared, as a driver that shares nothing reads it: ``fetch`` over this wait's span,
        narrowed."""
        return self.narrow((yield from self.fetch(self.span)))


Command = RequestSpec | Sleep | _Now | Shared[Any]
Operation = Generator[Command, Any, T]


def describe(value: Any) -> str:
    """What a JSON value is, by type and size, never by content: an answer PostHog should not have sent may
    echo anything, the API key included, and messages about it must not."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"a string of {len(value)} character(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, Mapping):
        return f"a JSON object of {len(value)} key(s)"
    return f"a {type(value).__name__}"


def unexpected(message: str) -> PostHogUnexpectedResponseError:
    """The error for an answer this provider cannot trust (``message`` names what was expected and what
    came, by :func:`describe`)."""
    return PostHogUnexpectedResponseError(message)


def json_object(response: ApiResponse, spec: RequestSpec | None = None) -> Mapping[str, Any]:
    """The body of an answer that must be a JSON object."""
    body = response.body
    if not isinstance(body, Mapping):
        asked = f" {spec.method} {spec.path}" if spec is not None else ""
        raise unexpected(
            f"PostHog answered{asked} (HTTP {response.status}) with {describe(body)}; expected a JSON object."
        )
    return body


def fetch_object(spec: RequestSpec) -> Operation[Mapping[str, Any]]:
    """Send ``spec`` and return its JSON object body."""
    response: ApiResponse = yield spec
    return json_object(response, spec)


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


def page_results(body: Any, what: str = "a list") -> list[Mapping[str, Any]]:
    """The rows of a page: a JSON object's ``results`` (a bare list is tolerated), every row an object.

    Anything else is an error naming ``what`` was listed: an answer read as "no rows" would make a completed
    backfill with a failed run look like a success.
    """
    results = body.get("results") if isinstance(body, Mapping) else body
    if not isinstance(results, list):
        came = describe(body)
        if isinstance(body, Mapping):
            came += " whose 'results' is " + (describe(results) if "results" in body else "missing")
        raise unexpected(
            f"PostHog answered {what} with {came}; expected a page of rows (a JSON object whose 'results' "
            "is a list of objects)."
        )
    for index, row in enumerate(results):
        if not isinstance(row, Mapping):
            raise unexpected(
                f"PostHog answered {what} with {describe(row)} as row {index + 1} of a page; "
                "expected every row to be a JSON object."
            )
    return results


def next_link(body: Any, what: str = "a list") -> str | None:
    """A page's ``next`` link: ``None`` when there is no next page; anything but a string or null is an
    error (read as "last page", it would cut the list short)."""
    nxt = body.get("next") if isinstance(body, Mapping) else None
    if nxt is None or nxt == "":
        return None
    if not isinstance(nxt, str):
        raise unexpected(f"PostHog answered {what} with {describe(nxt)} as its 'next' page link.")
    return nxt


def next_offset_request(spec: RequestSpec, body: Any) -> RequestSpec | None:
    """Next limit/offset page (exports list), or ``None`` when PostHog says there is no next page."""
    what = f"the list {spec.path}"
    if next_link(body, what) is None:
        return None
    got = len(page_results(body, what))
    if got == 0:
        return None
    params = dict(spec.params)
    params["offset"] = str(int(params.get("offset", "0")) + got)
    return dataclasses.replace(spec, params=tuple(params.items()))


def relative_link(url: str) -> str:
    """PostHog's absolute ``next`` link as ``/api/...?query``, to be joined to our own base URL.

    PostHog builds ``next`` from the host it thinks it serves (behind a proxy that can be an internal
    name or ``http``); following it verbatim could also send the API key to another host. The host, scheme
    and port of the link are therefore never used: the key only ever goes to the connection's host.
    """
    parts = urlsplit(url)
    idx = parts.path.find("/api/")
    if idx < 0:
        raise unexpected("PostHog returned a pagination link outside /api/.")
    query_string = f"?{parts.query}" if parts.query else ""
    return f"{parts.path[idx:]}{query_string}"


def next_cursor_request(spec: RequestSpec, body: Any) -> RequestSpec | None:
    """Next cursor page (runs, backfills): PostHog's ``next`` made relative, until it is ``null``.

    The link must lead to the same list (PostHog's cursor links only change the query): a link to another
    path would mix another list's rows into this one.
    """
    nxt = next_link(body, f"the list {spec.path}")
    if nxt is None:
        return None
    link = relative_link(nxt)
    link_path = unquote(urlsplit(link).path).rstrip("/")
    if not link_path.endswith("/" + unquote(spec.path).rstrip("/")):
        raise unexpected(
            f"PostHog's link to the next page of {spec.path} leads to another path; expected the same list "
            "with a new cursor."
        )
    return dataclasses.replace(spec, url=link, params=())


def follow_cursor(spec: RequestSpec) -> Operation[list[Mapping[str, Any]]]:
    """Every row of a cursor-paged list, or an error: never a list cut short (see :func:`next_page`)."""
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    current: RequestSpec | None = spec
    while current is not None:
        response: ApiResponse = yield current
        rows = page_results(response.body, f"the list {spec.path}")
        out.extend(rows)
        current = next_page(spec, current, response.body, rows, seen)
    return out


def next_page(
    first: RequestSpec, current: RequestSpec, body: Any, rows: list[Mapping[str, Any]], seen: set[str]
) -> RequestSpec | None:
    """The request for the page after ``current`` (None at the end), failing closed on pages that do not end.

    A link seen before (a loop), an empty page that links to another one (PostHog's cursor pages only link
    onwards when more rows follow) and more than :data:`MAX_PAGES` pages each raise an error that says so,
    so that no caller mistakes part of a list for all of it. ``seen`` collects the links followed so far.
    """
    following = next_cursor_request(current, body)
    if following is None:
        return None
    link = following.url or ""
    if not rows:
        raise unexpected(
            f"PostHog answered an empty page of {first.path} that links to a next page; stopped instead "
            "of following pages without rows."
        )
    if link in seen:
        raise unexpected(
            f"PostHog's pages of {first.path} loop: the next page link repeats an earlier one after "
            f"{len(seen) + 1} page(s)."
        )
    if len(seen) + 1 >= MAX_PAGES:
        raise unexpected(
            f"PostHog's pages of {first.path} did not end after {MAX_PAGES} pages; stopped instead of "
            "returning part of the list."
        )
    seen.add(link)
    return following


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
