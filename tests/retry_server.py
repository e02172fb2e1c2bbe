"""A small stateful PostHog for the retry tests: an hourly export's runs and backfills, run retries that
start one-interval backfills (imported by tests/api and tests/operators)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_posthog.api.http import RequestSpec

UTC = dt.timezone.utc
EXPORT = "0190-export"
DAY = dt.datetime(2024, 1, 1, tzinfo=UTC)


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def hour(n: int) -> tuple[dt.datetime, dt.datetime]:
    return DAY + dt.timedelta(hours=n), DAY + dt.timedelta(hours=n + 1)


class RetryServer:
    """An hourly export's runs and backfills; a run retry starts a one-interval backfill whose run ends as
    ``retry_outcomes`` says (``Completed`` by default), created after every other run."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.backfills: dict[str, dict[str, Any]] = {}
        self.retry_outcomes: list[str] = []
        self.sent: list[RequestSpec] = []
        self._tick = 0

    def _stamp(self) -> str:
        self._tick += 1
        return _iso(dt.datetime(2024, 2, 1, tzinfo=UTC) + dt.timedelta(seconds=self._tick))

    def run(self, n: int, status: str, *, backfill: str | None = None, run_id: str | None = None) -> str:
        start, end = hour(n)
        row = {
            "id": run_id or f"run-{len(self.runs)}",
            "status": status,
            "batch_export": EXPORT,
            "backfill": backfill,
            "data_interval_start": _iso(start),
            "data_interval_end": _iso(end),
            "created_at": self._stamp(),
            "records_completed": 5 if status == "Completed" else None,
        }
        self.runs.append(row)
        return str(row["id"])

    def backfill(self, first: int, last: int, status: str = "Completed", **extra: Any) -> str:
        backfill_id = str(uuid.uuid4())
        self.backfills[backfill_id] = {
            "id": backfill_id,
            "status": status,
            "batch_export": EXPORT,
            "start_at": _iso(hour(first)[0]),
            "end_at": _iso(hour(last)[1]),
            "created_at": self._stamp(),
            **extra,
        }
        return backfill_id

    def posts(self) -> list[str]:
        return [s.path for s in self.sent if s.method == "POST"]

    def answer(self, spec: RequestSpec) -> Any:
        self.sent.append(spec)
        parts = spec.path.strip("/").split("/")[2:]  # below batch_exports/<export>/
        params = dict(spec.params)
        if parts == []:
            return {"id": EXPORT, "name": "e", "interval": "hour", "paused": False, "destination": {}}
        if parts == ["runs"]:
            rows = self.runs
            if "start" in params:
                start, end = (dt.datetime.fromisoformat(str(params[k])) for k in ("start", "end"))
                rows = [
                    r
                    for r in rows
                    if dt.datetime.fromisoformat(r["data_interval_start"]) >= start
                    and dt.datetime.fromisoformat(r["data_interval_end"]) <= end
                ]
            return {"next": None, "results": [dict(r) for r in rows]}
        if parts[0] == "runs" and len(parts) == 2:
            return next(dict(r) for r in self.runs if r["id"] == parts[1])
        if parts[0] == "runs" and parts[2] == "retry":
            run = next(r for r in self.runs if r["id"] == parts[1])
            n = int((dt.datetime.fromisoformat(run["data_interval_start"]) - DAY).total_seconds() // 3600)
            backfill_id = self.backfill(n, n)
            self.run(
                n, self.retry_outcomes.pop(0) if self.retry_outcomes else "Completed", backfill=backfill_id
            )
            return {"backfill_id": backfill_id}
        if parts == ["backfills"]:
            return {"next": None, "results": list(self.backfills.values())}
        if parts[0] == "backfills":
            return dict(self.backfills[parts[1]])
        raise AssertionError(f"unexpected request {spec.method} {spec.path}")
