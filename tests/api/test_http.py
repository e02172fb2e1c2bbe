"""Requests as data: URLs, values, paging and UI links (api/http.py)."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from op_driver import first_request

from airflow_provider_posthog.api import endpoints, http
from airflow_provider_posthog.exceptions import PostHogAPIError, PostHogConfigError

BASE = "https://us.posthog.com"


def test_format_datetime() -> None:
    assert (
        http.format_datetime(pendulum.datetime(2024, 1, 1, 5, tz="Europe/Berlin"))
        == "2024-01-01T04:00:00+00:00"
    )
    assert http.format_datetime(dt.date(2024, 1, 1)) == "2024-01-01"
    assert http.format_datetime(" -7d ") == "-7d"


def test_paths_are_relative_to_the_project_and_joined_by_the_driver() -> None:
    """Operations name paths below the project's API root; the project and host come from the driver."""
    assert http.export_path() == "batch_exports/"
    assert http.export_path("e", "runs", "r 1") == "batch_exports/e/runs/r%201/"
    assert http.export_path("a/b") == "batch_exports/a%2Fb/"  # an id never adds a path segment
    with pytest.raises(PostHogConfigError, match="must not be empty"):
        http.export_path("e", " ")
    spec = http.RequestSpec("GET", http.export_path("e", "runs"), (("status", "Failed"), ("status", "x y")))
    assert spec.api_path(7) == "/api/projects/7/batch_exports/e/runs/"
    assert spec.full_url(BASE, 7) == f"{BASE}/api/projects/7/batch_exports/e/runs/?status=Failed&status=x+y"
    assert (
        http.RequestSpec("GET", "batch_exports/").full_url(BASE, 7) == f"{BASE}/api/projects/7/batch_exports/"
    )


def test_ui_url() -> None:
    assert http.ui_url(BASE, 5) == f"{BASE}/project/5/pipeline/batch-exports"
    assert (
        http.ui_url(BASE, 5, "e", "backfills") == f"{BASE}/project/5/pipeline/batch-exports/e?tab=backfills"
    )
    with pytest.raises(PostHogConfigError):
        http.ui_url(BASE, 5, "e", "nope")


def test_offset_pagination() -> None:
    first = first_request(endpoints.list_batch_exports())
    body = {
        "count": 150,
        "next": "https://x/api/?offset=100",
        "results": [{"id": str(i)} for i in range(100)],
    }
    nxt = http.next_offset_request(first, body)
    assert nxt is not None and dict(nxt.params) == {"limit": "100", "offset": "100"}
    assert http.next_offset_request(nxt, {"next": None, "results": [{"id": "x"}]}) is None
    assert http.next_offset_request(nxt, {"next": "https://x/api/", "results": []}) is None  # no endless loop


def test_next_links_are_relative_and_joined_to_our_base_url() -> None:
    spec = first_request(endpoints.list_runs("e"))
    body = {
        "next": "http://internal:8000/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x",
        "results": [],
    }
    nxt = http.next_cursor_request(spec, body)
    assert nxt is not None and nxt.url == "/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x"
    assert nxt.full_url("https://ph.example.com/prefix", 7) == (
        "https://ph.example.com/prefix/api/projects/1/batch_exports/e/runs/?cursor=abc&after=x"
    )
    assert http.next_cursor_request(spec, {"next": None}) is None
    with pytest.raises(PostHogAPIError, match="outside /api/") as exc:  # PostHog's fault, not the user's
        http.relative_link("https://evil.example.com/steal")
    assert not isinstance(exc.value, PostHogConfigError)
