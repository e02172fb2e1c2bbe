"""``make demo``: run the backfill example DAG end to end against the local PostHog emulator.

Steps: an Airflow home under ``.demo/`` -> ``airflow db migrate`` -> start the emulator -> create an
export in it -> point ``AIRFLOW_CONN_POSTHOG_DEFAULT`` at it -> ``airflow dags test
posthog_backfill_and_wait`` -> print a short summary. Exit code 0 only when the DAG run and the backfill both
succeeded.

To run the same DAG against real PostHog, create the connection ``posthog_default`` with host
``https://us.posthog.com`` (or ``https://eu.posthog.com``), your personal API key as password and
``{"project_id": "<id>"}`` as extra, and give the DAG your export id (README, docs/operators.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DAG_ID = "posthog_backfill_and_wait"
TASK_ID = "backfill_posthog_export"
HOURS = 3


def build_summary(
    *,
    export: Mapping[str, Any],
    backfills: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    link: str,
    dag_ok: bool,
    seconds: float,
) -> tuple[str, bool]:
    """The text ``make demo`` prints, and whether the demo succeeded. Pure, so it is unit-tested."""
    backfill = backfills[0] if backfills else {}
    own = [r for r in runs if backfill and r.get("backfill") == backfill.get("id")]
    completed = [r for r in own if r.get("status") == "Completed"]
    failed = [r for r in own if r.get("status") != "Completed"]
    records = sum(int(r.get("records_completed") or 0) for r in completed)
    ok = dag_ok and backfill.get("status") == "Completed" and not failed and len(backfills) == 1
    lines = [
        "",
        "PostHog batch export demo " + ("succeeded" if ok else "FAILED"),
        f"  export    : {export.get('name')} ({export.get('id')}), interval {export.get('interval')}",
        f"  backfill  : {backfill.get('id', '(none)')} [{backfill.get('start_at')}, {backfill.get('end_at')})"
        f" -> {backfill.get('status', 'missing')}",
        f"  runs      : {len(completed)} completed, {len(failed)} not completed",
        f"  records   : {records}",
        f"  DAG run   : {DAG_ID} {'success' if dag_ok else 'failed'} in {seconds:.1f}s",
        f"  PostHog   : {link}",
    ]
    if len(backfills) > 1:
        lines.append(f"  warning   : {len(backfills)} backfills exist for the export (expected exactly one)")
    return "\n".join(lines), ok


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    root = Path.cwd()
    if not (root / "example_dags" / f"{DAG_ID}.py").exists():
        print("Run `make demo` from the repository root (example_dags/ not found).", file=sys.stderr)
        return 2
    demo_dir = root / ".demo"
    home = demo_dir / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "example_dags"),
            "AIRFLOW__CORE__FERNET_KEY": env.get(
                "AIRFLOW__CORE__FERNET_KEY", "f6pxXj0Rm3uvM1Ua_Sl5Z3LQ7RLJbPHRPP1JxX0nDfk="
            ),
            "PYTHONWARNINGS": "ignore",
        }
    )
    log_path = demo_dir / "demo.log"
    with log_path.open("w") as log:
        started = time.monotonic()
        _step(f"Airflow home {home}: airflow db migrate")
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        if migrate.returncode != 0:
            print(f"airflow db migrate failed; see {log_path}", file=sys.stderr)
            return 1

        from airflow_provider_posthog.emulator import EmulatorSettings, PostHogEmulator

        settings = EmulatorSettings(run_duration=1.0, backfill_row_delay=0.2)
        with PostHogEmulator(settings, host="127.0.0.1", port=0) as emu:
            _step(f"PostHog emulator listening on {emu.base_url}")
            export = emu.control.seed_export(
                name="demo: events to S3",
                destination={
                    "type": "S3",
                    "config": {"bucket_name": "demo-bucket", "region": "us-east-1", "prefix": "posthog/"},
                },
                interval="hour",
            )
            now = emu.control.now().astimezone(dt.timezone.utc)
            end = now.replace(minute=0, second=0, microsecond=0)
            start = end - dt.timedelta(hours=HOURS)
            _step(f"Created export {export['id']}; backfilling [{start.isoformat()}, {end.isoformat()})")
            env["AIRFLOW_CONN_POSTHOG_DEFAULT"] = emu.airflow_conn_json()
            conf = {
                "batch_export_id": export["id"],
                "start_at": start.isoformat(),
                "end_at": end.isoformat(),
                "poll_interval": 1,
            }
            _step(f"airflow dags test {DAG_ID} (output in {log_path})")
            dag_started = time.monotonic()
            dags_test = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--conf", json.dumps(conf)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=600,
            )
            log.write(dags_test.stdout)
            dag_seconds = time.monotonic() - dag_started
            dag_ok = dags_test.returncode == 0 and "state=success" in dags_test.stdout
            summary, ok = build_summary(
                export=export,
                backfills=emu.control.backfills_for(export["id"]),
                runs=emu.control.runs_for(export["id"]),
                link=emu.ui_url(export["id"], "backfills"),
                dag_ok=dag_ok,
                seconds=dag_seconds,
            )
    print(summary)
    print(f"  total     : {time.monotonic() - started:.1f}s (log: {log_path})")
    if not ok:
        print("\nThe demo did not succeed; the end of the Airflow output:\n", file=sys.stderr)
        print("\n".join(dags_test.stdout.splitlines()[-40:]), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
