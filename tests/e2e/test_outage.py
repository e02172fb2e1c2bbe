"""PostHog unreachable in the middle of a wait: real Airflow (``dag.test()``), real HTTP to the emulator on
127.0.0.1, ``retries=0`` and a timeout longer than the outage.

Once the task has polled what it waits on, every API call answers 503, then has its connection dropped,
then PostHog answers again; meanwhile the emulator completes the work. Every waiting path (the operator's
worker loop, a sensor poking or rescheduled, the triggerer for both) must ride it out, say when PostHog
became unreachable and when it answered again, succeed once it answers, and leave exactly one backfill.
A final error (the backfill is gone: 404) must fail the wait at once instead.

Time is compressed on both sides: the emulator's runs last an emulated minute, skipped through during the
outage, and the hook waits 0.1 s between attempts instead of seconds, so that one poll's five attempts end
inside a few seconds of outage as they end inside a real outage of minutes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow_versions import TASK_STATE_STORE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

UTC = dt.timezone.utc
#: Seconds of HTTP 503, then seconds of dropped connections; each phase lasts until the wait met it at least
#: once (a rescheduled sensor's pokes can be further apart on a loaded machine), at most PHASE_AT_MOST.
ERRORS_FOR = 4.0
DROPS_FOR = 4.0
PHASE_AT_MOST = 30.0
TIMEOUT = 60.0
POLL = 1.0
#: "At once" for a wait polling every POLL: a few polls plus dag.test()'s own end, with room for a loaded
#: machine (5.02 s were seen at load 7-15), and still far from TIMEOUT.
PROMPTLY = 10 * POLL
UNREACHABLE = "PostHog is unreachable since"
ANSWERED = "PostHog answered again after"
BACKFILL_GET = re.compile(r"/backfills/[0-9a-f-]{36}/$")
RUNS_LIST = re.compile(r"/batch_exports/[0-9a-f-]{36}/runs/$")


@pytest.fixture
def posthog_emulator_settings() -> Any:
    """Runs of an emulated minute: nothing completes before the outage, during which the clock skips ahead."""
    from airflow_provider_posthog.emulator import EmulatorSettings

    return EmulatorSettings(run_duration=60.0, backfill_row_delay=0.1, backfill_run_delay=0.05)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_posthog.api.retry import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt_number: 0.1)


# ------------------------------------------------------------------------------------------------ the waits


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A DAG whose one task ``wait`` waits on PostHog, and how to tell from the emulator's request log that
    it is waiting: ``polls`` answered GETs matching ``poll`` since the DAG run started."""

    dag: Any
    export_id: str
    poll: re.Pattern[str]
    polls: int = 1

    def started(self, control: Any) -> bool:
        answered = [e for e in control.request_log if e.method == "GET" and e.status == 200]
        return sum(1 for e in answered if self.poll.search(e.path)) >= self.polls


def _build(scenario: str, emu: Any, airflow_dags: Any) -> Waiting:
    """The waiting task of ``scenario`` ("<what>-<how>"), retries=0 and a timeout longer than the outage,
    registered for ``dag.test()``; a sensor's backfill is created over HTTP first."""
    from airflow_provider_posthog.hooks.posthog import PostHogHook
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator
    from airflow_provider_posthog.sensors.batch_export import (
        PostHogBackfillSensor,
        PostHogBatchExportRunSensor,
    )

    destination = {"type": "S3", "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p/"}}
    export_id = str(emu.control.seed_export(name="outage", destination=destination, interval="hour")["id"])
    end = emu.control.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(hours=1)
    what, how = scenario.split("-")
    task: dict[str, Any] = {"task_id": "wait", "batch_export_id": export_id, "retries": 0}
    sensor: dict[str, Any] = {"poke_interval": POLL, "timeout": TIMEOUT, "deferrable": how == "deferrable"}
    if how in ("poke", "reschedule"):
        sensor["mode"] = how
    with airflow_dags.new(f"outage_{what}_{how}") as dag:
        if what == "operator":
            PostHogCreateBackfillOperator(
                start_at=start.isoformat(),
                end_at=end.isoformat(),
                poll_interval=POLL,
                timeout=TIMEOUT,
                deferrable=how == "deferrable",
                **task,
            )
        elif what == "backfill":
            backfill = PostHogHook().create_backfill(export_id, start, end)
            PostHogBackfillSensor(backfill_id=backfill.id, **sensor, **task)
        else:
            PostHogHook().create_backfill(export_id, start, end)  # the runs the interval sensor waits for
            PostHogBatchExportRunSensor(
                data_interval_start=start.isoformat(), data_interval_end=end.isoformat(), **sensor, **task
            )
    airflow_dags.register([dag])
    if what == "operator":  # creating the backfill reads it once before the wait polls it
        return Waiting(dag, export_id, BACKFILL_GET, polls=2)
    return Waiting(dag, export_id, RUNS_LIST if what == "interval" else BACKFILL_GET)


