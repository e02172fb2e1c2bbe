"""Request validation for exports and backfills with PostHog's exact messages."""

from __future__ import annotations

import re
import zoneinfo
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from .destinations import DOCS_TYPES, NEW_TYPES, check_destination_rules, validate_config
from .errors import ApiError, permission_denied, validation
from .timeutil import Cadence, parse_drf_datetime, wall_time

if TYPE_CHECKING:
    from .settings import EmulatorSettings

UTC = timezone.utc
DOCS_INTERVALS = ("hour", "day", "week", "every 5 minutes")
NEW_INTERVALS = (*DOCS_INTERVALS, "every 15 minutes")
DATETIME_FORMAT_ERROR = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)
_WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
EVENT_FIELDS = frozenset(
    {
        "uuid",
        "event",
        "properties",
        "timestamp",
        "distinct_id",
        "elements_chain",
        "created_at",
        "person_id",
        "person",
        "person_properties",
        "team_id",
        "inserted_at",
        "_inserted_at",
        "$session_id",
        "$window_id",
        "set",
        "set_once",
        "ip",
        "site_url",
    }
)


def _choice(value: Any, attr: str) -> ApiError:
    return validation(f'"{value}" is not a valid choice.', attr, "invalid_choice")


def recursive_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = recursive_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_bool(value: Any, attr: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (1, 0) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "t", "1", "yes", "y", "on"):
            return True
        if lowered in ("false", "f", "0", "no", "n", "off"):
            return False
    raise validation("Must be a valid boolean.", attr)


