"""Opt-in scheduled runs (``schedule_runs``): an unpaused export fires a run for every interval that ends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_posthog.emulator import EmulatorSettings
from airflow_provider_posthog.emulator.timeutil import align

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api

UTC = timezone.utc


@pytest.fixture
def posthog_emulator_settings() -> EmulatorSettings:
    return EmulatorSettings(schedule_runs=True, run_duration=30.0)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _runs(api: Api, export_id: str) -> list[dict[str, Any]]:
    return api.get(f"{export_id}/runs", params={"ordering": "created_at"}).json()["results"]


def _to_next_hour(posthog_emulator: PostHogEmulator) -> datetime:
    """Advance to just after the next whole hour and return that hour."""
    control = posthog_emulator.control
    boundary = align(control.now(), "hour") + timedelta(hours=1)
    control.advance((boundary - control.now()).total_seconds() + 0.001)
    return boundary


def test_run_fires_when_the_interval_ends_and_completes_after_run_duration(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    assert _runs(api, export["id"]) == []
    boundary = _to_next_hour(posthog_emulator)
    (run,) = _runs(api, export["id"])
    assert run["backfill"] is None and run["status"] in ("Starting", "Running")
    assert _parse(run["data_interval_end"]) == boundary
    assert _parse(run["data_interval_start"]) == boundary - timedelta(hours=1)
    assert _parse(run["created_at"]) == boundary
    control.advance(31)
    (run,) = _runs(api, export["id"])
    assert run["status"] == "Completed" and _parse(run["finished_at"]) == boundary + timedelta(seconds=30)
    control.advance(2 * 3600)
    assert [_parse(r["data_interval_end"]) for r in _runs(api, export["id"])] == [
        boundary + timedelta(hours=n) for n in range(3)
    ]


def test_paused_export_skips_intervals_and_resumes_on_unpause(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    assert api.post(f"{export['id']}/pause").status_code == 200
    control.advance(3 * 3600)
    assert _runs(api, export["id"]) == []
    api.post(f"{export['id']}/unpause")
    boundary = _to_next_hour(posthog_emulator)
    assert [_parse(r["data_interval_end"]) for r in _runs(api, export["id"])] == [boundary]
    api.request("DELETE", export["id"])
    control.advance(3 * 3600)
    assert len(control.runs_for(export["id"])) == 1


def test_schedule_history_gives_a_fresh_export_completed_runs(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    control.configure(schedule_history=3)
    now = control.now()
    export = api.create_export()
    runs = _runs(api, export["id"])
    last_end = align(now, "hour")
    assert [_parse(r["data_interval_end"]) for r in runs] == [
        last_end - timedelta(hours=n) for n in (2, 1, 0)
    ]
    assert all(r["backfill"] is None for r in runs)
    assert all(
        r["status"] == "Completed" for r in runs if _parse(r["created_at"]) < now - timedelta(seconds=30)
    )


def test_daily_schedule_uses_time_zone_and_offset(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.configure(schedule_history=72)
    export = api.create_export(interval="day", timezone="America/New_York", offset_hour=5)
    runs = _runs(api, export["id"])
    assert len(runs) == 3
    for run in runs:
        end = _parse(run["data_interval_end"]).astimezone(ZoneInfo("America/New_York"))
        assert (end.hour, end.minute) == (5, 0)


def test_scheduled_runs_take_scripted_failures(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    control.fail_next_run(export["id"], error="destination down")
    _to_next_hour(posthog_emulator)
    control.advance(31)
    (run,) = _runs(api, export["id"])
    assert run["status"] == "Failed" and run["latest_error"] == "destination down"


def test_off_by_default_and_switchable(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.configure(schedule_runs=False)
    export = api.create_export()
    control.advance(2 * 3600)
    assert _runs(api, export["id"]) == []
    switched = api.session.post(
        posthog_emulator.base_url + "/_emulator/settings", json={"schedule_runs": True}, timeout=5
    )
    assert switched.json()["schedule_runs"] is True  # starts from now: no runs for the hours it was off
    assert _runs(api, export["id"]) == []
    _to_next_hour(posthog_emulator)
    assert len(_runs(api, export["id"])) == 1
    assert EmulatorSettings().schedule_runs is False


def test_seeded_export_is_scheduled_too(posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = control.seed_export(interval="every 5 minutes")
    control.advance(3600)
    runs = control.runs_for(export["id"])
    assert len(runs) == 12
    assert all(r["data_interval_end"] - r["data_interval_start"] == timedelta(minutes=5) for r in runs)
