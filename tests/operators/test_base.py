"""``operators/_base.py``: the waiting arguments, and the worker's wait on a backfill (sync loop, deferral,
cancel on timeout or kill) against a scripted PostHog (``fake_posthog``) on an injected clock: nothing sleeps.

The loop keeps waiting through trouble PostHog recovers from on its own until the task's deadline (or
``unreachable_timeout``); anything else fails the task at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any
from unittest import mock

import pendulum
import pytest
from fake_posthog import (
    BACKFILL,
    EXPORT,
    FakeHook,
    FakePostHog,
    backfill_row,
    dropped,
    http_error,
    run_row,
    with_async_hook,
    with_hook,
)

from airflow_provider_posthog.api.models import Backfill
from airflow_provider_posthog.compat import TaskDeferred
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogAuthError,
    PostHogConfigError,
    PostHogDeadlineError,
    PostHogNotFoundError,
    PostHogUnreachableError,
    PostHogValidationError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.operators import _base
from airflow_provider_posthog.operators._base import PostHogBackfillWaitOperator
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator
from airflow_provider_posthog.tasks.args import WaitArgs
from airflow_provider_posthog.tasks.waiting import LAST_POLL_SECONDS
from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

BACKFILL_PATH = f"batch_exports/{EXPORT}/backfills/{BACKFILL}/"
CANCEL_PATH = f"{BACKFILL_PATH}cancel/"
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class Clock:
    """``time`` of ``operators._base``: ``sleep`` advances ``time``; ``on_sleep`` can stand in for a kill."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.slept: list[float] = []
        self.on_sleep: Any = None

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One injected clock for the operator's loop and the task mixin's polls and cancels."""
    from airflow_provider_posthog.tasks import mixin

    clock = Clock()
    monkeypatch.setattr(_base, "time", clock)
    monkeypatch.setattr(mixin, "time", clock, raising=False)
    return clock


class Waiter(PostHogBackfillWaitOperator):
    """The smallest task of this base class: the backfill exists already; ``execute`` waits for it."""

    def execute(self, context: Any) -> str:
        self.validate_wait_args()
        backfill = Backfill.from_api(backfill_row("Running"))
        return self.wait_for_backfill(context, EXPORT, backfill, _base.time.time())


def _context() -> dict[str, Any]:
    return {"ti": mock.MagicMock()}


def _waiter(fake: FakePostHog, **kwargs: Any) -> tuple[Waiter, FakeHook, mock.MagicMock]:
    """A waiter on ``fake`` (every poll 60 s apart, an hour to wait), its hook and its logger."""
    params: dict[str, Any] = {"task_id": "wait", "poll_interval": 60, "timeout": 3600, "deferrable": False}
    params.update(kwargs)
    op = Waiter(**params)
    hook = with_hook(op, fake)
    log = mock.MagicMock()
    op._cached_logger = log
    return op, hook, log


def _fake(*statuses: str | BaseException) -> FakePostHog:
    """The backfill answers ``statuses`` to successive polls; it has one completed run."""
    return FakePostHog(run_list=[run_row("Completed")]).backfill(*statuses)


def _polls(fake: FakePostHog) -> int:
    return fake.paths("GET").count(BACKFILL_PATH)


#: Airflow's own warning when ``execute`` is called by a test rather than its task runner.
OUTSIDE_RUNNER = "cannot be called outside of the Task Runner"


def _lines(log: mock.MagicMock, level: str) -> list[str]:
    lines = [c.args[0] % c.args[1:] for c in getattr(log, level).call_args_list]
    return [line for line in lines if OUTSIDE_RUNNER not in line]


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%H:%M:%S UTC")


def _deadline_error() -> PostHogDeadlineError:
    return PostHogDeadlineError(
        f"PostHog API GET /api/projects/1/{BACKFILL_PATH}: no complete answer within 10.0s",
        method="GET",
        path=f"/api/projects/1/{BACKFILL_PATH}",
        code="deadline",
    )


# ------------------------------------------------------------------------------------ waiting arguments


def test_wait_args_parse_rendered_values() -> None:
    args = WaitArgs.parse(
        wait_for_completion="false",
        poll_interval="30",
        timeout="",
        cancel_on_kill="True",
        unreachable_timeout="600",
    )
    assert args == WaitArgs(
        wait_for_completion=False,
        poll_interval=30.0,
        timeout=None,
        cancel_on_kill=True,
        unreachable_timeout=600,
    )
    assert (
        WaitArgs.parse(
            wait_for_completion=True,
            poll_interval=dt.timedelta(minutes=1),
            timeout=dt.timedelta(hours=1),
            cancel_on_kill=False,
            unreachable_timeout=dt.timedelta(minutes=15),
        ).unreachable_timeout
        == 900.0
    )


def test_unreachable_timeout_defaults_to_none_and_is_templated() -> None:
    op = Waiter(task_id="wait")
    assert op.unreachable_timeout is None
    assert op.validate_wait_args().unreachable_timeout is None  # wait until timeout / execution_timeout
    assert op.validate_wait_args() is op.validate_wait_args()  # checked once
    assert "unreachable_timeout" in PostHogBackfillWaitOperator.template_fields
    assert "unreachable_timeout" in PostHogCreateBackfillOperator.template_fields


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unreachable_timeout": "soon"}, r"unreachable_timeout='soon' is not a number of seconds"),
        ({"unreachable_timeout": -5}, r"unreachable_timeout must be a non-negative number of seconds"),
        ({"timeout": "1h"}, r"timeout='1h' is not a number of seconds"),
        ({"poll_interval": None}, r"poll_interval is required"),
        ({"cancel_on_kill": "perhaps"}, r"cancel_on_kill='perhaps' is not a boolean"),
        ({"wait_for_completion": "perhaps"}, r"wait_for_completion='perhaps' is not a boolean"),
    ],
)
@pytest.mark.parametrize("operator", [PostHogCreateBackfillOperator, PostHogRetryRunOperator])
def test_a_bad_waiting_argument_is_named_before_any_request(
    operator: type[Any], kwargs: dict[str, Any], match: str
) -> None:
    ids: dict[str, Any] = {"batch_export_id": EXPORT}
    if operator is PostHogCreateBackfillOperator:
        ids.update(start_at="2024-01-01T00:00:00+00:00", end_at="2024-01-01T02:00:00+00:00")
    else:
        ids.update(run_id="run-1")
    op = operator(task_id="t", **ids, **kwargs)
    fake, calls = _fake("Running"), mock.Mock()
    with_hook(op, fake, find_backfill=calls.find_backfill, create_backfill=calls.create_backfill)
    with pytest.raises(PostHogConfigError, match=match):
        op.execute(_context())
    assert fake.sent == [] and calls.mock_calls == []


# ------------------------------------------------------------------------------------------- the sync loop


@pytest.mark.parametrize(
    ("error", "trouble"),
    [
        (http_error(503, "Service Unavailable"), "HTTP 503"),
        (dropped(), "no answer: RemoteDisconnected"),
        (http_error(429, "Request was throttled."), "HTTP 429"),
        (_deadline_error(), "no answer: deadline"),
    ],
    ids=["503", "dropped", "429", "deadline"],
)
def test_the_sync_loop_rides_out_transient_trouble(clock: Clock, error: Exception, trouble: str) -> None:
    fake = _fake("Running", error, error, error, "Completed")
    op, _, log = _waiter(fake)
    assert op.execute(_context()) == BACKFILL
    assert _polls(fake) == 5
    assert clock.now == START + 4 * 60  # one poll interval between polls, failed or not
    assert fake.paths("POST") == []
    warnings = _lines(log, "warning")
    assert len(warnings) == 1 and f"({trouble})" in warnings[0]
    assert "PostHog answered again after 3 min." in _lines(log, "info")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (http_error(404, "Not found."), PostHogNotFoundError),
        (http_error(400, "Invalid input."), PostHogValidationError),
        (http_error(401, "Invalid personal API key."), PostHogAuthError),
    ],
    ids=["404", "400", "401"],
)
def test_a_final_error_fails_at_once(clock: Clock, error: PostHogAPIError, kind: type[Exception]) -> None:
    fake = _fake("Running", error, "Completed")
    op, _, _ = _waiter(fake)
    with pytest.raises(kind) as raised:
        op.execute(_context())
    assert raised.value is error
    assert _polls(fake) == 2  # no poll after it
    assert clock.now == START + 60


def test_a_final_error_during_an_outage_fails_at_once(clock: Clock) -> None:
    gone = http_error(404, "Not found.")
    fake = _fake(http_error(503), dropped(), gone, "Completed")
    op, _, _ = _waiter(fake)
    with pytest.raises(PostHogNotFoundError) as raised:
        op.execute(_context())
    assert raised.value is gone and _polls(fake) == 3


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_the_deadline_ends_an_outage_and_cancels_the_backfill(clock: Clock, cancel_on_kill: bool) -> None:
    """Polls at 0, 60, ..., 300 s all fail; at the deadline (timeout=300) the task fails with a timeout and,
    with ``cancel_on_kill``, cancels the backfill (PostHog answers again by then)."""
    fake = _fake("Running").fail_next(6)
    op, hook, log = _waiter(fake, timeout=300, cancel_on_kill=cancel_on_kill)
    with pytest.raises(PostHogWaitTimeoutError, match="deadline passed while PostHog was unreachable"):
        op.execute(_context())
    assert clock.now == START + 300
    cancel = [CANCEL_PATH, BACKFILL_PATH] if cancel_on_kill else []  # the cancel, then its status read back
    assert fake.paths() == [BACKFILL_PATH] * 6 + cancel
    if cancel_on_kill:
        assert f"Cancelled backfill {BACKFILL} of batch export {EXPORT} (now Cancelled)." in _lines(
            log, "warning"
        )
    # Each poll is bounded by the wait's end (the last one, due at the end, gets LAST_POLL_SECONDS more);
    # the cancel is not (that end has passed; it must still go).
    assert hook.deadlines[:6] == [START + 300] * 5 + [START + 300 + LAST_POLL_SECONDS]
    assert len(hook.deadlines) == (7 if cancel_on_kill else 6)
    if cancel_on_kill:
        cancel_deadline = hook.deadlines[6]
        assert cancel_deadline is None or cancel_deadline > clock.now


def test_the_deadline_is_honoured_within_one_poll_interval(clock: Clock) -> None:
    fake = _fake("Running")
    op, _, _ = _waiter(fake, timeout=150)
    with pytest.raises(PostHogWaitTimeoutError, match="still reported it as running"):
        op.execute(_context())
    assert clock.slept == [60.0, 60.0, 30.0]  # the last sleep ends at the deadline, not after it
    assert fake.paths() == [BACKFILL_PATH] * 4 + [CANCEL_PATH, BACKFILL_PATH]


def test_each_poll_is_bounded_by_the_earlier_of_timeout_and_execution_timeout(clock: Clock) -> None:
    fake = _fake("Running", "Running", "Completed")
    op, hook, _ = _waiter(fake, timeout=600, execution_timeout=dt.timedelta(seconds=300))
    assert op.execute(_context()) == BACKFILL
    assert hook.deadlines == [START + 300] * 3

    unbounded = _fake("Running", "Completed")
    op, hook, _ = _waiter(unbounded, timeout=None)
    assert op.execute(_context()) == BACKFILL
    assert hook.deadlines == [None, None]


def test_unreachable_timeout_ends_the_wait_after_that_long_without_an_answer(clock: Clock) -> None:
    """An answer in between starts the count again: the wait fails 120 s into the second outage."""
    e = http_error(503)
    fake = _fake("Running", e, e, "Running", e, e, e, "Completed")
    op, hook, _ = _waiter(fake, timeout=None, unreachable_timeout=120)
    with pytest.raises(PostHogUnreachableError) as raised:
        op.execute(_context())
    assert "unreachable for 2 min" in str(raised.value) and "unreachable_timeout=120s" in str(raised.value)
    assert raised.value.__cause__ is e
    assert _polls(fake) == 7 and clock.now == START + 6 * 60
    assert hook.deadlines == [None] * 7
    # The export may still be running: a retry of the task re-attaches to it, so it is not cancelled.
    assert fake.paths("POST") == []


def test_the_log_says_once_when_posthog_became_unreachable_and_when_it_answered(clock: Clock) -> None:
    e = http_error(503)
    fake = _fake("Running", e, e, e, e, "Completed")
    op, _, log = _waiter(fake)
    assert op.execute(_context()) == BACKFILL
    until = _utc(START + 3600)
    assert _lines(log, "warning") == [
        f"PostHog is unreachable since {_utc(START + 60)} (HTTP 503); still waiting until {until}."
    ]
    answered = [line for line in _lines(log, "info") if line.startswith("PostHog answered again")]
    assert answered == ["PostHog answered again after 4 min."]


def test_a_long_outage_repeats_the_line_only_as_a_heartbeat(clock: Clock) -> None:
    fake = _fake(*[http_error(503)] * 11, "Completed")  # polls at 0 .. 600 s fail
    op, _, log = _waiter(fake, unreachable_timeout=900)
    assert op.execute(_context()) == BACKFILL
    first = (
        f"PostHog is unreachable since {_utc(START)} (HTTP 503); still waiting until {_utc(START + 3600)} or "
        "for at most 15 min without an answer."
    )
    assert _lines(log, "warning") == [
        first,
        f"{first} (unchanged for 5 min)",
        f"{first} (unchanged for 10 min)",
    ]


# ---------------------------------------------------------------------------------------------- deferral


def test_a_wait_defers_after_a_first_poll_that_failed_and_the_trigger_rides_it_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first poll fails (503): the task still defers (the trigger keeps waiting through it), and the
    trigger ends with the backfill's success once PostHog answers."""
    clock = Clock(now=pendulum.now("UTC").timestamp())  # the trigger compares the deadline with real time
    monkeypatch.setattr(_base, "time", clock)
    fake = _fake(http_error(503), http_error(503), "Completed")
    op, _, log = _waiter(fake, deferrable=True, poll_interval=0, unreachable_timeout=600)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(_context())
    assert _polls(fake) == 1
    assert any(line.startswith("PostHog is unreachable since") for line in _lines(log, "warning"))
    trigger = deferred.value.trigger
    assert isinstance(trigger, PostHogBackfillTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["end_time"] == clock.now + 3600 and kwargs["unreachable_timeout"] == 600.0

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger sent no event")

    with_async_hook(trigger, fake)
    event = asyncio.run(first_event())
    assert event["status"] == "success" and _polls(fake) == 3
    assert op.execute_complete(_context(), event) == BACKFILL


def test_a_completed_backfill_does_not_defer(clock: Clock) -> None:
    op, _, _ = _waiter(_fake("Completed"), deferrable=True)
    assert op.execute(_context()) == BACKFILL


# ---------------------------------------------------------------------------------------------- on_kill


def test_on_kill_cancels_the_backfill_it_waits_for(clock: Clock) -> None:
    fake = _fake("Running")
    op, _, log = _waiter(fake)
    op.on_kill()  # nothing known yet: nothing to cancel
    assert fake.sent == []

    def killed() -> None:
        op.on_kill()
        raise KeyboardInterrupt  # what a kill looks like from inside the loop

    clock.on_sleep = killed
    with pytest.raises(KeyboardInterrupt):
        op.execute(_context())
    assert fake.paths() == [BACKFILL_PATH, CANCEL_PATH, BACKFILL_PATH]
    assert f"Cancelled backfill {BACKFILL} of batch export {EXPORT} (now Cancelled)." in _lines(
        log, "warning"
    )


def test_on_kill_leaves_the_backfill_alone_without_cancel_on_kill(clock: Clock) -> None:
    fake = _fake("Running")
    op, _, _ = _waiter(fake, cancel_on_kill=False)
    clock.on_sleep = op.on_kill
    with pytest.raises(PostHogWaitTimeoutError):
        op.execute(_context())
    assert fake.paths("POST") == []


def test_on_kill_never_raises_when_the_cancel_fails(clock: Clock) -> None:
    fake = _fake("Running")
    op, _, log = _waiter(fake)

    def killed() -> None:
        fake.fail_next(1)
        op.on_kill()
        raise KeyboardInterrupt

    clock.on_sleep = killed
    with pytest.raises(KeyboardInterrupt):
        op.execute(_context())
    assert fake.paths("POST") == [CANCEL_PATH]
    assert any(line.startswith(f"Could not cancel backfill {BACKFILL}") for line in _lines(log, "warning"))


# ------------------------------------------------------------------------------ the real hook's deadline


@pytest.fixture
def posthog_emulator_settings() -> Any:
    from airflow_provider_posthog.emulator import EmulatorSettings

    return EmulatorSettings(run_duration=3600.0)  # the backfill stays Running past the task's timeout


def _emulated_backfill_op(emu: Any, **kwargs: Any) -> PostHogCreateBackfillOperator:
    """A sync backfill task over the last two hours of an hourly export seeded in the emulator; its log is
    a mock (``_lines``)."""
    export_id = str(
        emu.control.seed_export(
            name="deadline",
            destination={"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}},
            interval="hour",
        )["id"]
    )
    end = emu.control.now().astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    op = PostHogCreateBackfillOperator(
        task_id="backfill",
        batch_export_id=export_id,
        start_at=(end - dt.timedelta(hours=2)).isoformat(),
        end_at=end.isoformat(),
        deferrable=False,
        **kwargs,
    )
    op._cached_logger = mock.MagicMock()
    return op


def test_a_plain_timeout_against_a_healthy_posthog_is_not_an_outage(posthog_conn: Any) -> None:
    """Real hook, real HTTP (the emulator): the wait's last poll, at its deadline, is still sent, and a
    timeout while PostHog answers says the backfill was still running, not that PostHog was unreachable."""
    op = _emulated_backfill_op(posthog_conn, poll_interval=0.3, timeout=1.0)
    log = op._cached_logger
    with pytest.raises(PostHogWaitTimeoutError) as raised:
        op.execute(_context())
    assert not any(line.startswith("PostHog is unreachable") for line in _lines(log, "warning"))
    assert "still reported it as running" in str(raised.value)


def test_a_trickling_server_cannot_hold_a_sync_wait_past_its_deadline(posthog_conn: Any) -> None:
    """PostHog answers every poll of the backfill one byte every 2 s: the sync wait with a 3 s timeout and
    the connection's default 10 + 30 s request timeouts ends within one poll interval after its deadline."""
    emu = posthog_conn
    op = _emulated_backfill_op(
        emu,
        poll_interval=1.0,
        timeout=3.0,
        emit_asset_events=False,
        cancel_on_kill=False,  # the cancel after a timeout has its own bound (CANCEL_SECONDS)
    )
    create = op.hook.create_backfill
    started: list[float] = []

    def create_then_trickle(*args: Any, **kwargs: Any) -> Any:
        backfill = create(*args, **kwargs)
        emu.control.add_fault(r"/backfills/[^/]+/$", method="GET", count=None, trickle=2.0)
        started.append(time.time())
        return backfill

    op.hook.create_backfill = create_then_trickle  # type: ignore[method-assign]
    with pytest.raises(PostHogWaitTimeoutError):
        op.execute(_context())
    assert time.time() - started[0] < 3.0 + 1.0 + 0.5  # the deadline, plus at most one poll interval
