"""PostHog's server rules the client must get right, against the emulator over HTTP (both generations).

Backfill runs aligned down before ``start_at``, ranges off the export's schedule, runs older than PostHog's
7-day lookup window, an identical range already running, cancels that change nothing and the 403 wording
of every PostHog version for logs.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from hook_clients import HookClient, wait_until
from hook_helpers import BOTH_GENERATIONS, EMULATOR_LOOKUP

from airflow_provider_posthog.api.decisions import decide_backfill
from airflow_provider_posthog.api.intervals import ExportSchedule
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogBackfillAlreadyRunningError,
    PostHogCancelNotEffectiveError,
    PostHogConfigError,
)

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import EmulatorSettings

UTC = dt.timezone.utc


pytestmark = BOTH_GENERATIONS


def _hour(hours_ago: float) -> dt.datetime:
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - dt.timedelta(hours=hours_ago)


def _posts(posthog_conn: Any) -> list[int]:
    return [e.status for e in posthog_conn.control.request_log if e.method == "POST"]


def test_a_failed_first_run_before_start_at_fails_the_backfill(client: HookClient, posthog_conn: Any) -> None:
    c = posthog_conn.control
    export = c.seed_export(name="aligned-down")
    c.fail_next_run(export["id"], error="first interval broke")
    start = _hour(5) + dt.timedelta(minutes=30)  # PostHog rounds the first run down to the hour
    seeded = c.seed_backfill(export["id"], start, _hour(2), status="Running", simulate=True)
    done = wait_until(
        lambda: (b := client.get_backfill(export["id"], seeded["id"])).outcome is not Outcome.RUNNING and b
    )
    runs = client.list_backfill_runs(export["id"], done)
    starts = sorted(r.data_interval_start for r in runs)
    assert starts == [_hour(5), _hour(4), _hour(3)] and starts[0] < done.start_at
    first = next(r for r in runs if r.data_interval_start == _hour(5))
    assert first.status == "Failed" and first.latest_error == "first interval broke"
    decision = decide_backfill(done, runs)
    assert decision.outcome is Outcome.FAILED
    assert [r["id"] for r in decision.failed_runs] == [first.id]


def test_backfill_off_the_schedule_is_refused_before_any_post(client: HookClient, posthog_conn: Any) -> None:
    c = posthog_conn.control
    export = c.seed_export(name="unaligned")
    c.clear_request_log()
    start = _hour(5) + dt.timedelta(minutes=30)
    with pytest.raises(PostHogConfigError) as exc:
        client.create_backfill(export["id"], start, _hour(2))
    assert f"PostHog would export from {_hour(5).isoformat()}" in str(exc.value)
    assert f"Use [{_hour(5).isoformat()}, {_hour(2).isoformat()}) to cover the range" in str(exc.value)
    assert f"or [{_hour(4).isoformat()}, {_hour(2).isoformat()}) to stay inside it" in str(exc.value)
    assert _posts(posthog_conn) == [] and c.count_requests("GET") == 1
    assert c.backfills_for(export["id"]) == []


def test_daily_backfill_in_an_export_time_zone_reattaches_and_is_not_duplicated(
    client: HookClient, posthog_conn: Any, posthog_emulator_settings: EmulatorSettings
) -> None:
    """A retried task finds the first try's backfill; a second create while it runs names it."""
    c = posthog_conn.control
    c.configure(run_duration=30.0)  # keep the backfill running
    export = c.seed_export(name="ny", interval="day", timezone="America/New_York", offset_hour=0)
    schedule = ExportSchedule.of(client.get_batch_export(export["id"]))
    if posthog_emulator_settings.api_generation == "new":
        assert schedule == ExportSchedule("day", "America/New_York")
    else:  # the docs generation has no time-zoned schedules
        assert schedule == ExportSchedule("day")
    start = schedule.floor(dt.datetime.now(UTC) - dt.timedelta(days=4))
    end = schedule.step(schedule.step(start))
    c.clear_request_log()

    first = client.create_backfill(export["id"], start, end)
    assert (first.start_at, first.end_at) == (start, end)
    accepted = 201 if posthog_emulator_settings.api_generation == "new" else 200
    assert _posts(posthog_conn) == [accepted]  # no 400 round trip for the bound format

    found = client.find_backfill(export["id"], start, end)
    assert found is not None and found.id == first.id
    with pytest.raises(PostHogBackfillAlreadyRunningError) as exc:
        client.create_backfill(export["id"], start, end)
    assert exc.value.backfill_id == first.id and first.id in str(exc.value)
    assert _posts(posthog_conn) == [accepted]  # refused before a second POST
    assert len(c.backfills_for(export["id"])) == 1


def test_weekly_bounds_off_the_offset_day_are_refused(client: HookClient, posthog_conn: Any) -> None:
    c = posthog_conn.control
    export = c.seed_export(name="weekly", interval="week")
    schedule = ExportSchedule.of(client.get_batch_export(export["id"]))
    start = schedule.floor(dt.datetime.now(UTC) - dt.timedelta(days=30)) + dt.timedelta(days=1)
    c.clear_request_log()
    with pytest.raises(PostHogConfigError, match="weekly on Sunday at 00:00 UTC"):
        client.create_backfill(export["id"], start, start + dt.timedelta(days=14))
    assert _posts(posthog_conn) == []


