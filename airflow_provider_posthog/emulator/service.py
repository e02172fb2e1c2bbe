"""The API operations behind each route: validation, state changes, pagination, shapes.

Routes in ``app.py`` call these with already-parsed inputs and turn ``ApiError`` into PostHog's envelope.
Callers hold the control lock and have already caught the state machine up to ``now``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .clock import ACTIVE
from .errors import ApiError, not_found, server_error, validation
from .timeutil import align, parse_drf_datetime, parse_relative
from .validation import (
    DATETIME_FORMAT_ERROR,
    ExportValidator,
    parse_backfill_bound,
    parse_backfill_date,
    parse_bool,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .clock import StateMachine
    from .settings import EmulatorSettings
    from .store import Store

UTC = timezone.utc
RUN_STATUSES = (
    "Cancelled",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "FailedRetryable",
    "FailedBilling",
    "Terminated",
    "TimedOut",
    "Running",
    "Starting",
)
BACKFILL_STATUSES = tuple(s for s in RUN_STATUSES if s != "FailedBilling")
RUN_ORDERINGS = ("created_at", "-created_at", "data_interval_start", "-data_interval_start")
BACKFILL_ORDERINGS = ("created_at", "-created_at", "start_at", "-start_at")
RUNS_PAGE = 100
BACKFILLS_PAGE = 50
_MIN_KEY = -(10**18)

Query = dict[str, list[str]]


class Page:
    """Where the request came from, so ``next``/``previous`` can be absolute URLs keeping other params."""

    def __init__(self, base_url: str, pairs: Sequence[tuple[str, str]]) -> None:
        self.base_url = base_url
        self.pairs = list(pairs)

    def with_params(self, drop: Sequence[str] = (), **params: str | int) -> str:
        keep = [(k, v) for k, v in self.pairs if k not in params and k not in drop]
        keep.extend((k, str(v)) for k, v in params.items())
        return f"{self.base_url}?{urlencode(keep)}" if keep else self.base_url


def _first(query: Query, key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _micros(value: datetime | None) -> int:
    if value is None:
        return _MIN_KEY
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


class Service:
    """PostHog's batch-export viewsets, minus Django."""

    def __init__(self, store: Store, machine: StateMachine, settings: EmulatorSettings) -> None:
        self.store = store
        self.machine = machine
        self.settings = settings
        self.validator = ExportValidator(settings, store.integrations)

    @property
    def new(self) -> bool:
        return self.settings.api_generation == "new"

    # -- lookups ----------------------------------------------------------------------------------------
    def export(self, team_id: int, export_id: str, detail: str = "Not found.") -> dict[str, Any]:
        export = self.store.exports.get(export_id) if _is_uuid(export_id) else None
        if export is None or export["deleted"] or export["team_id"] != team_id:
            raise not_found(detail)
        return export

    def run(self, team_id: int, export_id: str, run_id: str, query: Query, now: datetime) -> dict[str, Any]:
        """A run as PostHog's ``get_object`` finds it: through the list's date window (7 days by default)."""
        run = self.store.runs.get(run_id) if _is_uuid(run_id) else None
        if run is None or run["batch_export"] != export_id or not _run_window(query, now)[1](run):
            raise not_found()
        export = self.store.exports.get(export_id)
        if export is None or export["team_id"] != team_id:
            raise not_found()
        return run

    def backfill(self, team_id: int, export_id: str, backfill_id: str) -> dict[str, Any]:
        backfill = self.store.backfills.get(backfill_id) if _is_uuid(backfill_id) else None
        if (
            backfill is None
            or not backfill["_visible"]
            or backfill["batch_export"] != export_id
            or backfill["team"] != team_id
        ):
            raise not_found()
        return backfill

    # -- exports ----------------------------------------------------------------------------------------
    def list_exports(self, team_id: int, query: Query, page: Page) -> dict[str, Any]:
        exports = [
            e
            for e in self.store.exports.values()
            if e["team_id"] == team_id
            and not e["deleted"]
            and not (self.new and e["destination"]["type"] == "Workflows")
        ]
        exports.sort(key=lambda e: (e["created_at"], e["id"]), reverse=True)
        limit = _positive_int(_first(query, "limit"), 100, allow_zero=False)
        offset = _positive_int(_first(query, "offset"), 0, allow_zero=True)
        count = len(exports)
        return {
            "count": count,
            "next": page.with_params(limit=limit, offset=offset + limit) if offset + limit < count else None,
            "previous": _previous_offset_url(page, limit, offset),
            "results": [self.store.render_export(e) for e in exports[offset : offset + limit]],
        }

    def create_export(self, team_id: int, body: Any, now: datetime) -> dict[str, Any]:
        fields = self.validator.clean(body, team_id=team_id, partial=False, existing=None)
        fields.setdefault("model", "events")
        export = self.store.new_export(team_id, fields, now)
        self.machine.register_export(export, now)
        return self.store.render_export(export)

    def update_export(
        self, team_id: int, export_id: str, body: Any, now: datetime, *, partial: bool
    ) -> dict[str, Any]:
        export = self.export(team_id, export_id)
        fields = self.validator.clean(body, team_id=team_id, partial=partial, existing=export)
        if self.new and "interval" not in body and ("offset_day" in body or "offset_hour" in body):
            # PostHog's interval/offset check returns early without ``interval``; the offsets then reach
            # read-only model properties and the request fails unhandled, changing nothing.
            raise server_error()
        export.update(fields)
        export["last_updated_at"] = now
        return self.store.render_export(export)

    def delete_export(self, team_id: int, export_id: str, now: datetime) -> tuple[int, None]:
        export = self.export(team_id, export_id)
        export["deleted"] = True
        export["_schedule"] = False
        # PostHog cancels only Running backfills (and, newer code, Running runs); Starting ones carry on.
        for backfill in self.store.backfills_of_export(export_id, visible_only=False):
            if backfill["status"] == "Running":
                self.machine.finish_backfill(backfill, "Cancelled", now)
        if self.new:
            export["paused"] = True
            for run in self.store.runs_of_export(export_id):
                if run["status"] == "Running":
                    self.machine.finish_run(run, "Cancelled", now)
        return 204, None

    def pause(self, team_id: int, export_id: str, now: datetime) -> dict[str, Any]:
        export = self.export(team_id, export_id)
        if not export["_schedule"]:
            raise validation("Invalid request to pause a BatchExport could not be carried out")
        if not export["paused"]:
            export["paused"] = True
            export["last_paused_at"] = now
            export["last_updated_at"] = now
        return {"paused": True}

    def unpause(self, team_id: int, export_id: str, body: Any, now: datetime) -> dict[str, Any]:
        export = self.export(team_id, export_id)
        backfill = parse_bool(body.get("backfill", False), "backfill") if isinstance(body, dict) else False
        if not export["_schedule"]:
            raise validation("Invalid request to unpause a BatchExport could not be carried out")
        if export["paused"]:
            export["paused"] = False
            export["last_updated_at"] = now
            # PostHog hands ``last_paused_at`` to the backfill as its start without a None check, and skips
            # the endpoint's earliest-backfill flag: an export never paused by ``POST .../pause/`` (created
            # paused, or paused by PATCH) gets one run over (None, now), i.e. everything it ever had.
            paused_at = export["last_paused_at"]
            if backfill and (paused_at is None or paused_at < now):
                self._start_backfill(export, paused_at, now, now)
        return {"paused": False}

    # -- logs -------------------------------------------------------------------------------------------
    def export_logs(
        self, team_id: int, export_id: str, query: Query, page: Page, *, instance_id: str | None = None
    ) -> dict[str, Any]:
        self.export(team_id, export_id)
        raw_limit = _first(query, "limit")
        limit = 50
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise validation("A valid integer is required.", "limit") from None
            if limit > 500:
                raise validation("Ensure this value is less than or equal to 500.", "limit", "max_value")
            if limit < 1:
                raise validation("Ensure this value is greater than or equal to 1.", "limit", "min_value")
        after = _log_datetime(query, "after")
        before = _log_datetime(query, "before")
        levels = {
            lvl.strip().upper() for raw in query.get("level", []) for lvl in raw.split(",") if lvl.strip()
        }
        search = (_first(query, "search") or "").lower()
        wanted_instance = instance_id or _first(query, "instance_id")
        entries = [
            e
            for e in self.store.logs.get(export_id, ())
            if (after is None or e["timestamp"] > after)
            and (before is None or e["timestamp"] < before)
            and (not levels or e["level"] in levels)
            and (not search or search in e["message"].lower())
            and (not wanted_instance or e["instance_id"] == wanted_instance)
        ]
        entries.sort(key=lambda e: e["timestamp"], reverse=True)
        fetched = entries[:limit]
        offset = _positive_int(_first(query, "offset"), 0, allow_zero=True)
        count = len(fetched)
        return {
            "count": count,
            "next": page.with_params(limit=limit, offset=offset + limit) if offset + limit < count else None,
            "previous": _previous_offset_url(page, limit, offset),
            "results": [self.store.render_log(e) for e in fetched[offset : offset + limit]],
        }

    def run_logs(
        self, team_id: int, export_id: str, run_id: str, query: Query, page: Page, now: datetime
    ) -> dict[str, Any]:
        run = self.run(team_id, export_id, run_id, query, now)  # after/before: the run window and the logs
        return self.export_logs(team_id, export_id, query, page, instance_id=run["_instance_id"])

    # -- destination tests (new generation; the docs generation needs the INTERNAL scope) ---------------
    def destination_test(self, query: Query) -> tuple[int, Any]:
        destination = _first(query, "destination")
        if not destination:
            return 400, None
        steps = _TEST_STEPS.get(destination)
        if steps is None:
            return 404, None
        return 200, {"steps": [{"name": n, "description": d, "result": None} for n, d in steps]}

    def run_test_step(self, team_id: int, export_id: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise validation("Invalid data. Expected a dictionary, but got list.")
        existing = self.export(team_id, export_id) if export_id else None
        step = _positive_int(str(body.get("step", 0)), 0, allow_zero=True)
        destination = body.get("destination") or {}
        dtype = destination.get("type") if isinstance(destination, dict) else None
        if existing is not None and dtype and dtype != existing["destination"]["type"]:
            raise validation(
                f"Cannot change destination type from '{existing['destination']['type']}' to '{dtype}'.",
                "destination",
            )
        dtype = dtype or (existing["destination"]["type"] if existing else None)
        steps = _TEST_STEPS.get(dtype or "", [("Verify destination", "Check the destination is reachable.")])
        name, description = steps[min(step, len(steps) - 1)]
        return {"name": name, "description": description, "result": {"status": "Passed", "message": None}}

    # -- runs -------------------------------------------------------------------------------------------
    def list_runs(
        self, team_id: int, export_id: str, query: Query, page: Page, now: datetime
    ) -> dict[str, Any]:
        ordering = _first(query, "ordering")
        if ordering not in RUN_ORDERINGS:
            ordering = "-created_at"
        # A ListField of ChoiceFields: one status per repeated parameter; "Failed,Completed" is one unknown
        # choice. The error is keyed by the item's index (PostHog joins nested keys with "__").
        statuses: set[str] = set()
        for index, status in enumerate(query.get("status", [])):
            if status not in RUN_STATUSES:
                raise validation(f'"{status}" is not a valid choice.', f"status__{index}", "invalid_choice")
            statuses.add(status)
        export = self.store.exports.get(export_id) if _is_uuid(export_id) else None
        if export is None or export["team_id"] != team_id:
            runs: list[dict[str, Any]] = []
        else:
            runs = self.store.runs_of_export(export_id)
        field, inside = _run_window(query, now)
        runs = [r for r in runs if inside(r)]
        if statuses:
            runs = [r for r in runs if r["status"] in statuses]
        return _cursor_page(
            runs, field, ordering.startswith("-"), RUNS_PAGE, query, page, self.store.render_run
        )

    def get_run(
        self, team_id: int, export_id: str, run_id: str, query: Query, now: datetime
    ) -> dict[str, Any]:
        return self.store.render_run(self.run(team_id, export_id, run_id, query, now))

    def cancel_run(
        self, team_id: int, export_id: str, run_id: str, query: Query, now: datetime
    ) -> dict[str, Any]:
        run = self.run(team_id, export_id, run_id, query, now)
        if run["status"] not in ACTIVE:
            raise validation(f"Cannot cancel a run that is in '{run['status']}' status")
        if not self.store.take_ignored_cancel("run"):
            self.machine.finish_run(run, "Cancelled", now)
        return {"cancelled": True}

    def retry_run(
        self, team_id: int, export_id: str, run_id: str, query: Query, now: datetime
    ) -> tuple[int, dict[str, Any]]:
        """Start a one-interval backfill over the run, whatever the run's status and even if the export is
        deleted (PostHog's runs queryset has no deleted filter): a still active run is adopted by it, and on a
        deleted export it fails at its schedule check."""
        run = self.run(team_id, export_id, run_id, query, now)
        export = self.store.exports[export_id]
        backfill = self._start_backfill(export, run["data_interval_start"], run["data_interval_end"], now)
        return (201 if self.new else 200), {"backfill_id": backfill["_workflow_id"]}

    # -- backfills --------------------------------------------------------------------------------------
    def list_backfills(
        self, team_id: int, export_id: str, query: Query, page: Page, now: datetime
    ) -> dict[str, Any]:
        ordering = _first(query, "ordering")
        if ordering not in BACKFILL_ORDERINGS:
            ordering = "-created_at"
        backfills = [b for b in self.store.backfills_of_export(export_id) if b["team"] == team_id]
        return _cursor_page(
            backfills,
            ordering.lstrip("-"),
            ordering.startswith("-"),
            BACKFILLS_PAGE,
            query,
            page,
            lambda b: self.store.render_backfill(b, now),
        )

    def get_backfill(self, team_id: int, export_id: str, backfill_id: str, now: datetime) -> dict[str, Any]:
        return self.store.render_backfill(self.backfill(team_id, export_id, backfill_id), now)

    def cancel_backfill(
        self, team_id: int, export_id: str, backfill_id: str, now: datetime
    ) -> dict[str, Any]:
        backfill = self.backfill(team_id, export_id, backfill_id)
        if backfill["status"] not in ACTIVE:
            raise validation(f"Cannot cancel a backfill that is in '{backfill['status']}' status")
        if not self.store.take_ignored_cancel("backfill"):
            self.machine.finish_backfill(backfill, "Cancelled", now)
        return {"cancelled": True}

    def create_backfill(
        self, team_id: int, export_id: str, body: Any, now: datetime
    ) -> tuple[int, dict[str, Any]]:
        """PostHog's ``create_backfill``; the newest code checks flag, then concurrency, then dates."""
        export = self.export(team_id, export_id, "BatchExport not found.")
        if not isinstance(body, dict):
            body = {}
        raw_start, raw_end = body.get("start_at"), body.get("end_at")
        if self.new:
            if raw_start is None and "batch-export-earliest-backfill" not in self.settings.feature_flags:
                raise validation("Backfilling from the beginning of time is not enabled for this team.")
            self._concurrency_check(team_id)
        if self.new and export["interval"] in ("day", "week"):
            start = parse_backfill_date(raw_start, export)
            end = parse_backfill_date(raw_end, export)
        else:
            start = parse_backfill_bound(raw_start)
            end = parse_backfill_bound(raw_end)
        if start is not None and end is not None:
            if start >= end:
                raise validation(
                    "The initial backfill datetime 'start_at' must be before 'end_at'"
                    if self.new
                    else "The initial backfill datetime 'start_at' happens after 'end_at'"
                )
            if end > now:
                raise validation(f"The provided 'end_at' ({end.isoformat()}) is in the future")
        if not self.new and (start is not None or end is not None):
            start = self._earliest_data_check(export, start, end)
        open_end = end is None
        if end is None and export["destination"]["type"] not in ("HTTP", "NoOp"):
            raise server_error()
        if not self.new:
            self._concurrency_check(team_id)
        backfill = self._start_backfill(
            export, start, end if end is not None else now, now, open_end=open_end
        )
        if self.new:
            return 201, {"backfill_id": backfill["id"]}
        return 200, {"backfill_id": backfill["_workflow_id"]}

    def _concurrency_check(self, team_id: int) -> None:
        limit = self.settings.max_concurrent_backfills
        if limit is None:
            return
        active = sum(
            1 for b in self.store.backfills.values() if b["team"] == team_id and b["status"] in ACTIVE
        )
        if active >= limit:
            raise ApiError(
                429,
                "server_error",
                "too_many_concurrent_backfills",
                f"This team already has {limit} batch export backfills running. "
                "Wait for some to finish or cancel them before creating more.",
            )

    def _earliest_data_check(
        self, export: dict[str, Any], start: datetime | None, end: datetime | None
    ) -> datetime | None:
        if self.settings.no_data:
            raise validation("There is no data to backfill for this model.")
        earliest_raw = self.settings.earliest_data_at
        if earliest_raw is None:
            return start
        earliest = parse_drf_datetime(earliest_raw)
        if earliest is None:
            return start
        aligned = align(earliest, export["interval"])
        if end is not None and end <= earliest:
            raise validation(
                "The provided backfill date range contains no data. "
                f"The earliest possible backfill start date is {aligned:%Y-%m-%d %H:%M:%S}"
            )
        if start is None or start < earliest:
            return aligned
        return start

    def workflow_id(self, export_id: str, start: datetime | None, end: datetime | None) -> str:
        """The deterministic Temporal workflow id of a backfill over ``[start, end)``."""
        start_text = start.astimezone(UTC).isoformat() if start is not None else "START"
        end_text = end.astimezone(UTC).isoformat() if end is not None else ("END" if self.new else "None")
        return f"{export_id}-Backfill-{start_text}-{end_text}"

    def _start_backfill(
        self,
        export: dict[str, Any],
        start: datetime | None,
        end: datetime,
        now: datetime,
        *,
        open_end: bool = False,
    ) -> dict[str, Any]:
        """Start the backfill workflow; an identical range still Starting/Running collides (HTTP 500)."""
        start_utc = start.astimezone(UTC) if start is not None else None
        end_utc = end.astimezone(UTC)
        workflow_id = self.workflow_id(export["id"], start_utc, None if open_end else end_utc)
        for other in self.store.backfills_of_export(export["id"], visible_only=False):
            if other.get("_workflow_id") == workflow_id and other["status"] in ACTIVE:
                raise server_error()  # Temporal: workflow already started
        first = start_utc
        adjusted: datetime | None = None
        if self.new and start_utc is not None:
            # newest code: narrow the start to the earliest data at or after it, then align it down
            earliest = parse_drf_datetime(self.settings.earliest_data_at or "")
            if earliest is not None and earliest > start_utc:
                first = earliest
            if not self.settings.no_data and first is not None and first < end_utc:
                adjusted = align(first, self.machine.cadence(export))
        if self.new and self.settings.no_data:
            intervals: list[tuple[datetime | None, datetime]] = []
        else:
            intervals = self.machine.plan_intervals(first, end_utc, export)
        backfill = self.store.new_backfill(
            export, start_utc, None if open_end else end_utc, "Starting", now, intervals
        )
        backfill["_workflow_id"] = workflow_id
        backfill["_adjusted_start"] = adjusted
        self.machine.start_backfill(backfill, now)
        return backfill


_TEST_STEPS: dict[str, list[tuple[str, str]]] = {
    name: [
        ("Verify destination is reachable", f"Ensure the configured {name} destination can be reached."),
        ("Verify permissions", f"Ensure we have the permissions required to write to {name}."),
    ]
    for name in (
        "S3",
        "AwsS3",
        "S3Compatible",
        "BigQuery",
        "Snowflake",
        "Databricks",
        "Postgres",
        "Redshift",
        "AzureBlob",
    )
}


def _positive_int(raw: str | None, default: int, *, allow_zero: bool) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    if value < 0 or (value == 0 and not allow_zero):
        return default
    return value


def _previous_offset_url(page: Page, limit: int, offset: int) -> str | None:
    if offset <= 0:
        return None
    if offset - limit <= 0:
        return page.with_params(drop=("offset",), limit=limit)
    return page.with_params(limit=limit, offset=offset - limit)


def _log_datetime(query: Query, key: str) -> datetime | None:
    raw = _first(query, key)
    if raw is None or raw == "":
        return None
    parsed = parse_drf_datetime(raw)
    if parsed is None:
        raise validation(DATETIME_FORMAT_ERROR, key)
    return parsed


def _run_window(query: Query, now: datetime) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    """The runs viewset's date window and the field it orders by.

    ``created_at`` in [after or -7d, before or now]; with a ``data_interval_start`` ordering, the data
    interval inside [start or -7d, end or now] instead.
    """
    ordering = _first(query, "ordering")
    if ordering not in RUN_ORDERINGS or ordering.lstrip("-") == "created_at":
        low = _window(query, "after", "-7d", now)
        high = _window(query, "before", None, now)
        return "created_at", lambda r: low <= r["created_at"] <= high
    low = _window(query, "start", "-7d", now)
    high = _window(query, "end", None, now)
    return (
        "data_interval_start",
        lambda r: (
            r["data_interval_start"] is not None
            and r["data_interval_start"] >= low
            and r["data_interval_end"] <= high
        ),
    )


def _window(query: Query, key: str, default: str | None, now: datetime) -> datetime:
    raw = _first(query, key) or default
    if raw is None:
        return now
    parsed = parse_relative(raw, now)
    if parsed is None:
        raise validation(DATETIME_FORMAT_ERROR, key)
    return parsed


def _encode_cursor(direction: str, key: tuple[int, str]) -> str:
    raw = json.dumps({"d": direction, "p": key[0], "i": key[1]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, tuple[int, str]]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        direction, position, ident = data["d"], int(data["p"]), str(data["i"])
        if direction not in ("n", "p"):
            raise ValueError(direction)
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise not_found("Invalid cursor") from None
    return direction, (position, ident)


def _cursor_page(
    items: list[dict[str, Any]],
    field: str,
    descending: bool,
    size: int,
    query: Query,
    page: Page,
    render: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Keyset pagination on (field, id), like DRF's CursorPagination with a stable tie-break."""

    def key(item: dict[str, Any]) -> tuple[int, str]:
        return (_micros(item[field]), item["id"])

    ordered = sorted(items, key=key, reverse=descending)
    keys = [key(i) for i in ordered]

    def after(k: tuple[int, str], ref: tuple[int, str]) -> bool:
        return k < ref if descending else k > ref

    cursor = _first(query, "cursor")
    if cursor:
        direction, ref = _decode_cursor(cursor)
        if direction == "n":
            start = next((n for n, k in enumerate(keys) if after(k, ref)), len(keys))
            stop = min(start + size, len(keys))
        else:
            stop = next((n for n, k in enumerate(keys) if not after(ref, k)), len(keys))
            start = max(0, stop - size)
    else:
        start, stop = 0, min(size, len(keys))
    chunk = ordered[start:stop]
    has_next = stop < len(keys)
    has_prev = start > 0
    return {
        "next": page.with_params(cursor=_encode_cursor("n", keys[stop - 1])) if has_next and chunk else None,
        "previous": page.with_params(cursor=_encode_cursor("p", keys[start])) if has_prev and chunk else None,
        "results": [render(i) for i in chunk],
    }
