"""The HTML pages behind the provider's extra links, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import pytest
import requests

from .conftest import S3_CONFIG

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

TABS = ("configuration", "metrics", "logs", "runs", "backfills")


class _Page(HTMLParser):
    """Collects the text, the section order, the current tab and every tag/attribute seen."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.sections: list[str] = []
        self.current_sections: list[str] = []
        self.current_tabs: list[str] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self._in_current_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        self.attributes.update(values)
        if tag == "section":
            self.sections.append(values.get("id") or "")
            if "current" in (values.get("class") or ""):
                self.current_sections.append(values.get("id") or "")
        if tag == "a" and values.get("aria-current") == "page":
            self.current_tabs.append(values.get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _get(url: str) -> tuple[requests.Response, _Page]:
    response = requests.get(url, timeout=10)
    page = _Page()
    page.feed(response.text)
    return response, page


def _text(page: _Page) -> str:
    return " ".join(" ".join(page.text).split())


@pytest.fixture
def seeded(posthog_emulator: PostHogEmulator) -> dict[str, Any]:
    c = posthog_emulator.control
    export = c.seed_export(
        name="Events to S3", destination={"type": "S3", "config": dict(S3_CONFIG)}, interval="hour"
    )
    failed = c.seed_run(
        export["id"],
        "2024-01-01T00:00:00Z",
        "2024-01-01T01:00:00Z",
        status="Failed",
        latest_error="S3 AccessDenied: the bucket policy denies PutObject",
    )
    backfill = c.seed_backfill(
        export["id"], "2024-01-02T00:00:00Z", "2024-01-02T03:00:00Z", status="Cancelled"
    )
    return {"export": export, "failed": failed, "backfill": backfill}


def test_every_tab_the_links_build_is_an_html_page_of_the_export(
    posthog_conn: PostHogEmulator, seeded: dict[str, Any]
) -> None:
    """The exact URLs the operators push for the extra links, built by the hook from the connection."""
    from airflow_provider_posthog.hooks.posthog import PostHogHook

    posthog_emulator = posthog_conn
    hook = PostHogHook()
    export_id = seeded["export"]["id"]
    assert hook.ui_url(None) == posthog_emulator.ui_url()
    for tab in (None, *TABS):
        url = hook.ui_url(export_id, tab)
        assert url == posthog_emulator.ui_url(export_id, tab)
        response, page = _get(url)
        assert response.status_code == 200, (url, response.text[:200])
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        wanted = tab or "configuration"
        assert page.current_tabs == [f"?tab={wanted}"]
        assert page.current_sections == [wanted]
        assert page.sections[0] == wanted and sorted(page.sections) == sorted(TABS)
        text = _text(page)
        assert "Events to S3" in text and export_id in text
    assert posthog_emulator.control.request_log == []  # browsing is not an API call


def test_the_export_page_shows_configuration_runs_and_backfills(
    posthog_emulator: PostHogEmulator, seeded: dict[str, Any]
) -> None:
    export_id = seeded["export"]["id"]
    response, page = _get(posthog_emulator.ui_url(export_id, "runs"))
    assert response.status_code == 200
    text = _text(page)
    # the export: name, destination type, interval, paused
    assert "<h1>Events to S3</h1>" in response.text
    assert "Destination type S3" in text and "Interval hour" in text and "Paused no" in text
    assert "my-bucket" in text  # a non-secret config value
    assert "very-secret" not in response.text and "AKIA_SECRET" not in response.text
    # the failed run, its interval and its error
    assert "S3 AccessDenied: the bucket policy denies PutObject" in text
    assert re.search(r"Failed 2024-01-01T00:00:00Z → 2024-01-01T01:00:00Z", text)
    assert seeded["failed"]["id"] in text
    # the backfill, its range and its status
    backfill_id = seeded["backfill"]["id"]
    assert re.search(r"Cancelled 2024-01-02T00:00:00Z → 2024-01-02T03:00:00Z", text)
    assert f'id="backfill-{backfill_id}"' in response.text
    # nothing is running, so the page does not refresh itself
    assert 'http-equiv="refresh"' not in response.text


def test_a_backfill_that_runs_shows_its_runs_and_progress_and_refreshes(
    posthog_emulator: PostHogEmulator,
) -> None:
    c = posthog_emulator.control
    c.configure(run_duration=3600.0, backfill_run_delay=0.0)
    export = c.seed_export(name="slow")
    backfill = c.seed_backfill(
        export["id"], "2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z", status="Running", simulate=True
    )
    c.advance(4000)  # the first run completes, the second is running
    response, page = _get(posthog_emulator.ui_url(export["id"], "backfills"))
    text = _text(page)
    assert page.sections[0] == "backfills"
    assert "Running 2024-01-01T00:00:00Z → 2024-01-01T02:00:00Z" in text
    assert "progress 1/2 runs" in text and "1 Completed, 1 Running" in text
    assert f'<a href="#backfill-{backfill["id"]}"' in response.text  # runs link to their backfill
    assert 'http-equiv="refresh"' in response.text


def test_the_page_reads_the_same_state_as_the_api(posthog_emulator: PostHogEmulator) -> None:
    """One state machine: a fail scripted through the control API shows on the page once the run ends."""
    c = posthog_emulator.control
    c.configure(run_duration=30.0)  # the run stays Running until the clock is advanced
    export = c.seed_export(name="caught up")
    c.fail_next_run(export["id"], error="Snowflake warehouse suspended")
    c.seed_run(export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", status="Running")
    _, before = _get(posthog_emulator.ui_url(export["id"], "runs"))
    assert "Running 2024-01-01T00:00:00Z" in _text(before)
    c.advance(60)
    _, after = _get(posthog_emulator.ui_url(export["id"], "runs"))
    assert "Failed 2024-01-01T00:00:00Z" in _text(after)
    assert "Snowflake warehouse suspended" in _text(after)
    api = requests.get(
        posthog_emulator.api_url(f"{export['id']}/runs"), headers=posthog_emulator.auth_headers, timeout=10
    )
    assert [r["latest_error"] for r in api.json()["results"]] == ["Snowflake warehouse suspended"]


def test_the_logs_and_metrics_tabs(posthog_emulator: PostHogEmulator, seeded: dict[str, Any]) -> None:
    c = posthog_emulator.control
    export_id = seeded["export"]["id"]
    c.seed_run(export_id, "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z", records_completed=250)
    _, page = _get(posthog_emulator.ui_url(export_id, "metrics"))
    text = _text(page)
    assert page.sections[0] == "metrics"
    assert "Runs 2" in text and "Records exported 250" in text and "Backfills 1" in text
    _, logs = _get(posthog_emulator.ui_url(export_id, "logs"))
    entries = c.logs_for(export_id)
    assert entries and entries[-1]["message"] in _text(logs)


def test_user_strings_are_escaped(posthog_emulator: PostHogEmulator) -> None:
    c = posthog_emulator.control
    evil = "<script>alert('x')</script>"
    export = c.seed_export(
        name=f'{evil} & "quotes"',
        destination={"type": "HTTP", "config": {"url": f"https://example.com/?q={evil}", "token": "tok"}},
    )
    c.seed_run(
        export["id"], "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", status="Failed", latest_error=evil
    )
    for url in (posthog_emulator.ui_url(export["id"]), posthog_emulator.ui_url()):
        response, page = _get(url)
        assert response.status_code == 200
        assert "<script" not in response.text.lower()
        assert "script" not in page.tags
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in response.text
        assert f'{evil} & "quotes"' in _text(page)  # shown as text, exactly


def test_the_export_list_page(posthog_emulator: PostHogEmulator, seeded: dict[str, Any]) -> None:
    c = posthog_emulator.control
    c.seed_export(name="Second export", paused=True, interval="day")
    response, page = _get(posthog_emulator.ui_url())
    assert response.status_code == 200
    text = _text(page)
    assert "Events to S3" in text and "Second export" in text
    assert (
        f'href="/project/{posthog_emulator.project_id}/pipeline/batch-exports/{seeded["export"]["id"]}"'
        in (response.text)
    )
    assert "Failed" in text  # the latest run of the first export
    assert _get(posthog_emulator.ui_url() + "/")[0].status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/project/{project}/pipeline/batch-exports/00000000-0000-4000-8000-000000000000",
        "/project/{project}/pipeline/batch-exports/not-a-uuid?tab=runs",
        "/project/99999/pipeline/batch-exports/{export}",  # another project
        "/project/99999/pipeline/batch-exports",
        "/project/abc/pipeline/batch-exports",
    ],
)
def test_unknown_exports_and_projects_are_html_404s(
    posthog_emulator: PostHogEmulator, seeded: dict[str, Any], path: str
) -> None:
    url = posthog_emulator.base_url + path.format(
        project=posthog_emulator.project_id, export=seeded["export"]["id"]
    )
    response, page = _get(url)
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert _text(page).startswith("404")
    assert "Events to S3" not in response.text


def test_a_deleted_export_is_a_404_page(posthog_emulator: PostHogEmulator, seeded: dict[str, Any]) -> None:
    export_id = seeded["export"]["id"]
    deleted = requests.delete(
        posthog_emulator.api_url(export_id), headers=posthog_emulator.auth_headers, timeout=10
    )
    assert deleted.status_code == 204
    assert _get(posthog_emulator.ui_url(export_id))[0].status_code == 404


def test_the_api_still_answers_json_next_to_the_pages(posthog_emulator: PostHogEmulator) -> None:
    response = requests.post(posthog_emulator.ui_url(), timeout=10)
    assert response.status_code == 404 and response.json()["detail"] == "Endpoint not found."
    assert requests.get(posthog_emulator.api_url(), timeout=10).status_code == 401
