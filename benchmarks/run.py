"""``make bench``: every benchmark in one go, contenders interleaved, then ``benchmarks/RESULTS.md``.

Phases (each bounded in time; all traffic goes to 127.0.0.1):

1. parse-time import cost (``benchmarks.import_cost``), samples interleaved ours / dbt Cloud / Airbyte;
2. triggerer capacity (``benchmarks.capacity`` against ``benchmarks.servers``, TLS), for each N the three
   contenders back to back (A B C), each in fresh processes;
3. API economy and the rate-limit story (``benchmarks.economy``), ours only (against the emulator).

Raw figures go to ``.bench/results.json``; the report is written by ``benchmarks.report``.
``--quick`` is a smoke run (few samples, small N, short cycles) that writes ``.bench/RESULTS-quick.md``;
``--only``/``--n``/``--contender``/``--profile`` select a part and write ``.bench/RESULTS-partial.md``; only a
full run rewrites ``benchmarks/RESULTS.md`` (unless ``--output`` says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_provider_posthog.emulator.tls import TLSFiles, make_tls_files

from benchmarks import import_cost
from benchmarks.procs import ROOT, ServerProcess, child_env, run_child
from benchmarks.report import headlines, write_report

CONTENDERS = ("ours", "dbt", "airbyte")
SERVER_KIND = {"ours": "posthog", "dbt": "dbt", "airbyte": "airbyte"}
CONN_ENV = {
    "ours": "AIRFLOW_CONN_POSTHOG_BENCH",
    "dbt": "AIRFLOW_CONN_DBT_BENCH",
    "airbyte": "AIRFLOW_CONN_AIRBYTE_BENCH",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def capacity_plan(quick: bool) -> list[tuple[int, float, int]]:
    """(N, poll interval s, cycles): N = 5,000 at a 30 s poll; smaller N poll every 10 s."""
    if quick:
        return [(100, 5.0, 2), (1000, 5.0, 2)]
    return [(100, 10.0, 3), (1000, 10.0, 3), (5000, 30.0, 3)]


def run_capacity_one(
    contender: str,
    n: int,
    poll_interval: float,
    cycles: int,
    tls: TLSFiles,
    workdir: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One server process + one trigger process; returns the trigger figures plus the server's request log."""
    run_dir = workdir / f"capacity-{contender}-{n}"
    run_dir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess.start(
        [
            SERVER_KIND[contender],
            "--n",
            str(n),
            "--certfile",
            str(tls.certfile),
            "--keyfile",
            str(tls.keyfile),
        ],
        run_dir,
        timeout=180,
    )
    try:
        targets_file = run_dir / "targets.json"
        targets_file.write_text(json.dumps(server.info["targets"]))
        env = child_env(
            run_dir,
            {CONN_ENV[contender]: json.dumps(server.info["conn"]), "SSL_CERT_FILE": str(tls.ca_bundle)},
        )
        out = run_dir / "result.json"
        proc = run_child(
            "benchmarks.capacity",
            [
                "--contender",
                contender,
                "--targets",
                str(targets_file),
                "--poll-interval",
                str(poll_interval),
                "--cycles",
                str(cycles),
                "--out",
                str(out),
                *(["--profile", str(profile)] if profile else []),
            ],
            run_dir,
            env,
            timeout=cycles * poll_interval + 240,
            log_name="triggers.log",
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"capacity run {contender} N={n} failed (see {run_dir / 'triggers.log'})")
        result: dict[str, Any] = json.loads(out.read_text())
        result["server"] = server.command("stats")
    finally:
        server.stop()
    polls = result["polls_total"]
    requests = result["server"]["total"]
    result["requests_per_poll"] = requests / polls if polls else None
    non_2xx = sum(v for k, v in result["server"]["by_status"].items() if not k.startswith("2"))
    result["http_errors"] = non_2xx
    result["errors"] = result["events"] + result["exceptions"] + non_2xx
    return result


