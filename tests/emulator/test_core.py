"""Endpoints, auth and shapes."""

from __future__ import annotations

import re

import pytest

from .conftest import S3_CONFIG, Api

NOT_FOUND = {"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": None}
DT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def test_create_export_strips_secrets_and_echoes_fields(api: Api) -> None:
    export = api.create_export()
    assert export["name"] == "S3 export"
    assert export["interval"] == "hour"
    assert export["destination"] == {
        "type": "S3",
        "config": {"bucket_name": "my-bucket", "region": "us-east-1", "prefix": "posthog-events/"},
        "integration": None,
    }
    assert export["latest_runs"] == []
    assert export["schema"] is None
    assert export["team_id"] == api.emulator.project_id
    assert DT.match(export["created_at"])


def test_secrets_are_stripped_at_any_depth(api: Api) -> None:
    response = api.post(
        "",
        {
            "name": "rs",
            "interval": "day",
            "destination": {
                "type": "Redshift",
                "config": {
                    "user": "u",
                    "password": "p",
                    "host": "h",
                    "database": "d",
                    "mode": "COPY",
                    "copy_inputs": {
                        "s3_bucket": "b",
                        "region_name": "r",
                        "authorization": {"aws_access_key_id": "a", "aws_secret_access_key": "s"},
                        "bucket_credentials": {"aws_access_key_id": "a", "aws_secret_access_key": "s"},
                    },
                },
            },
        },
    )
    assert response.status_code == 201, response.text
    config = response.json()["destination"]["config"]
    assert "user" not in config and "password" not in config
    assert config["copy_inputs"] == {
        "s3_bucket": "b",
        "region_name": "r",
        "authorization": {},
        "bucket_credentials": {},
    }


