"""The new generation (``api_generation="new"``): 201s with UUIDs, Starting backfills, date-only bounds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_posthog.emulator import EmulatorSettings

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api


@pytest.fixture
def posthog_emulator_settings() -> EmulatorSettings:
    return EmulatorSettings(api_generation="new", run_duration=10.0, backfill_row_delay=1.0)


def test_backfill_create_201_with_uuid_and_starting_then_running(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    response = api.post(
        f"{export['id']}/backfills", {"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-01T02:00:00Z"}
    )
    assert response.status_code == 201
    backfill_id = response.json()["backfill_id"]
    assert api.get(f"{export['id']}/backfills/{backfill_id}").status_code == 404  # row not there yet
    control.advance(1.05)
    got = api.get(f"{export['id']}/backfills/{backfill_id}").json()
    assert got["status"] == "Starting"
    assert got["total_records_count"] is None and got["adjusted_start_at"] is None
    assert set(got) == {
        "id", "batch_export", "team", "start_at", "end_at", "status", "finished_at", "progress",
        "adjusted_start_at", "total_records_count", "created_at", "last_updated_at",
    }  # fmt: skip
    control.advance(0.5)
    got = api.get(f"{export['id']}/backfills/{backfill_id}").json()
    assert got["status"] == "Running" and got["total_records_count"] == 200
    assert got["adjusted_start_at"] == "2024-01-01T00:00:00Z"
    control.advance(100)
    got = api.get(f"{export['id']}/backfills/{backfill_id}").json()
    assert got["status"] == "Completed" and got["total_records_count"] == 200


def test_retry_run_201(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export()
    run = posthog_emulator.control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    response = api.post(f"{export['id']}/runs/{run['id']}/retry")
    assert response.status_code == 201 and "backfill_id" in response.json()


def test_legacy_backfill_action_removed(api: Api) -> None:
    export = api.create_export()
    response = api.post(
        f"{export['id']}/backfill", {"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-01T01:00:00Z"}
    )
    assert response.status_code == 404


def test_start_before_end_message(api: Api) -> None:
    export = api.create_export()
    response = api.post(
        f"{export['id']}/backfills", {"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-01T00:00:00Z"}
    )
    assert response.json()["detail"] == "The initial backfill datetime 'start_at' must be before 'end_at'"


def test_beginning_of_time_needs_flag(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export()
    response = api.post(f"{export['id']}/backfills", {"start_at": None, "end_at": "2024-01-01T00:00:00Z"})
    assert response.json()["detail"] == "Backfilling from the beginning of time is not enabled for this team."
    posthog_emulator.control.configure(feature_flags={"batch-export-earliest-backfill"})
    assert (
        api.post(
            f"{export['id']}/backfills", {"start_at": None, "end_at": "2024-01-01T00:00:00Z"}
        ).status_code
        == 201
    )
    posthog_emulator.control.advance(60)
    (run,) = api.get(f"{export['id']}/runs").json()["results"]
    assert run["data_interval_start"] is None


@pytest.mark.parametrize(
    ("timezone", "hour"), [("UTC", "00"), ("US/Pacific", "08"), ("Asia/Kathmandu", "18")]
)
def test_daily_backfill_date_only(
    api: Api, posthog_emulator: PostHogEmulator, timezone: str, hour: str
) -> None:
    export = api.create_export(interval="day", timezone=timezone)
    response = api.post(f"{export['id']}/backfills", {"start_at": "2026-01-01", "end_at": "2026-01-02"})
    assert response.status_code == 201, response.text
    posthog_emulator.control.advance(2)
    got = api.get(f"{export['id']}/backfills/{response.json()['backfill_id']}").json()
    assert got["start_at"].endswith(f"T{hour}:{'15' if timezone == 'Asia/Kathmandu' else '00'}:00Z")
    error = api.post(
        f"{export['id']}/backfills",
        {"start_at": "2021-01-01T00:00:00+00:00", "end_at": "2021-01-02T00:00:00+00:00"},
    ).json()
    assert error["detail"] == (
        "Input '2021-01-01T00:00:00+00:00' is not a valid ISO formatted date. Daily or weekly batch export "
        "backfills expect only the date component, but a time was included."
    )


def test_weekly_backfill_weekday(api: Api) -> None:
    export = api.create_export(interval="week", offset_day=1)
    ok = api.post(f"{export['id']}/backfills", {"start_at": "2026-01-05", "end_at": "2026-01-12"})
    assert ok.status_code == 201, ok.text
    wrong = api.post(f"{export['id']}/backfills", {"start_at": "2026-01-04", "end_at": "2026-01-12"}).json()
    assert wrong["detail"] == (
        "Input 2026-01-04 is not on the correct day of the week for this batch export. "
        "2026-01-04 is a Sunday "
        "but this batch export is configured to run weekly on Monday."
    )


def test_schedule_fields_and_defaults(api: Api) -> None:
    hourly = api.create_export()
    assert (hourly["timezone"], hourly["offset_day"], hourly["offset_hour"]) == ("UTC", None, None)
    weekly = api.request("PATCH", hourly["id"], json={"interval": "week"}).json()
    assert (weekly["timezone"], weekly["offset_day"], weekly["offset_hour"]) == ("UTC", 0, 0)
    daily = api.create_export(interval="day", timezone="Europe/Berlin", offset_hour=1)
    back_to_hourly = api.request("PATCH", daily["id"], json={"interval": "hour"}).json()
    assert back_to_hourly["timezone"] == "Europe/Berlin" and back_to_hourly["offset_hour"] is None
    for body in (
        {"interval": "hour", "offset_hour": 2},
        {"interval": "day", "offset_hour": 24},
        {"interval": "day", "offset_day": 1},
        {"interval": "week", "offset_day": 7},
        {"interval": "hour", "timezone": "invalid"},
    ):
        response = api.post("", {"name": "x", "destination": {"type": "NoOp", "config": {}}, **body})
        assert response.status_code == 400, body


def test_model_change_and_destination_type_change_rejected(api: Api) -> None:
    export = api.create_export()
    model = api.request("PATCH", export["id"], json={"model": "persons"}).json()
    assert model["detail"] == "Changing models is not supported. Create a new batch export instead."
    dtype = api.request("PATCH", export["id"], json={"destination": {"type": "NoOp", "config": {}}}).json()
    assert dtype["detail"].startswith("Cannot change destination type from 'S3' to 'NoOp'.")


def test_filters_validation(api: Api) -> None:
    def create(filters: object) -> dict[str, object]:
        response = api.post(
            "", {"name": "x", "interval": "hour", "destination": {"type": "NoOp"}, "filters": filters}
        )
        return {"status": response.status_code, **response.json()}

    assert "should be an array" in str(create({"filter_something": 123})["detail"])
    assert create(None)["status"] == 201 and create([])["status"] == 201
    assert (
        create([{"key": "$browser", "type": "event", "value": ["Chrome"], "operator": "exact"}])["status"]
        == 201
    )
    assert "not 'filters'. Trigger a backfill" in str(
        create([{"data_interval_start": "2024-01-01"}])["detail"]
    )
    assert "must be an object" in str(create(["$pageview"])["detail"])
    assert "must have a 'type'" in str(create([{"key": "$browser"}])["detail"])


def test_workflows_exports_hidden_from_list(api: Api, posthog_emulator: PostHogEmulator) -> None:
    posthog_emulator.control.seed_export(
        destination={"type": "Workflows", "config": {"hog_function_id": "f"}}
    )
    api.create_export()
    assert api.get("").json()["count"] == 1


def test_destination_test_endpoints(api: Api) -> None:
    for destination in ("AwsS3", "BigQuery", "Snowflake", "Databricks"):
        steps = api.get("test", params={"destination": destination}).json()["steps"]
        assert steps and all({"name", "description"} <= set(step) for step in steps)
    step = api.post("run_test_step_new", {"step": 0, "destination": {"type": "S3", "config": {}}}).json()
    assert step["result"] == {"status": "Passed", "message": None}


def test_logs_with_read_scope(api: Api, posthog_emulator: PostHogEmulator) -> None:
    posthog_emulator.control.add_api_key("phx_read", scopes=["batch_export:read"])
    export = api.create_export()
    assert api.get(f"{export['id']}/logs", key="phx_read").status_code == 200


def test_runs_have_newer_fields(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export()
    run = posthog_emulator.control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    got = api.get(f"{export['id']}/runs/{run['id']}").json()
    assert got["records_failed"] is None and got["batch_export_on_demand"] is None
