"""PostHog's server rules a client must not trust blindly, driven as operations on a fake clock: a backfill
that adopted a run already under way, an export paused after repeated failures, a retry of a run still
running, offsets sent without their interval, an unpause backfill from an unknown start."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest
from op_driver import FakeClock, drive, http_error, page

from airflow_provider_posthog.api import backfills, endpoints, unpause
from airflow_provider_posthog.api.backfills import BackfillLookup
from airflow_provider_posthog.api.jobs import BackfillJob, IntervalJob
from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.exceptions import (
    PostHogBackfillAlreadyRunningError,
    PostHogConfigError,
    PostHogError,
)

if TYPE_CHECKING:
    from airflow_provider_posthog.api.http import RequestSpec

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 28, 16, tzinfo=UTC)
LOOKUP = BackfillLookup(timeout=5.0, poll_initial=1.0, poll_max=1.0, max_posts=2)
NEW = "018f0000-0000-7000-8000-0000000000b1"


def hour(h: int) -> str:
    return (T0 + dt.timedelta(hours=h)).isoformat()


def run_row(
    rid: str, h: int, status: str = "Completed", bf: str | None = "b", **extra: Any
) -> dict[str, Any]:
    return {
        "id": rid,
        "status": status,
        "backfill": bf,
        "data_interval_start": hour(h),
        "data_interval_end": hour(h + 1),
        "created_at": "2026-11-28T20:00:01Z",
        "records_completed": 10 if status == "Completed" else None,
        "latest_error": "S3 access denied" if status == "Failed" else None,
        **extra,
    }


def export_row(**extra: Any) -> dict[str, Any]:
    return {"id": "e", "interval": "hour", "paused": False, **extra}


class PostHog:
    """One export, one backfill over [16:00, 19:00) and the runs the list answers; records requests."""

    def __init__(self, status: str, runs: list[dict[str, Any]], **backfill: Any) -> None:
        self.backfill = {
            "id": "b",
            "status": status,
            "start_at": hour(0),
            "end_at": hour(3),
            "created_at": "2026-11-28T20:00:00Z",
            **backfill,
        }
        self.export = export_row()
        self.runs = runs
        self.sent: list[RequestSpec] = []

    def __call__(self, spec: RequestSpec) -> Any:
        self.sent.append(spec)
        assert spec.method == "GET"
        if spec.path == "batch_exports/e/backfills/b/":
            return self.backfill
        if spec.path == "batch_exports/e/":
            return self.export
        assert spec.path == "batch_exports/e/runs/"
        return page(*self.runs)


# -- a backfill that adopted a run already under way ----------------------------------------------------


def test_an_interval_left_to_a_scheduled_run_that_completed_counts_it_at_no_extra_request() -> None:
    """PostHog tags no run with a backfill for an interval whose scheduled run was already running."""
    posthog = PostHog("Completed", [run_row("r0", 0), run_row("scheduled", 1, bf=None), run_row("r2", 2)])
    decision, _ = drive(BackfillJob("e", "b").poll(), posthog)
    assert decision.outcome is Outcome.SUCCEEDED
    assert [r.id for r in decision.completed_runs] == ["r0", "r2", "scheduled"]  # lineage sees all three
    assert (decision.runs_completed, decision.records_completed) == (3, 30)
    assert "1 of them adopted" in decision.message
    # The same three requests as before: the list over the range already holds the scheduled run.
    assert [s.path for s in posthog.sent] == [
        "batch_exports/e/backfills/b/",
        "batch_exports/e/",
        "batch_exports/e/runs/",
    ]


def test_an_adopted_run_that_failed_fails_the_backfill_naming_its_interval_and_run() -> None:
    runs = [run_row("r0", 0), run_row("scheduled", 1, "Failed", bf=None), run_row("r2", 2)]
    decision, _ = drive(BackfillJob("e", "b").poll(), PostHog("Completed", runs))
    assert decision.outcome is Outcome.FAILED and decision.remote_status == "Completed"
    assert "were left to run(s) already under way" in decision.message
    assert [(r["id"], r["data_interval_start"], r["latest_error"]) for r in decision.failed_runs] == [
        ("scheduled", hour(1), "S3 access denied")
    ]
    assert decision.completed_runs == ()


def test_the_newest_other_run_of_an_interval_decides_it() -> None:
    """A failed scheduled run that another backfill's run re-exported since counts as exported."""
    runs = [
        run_row("r0", 0),
        run_row("scheduled", 1, "Failed", bf=None, created_at="2026-11-28T17:00:05Z"),
        run_row("fixed", 1, bf="other", created_at="2026-11-28T21:00:00Z"),
        run_row("r2", 2),
    ]
    decision, _ = drive(BackfillJob("e", "b").poll(), PostHog("Completed", runs))
    assert decision.outcome is Outcome.SUCCEEDED
    assert "fixed" in [r.id for r in decision.completed_runs]