@pytest.fixture
def when_waiting(posthog_conn: Any) -> Iterator[Callable[[Waiting, Callable[[], None]], None]]:
    """``when_waiting(waiting, action)`` runs ``action`` in the background once the task is waiting; the
    watch ends with the test, so it never acts on the next test's requests."""
    control = posthog_conn.control
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(waiting: Waiting, action: Callable[[], None]) -> None:
        def watch() -> None:
            while not waiting.started(control):
                if stop.wait(0.02):
                    return
            action()

        control.clear_request_log()
        threads.append(threading.Thread(target=watch, daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for thread in threads:
        thread.join()


@dataclasses.dataclass
class Outage:
    """PostHog down (503, then dropped connections) while it completes the work; what it answered then."""

    emu: Any
    ended: float | None = None
    errors: int = 0
    drops: int = 0

    def __call__(self) -> None:
        control = self.emu.control
        seen = len(control.request_log)
        control.add_fault(r"^/api/", count=None)  # HTTP 503
        control.advance(600)  # PostHog completes the work while nobody can ask
        self._phase(503, ERRORS_FOR)
        control.clear_faults()
        control.add_fault(r"^/api/", count=None, drop_connection=True)
        self._phase(0, DROPS_FOR)
        control.clear_faults()
        during = control.request_log[seen:]
        self.errors = sum(1 for e in during if e.status == 503)
        self.drops = sum(1 for e in during if e.status == 0)
        self.ended = time.time()

    def _phase(self, status: int, seconds: float) -> None:
        """Hold the fault for ``seconds``, and on until a request met it (at most PHASE_AT_MOST)."""
        control = self.emu.control
        seen = len(control.request_log)
        time.sleep(seconds)
        deadline = time.time() + PHASE_AT_MOST - seconds
        while time.time() < deadline and not any(e.status == status for e in control.request_log[seen:]):
            time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ the tests

SCENARIOS = [
    "operator-sync",
    "operator-deferrable",
    "backfill-poke",
    "backfill-reschedule",
    "backfill-deferrable",
    "interval-poke",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_wait_rides_out_an_outage_and_succeeds_once_posthog_answers(
    scenario: str,
    posthog_conn: Any,
    airflow_dags: Any,
    when_waiting: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """In ``reschedule`` mode each poke is a new process: the time PostHog became unreachable goes from
    poke to poke through the task's state store, so the first poke after the outage says it is over."""
    emu = posthog_conn
    waiting = _build(scenario, emu, airflow_dags)
    created_before = emu.control.count_requests("POST", "/backfills")
    outage = Outage(emu)
    when_waiting(waiting, outage)
    dr = waiting.dag.test()
    finished = time.time()
    out = capfd.readouterr().out

    assert outage.ended is not None, "PostHog went down only after the task had finished"
    assert airflow_dags.task_states(waiting.dag.dag_id, dr.run_id) == {"wait": ("success", 1)}
    assert dr.state == "success"
    (backfill,) = emu.control.backfills_for(waiting.export_id)
    assert backfill["status"] == "Completed"
    assert created_before + emu.control.count_requests("POST", "/backfills") == 1
    assert outage.errors > 0 and outage.drops > 0
    assert UNREACHABLE in out
    # A rescheduled sensor's pokes are separate processes: Airflow 3.3's task state store carries the
    # outage's start from poke to poke; before 3.3 each poke counts afresh and none can say it is over.
    assert (ANSWERED in out) is (not scenario.endswith("reschedule") or TASK_STATE_STORE)
    assert finished - outage.ended < PROMPTLY  # once PostHog answers, not at the timeout
    assert len(airflow_dags.asset_events(waiting.dag.dag_id, dr.run_id)) == 1
    print(
        f"\n{scenario}: {outage.errors} x 503 and {outage.drops} dropped during the outage; success "
        f"{finished - outage.ended:.1f} s after it ended"
    )


@pytest.mark.parametrize("scenario", ["operator-sync", "backfill-poke", "backfill-deferrable"])
def test_a_backfill_gone_fails_the_wait_at_once(
    scenario: str,
    posthog_conn: Any,
    airflow_dags: Any,
    when_waiting: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A 404 cannot fix itself: the wait ends at the first poll that gets it, long before its timeout."""
    emu = posthog_conn
    waiting = _build(scenario, emu, airflow_dags)
    gone: list[tuple[float, int]] = []

    def delete() -> None:
        gone.append((time.time(), len(emu.control.request_log)))
        emu.control.add_fault(BACKFILL_GET.pattern, method="GET", status=404, count=None)

    when_waiting(waiting, delete)
    dr = waiting.dag.test()
    finished = time.time()
    out = capfd.readouterr().out

    assert gone, "the backfill was deleted only after the task had finished"
    assert dr.state == "failed"
    assert airflow_dags.task_states(waiting.dag.dag_id, dr.run_id) == {"wait": ("failed", 1)}
    ((at, seen),) = gone
    assert finished - at < PROMPTLY
    after = emu.control.request_log[seen:]
    assert [e.status for e in after if BACKFILL_GET.search(e.path)] == [404]  # one poll, not one per retry
    assert "Not found." in out and UNREACHABLE not in out
    assert airflow_dags.asset_events(waiting.dag.dag_id, dr.run_id) == []
    print(f"\n{scenario}: failed {finished - at:.1f} s after the backfill was gone")
