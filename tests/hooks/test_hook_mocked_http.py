"""Hook behaviour with mocked HTTP (requests-mock, a scripted aiohttp server) for cases the emulator cannot
produce exactly."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from unittest import mock

import pytest
import requests
from hook_helpers import FAST_LOOKUP, FAST_POLICY, HOST, KEY, PROJECT, set_conn

from airflow_provider_posthog.api.retry import RetryPolicy
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogNotFoundError,
    PostHogServerError,
    PostHogTooManyBackfillsError,
    PostHogTransportError,
    PostHogValidationError,
)
from airflow_provider_posthog.hooks import posthog_async as hook_module
from airflow_provider_posthog.hooks.base import MASKED_KEYS
from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook, shared_async_session

P = f"{HOST}/api/projects/{PROJECT}/batch_exports/"
EXPORT = "018f0000-0000-7000-8000-00000000e0e0"
BACKFILL_UUID = "018f0000-0000-7000-8000-0000000000b1"


def backfill_row(bid: str = BACKFILL_UUID, **kw: Any) -> dict[str, Any]:
    row = {
        "id": bid,
        "status": "Running",
        "batch_export": EXPORT,
        "team": PROJECT,
        "start_at": "2024-01-01T00:00:00Z",
        "end_at": "2024-01-01T02:00:00Z",
        "created_at": "2099-01-01T00:00:00Z",
        "finished_at": None,
        "last_updated_at": "2099-01-01T00:00:00Z",
        "progress": None,
    }
    row.update(kw)
    return row


def an_export(requests_mock: Any, **fields: Any) -> Any:
    """The export create_backfill reads first (its schedule); hourly in the older format by default."""
    body = {"id": EXPORT, "name": "e", "interval": "hour", "destination": {"type": "NoOp", "config": {}}}
    body.update(fields)
    return requests_mock.get(P + f"{EXPORT}/", json=body)


def no_backfills(requests_mock: Any) -> Any:
    """The list create_backfill reads before its POST (to tell new rows from old ones)."""
    return requests_mock.get(P + f"{EXPORT}/backfills/", json={"next": None, "results": []})


def make_hook(**kw: Any) -> PostHogHook:
    kw.setdefault("retry_policy", FAST_POLICY)
    kw.setdefault("backfill_lookup", FAST_LOOKUP)
    return PostHogHook(**kw)


def test_headers_timeouts_and_offset_paging(mock_conn: str, requests_mock: Any) -> None:
    requests_mock.get(
        P,
        [
            {"json": {"count": 3, "next": P + "?limit=100&offset=2", "results": [{"id": "a"}, {"id": "b"}]}},
            {"json": {"count": 3, "next": None, "results": [{"id": "c"}]}},
        ],
    )
    hook = make_hook()
    with mock.patch.object(requests.Session, "request", wraps=hook.get_conn().request) as spy:
        exports = hook.list_batch_exports()
    assert [e.id for e in exports] == ["a", "b", "c"]
    assert [h.qs for h in requests_mock.request_history] == [
        {"limit": ["100"], "offset": ["0"]},
        {"limit": ["100"], "offset": ["2"]},
    ]
    sent = requests_mock.request_history[0]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["User-Agent"].startswith("airflow-provider-posthog/")
    assert spy.call_args.kwargs["timeout"] == (10.0, 30.0)
    assert spy.call_args.kwargs["allow_redirects"] is False
    assert spy.call_args.kwargs["stream"] is True  # the body is read in chunks, against the size cap


def test_cursor_paging_follows_absolute_next_on_our_host(mock_conn: str, requests_mock: Any) -> None:
    runs = P + f"{EXPORT}/runs/"
    requests_mock.get(
        runs,
        [
            {
                "json": {
                    "next": f"http://internal/api/projects/{PROJECT}/batch_exports/{EXPORT}/runs/?cursor=c2&status=Failed",
                    "results": [{"id": "r1", "status": "Failed"}],
                }
            },
            {"json": {"next": None, "results": [{"id": "r2", "status": "Failed"}]}},
        ],
    )
    got = make_hook().list_runs(EXPORT, status="Failed", after="-30d")
    assert [r.id for r in got] == ["r1", "r2"]
    first, second = requests_mock.request_history
    assert first.qs == {"after": ["-30d"], "status": ["failed"]}
    assert second.url.startswith(HOST) and second.qs == {"cursor": ["c2"], "status": ["failed"]}


def test_create_backfill_new_generation_tolerates_404(mock_conn: str, requests_mock: Any) -> None:
    an_export(requests_mock)
    no_backfills(requests_mock)
    requests_mock.post(P + f"{EXPORT}/backfills/", status_code=201, json={"backfill_id": BACKFILL_UUID})
    requests_mock.get(
        P + f"{EXPORT}/backfills/{BACKFILL_UUID}/",
        [{"status_code": 404, "json": {"code": "not_found", "detail": "Not found."}}] * 2
        + [{"json": backfill_row(status="Starting")}],
    )
    b = make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    assert b.id == BACKFILL_UUID and b.status == "Starting"
    methods = [h.method for h in requests_mock.request_history]
    assert methods == ["GET", "GET", "POST", "GET", "GET", "GET"]
    assert requests_mock.request_history[2].json() == {
        "start_at": "2024-01-01T00:00:00+00:00",
        "end_at": "2024-01-01T02:00:00+00:00",
    }


def test_create_backfill_docs_generation_finds_row_by_range(mock_conn: str, requests_mock: Any) -> None:
    an_export(requests_mock)
    wf = f"{EXPORT}-Backfill-2024-01-01T00:00:00+00:00-2024-01-01T02:00:00+00:00"
    requests_mock.post(P + f"{EXPORT}/backfills/", status_code=200, json={"backfill_id": wf})
    old = backfill_row("old", created_at="2000-01-01T00:00:00Z", status="Completed")
    other = backfill_row("other", end_at="2024-01-01T03:00:00Z")
    requests_mock.get(
        P + f"{EXPORT}/backfills/",
        [
            {"json": {"next": None, "results": [old]}},
            {"json": {"next": None, "results": [other, backfill_row("new"), old]}},
        ],
    )
    b = make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    assert b.id == "new"  # "old" existed before the POST; "other" has another range
    assert requests_mock.request_history[1].qs == {"ordering": ["-created_at"]}
    assert [h.method for h in requests_mock.request_history] == ["GET", "GET", "POST", "GET"]


def test_create_backfill_sends_dates_when_posthog_asks(mock_conn: str, requests_mock: Any) -> None:
    """An export without a time zone field (older PostHog) gets datetimes, dates only if a 400 asks."""
    no_backfills(requests_mock)
    detail = (
        "Input '2024-01-01T00:00:00+00:00' is not a valid ISO formatted date. Daily or weekly batch export "
        "backfills expect only the date component, but a time was included."
    )
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/",
        [
            {
                "status_code": 400,
                "json": {"type": "validation_error", "code": "invalid_input", "detail": detail},
            },
            {"status_code": 201, "json": {"backfill_id": BACKFILL_UUID}},
        ],
    )
    an_export(requests_mock, interval="day")
    requests_mock.get(
        P + f"{EXPORT}/backfills/{BACKFILL_UUID}/",
        json=backfill_row(start_at="2024-01-01T00:00:00Z", end_at="2024-01-03T00:00:00Z"),
    )
    b = make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
    assert b.id == BACKFILL_UUID
    assert [h.json() for h in post.request_history] == [
        {"start_at": "2024-01-01T00:00:00+00:00", "end_at": "2024-01-03T00:00:00+00:00"},
        {"start_at": "2024-01-01", "end_at": "2024-01-03"},
    ]


def test_daily_export_in_a_time_zone_gets_its_local_dates_up_front(
    mock_conn: str, requests_mock: Any
) -> None:
    """A time-zoned daily export: one POST with the export's local dates; no 400 round trip."""
    no_backfills(requests_mock)
    an_export(requests_mock, interval="day", timezone="America/New_York", offset_hour=0, offset_day=None)
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/", status_code=201, json={"backfill_id": BACKFILL_UUID}
    )
    requests_mock.get(
        P + f"{EXPORT}/backfills/{BACKFILL_UUID}/",
        json=backfill_row(start_at="2024-03-09T05:00:00Z", end_at="2024-03-11T04:00:00Z"),
    )
    # New York midnights; 2024-03-10 is a 23-hour day (DST starts).
    make_hook().create_backfill(EXPORT, "2024-03-09T05:00:00Z", "2024-03-11T04:00:00Z")
    assert [h.json() for h in post.request_history] == [{"start_at": "2024-03-09", "end_at": "2024-03-11"}]


