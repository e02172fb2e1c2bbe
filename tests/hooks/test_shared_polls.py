"""The async hook's shared polls (``hooks/shared_polls.py``) over a scripted transport: who sends, who joins,
what each wait gets when the shared read fails or its own deadline comes first."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_posthog.api.connection import ConnectionSettings
from airflow_provider_posthog.api.http import ApiResponse, RequestSpec
from airflow_provider_posthog.api.jobs import BackfillJob, IntervalJob, RunJob, cancel
from airflow_provider_posthog.api.retry import NO_DEADLINE, Deadline, RetryPolicy
from airflow_provider_posthog.api.sharing import SharedReads
from airflow_provider_posthog.exceptions import PostHogDeadlineError, PostHogServerError
from airflow_provider_posthog.hooks import shared_polls
from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook

if TYPE_CHECKING:
    from collections.abc import Callable

KEY = "phx_shared_polls_key_A_0123456789"
OTHER_KEY = "phx_shared_polls_key_B_9876543210"
SETTINGS = ConnectionSettings(base_url="https://ph.test", api_key=KEY, project_id=1)
ONE_ATTEMPT = RetryPolicy(max_attempts=1, backoff_initial=0, backoff_max=0)

BACKFILL = {
    "id": "b",
    "status": "Running",
    "batch_export": "e",
    "start_at": "2026-11-28T16:00:00Z",
    "end_at": "2026-11-28T18:00:00Z",
    "created_at": "2026-11-28T20:00:00Z",
}


def inside(spec: RequestSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PostHog's filter of the runs list by data interval."""
    import pendulum

    params = dict(spec.params)
    low, high = pendulum.parse(params["start"]), pendulum.parse(params["end"])
    return [
        r
        for r in rows
        if pendulum.parse(r["data_interval_start"]) >= low and pendulum.parse(r["data_interval_end"]) <= high
    ]