def test_an_adopted_run_still_running_keeps_the_wait_going() -> None:
    runs = [run_row("r0", 0), run_row("scheduled", 1, "Running", bf=None), run_row("r2", 2)]
    decision, _ = drive(BackfillJob("e", "b").poll(), PostHog("Completed", runs))
    assert decision.outcome is Outcome.RUNNING and not decision.done
    assert decision.message == (
        f"Backfill b is Completed, but run scheduled of [{hour(1)}, {hour(2)}) is still Running; "
        "waiting for it."
    )


def test_an_interval_with_no_run_at_all_fails_closed() -> None:
    decision, _ = drive(BackfillJob("e", "b").poll(), PostHog("Completed", [run_row("r0", 0)]))
    assert decision.outcome is Outcome.FAILED
    assert decision.message == (
        f"Backfill b is Completed but no run exported 2 of its 3 interval(s) ([{hour(1)}, {hour(2)}), "
        f"[{hour(2)}, {hour(3)})): neither a run of the backfill nor another run of the export covers them."
    )


def test_a_completed_backfill_with_no_runs_succeeds_only_where_posthog_found_nothing_to_export() -> None:
    assert drive(BackfillJob("e", "b").poll(), PostHog("Completed", []))[0].outcome is Outcome.FAILED
    nothing = PostHog("Completed", [], total_records_count=0)
    decision, _ = drive(BackfillJob("e", "b").poll(), nothing)
    assert decision.outcome is Outcome.SUCCEEDED and decision.runs_completed == 0


def test_a_zero_record_count_does_not_hide_an_adopted_run_that_failed() -> None:
    """PostHog's count after the end sums the backfill's own runs: one that adopted every run counts 0."""
    adopted = PostHog("Completed", [run_row("scheduled", 1, "Failed", bf=None)], total_records_count=0)
    decision, _ = drive(BackfillJob("e", "b").poll(), adopted)
    assert decision.outcome is Outcome.FAILED
    assert [r["id"] for r in decision.failed_runs] == ["scheduled"]


def test_intervals_before_the_start_posthog_moved_to_the_first_data_are_not_expected() -> None:
    posthog = PostHog("Completed", [run_row("r2", 2)], adjusted_start_at=hour(2))
    assert drive(BackfillJob("e", "b").poll(), posthog)[0].outcome is Outcome.SUCCEEDED


# -- an export PostHog paused -----------------------------------------------------------------------------


def _failed_streak() -> list[dict[str, Any]]:
    return [
        run_row(f"f{n}", n, "Failed", bf=None, created_at=f"2026-11-28T{17 + n}:00:05Z") for n in range(3)
    ] + [run_row("ok", -1, bf=None, created_at="2026-11-28T16:00:05Z")]