def test_dates_refused_as_naive_are_resent_as_datetimes(mock_conn: str, requests_mock: Any) -> None:
    no_backfills(requests_mock)
    an_export(requests_mock, interval="day", timezone="UTC", offset_hour=0)
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/",
        [
            {"status_code": 400, "json": {"code": "invalid_input", "detail": "Input 2024-01-01 is naive."}},
            {"status_code": 201, "json": {"backfill_id": BACKFILL_UUID}},
        ],
    )
    requests_mock.get(P + f"{EXPORT}/backfills/{BACKFILL_UUID}/", json=backfill_row())
    make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")
    assert [h.json() for h in post.request_history] == [
        {"start_at": "2024-01-01", "end_at": "2024-01-02"},
        {"start_at": "2024-01-01T00:00:00+00:00", "end_at": "2024-01-02T00:00:00+00:00"},
    ]


def test_create_backfill_other_400_is_not_retried(mock_conn: str, requests_mock: Any) -> None:
    an_export(requests_mock)
    no_backfills(requests_mock)
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/",
        status_code=400,
        json={"code": "invalid_input", "detail": "The provided 'end_at' (2099-01-01) is in the future"},
    )
    with pytest.raises(PostHogValidationError, match="is in the future"):
        make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
    assert post.call_count == 1