def _datetime_field(value: Any, attr: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_drf_datetime(value)
    if parsed is None:
        raise validation(DATETIME_FORMAT_ERROR, attr)
    return parsed


def _int_field(value: Any, attr: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise validation("A valid integer is required.", attr)
    try:
        number = int(value)
    except ValueError:
        raise validation("A valid integer is required.", attr) from None
    if number > high:
        raise validation(f"Ensure this value is less than or equal to {high}.", attr, "max_value")
    if number < low:
        raise validation(f"Ensure this value is greater than or equal to {low}.", attr, "min_value")
    return number


class ExportValidator:
    """``BatchExportSerializer`` behaviour: field order, required fields, flags, destination rules."""

    def __init__(self, settings: EmulatorSettings, integrations: dict[int, dict[str, Any]]) -> None:
        self.settings = settings
        self.integrations = integrations

    @property
    def new(self) -> bool:
        return self.settings.api_generation == "new"

    def clean(
        self, body: Any, *, team_id: int, partial: bool, existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            got = type(body).__name__
            raise validation(f"Invalid data. Expected a dictionary, but got {got}.", None)
        out: dict[str, Any] = {}
        require = not partial
        # name
        if "name" in body:
            name = body["name"]
            if name is None:
                raise validation("This field may not be null.", "name", "null")
            if isinstance(name, (dict, list, bool)):
                raise validation("Not a valid string.", "name")
            name = str(name)
            if not name.strip():
                raise validation("This field may not be blank.", "name", "blank")
            out["name"] = name
        elif require:
            raise validation("This field is required.", "name", "required")
        # model
        if "model" in body:
            model = body["model"]
            allowed = (
                ("events", "persons", "sessions", "hogql") if self.new else ("events", "persons", "sessions")
            )
            if model is None and self.new:
                raise validation("This field may not be null.", "model", "null")
            if model not in (None, "") and model not in allowed:
                raise _choice(model, "model")
            if self.new and existing is not None and model != existing["model"]:
                raise validation(
                    "Changing models is not supported. Create a new batch export instead.", "model"
                )
            out["model"] = model
        # destination
        if "destination" in body:
            out["destination"] = self._destination(body["destination"], team_id, partial, existing)
        elif require:
            raise validation("This field is required.", "destination", "required")
        # interval
        if "interval" in body:
            interval = body["interval"]
            if interval is None:
                raise validation("This field may not be null.", "interval", "null")
            if interval not in (NEW_INTERVALS if self.new else DOCS_INTERVALS):
                raise _choice(interval, "interval")
            if interval not in ("hour", "day", "week") and (
                "high-frequency-batch-exports" not in self.settings.feature_flags
            ):
                raise permission_denied("Higher frequency batch exports are not enabled for this team.")
            out["interval"] = interval
        elif require:
            raise validation("This field is required.", "interval", "required")
        if "paused" in body:
            out["paused"] = parse_bool(body["paused"], "paused")
        for key in ("last_paused_at", "start_at", "end_at"):
            if key in body:
                out[key] = _datetime_field(body[key], key)
        model_now = out.get("model", existing["model"] if existing else "events")
        if body.get("hogql_query") is not None:
            query = body["hogql_query"]
            if not isinstance(query, str):
                raise validation("Not a valid string.", "hogql_query")
            out["hogql_query"], out["schema"] = self._hogql(query)
        if "filters" in body:
            out["filters"] = self._filters(body["filters"]) if self.new else body["filters"]
        if self.new:
            self._schedule_fields(body, out, existing)
            for key in ("hogql_modifiers", "primary_key", "version_key"):
                if key in body:
                    out[key] = body[key]
            if "incremental_mode" in body:
                if body["incremental_mode"] not in ("APPEND", "MERGE"):
                    raise _choice(body["incremental_mode"], "incremental_mode")
                out["incremental_mode"] = body["incremental_mode"]
        destination = out.get("destination") or (existing or {}).get("destination") or {}
        destination_type = destination.get("type")
        if destination_type == "HTTP" and model_now not in ("events", None, ""):
            raise validation("HTTP batch exports only support the events model", None)
        return out

    # -- destination ------------------------------------------------------------------------------------
    def _destination(
        self, raw: Any, team_id: int, partial: bool, existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not isinstance(raw, dict):
            got = type(raw).__name__
            raise validation(
                f"Invalid data. Expected a dictionary, but got {got}.", "destination__non_field_errors"
            )
        old = existing["destination"] if existing else None
        if "type" in raw:
            dtype = raw["type"]
            if dtype not in (NEW_TYPES if self.new else DOCS_TYPES):
                raise _choice(dtype, "destination__type")
        elif partial and old is not None:
            dtype = old["type"]
        else:
            raise validation("This field is required.", "destination__type", "required")
        if old is not None and dtype != old["type"] and self.new:
            raise validation(
                f"Cannot change destination type from '{old['type']}' to '{dtype}'. "
                "Delete this batch export and create a new one with the new destination type.",
                "destination",
            )
        config = raw.get("config", {})
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise validation(
                "Configuration has invalid type: expected a dictionary", "destination__non_field_errors"
            )
        merged = (
            recursive_merge(old["config"], config) if old is not None and old["type"] == dtype else config
        )
        # unknown/type checks see only the input; required keys are checked on the merged config (POST/PUT).
        validate_config(dtype, config, check_required=False)
        coerced = validate_config(dtype, merged, check_required=not partial)
        integration = raw.get(
            "integration_id", raw.get("integration", old.get("integration") if old else None)
        )
        if integration is not None and (isinstance(integration, bool) or not isinstance(integration, int)):
            raise validation(
                f"Incorrect type. Expected pk value, received {type(integration).__name__}.",
                "destination__integration",
                "incorrect_type",
            )
        check_destination_rules(
            dtype,
            coerced,
            integration,
            flags=self.settings.feature_flags,
            integrations=self.integrations,
            team_id=team_id,
            generation=self.settings.api_generation,
        )
        return {"type": dtype, "config": coerced, "integration": integration}

    # -- hogql ------------------------------------------------------------------------------------------
    def _hogql(self, query: str) -> tuple[str, dict[str, Any]]:
        normalised = " ".join(query.split())
        attr = "hogql_query"
        if not re.match(r"(?is)^select\s+\S", normalised) or re.search(r",\s*,", normalised):
            raise validation("Failed to parse query", attr)
        if re.search(r"(?i)\bfrom\s*$", normalised) or re.search(r"(?i)^select\s+from\b", normalised):
            raise validation("Failed to parse query", attr)
        if re.search(r"(?i)\bunion\b", normalised):
            raise validation("UNIONs are not supported", attr)
        if re.search(r"(?i)^\s*with\b", normalised):
            raise validation(
                "CTEs are not supported" if self.new else "Subqueries or CTEs are not supported", attr
            )
        if re.search(r"(?i)\(\s*select\b", normalised):
            if self.new:
                in_from = re.search(r"(?i)\bfrom\s*\(\s*select\b", normalised)
                raise validation(
                    "Subqueries are not supported"
                    if in_from
                    else "Subqueries in SELECT expressions are not supported",
                    attr,
                )
            raise validation("Subqueries or CTEs are not supported", attr)
        if re.search(r"(?i)\bjoin\b", normalised):
            raise validation("JOINs are not supported", attr)
        source = re.search(r"(?i)\bfrom\s+([A-Za-z_][\w.]*)", normalised)
        if source is None:
            raise validation("Query must SELECT FROM events", attr)
        if source.group(1).lower() != "events":
            raise validation("Query must only SELECT FROM events", attr)
        select_list = normalised[len("select") : source.start()].strip()
        fields = []
        for part in _split_top_level(select_list):
            expression, alias = part, None
            match = re.match(r"(?is)^(.*?)\s+as\s+([\w$]+)$", part)
            if match:
                expression, alias = match.group(1).strip(), match.group(2)
            if re.fullmatch(r"[A-Za-z_$][\w$]*", expression) and expression not in EVENT_FIELDS:
                raise validation(f"Invalid HogQL query: Unable to resolve field: {expression}", attr)
            if alias is None:
                alias = expression.split(".")[-1]
            fields.append({"expression": expression, "alias": alias})
        return normalised, {"fields": fields, "values": {}, "hogql_query": normalised}

    # -- new generation: filters and schedule ------------------------------------------------------------
    @staticmethod
    def _filters(value: Any) -> Any:
        if value is None or value == []:
            return value
        if not isinstance(value, list):
            raise validation("Filters should be an array of property filters", "filters")
        for item in value:
            if not isinstance(item, dict):
                raise validation("Each filter must be an object", "filters")
            if (
                "data_interval_start" in item
                or "data_interval_end" in item
                or item.get("key")
                in (
                    "data_interval_start",
                    "data_interval_end",
                )
            ):
                raise validation(
                    "Data interval bounds belong in a backfill, not 'filters'. Trigger a backfill instead.",
                    "filters",
                )
            if "type" not in item:
                raise validation("Each filter must have a 'type'", "filters")
        return value

    def _schedule_fields(
        self, body: dict[str, Any], out: dict[str, Any], existing: dict[str, Any] | None
    ) -> None:
        if "timezone" in body:
            tz = body["timezone"]
            if tz is None:
                tz = "UTC"
            try:
                zoneinfo.ZoneInfo(str(tz))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise _choice(tz, "timezone") from None
            out["timezone"] = tz
        if "offset_hour" in body:
            out["offset_hour"] = _int_field(body["offset_hour"], "offset_hour", 0, 23)
        if "offset_day" in body:
            out["offset_day"] = _int_field(body["offset_day"], "offset_day", 0, 6)
        if "interval" not in body:
            # PostHog's interval/offset check returns here; offsets sent without ``interval`` then fail the
            # update with a 500 (``Service.update_export``)
            return
        interval = out["interval"]
        # only the body counts: an offset not sent is reset (weekly: Sunday and/or 00:00), not kept
        offset_day, offset_hour = out.get("offset_day"), out.get("offset_hour")
        if interval == "day":
            if offset_day is not None:
                raise validation("offset_day should not be specified for daily intervals", "offset_day")
            out["offset_day"], out["offset_hour"] = None, offset_hour or 0
        elif interval == "week":
            out["offset_day"], out["offset_hour"] = offset_day or 0, offset_hour or 0
        else:
            if offset_hour is not None or offset_day is not None:
                raise validation(
                    "offset_hour is not applicable for non-daily/weekly intervals", "offset_hour"
                )
            out["offset_day"] = None
            out["offset_hour"] = None


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


# -- backfill bounds ----------------------------------------------------------------------------------------
def parse_backfill_bound(value: Any) -> datetime | None:
    """Docs generation parsing: ``datetime.fromisoformat`` and timezone-aware, else the exact 400s."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise validation(f"Input {value} is not a valid ISO formatted datetime.") from None
    if parsed.tzinfo is None:
        raise validation(f"Input {value} is naive.")
    return parsed


def parse_backfill_date(value: Any, export: dict[str, Any]) -> datetime | None:
    """New generation, day/week exports: date-only bounds at the export's offset hour in its timezone."""
    if value is None:
        return None
    text = str(value)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        if parse_iso_safe(text) is not None:
            raise validation(
                f"Input '{text}' is not a valid ISO formatted date. Daily or weekly batch export backfills "
                "expect only the date component, but a time was included."
            ) from None
        raise validation(f"Input {text} is not a valid ISO formatted date.") from None
    if export["interval"] == "week":
        wanted = export["offset_day"] or 0
        actual = (day.weekday() + 1) % 7
        if actual != wanted:
            raise validation(
                f"Input {text} is not on the correct day of the week for this batch export. "
                f"{text} is a {_WEEKDAYS[actual]} but this batch export is configured to run weekly "
                f"on {_WEEKDAYS[wanted]}."
            )
    return wall_time(day, Cadence.of_export(export))


def parse_iso_safe(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
