"""Turn the runner's raw figures into ``benchmarks/RESULTS.md``.

Every figure is ``median (min–max)`` over the samples (import cost) or over the steady-state poll cycles
(capacity); ratios are *contender / ours*, so ``12x`` means the contender costs twelve times what we cost.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT
from benchmarks.stats import fmt, ratio, summary

NAMES = {
    "ours": "airflow-provider-posthog (ours)",
    "dbt": "dbt Cloud provider",
    "airbyte": "Airbyte provider",
}
TARGETS = {"import_ms": 10.0, "cpu_ms_per_poll": 2.0, "rss_kb": 50.0, "lag_p99_ms": 100.0}
PACKAGES = (
    "apache-airflow",
    "apache-airflow-core",
    "apache-airflow-task-sdk",
    "airflow-provider-posthog",
    "apache-airflow-providers-dbt-cloud",
    "apache-airflow-providers-airbyte",
    "airbyte-api",
    "httpx",
    "aiohttp",
    "uvicorn",
)


def machine_info() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; " + ", ".join(versions),
        f"- Commit: {commit or 'n/a'} (plus uncommitted changes, if any)",
    ]


def met(value: float, target: float) -> str:
    return "met" if value <= target else "**not met**"


# ------------------------------------------------------------------------------------------------- imports


def imports_section(data: dict[str, Any]) -> list[str]:
    ours = [s["added_s"] * 1000 for s in data["ours"]["samples"]]
    baseline = [s["baseline_s"] * 1000 for r in data.values() for s in r["samples"]]
    out = [
        "## 1. Parse-time import cost",
        "",
        "What a DAG file pays to import the provider's operator and sensor modules, on top of "
        "`from airflow.sdk import DAG, BaseOperator, BaseSensorOperator` (which every DAG file pays anyway: "
        f"{fmt(baseline, 0)} ms here). Fresh interpreter per sample, bytecode compiled, "
        f"{len(ours)} samples per contender, interleaved. Added time is `perf_counter` around the provider "
        "imports, after the baseline import, inside the child.",
        "",
        "| Contender | Modules imported | Added ms, median (min–max) | Contender / ours | New modules | "
        "Packages dragged in |",
        "|---|---|---|---|---|---|",
    ]
    ours_med = summary(ours)[0]
    for name, r in data.items():
        added = [s["added_s"] * 1000 for s in r["samples"]]
        last = r["last"]
        packages = [p for p in last["new_packages"] if p not in ("airflow", "airflow_provider_posthog")]
        out.append(
            f"| {NAMES[name]} | {', '.join(f'`{m}`' for m in r['modules'])} | {fmt(added, 1)} | "
            f"{'—' if name == 'ours' else ratio(summary(added)[0], ours_med)} | {last['new_modules']} | "
            f"{', '.join(packages) or 'none'} |"
        )
    out += [
        "",
        f"Target for ours: at most {TARGETS['import_ms']:.0f} ms added — "
        f"{met(ours_med, TARGETS['import_ms'])} ({ours_med:.1f} ms median). Our operator and sensor modules "
        "import only `airflow.sdk` pieces and our own pure modules at module level; the hook, httpx, "
        "requests, pendulum parsing and the emulator are imported inside methods.",
        "",
    ]
    return out


# ------------------------------------------------------------------------------------------------ capacity


def _rss(run: dict[str, Any]) -> float:
    return float(run.get("rss_per_waiting_trigger_kb", run["rss_per_trigger_kb"]))


def _steady(run: dict[str, Any], key: str) -> list[float]:
    """A per-window figure over the steady-state windows (all but the first, which includes the ramp-up)."""
    windows = run["windows"][1:] or run["windows"]
    return [w[key] for w in windows if w.get(key) is not None]


def capacity_section(data: dict[str, Any]) -> list[str]:
    out = [
        "## 2. Triggerer capacity",
        "",
        "N trigger instances of each contender run in one asyncio event loop (the default loop, one task per "
        "trigger iterating `run()`, as Airflow's triggerer does), each waiting on its own remote job that "
        "stays running. Starts are spread evenly over the first poll interval. The server runs in a separate "
        "process, over TLS on 127.0.0.1 with a certificate made for the run (ECDSA P-256); clients trust it "
        "through `SSL_CERT_FILE` pointing at certifi's bundle plus that certificate, so context creation "
        "costs what it costs in production. Connections come from `AIRFLOW_CONN_*` variables. Servers: our "
        "emulator; for dbt Cloud and Airbyte a minimal FastAPI fake of the one endpoint their trigger polls "
        "(`benchmarks/servers.py`). Airbyte runs in OSS mode (no OAuth token request), its cheapest setting.",
        "",
        "- **CPU ms/poll**: trigger-process CPU (user+system) per poll-interval window / polls completed in "
        "it; median (min–max) over the steady-state windows (the first window, which also builds hooks and "
        "looks up connections, is shown separately).",
        "- **RSS/trigger**: (peak RSS while waiting − RSS before the triggers existed) / number of triggers "
        "that reached their first wait (N, unless the loop was too blocked to start them all).",
        "- **Loop lag**: how late a 100 ms heartbeat fires; p50 and p99 over the whole run.",
        "- **Req/poll**: requests in the server's log / polls completed (polls counted at each poll-interval "
        "sleep).",
        "- **Polls done / expected**: expected = N * cycles; a trigger started in the last moments of the "
        "first interval can miss its last poll by a hair. Far fewer means the loop could not keep up.",
        "- **Errors**: events sent (no job ever finishes, so any event is an error) + exceptions + non-2xx "
        "responses.",
        "",
    ]
    runs = [r for r in data["runs"]]
    by_n: dict[int, dict[str, dict[str, Any]]] = {}
    for r in runs:
        by_n.setdefault(r["n"], {})[r["contender"]] = r
    plan = {n: (p, c) for n, p, c in data["plan"]}
    for n, group in by_n.items():
        poll, cycles = plan.get(n, (0.0, 0))
        out += [
            f"### N = {n:,} (poll every {poll:g} s, {cycles} cycles)",
            "",
            "| Contender | CPU ms/poll | first cycle CPU ms/poll | RSS/trigger KB | Loop lag p50 / p99 ms | "
            "Req/poll | Polls done / expected | Errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in ("ours", "dbt", "airbyte"):
            r = group.get(name)
            if r is None:
                continue
            if "failed" in r:
                out.append(f"| {NAMES[name]} | failed: {r['failed'][:200]} | | | | | | |")
                continue
            first = r["windows"][0]["cpu_ms_per_poll"] if r["windows"] else None
            out.append(
                f"| {NAMES[name]} | {fmt(_steady(r, 'cpu_ms_per_poll'), 2)} | "
                f"{'n/a' if first is None else f'{first:.2f}'} | {_rss(r):.1f} | "
                f"{r['lag_p50_ms']:.1f} / {r['lag_p99_ms']:.1f} | "
                f"{(r['requests_per_poll'] or 0):.3f} | {r['polls_total']:,} / {r['polls_expected']:,}"
                f"{' (loop overran the run)' if r.get('overrun') else ''} | "
                f"{r['errors']} |"
            )
        ours = group.get("ours")
        if ours and "failed" not in ours:
            ours_cpu = summary(_steady(ours, "cpu_ms_per_poll"))[0]
            lines = []
            for name in ("dbt", "airbyte"):
                r = group.get(name)
                if not r or "failed" in r:
                    continue
                their_cpu = summary(_steady(r, "cpu_ms_per_poll"))[0]
                lines.append(
                    f"{NAMES[name]} / ours: CPU per poll {ratio(their_cpu, ours_cpu)}, "
                    f"RSS per trigger {ratio(_rss(r), _rss(ours))}, "
                    f"p99 loop lag {ratio(r['lag_p99_ms'], ours['lag_p99_ms'])}."
                )
            out += ["", *lines]
            if n == max(by_n):
                out += ["", *_targets(ours)]
        out.append("")
    return out


def _targets(ours: dict[str, Any]) -> list[str]:
    cpu = summary(_steady(ours, "cpu_ms_per_poll"))[0]
    rpp = ours["requests_per_poll"] or 0.0
    return [
        f"Targets for ours at N = {ours['n']:,}:",
        "",
        f"- exactly 1 request per poll: {rpp:.3f} — {'met' if abs(rpp - 1) < 0.005 else '**not met**'} "
        f"(server saw {ours['server']['per_path_min']}–{ours['server']['per_path_max']} requests per "
        "backfill, "
        f"triggers made {ours['polls_per_trigger_min']}–{ours['polls_per_trigger_max']} polls each);",
        f"- at most {TARGETS['cpu_ms_per_poll']:g} ms CPU per poll: {cpu:.2f} ms — "
        f"{met(cpu, TARGETS['cpu_ms_per_poll'])};",
        f"- at most {TARGETS['rss_kb']:g} KB per waiting trigger: {_rss(ours):.1f} KB — "
        f"{met(_rss(ours), TARGETS['rss_kb'])};",
        f"- p99 loop lag under {TARGETS['lag_p99_ms']:g} ms: {ours['lag_p99_ms']:.1f} ms — "
        f"{'met' if ours['lag_p99_ms'] < TARGETS['lag_p99_ms'] else '**not met**'};",
        f"- no errors: {ours['errors']} — {'met' if ours['errors'] == 0 else '**not met**'}.",
    ]


# ------------------------------------------------------------------------------------------------- economy


def economy_section(data: dict[str, Any]) -> list[str]:
    out = ["## 3. API economy", ""]
    if "failed" in data:
        return [*out, f"Not measured: {data['failed']}", ""]
    out += data.get("preamble", [])
    rows = data.get("scenarios", [])
    if rows:
        out += [
            "",
            "| Scenario | Requests | Minimum (1 create + 1 poll per interval) | Ratio | Notes |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            minimum = row.get("minimum")
            ratio_text = f"{row['requests'] / minimum:.2f}" if minimum else "n/a"
            out.append(
                f"| {row['name']} | {row['requests']:,} | {minimum if minimum is not None else 'n/a'} | "
                f"{ratio_text} | {row.get('notes', '')} |"
            )
    for block in ("rate_limit", "shared_polls"):
        if data.get(block):
            out += ["", *data[block]]
    out.append("")
    return out


def summary_section(results: dict[str, Any]) -> list[str]:
    """Headline figures: ours against each contender, at the largest N."""
    rows: list[tuple[str, dict[str, str]]] = []
    if "imports" in results:
        added = {
            k: summary([x["added_s"] * 1000 for x in v["samples"]])[0] for k, v in results["imports"].items()
        }
        rows.append(("DAG-file import cost added, ms", {k: f"{v:.1f}" for k, v in added.items()}))
    if "capacity" in results and results["capacity"]["runs"]:
        top = max(r["n"] for r in results["capacity"]["runs"])
        group = {
            r["contender"]: r for r in results["capacity"]["runs"] if r["n"] == top and "failed" not in r
        }
        if group:
            rows.append(
                (
                    f"CPU ms per poll, N = {top:,}",
                    {k: f"{summary(_steady(r, 'cpu_ms_per_poll'))[0]:.2f}" for k, r in group.items()},
                )
            )
            rows.append(
                (f"RSS per waiting trigger, KB, N = {top:,}", {k: f"{_rss(r):.1f}" for k, r in group.items()})
            )
            rows.append(
                (
                    f"Event-loop lag p99, ms, N = {top:,}",
                    {k: f"{r['lag_p99_ms']:.1f}" for k, r in group.items()},
                )
            )
            rows.append(
                (
                    f"Polls done / expected, N = {top:,}",
                    {k: f"{r['polls_total']:,} / {r['polls_expected']:,}" for k, r in group.items()},
                )
            )
    if not rows:
        return []
    out = [
        "## Summary",
        "",
        "| Figure | " + " | ".join(NAMES[k] for k in NAMES) + " |",
        "|---|" + "---|" * len(NAMES),
    ]
    for label, values in rows:
        out.append(f"| {label} | " + " | ".join(values.get(k, "n/a") for k in NAMES) + " |")
    economy = results.get("economy", {})
    notes = []
    for row in economy.get("scenarios", []):
        if row.get("minimum") and row["name"].startswith("Backfill"):
            times = row["requests"] / row["minimum"]
            notes.append(f"{row['name']}: {row['requests']} requests, {times:.2f}x the minimum")
    rl = economy.get("rate_limit_data")
    if rl:
        notes.append(
            f"{rl['waits']} concurrent waits on one key at 480 requests/minute: {rl['succeeded']} succeeded, "
            f"{rl['failed']} failed, {rl['throttled']} responses 429 absorbed by retries"
        )
    if notes:
        out += ["", *(f"- {n}." for n in notes)]
    return [*out, ""]


def write_report(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# Benchmarks: parse-time cost, triggerer capacity and API economy",
        "",
        f"Generated by `make bench{' BENCH_ARGS=--quick' if results.get('quick') else ''}` "
        f"(`benchmarks/run.py`) on {results['started']}, total wall time {results.get('wall_s', 0) / 60:.1f} "
        "min. Figures are median (min–max); ratios are contender / ours. Methods: `docs/benchmarks.md`.",
        "",
        *machine_info(),
        "- Load average (1/5/15 min) at start "
        + "/".join(f"{x:.2f}" for x in results.get("loadavg_start", ()))
        + ", at end "
        + "/".join(f"{x:.2f}" for x in results.get("loadavg_end", ()))
        + " (anything else running on the 2 cores shows up here).",
        "",
    ]
    if results.get("quick"):
        lines += [
            "> **Quick smoke run** (`--quick`): few samples and small N; do not quote these figures.",
            "",
        ]
    lines += summary_section(results)
    if "imports" in results:
        lines += imports_section(results["imports"])
    if "capacity" in results:
        lines += capacity_section(results["capacity"])
    if "economy" in results:
        lines += economy_section(results["economy"])
    notes = ROOT / "benchmarks" / "NOTES.md"
    if notes.exists():
        lines += ["## Analysis and profiles", "", notes.read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
