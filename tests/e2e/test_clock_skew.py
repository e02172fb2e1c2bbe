"""A worker whose clock is ten minutes off PostHog's, under real Airflow (``dag.test()``) and the emulator.

The emulator's clock is moved instead of the worker's (``POST /_emulator/clock``): its ``created_at`` and its
``Date`` header then read PostHog's time, Airflow and the hook read this machine's. The first try dies after
its POST (its timeout ends the wait while PostHog still runs the backfill); Airflow retries once. Exactly one
backfill must exist at the end, and the retry's wait must succeed, on both API generations (the one that
answers the POST with the row's UUID, and the one that answers with a workflow id, where the new row is found
by range and creation time).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import pytest

UTC = dt.timezone.utc
TASK = "backfill"


def _move_posthogs_clock(emu: Any, worker_ahead: dt.timedelta) -> None:
    """PostHog's clock = real time - ``worker_ahead`` (the worker keeps the real time)."""
    answer = httpx.post(
        f"{emu.base_url}/_emulator/clock",
        json={"offset_seconds": -worker_ahead.total_seconds()},
        timeout=10,
    )
    answer.raise_for_status()


@pytest.mark.parametrize("generation", ["new", "docs"])
@pytest.mark.parametrize(
    "worker_ahead",
    [dt.timedelta(minutes=10), dt.timedelta(minutes=-10)],
    ids=["worker+10min", "worker-10min"],
)
def test_a_retry_on_a_skewed_worker_reattaches_instead_of_exporting_twice(
    posthog_conn: Any,
    airflow_dags: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    worker_ahead: dt.timedelta,
    generation: str,
) -> None:
    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    emu = posthog_conn
    emu.control.configure(api_generation=generation, run_duration=1.0)
    _move_posthogs_clock(emu, worker_ahead)
    posthog_now = emu.control.now()
    assert abs((dt.datetime.now(UTC) - posthog_now) - worker_ahead) < dt.timedelta(seconds=5)
    export_id = str(emu.control.seed_export(name="skewed worker", interval="hour")["id"])
    end = posthog_now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
    start = end - dt.timedelta(hours=2)

    direction = "ahead" if worker_ahead > dt.timedelta(0) else "behind"
    with airflow_dags.new(f"clock_skew_{direction}_{generation}") as dag:
        PostHogCreateBackfillOperator(
            task_id=TASK,
            batch_export_id=export_id,
            start_at=start,
            end_at=end,
            poll_interval=0.2,
            timeout=0.3,  # the first try gives up while PostHog still runs the backfill
            cancel_on_kill=False,
            deferrable=False,
            retries=1,
            retry_delay=dt.timedelta(0),
        )
    airflow_dags.register([dag])
    real_execute = PostHogCreateBackfillOperator.execute
    tries: list[int] = []

    def execute(self: Any, context: Any) -> Any:
        tries.append(context["ti"].try_number)
        if context["ti"].try_number > 1:
            self.timeout = None  # the retry waits to the end
        return real_execute(self, context)

    monkeypatch.setattr(PostHogCreateBackfillOperator, "execute", execute)
    dr = dag.test()

    captured = capfd.readouterr()
    out = captured.out + captured.err + caplog.text
    assert tries == [1, 2]
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)[TASK] == ("success", 2)
    (backfill,) = emu.control.backfills_for(export_id)  # 0 duplicates
    assert backfill["status"] == "Completed"
    assert emu.control.count_requests("POST", "/backfills") == 1
    assert f"Re-attaching to backfill {backfill['id']}" in out
    # The offset came from the emulator's Date header, through the hook, over real HTTP.
    way = "ahead of" if worker_ahead > dt.timedelta(0) else "behind"
    measured = re.search(rf"this machine's clock is (\d+)s {way} PostHog's", out)
    assert measured is not None and abs(int(measured.group(1)) - 600) <= 2, out[-3000:]


@pytest.mark.parametrize("posthog_ahead", [-600.0, 600.0])
def test_the_emulators_date_header_is_its_own_clock(posthog_emulator: Any, posthog_ahead: float) -> None:
    """One ``Date`` per answer, read off the emulated clock (what the client measures the offset from)."""
    from email.utils import parsedate_to_datetime

    emu = posthog_emulator
    _move_posthogs_clock(emu, dt.timedelta(seconds=-posthog_ahead))
    for url in (emu.api_url(), emu.api_url("no-such-export/")):
        answer = httpx.get(url, headers=emu.auth_headers, timeout=10)
        (date,) = answer.headers.get_list("date")
        offset = (parsedate_to_datetime(date) - dt.datetime.now(UTC)).total_seconds()
        assert abs(offset - posthog_ahead) < 2.5, (answer.status_code, date)
