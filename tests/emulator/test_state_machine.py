"""The clock-driven state machine (runs, backfills, logs), driven with ``advance()``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from airflow_provider_posthog.emulator import EmulatorSettings

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api

UTC = timezone.utc


@pytest.fixture
def posthog_emulator_settings() -> EmulatorSettings:
    return EmulatorSettings(
        api_generation="docs",
        logs_pak_access=True,
        run_duration=10.0,
        backfill_row_delay=2.0,
        backfill_run_delay=1.0,
    )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _backfill(api: Api, export_id: str, start: str, end: str) -> None:
    response = api.post(f"{export_id}/backfills", {"start_at": start, "end_at": end})
    assert response.status_code == 200, response.text


def test_docs_backfill_row_appears_after_delay_as_running(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T03:00:00Z")
    assert api.get(f"{export['id']}/backfills").json()["results"] == []
    control.advance(2.5)
    rows = api.get(f"{export['id']}/backfills").json()["results"]
    assert len(rows) == 1
    assert rows[0]["status"] == "Running"
    assert rows[0]["progress"] == {"total_runs": 3, "finished_runs": 0, "progress": 0.0}
    assert rows[0]["start_at"] == "2024-01-01T00:00:00Z"


def test_backfill_runs_sequentially_then_completes(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:20:00Z")  # trailing 20 min dropped
    control.advance(2)  # row visible
    control.advance(1)  # first run created a little after the backfill row
    runs = api.get(f"{export['id']}/runs").json()["results"]
    assert len(runs) == 1 and runs[0]["status"] == "Starting"
    backfill = api.get(f"{export['id']}/backfills").json()["results"][0]
    assert runs[0]["backfill"] == backfill["id"]
    assert _parse(runs[0]["created_at"]) > _parse(backfill["created_at"])
    control.advance(5)
    assert api.get(f"{export['id']}/runs").json()["results"][0]["status"] == "Running"
    control.advance(5)  # first run done; second one starts after backfill_run_delay
    control.advance(1)
    runs = api.get(f"{export['id']}/runs", params={"ordering": "created_at"}).json()["results"]
    assert [r["status"] for r in runs] == ["Completed", "Starting"]
    assert runs[0]["records_completed"] == 100 and runs[0]["finished_at"] is not None
    backfill = api.get(f"{export['id']}/backfills/{backfill['id']}").json()
    assert backfill["progress"] == {"total_runs": 3, "finished_runs": 1, "progress": 0.3}
    control.advance(60)
    runs = api.get(f"{export['id']}/runs", params={"ordering": "created_at"}).json()["results"]
    assert [(r["data_interval_start"], r["data_interval_end"], r["status"]) for r in runs] == [
        ("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "Completed"),
        ("2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z", "Completed"),
    ]
    backfill = api.get(f"{export['id']}/backfills/{backfill['id']}").json()
    assert backfill["status"] == "Completed"
    assert backfill["finished_at"] is not None
    assert backfill["progress"]["progress"] == 1.0


def test_advance_is_deterministic_about_timestamps(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    requested = control.now()
    control.advance(1000)
    run = api.get(f"{export['id']}/runs").json()["results"][0]
    created, finished = _parse(run["created_at"]), _parse(run["finished_at"])
    assert finished - created == timedelta(seconds=10)
    assert timedelta(seconds=2.5) <= created - requested <= timedelta(seconds=3)


def test_failed_run_does_not_stop_the_backfill(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    control.fail_next_run(export["id"], error="S3 said no")
    _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    control.advance(100)
    runs = api.get(f"{export['id']}/runs", params={"ordering": "created_at"}).json()["results"]
    assert [r["status"] for r in runs] == ["Failed", "Completed"]  # the backfill carries on
    assert runs[0]["latest_error"] == "S3 said no"
    assert api.get(f"{export['id']}/backfills").json()["results"][0]["status"] == "Completed"
    logs = api.get(f"{export['id']}/logs", params={"level": "ERROR"}).json()["results"]
    assert len(logs) == 1 and "S3 said no" in logs[0]["message"]
    assert logs[0]["log_source_id"] == export["id"]


def test_run_logs_lie_inside_the_run_lifetime(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    control.advance(100)
    runs = api.get(f"{export['id']}/runs").json()["results"]
    logs = control.logs_for(export["id"])
    assert len(logs) == 4
    assert len({entry["instance_id"] for entry in logs}) == 2
    for run in runs:
        window = api.get(
            f"{export['id']}/logs", params={"after": run["created_at"], "before": run["finished_at"]}
        ).json()["results"]
        assert len(window) == 2 and len({e["instance_id"] for e in window}) == 1
        assert [e["level"] for e in window] == ["INFO", "INFO"]
        assert "100 records" in window[0]["message"]  # newest first


def test_docs_cancel_backfill_stops_it_but_lets_the_active_run_finish(
    api: Api, posthog_emulator: PostHogEmulator
) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T05:00:00Z")
    control.advance(5)
    backfill = api.get(f"{export['id']}/backfills").json()["results"][0]
    response = api.post(f"{export['id']}/backfills/{backfill['id']}/cancel")
    assert response.status_code == 200 and response.json() == {"cancelled": True}
    assert api.get(f"{export['id']}/backfills/{backfill['id']}").json()["status"] == "Cancelled"
    control.advance(100)
    runs = api.get(f"{export['id']}/runs").json()["results"]
    assert [r["status"] for r in runs] == ["Completed"]  # older PostHog did not cancel the runs; no new ones
    again = api.post(f"{export['id']}/backfills/{backfill['id']}/cancel")
    assert again.status_code == 400
    assert again.json()["detail"] == "Cannot cancel a backfill that is in 'Cancelled' status"


def test_delete_export_cancels_running_backfill(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    _backfill(api, export["id"], "2024-01-01T00:00:00Z", "2024-01-01T05:00:00Z")
    control.advance(5)
    assert api.request("DELETE", export["id"]).status_code == 204
    (backfill,) = control.backfills_for(export["id"])
    assert backfill["status"] == "Cancelled"


def test_seeded_running_run_progresses(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    run = control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", status="Running")
    assert api.get(f"{export['id']}/runs/{run['id']}").json()["status"] == "Running"
    control.advance(11)
    assert api.get(f"{export['id']}/runs/{run['id']}").json()["status"] == "Completed"


def test_set_run_and_backfill_status(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    run = control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", status="Running")
    control.set_run_status(run["id"], "TimedOut", latest_error="too slow")
    got = api.get(f"{export['id']}/runs/{run['id']}").json()
    assert got["status"] == "TimedOut" and got["latest_error"] == "too slow" and got["finished_at"]
    backfill = control.seed_backfill(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    control.set_backfill_status(backfill["id"], "Failed")
    got = api.get(f"{export['id']}/backfills/{backfill['id']}").json()
    assert got["status"] == "Failed" and got["progress"] is None


def test_progress_table(api: Api, posthog_emulator: PostHogEmulator) -> None:
    """PostHog's own examples for the ``progress`` field."""
    control = posthog_emulator.control
    export = api.create_export()
    eid = export["id"]
    running = control.seed_backfill(eid, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", status="Running")
    control.seed_run(eid, "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", backfill_id=running["id"])
    assert api.get(f"{eid}/backfills/{running['id']}").json()["progress"] == {
        "total_runs": 2,
        "finished_runs": 1,
        "progress": 0.5,
    }
    starting = control.seed_backfill(eid, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", status="Starting")
    assert api.get(f"{eid}/backfills/{starting['id']}").json()["progress"] == {
        "total_runs": 2,
        "finished_runs": 0,
        "progress": 0.0,
    }
    for status in ("Failed", "Cancelled"):
        other = control.seed_backfill(eid, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", status=status)
        assert api.get(f"{eid}/backfills/{other['id']}").json()["progress"] is None
    open_start = control.seed_backfill(eid, None, "2024-01-01T02:00:00Z", status="Running")
    assert api.get(f"{eid}/backfills/{open_start['id']}").json()["progress"] is None
    done = control.seed_backfill(eid, None, "2024-01-01T02:00:00Z", status="Completed")
    assert api.get(f"{eid}/backfills/{done['id']}").json()["progress"] == {
        "total_runs": 1,
        "finished_runs": 1,
        "progress": 1.0,
    }
    now = control.now()
    open_end = control.seed_backfill(eid, (now - timedelta(minutes=100)).isoformat(), None, status="Running")
    control.seed_run(
        eid, now - timedelta(minutes=100), now - timedelta(minutes=40), backfill_id=open_end["id"]
    )
    assert api.get(f"{eid}/backfills/{open_end['id']}").json()["progress"] == {
        "total_runs": 2,
        "finished_runs": 1,
        "progress": 0.5,
    }


def test_seeded_simulated_backfill_runs(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    backfill = control.seed_backfill(
        export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", status="Running", simulate=True
    )
    control.advance(100)
    assert api.get(f"{export['id']}/backfills/{backfill['id']}").json()["status"] == "Completed"
    assert len(api.get(f"{export['id']}/runs").json()["results"]) == 2


def test_reset_clears_state_and_clock(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    api.create_export()
    control.advance(3600)
    assert control.now() - datetime.now(UTC) > timedelta(minutes=59)
    control.reset()
    assert abs(control.now() - datetime.now(UTC)) < timedelta(seconds=5)
    assert api.get("").json()["count"] == 0


def test_seeding_with_pendulum_datetimes_then_retry(api: Api, posthog_emulator: PostHogEmulator) -> None:
    """Users seed with pendulum (Airflow's datetimes); the store must still do interval arithmetic."""
    import pendulum

    control = posthog_emulator.control
    export = api.create_export()
    start = pendulum.datetime(2024, 1, 1, tz="Europe/Berlin")
    run = control.seed_run(export["id"], start, start.add(hours=1), status="Failed", latest_error="boom")
    assert api.post(f"{export['id']}/runs/{run['id']}/retry").status_code == 200
    control.advance(5)
    response = api.get(f"{export['id']}/backfills")
    assert response.status_code == 200, response.text
    (backfill,) = response.json()["results"]
    assert backfill["start_at"] == "2023-12-31T23:00:00Z"
    assert backfill["progress"] is not None