def run_capacity(
    quick: bool,
    workdir: Path,
    only_n: list[int] | None = None,
    contenders: list[str] | None = None,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    tls = make_tls_files(workdir / "tls")
    plan = [row for row in capacity_plan(quick) if not only_n or row[0] in only_n]
    results: dict[str, Any] = {"plan": plan, "runs": []}
    for n, poll_interval, cycles in plan:
        for contender in contenders or CONTENDERS:
            profile = profile_dir / f"{contender}-{n}.txt" if profile_dir else None
            started = time.monotonic()
            log(f"capacity: {contender} N={n} poll={poll_interval:g}s x{cycles} ...")
            try:
                result = run_capacity_one(contender, n, poll_interval, cycles, tls, workdir, profile)
            except Exception as exc:  # one broken contender must not lose the others' figures
                log(f"capacity: {contender} N={n} FAILED: {exc}")
                result = {"contender": contender, "n": n, "failed": str(exc)}
            result["wall_total_s"] = time.monotonic() - started
            results["runs"].append(result)
            if "failed" not in result:
                log(
                    f"  polls {result['polls_total']}/{result['polls_expected']}, "
                    f"req/poll {result['requests_per_poll'] or 0:.3f}, "
                    f"RSS/trigger {result['rss_per_waiting_trigger_kb']:.1f} KB, "
                    f"lag p99 {result['lag_p99_ms']:.1f} ms, "
                    f"errors {result['errors']} ({result['wall_total_s']:.0f} s)"
                )
    return results


def run_economy(quick: bool, workdir: Path) -> dict[str, Any]:
    run_dir = workdir / "economy"
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "result.json"
    args = ["--out", str(out)] + (["--quick"] if quick else [])
    proc = run_child(
        "benchmarks.economy", args, run_dir, child_env(run_dir), timeout=1500, log_name="economy.log"
    )
    if proc.returncode != 0 or not out.exists():
        return {"failed": f"economy run failed (exit {proc.returncode}); see {run_dir / 'economy.log'}"}
    return dict(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark and write benchmarks/RESULTS.md.")
    parser.add_argument("--quick", action="store_true", help="smoke run: few samples, small N, short cycles")
    parser.add_argument("--output", type=Path, default=None, help="report path (default: see module docs)")
    parser.add_argument("--only", choices=["imports", "capacity", "economy"], action="append", default=None)
    parser.add_argument("--n", type=int, action="append", default=None, help="capacity: only these N")
    parser.add_argument(
        "--contender", choices=CONTENDERS, action="append", default=None, help="capacity only"
    )
    parser.add_argument(
        "--profile", action="store_true", help="capacity: pyinstrument profiles into .bench/profiles/"
    )
    args = parser.parse_args(argv)
    phases = args.only or ["imports", "capacity", "economy"]
    bench_dir = ROOT / ".bench"
    bench_dir.mkdir(exist_ok=True)
    partial = bool(args.only or args.n or args.contender or args.profile)
    if args.output:
        output = args.output
    elif args.quick:
        output = bench_dir / "RESULTS-quick.md"
    elif partial:
        output = bench_dir / "RESULTS-partial.md"  # never overwrite the committed report with a partial run
    else:
        output = ROOT / "benchmarks" / "RESULTS.md"

    started = time.monotonic()
    results: dict[str, Any] = {
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "loadavg_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="run-", dir=bench_dir) as tmp:
        workdir = Path(tmp)
        if "imports" in phases:
            samples = 3 if args.quick else 15
            log(f"import cost: {samples} interleaved samples per contender ...")
            results["imports"] = import_cost.measure(samples, workdir / "imports", log=log)
        if "capacity" in phases:
            profile_dir = bench_dir / "profiles" if args.profile else None
            if profile_dir:
                profile_dir.mkdir(exist_ok=True)
            results["capacity"] = run_capacity(args.quick, workdir, args.n, args.contender, profile_dir)
        if "economy" in phases:
            log("API economy and rate limits ...")
            results["economy"] = run_economy(args.quick, workdir)
            if "failed" in results["economy"]:
                log(results["economy"]["failed"])
        results["wall_s"] = time.monotonic() - started
        results["loadavg_end"] = os.getloadavg()
        (bench_dir / ("results-quick.json" if args.quick else "results.json")).write_text(
            json.dumps(results, indent=1, default=str)
        )
        write_report(results, output)
        # keep the logs of the last run for inspection
        logs_dir = bench_dir / "last-run-logs"
        if logs_dir.exists():
            import shutil

            shutil.rmtree(logs_dir)
        for path in workdir.rglob("*.log"):
            target = logs_dir / path.relative_to(workdir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    lines = headlines(results)
    (bench_dir / ("headlines-quick.txt" if args.quick else "headlines.txt")).write_text(
        "\n".join(lines) + "\n"
    )
    print("\nHeadline figures of this run (README quotes these; RESULTS.md has them all):", flush=True)
    for line in lines:
        print(f"- {line}", flush=True)
    log(f"done in {results['wall_s'] / 60:.1f} min; report: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