def test_too_many_concurrent_backfills_fails_at_once(mock_conn: str, requests_mock: Any) -> None:
    an_export(requests_mock)
    no_backfills(requests_mock)
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/",
        status_code=429,
        headers={"Retry-After": "1"},
        json={
            "type": "server_error",
            "code": "too_many_concurrent_backfills",
            "detail": "This team already has 2 batch export backfills running. Wait for some to finish.",
        },
    )
    with pytest.raises(PostHogTooManyBackfillsError, match="already has 2") as exc:
        make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
    assert post.call_count == 1 and exc.value.http_status == 429


def test_ambiguous_create_failure_looks_before_resending(mock_conn: str, requests_mock: Any) -> None:
    an_export(requests_mock)
    post = requests_mock.post(P + f"{EXPORT}/backfills/", status_code=502, text="<html>bad gateway</html>")
    listing = requests_mock.get(
        P + f"{EXPORT}/backfills/",
        [
            {"json": {"next": None, "results": []}},
            {"json": {"next": None, "results": [backfill_row("found")]}},
        ],
    )
    b = make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    assert b.id == "found" and post.call_count == 1 and listing.call_count == 2


def test_backfill_created_but_answer_lost_is_not_duplicated(mock_conn: str, requests_mock: Any) -> None:
    an_export(requests_mock)
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/", exc=requests.exceptions.ConnectionError("Connection aborted.")
    )
    older = backfill_row("older-same-range", created_at="2099-01-01T00:00:00Z", status="Completed")
    requests_mock.get(
        P + f"{EXPORT}/backfills/",
        [
            {"json": {"next": None, "results": [older]}},  # before the POST
            {"json": {"next": None, "results": [older]}},  # not visible yet
            {"json": {"next": None, "results": [backfill_row("created"), older]}},
        ],
    )
    b = make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    assert b.id == "created" and post.call_count == 1


def test_ambiguous_create_failure_resends_once_when_nothing_appeared(
    mock_conn: str, requests_mock: Any
) -> None:
    an_export(requests_mock)
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/", status_code=500, json={"code": "error", "detail": "boom"}
    )
    requests_mock.get(P + f"{EXPORT}/backfills/", json={"next": None, "results": []})
    hook = make_hook(backfill_lookup=FAST_LOOKUP.__class__(timeout=0.1, poll_initial=0.02, poll_max=0.05))
    with pytest.raises(PostHogServerError, match="boom"):
        hook.create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")
    assert post.call_count == 2  # max_posts


def test_connect_error_on_create_is_retried(mock_conn: str, requests_mock: Any) -> None:
    an_export(requests_mock)
    no_backfills(requests_mock)
    post = requests_mock.post(
        P + f"{EXPORT}/backfills/",
        [
            {"exc": requests.exceptions.ConnectTimeout("connect timed out")},
            {"status_code": 201, "json": {"backfill_id": BACKFILL_UUID}},
        ],
    )
    requests_mock.get(P + f"{EXPORT}/backfills/{BACKFILL_UUID}/", json=backfill_row())
    assert (
        make_hook().create_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z").id
        == BACKFILL_UUID
    )
    assert post.call_count == 2


