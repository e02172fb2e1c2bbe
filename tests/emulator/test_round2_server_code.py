"""More of PostHog's server code that a client can trip over (default ``new`` generation unless parametrized).

Unpause with a backfill starts from ``last_paused_at`` even when it is empty; a backfill or retry reaching
an interval whose run is still running adopts that run and tags nothing; failed runs pause their export and
cancel its running backfills; a backfill whose export is deleted before it starts fails; PATCHing offsets
without ``interval`` is a 500; a run of a deleted export can still be retried; the runs ``status`` filter is a
list.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_posthog.emulator import EmulatorSettings
from airflow_provider_posthog.emulator.cli import build_parser, main

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api

UTC = timezone.utc
SERVER_ERROR = {"type": "server_error", "code": "error", "detail": "A server error occurred.", "attr": None}
AUTO_PAUSED = (
    "Batch export was automatically paused due to exceeding failure threshold and exhausting all automated "
    "retries.The batch export can be unpaused after addressing any errors."
)
H0, H1, H2, H3 = (f"2024-01-01T0{h}:00:00Z" for h in range(4))


@pytest.fixture
def posthog_emulator_settings() -> EmulatorSettings:
    return EmulatorSettings(run_duration=10.0, backfill_row_delay=1.0, backfill_run_delay=1.0)


@pytest.fixture(params=["new", "docs"])
def generation(request: pytest.FixtureRequest, posthog_emulator: PostHogEmulator) -> str:
    posthog_emulator.control.configure(api_generation=request.param, logs_pak_access=True)
    return str(request.param)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _admin(emulator: PostHogEmulator, route: str, body: dict[str, Any]) -> Any:
    response = requests.post(f"{emulator.base_url}/_emulator/{route}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _runs(api: Api, export_id: str) -> list[dict[str, Any]]:
    params = {"ordering": "data_interval_start", "start": "2000-01-01T00:00:00Z"}
    return list(api.get(f"{export_id}/runs", params=params).json()["results"])


def _all_runs(api: Api, export_id: str) -> list[dict[str, Any]]:
    """Every run, including one over ``(None, end)`` (the data-interval ordering leaves those out)."""
    return list(api.get(f"{export_id}/runs", params={"after": "2000-01-01T00:00:00Z"}).json()["results"])


def _backfills(api: Api, export_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"{export_id}/backfills").json()["results"])


# -- unpause with a backfill starts at last_paused_at, even when there is none -------------------------------
def test_unpause_with_backfill_of_an_export_created_paused_exports_everything(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export(paused=True)
    assert export["paused"] is True and export["last_paused_at"] is None
    # the backfills endpoint refuses a missing start without its flag; unpause does not ask
    assert api.post(f"{export['id']}/unpause", {"backfill": True}).json() == {"paused": False}
    control.advance(30)
    (backfill,) = _backfills(api, export["id"])
    assert backfill["start_at"] is None and backfill["status"] == "Completed"
    (run,) = _all_runs(api, export["id"])
    assert run["data_interval_start"] is None and run["backfill"] == backfill["id"]
    assert run["data_interval_end"] == backfill["end_at"]


def test_only_the_pause_endpoint_sets_last_paused_at(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    assert api.request("PATCH", export["id"], json={"paused": True}).json()["last_paused_at"] is None
    api.post(f"{export['id']}/unpause", {"backfill": True})
    control.advance(30)
    (from_nothing,) = _backfills(api, export["id"])
    assert from_nothing["start_at"] is None  # paused by PATCH: the whole history again

    api.post(f"{export['id']}/pause")
    paused_at = api.get(export["id"]).json()["last_paused_at"]
    assert paused_at is not None
    api.post(f"{export['id']}/unpause")
    control.advance(3 * 3600)
    patched = api.request("PATCH", export["id"], json={"paused": True}).json()
    assert patched["paused"] is True and patched["last_paused_at"] == paused_at  # stale, from the old pause
    api.post(f"{export['id']}/unpause", {"backfill": True})
    control.advance(30)
    newest = max(_backfills(api, export["id"]), key=lambda b: b["created_at"])
    assert newest["start_at"] == paused_at  # re-exports the 3 hours since the older pause


def test_seeded_paused_export_has_no_last_paused_at_unless_given(posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    assert control.seed_export(name="created paused", paused=True)["last_paused_at"] is None
    seeded = control.seed_export(name="paused by pause/", paused=True, last_paused_at="2024-01-01T05:00:00Z")
    assert seeded["last_paused_at"] == "2024-01-01T05:00:00Z"


# -- a backfill or a retry adopts a run that is still running ------------------------------------------------
def test_backfill_adopts_the_running_scheduled_run_of_an_interval(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    # the scheduled run of 01:00-02:00 (workflow "<export id>-2024-01-01T02:00:00Z") is still running
    scheduled = _admin(
        posthog_emulator,
        "runs",
        {
            "batch_export_id": export["id"],
            "data_interval_start": H1,
            "data_interval_end": H2,
            "status": "Running",
            "duration": 600,
        },
    )
    assert api.post(f"{export['id']}/backfills", {"start_at": H0, "end_at": H3}).status_code < 300
    control.advance(60)  # the first interval is exported; the second is the running scheduled run
    (backfill,) = _backfills(api, export["id"])
    assert backfill["status"] == "Running"
    assert [(r["data_interval_start"], r["backfill"]) for r in _runs(api, export["id"])] == [
        (H0, backfill["id"]),
        (H1, None),
    ]
    _admin(
        posthog_emulator, f"runs/{scheduled['id']}/status", {"status": "Failed", "latest_error": "S3 down"}
    )
    control.advance(60)
    runs = _runs(api, export["id"])
    assert [(r["data_interval_start"], r["status"], r["backfill"]) for r in runs] == [
        (H0, "Completed", backfill["id"]),
        (H1, "Failed", None),  # the interval's only run failed ...
        (H2, "Completed", backfill["id"]),
    ]
    done = api.get(f"{export['id']}/backfills/{backfill['id']}").json()
    assert done["status"] == "Completed"  # ... and the backfill says nothing about it
    assert all(r["records_total_count"] == r["records_completed"] for r in runs if r["status"] == "Completed")


def test_backfill_runs_an_interval_whose_earlier_run_has_finished(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    control.seed_run(export["id"], H0, H1, status="Failed", latest_error="earlier")
    backfill_id = api.post(f"{export['id']}/backfills", {"start_at": H0, "end_at": H1}).json()["backfill_id"]
    control.advance(60)
    runs = sorted(_runs(api, export["id"]), key=lambda r: r["created_at"])
    assert [(r["status"], r["backfill"]) for r in runs] == [
        ("Failed", None),
        ("Completed", backfill_id),
    ]


def test_retrying_a_running_run_adopts_it(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    running = control.seed_run(export["id"], H0, H1, status="Running", duration=600)
    retried = api.post(f"{export['id']}/runs/{running['id']}/retry")
    assert retried.status_code == (201 if generation == "new" else 200)  # no status check
    control.fail_next_run(export["id"], error="warehouse suspended")
    control.advance(30)
    (backfill,) = _backfills(api, export["id"])
    assert backfill["status"] == "Running"
    control.advance(600)
    (run,) = _runs(api, export["id"])
    assert (run["id"], run["status"], run["backfill"]) == (running["id"], "Failed", None)
    assert api.get(f"{export['id']}/backfills/{backfill['id']}").json()["status"] == "Completed"


# -- repeated failures pause the export and cancel its running backfills ------------------------------------
def test_three_failed_runs_pause_the_export_and_cancel_its_running_backfill(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    for n in range(3):
        control.fail_next_run(export["id"], error=f"S3 AccessDenied ({n})")
    response = api.post(f"{export['id']}/backfills", {"start_at": H0, "end_at": "2024-01-01T06:00:00Z"})
    backfill_id = response.json()["backfill_id"]
    control.advance(300)
    runs = _runs(api, export["id"])
    assert [r["status"] for r in runs] == ["Failed", "Failed", "Failed"]  # nothing after the third
    paused = api.get(export["id"]).json()
    assert paused["paused"] is True
    assert paused["last_paused_at"] == runs[-1]["finished_at"]
    assert control.get_export(export["id"])["_pause_note"] == "Paused due to exceeding failure threshold"
    backfill = api.get(f"{export['id']}/backfills/{backfill_id}").json()
    assert backfill["status"] == "Cancelled" and backfill["finished_at"] == runs[-1]["finished_at"]
    warnings = [
        e["message"] for e in api.get(f"{export['id']}/logs", params={"level": "WARNING"}).json()["results"]
    ]
    assert AUTO_PAUSED in warnings
    assert any(m.startswith("1 ongoing batch export backfill was cancelled") for m in warnings)


def test_failures_count_within_the_interval_window_not_only_in_a_row(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    outcomes = ["Failed", "Failed", "Completed", "Completed", "Failed"]
    hourly = control.seed_export(name="hourly", interval="hour")
    weekly = control.seed_export(name="weekly", interval="week")
    for export in (hourly, weekly):
        for n, status in enumerate(outcomes):
            control.seed_run(
                export["id"], f"2024-01-0{n + 1}T00:00:00Z", f"2024-01-0{n + 1}T01:00:00Z", status
            )
            control.advance(1)  # PostHog reads the latest runs by last_updated_at
    assert api.get(hourly["id"]).json()["paused"] is True  # 3 failed among the last 24 runs
    assert api.get(weekly["id"]).json()["paused"] is False  # 2 failed among the last 4 runs


@pytest.mark.parametrize("status", ["FailedRetryable", "Cancelled", "TimedOut"])
def test_only_failed_runs_count(api: Api, posthog_emulator: PostHogEmulator, status: str) -> None:
    control = posthog_emulator.control
    export = control.seed_export(name="flaky")
    for n in range(5):
        control.seed_run(export["id"], f"2024-01-01T0{n}:00:00Z", f"2024-01-01T0{n + 1}:00:00Z", status)
        control.advance(1)
    assert api.get(export["id"]).json()["paused"] is False


def test_auto_pause_switch_and_threshold(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control

    def fail(export_id: str, times: int) -> None:
        for n in range(times):
            control.seed_run(export_id, f"2024-01-01T0{n}:00:00Z", f"2024-01-01T0{n + 1}:00:00Z", "Failed")
            control.advance(1)

    assert _admin(posthog_emulator, "settings", {"auto_pause": False})["auto_pause"] is False
    off = control.seed_export(name="never paused")
    fail(off["id"], 4)
    assert api.get(off["id"]).json()["paused"] is False
    _admin(posthog_emulator, "settings", {"auto_pause": True, "auto_pause_threshold": 5})
    five = control.seed_export(name="paused at five")
    fail(five["id"], 4)
    assert api.get(five["id"]).json()["paused"] is False
    fail(five["id"], 1)
    assert api.get(five["id"]).json()["paused"] is True


def test_auto_pause_defaults_and_cli_flags(capsys: pytest.CaptureFixture[str]) -> None:
    settings = EmulatorSettings()
    assert (settings.auto_pause, settings.auto_pause_threshold) == (True, 3)
    args = build_parser().parse_args(["--no-auto-pause", "--auto-pause-threshold", "5"])
    assert (args.auto_pause, args.auto_pause_threshold) == (False, 5)
    assert build_parser().parse_args([]).auto_pause is True
    assert main(["--auto-pause-threshold", "0"]) == 2
    assert "--auto-pause-threshold must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="auto_pause_threshold"):
        EmulatorSettings(auto_pause_threshold=0)


# -- deleting the export before a backfill starts fails it ---------------------------------------------------
def test_deleting_the_export_while_a_backfill_is_starting_fails_it(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    control.configure(backfill_starting_time=30.0)
    export = api.create_export()
    backfill_id = api.post(f"{export['id']}/backfills", {"start_at": H0, "end_at": H3}).json()["backfill_id"]
    control.advance(5)
    assert api.get(f"{export['id']}/backfills/{backfill_id}").json()["status"] == "Starting"
    assert api.request("DELETE", export["id"]).status_code == 204
    control.advance(60)
    backfill = control.get_backfill(backfill_id)
    assert backfill["status"] == "Failed" and backfill["finished_at"] is not None
    assert control.runs_for(export["id"]) == []


def test_deleting_the_export_before_the_backfill_row_appears_fails_it(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    assert api.post(f"{export['id']}/backfills", {"start_at": H0, "end_at": H3}).status_code < 300
    assert api.request("DELETE", export["id"]).status_code == 204
    control.advance(60)
    (backfill,) = control.backfills_for(export["id"])
    assert backfill["status"] == "Failed"
    assert control.runs_for(export["id"]) == []


# -- offsets PATCHed without interval ------------------------------------------------------------------------
def test_patch_offsets_without_interval_is_a_500_and_changes_nothing(api: Api) -> None:
    export = api.create_export(interval="week", offset_day=3, offset_hour=5)
    for body in (
        {"offset_hour": 7},
        {"offset_day": 2},
        {"offset_day": 2, "offset_hour": 7},
        {"offset_hour": None},
    ):
        response = api.request("PATCH", export["id"], json=body)
        assert response.status_code == 500 and response.json() == SERVER_ERROR, body
    out_of_range = api.request("PATCH", export["id"], json={"offset_hour": 24})
    assert out_of_range.status_code == 400  # field validation still comes first
    renamed = api.request("PATCH", export["id"], json={"name": "renamed"}).json()
    assert (renamed["name"], renamed["offset_day"], renamed["offset_hour"]) == ("renamed", 3, 5)


def test_patch_weekly_with_one_offset_resets_the_other(api: Api) -> None:
    export = api.create_export(interval="week", offset_day=3, offset_hour=5)
    moved = api.request("PATCH", export["id"], json={"interval": "week", "offset_hour": 7}).json()
    assert (moved["offset_day"], moved["offset_hour"]) == (0, 7)  # Wednesday became Sunday
    moved = api.request("PATCH", export["id"], json={"interval": "week", "offset_day": 2}).json()
    assert (moved["offset_day"], moved["offset_hour"]) == (2, 0)  # 07:00 became 00:00
    both = api.request(
        "PATCH", export["id"], json={"interval": "week", "offset_day": 4, "offset_hour": 6}
    ).json()
    assert (both["offset_day"], both["offset_hour"]) == (4, 6)
    daily = api.request("PATCH", export["id"], json={"interval": "day"}).json()
    assert (daily["offset_day"], daily["offset_hour"]) == (None, 0)


# -- retrying a run of a deleted export ----------------------------------------------------------------------
def test_retrying_a_run_of_a_deleted_export_is_accepted_and_its_backfill_fails(
    api: Api, posthog_emulator: PostHogEmulator, generation: str
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    run = control.seed_run(export["id"], H0, H1, status="Failed", latest_error="boom")
    assert api.request("DELETE", export["id"]).status_code == 204
    assert api.get(export["id"]).status_code == 404
    assert api.get(f"{export['id']}/runs/{run['id']}").status_code == 200
    retried = api.post(f"{export['id']}/runs/{run['id']}/retry")
    assert retried.status_code == (201 if generation == "new" else 200)
    assert retried.json() == {
        "backfill_id": f"{export['id']}-Backfill-2024-01-01T00:00:00+00:00-2024-01-01T01:00:00+00:00"
    }
    control.advance(60)
    (backfill,) = control.backfills_for(export["id"])
    assert backfill["status"] == "Failed"
    assert [r["id"] for r in control.runs_for(export["id"])] == [run["id"]]


# -- the runs status filter is a list of choices -------------------------------------------------------------
def test_runs_status_filter_repeats_the_parameter_and_refuses_commas(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = control.seed_export(name="statuses")
    for n, status in enumerate(("Completed", "Failed", "Cancelled")):
        control.seed_run(export["id"], f"2024-01-01T0{n}:00:00Z", f"2024-01-01T0{n + 1}:00:00Z", status)
    url = f"{export['id']}/runs"
    got = api.get(url, params=[("status", "Failed"), ("status", "Completed")]).json()["results"]
    assert sorted(r["status"] for r in got) == ["Completed", "Failed"]
    commas = api.get(url, params={"status": "Failed,Completed"})
    assert commas.status_code == 400
    assert commas.json() == {
        "type": "validation_error",
        "code": "invalid_choice",
        "detail": '"Failed,Completed" is not a valid choice.',
        "attr": "status__0",
    }
    second = api.get(url, params=[("status", "Completed"), ("status", "Done")]).json()
    assert (second["detail"], second["attr"]) == ('"Done" is not a valid choice.', "status__1")


def test_runs_of_a_paused_export_keep_their_timestamps(api: Api, posthog_emulator: PostHogEmulator) -> None:
    """The auto-pause time is the failing run's end, on the emulated clock (not the time of the request)."""
    control = posthog_emulator.control
    export = control.seed_export(name="clock")
    for n in range(3):
        control.fail_next_run(export["id"], error="down")
        control.seed_run(export["id"], f"2024-01-01T0{n}:00:00Z", f"2024-01-01T0{n + 1}:00:00Z", "Running")
        control.advance(20)
    third = max(_runs(api, export["id"]), key=lambda r: r["finished_at"])
    paused_at = _parse(api.get(export["id"]).json()["last_paused_at"])
    assert paused_at == _parse(third["finished_at"])
    assert paused_at < control.now() - timedelta(seconds=5)
