"""Records parsed once from PostHog's JSON (``api/models.py``): dates, missing fields, the raw body."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
import pytest

from airflow_provider_posthog.api.models import (
    Backfill,
    BackfillProgress,
    BatchExport,
    BatchExportRun,
    LogEntry,
    parse_datetime,
    to_utc,
)
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogConfigError,
    PostHogUnexpectedResponseError,
)

UTC = dt.timezone.utc


def utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz="UTC")


# -- dates --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T05:06:07Z", utc(2024, 1, 1, 5, 6, 7)),
        ("2024-01-01T05:06:07.123456Z", pendulum.datetime(2024, 1, 1, 5, 6, 7, 123456, tz="UTC")),
        ("2024-01-01T06:06:07+01:00", utc(2024, 1, 1, 5, 6, 7)),
        ("2024-01-01", utc(2024, 1, 1)),  # a date-only bound of newer PostHog: midnight UTC
    ],
)
def test_posthog_timestamps_become_aware_utc_datetimes(text: str, expected: pendulum.DateTime) -> None:
    parsed = parse_datetime(text)
    assert isinstance(parsed, pendulum.DateTime) and parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01T05:06:07Z",
        "2024-01-01T05:06:07.5Z",
        "2024-01-01T05:06:07.123456+00:00",
        "2024-07-01T23:30:00-04:00",
        "2024-01-01 05:06:07+05:30",
        "2024-01-01T05:06:07",  # no offset: UTC, as pendulum reads it
        "2024-01-01",
        "2024-W01-1",
    ],
)
def test_the_fast_parser_reads_what_pendulum_reads(text: str) -> None:
    """``datetime.fromisoformat`` reads PostHog's timestamps first (ten times cheaper); it must give what
    pendulum's parser gives, zone name included, for every form either reads."""
    slow = pendulum.parse(text)
    if not isinstance(slow, pendulum.DateTime):
        slow = pendulum.datetime(slow.year, slow.month, slow.day, tz="UTC")  # type: ignore[union-attr]
    slow = slow.in_timezone("UTC")
    fast = parse_datetime(text)
    assert fast == slow and repr(fast) == repr(slow) and fast.timezone_name == "UTC"  # type: ignore[union-attr]


def test_missing_timestamps_are_none() -> None:
    assert parse_datetime(None) is None and parse_datetime("") is None