def test_a_backfill_cancelled_by_an_automatic_pause_says_so_and_quotes_the_failed_runs() -> None:
    posthog = PostHog("Cancelled", [run_row("r0", 0)])
    posthog.export = export_row(paused=True, latest_runs=_failed_streak())
    decision, _ = drive(BackfillJob("e", "b").poll(), posthog)
    assert decision.outcome is Outcome.FAILED and decision.remote_status == "Cancelled"
    assert decision.message.startswith(
        "Backfill b was cancelled: batch export e is paused; its 3 most recent run(s) failed (PostHog pauses "
        "an export after 3 consecutive failed runs and cancels its running backfills)."
    )
    assert [(r["id"], r["latest_error"]) for r in decision.failed_runs] == [
        ("f2", "S3 access denied"),
        ("f1", "S3 access denied"),
        ("f0", "S3 access denied"),
    ]
    assert len(posthog.sent) == 3  # the export is read at the end anyway: no extra request


def test_a_backfill_cancelled_while_the_export_is_paused_by_hand_says_paused() -> None:
    posthog = PostHog("Cancelled", [])
    posthog.export = export_row(paused=True, latest_runs=[run_row("ok", -1, bf=None)])
    decision, _ = drive(BackfillJob("e", "b").poll(), posthog)
    assert decision.message == (
        "Backfill b was cancelled: batch export e is paused (its most recent runs did not fail: it was "
        "paused by hand or through the API)."
    )
    posthog.export = export_row(paused=False)
    assert (
        drive(BackfillJob("e", "b").poll(), posthog)[0].message == "Backfill b ended with status 'Cancelled'."
    )


def _interval(runs: list[dict[str, Any]], export: dict[str, Any]) -> tuple[Any, list[RequestSpec]]:
    sent: list[RequestSpec] = []

    def answer(spec: RequestSpec) -> Any:
        sent.append(spec)
        return export if spec.path == "batch_exports/e/" else page(*runs)

    decision, _ = drive(IntervalJob("e", T0, T0 + dt.timedelta(hours=2)).poll(), answer)
    return decision, sent


def test_an_interval_wait_on_a_paused_export_fails_at_its_next_poll() -> None:
    paused = export_row(paused=True, latest_runs=_failed_streak())
    decision, sent = _interval([run_row("f0", 0, "Completed", bf=None)], paused)
    assert decision.outcome is Outcome.FAILED
    assert decision.message.startswith(
        f"No run will come for [{hour(0)}, {hour(2)}) (covered up to {hour(1)}): batch export e is paused; "
        "its 3 most recent run(s) failed"
    )
    assert [r["id"] for r in decision.failed_runs] == ["f2", "f1", "f0"]
    assert len(sent) == 2  # the runs, then the export (only because runs are missing)
    waiting, _ = _interval([run_row("f0", 0, bf=None)], export_row())
    assert waiting.outcome is Outcome.RUNNING


def test_an_interval_covered_by_runs_never_reads_the_export() -> None:
    paused = export_row(paused=True)
    decision, sent = _interval([run_row("a", 0, bf=None), run_row("b", 1, bf=None)], paused)
    assert decision.outcome is Outcome.SUCCEEDED and len(sent) == 1
    running, sent = _interval([run_row("a", 0, bf=None), run_row("b", 1, "Running", bf=None)], paused)
    assert running.outcome is Outcome.RUNNING and len(sent) == 1  # a running run still ends


# -- retrying a run still under way ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Running", "Starting"])
def test_a_retry_of_a_run_not_finished_is_refused_before_the_post(status: str) -> None:
    sent: list[RequestSpec] = []

    def answer(spec: RequestSpec) -> Any:
        sent.append(spec)
        return run_row("r0", 0, status, bf=None)

    with pytest.raises(PostHogError) as exc:
        drive(backfills.retry_run("e", "r0", lookup=LOOKUP), answer)
    assert str(exc.value) == (
        f"Run r0 of batch export e is {status}; PostHog would adopt it instead of retrying: wait for it to "
        "finish, then retry it if it failed."
    )
    assert [(s.method, s.path) for s in sent] == [("GET", "batch_exports/e/runs/r0/")]


# -- a backfill appearing after PostHog's 500 --------------------------------------------------------------


