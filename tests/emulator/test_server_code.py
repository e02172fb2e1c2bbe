"""Behaviour of PostHog's current server code that clients must cope with (default ``new`` generation).

Failed runs do not fail their backfill, runs are aligned to the export's interval, run actions see only the
7-day window, backfill-create checks come in PostHog's order, identical running ranges collide with a 500,
delete cancels only Running backfills, and scripted quirks (old 403 wording, cancels not carried out).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_posthog.emulator import EmulatorSettings
from airflow_provider_posthog.emulator.cli import build_parser

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api

UTC = timezone.utc
SERVER_ERROR = {"type": "server_error", "code": "error", "detail": "A server error occurred.", "attr": None}


@pytest.fixture
def posthog_emulator_settings() -> EmulatorSettings:
    return EmulatorSettings(run_duration=10.0, backfill_row_delay=1.0, backfill_run_delay=1.0)


@pytest.fixture(params=["new", "docs"])
def generation(request: pytest.FixtureRequest, posthog_emulator: PostHogEmulator) -> str:
    posthog_emulator.control.configure(api_generation=request.param, logs_pak_access=True)
    return str(request.param)


def _backfill(api: Api, export_id: str, start: Any, end: Any) -> Any:
    return api.post(f"{export_id}/backfills", {"start_at": start, "end_at": end})


def _runs(api: Api, export_id: str, **params: str) -> list[dict[str, Any]]:
    params.setdefault("ordering", "data_interval_start")
    params.setdefault("start", "2000-01-01T00:00:00Z")
    return api.get(f"{export_id}/runs", params=params).json()["results"]


def _only_backfill(posthog_emulator: PostHogEmulator, export_id: str) -> dict[str, Any]:
    (backfill,) = posthog_emulator.control.backfills_for(export_id)
    return backfill


# -- defaults ------------------------------------------------------------------------------------------------
def test_new_generation_is_the_default() -> None:
    assert EmulatorSettings().api_generation == "new"
    args = build_parser().parse_args([])
    assert args.api_generation == "new" and args.schedule_runs is False and args.logs_pak_access is None
    args = build_parser().parse_args(["--schedule-runs", "--schedule-history", "6", "--no-logs-pak-access"])
    assert args.schedule_runs is True and args.schedule_history == 6.0 and args.logs_pak_access is False
    assert build_parser().parse_args(["--legacy-pak-wording"]).legacy_pak_wording is True


# -- a failed run does not fail its backfill -----------------------------------------------------------------
@pytest.mark.parametrize(
    "status", ["Failed", "Cancelled", "Terminated", "TimedOut", "FailedRetryable", "FailedBilling"]
)
def test_backfill_carries_on_after_a_failed_run(
    api: Api, posthog_emulator: PostHogEmulator, generation: str, status: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    control.fail_next_run(export["id"], error="boom", status=status)
    assert _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T03:00:00Z").status_code < 300
    control.advance(120)
    runs = _runs(api, export["id"])
    assert [r["status"] for r in runs] == [status, "Completed", "Completed"]
    backfill = _only_backfill(posthog_emulator, export["id"])
    assert backfill["status"] == "Completed"
    assert {r["backfill"] for r in runs} == {backfill["id"]}


def test_cancelling_one_run_does_not_cancel_the_backfill(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    backfill_id = _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z").json()[
        "backfill_id"
    ]
    control.advance(3)  # visible (1) + Starting (0.2) + first run created (1)
    (run,) = _runs(api, export["id"])
    assert api.post(f"{export['id']}/runs/{run['id']}/cancel").json() == {"cancelled": True}
    assert api.get(f"{export['id']}/backfills/{backfill_id}").json()["status"] == "Running"
    control.advance(60)
    assert [r["status"] for r in _runs(api, export["id"])] == ["Cancelled", "Completed"]
    assert api.get(f"{export['id']}/backfills/{backfill_id}").json()["status"] == "Completed"


def test_user_cancelled_backfill_ends_cancelled_with_its_runs(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    backfill_id = _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T05:00:00Z").json()[
        "backfill_id"
    ]
    control.advance(3)
    assert api.post(f"{export['id']}/backfills/{backfill_id}/cancel").json() == {"cancelled": True}
    control.advance(100)
    assert api.get(f"{export['id']}/backfills/{backfill_id}").json()["status"] == "Cancelled"
    assert [r["status"] for r in _runs(api, export["id"])] == ["Cancelled"]


# -- alignment -----------------------------------------------------------------------------------------------
def test_first_run_aligned_down_and_trailing_partial_dropped(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    export = api.create_export()
    assert _backfill(api, export["id"], "2024-01-01T16:30:00Z", "2024-01-01T19:30:00Z").status_code < 300
    posthog_emulator.control.advance(120)
    runs = _runs(api, export["id"])
    assert [(r["data_interval_start"], r["data_interval_end"]) for r in runs] == [
        ("2024-01-01T16:00:00Z", "2024-01-01T17:00:00Z"),
        ("2024-01-01T17:00:00Z", "2024-01-01T18:00:00Z"),
        ("2024-01-01T18:00:00Z", "2024-01-01T19:00:00Z"),
    ]
    (backfill,) = api.get(f"{export['id']}/backfills").json()["results"]
    assert backfill["status"] == "Completed" and backfill["start_at"] == "2024-01-01T16:30:00Z"
    if generation == "new":
        assert backfill["adjusted_start_at"] == "2024-01-01T16:00:00Z"
        assert backfill["total_records_count"] == 300
    else:
        assert "adjusted_start_at" not in backfill


def test_adjusted_start_follows_earliest_data(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    control.configure(
        earliest_data_at="2024-01-01T17:10:00Z"
    )  # data begins after start_at: start moves later
    backfill_id = _backfill(api, export["id"], "2024-01-01T16:30:00Z", "2024-01-01T19:00:00Z").json()[
        "backfill_id"
    ]
    control.advance(120)
    got = api.get(f"{export['id']}/backfills/{backfill_id}").json()
    assert got["adjusted_start_at"] == "2024-01-01T17:00:00Z" and got["status"] == "Completed"
    assert [r["data_interval_start"] for r in _runs(api, export["id"])] == [
        "2024-01-01T17:00:00Z",
        "2024-01-01T18:00:00Z",
    ]
    control.configure(earliest_data_at=None, no_data=True)
    empty_id = _backfill(api, export["id"], "2024-01-02T00:00:00Z", "2024-01-02T03:00:00Z").json()[
        "backfill_id"
    ]
    control.advance(30)
    empty = api.get(f"{export['id']}/backfills/{empty_id}").json()
    assert empty["status"] == "Completed" and empty["total_records_count"] == 0
    assert empty["adjusted_start_at"] is None
    assert not [r for r in _runs(api, export["id"]) if r["backfill"] == empty_id]


def test_daily_backfill_steps_in_the_export_time_zone(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export(interval="day", timezone="Europe/Berlin", offset_hour=1)
    response = _backfill(api, export["id"], "2026-03-28", "2026-03-31")
    assert response.status_code == 201, response.text
    posthog_emulator.control.advance(200)
    runs = _runs(api, export["id"])
    assert [(r["data_interval_start"], r["data_interval_end"]) for r in runs] == [
        ("2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z"),
        ("2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z"),  # 23 hours: clocks go forward on 03-29
        ("2026-03-29T23:00:00Z", "2026-03-30T23:00:00Z"),
    ]
    (backfill,) = api.get(f"{export['id']}/backfills").json()["results"]
    assert backfill["start_at"] == "2026-03-28T00:00:00Z" and backfill["end_at"] == "2026-03-30T23:00:00Z"


def test_weekly_backfill_dates_must_fall_on_offset_day(api: Api) -> None:
    export = api.create_export(interval="week", offset_day=1, timezone="America/New_York", offset_hour=3)
    response = _backfill(api, export["id"], "2026-01-04", "2026-01-12")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Input 2026-01-04 is not on the correct day of the week for this batch export. "
        "2026-01-04 is a Sunday but this batch export is configured to run weekly on Monday."
    )
    response = _backfill(api, export["id"], "2026-01-05T00:00:00+00:00", "2026-01-12")
    assert response.json()["detail"] == (
        "Input '2026-01-05T00:00:00+00:00' is not a valid ISO formatted date. Daily or weekly batch export "
        "backfills expect only the date component, but a time was included."
    )
    assert _backfill(api, export["id"], "2026-01-05", "2026-01-12").status_code == 201


# -- the 7-day window on run actions -------------------------------------------------------------------------
def test_run_actions_only_see_the_seven_day_window(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    now = control.now()
    old = control.seed_run(
        export["id"],
        "2024-01-01T00:00:00Z",
        "2024-01-01T01:00:00Z",
        "Failed",
        created_at=now - timedelta(days=10),
    )
    assert old["created_at"].startswith((now - timedelta(days=10)).date().isoformat())
    base = f"{export['id']}/runs/{old['id']}"
    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry"), ("GET", "/logs")):
        response = api.request(method, base + suffix)
        assert response.status_code == 404, (method, suffix)
        assert response.json()["detail"] == "Not found."
    after = {"after": "2000-01-01T00:00:00Z"}
    assert api.get(base, params=after).json()["status"] == "Failed"
    assert api.get(base + "/logs", params=after).status_code == 200
    cancel = api.post(base + "/cancel", params=after)
    assert cancel.status_code == 400 and "'Failed' status" in cancel.json()["detail"]
    assert api.post(base + "/retry", params=after).status_code == (201 if generation == "new" else 200)
    fresh = control.seed_run(export["id"], "2024-01-02T00:00:00Z", "2024-01-02T01:00:00Z")
    assert api.get(f"{export['id']}/runs/{fresh['id']}").status_code == 200
    before = {"before": (now - timedelta(days=1)).isoformat()}
    assert api.get(f"{export['id']}/runs/{fresh['id']}", params=before).status_code == 404
    assert api.get(f"{export['id']}/runs/{fresh['id']}", params={"after": "-1h"}).status_code == 200


# -- backfill-create check order ---------------------------------------------------------------------------
def test_new_create_checks_flag_then_concurrency_then_dates(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    control.configure(max_concurrent_backfills=1)
    for day in (1, 2):
        control.seed_backfill(export["id"], f"2021-01-0{day}T00:00:00Z", f"2021-01-0{day}T01:00:00Z")
    no_start = _backfill(api, export["id"], None, "not a date")
    assert no_start.status_code == 400
    assert no_start.json()["detail"] == "Backfilling from the beginning of time is not enabled for this team."
    busy = _backfill(api, export["id"], "not a date", "2021-01-01T00:00:00Z")
    assert busy.status_code == 429
    assert busy.json() == {
        "type": "server_error",
        "code": "too_many_concurrent_backfills",
        "detail": "This team already has 1 batch export backfills running. "
        "Wait for some to finish or cancel them before creating more.",
        "attr": None,
    }
    control.configure(max_concurrent_backfills=None)
    bad = _backfill(api, export["id"], "not a date", "2021-01-01T00:00:00Z")
    assert bad.status_code == 400 and "not a valid ISO formatted datetime" in bad.json()["detail"]


def test_docs_create_validates_dates_before_concurrency(
    api: Api, posthog_emulator: PostHogEmulator, docs_generation: None
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    control.configure(max_concurrent_backfills=1)
    control.seed_backfill(export["id"], "2021-01-01T00:00:00Z", "2021-01-01T01:00:00Z")
    assert _backfill(api, export["id"], "not a date", "2021-01-01T00:00:00Z").status_code == 400
    assert _backfill(api, export["id"], "2021-01-01T00:00:00Z", "2021-01-01T03:00:00Z").status_code == 429


# -- identical running range collides ----------------------------------------------------------------------
def test_identical_running_range_is_a_500(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    bounds = ("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    assert _backfill(api, export["id"], *bounds).status_code < 300
    for when in (0.0, 3.0):  # before its row appears, and while it runs
        control.advance(when)
        response = _backfill(api, export["id"], "2024-01-01T00:00:00+00:00", "2024-01-01T02:00:00+00:00")
        assert response.status_code == 500 and response.json() == SERVER_ERROR
    assert len(control.backfills_for(export["id"])) == 1
    assert _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T03:00:00Z").status_code < 300
    control.advance(200)
    assert _backfill(api, export["id"], *bounds).status_code < 300  # finished: the id is free again
    assert len(control.backfills_for(export["id"])) == 3


def test_retry_colliding_with_a_running_retry_is_a_500(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    run = control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "Failed")
    first = api.post(f"{export['id']}/runs/{run['id']}/retry")
    assert first.status_code == (201 if generation == "new" else 200)
    again = api.post(f"{export['id']}/runs/{run['id']}/retry")
    assert again.status_code == 500 and again.json() == SERVER_ERROR
    assert len(control.backfills_for(export["id"])) == 1


# -- delete -------------------------------------------------------------------------------------------------
def test_delete_cancels_running_backfills_only(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    running = control.seed_backfill(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    starting = control.seed_backfill(
        export["id"], "2024-01-02T00:00:00Z", "2024-01-02T02:00:00Z", status="Starting"
    )
    assert api.request("DELETE", export["id"]).status_code == 204
    assert control.get_backfill(running["id"])["status"] == "Cancelled"
    assert control.get_backfill(starting["id"])["status"] == "Starting"


# -- scripted variants --------------------------------------------------------------------------------------
def test_legacy_pak_wording(api: Api, posthog_emulator: PostHogEmulator, docs_generation: None) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    assert api.get(f"{export['id']}/logs").json()["detail"] == (
        "This action does not support personal API key access"
    )
    control.configure(legacy_pak_wording=True)
    response = api.get(f"{export['id']}/logs")
    assert response.status_code == 403
    assert response.json()["detail"] == "This action does not support Personal API Key access"


def test_cancel_acknowledged_but_not_carried_out(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    run = control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "Running")
    backfill = control.seed_backfill(export["id"], "2024-01-02T00:00:00Z", "2024-01-02T02:00:00Z")
    control.ignore_next_cancels(1, kind="backfill")
    run_url, backfill_url = f"{export['id']}/runs/{run['id']}", f"{export['id']}/backfills/{backfill['id']}"
    assert api.post(backfill_url + "/cancel").json() == {"cancelled": True}
    assert api.get(backfill_url).json()["status"] == "Running"  # acknowledged, not done
    admin = posthog_emulator.base_url + "/_emulator/ignore_next_cancels"
    assert api.session.post(admin, json={"count": 1, "kind": "run"}, timeout=5).json() == {"ok": True}
    assert api.post(run_url + "/cancel").json() == {"cancelled": True}
    assert api.get(run_url).json()["status"] == "Running"
    assert api.post(run_url + "/cancel").json() == {"cancelled": True}  # the next one is real
    assert api.get(run_url).json()["status"] == "Cancelled"
    assert api.post(run_url + "/cancel").status_code == 400  # the usual check still comes first
    control.ignore_next_cancels(2)  # kind "any"
    assert api.post(backfill_url + "/cancel").status_code == 200
    assert api.get(backfill_url).json()["status"] == "Running"
    with pytest.raises(ValueError, match="kind"):
        control.ignore_next_cancels(1, kind="export")


def test_reset_forgets_ignored_cancels(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.ignore_next_cancels(5)
    control.reset()
    export = api.create_export()
    run = control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "Running")
    api.post(f"{export['id']}/runs/{run['id']}/cancel")
    assert control.get_run(run["id"])["status"] == "Cancelled"
    assert isinstance(control.now(), datetime)