@pytest.mark.parametrize("prefix", ["projects", "environments"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_both_prefixes_and_optional_trailing_slash(api: Api, prefix: str, slash: str) -> None:
    export = api.create_export()
    response = api.get(f"{export['id']}{slash}", prefix=prefix)
    assert response.status_code == 200
    assert response.json()["id"] == export["id"]
    listing = api.get("" if not slash else "/", prefix=prefix)
    assert listing.json()["count"] == 1


def test_current_project_alias(api: Api) -> None:
    api.create_export()
    assert api.get("", project="@current").json()["count"] == 1


def test_retrieve_list_delete_lifecycle(api: Api) -> None:
    first = api.create_export(name="one")
    second = api.create_export(name="two")
    listing = api.get("").json()
    assert listing["count"] == 2
    assert [e["name"] for e in listing["results"]] == ["two", "one"]  # newest first
    assert api.request("DELETE", first["id"]).status_code == 204
    assert api.get(first["id"]).status_code == 404
    assert api.get(first["id"]).json() == NOT_FOUND
    assert api.get("").json()["count"] == 1
    assert api.request("DELETE", second["id"]).status_code == 204
    assert api.get("").json()["count"] == 0


def test_non_uuid_id_is_404(api: Api) -> None:
    assert api.get("not-a-uuid").json() == NOT_FOUND


def test_unknown_api_path_is_endpoint_not_found(api: Api) -> None:
    response = api.session.get(
        f"{api.emulator.base_url}/api/projects/{api.emulator.project_id}/nothing_here/",
        headers=api.emulator.auth_headers,
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "Endpoint not found."


def test_list_exports_limit_offset(api: Api) -> None:
    for n in range(5):
        api.create_export(name=f"e{n}")
    page = api.get("", params={"limit": 2}).json()
    assert page["count"] == 5 and len(page["results"]) == 2
    assert page["previous"] is None
    assert page["next"].startswith(api.emulator.base_url) and "offset=2" in page["next"]
    second = api.session.get(page["next"], headers=api.emulator.auth_headers).json()
    assert [e["name"] for e in second["results"]] == ["e2", "e1"]
    assert "offset" not in second["previous"]
    last = api.get("", params={"limit": 2, "offset": 4}).json()
    assert last["next"] is None and len(last["results"]) == 1


def test_put_requires_full_body_and_merges_config(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    bad = api.request("PUT", export["id"], json={"name": "x", "interval": "day"})
    assert bad.status_code == 400
    assert bad.json()["attr"] == "destination"
    ok = api.request(
        "PUT",
        export["id"],
        json={
            "name": "renamed",
            "interval": "day",
            "start_at": "2022-07-19 00:00:00",
            "destination": {
                "type": "S3",
                "config": {"bucket_name": "new-bucket", "aws_secret_access_key": "new"},
            },
        },
    )
    assert ok.status_code == 200, ok.text
    body = api.get(export["id"]).json()
    assert body["interval"] == "day" and body["name"] == "renamed"
    assert body["start_at"] == "2022-07-19T00:00:00Z"
    assert body["destination"]["config"]["bucket_name"] == "new-bucket"
    stored = posthog_emulator.control.get_export(export["id"])["destination"]["config"]
    assert stored["aws_secret_access_key"] == "new"
    assert stored["aws_access_key_id"] == "AKIA_SECRET"


def test_patch_without_credentials_keeps_them(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    response = api.request("PATCH", export["id"], json={"destination": {"config": {"prefix": "other/"}}})
    assert response.status_code == 200, response.text
    assert response.json()["interval"] == "hour"
    stored = posthog_emulator.control.get_export(export["id"])["destination"]["config"]
    assert stored == {**S3_CONFIG, "prefix": "other/"}


def test_pause_unpause_idempotent(api: Api) -> None:
    export = api.create_export()
    assert api.post(f"{export['id']}/pause").json() == {"paused": True}
    paused = api.get(export["id"]).json()
    assert paused["paused"] is True and paused["last_paused_at"] is not None
    assert api.post(f"{export['id']}/pause").status_code == 200
    assert api.get(export["id"]).json()["last_updated_at"] == paused["last_updated_at"]
    assert api.post(f"{export['id']}/unpause").json() == {"paused": False}
    unpaused = api.get(export["id"]).json()
    assert unpaused["paused"] is False
    api.post(f"{export['id']}/unpause")
    assert api.get(export["id"]).json()["last_updated_at"] == unpaused["last_updated_at"]


def test_pause_without_schedule_is_400(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    posthog_emulator.control.delete_schedule(export["id"])
    response = api.post(f"{export['id']}/pause")
    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid request to pause a BatchExport could not be carried out"


def test_unpause_with_backfill_backfills_the_paused_gap(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    control = posthog_emulator.control
    export = api.create_export()
    api.post(f"{export['id']}/pause")
    paused_at = api.get(export["id"]).json()["last_paused_at"]
    control.advance(3 * 3600)
    assert api.post(f"{export['id']}/unpause", {"backfill": True}).status_code == 200
    control.advance(5)
    backfills = api.get(f"{export['id']}/backfills").json()["results"]
    assert len(backfills) == 1
    assert backfills[0]["start_at"] == paused_at
    assert backfills[0]["end_at"] == api.get(export["id"]).json()["last_updated_at"]


# -- auth ---------------------------------------------------------------------------------------------------
def test_missing_credentials_401(api: Api) -> None:
    response = api.session.get(api.url())
    assert response.status_code == 401
    assert response.json() == {
        "type": "authentication_error",
        "code": "not_authenticated",
        "detail": "Authentication credentials were not provided.",
        "attr": None,
    }


def test_invalid_or_project_key_401(api: Api) -> None:
    response = api.get("", key="phc_project_key")
    assert response.status_code == 401
    assert response.json() == {
        "type": "authentication_error",
        "code": "authentication_failed",
        "detail": "Personal API key found in request Authorization header is invalid.",
        "attr": None,
    }


def test_personal_api_key_in_query_string(api: Api) -> None:
    response = api.session.get(api.url(), params={"personal_api_key": api.key})
    assert response.status_code == 200


def test_missing_scope_403(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    posthog_emulator.control.add_api_key("phx_read", scopes=["batch_export:read"])
    assert api.get("", key="phx_read").status_code == 200
    response = api.post("", {"name": "x"}, key="phx_read")
    assert response.status_code == 403
    assert response.json() == {
        "type": "authentication_error",
        "code": "permission_denied",
        "detail": "API key missing required scope 'batch_export:write'",
        "attr": None,
    }
    posthog_emulator.control.add_api_key("phx_ff", scopes=["feature_flag:read"])
    export = api.create_export()
    assert api.get(f"{export['id']}/logs", key="phx_ff").status_code == 403
    assert api.get(f"{export['id']}/logs", key="phx_read").status_code == 200


def test_key_restricted_to_other_project_403(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    posthog_emulator.control.add_project(2)
    posthog_emulator.control.add_api_key("phx_p2", project_ids=[2])
    response = api.get("", key="phx_p2")
    assert response.status_code == 403
    assert (
        response.json()["detail"]
        == f"API key does not have access to the requested project: ID {api.emulator.project_id}."
    )
    assert api.get("", key="phx_p2", project=2).status_code == 200


def test_other_organization_403_and_other_team_404(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    control = posthog_emulator.control
    control.add_project(2, organization_id=1)
    control.add_project(3, organization_id=99)
    export = api.create_export()
    other_org = api.get("", project=3)
    assert other_org.status_code == 403
    assert other_org.json()["detail"] == "You don't have access to the project."
    assert api.post("", {"name": "x"}, project=3).status_code == 403
    assert api.request("DELETE", export["id"], project=3).status_code == 403
    assert api.get(export["id"]).status_code == 200
    assert api.get(export["id"], project=2).json() == NOT_FOUND
    assert api.request("DELETE", export["id"], project=2).status_code == 404
    assert api.get("", project=2).json()["count"] == 0
    assert api.post(f"{export['id']}/pause", project=2).status_code == 404
    assert api.get(f"{export['id']}/runs", project=3).status_code == 403


def test_unknown_project_404(api: Api) -> None:
    assert api.get("", project=12345).status_code == 404


# -- 405s ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_backfill_detail_rejects_writes_405(api: Api, posthog_emulator, method: str) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    backfill = posthog_emulator.control.seed_backfill(
        export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z"
    )
    response = api.request(method, f"{export['id']}/backfills/{backfill['id']}")
    assert response.status_code == 405
    assert response.json() == {
        "type": "invalid_request",
        "code": "method_not_allowed",
        "detail": f'Method "{method}" not allowed.',
        "attr": None,
    }


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_runs_list_is_read_only_405(api: Api, method: str) -> None:
    export = api.create_export()
    assert api.request(method, f"{export['id']}/runs").status_code == 405


# -- runs ---------------------------------------------------------------------------------------------------
def test_cancel_running_run_then_listed_cancelled(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    control = posthog_emulator.control
    export = api.create_export()
    control.configure(run_duration=60.0)
    api.post(
        f"{export['id']}/backfills", {"start_at": "2024-01-01T00:00:00Z", "end_at": "2024-01-01T01:00:00Z"}
    )
    control.advance(10)
    runs = api.get(f"{export['id']}/runs").json()["results"]
    assert [r["status"] for r in runs] == ["Running"]
    response = api.post(f"{export['id']}/runs/{runs[0]['id']}/cancel")
    assert response.status_code == 200 and response.json() == {"cancelled": True}
    assert api.get(f"{export['id']}/runs").json()["results"][0]["status"] == "Cancelled"


def test_cannot_cancel_completed_run(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    run = posthog_emulator.control.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z")
    response = api.post(f"{export['id']}/runs/{run['id']}/cancel")
    assert response.status_code == 400
    assert response.json() == {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": "Cannot cancel a run that is in 'Completed' status",
        "attr": None,
    }
    assert api.get(f"{export['id']}/runs/{run['id']}").json()["status"] == "Completed"


def test_latest_runs_has_ten_newest(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    control = posthog_emulator.control
    export = api.create_export()
    ids = []
    for hour in range(12):
        control.advance(1)
        run = control.seed_run(
            export["id"], f"2024-01-01T{hour:02d}:00:00Z", f"2024-01-01T{hour + 1:02d}:00:00Z"
        )
        ids.append(run["id"])
    latest = api.get(export["id"]).json()["latest_runs"]
    assert [r["id"] for r in latest] == list(reversed(ids))[:10]


def test_docs_run_retrieve_and_retry(api: Api, posthog_emulator, docs_generation: None) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    run = posthog_emulator.control.seed_run(
        export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", status="Failed", latest_error="boom"
    )
    got = api.get(f"{export['id']}/runs/{run['id']}").json()
    assert got["status"] == "Failed" and got["latest_error"] == "boom" and got["batch_export"] == export["id"]
    retry = api.post(f"{export['id']}/runs/{run['id']}/retry")
    assert retry.status_code == 200
    assert retry.json() == {
        "backfill_id": f"{export['id']}-Backfill-2024-01-01T00:00:00+00:00-2024-01-01T01:00:00+00:00"
    }
    posthog_emulator.control.advance(10)
    backfills = api.get(f"{export['id']}/backfills").json()["results"]
    assert len(backfills) == 1 and backfills[0]["status"] == "Completed"
    assert api.get(f"{export['id']}/runs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_delete_succeeds_when_schedule_already_gone(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    posthog_emulator.control.delete_schedule(export["id"])
    assert api.request("DELETE", export["id"]).status_code == 204
    assert api.get(export["id"]).status_code == 404


def test_rejected_patch_leaves_state_unchanged(api: Api) -> None:
    export = api.create_export()
    response = api.request("PATCH", export["id"], json={"interval": "every 5 minutes"})
    assert response.status_code == 403
    assert response.json()["detail"] == "Higher frequency batch exports are not enabled for this team."
    assert api.request("PATCH", export["id"], json={"interval": None}).json()["detail"] == (
        "This field may not be null."
    )
    assert api.get(export["id"]).json()["interval"] == "hour"


def test_backfill_access_other_org_403_other_team_404(api: Api, posthog_emulator) -> None:  # type: ignore[no-untyped-def]
    control = posthog_emulator.control
    control.add_project(2)
    control.add_project(3, organization_id=5)
    export = api.create_export()
    bounds = {"start_at": "2021-01-01T00:00:00Z", "end_at": "2021-01-02T00:00:00Z"}
    assert api.post(f"{export['id']}/backfills", bounds, project=3).status_code == 403
    assert api.post(f"{export['id']}/backfills", bounds, project=2).status_code == 404
    backfill = control.seed_backfill(export["id"], "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z")
    assert api.get(f"{export['id']}/backfills/{backfill['id']}", project=3).status_code == 403
    assert api.post(f"{export['id']}/pause", project=3).status_code == 403
    assert api.get(export["id"]).json()["paused"] is False


def test_docs_backfill_key_set_and_datetime_format(api: Api, posthog_emulator, docs_generation: None) -> None:  # type: ignore[no-untyped-def]
    export = api.create_export()
    backfill = posthog_emulator.control.seed_backfill(
        export["id"], "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z"
    )
    got = api.get(f"{export['id']}/backfills/{backfill['id']}").json()
    assert set(got) == {
        "id", "progress", "start_at", "end_at", "status", "created_at", "finished_at", "last_updated_at",
        "team", "batch_export",
    }  # fmt: skip
    assert got["start_at"] == "2021-01-01T00:00:00Z" and got["team"] == api.emulator.project_id
    assert DT.match(got["created_at"]) and DT.match(got["last_updated_at"])
