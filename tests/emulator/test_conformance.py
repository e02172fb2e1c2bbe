"""Every body the emulator returns validates against PostHog's own OpenAPI schema (tests/data/README.md)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from openapi_schema_validator import OAS30ReadValidator

from airflow_provider_posthog.emulator import EmulatorSettings

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "openapi-batch-exports.json"  # see its README


@cache
def _spec() -> dict[str, Any]:
    spec = json.loads(SPEC_PATH.read_text())
    components = copy.deepcopy(spec["components"])
    # Known loose spot: the generator documents `progress` as a string; the server returns an object or null.
    components["schemas"]["BatchExportBackfill"]["properties"]["progress"] = {
        "type": "object",
        "nullable": True,
        "readOnly": True,
        "required": ["total_runs", "finished_runs", "progress"],
        "properties": {
            "total_runs": {"type": "integer"},
            "finished_runs": {"type": "integer"},
            "progress": {"type": "number"},
        },
    }
    return {"components": components}


def validate(name: str, body: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", **_spec()}
    errors = list(OAS30ReadValidator(schema).iter_errors(body))
    assert not errors, f"{name}: {[e.message for e in errors]}"


def test_schema_validator_rejects_wrong_shapes() -> None:
    """Guard: the validator really checks (a broken body must fail)."""
    with pytest.raises(AssertionError):
        validate("BatchExportRun", {"id": "x", "status": "Exploded"})
    with pytest.raises(AssertionError):
        validate("PaginatedBatchExportList", {"results": []})


@pytest.fixture(params=["docs", "new"])
def posthog_emulator_settings(request: pytest.FixtureRequest) -> EmulatorSettings:
    return EmulatorSettings(api_generation=request.param, run_duration=2.0, backfill_row_delay=0.5)


def test_bodies_conform(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    new = control.settings.api_generation == "new"
    export = api.create_export(hogql_query="SELECT event, properties.$browser AS browser FROM events")
    validate("BatchExport", export)
    noop = api.create_export(
        destination={"type": "NoOp", "config": {}}, model="persons", interval="day", paused=True
    )
    validate("BatchExport", noop)
    if not new:
        validate("BatchExport", api.create_export(model=None, interval="week"))
    validate("BatchExport", api.request("PATCH", export["id"], json={"name": "renamed"}).json())
    api.post(f"{export['id']}/pause")
    validate("BatchExport", api.get(export["id"]).json())
    response = api.post(
        f"{export['id']}/backfills", {"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-01T03:00:00Z"}
    )
    assert response.status_code in (200, 201)
    seeded = control.seed_backfill(export["id"], None, "2024-01-01T00:00:00Z", status="Completed")
    validate("BatchExportBackfill", seeded)
    control.seed_run(export["id"], None, "2024-01-01T00:00:00Z", status="Failed", latest_error="x")
    for step in (0.6, 0.4, 1.0, 2.0, 3.0, 30.0):  # snapshots through every state
        control.advance(step)
        runs = api.get(f"{export['id']}/runs").json()
        validate("PaginatedBatchExportRunList", runs)
        for run in runs["results"]:
            validate("BatchExportRun", api.get(f"{export['id']}/runs/{run['id']}").json())
        backfills = api.get(f"{export['id']}/backfills").json()
        validate("PaginatedBatchExportBackfillList", backfills)
        for backfill in backfills["results"]:
            validate("BatchExportBackfill", api.get(f"{export['id']}/backfills/{backfill['id']}").json())
    listing = api.get("", params={"limit": 1}).json()
    assert listing["next"]
    validate("PaginatedBatchExportList", listing)
    full = api.get(export["id"]).json()
    assert len(full["latest_runs"]) == 4
    validate("BatchExport", full)
    statuses = {r["status"] for r in full["latest_runs"]}
    assert statuses == {"Completed", "Failed"}