class ScriptedHook(PostHogAsyncHook):
    """A real async hook whose transport is ``answer(spec)``, each answer after ``latency`` seconds;
    ``sent`` logs (the connection's settings, request) of every request."""

    def __init__(
        self,
        answer: Callable[[RequestSpec], Any],
        *,
        settings: ConnectionSettings = SETTINGS,
        latency: float = 0.05,
        sent: list[tuple[ConnectionSettings, RequestSpec]] | None = None,
    ) -> None:
        super().__init__(posthog_conn_id="posthog_scripted", retry_policy=ONE_ATTEMPT)
        self.answer = answer
        self.settings = settings
        self.latency = latency
        self.sent = [] if sent is None else sent

    async def _asettings(self, project_id: int | str | None = None) -> ConnectionSettings:
        return self.settings

    async def _send(
        self,
        spec: RequestSpec,
        settings: ConnectionSettings,
        policy: RetryPolicy | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> ApiResponse:
        self.sent.append((settings, spec))
        await asyncio.sleep(self.latency)
        answer = self.answer(spec)
        if isinstance(answer, BaseException):
            raise answer
        return ApiResponse(200, answer)


class SyncScriptedHook(PostHogHook):
    """The sync twin, for comparing results."""

    def __init__(self, answer: Callable[[RequestSpec], Any]) -> None:
        super().__init__(posthog_conn_id="posthog_scripted", retry_policy=ONE_ATTEMPT)
        self.answer = answer
        self.sent: list[RequestSpec] = []

    def _settings(self, project_id: int | str | None = None) -> ConnectionSettings:
        return SETTINGS

    def _send(
        self,
        spec: RequestSpec,
        settings: ConnectionSettings,
        policy: RetryPolicy | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> ApiResponse:
        self.sent.append(spec)
        return ApiResponse(200, self.answer(spec))


def backfill_posthog(spec: RequestSpec) -> Any:
    assert spec.path == "batch_exports/e/backfills/b/", spec
    return BACKFILL


def server_error() -> PostHogServerError:
    return PostHogServerError(
        "PostHog API GET /api/projects/1/batch_exports/e/backfills/b/: HTTP 503 (Service Unavailable)",
        http_status=503,
        method="GET",
        path="/api/projects/1/batch_exports/e/backfills/b/",
    )


async def test_200_waits_on_one_backfill_in_one_loop_make_one_request() -> None:
    hook = ScriptedHook(backfill_posthog)
    job = BackfillJob("e", "b")
    decisions = await asyncio.gather(*(hook.arun(job.poll(), fresh_within=60) for _ in range(200)))
    assert len(hook.sent) == 1
    assert {d.remote_status for d in decisions} == {"Running"} and len(decisions) == 200
    # Within the window a later poll reuses the answer; with no window, only reads in flight are joined.
    await hook.arun(job.poll(), fresh_within=60)
    assert len(hook.sent) == 1
    await hook.arun(job.poll(), fresh_within=0)
    assert len(hook.sent) == 2


async def test_separate_hooks_share_by_connection_never_across_keys_projects_or_hosts() -> None:
    """Each trigger has a hook of its own: sharing is by connection. Connections that differ only in the
    API key, only in the project or only in the host each send their own request."""
    sent: list[tuple[ConnectionSettings, RequestSpec]] = []
    connections = [
        SETTINGS,
        dataclasses.replace(SETTINGS, api_key=OTHER_KEY),
        dataclasses.replace(SETTINGS, project_id=2),
        dataclasses.replace(SETTINGS, base_url="https://eu.ph.test"),
    ]
    hooks = [ScriptedHook(backfill_posthog, settings=c, sent=sent) for c in connections for _ in range(20)]
    job = BackfillJob("e", "b")
    await asyncio.gather(*(h.arun(job.poll(), fresh_within=60) for h in hooks))
    assert sorted((c.base_url, c.project_id, c.api_key) for c, _ in sent) == sorted(
        (c.base_url, c.project_id, c.api_key) for c in connections
    )


async def test_a_failed_read_fails_only_the_waits_on_it_and_is_never_cached() -> None:
    failing = {"on": True}

    def flaky(spec: RequestSpec) -> Any:
        return server_error() if failing["on"] else BACKFILL

    sent: list[tuple[ConnectionSettings, RequestSpec]] = []
    bad = ScriptedHook(flaky, sent=sent)
    good = ScriptedHook(
        backfill_posthog, settings=dataclasses.replace(SETTINGS, api_key=OTHER_KEY), sent=sent
    )
    job = BackfillJob("e", "b")
    results = await asyncio.gather(
        *(h.arun(job.poll(), fresh_within=60) for h in [bad] * 30 + [good] * 30), return_exceptions=True
    )
    assert all(isinstance(r, PostHogServerError) for r in results[:30])
    assert not any(isinstance(r, BaseException) for r in results[30:])
    assert len(sent) == 2  # one read per key
    # Each wait got the error thrown into its own operation: a poll that handles it would have.
    failing["on"] = False
    decision = await bad.arun(job.poll(), fresh_within=60)
    assert decision.remote_status == "Running" and len(sent) == 3  # read afresh: failures are not kept


async def test_a_waits_own_deadline_cuts_only_that_wait_and_never_the_read() -> None:
    hook = ScriptedHook(backfill_posthog, latency=0.5)
    job = BackfillJob("e", "b")
    started = time.monotonic()
    hurried = asyncio.ensure_future(hook.arun(job.poll(), deadline=time.time() + 0.05, fresh_within=60))
    patient = asyncio.ensure_future(hook.arun(job.poll(), fresh_within=60))
    with pytest.raises(PostHogDeadlineError, match="backfills/b/"):
        await hurried
    assert time.monotonic() - started < 0.4  # cut at its own deadline, not at the read's answer
    assert (await patient).remote_status == "Running"
    assert len(hook.sent) == 1


async def test_a_cancelled_wait_does_not_cancel_the_read_for_the_others() -> None:
    hook = ScriptedHook(backfill_posthog, latency=0.2)
    job = BackfillJob("e", "b")
    first = asyncio.ensure_future(hook.arun(job.poll(), fresh_within=60))  # starts the read
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(hook.arun(job.poll(), fresh_within=60))
    await asyncio.sleep(0.05)
    first.cancel()
    assert (await second).remote_status == "Running"
    assert first.cancelled() and len(hook.sent) == 1


class FakeClock:
    """Monotonic seconds for a table of shared reads, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hour_of(n: int) -> tuple[Any, Any]:
    """The ``n``-th hour from 2026-11-24 00:00 UTC."""
    import pendulum

    start = pendulum.datetime(2026, 11, 24, tz="UTC").add(hours=n)
    return start, start.add(hours=1)


def run_rows(hours: range, status: str = "Running") -> list[dict[str, Any]]:
    """One run per hour, newest first (PostHog's ``-data_interval_start``)."""
    return [
        {
            "id": f"run-{n}",
            "status": status,
            "batch_export": "e",
            "data_interval_start": hour_of(n)[0].isoformat(),
            "data_interval_end": hour_of(n)[1].isoformat(),
        }
        for n in reversed(hours)
    ]


async def test_waits_on_100_intervals_of_one_export_share_one_list_per_round() -> None:
    """The first round reads as the waits arrive; each later round reads one list for all 100 intervals,
    and every wait decides as if it had listed its own interval."""
    rows = run_rows(range(120))

    def posthog(spec: RequestSpec) -> Any:
        if spec.path == "batch_exports/e/":
            return {"id": "e", "interval": "hour", "paused": False}
        return {"next": None, "results": inside(spec, rows)}

    clock = FakeClock()
    shared_polls._TABLES[asyncio.get_running_loop()] = SharedReads(clock)
    hook = ScriptedHook(posthog, latency=0.001)
    jobs = [IntervalJob("e", *hour_of(n)) for n in range(10, 110)]
    unshared = [SyncScriptedHook(posthog).run(job.poll()) for job in jobs]
    per_round = []
    for _ in range(3):  # three rounds of 60 s polls, spread over the round as triggers' polls are
        hook.sent.clear()
        decisions = []
        for job in jobs:
            decisions.append(await hook.arun(job.poll(), fresh_within=60))
            clock.now += 0.6
        per_round.append([dict(spec.params) for _, spec in hook.sent])
        assert decisions == unshared
    assert len(per_round[0]) == 100
    first, last = hour_of(10)[0].isoformat(), hour_of(109)[1].isoformat()
    wanted = {"ordering": "-data_interval_start", "start": first, "end": last}
    # Round one's last read (at 59.4 s) already listed all 100 intervals and serves round two; round
    # three (from 120 s) reads them in one list again.
    assert per_round[1:] == [[], [wanted]]


async def test_waits_that_announce_their_interval_share_one_list_from_their_first_poll() -> None:
    """Each trigger, once deferred, announces the range its first poll will list (sending nothing), then
    polls one interval later: the first of them to poll lists every announced interval at once, instead of
    each new wait reading its own interval in round one."""
    rows = run_rows(range(120))

    def posthog(spec: RequestSpec) -> Any:
        return {"next": None, "results": inside(spec, rows)}

    clock = FakeClock()
    shared_polls._TABLES[asyncio.get_running_loop()] = SharedReads(clock)
    hook = ScriptedHook(posthog, latency=0.001)
    jobs = [IntervalJob("e", *hour_of(n)) for n in range(10, 110)]
    for job in jobs:  # deferred one after the other over the first 60 s
        await hook._announce(job.poll(), fresh_within=60)
        clock.now += 0.6
    assert hook.sent == []
    decisions = []
    for job in jobs:  # each first poll one interval after its deferral
        decisions.append(await hook.arun(job.poll(), fresh_within=60))
        clock.now += 0.6
    assert decisions == [SyncScriptedHook(posthog).run(job.poll()) for job in jobs]
    first, last = hour_of(10)[0].isoformat(), hour_of(109)[1].isoformat()
    wanted = {"ordering": "-data_interval_start", "start": first, "end": last}
    assert [dict(spec.params) for _, spec in hook.sent] == [wanted]


async def test_announcing_a_wait_without_a_range_notes_nothing() -> None:
    """A backfill's or a single run's poll reads one object: nothing to widen, nothing noted or sent."""
    table = shared_polls._TABLES[asyncio.get_running_loop()] = SharedReads(FakeClock())
    hook = ScriptedHook(backfill_posthog)
    await hook._announce(BackfillJob("e", "b").poll(), fresh_within=60)
    await hook._announce(RunJob("e", "r").poll(), fresh_within=60)
    assert table.interest_count == 0 and hook.sent == []


async def test_a_cancellation_arriving_with_the_answer_is_not_lost() -> None:
    """The caller is cancelled in the same loop step as its request is answered: it must still see the
    cancellation at its next await (Python 3.11's ``asyncio.wait_for`` returned the answer and dropped it)."""
    loop = asyncio.get_running_loop()
    caller: list[asyncio.Task[Any]] = []

    class AnsweredAsCancelled(PostHogAsyncHook):
        async def _exchange(self, spec: RequestSpec, settings: ConnectionSettings) -> ApiResponse:
            loop.call_soon(caller[0].cancel)  # runs before the caller resumes with the answer
            return ApiResponse(200, BACKFILL)

    hook = AnsweredAsCancelled(posthog_conn_id="posthog_scripted", retry_policy=ONE_ATTEMPT)
    went_on = []

    async def poll_then_sleep() -> None:
        await hook._send_once(RequestSpec("GET", "batch_exports/e/backfills/b/"), SETTINGS, NO_DEADLINE)
        await asyncio.sleep(0.2)
        went_on.append(True)

    caller.append(asyncio.ensure_future(poll_then_sleep()))
    with pytest.raises(asyncio.CancelledError):
        await caller[0]
    assert went_on == []


async def test_sync_and_async_drivers_decide_alike() -> None:
    done = {**BACKFILL, "status": "Completed", "end_at": "2026-11-28T17:00:00Z"}
    runs = [
        {
            "id": "r16",
            "status": "Completed",
            "backfill": "b",
            "data_interval_start": "2026-11-28T16:00:00+00:00",
            "data_interval_end": "2026-11-28T17:00:00+00:00",
            "records_completed": 5,
        }
    ]

    def posthog(spec: RequestSpec) -> Any:
        if spec.path == "batch_exports/e/backfills/b/":
            return done
        if spec.path == "batch_exports/e/":
            return {"id": "e", "interval": "hour"}
        if spec.path == "batch_exports/e/runs/r16/":
            return runs[0]
        return {"next": None, "results": inside(spec, runs)}

    sync = SyncScriptedHook(posthog)
    hook = ScriptedHook(posthog)
    for job in (BackfillJob("e", "b"), RunJob("e", "r16"), IntervalJob("e", *hour_of(4 * 24 + 16))):
        expected = sync.run(job.poll())
        assert expected.done
        assert await hook.arun(job.poll(), fresh_within=60) == expected
    assert [s.path for s in sync.sent] == [s.path for _, s in hook.sent]


async def test_a_cancels_read_back_is_never_served_from_a_shared_answer() -> None:
    statuses = iter(["Running", "Cancelled"])

    def posthog(spec: RequestSpec) -> Any:
        if spec.method == "POST":
            return {}
        return {**BACKFILL, "status": next(statuses)}

    hook = ScriptedHook(posthog)
    job = BackfillJob("e", "b")
    assert (await hook.arun(job.poll(), fresh_within=60)).remote_status == "Running"
    result = await hook.arun(cancel(job), fresh_within=60)
    assert result.status == "Cancelled"  # read after the cancel, not the shared "Running"


async def test_the_api_key_never_shows_in_the_table_or_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hook = ScriptedHook(lambda spec: server_error())
    with pytest.raises(PostHogServerError):
        await hook.arun(BackfillJob("e", "b").poll(), fresh_within=60)
    hook.answer = backfill_posthog
    await hook.arun(BackfillJob("e", "b").poll(), fresh_within=60)
    table = shared_polls.loop_table()
    scope = shared_polls.scope_of(SETTINGS)
    shown = " ".join([repr(table), repr(scope), str(scope), caplog.text])
    shown += " ".join(repr(e) for entries in table._entries.values() for e in entries)
    assert KEY not in shown and KEY[4:] not in shown
    assert len(table) == 1
