"""Cursor pagination, ordering, windows, filters for runs/backfills; logs endpoints."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

    from .conftest import Api


def _follow(api: Api, first: dict[str, Any]) -> list[dict[str, Any]]:
    results, page = list(first["results"]), first
    while page["next"]:
        page = api.session.get(page["next"], headers=api.emulator.auth_headers).json()
        results.extend(page["results"])
    return results


def test_runs_cursor_pages_of_100(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    now = control.now()
    ids = []
    for n in range(230):
        start = now - timedelta(hours=300 - n)
        run = control.seed_run(
            export["id"], start, start + timedelta(hours=1), created_at=now - timedelta(seconds=1000 - n)
        )
        ids.append(run["id"])
    first = api.get(f"{export['id']}/runs").json()
    assert len(first["results"]) == 100 and first["previous"] is None and "count" not in first
    assert first["next"].startswith(
        f"{api.emulator.base_url}/api/projects/{api.emulator.project_id}/batch_exports/{export['id']}/runs"
    )
    everything = _follow(api, first)
    assert [r["id"] for r in everything] == list(reversed(ids))  # -created_at
    second = api.session.get(first["next"], headers=api.emulator.auth_headers).json()
    back = api.session.get(second["previous"], headers=api.emulator.auth_headers).json()
    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]
    ascending = _follow(api, api.get(f"{export['id']}/runs", params={"ordering": "created_at"}).json())
    assert [r["id"] for r in ascending] == ids


def test_runs_cursor_next_keeps_other_params(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    for _ in range(101):
        control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", status="Failed")
    page = api.get(f"{export['id']}/runs", params={"status": "Failed", "after": "-1d"}).json()
    assert "status=Failed" in page["next"] and "after=-1d" in page["next"] and "cursor=" in page["next"]


def test_invalid_cursor_404(api: Api) -> None:
    export = api.create_export()
    response = api.get(f"{export['id']}/runs", params={"cursor": "garbage!"})
    assert response.status_code == 404 and response.json()["detail"] == "Invalid cursor"


def test_runs_status_filter(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    for status in ("Completed", "Failed", "FailedRetryable", "Running"):
        control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", status=status)
    assert len(api.get(f"{export['id']}/runs").json()["results"]) == 4
    for ordering in (None, "-data_interval_start"):
        params: dict[str, Any] = {"status": ["Failed", "FailedRetryable"]}
        if ordering:
            params.update(ordering=ordering, start="2023-12-31T00:00:00Z")
        got = api.get(f"{export['id']}/runs", params=params).json()["results"]
        assert sorted(r["status"] for r in got) == ["Failed", "FailedRetryable"]
    bad = api.get(f"{export['id']}/runs", params={"status": "NotAStatus"})
    assert bad.status_code == 400 and bad.json()["attr"] == "status__0"  # the list item's index


def test_runs_date_window_depends_on_ordering(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    now = control.now()
    old_interval_new_run = control.seed_run(export["id"], "2020-01-01T00:00:00Z", "2020-01-01T01:00:00Z")
    recent_interval_old_run = control.seed_run(
        export["id"], now - timedelta(hours=2), now - timedelta(hours=1), created_at=now - timedelta(days=30)
    )
    default = api.get(f"{export['id']}/runs", params={"after": "-2d", "start": "-2d"}).json()["results"]
    assert [r["id"] for r in default] == [old_interval_new_run["id"]]
    by_interval = api.get(
        f"{export['id']}/runs", params={"ordering": "-data_interval_start", "start": "-2d", "after": "-60d"}
    ).json()["results"]
    assert [r["id"] for r in by_interval] == [recent_interval_old_run["id"]]
    # the default 7-day created_at window hides the 30-day-old run; after widens it
    assert len(api.get(f"{export['id']}/runs").json()["results"]) == 1
    assert len(api.get(f"{export['id']}/runs", params={"after": "-60d"}).json()["results"]) == 2
    iso = api.get(f"{export['id']}/runs", params={"after": (now - timedelta(days=31)).isoformat()}).json()
    assert len(iso["results"]) == 2
    before = api.get(f"{export['id']}/runs", params={"after": "-60d", "before": "-24h"}).json()["results"]
    assert [r["id"] for r in before] == [recent_interval_old_run["id"]]


def test_backfills_pages_of_50_stable_on_ties(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    export = api.create_export()
    created = control.now() - timedelta(hours=1)
    ids = [
        control.seed_backfill(
            export["id"], "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", created_at=created
        )["id"]
        for _ in range(120)
    ]
    for ordering, descending in (
        ("-created_at", True),
        ("created_at", False),
        ("-start_at", True),
        ("start_at", False),
    ):
        first = api.get(f"{export['id']}/backfills", params={"ordering": ordering}).json()
        assert len(first["results"]) == 50
        got = [b["id"] for b in _follow(api, first)]
        assert got == sorted(ids, reverse=descending)
    assert len(_follow(api, api.get(f"{export['id']}/backfills").json())) == 120


def test_backfills_listing_partitioned_by_team(api: Api, posthog_emulator: PostHogEmulator) -> None:
    control = posthog_emulator.control
    control.add_project(2)
    export = api.create_export()
    control.seed_backfill(export["id"], "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")
    control.seed_backfill(export["id"], "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")
    assert len(api.get(f"{export['id']}/backfills").json()["results"]) == 2
    assert api.get(f"{export['id']}/backfills", project=2).json()["results"] == []
    backfill = control.backfills_for(export["id"])[0]
    assert api.get(f"{export['id']}/backfills/{backfill['id']}", project=2).status_code == 404
    other = api.create_export()
    assert api.get(f"{other['id']}/backfills/{backfill['id']}").status_code == 404


def _seed_logs(posthog_emulator: PostHogEmulator, export_id: str) -> None:
    control = posthog_emulator.control
    control.seed_run(export_id, "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    control.advance(5)
    control.seed_run(
        export_id, "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z", status="Failed", latest_error="Boom"
    )


def test_export_logs_filters(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export()
    _seed_logs(posthog_emulator, export["id"])
    page = api.get(f"{export['id']}/logs").json()
    assert page["count"] == 4 and page["next"] is None
    stamps = [e["timestamp"] for e in page["results"]]
    assert stamps == sorted(stamps, reverse=True)
    assert set(page["results"][0]) == {"log_source_id", "instance_id", "timestamp", "level", "message"}
    errors = api.get(f"{export['id']}/logs", params={"level": "error,warning"}).json()["results"]
    assert [e["level"] for e in errors] == ["ERROR"]
    assert api.get(f"{export['id']}/logs", params={"search": "BOOM"}).json()["count"] == 1
    limited = api.get(f"{export['id']}/logs", params={"limit": 2}).json()
    assert limited["count"] == 2 and len(limited["results"]) == 2
    instance = errors[0]["instance_id"]
    by_instance = api.get(f"{export['id']}/logs", params={"instance_id": instance}).json()["results"]
    assert len(by_instance) == 2 and {e["instance_id"] for e in by_instance} == {instance}
    after = api.get(f"{export['id']}/logs", params={"after": page["results"][1]["timestamp"]}).json()
    assert [e["timestamp"] for e in after["results"]] == [page["results"][0]["timestamp"]]
    for bad in ("0", "501", "x"):
        assert api.get(f"{export['id']}/logs", params={"limit": bad}).status_code == 400


def test_run_logs_endpoint(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export()
    _seed_logs(posthog_emulator, export["id"])
    runs = api.get(f"{export['id']}/runs").json()["results"]
    for run in runs:
        logs = api.get(f"{export['id']}/runs/{run['id']}/logs").json()["results"]
        assert len(logs) == 2 and len({e["instance_id"] for e in logs}) == 1
    posthog_emulator.control.add_api_key("phx_ff", scopes=["feature_flag:read"])
    assert api.get(f"{export['id']}/runs/{runs[0]['id']}/logs", key="phx_ff").status_code == 403


def test_logs_without_pak_access_by_default_in_docs_generation(
    api: Api, posthog_emulator: PostHogEmulator, docs_generation: None
) -> None:
    export = api.create_export()
    run = posthog_emulator.control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    for path in (f"{export['id']}/logs", f"{export['id']}/runs/{run['id']}/logs"):
        response = api.get(path)
        assert response.status_code == 403
        assert response.json()["detail"] == "This action does not support personal API key access"
    posthog_emulator.control.configure(logs_pak_access=True)  # the override still opens them
    assert api.get(f"{export['id']}/logs").status_code == 200


def test_logs_pak_access_override_in_new_generation(api: Api, posthog_emulator: PostHogEmulator) -> None:
    export = api.create_export()
    assert api.get(f"{export['id']}/logs").status_code == 200
    posthog_emulator.control.configure(logs_pak_access=False)
    assert api.get(f"{export['id']}/logs").status_code == 403
