"""Each endpoint operation driven directly: the requests that come out, what it makes of the answers."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from op_driver import FakeClock, drive, first_request, http_error, page

from airflow_provider_posthog.api import backfills, endpoints, jobs
from airflow_provider_posthog.api.backfills import BackfillLookup
from airflow_provider_posthog.api.errors import refuses_personal_keys
from airflow_provider_posthog.api.http import MAX_PAGES, RequestSpec
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConfigError,
    PostHogUnexpectedResponseError,
)

BASE = "https://us.posthog.com"
P = "batch_exports/"
LOOKUP = BackfillLookup(timeout=5.0, poll_initial=0.5, poll_max=1.0)
UUID = "018f0000-0000-7000-8000-0000000000b1"


def _retry_answer(spec: RequestSpec) -> Any:
    """A run whose retry PostHog accepts with a backfill UUID that is readable at once."""
    if spec.method == "POST":
        return {"backfill_id": UUID}
    if spec.path.endswith("/backfills/"):
        return page()
    if "/backfills/" in spec.path:
        return {"id": UUID, "status": "Starting", "end_at": "2026-11-28T17:00:00Z"}
    return {
        "id": "r",
        "status": "Failed",
        "data_interval_start": "2026-11-28T16:00:00Z",
        "data_interval_end": "2026-11-28T17:00:00Z",
    }


# -- the request of each endpoint ---------------------------------------------------------------------------


def test_endpoint_catalogue_paths_and_idempotency() -> None:
    tz = dt.timezone(dt.timedelta(hours=-5))
    specs = {
        "list": first_request(endpoints.list_batch_exports()),
        "create": first_request(endpoints.create_batch_export({"name": "x"})),
        "get": first_request(endpoints.get_batch_export("e")),
        "put": first_request(endpoints.update_batch_export("e", {"name": "y"}, partial=False)),
        "patch": first_request(endpoints.update_batch_export("e", {"name": "y"})),
        "delete": first_request(endpoints.delete_batch_export("e")),
        "pause": first_request(endpoints.pause_batch_export("e")),
        "unpause": endpoints.unpause_request("e"),
        "logs": first_request(endpoints.get_batch_export_logs("e", level=["error", "warning"], limit=10)),
        "runs": first_request(endpoints.list_runs("e", status=["Failed", "FailedRetryable"], after="-2d")),
        "run": first_request(endpoints.get_run("e", "r")),
        "cancel_run": jobs.RunJob("e", "r").cancel_request(),
        "retry_run": next(
            s
            for s in drive(backfills.retry_run("e", "r", lookup=LOOKUP), _retry_answer)[1]
            if s.method == "POST"
        ),
        "backfills": first_request(endpoints.list_backfills("e", ordering="-created_at")),
        "backfill": first_request(endpoints.get_backfill("e", "b")),
        "create_backfill": next(
            s
            for s in drive(
                backfills.create_backfill(
                    "e", dt.datetime(2024, 1, 1, tzinfo=tz), "2024-01-02T00:00:00Z", lookup=LOOKUP
                ),
                lambda spec: (
                    _retry_answer(spec) if spec.path != P + "e/" else {"id": "e", "interval": "hour"}
                ),
            )[1]
            if s.method == "POST"
        ),
        "cancel_backfill": jobs.BackfillJob("e", "b").cancel_request(),
    }
    p = P
    assert {k: (s.method, s.path) for k, s in specs.items()} == {
        "list": ("GET", p),
        "create": ("POST", p),
        "get": ("GET", p + "e/"),
        "put": ("PUT", p + "e/"),
        "patch": ("PATCH", p + "e/"),
        "delete": ("DELETE", p + "e/"),
        "pause": ("POST", p + "e/pause/"),
        "unpause": ("POST", p + "e/unpause/"),
        "logs": ("GET", p + "e/logs/"),
        "runs": ("GET", p + "e/runs/"),
        "run": ("GET", p + "e/runs/r/"),
        "cancel_run": ("POST", p + "e/runs/r/cancel/"),
        "retry_run": ("POST", p + "e/runs/r/retry/"),
        "backfills": ("GET", p + "e/backfills/"),
        "backfill": ("GET", p + "e/backfills/b/"),
        "create_backfill": ("POST", p + "e/backfills/"),
        "cancel_backfill": ("POST", p + "e/backfills/b/cancel/"),
    }
    not_idempotent = {k for k, s in specs.items() if not s.idempotent}
    assert not_idempotent == {"create", "retry_run", "create_backfill"}
    assert specs["unpause"].json == {}  # never PostHog's own backfill flag (api/unpause.py)
    assert specs["create_backfill"].json == {
        "start_at": "2024-01-01T05:00:00+00:00",
        "end_at": "2024-01-02T00:00:00+00:00",
    }
    assert specs["logs"].api_path(1) == "/api/projects/1/batch_exports/e/logs/"
    assert (
        specs["logs"].full_url(BASE, 1) == f"{BASE}/api/projects/1/{p}e/logs/?limit=10&level=ERROR%2CWARNING"
    )
    assert specs["runs"].params == (("after", "-2d"), ("status", "Failed"), ("status", "FailedRetryable"))


def test_bad_arguments_are_refused_before_any_request() -> None:
    assert first_request(endpoints.get_run("a/b", "c d")).path == P + "a%2Fb/runs/c%20d/"
    with pytest.raises(PostHogConfigError, match="must not be empty"):
        first_request(endpoints.get_batch_export(""))
    with pytest.raises(PostHogConfigError, match="naive"):
        first_request(backfills.create_backfill("e", dt.datetime(2024, 1, 1), "2024-01-02", lookup=LOOKUP))
    with pytest.raises(PostHogConfigError, match="between 1 and 500"):
        first_request(endpoints.get_batch_export_logs("e", limit=501))


# -- paging -------------------------------------------------------------------------------------------------


def test_exports_follow_offset_pages_until_next_is_null() -> None:
    pages = iter(
        [
            {"count": 3, "next": "https://x/api/?offset=2", "results": [{"id": "a"}, {"id": "b"}]},
            {"count": 3, "next": None, "results": [{"id": "c"}]},
        ]
    )
    got, sent = drive(endpoints.list_batch_exports(), lambda spec: next(pages))
    assert [e.id for e in got] == ["a", "b", "c"]
    assert [dict(s.params) for s in sent] == [
        {"limit": "100", "offset": "0"},
        {"limit": "100", "offset": "2"},
    ]


def test_cursor_pages_are_followed_through_relative_links() -> None:
    """PostHog's absolute ``next`` (an internal host behind a proxy) becomes a path the driver joins."""
    nxt = "http://internal:8000/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x"
    pages = iter(
        [page({"id": "r1", "status": "Running"}, next_link=nxt), page({"id": "r2", "status": "Completed"})]
    )
    got, sent = drive(endpoints.list_runs("e", after="-2d"), lambda spec: next(pages))
    assert [r.id for r in got] == ["r1", "r2"]
    assert sent[1].url == "/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x" and sent[1].params == ()
    assert sent[1].full_url("https://ph.example.com/prefix", 1) == (
        "https://ph.example.com/prefix/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x"
    )


