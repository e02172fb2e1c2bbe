"""Real triggers in one event loop (as one triggerer runs them) against the emulator over HTTP: their polls
share reads, counted from the emulator's request log."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.hooks.posthog_async import aclose_shared_clients
from airflow_provider_posthog.triggers.batch_export import (
    PostHogBackfillTrigger,
    PostHogBatchExportRunTrigger,
    _PostHogPollingTrigger,
)

if TYPE_CHECKING:
    import pytest

    from airflow_provider_posthog.api.decisions import Decision
    from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 10, 1, tzinfo=UTC)
H = dt.timedelta(hours=1)
POLL = 0.5
ROUNDS = 5


class Triggerer:
    """Real triggers running in this event loop, as one triggerer runs them; ``polls[i]`` counts the polls
    trigger ``i`` started."""

    def __init__(self, triggers: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.polls = [0] * len(triggers)
        self.events: list[Any] = []
        index = {id(t): i for i, t in enumerate(triggers)}
        original = _PostHogPollingTrigger._poll
        polls = self.polls

        async def counted(self: _PostHogPollingTrigger, hook: PostHogAsyncHook) -> Decision | Exception:
            polls[index[id(self)]] += 1
            return await original(self, hook)

        monkeypatch.setattr(_PostHogPollingTrigger, "_poll", counted)
        self.tasks = [asyncio.ensure_future(self._run(t)) for t in triggers]

    async def _run(self, trigger: Any) -> None:
        async for event in trigger.run():
            self.events.append(event.payload)

    async def until_each_polled(self, times: int, timeout: float = 120.0) -> float:
        """Wait until every trigger started its ``times``-th poll (its ``times - 1`` polls before are
        done); the monotonic time then."""
        deadline = time.monotonic() + timeout
        while min(self.polls) < times:
            assert time.monotonic() < deadline, f"polls after {timeout}s: {sorted(self.polls)}"
            assert not self.events, self.events
            await asyncio.sleep(0.02)
        return time.monotonic()

    async def stop(self) -> None:
        """Cancel every trigger, as the triggerer does, and check that each one stopped."""
        for task in self.tasks:
            task.cancel()
        _, pending = await asyncio.wait(self.tasks, timeout=30)
        assert not pending, f"{len(pending)} trigger(s) went on after being cancelled"
        await aclose_shared_clients()


async def test_200_triggers_on_one_backfill_make_one_request_per_poll_round(
    posthog_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most one request per freshness window (the poll interval), however many triggers poll."""
    control = posthog_conn.control
    export_id = str(control.seed_export(name="shared backfill", interval="hour")["id"])
    backfill_id = str(control.seed_backfill(export_id, T0, T0 + 24 * H, status="Running")["id"])
    control.clear_request_log()
    triggers = [
        PostHogBackfillTrigger(
            batch_export_id=export_id,
            backfill_id=backfill_id,
            poll_interval=POLL,
            end_time=time.time() + 600,
        )
        for _ in range(200)
    ]
    triggerer = Triggerer(triggers, monkeypatch)
    started = time.monotonic()
    try:
        ended = await triggerer.until_each_polled(ROUNDS + 1)
    finally:
        await triggerer.stop()
    requests = control.count_requests("GET", f"/backfills/{backfill_id}")
    polls = sum(triggerer.polls)
    assert len(control.request_log) == requests
    assert requests <= (ended - started) / POLL + 1, (requests, polls)
    assert requests <= max(triggerer.polls), (requests, polls)
    print(f"200 backfill triggers: {polls} polls, {requests} request(s) in {ended - started:.1f} s")


async def test_100_triggers_on_100_intervals_of_one_export_share_one_list_per_round(
    posthog_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waits deferred one after the other over the first poll interval: their first polls each list their
    own (growing) range; from then on one list per freshness window serves all 100 intervals."""
    control = posthog_conn.control
    export_id = str(control.seed_export(name="shared intervals", interval="hour")["id"])
    for n in range(100):
        control.seed_run(export_id, T0 + n * H, T0 + (n + 1) * H, status="Running", duration=10**6)
    control.clear_request_log()
    triggers = [
        PostHogBatchExportRunTrigger(
            batch_export_id=export_id,
            data_interval_start=(T0 + n * H).isoformat(),
            data_interval_end=(T0 + (n + 1) * H).isoformat(),
            poll_interval=POLL,
            end_time=time.time() + 600,
            first_poll_at=time.time() + POLL * (n / 100),
        )
        for n in range(100)
    ]
    triggerer = Triggerer(triggers, monkeypatch)
    try:
        first_round_done = await triggerer.until_each_polled(2)
        first_round = len(control.request_log)
        ended = await triggerer.until_each_polled(2 + ROUNDS)
    finally:
        await triggerer.stop()
    lists = [e for e in control.request_log if e.path.endswith("/runs/")]
    reads = [e for e in control.request_log if e.path.endswith(f"/batch_exports/{export_id}/")]
    # The first polls read the export (its identity names what a success exports), shared by all 100
    # within one poll interval; nothing else but lists, and no export read after the first round.
    assert len(control.request_log) == len(lists) + len(reads)
    assert 1 <= len(reads) <= 2 and all(e in control.request_log[:first_round] for e in reads)
    later = len(lists) - first_round + len(reads)
    polls = sum(triggerer.polls)
    assert later <= (ended - first_round_done) / POLL + 2, (first_round, later, polls)
    assert later <= ROUNDS + 2, (first_round, later, polls)
    print(
        f"100 interval triggers: {polls} polls; {first_round} list(s) until each had polled once, "
        f"{later} in the {ended - first_round_done:.1f} s after"
    )
