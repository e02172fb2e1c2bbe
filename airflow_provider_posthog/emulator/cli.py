"""``python -m airflow_provider_posthog.emulator`` / ``posthog-emulator``: run it in the foreground."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING

from .settings import DEFAULT_API_KEY, DEFAULT_PROJECT_ID

if TYPE_CHECKING:
    from collections.abc import Sequence

DOCS_URL = "https://github.com/airflow-provider-posthog/airflow-provider-posthog/blob/main/docs/emulator.md"

DESCRIPTION = """\
Local emulator of PostHog's batch-exports REST API, for running Airflow DAGs that use
airflow-provider-posthog without a PostHog account. It serves the API under
/api/projects/<project id>/batch_exports/ (also /api/environments/...), with the errors,
pagination, validation and run/backfill life cycle of PostHog's server code. Runs and
backfills progress on an emulated clock; nothing leaves this machine."""

EPILOG = f"""\
quick start:
  posthog-emulator --port 8010
  # then, in the shell that runs Airflow (the emulator prints these lines):
  export AIRFLOW_CONN_POSTHOG_DEFAULT='{{"conn_type": "posthog", "host": "http://127.0.0.1:8010",
    "password": "{DEFAULT_API_KEY}", "extra": {{"project_id": "{DEFAULT_PROJECT_ID}"}}}}'
  curl -H 'Authorization: Bearer {DEFAULT_API_KEY}' \\
    http://127.0.0.1:8010/api/projects/{DEFAULT_PROJECT_ID}/batch_exports/

in a browser (the provider's extra links point here; no API key needed):
  http://127.0.0.1:8010/project/{DEFAULT_PROJECT_ID}/pipeline/batch-exports
      the project's exports
  http://127.0.0.1:8010/project/{DEFAULT_PROJECT_ID}/pipeline/batch-exports/<export id>?tab=runs
      one export: configuration, runs, backfills, logs

control API (no auth, JSON bodies), to seed objects and script outcomes:
  POST /_emulator/exports         {{"name": "demo", "interval": "hour"}} -> the export
  POST /_emulator/runs            keys batch_export_id, data_interval_start, data_interval_end, status
  POST /_emulator/fail_next_run   {{"batch_export_id": "<id>", "error": "S3 said no"}}
  POST /_emulator/faults          {{"path_regex": "/runs/", "status": 503, "count": 2}}
                                  {{"path_regex": "/runs/", "trickle": 2}}  (the answer, 1 byte per 2 s)
  POST /_emulator/advance         {{"seconds": 3600}}   (move the emulated clock)
  POST /_emulator/reset;  GET /_emulator/requests  (the API calls received)

The last line printed at start-up is JSON for scripts (base_url, api_key, project_id,
AIRFLOW_CONN_POSTHOG_DEFAULT, AIRFLOW_CONN_POSTHOG_DEFAULT_URI). Stop with Ctrl-C or SIGTERM.
Full reference (settings, pytest fixtures, faults, known differences from PostHog):
  {DOCS_URL}"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posthog-emulator",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8010, help="port to bind; 0 picks a free one (default 8010)"
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help=f"personal API key the emulator accepts (default {DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--project-id",
        type=int,
        default=DEFAULT_PROJECT_ID,
        help=f"project (team) id that exists (default {DEFAULT_PROJECT_ID})",
    )
    parser.add_argument(
        "--api-generation",
        choices=("docs", "new"),
        default="new",
        help="API generation: 'new' (PostHog's current code, default) or 'docs' (public docs page)",
    )
    parser.add_argument(
        "--schedule-runs",
        action="store_true",
        help="unpaused exports start a run for each interval as it ends, like PostHog's schedules",
    )
    parser.add_argument(
        "--schedule-history",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="with --schedule-runs: intervals that ended this many hours before an export was created "
        "already have completed scheduled runs (default 0)",
    )
    parser.add_argument(
        "--logs-pak-access",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the logs endpoints accept personal API keys (default: as the API generation does)",
    )
    parser.add_argument(
        "--legacy-pak-wording",
        action="store_true",
        help="403 says 'Personal API Key access' like older PostHog servers (default: 'personal API key')",
    )
    parser.add_argument(
        "--run-duration", type=float, default=1.0, help="seconds a run takes from Starting to Completed"
    )
    parser.add_argument(
        "--backfill-row-delay",
        type=float,
        default=0.5,
        help="seconds before a created backfill's row appears",
    )
    parser.add_argument(
        "--rate-limit-per-minute",
        type=int,
        default=None,
        help="per-key burst limit (PostHog: 480); off by default",
    )
    parser.add_argument(
        "--rate-limit-per-hour", type=int, default=None, help="per-key sustained limit (PostHog: 4800)"
    )
    parser.add_argument(
        "--no-retry-after", action="store_true", help="omit the Retry-After header on throttled 429s"
    )
    parser.add_argument(
        "--max-concurrent-backfills",
        type=int,
        default=None,
        help="active backfills per project before 429 too_many_concurrent_backfills (default unlimited)",
    )
    parser.add_argument(
        "--auto-pause",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pause an export (and cancel its running backfills) after repeated failed runs, like PostHog "
        "(default on)",
    )
    parser.add_argument(
        "--auto-pause-threshold",
        type=int,
        default=3,
        metavar="N",
        help="failed runs among the export's latest runs (hour: 24, day: 7, week: 4) that pause it "
        "(default 3)",
    )
    parser.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", default=None, help="private key for --ssl-certfile (PEM)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("--ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return 2
    if args.auto_pause_threshold < 1:
        print("--auto-pause-threshold must be at least 1", file=sys.stderr)
        return 2

    from .server import PostHogEmulator
    from .settings import EmulatorSettings

    settings = EmulatorSettings(
        api_generation=args.api_generation,
        run_duration=args.run_duration,
        backfill_row_delay=args.backfill_row_delay,
        rate_limit_per_minute=args.rate_limit_per_minute,
        rate_limit_per_hour=args.rate_limit_per_hour,
        retry_after_header=not args.no_retry_after,
        max_concurrent_backfills=args.max_concurrent_backfills,
        api_key=args.api_key,
        project_id=args.project_id,
        schedule_runs=args.schedule_runs,
        schedule_history=args.schedule_history,
        logs_pak_access=args.logs_pak_access,
        legacy_pak_wording=args.legacy_pak_wording,
        auto_pause=args.auto_pause,
        auto_pause_threshold=args.auto_pause_threshold,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    emulator = PostHogEmulator(
        settings,
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
    )
    with emulator:
        info = {
            "base_url": emulator.base_url,
            "api_key": emulator.api_key,
            "project_id": emulator.project_id,
            "api_generation": settings.api_generation,
            "AIRFLOW_CONN_POSTHOG_DEFAULT": emulator.airflow_conn_json(),
            "AIRFLOW_CONN_POSTHOG_DEFAULT_URI": emulator.airflow_conn_uri(),
        }
        print(f"PostHog batch-exports emulator listening on {emulator.base_url}")
        print(f"  API key:    {emulator.api_key}")
        print(f"  project id: {emulator.project_id}")
        print(f"  try:        curl -H 'Authorization: Bearer {emulator.api_key}' {emulator.api_url()}")
        print(f"  browser:    {emulator.ui_url()}")
        print(f"  export AIRFLOW_CONN_POSTHOG_DEFAULT='{emulator.airflow_conn_json()}'")
        print(f"  # or:  export AIRFLOW_CONN_POSTHOG_DEFAULT='{emulator.airflow_conn_uri()}'")
        print(json.dumps(info), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