def test_create_export_is_not_resent_after_read_timeout(mock_conn: str, requests_mock: Any) -> None:
    post = requests_mock.post(P, exc=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(PostHogTransportError, match="ReadTimeout"):
        make_hook().create_batch_export(
            {"name": "x", "destination": {"type": "NoOp", "config": {}}, "interval": "hour"}
        )
    assert post.call_count == 1


def test_retry_run_returns_its_backfill(mock_conn: str, requests_mock: Any) -> None:
    run = {
        "id": "r1",
        "status": "Failed",
        "data_interval_start": "2024-01-01T00:00:00Z",
        "data_interval_end": "2024-01-01T01:00:00Z",
        "created_at": "2024-01-01T01:00:05Z",
    }
    requests_mock.get(P + f"{EXPORT}/runs/r1/", json=run)
    wf = f"{EXPORT}-Backfill-2024-01-01T00:00:00+00:00-2024-01-01T01:00:00+00:00"
    requests_mock.post(P + f"{EXPORT}/runs/r1/retry/", json={"backfill_id": wf})
    requests_mock.get(
        P + f"{EXPORT}/backfills/",
        [
            {"json": {"next": None, "results": []}},
            {"json": {"next": None, "results": [backfill_row("bf", end_at="2024-01-01T01:00:00Z")]}},
        ],
    )
    assert make_hook().retry_run(EXPORT, "r1").id == "bf"


def test_find_backfill_exact_range_and_active_only(mock_conn: str, requests_mock: Any) -> None:
    rows = [
        backfill_row("done", status="Completed", created_at="2024-02-02T00:00:00Z"),
        backfill_row("moved", start_at="2024-01-01T01:00:00Z", created_at="2024-02-03T00:00:00Z"),
        backfill_row("running", status="Running", created_at="2024-02-01T00:00:00Z"),
    ]
    requests_mock.get(P + f"{EXPORT}/backfills/", json={"next": None, "results": rows})
    hook = make_hook()
    assert hook.find_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z").id == "done"
    assert (
        hook.find_backfill(EXPORT, "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", active_only=True).id
        == "running"
    )
    assert hook.find_backfill(EXPORT, "2023-01-01T00:00:00Z", "2024-01-01T02:00:00Z") is None


def test_run_logs_use_the_export_logs_inside_the_run_window(mock_conn: str, requests_mock: Any) -> None:
    requests_mock.get(
        P + f"{EXPORT}/runs/r1/",
        json={
            "id": "r1",
            "status": "Failed",
            "created_at": "2024-01-01T01:00:00Z",
            "finished_at": "2024-01-01T01:05:00Z",
        },
    )
    logs = requests_mock.get(
        P + f"{EXPORT}/logs/",
        json={
            "count": 1,
            "next": None,
            "results": [
                {
                    "timestamp": "2024-01-01T01:04:00Z",
                    "level": "error",
                    "message": "boom",
                    "log_source_id": EXPORT,
                    "instance_id": "wf",
                }
            ],
        },
    )
    entries = make_hook().get_run_logs(EXPORT, "r1", level="ERROR", limit=20)
    assert [(e.level, e.message) for e in entries] == [("ERROR", "boom")]
    assert logs.last_request.qs == {
        "limit": ["20"],
        "after": ["2024-01-01t00:59:59+00:00"],
        "before": ["2024-01-01t01:05:01+00:00"],
        "level": ["error"],
    }


def test_run_logs_refused_to_personal_keys_returns_empty(mock_conn: str, requests_mock: Any) -> None:
    requests_mock.get(
        P + f"{EXPORT}/runs/r1/", json={"id": "r1", "status": "Failed", "created_at": "2024-01-01T01:00:00Z"}
    )
    requests_mock.get(
        P + f"{EXPORT}/logs/",
        status_code=403,
        json={"detail": "This action does not support personal API key access"},
    )
    assert make_hook().get_run_logs(EXPORT, "r1") == []
    requests_mock.get(
        P + f"{EXPORT}/logs/",
        status_code=403,
        json={"detail": "API key missing required scope 'batch_export:read'"},
    )
    with pytest.raises(PostHogAuthError):
        make_hook().get_run_logs(EXPORT, "r1")


def test_cancel_of_a_finished_job_returns_its_status(mock_conn: str, requests_mock: Any) -> None:
    """PostHog answers 400 for a job that is no longer active: the status read back is the answer."""
    requests_mock.post(
        P + f"{EXPORT}/runs/r1/cancel/",
        status_code=400,
        json={"detail": "Cannot cancel a run that is in 'Cancelled' status"},
    )
    requests_mock.get(P + f"{EXPORT}/runs/r1/", json={"id": "r1", "status": "Cancelled"})
    assert make_hook().cancel_run(EXPORT, "r1") == "Cancelled"
    requests_mock.post(
        P + f"{EXPORT}/backfills/b1/cancel/",
        status_code=400,
        json={"detail": "Cannot cancel a backfill that is in 'Completed' status"},
    )
    requests_mock.get(P + f"{EXPORT}/backfills/b1/", json=backfill_row("b1", status="Completed"))
    assert make_hook().cancel_backfill(EXPORT, "b1") == "Completed"
    # A 400 for a job that is still active is not "already finished": it is raised.
    requests_mock.get(P + f"{EXPORT}/backfills/b1/", json=backfill_row("b1", status="Running"))
    with pytest.raises(PostHogValidationError, match="'Completed' status"):
        make_hook().cancel_backfill(EXPORT, "b1")


def test_redirect_is_reported_not_followed(mock_conn: str, requests_mock: Any) -> None:
    requests_mock.get(P + f"{EXPORT}/", status_code=301, headers={"Location": "https://eu.posthog.com/api/x"})
    with pytest.raises(PostHogAPIError, match=r"redirected .* to https://eu\.posthog\.com"):
        make_hook().get_batch_export(EXPORT)


@pytest.mark.parametrize(
    ("status", "body", "expect"),
    [
        (
            200,
            {"count": 3, "results": []},
            "Connected to PostHog at https://ph.example.test: project 7 is readable (3 batch exports)",
        ),
        (
            401,
            {
                "code": "authentication_failed",
                "detail": "Personal API key found in request Authorization header is invalid.",
            },
            "rejected the API key (HTTP 401",
        ),
        (
            403,
            {"code": "permission_denied", "detail": "API key missing required scope 'batch_export:read'"},
            "lacks a scope PostHog requires (API key missing required scope 'batch_export:read')",
        ),
        (
            403,
            {
                "code": "permission_denied",
                "detail": "API key does not have access to the requested project: ID 7.",
            },
            "may not access project 7",
        ),
        (
            403,
            {"code": "permission_denied", "detail": "You don't have access to the project."},
            "Access to project 7 was denied",
        ),
        (
            404,
            {"code": "not_found", "detail": "Not found."},
            "Project 7 was not found at https://ph.example.test (HTTP 404)",
        ),
        (503, None, "did not accept the test request"),
    ],
)
def test_test_connection_messages(
    mock_conn: str, requests_mock: Any, status: int, body: Any, expect: str
) -> None:
    if body is None:
        requests_mock.get(P, status_code=status, text="<html>maintenance</html>")
    else:
        requests_mock.get(P, status_code=status, json=body)
    ok, message = make_hook().test_connection()
    assert ok is (status == 200)
    assert expect in message
    assert requests_mock.call_count == 1  # a test never retries
    assert KEY not in message


def test_test_connection_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, host="http://127.0.0.1:9")  # discard port: connection refused
    ok, message = make_hook().test_connection()
    assert not ok and "Could not reach PostHog at http://127.0.0.1:9" in message