def test_a_repeating_cursor_link_fails_instead_of_returning_what_was_read() -> None:
    same = "https://us.posthog.com/api/projects/1/batch_exports/e/backfills/?cursor=same"
    sent: list[RequestSpec] = []

    def answer(spec: RequestSpec) -> Any:
        sent.append(spec)
        return page({"id": f"b{len(sent)}", "status": "Completed"}, next_link=same)

    with pytest.raises(PostHogUnexpectedResponseError, match="loop: the next page link repeats") as exc:
        drive(endpoints.list_backfills("e"), answer)
    assert len(sent) == 2 < MAX_PAGES  # the first page and the link once; its repeat is not followed
    assert not isinstance(exc.value, PostHogConfigError)


def test_a_link_outside_the_api_is_posthogs_fault() -> None:
    with pytest.raises(PostHogAPIError, match="outside /api/") as exc:
        drive(endpoints.list_runs("e"), lambda spec: page(next_link="https://evil.example.com/steal"))
    assert not isinstance(exc.value, PostHogConfigError)


# -- log windows --------------------------------------------------------------------------------------------


def test_run_logs_window_ends_at_the_driver_clock_for_an_unfinished_run() -> None:
    clock = FakeClock()
    run = {"id": "r1", "status": "Running", "created_at": "2026-11-28T16:00:00Z", "finished_at": None}
    _, sent = drive(
        endpoints.get_run_logs("e", "r1", level="error"),
        lambda spec: run if "/runs/" in spec.path else [],
        clock,
    )
    assert dict(sent[1].params) == {
        "limit": "500",
        "after": "2026-11-28T15:59:59+00:00",
        "before": clock.now.add(seconds=1).isoformat(),
        "level": "ERROR",
    }
    finished = run | {"finished_at": "2026-11-28T17:00:00Z"}
    _, sent = drive(endpoints.get_run_logs("e", "r1"), lambda spec: finished if "/runs/" in spec.path else [])
    assert dict(sent[1].params)["before"] == "2026-11-28T17:00:01+00:00"


# -- runs of any age ----------------------------------------------------------------------------------------


def test_single_run_actions_ask_for_runs_of_any_age() -> None:
    retry = drive(backfills.retry_run("e", "r", lookup=LOOKUP), _retry_answer)[1]
    for spec in (
        first_request(endpoints.get_run("e", "r")),
        jobs.RunJob("e", "r").cancel_request(),
        next(s for s in retry if s.method == "POST"),
    ):
        assert dict(spec.params) == {"after": "2000-01-01T00:00:00Z"}
        assert spec.full_url(BASE, 1).endswith("/?after=2000-01-01T00%3A00%3A00Z")


# -- logs closed to personal keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "detail",
    [
        "This action does not support personal API key access",
        "This action does not support Personal API Key access",
    ],
)
def test_logs_closed_to_personal_keys_are_no_logs_with_one_warning(
    detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_posthog.api.endpoints")

    def refuse(spec: RequestSpec) -> Any:
        if spec.path.endswith("/logs/"):
            raise http_error(403, detail)
        return {"id": "r1", "status": "Failed", "created_at": "2026-11-28T16:00:00Z"}

    assert refuses_personal_keys(http_error(403, detail))
    assert drive(endpoints.get_batch_export_logs("e"), refuse)[0] == []
    assert drive(endpoints.get_run_logs("e", "r1"), refuse)[0] == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per call
    other = http_error(403, "API key missing required scope 'batch_export:read'")
    assert not refuses_personal_keys(other)
    with pytest.raises(PostHogAuthError, match="missing required scope"):
        drive(endpoints.get_batch_export_logs("e"), lambda spec: (_ for _ in ()).throw(other))