def test_a_backfill_that_appears_only_after_a_500_is_reported_as_already_running_not_as_ours() -> None:
    """A 500 is what PostHog answers when an identical backfill (another task's) already runs."""
    theirs = {
        "id": "theirs",
        "status": "Running",
        "start_at": hour(3),
        "end_at": hour(5),
        "created_at": "2026-11-28T20:00:31Z",
    }
    listings = iter([[], [], [theirs]])

    def answer(spec: RequestSpec) -> Any:
        if spec.method == "POST":
            raise http_error(500, "A server error occurred.", "POST")
        if spec.path.endswith("/backfills/"):
            return page(*next(listings, [theirs]))
        return export_row()

    op = backfills.create_backfill("e", hour(3), hour(5), lookup=LOOKUP)
    with pytest.raises(PostHogBackfillAlreadyRunningError) as exc:
        drive(op, answer, FakeClock())
    assert exc.value.backfill_id == "theirs"


# -- offsets travel with their interval --------------------------------------------------------------------


def _update(payload: dict[str, Any], export: dict[str, Any]) -> list[RequestSpec]:
    sent: list[RequestSpec] = []

    def answer(spec: RequestSpec) -> Any:
        sent.append(spec)
        return export

    drive(endpoints.update_batch_export("e", payload), answer)
    return sent


def test_an_offset_change_sends_the_interval_and_both_offsets() -> None:
    weekly = export_row(interval="week", offset_day=3, offset_hour=6)
    sent = _update({"offset_hour": 9}, weekly)
    assert [(s.method, s.path) for s in sent] == [("GET", "batch_exports/e/"), ("PATCH", "batch_exports/e/")]
    assert sent[1].json == {"offset_hour": 9, "interval": "week", "offset_day": 3}
    daily = export_row(interval="day", offset_hour=None)
    assert _update({"offset_hour": 4}, daily)[-1].json == {"offset_hour": 4, "interval": "day"}
    assert _update({"interval": "week", "offset_day": 1}, weekly)[-1].json == {
        "interval": "week",
        "offset_day": 1,
        "offset_hour": 6,
    }


def test_an_update_that_is_complete_or_changes_no_offset_reads_nothing_first() -> None:
    weekly = export_row(interval="week", offset_day=3, offset_hour=6)
    for payload in (
        {"interval": "week", "offset_day": 1, "offset_hour": 2},
        {"interval": "day", "offset_hour": 2},
        {"name": "renamed"},
    ):
        sent = _update(payload, weekly)
        assert [s.method for s in sent] == ["PATCH"] and sent[0].json == payload


# -- unpause with a backfill -------------------------------------------------------------------------------


class Unpausing:
    """An hourly export, its backfills and its unpause, on the fake clock."""

    def __init__(self, **export: Any) -> None:
        self.export = export_row(paused=True, **export)
        self.sent: list[RequestSpec] = []
        self.rows: list[dict[str, Any]] = []
        self.unpaused_at = "2026-11-28T20:00:40Z"

    def __call__(self, spec: RequestSpec) -> Any:
        self.sent.append(spec)
        if spec.method == "POST" and spec.path.endswith("/unpause/"):
            self.export = dict(self.export, paused=False, last_updated_at=self.unpaused_at)
            return {"paused": False}
        if spec.method == "POST":
            row = {"id": NEW, "status": "Starting", "created_at": "2026-11-28T20:00:35Z", **spec.json}
            self.rows.append(row)
            return {"backfill_id": NEW}
        if spec.path.endswith("/backfills/"):
            return page()
        if "/backfills/" in spec.path:
            return self.rows[-1]
        return self.export

    def calls(self) -> list[tuple[str, str]]:
        return [(s.method, s.path.removeprefix("batch_exports/e/")) for s in self.sent]


def test_unpause_with_a_backfill_never_starts_from_an_unknown_start() -> None:
    """An export created paused (or paused with a PATCH) has no last_paused_at: PostHog would export all."""
    posthog = Unpausing(last_paused_at=None)
    with pytest.raises(PostHogConfigError, match=r"has no last_paused_at .* Pass backfill_start"):
        drive(unpause.unpause_export("e", backfill=True, lookup=LOOKUP), posthog)
    assert posthog.calls() == [("GET", "")]  # nothing changed


