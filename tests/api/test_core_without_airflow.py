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
        backfills, connection, endpoints, errors, http, intervals, models, retry, statuses,
    )
    from airflow_provider_posthog.exceptions import PostHogConfigError, PostHogNotFoundError

    # Drive a real operation: create_backfill refuses an off-schedule range after reading the export.
    op = backfills.create_backfill(
        1, "e", "2026-11-28T19:30:00Z", "2026-11-28T21:00:00Z", lookup=backfills.BackfillLookup()
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
    """
)


def test_the_core_runs_without_airflow() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CORE], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "GET /api/projects/1/batch_exports/e/ True True"
    # Plain stand-ins for Airflow's bases, and no Airflow module other than the blocked name.
    assert out[1] == "['airflow_provider_posthog.exceptions', 'builtins'] ['airflow']"


def test_with_airflow_final_errors_are_airflow_fail_exceptions() -> None:
    """With Airflow installed, the same classes make a task fail at once (no retry)."""
    assert issubclass(PostHogConfigError, AirflowFailException)
    assert issubclass(PostHogNotFoundError, AirflowFailException)
    assert not issubclass(PostHogServerError, AirflowFailException)
