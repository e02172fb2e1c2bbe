"""Completeness: runs that exported fewer records than PostHog counted (``api/decisions.py``), and what a
terminal decision's event says about the runs it judged (``run_facts``). Pure."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_posthog.api import decisions
from airflow_provider_posthog.api.decisions import find_incomplete, incomplete_message, run_facts
from airflow_provider_posthog.exceptions import PostHogConfigError, PostHogTriggerError
from airflow_provider_posthog.tasks.args import to_completeness
from airflow_provider_posthog.tasks.waiting import decision_event, make_event, validate_event

H0, H1, H2 = "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"


def _runs(factories: Any, *counts: tuple[int | None, int | None]) -> list[Any]:
    """Completed runs of consecutive hours with (records_completed, records_total_count)."""
    hours = [H0, H1, H2]
    return [
        factories.run(
            "Completed",
            run_id=f"run-{i}",
            start=hours[i],
            end=hours[i + 1],
            records_completed=done,
            records_total_count=total,
            bytes_exported=None if done is None else done * 10,
        )
        for i, (done, total) in enumerate(counts)
    ]


def test_only_runs_with_both_counts_and_fewer_exported_are_incomplete(factories: Any) -> None:
    runs = [
        factories.run("Completed", run_id="lost", records_completed=80, records_total_count=100),
        factories.run("Completed", run_id="exact", records_completed=100, records_total_count=100),
        factories.run("Completed", run_id="late-events", records_completed=120, records_total_count=100),
        factories.run("Completed", run_id="no-count", records_completed=5, records_total_count=None),
        factories.run("Completed", run_id="nothing-exported", records_completed=None, records_total_count=9),
        factories.run("Completed", run_id="all-lost", records_completed=0, records_total_count=3),
    ]
    found = find_incomplete(runs)
    assert [r["id"] for r in found] == ["lost", "all-lost"]
    assert (found[0]["records_completed"], found[0]["records_total_count"]) == (80, 100)


def test_the_message_names_each_run_its_interval_and_both_counts() -> None:
    runs = [
        {
            "id": "r1",
            "data_interval_start": H0,
            "data_interval_end": H1,
            "records_completed": 8,
            "records_total_count": 10,
        },
        {
            "id": "r2",
            "data_interval_start": H1,
            "data_interval_end": H2,
            "records_completed": 0,
            "records_total_count": 4,
        },
    ]
    text = incomplete_message(runs)
    assert text.startswith("2 run(s) exported fewer records than PostHog counted")
    assert f"run r1 [{H0}, {H1}): 8 of 10 record(s)" in text
    assert f"run r2 [{H1}, {H2}): 0 of 4 record(s)" in text


def test_a_long_list_names_the_first_runs_and_counts_the_rest() -> None:
    runs = [{"id": f"r{i}", "records_completed": 1, "records_total_count": 2} for i in range(13)]
    text = incomplete_message(runs)
    assert "run r9 " in text and "run r10 " not in text
    assert text.endswith("; and 3 more.")


def test_a_completed_backfill_reports_its_incomplete_runs_and_sums(factories: Any) -> None:
    backfill = factories.backfill("Completed", end_at=H2)
    runs = _runs(factories, (100, 100), (80, 100))
    decision = decisions.decide_backfill(backfill, runs, intervals=_intervals(runs))
    assert decision.outcome.value == "succeeded"
    assert [r["id"] for r in decision.incomplete_runs] == ["run-1"]
    facts = run_facts(decision)
    assert facts["records_expected"] == 200 and facts["bytes_exported"] == 1800
    assert facts["runs_by_status"] == {"Completed": 2}
    assert facts["run_ids"] == ["run-0", "run-1"]
    assert facts["data_interval_start"] == "2024-01-01T00:00:00+00:00"
    assert facts["data_interval_end"] == "2024-01-01T02:00:00+00:00"
    assert [r["id"] for r in facts["incomplete_runs"]] == ["run-1"]


def test_a_count_missing_on_one_run_leaves_the_expected_total_unknown(factories: Any) -> None:
    runs = _runs(factories, (100, 100), (80, None))
    decision = decisions.decide_backfill(
        factories.backfill("Completed", end_at=H2), runs, intervals=_intervals(runs)
    )
    facts = run_facts(decision)
    assert facts["records_expected"] is None  # a partial sum would read as a loss
    assert facts["incomplete_runs"] == []  # and nothing can be said about the run without a count
    assert decision.records_completed == 180


def test_a_failure_counts_its_runs_by_status_without_claiming_totals(factories: Any) -> None:
    runs = [
        *_runs(factories, (80, 100)),
        factories.run("Failed", run_id="bad", start=H1, end=H2, latest_error="disk full"),
    ]
    decision = decisions.decide_backfill(
        factories.backfill("Completed", end_at=H2), runs, intervals=_intervals(runs)
    )
    assert decision.outcome.value == "failed"
    facts = run_facts(decision)
    assert facts["runs_by_status"] == {"Completed": 1, "Failed": 1}
    assert facts["run_ids"] == ["bad"]
    assert facts["records_expected"] is None and facts["incomplete_runs"] == []


def test_the_event_of_a_decision_carries_the_facts_and_other_events_their_empty_form(
    factories: Any,
) -> None:
    run = factories.run("Completed", records_completed=3, records_total_count=5, bytes_exported=300)
    event = decision_event(decisions.decide_run(run), batch_export_id="e", run_id=run.id)
    assert event["records_expected"] == 5 and event["bytes_exported"] == 300
    assert [r["id"] for r in event["incomplete_runs"]] == [run.id]
    assert event["incomplete_runs"][0]["records_total_count"] == 5
    timeout = make_event("timeout", "deadline passed", batch_export_id="e")
    assert set(timeout) == set(event)
    assert timeout["incomplete_runs"] == [] and timeout["records_expected"] is None


@pytest.mark.parametrize("bad", ["r1", [1, 2], {"id": "r"}])
def test_an_event_with_malformed_incomplete_runs_fails_closed(bad: Any) -> None:
    event = make_event("success", "done", batch_export_id="e")
    event["incomplete_runs"] = bad
    with pytest.raises(PostHogTriggerError, match="incomplete_runs"):
        validate_event(event)


def test_an_event_of_an_older_version_without_the_facts_still_validates() -> None:
    event = {"status": "success", "message": "done", "batch_export_id": "e", "failed_runs": []}
    assert validate_event(event)["status"] == "success"


@pytest.mark.parametrize(("value", "mode"), [("warn", "warn"), (" FAIL ", "fail"), ("off", "off")])
def test_completeness_accepts_the_three_modes(value: str, mode: str) -> None:
    assert to_completeness(value) == mode


@pytest.mark.parametrize("value", ["strict", "", None, True, 1])
def test_completeness_refuses_anything_else_naming_the_argument(value: Any) -> None:
    with pytest.raises(PostHogConfigError, match=r"completeness=.* is not one of 'fail', 'warn', 'off'"):
        to_completeness(value)


def _intervals(runs: list[Any]) -> list[tuple[Any, Any]]:
    return sorted({(r.data_interval_start, r.data_interval_end) for r in runs})