def test_runs_older_than_seven_days(client: HookClient, posthog_conn: Any) -> None:
    c = posthog_conn.control
    export = c.seed_export(name="old runs")
    ten_days_ago = dt.datetime.now(UTC) - dt.timedelta(days=10)
    failed = c.seed_run(
        export["id"], _hour(241), _hour(240), status="Failed", created_at=ten_days_ago, latest_error="old"
    )
    completed = c.seed_run(export["id"], _hour(242), _hour(241), status="Completed", created_at=ten_days_ago)
    hidden = requests.get(
        f"{posthog_conn.base_url}/api/projects/{posthog_conn.project_id}/batch_exports/{export['id']}/runs/{failed['id']}/",
        headers={"Authorization": f"Bearer {posthog_conn.api_key}"},
        timeout=10,
    )
    assert hidden.status_code == 404  # what PostHog does without an explicit 'after'
    c.clear_request_log()
    assert client.get_run(export["id"], failed["id"]).latest_error == "old"
    assert client.cancel_run(export["id"], completed["id"]) == "Completed"  # found, refused, read back
    assert [e.status for e in c.request_log if e.path.endswith(f"/runs/{completed['id']}/cancel/")] == [400]
    retried = client.retry_run(export["id"], failed["id"])
    assert (retried.start_at, retried.end_at) == (_hour(241), _hour(240))
    assert client.get_run_logs(export["id"], failed["id"]) is not None
    run_calls = [e for e in c.request_log if "/runs/" in e.path and e.path.rstrip("/").count("/") >= 6]
    assert run_calls and all("after=2000-01-01" in e.query for e in run_calls)


@pytest.mark.parametrize("kind", ["run", "backfill"])
def test_a_cancel_that_changed_nothing_is_reported(client: HookClient, posthog_conn: Any, kind: str) -> None:
    c = posthog_conn.control
    c.configure(run_duration=30.0)
    export = c.seed_export(name="stubborn")
    if kind == "run":
        target = c.seed_run(export["id"], _hour(1), _hour(0), status="Running")
        cancel = client.cancel_run
    else:
        target = c.seed_backfill(export["id"], _hour(10), _hour(2), status="Running")
        cancel = client.cancel_backfill
    c.ignore_next_cancels(1, kind)
    with pytest.raises(PostHogCancelNotEffectiveError) as exc:
        cancel(export["id"], target["id"])
    assert (exc.value.kind, exc.value.object_id, exc.value.status) == (kind, target["id"], "Running")
    assert cancel(export["id"], target["id"]) == "Cancelled"
    assert cancel(export["id"], target["id"]) == "Cancelled"  # already cancelled: still a success


@pytest.mark.parametrize("legacy", [False, True])
def test_logs_closed_to_personal_keys_are_no_logs(
    client: HookClient, posthog_conn: Any, legacy: bool, caplog: pytest.LogCaptureFixture
) -> None:
    c = posthog_conn.control
    c.configure(logs_pak_access=False, legacy_pak_wording=legacy)
    export = c.seed_export(name="no logs for keys")
    run = c.seed_run(export["id"], _hour(2), _hour(1), status="Failed")
    caplog.clear()
    assert client.get_batch_export_logs(export["id"]) == []
    assert client.get_run_logs(export["id"], run["id"], level="ERROR") == []
    assert [e.status for e in c.request_log if e.path.endswith("/logs/")] == [403, 403]
    warned = [r for r in caplog.records if "personal API keys" in r.getMessage()]
    assert len(warned) == 2


def test_identical_range_answered_500_is_not_duplicated(client: HookClient, posthog_conn: Any) -> None:
    """A first try's backfill whose row is not listed yet: PostHog answers the second POST with 500.

    The client does not resend and does not create a second backfill; it names the running one, which it
    did not start (the other caller's), as already running rather than taking it for its own.
    """
    c = posthog_conn.control
    c.configure(backfill_row_delay=1.5, run_duration=30.0)
    export = c.seed_export(name="collide")
    start, end = _hour(4), _hour(2)
    first = requests.post(
        f"{posthog_conn.base_url}/api/projects/{posthog_conn.project_id}/batch_exports/{export['id']}/backfills/",
        json={"start_at": start.isoformat(), "end_at": end.isoformat()},
        headers={"Authorization": f"Bearer {posthog_conn.api_key}"},
        timeout=10,
    )
    assert first.status_code in (200, 201)
    c.clear_request_log()
    started = time.monotonic()
    with pytest.raises(PostHogBackfillAlreadyRunningError) as exc:
        client.create_backfill(export["id"], start, end)
    assert time.monotonic() - started < EMULATOR_LOOKUP.timeout
    got = exc.value.backfill
    assert (got.start_at, got.end_at) == (start, end) and got.outcome is Outcome.RUNNING
    assert _posts(posthog_conn) == [500]
    assert [b["id"] for b in c.backfills_for(export["id"])] == [got.id] == [exc.value.backfill_id]
