"""Answers PostHog never sends fail closed with a message that says what was expected and what came.

A server in PostHog's place (a broken proxy, a newer or older PostHog, a hostile host) may answer a list in
another shape, a GET with another object, a row without ``id``, or pages that never end. Each one must end the
operation with :class:`PostHogUnexpectedResponseError`: never "success with 0 runs", never a list cut short,
never the API key in the message (the server may echo it anywhere).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from op_driver import drive, page

from airflow_provider_posthog.api import endpoints, http
from airflow_provider_posthog.api.backfills import find_backfill
from airflow_provider_posthog.api.jobs import BackfillJob, IntervalJob, RunJob
from airflow_provider_posthog.api.retry import transient
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    AirflowFailException,
    PostHogUnexpectedResponseError,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 28, 16, tzinfo=UTC)
#: The key a hostile server echoes back: it must reach no message.
KEY = "phx_EchoedBackByAHostileServer0123456789abcdef"
EXPORT = {"id": "e", "interval": "hour", "paused": False, "destination": {"type": "S3"}}


def backfill_row(status: str = "Completed", **extra: Any) -> dict[str, Any]:
    return {
        "id": "b",
        "status": status,
        "batch_export": "e",
        "start_at": "2026-11-28T16:00:00Z",
        "end_at": "2026-11-28T18:00:00Z",
        "created_at": "2026-11-28T20:00:00Z",
        **extra,
    }


def run_row(rid: str, hour: int, status: str = "Completed", **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "status": status,
        "batch_export": "e",
        "backfill": "b",
        "data_interval_start": (T0 + dt.timedelta(hours=hour)).isoformat(),
        "data_interval_end": (T0 + dt.timedelta(hours=hour + 1)).isoformat(),
        "created_at": "2026-11-28T20:00:01Z",
        "records_completed": 10 if status == "Completed" else 0,
        "latest_error": "S3 denied" if status == "Failed" else None,
        **extra,
    }


FAILED_RUN = run_row("r1", 1, "Failed")


def posthog(runs: Any, backfill: Any = None, export: Any = None, run: Any = None) -> Any:
    """A PostHog whose backfill ``b`` of export ``e`` is Completed and whose runs list answers ``runs``."""

    def answer(spec: http.RequestSpec) -> Any:
        assert spec.method == "GET"
        if spec.path == "batch_exports/e/backfills/b/":
            return backfill_row() if backfill is None else backfill
        if spec.path == "batch_exports/e/":
            return EXPORT if export is None else export
        if spec.path == "batch_exports/e/runs/r1/":
            return FAILED_RUN if run is None else run
        assert spec.path == "batch_exports/e/runs/", spec.path
        return runs

    return answer


def fails_closed(op: Any, answer: Any, *says: str) -> PostHogUnexpectedResponseError:
    """Drive ``op``: it must raise the unexpected-answer error, final, with every phrase of ``says`` and
    without the key."""
    with pytest.raises(PostHogUnexpectedResponseError) as exc:
        drive(op, answer)
    message = str(exc.value)
    for phrase in says:
        assert phrase in message
    assert KEY not in message and "EchoedBack" not in message
    assert not transient(exc.value)  # a wait ends at once: the next poll gets the same answer
    assert isinstance(exc.value, AirflowFailException)  # and Airflow's retries would too
    return exc.value


# -- a completed backfill whose runs come back in another shape --------------------------------------------


@pytest.mark.parametrize(
    ("runs", "came"),
    [
        ({"runs": [FAILED_RUN], "next": None}, "a JSON object of 2 key(s) whose 'results' is missing"),
        ({"results": {"r1": FAILED_RUN}, "next": None}, "whose 'results' is a JSON object of 1 key(s)"),
        ({"results": None, "next": None}, "whose 'results' is null"),
        ({"results": KEY, "next": None}, f"whose 'results' is a string of {len(KEY)} character(s)"),
        ("Completed", "a string of 9 character(s)"),
        (None, "with null"),
    ],
)
def test_a_completed_backfill_whose_runs_list_has_another_shape_is_not_a_success(
    runs: Any, came: str
) -> None:
    """Read as "no rows", each of these would report "Completed, 0 run(s)" over a failed run."""
    fails_closed(
        BackfillJob("e", "b").poll(),
        posthog(runs),
        "PostHog answered the list batch_exports/e/runs/ with",
        came,
        "expected a page of rows (a JSON object whose 'results' is a list of objects)",
    )


@pytest.mark.parametrize(
    ("row", "came"),
    [("r1", "a string of 2 character(s)"), ([FAILED_RUN], "a list of 1 item(s)"), (None, "null")],
)
def test_a_row_of_the_runs_list_that_is_not_an_object_fails_the_poll(row: Any, came: str) -> None:
    fails_closed(
        BackfillJob("e", "b").poll(),
        posthog(page(run_row("r0", 0), row)),
        f"with {came} as row 2 of a page; expected every row to be a JSON object",
    )


def test_a_run_with_a_status_posthog_does_not_have_fails_the_backfill() -> None:
    """A word PostHog may add later fails closed through the status table; anything else is no status."""
    decision, _ = drive(
        BackfillJob("e", "b").poll(), posthog(page(run_row("r0", 0), run_row("r1", 1, "Exploded")))
    )
    assert decision.outcome is Outcome.FAILED and decision.runs_completed == 1
    fails_closed(
        BackfillJob("e", "b").poll(),
        posthog(page(run_row("r0", 0), run_row("r1", 1, KEY))),
        "PostHog sent a batch export run whose 'status' is a string of",
        "not a batch export run status",
    )
    fails_closed(
        BackfillJob("e", "b").poll(),
        posthog(page(run_row("r0", 0), run_row("r1", 1, {"value": "Completed"}))),  # type: ignore[arg-type]
        "'status' is a JSON object of 1 key(s)",
    )


def test_a_backfill_status_that_is_no_word_fails_the_poll_at_once() -> None:
    fails_closed(
        BackfillJob("e", "b").poll(),
        posthog(page(), backfill=backfill_row(["Completed"])),  # type: ignore[arg-type]
        "PostHog sent a backfill whose 'status' is a list of 1 item(s), not a backfill status",
    )


def test_an_interval_whose_runs_list_has_another_shape_is_not_a_success() -> None:
    fails_closed(
        IntervalJob("e", T0, T0 + dt.timedelta(hours=2)).poll(),
        posthog({"items": [run_row("r0", 0), run_row("r1", 1)]}),
        "PostHog answered the list batch_exports/e/runs/ with a JSON object of 1 key(s)",
    )


def test_a_next_link_that_is_not_a_link_does_not_end_the_list() -> None:
    """``next`` read as "last page" would drop the runs after it, a failed one among them."""
    runs = {"results": [run_row("r0", 0)], "next": {"cursor": "abc"}}
    fails_closed(
        BackfillJob("e", "b").poll(),
        posthog(runs),
        "PostHog answered the list batch_exports/e/runs/ with a JSON object of 1 key(s) as its 'next' page",
    )


# -- an answer about another object -------------------------------------------------------------------------


def test_a_get_answering_another_backfill_fails_closed() -> None:
    other = backfill_row(id="b2")
    fails_closed(
        BackfillJob("e", "b").poll(),
        posthog(page(), backfill=other),
        "PostHog answered backfill b2 when asked for backfill b.",
    )


def test_a_get_answering_another_run_or_export_fails_closed() -> None:
    fails_closed(
        RunJob("e", "r1").poll(),
        posthog(page(), run=run_row("r9", 0, "Completed")),
        "PostHog answered run r9 when asked for run r1.",
    )
    fails_closed(
        endpoints.get_batch_export("e"),
        posthog(page(), export=dict(EXPORT, id="e2")),
        "PostHog answered batch export e2 when asked for batch export e.",
    )


def test_the_same_uuid_in_another_case_is_the_object_asked_for() -> None:
    upper = "018F0000-0000-7000-8000-0000000000B1"
    row = backfill_row(id=upper.lower())

    got, _ = drive(endpoints.get_backfill("e", upper), lambda spec: row)
    assert got.id == upper.lower()
    assert endpoints.same_id(" 018f00000000700080000000000000b1 ", upper)
    assert not endpoints.same_id("b", None) and not endpoints.same_id("b", "B")


def test_an_echoed_key_as_the_id_never_reaches_the_message() -> None:
    fails_closed(
        endpoints.get_backfill("e", "b"),
        posthog(page(), backfill=backfill_row(id=KEY)),
        f"PostHog sent a backfill whose 'id' is a string of {len(KEY)} character(s), not an id.",
    )


# -- a row without its id -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "answer", "says"),
    [
        (
            lambda: BackfillJob("e", "b").poll(),
            posthog(page(), backfill={"status": "Completed", "batch_export": "e"}),
            "PostHog sent a backfill without 'id'; every backfill PostHog sends has one.",
        ),
        (
            lambda: BackfillJob("e", "b").poll(),
            posthog(page(run_row("r0", 0), {k: v for k, v in FAILED_RUN.items() if k != "id"})),
            "PostHog sent a batch export run without 'id'",
        ),
        (
            lambda: RunJob("e", "r1").poll(),
            posthog(page(), run={"status": "Completed"}),
            "PostHog sent a batch export run without 'id'",
        ),
        (
            lambda: endpoints.list_batch_exports(),
            lambda spec: {"count": 1, "next": None, "results": [{"name": "x"}]},
            "PostHog sent a batch export without 'id'",
        ),
        (
            lambda: endpoints.list_backfills("e"),
            lambda spec: page({"status": "Running"}),
            "PostHog sent a backfill without 'id'",
        ),
    ],
)
def test_a_row_without_id_names_the_object_and_the_field(op: Any, answer: Any, says: str) -> None:
    fails_closed(op(), answer, says)


# -- pages that do not end ----------------------------------------------------------------------------------


def endless(path: str, rows_per_page: int = 1) -> tuple[Any, list[http.RequestSpec]]:
    """A server whose cursor changes on every page, each page with rows and a link to one more."""
    sent: list[http.RequestSpec] = []

    def answer(spec: http.RequestSpec) -> Any:
        sent.append(spec)
        n = len(sent)
        rows = [run_row(f"r{n}-{i}", 0) for i in range(rows_per_page)]
        return page(*rows, next_link=f"https://us.posthog.com/api/projects/1/{path}?cursor=c{n}")

    return answer, sent


def test_a_cursor_that_changes_on_every_page_hits_the_cap_and_says_so() -> None:
    answer, sent = endless("batch_exports/e/runs/")
    fails_closed(
        endpoints.list_runs("e"),
        answer,
        f"PostHog's pages of batch_exports/e/runs/ did not end after {http.MAX_PAGES} pages; stopped "
        "instead of returning part of the list.",
    )
    assert len(sent) == http.MAX_PAGES
    assert 100 <= http.MAX_PAGES <= 1000  # a year of hourly runs fits; a runaway server stops early


def test_a_lookup_of_our_backfill_over_endless_pages_fails_instead_of_reporting_none() -> None:
    """ "Not found" would make the create step POST a second backfill of the range."""
    answer, sent = endless("batch_exports/e/backfills/")
    fails_closed(
        find_backfill("e", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"),
        answer,
        f"PostHog's pages of batch_exports/e/backfills/ did not end after {http.MAX_PAGES} pages",
    )
    assert len(sent) == http.MAX_PAGES


def test_a_backfill_wait_over_endless_pages_fails_instead_of_deciding_on_part_of_them() -> None:
    pages, sent = endless("batch_exports/e/runs/")

    def answer(spec: http.RequestSpec) -> Any:
        return pages(spec) if spec.path.endswith("/runs/") else posthog(page())(spec)

    fails_closed(BackfillJob("e", "b").poll(), answer, "did not end after")
    assert len(sent) == http.MAX_PAGES


def test_an_empty_page_that_links_to_another_fails_at_once() -> None:
    sent: list[http.RequestSpec] = []

    def answer(spec: http.RequestSpec) -> Any:
        sent.append(spec)
        link = f"https://us.posthog.com/api/projects/1/batch_exports/e/backfills/?cursor=c{len(sent)}"
        return page(next_link=link)

    fails_closed(endpoints.list_backfills("e"), answer, "an empty page of batch_exports/e/backfills/")
    assert len(sent) == 1


def test_a_next_link_repeating_an_earlier_one_is_a_loop() -> None:
    sent: list[http.RequestSpec] = []

    def answer(spec: http.RequestSpec) -> Any:
        sent.append(spec)
        cursor = ["a", "b", "a"][min(len(sent), 3) - 1]
        link = f"https://us.posthog.com/api/projects/1/batch_exports/e/runs/?cursor={cursor}"
        return page(run_row(f"r{len(sent)}", 0), next_link=link)

    fails_closed(endpoints.list_runs("e"), answer, "loop: the next page link repeats an earlier one")
    assert [s.url for s in sent[1:]] == [
        "/api/projects/1/batch_exports/e/runs/?cursor=a",
        "/api/projects/1/batch_exports/e/runs/?cursor=b",
    ]


def test_offset_pages_of_exports_that_do_not_end_hit_the_cap() -> None:
    sent: list[http.RequestSpec] = []

    def answer(spec: http.RequestSpec) -> Any:
        sent.append(spec)
        return {"next": "https://x/api/?offset=n", "results": [dict(EXPORT, id=f"e{len(sent)}")]}

    fails_closed(
        endpoints.list_batch_exports(),
        answer,
        f"did not end after {http.MAX_PAGES} pages ({http.MAX_PAGES} exports)",
    )
    assert len(sent) == http.MAX_PAGES


def test_a_next_link_to_another_list_is_not_followed() -> None:
    """Rows of another export's runs would be counted as this one's."""
    link = "https://us.posthog.com/api/projects/1/batch_exports/e2/runs/?cursor=c"
    fails_closed(
        endpoints.list_runs("e"),
        lambda spec: page(run_row("r0", 0), next_link=link),
        "link to the next page of batch_exports/e/runs/ leads to another path",
    )


def test_a_next_link_to_another_host_is_followed_on_the_connections_host_only() -> None:
    """The host, scheme and port of PostHog's link are dropped: the key only goes to the connection's host."""
    link = "http://attacker.example:8080/api/projects/1/batch_exports/e/runs/?cursor=c2"
    pages = iter([page(run_row("r0", 0), next_link=link), page(run_row("r1", 1))])
    runs, sent = drive(endpoints.list_runs("e"), lambda spec: next(pages))
    assert [r.id for r in runs] == ["r0", "r1"]
    assert sent[1].full_url("https://eu.posthog.com", 1) == (
        "https://eu.posthog.com/api/projects/1/batch_exports/e/runs/?cursor=c2"
    )


def test_a_next_link_echoing_the_key_is_described_not_quoted() -> None:
    fails_closed(
        endpoints.list_runs("e"),
        lambda spec: page(run_row("r0", 0), next_link=f"https://x/api/projects/1/{KEY}/?cursor=c"),
        "leads to another path",
    )
    fails_closed(
        endpoints.list_runs("e"),
        lambda spec: page(run_row("r0", 0), next_link=f"https://x/{KEY}"),
        "outside /api/",
    )


def test_describe_names_type_and_size_never_content() -> None:
    assert [http.describe(v) for v in (None, True, 3, 2.5, KEY, [1], {KEY: KEY}, (1,))] == [
        "null",
        "a boolean",
        "a number",
        "a number",
        f"a string of {len(KEY)} character(s)",
        "a list of 1 item(s)",
        "a JSON object of 1 key(s)",
        "a tuple",
    ]