def test_test_connection_unknown_conn_never_raises() -> None:
    ok, message = PostHogHook(posthog_conn_id="does_not_exist").test_connection()
    assert not ok and "does_not_exist" in message


def test_key_is_masked_once_per_process(mock_conn: str, requests_mock: Any) -> None:
    requests_mock.get(P, json={"count": 0, "next": None, "results": []})
    MASKED_KEYS.clear()
    with mock.patch("airflow.sdk.log.mask_secret") as masked:
        make_hook().list_batch_exports()
        make_hook().list_batch_exports()
    assert [c for c in masked.call_args_list if c.args == (KEY,)] == [mock.call(KEY)]


def test_no_secret_in_logs_or_exceptions(
    mock_conn: str, requests_mock: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    destination_secret = "AKIA_DESTINATION_SECRET_123"
    caplog.set_level(logging.DEBUG)
    requests_mock.post(
        P,
        [{"status_code": 503, "json": {"detail": "down"}}] * 2
        + [
            {
                "status_code": 400,
                "json": {"code": "invalid_input", "detail": f"Bad key {KEY}", "attr": "destination"},
            }
        ],
    )
    requests_mock.get(P + f"{EXPORT}/", [{"exc": requests.exceptions.ConnectionError("reset")}] * 4)
    errors: list[str] = []
    hook = make_hook()
    payload = {
        "name": "x",
        "interval": "hour",
        "destination": {"type": "S3", "config": {"aws_secret_access_key": destination_secret}},
    }
    for call in (
        lambda: hook.create_batch_export(payload),
        lambda: hook.get_batch_export(EXPORT),
        lambda: hook.update_batch_export(EXPORT, payload),
    ):
        try:
            call()
        except Exception as exc:
            errors.append(repr(exc) + str(exc) + str(exc.__cause__) + str(exc.__context__))
    out = capsys.readouterr()
    haystack = caplog.text + out.out + out.err + "".join(errors)
    assert errors and KEY not in haystack and destination_secret not in haystack


# -- async (a scripted aiohttp server on 127.0.0.1) -------------------------------------------------------


class Scripted:
    """A local HTTP server whose answers a test scripts: ``answer(request)`` returns a response, or ``None``
    to drop the connection without one. Records every request it received."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.answer: Any = lambda request: None
        self.base_url = ""

    async def handle(self, request: Any) -> Any:
        self.requests.append(request)
        result = self.answer(request)
        if asyncio.iscoroutine(result):
            result = await result
        if result is None:
            request.transport.close()
        return result


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    from aiohttp import web

    return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def scripted(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A scripted server and a ``posthog_default`` connection pointing at it (plain HTTP)."""
    from aiohttp import web

    server = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.base_url = f"http://127.0.0.1:{port}"
    set_conn(monkeypatch, host=server.base_url, extra={"project_id": PROJECT, "timeout": 0.3})
    try:
        yield server
    finally:
        await hook_module.aclose_shared_clients()
        await runner.cleanup()


def run_id_of(request: Any) -> str:
    return str(request.path.rstrip("/").rsplit("/", 1)[-1])


async def test_async_hook_never_does_sync_lookup_or_masking(scripted: Scripted) -> None:
    """No sync lookup or sync masking on the loop: 3.3.2+ does both async, older Airflow in a thread."""
    import threading
    from contextlib import ExitStack

    from airflow.sdk import log as sdk_log
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.execution_time import context as sdk_context

    MASKED_KEYS.clear()
    loop_thread = threading.get_ident()
    masked: list[Any] = []

    def off_loop(what: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == loop_thread:
                raise AssertionError(f"sync {what} on the event loop")
            return fn(*args, **kwargs)

        return call

    async def amask(secret: Any, *args: Any, **kwargs: Any) -> None:
        masked.append(secret)

    sync_mask = off_loop("masking", lambda secret, *a, **k: masked.append(secret))
    scripted.answer = lambda request: json_answer(200, {"id": run_id_of(request), "status": "Running"})
    with ExitStack() as stack:
        real_lookup = BaseHook.get_connection
        stack.enter_context(
            mock.patch.object(BaseHook, "get_connection", side_effect=off_loop("lookup", real_lookup))
        )
        for module in (sdk_log, sdk_context):
            stack.enter_context(mock.patch.object(module, "mask_secret", side_effect=sync_mask))
            if hasattr(module, "amask_secret"):  # Airflow 3.3+
                stack.enter_context(mock.patch.object(module, "amask_secret", side_effect=amask))
        hook = PostHogAsyncHook(retry_policy=FAST_POLICY)
        run = await hook.get_run(EXPORT, "r1")
    assert run.status == "Running"
    assert KEY in masked
    [req] = scripted.requests
    assert req.path == f"/api/projects/{PROJECT}/batch_exports/{EXPORT}/runs/r1/"
    assert req.headers["Authorization"] == f"Bearer {KEY}" and req.headers["User-Agent"].startswith(
        "airflow-provider-posthog/"
    )


async def test_async_retries_and_bounds(scripted: Scripted) -> None:
    script = iter(
        [
            lambda: json_answer(503, {"detail": "down"}),
            lambda: None,  # the connection dropped without an answer
            lambda: json_answer(429, {"code": "throttled", "detail": "x"}, {"Retry-After": "0"}),
            lambda: json_answer(200, backfill_row("b1")),
        ]
    )
    scripted.answer = lambda request: next(script)()
    b = await PostHogAsyncHook(retry_policy=FAST_POLICY).get_backfill(EXPORT, "b1")
    assert b.id == "b1" and len(scripted.requests) == 4

    scripted.requests.clear()
    scripted.answer = lambda request: json_answer(404, {"detail": "Not found."})
    with pytest.raises(PostHogNotFoundError):
        await PostHogAsyncHook(retry_policy=FAST_POLICY).get_backfill(EXPORT, "b1")
    assert len(scripted.requests) == 1  # final: not retried

    async def slow(request: Any) -> Any:
        await asyncio.sleep(1.0)  # longer than the connection's 0.3 s read timeout
        return json_answer(200, backfill_row("b1"))

    scripted.requests.clear()
    scripted.answer = slow
    with pytest.raises(PostHogTransportError, match="gave up after 4 attempts"):
        await PostHogAsyncHook(retry_policy=FAST_POLICY).get_backfill(EXPORT, "b1")
    assert len(scripted.requests) == 4


async def test_async_sessions_are_shared_per_loop_and_base_url(mock_conn: str) -> None:
    a = shared_async_session("https://a.example")
    assert shared_async_session("https://a.example") is a
    assert shared_async_session("https://b.example") is not a
    assert shared_async_session("https://a.example", verify=False) is not a
    other: list[Any] = []

    def in_other_loop() -> None:
        async def grab() -> None:
            other.append(shared_async_session("https://a.example"))

        asyncio.run(grab())

    await asyncio.to_thread(in_other_loop)
    assert other[0] is not a
    assert other[0].closed  # closed by its loop's shutdown (asyncio.run), without anyone asking
    await hook_module.aclose_shared_clients()
    assert a.closed and shared_async_session("https://a.example") is not a
    await hook_module.aclose_shared_clients()


def test_a_loop_that_ends_closes_its_sessions_without_a_warning() -> None:
    """``asyncio.run`` (Airflow's triggerer, ``dag.test()``) finalizes the loop's async generators, one of
    which closes the loop's sessions: no "Unclosed client session" is logged when the loop is gone."""
    import gc
    import warnings

    reported: list[Any] = []
    seen: list[Any] = []

    async def use() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        seen.append(shared_async_session("https://a.example"))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(use())
        gc.collect()
    assert seen[0].closed
    assert reported == [] and [w for w in caught if "Unclosed" in str(w.message)] == []


async def test_at_most_the_pools_size_of_requests_reach_the_server_at_once(scripted: Scripted) -> None:
    """200 waits polling at once share the pool's connections: the server never sees more requests at
    once than the pool has connections, and every wait gets its own answer."""
    from airflow_provider_posthog.hooks.aiohttp_client import ASYNC_MAX_CONNECTIONS

    inside = peak = 0

    async def busy(request: Any) -> Any:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        try:
            await asyncio.sleep(0.005)  # a connection busy for a moment
            return json_answer(200, {"id": run_id_of(request), "status": "Running"})
        finally:
            inside -= 1

    scripted.answer = busy
    hook = PostHogAsyncHook(retry_policy=FAST_POLICY)
    runs = await asyncio.gather(*(hook.get_run(EXPORT, f"r{n}") for n in range(200)))
    assert [r.id for r in runs] == [f"r{n}" for n in range(200)]
    assert peak == ASYNC_MAX_CONNECTIONS  # all the pool's connections used, never more requests than that


async def test_many_async_hooks_share_one_session(scripted: Scripted) -> None:
    import aiohttp

    scripted.answer = lambda request: json_answer(200, {"id": run_id_of(request), "status": "Completed"})
    created: list[Any] = []
    real = aiohttp.ClientSession.__init__

    def spy(self: Any, *a: Any, **k: Any) -> None:
        created.append(self)
        real(self, *a, **k)

    with mock.patch.object(aiohttp.ClientSession, "__init__", spy):
        hooks = [PostHogAsyncHook() for _ in range(200)]
        runs = await asyncio.gather(*(h.get_run(EXPORT, f"r{i}") for i, h in enumerate(hooks)))
    assert len(runs) == 200 and len(created) == 1


async def test_no_cookie_passes_between_hooks(scripted: Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's cookie is never sent back: hooks with different keys share a session, not a cookie jar."""
    scripted.answer = lambda request: json_answer(
        200, {"id": run_id_of(request), "status": "Running"}, {"Set-Cookie": "sessionid=abc; Path=/"}
    )
    # A host name, not an IP address: aiohttp's usual cookie jar keeps no cookie of an IP address.
    host = scripted.base_url.replace("127.0.0.1", "localhost")
    set_conn(monkeypatch, host=host)
    set_conn(monkeypatch, "posthog_other", host=host, password="phx_other_key_0123456789abcd")
    await PostHogAsyncHook(retry_policy=FAST_POLICY).get_run(EXPORT, "r1")
    other = PostHogAsyncHook("posthog_other", retry_policy=FAST_POLICY)
    await other.get_run(EXPORT, "r2", project_id=PROJECT)
    assert [r.headers.get("Cookie") for r in scripted.requests] == [None, None]
    assert [r.headers["Authorization"] for r in scripted.requests] == [
        f"Bearer {KEY}",
        "Bearer phx_other_key_0123456789abcd",
    ]


def test_json_error_body_never_includes_request_body(mock_conn: str, requests_mock: Any) -> None:
    requests_mock.patch(P + f"{EXPORT}/", status_code=400, json={"code": "invalid_input", "detail": "nope"})
    with pytest.raises(PostHogValidationError) as exc:
        make_hook().update_batch_export(EXPORT, {"destination": {"config": {"password": "hunter2-secret"}}})
    assert (
        "hunter2-secret" not in str(exc.value)
        and json.dumps(exc.value.__dict__, default=str).find("hunter2") < 0
    )


def test_policy_from_hook_arguments() -> None:
    hook = PostHogHook(max_attempts=2, max_retry_wait=7.5)
    assert hook.retry_policy == RetryPolicy(max_attempts=2, max_elapsed=7.5)
    assert PostHogHook(backfill_lookup_timeout=3).backfill_lookup.timeout == 3


@pytest.mark.parametrize("bypass", [False, True], ids=["proxied", "no_proxy"])
async def test_async_hook_uses_the_proxy_of_the_environment(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch, bypass: bool
) -> None:
    """``HTTP_PROXY`` sends the request through the proxy (the scripted server here, which sees the absolute
    URL of a host that does not resolve); ``NO_PROXY`` naming the host sends it direct (and DNS fails)."""
    host = "posthog.unresolvable.invalid"
    set_conn(monkeypatch, host=f"http://{host}", extra={"project_id": PROJECT, "timeout": 0.3})
    monkeypatch.setenv("HTTP_PROXY", scripted.base_url)
    if bypass:
        monkeypatch.setenv("NO_PROXY", host)
    else:
        monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    scripted.answer = lambda request: json_answer(200, {"id": "r1", "status": "Running"})
    hook = PostHogAsyncHook(retry_policy=RetryPolicy(max_attempts=1))
    if bypass:
        with pytest.raises(PostHogTransportError, match="could not be resolved"):
            await hook.get_run(EXPORT, "r1")
        assert scripted.requests == []
    else:
        assert (await hook.get_run(EXPORT, "r1")).status == "Running"
        [req] = scripted.requests
        assert req.url.host == host and req.headers["Authorization"] == f"Bearer {KEY}"


def test_hooks_of_a_class_share_one_logger_and_one_default_policy() -> None:
    """A triggerer holds one hook per waiting trigger: none of them carries a logger or policy of its own."""
    a, b = PostHogAsyncHook(), PostHogAsyncHook("other_conn")
    assert a.log is b.log and a.retry_policy is b.retry_policy and a.backfill_lookup is b.backfill_lookup
    assert a.log is not PostHogHook().log  # each class logs under its own name
    assert PostHogAsyncHook(max_attempts=2).retry_policy == RetryPolicy(max_attempts=2)