def test_a_stale_last_paused_at_is_refused_too() -> None:
    posthog = Unpausing(
        last_paused_at="2026-11-20T00:00:00Z",
        latest_runs=[run_row("later", 2, bf=None)],  # the schedule ran after that pause
    )
    with pytest.raises(PostHogConfigError, match="older than its scheduled run later"):
        drive(unpause.unpause_export("e", backfill=True, lookup=LOOKUP), posthog)
    assert posthog.calls() == [("GET", "")]


def test_unpause_backfills_the_gap_itself_while_paused_then_unpauses_without_posthogs_flag() -> None:
    posthog = Unpausing(last_paused_at="2026-11-28T16:20:00Z")
    result, _ = drive(unpause.unpause_export("e", backfill=True, lookup=LOOKUP), posthog, FakeClock())
    backfill_posts = [s for s in posthog.sent if s.method == "POST" and s.path.endswith("/backfills/")]
    assert [s.json for s in backfill_posts] == [
        {"start_at": "2026-11-28T16:00:00+00:00", "end_at": "2026-11-28T20:00:00+00:00"}
    ]
    (unpause_post,) = [s for s in posthog.sent if s.path.endswith("/unpause/")]
    assert unpause_post.json == {}
    assert posthog.sent.index(unpause_post) > posthog.sent.index(backfill_posts[0])
    assert [b.id for b in result.backfills] == [NEW] and result.was_paused
    assert result.message == (
        f"Unpaused batch export e; backfill {NEW} of [2026-11-28T16:00:00+00:00, 2026-11-28T20:00:00+00:00)."
    )


def test_a_boundary_that_passed_before_the_unpause_is_backfilled_too() -> None:
    """PostHog's own time of the unpause is later than this machine thought (a slow create, or a clock
    behind PostHog's): the interval that ended while still paused gets a backfill of its own."""
    posthog = Unpausing(last_paused_at="2026-11-28T16:20:00Z")
    posthog.unpaused_at = "2026-11-28T21:00:02Z"
    result, _ = drive(unpause.unpause_export("e", backfill=True, lookup=LOOKUP), posthog, FakeClock())
    posts = [s.json for s in posthog.sent if s.method == "POST" and s.path.endswith("/backfills/")]
    assert posts[-1] == {"start_at": "2026-11-28T20:00:00+00:00", "end_at": "2026-11-28T21:00:00+00:00"}
    assert len(result.backfills) == 2


def test_an_explicit_start_is_used_and_a_failed_backfill_leaves_the_export_paused() -> None:
    posthog = Unpausing(last_paused_at=None)

    def refuse(spec: RequestSpec) -> Any:
        if spec.method == "POST" and spec.path.endswith("/backfills/"):
            raise http_error(429, "too many", "POST")
        return posthog(spec)

    op = unpause.unpause_export("e", backfill=True, backfill_start=hour(1), lookup=LOOKUP)
    with pytest.raises(PostHogError):
        drive(op, refuse, FakeClock())
    assert not any(s.path.endswith("/unpause/") for s in posthog.sent)


def test_an_export_not_paused_is_only_unpaused_and_the_hook_path_shares_the_rule() -> None:
    posthog = Unpausing(last_paused_at=None)
    posthog.export["paused"] = False
    result, _ = drive(unpause.unpause_export("e", backfill=True, lookup=LOOKUP), posthog)
    assert posthog.calls() == [("GET", ""), ("POST", "unpause/")]
    assert result.message == "Batch export e was not paused (no paused gap to backfill)."
    refused = Unpausing(last_paused_at=None)
    with pytest.raises(PostHogConfigError, match="no last_paused_at"):
        drive(unpause.unpause_batch_export("e", backfill=True, lookup=LOOKUP), refused)
    assert refused.calls() == [("GET", "")]
