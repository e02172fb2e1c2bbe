"""The client core (``airflow_provider_posthog.api``) imports and runs with Airflow blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from airflow_provider_posthog.compat import AirflowFailException
from airflow_provider_posthog.exceptions import PostHogConfigError, PostHogNotFoundError, PostHogServerError

CORE = textwrap.dedent(
    """
    import sys
    sys.modules["airflow"] = None  # any "import airflow..." now raises ImportError

    import pendulum

    from airflow_provider_posthog.api import (
        backfills, connection, decisions, endpoints, errors, http, intervals, jobs, models, retry, statuses,
    )
    from airflow_provider_posthog.exceptions import (
        PostHogConfigError, PostHogNotFoundError, PostHogValidationError,
    )

    def drive(op, answers, sent=None):
        # Answer each request with the next body (or raise the next exception into the operation); read a
        # shared read unshared, as the sync hook does.
        sent, reply, error = [] if sent is None else sent, None, None
        try:
            while True:
                spec = op.throw(error) if error is not None else op.send(reply)
                reply, error = None, None
                if isinstance(spec, http.Shared):
                    try:
                        reply = drive(spec.alone(), answers, sent)[0]
                    except Exception as exc:
                        error = exc
                    continue
                sent.append(f"{spec.method} {spec.path}")
                answer = answers.pop(0)
                if isinstance(answer, Exception):
                    error = answer
                else:
                    reply = http.ApiResponse(200, answer)
        except StopIteration as stop:
            return stop.value, sent

    # Drive a real operation: create_backfill refuses an off-schedule range after reading the export.
    op = backfills.create_backfill(
        "e", "2026-11-28T19:30:00Z", "2026-11-28T21:00:00Z", lookup=backfills.BackfillLookup()
    )
    spec = next(op)
    try:
        op.send(http.ApiResponse(200, {"id": "e", "interval": "hour"}))
    except PostHogConfigError as exc:
        refused = "PostHog would export from" in str(exc)
    mapped = errors.error_from_response(method="GET", path="/p", status=404, content=b"{}")
    loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
    print(spec.method, spec.path, refused, isinstance(mapped, PostHogNotFoundError))
    print(sorted({c.__module__ for c in PostHogConfigError.__mro__}), loaded)

    # A poll of a terminal backfill: its status, the export's interval, its runs, then one decision.
    backfill = {"id": "b", "status": "Completed", "start_at": "2026-11-28T19:00:00Z",
                "end_at": "2026-11-28T20:00:00Z"}
    run = {"id": "r", "status": "Completed", "backfill": "b", "records_completed": 3,
           "data_interval_start": "2026-11-28T19:00:00Z", "data_interval_end": "2026-11-28T20:00:00Z"}
    decision, sent = drive(
        jobs.BackfillJob("e", "b").poll(),
        [backfill, {"id": "e", "interval": "hour"}, {"next": None, "results": [run]}],
    )
    print(decision.outcome.value, decision.records_completed, [r.id for r in decision.completed_runs], sent)

    # A cancel PostHog refuses because the run just finished: read back, nothing left to cancel.
    refusal = errors.error_from_response(method="POST", path="/p", status=400, content=b'{"detail": "no"}')
    result, sent = drive(jobs.cancel(jobs.RunJob("e", "r")), [refusal, dict(run)])
    print(isinstance(refusal, PostHogValidationError), result.already_finished, result.message, sent)
    print(sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow.")))
    """
)


def test_the_core_runs_without_airflow() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CORE], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "GET batch_exports/e/ True True"
    # Plain stand-ins for Airflow's bases, and no Airflow module other than the blocked name.
    assert out[1] == "['airflow_provider_posthog.exceptions', 'builtins'] ['airflow']"
    assert out[2] == (
        "succeeded 3 ['r'] ['GET batch_exports/e/backfills/b/', 'GET batch_exports/e/', "
        "'GET batch_exports/e/runs/']"
    )
    assert out[3] == (
        "True True Run r of batch export e is already Completed; nothing to cancel. "
        "['POST batch_exports/e/runs/r/cancel/', 'GET batch_exports/e/runs/r/']"
    )
    assert out[4] == "['airflow']"


def test_with_airflow_final_errors_are_airflow_fail_exceptions() -> None:
    """With Airflow installed, the same classes make a task fail at once (no retry)."""
    assert issubclass(PostHogConfigError, AirflowFailException)
    assert issubclass(PostHogNotFoundError, AirflowFailException)
    assert not issubclass(PostHogServerError, AirflowFailException)
