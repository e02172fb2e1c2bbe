"""Shared polls against the emulator over HTTP: a wider list narrowed client-side is the narrow list PostHog
answers, and a shared read never crosses API keys or projects (each request with its own Authorization)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from airflow_provider_posthog.api.jobs import BackfillJob
from airflow_provider_posthog.api.sharing import runs_inside
from airflow_provider_posthog.exceptions import PostHogNotFoundError
from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook, aclose_shared_clients

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 10, 1, tzinfo=UTC)
H = dt.timedelta(hours=1)
OTHER_KEY = "phx_emulated_second_key_0123456789"


def seed_runs(control: Any) -> str:
    """An hourly export with 260 runs (three pages of a wide list): hourly runs, retried hours, a day-long
    run, runs straddling the narrow ranges below and a run with no data interval start."""
    export_id = str(control.seed_export(name="shared polls", interval="hour")["id"])
    for n in range(240):
        control.seed_run(export_id, T0 + n * H, T0 + (n + 1) * H, status="Completed")
    for n in (5, 30, 31, 100):
        control.seed_run(export_id, T0 + n * H, T0 + (n + 1) * H, status="Failed", latest_error="x")
    control.seed_run(export_id, T0 + 24 * H, T0 + 48 * H, status="Completed")
    for n in (29, 99, 119):
        control.seed_run(export_id, T0 + n * H, T0 + (n + 2) * H, status="Completed")
    control.seed_run(export_id, None, T0 + 50 * H, status="Completed")
    for n in range(8):
        control.seed_run(export_id, T0 + (30 + n) * H, T0 + (31 + n) * H, status="Completed")
    return export_id


@pytest.mark.parametrize("ordering", ["-data_interval_start", "data_interval_start"])
def test_a_wider_list_narrowed_by_posthogs_predicate_is_the_narrow_list(
    posthog_conn: Any, ordering: str
) -> None:
    """Against the emulator's own filter and cursor pages: same runs, same order, for ranges that start and
    end on runs, inside a day-long run, and across the wide list's page boundaries."""
    export_id = seed_runs(posthog_conn.control)
    hook = PostHogHook()
    wide = hook.list_runs(export_id, ordering=ordering, start=T0, end=T0 + 240 * H)
    assert len(wide) > 200  # more than two pages of 100
    narrow_ranges = [
        (30, 31),
        (29, 32),
        (24, 48),
        (25, 47),
        (99, 121),
        (100, 120),
        (0, 240),
        (5, 6),
        (238, 240),
    ]
    for first, last in narrow_ranges:
        span = (T0 + first * H, T0 + last * H)
        narrow = hook.list_runs(export_id, ordering=ordering, start=span[0], end=span[1])
        assert narrow, span
        assert [r.id for r in runs_inside(wide, span)] == [r.id for r in narrow], (first, last)


def _conn(emulator: Any, **changes: Any) -> str:
    body = json.loads(emulator.airflow_conn_json())
    extra = body.setdefault("extra", {})
    if "project_id" in changes:
        extra["project_id"] = str(changes.pop("project_id"))
    body.update(changes)
    return json.dumps(body)


def test_a_shared_poll_never_crosses_api_keys_or_projects(
    posthog_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections that differ only in the key, or only in the project: two requests, each with its
    own Authorization, and each wait gets its own project's answer."""
    control = posthog_conn.control
    control.add_project(2)
    control.add_api_key(OTHER_KEY)
    export_id = str(control.seed_export(name="shared", interval="hour")["id"])
    backfill = control.seed_backfill(export_id, T0, T0 + 2 * H, status="Running")
    monkeypatch.setenv("AIRFLOW_CONN_PH_OTHER_KEY", _conn(posthog_conn, password=OTHER_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_PH_OTHER_PROJECT", _conn(posthog_conn, project_id=2))
    job = BackfillJob(export_id, str(backfill["id"]))

    async def polls(conn_ids: list[str]) -> list[Any]:
        hooks = [PostHogAsyncHook(posthog_conn_id=c) for c in conn_ids]
        try:
            return await asyncio.gather(
                *(h.arun(job.poll(), fresh_within=60) for h in hooks), return_exceptions=True
            )
        finally:
            await aclose_shared_clients()

    control.clear_request_log()
    results = asyncio.run(polls(["posthog_default", "ph_other_key"] * 10))
    assert {r.remote_status for r in results} == {"Running"}
    assert sorted(e.api_key for e in control.request_log) == sorted([posthog_conn.api_key, OTHER_KEY])

    control.clear_request_log()
    results = asyncio.run(polls(["posthog_default", "ph_other_project"] * 10))
    assert [type(r).__name__ for r in results[:2]] == ["Decision", PostHogNotFoundError.__name__]
    assert all(isinstance(r, PostHogNotFoundError) for r in results[1::2])
    projects = [e.path.split("/")[3] for e in control.request_log]
    # One read for the project that answers (fresh for 60 s); the one that fails is forgotten at once, so a
    # wait whose connection lookup ends after that failure reads again (Airflow before 3.3.2 looks
    # connections up one after another in a thread): once at least, never more than once per wait.
    assert projects.count(str(posthog_conn.project_id)) == 1 and 1 <= projects.count("2") <= 10
    assert set(projects) == {str(posthog_conn.project_id), "2"}