def test_to_utc_takes_aware_datetimes_strings_and_dates_and_refuses_naive_ones() -> None:
    berlin = dt.datetime(2024, 1, 1, 6, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert to_utc(berlin) == utc(2024, 1, 1, 5) and to_utc(berlin).utcoffset() == dt.timedelta(0)
    assert to_utc("2024-01-01T05:00:00Z") == utc(2024, 1, 1, 5)
    assert to_utc(dt.date(2024, 1, 1)) == utc(2024, 1, 1)
    with pytest.raises(PostHogConfigError, match=r"^start_at 2024-01-01T00:00:00 is naive"):
        to_utc(dt.datetime(2024, 1, 1), "start_at")
    with pytest.raises(PostHogConfigError, match="is not an ISO-8601 date or datetime"):
        to_utc("yesterday-ish")
    with pytest.raises(PostHogConfigError, match="must not be empty"):
        to_utc("")


# -- runs ---------------------------------------------------------------------------------------------------


def test_a_run_is_parsed_with_its_dates_counts_and_raw_body() -> None:
    data = {
        "id": "r1",
        "status": "Completed",
        "batch_export": "e",
        "backfill": "b",
        "data_interval_start": "2024-01-01T00:00:00Z",
        "data_interval_end": "2024-01-01T01:00:00Z",
        "created_at": "2024-01-01T01:00:05.5Z",
        "finished_at": "2024-01-01T01:02:00Z",
        "last_updated_at": "2024-01-01T01:02:00Z",
        "records_completed": "42",
        "records_total_count": 42,
        "bytes_exported": 1024,
        "latest_error": None,
        "a_field_posthog_adds_later": {"x": 1},
    }
    run = BatchExportRun.from_api(data)
    assert (run.id, run.status, run.batch_export_id, run.backfill_id) == ("r1", "Completed", "e", "b")
    assert (run.data_interval_start, run.data_interval_end) == (utc(2024, 1, 1), utc(2024, 1, 1, 1))
    assert run.finished_at == utc(2024, 1, 1, 1, 2)
    assert (run.records_completed, run.records_total_count, run.bytes_exported) == (42, 42, 1024)
    assert run.raw == data and run.raw is not data  # a copy: later edits of the body change nothing
    assert run.raw["a_field_posthog_adds_later"] == {"x": 1}
    assert run.outcome is Outcome.SUCCEEDED


def test_a_run_with_only_an_id_parses_with_empty_optional_fields() -> None:
    run = BatchExportRun.from_api({"id": 7})
    assert run.id == "7" and run.status == "" and run.outcome is Outcome.FAILED  # no status fails closed
    assert run.backfill_id is None and run.data_interval_start is None and run.created_at is None
    assert run.records_completed is None and run.latest_error is None


def test_raw_is_ignored_by_equality() -> None:
    a = BatchExportRun.from_api({"id": "r", "status": "Running"})
    b = BatchExportRun.from_api({"id": "r", "status": "Running", "new_field": 1})
    assert a == b


# -- backfills ----------------------------------------------------------------------------------------------


def test_a_backfill_is_parsed_with_progress_and_date_only_bounds() -> None:
    data = {
        "id": "b",
        "status": "Running",
        "batch_export": "e",
        "team": "3",
        "start_at": "2024-01-01",
        "end_at": "2024-01-03",
        "adjusted_start_at": "2023-12-31T00:00:00Z",
        "created_at": "2024-01-04T00:00:00Z",
        "progress": {"total_runs": 2, "finished_runs": 1, "progress": 0.5},
        "total_records_count": 99,
    }
    backfill = Backfill.from_api(data)
    assert (backfill.start_at, backfill.end_at) == (utc(2024, 1, 1), utc(2024, 1, 3))
    assert backfill.adjusted_start_at == utc(2023, 12, 31)
    assert backfill.team_id == 3 and backfill.total_records_count == 99
    assert backfill.progress == BackfillProgress(total_runs=2, finished_runs=1, progress=0.5)
    assert backfill.raw == data and backfill.outcome is Outcome.RUNNING


def test_a_backfill_without_optional_fields_or_with_a_null_progress() -> None:
    backfill = Backfill.from_api({"id": "b", "status": "Completed", "progress": None})
    assert backfill.progress is None and backfill.start_at is None and backfill.end_at is None
    assert backfill.adjusted_start_at is None and backfill.team_id is None
    partial = Backfill.from_api({"id": "b", "status": "Starting", "progress": {"total_runs": None}})
    assert partial.progress == BackfillProgress(total_runs=0, finished_runs=0, progress=0.0)


# -- exports and logs ---------------------------------------------------------------------------------------


def test_an_export_is_parsed_with_its_destination_and_latest_runs() -> None:
    data = {
        "id": "e",
        "team_id": 1,
        "name": "events to S3",
        "model": "events",
        "destination": {"type": "S3", "config": {"bucket_name": "b"}},
        "interval": "hour",
        "paused": True,
        "start_at": "2024-01-01T00:00:00Z",
        "latest_runs": [{"id": "r1", "status": "Failed"}],
    }
    export = BatchExport.from_api(data)
    assert (export.id, export.name, export.model, export.interval) == ("e", "events to S3", "events", "hour")
    assert export.destination_type == "S3" and export.destination["config"] == {"bucket_name": "b"}
    assert export.paused is True and export.start_at == utc(2024, 1, 1) and export.end_at is None
    assert [(r.id, r.outcome) for r in export.latest_runs] == [("r1", Outcome.FAILED)]
    assert export.raw == data


def test_an_export_without_optional_fields() -> None:
    export = BatchExport.from_api({"id": "e"})
    assert (export.name, export.destination_type, export.destination, export.interval) == ("", "", {}, "")
    assert export.paused is False and export.latest_runs == () and export.team_id is None


def test_a_log_entry_upper_cases_its_level() -> None:
    entry = LogEntry.from_api({"timestamp": "2024-01-01T00:00:00Z", "level": "warning", "message": "slow"})
    assert (entry.timestamp, entry.level, entry.message) == (utc(2024, 1, 1), "WARNING", "slow")
    empty = LogEntry.from_api({})
    assert (empty.timestamp, empty.level, empty.message, empty.instance_id) == (None, "", "", None)


# -- fields in a shape PostHog never sends ------------------------------------------------------------------

KEY = "phx_EchoedBackByAHostileServer0123456789abcdef"


@pytest.mark.parametrize(
    ("parse", "row", "says"),
    [
        (BatchExportRun.from_api, {"status": "Completed"}, "a batch export run without 'id'"),
        (Backfill.from_api, {"status": "Completed"}, "a backfill without 'id'"),
        (BatchExport.from_api, {"name": "x"}, "a batch export without 'id'"),
        (Backfill.from_api, {"id": "", "status": "Completed"}, "a backfill without 'id'"),
        (BatchExportRun.from_api, {"id": {"uuid": "r"}}, "run whose 'id' is a JSON object of 1 key"),
        (BatchExportRun.from_api, {"id": True}, "run whose 'id' is a boolean, not an id"),
        (
            Backfill.from_api,
            {"id": KEY, "status": "Completed"},
            f"backfill whose 'id' is a string of {len(KEY)}",
        ),
        (Backfill.from_api, {"id": "b", "status": ["Completed"]}, "'status' is a list of 1 item"),
        (BatchExportRun.from_api, {"id": "r", "status": KEY}, "not a batch export run status"),
        (BatchExportRun.from_api, {"id": "r", "backfill": 5.5}, "'backfill' is a number, not an id"),
        (
            BatchExportRun.from_api,
            {"id": "r", "data_interval_end": "soon"},
            "'data_interval_end' is a string",
        ),
        (BatchExportRun.from_api, {"id": "r", "created_at": 1700000000}, "not an ISO-8601 timestamp"),
        (BatchExportRun.from_api, {"id": "r", "records_completed": "many"}, "'records_completed' is a str"),
        (BatchExportRun.from_api, {"id": "r", "records_completed": 1.5}, "not a count"),
        (BatchExportRun.from_api, {"id": "r", "latest_error": {"x": 1}}, "'latest_error' is a JSON object"),
        (Backfill.from_api, {"id": "b", "progress": [1, 2]}, "'progress' is a list of 2 item(s)"),
        (Backfill.from_api, {"id": "b", "progress": {"total_runs": "all"}}, "backfill progress whose"),
        (Backfill.from_api, {"id": "b", "progress": {"progress": "half"}}, "'progress' is a string"),
        (BatchExport.from_api, {"id": "e", "destination": "S3"}, "'destination' is a string of 2"),
        (BatchExport.from_api, {"id": "e", "paused": "false"}, "'paused' is a string of 5 character(s)"),
        (BatchExport.from_api, {"id": "e", "latest_runs": {"id": "r"}}, "'latest_runs' is a JSON object"),
        (BatchExport.from_api, {"id": "e", "latest_runs": [{"status": "Failed"}]}, "run without 'id'"),
        (BatchExport.from_api, {"id": "e", "interval": 3600}, "'interval' is a number, not a string"),
        (Backfill.from_api, ["b", "Completed"], "a list of 2 item(s) where a backfill (a JSON object)"),
        (LogEntry.from_api, "an error line", "where a log entry (a JSON object) was expected"),
    ],
)
def test_a_field_in_a_shape_posthog_never_sends_is_a_clear_error(parse: Any, row: Any, says: str) -> None:
    """Named by object and field, described by type and size: never a bare KeyError, never the value."""
    with pytest.raises(PostHogUnexpectedResponseError) as exc:
        parse(row)
    assert says in str(exc.value)
    assert KEY not in str(exc.value) and "EchoedBack" not in str(exc.value)
    assert isinstance(exc.value, PostHogAPIError)  # what callers catching PostHog's answers already catch


def test_ids_and_statuses_of_posthogs_form_parse_unchanged() -> None:
    run = BatchExportRun.from_api(
        {"id": "018f0000-0000-7000-8000-0000000000a1", "status": "FailedRetryable", "team": 1}
    )
    assert run.id == "018f0000-0000-7000-8000-0000000000a1" and run.outcome is Outcome.FAILED
    # A status PostHog adds later parses: the status table fails it closed.
    assert BatchExportRun.from_api({"id": "r", "status": "Paused"}).outcome is Outcome.FAILED
    assert Backfill.from_api({"id": "b", "status": None}).outcome is Outcome.FAILED
    assert BatchExportRun.from_api({"id": "r", "records_completed": 2.0}).records_completed == 2
