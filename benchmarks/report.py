"""Turn the runner's raw figures into ``benchmarks/RESULTS.md``.

Every figure is ``median (min–max)`` over the samples (import cost) or over the steady-state poll cycles
(capacity); ratios are *contender / ours*, so ``12x`` means the contender costs twelve times what we cost.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
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
#: Our targets (each printed with met or missed): parse-time cost, then triggerer capacity at the largest N.
MAX_OUR_MODULES = 20  # modules of the provider a DAG file loads
MAX_IMPORT_SHARE = 0.005  # added import time / the `airflow.sdk` import of the same run
MAX_CPU_VS_DBT = 0.5  # CPU per poll / dbt Cloud's, same run
MAX_RSS_KB = 10.0  # RSS per waiting trigger
MAX_LAG_VS_DBT = 1.0  # p99 loop lag / dbt Cloud's, same run
#: A 1-minute load average above this at the start means something else was using the machine.
LOAD_THRESHOLD = 0.5
PACKAGES = (
    "apache-airflow",
    "apache-airflow-core",
    "apache-airflow-task-sdk",
    "airflow-provider-posthog",
    "apache-airflow-providers-dbt-cloud",
    "apache-airflow-providers-airbyte",
    "apache-airflow-providers-openlineage",
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


@dataclass(frozen=True)
class Check:
    """One target of ours, as measured in this run."""

    area: str
    target: str
    measured: str
    met: bool

    @property
    def verdict(self) -> str:
        return "met" if self.met else "**missed**"


def under_load(results: dict[str, Any]) -> float | None:
    """The 1-minute load average at the start when it says something else was using the machine."""
    start = results.get("loadavg_start") or ()
    return float(start[0]) if start and start[0] > LOAD_THRESHOLD else None


# ------------------------------------------------------------------------------------------------- imports


def _median_ms(samples: list[dict[str, Any]], key: str) -> float:
    return summary([s[key] * 1000 for s in samples])[0]


def _baseline_ms(data: dict[str, Any]) -> list[float]:
    return [s["baseline_s"] * 1000 for r in data.values() for s in r["samples"]]


def _our_modules(data: dict[str, Any]) -> list[str]:
    last = data["ours"]["last"]
    return list(last.get("our_modules", []))


def import_checks(data: dict[str, Any]) -> list[Check]:
    added = _median_ms(data["ours"]["samples"], "added_s")
    baseline = summary(_baseline_ms(data))[0]
    modules = len(_our_modules(data))
    return [
        Check(
            "Parse time",
            f"at most {MAX_OUR_MODULES} of our modules loaded by a DAG file",
            f"{modules}",
            modules <= MAX_OUR_MODULES,
        ),
        Check(
            "Parse time",
            f"added time at most {MAX_IMPORT_SHARE * 100:g} % of the `airflow.sdk` import",
            f"{added:.1f} ms = {added / baseline * 100:.2f} % of {baseline:.0f} ms" if baseline else "n/a",
            bool(baseline) and added <= MAX_IMPORT_SHARE * baseline,
        ),
    ]


def imports_section(data: dict[str, Any]) -> list[str]:
    ours = [s["added_s"] * 1000 for s in data["ours"]["samples"]]
    out = [
        "## 1. Parse-time import cost",
        "",
        "What a DAG file pays to import the provider's operator and sensor modules, on top of "
        "`from airflow.sdk import DAG, BaseOperator, BaseSensorOperator` (which every DAG file pays anyway: "
        f"{fmt(_baseline_ms(data), 0)} ms here). Fresh interpreter per sample, bytecode compiled, "
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
    mods = _our_modules(data)
    out += [
        "",
        f"Of ours, {len(mods)} modules of the provider itself are loaded: "
        + (", ".join(f"`{m}`" for m in mods) or "none")
        + ".",
        "",
        "Targets for ours:",
        "",
        *(f"- {c.target}: {c.measured} — {c.verdict};" for c in import_checks(data)),
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


def _cpu(run: dict[str, Any]) -> float:
    return summary(_steady(run, "cpu_ms_per_poll"))[0]


def _top_group(data: dict[str, Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    """The largest N and its runs by contender (failed runs left out)."""
    top = max(r["n"] for r in data["runs"])
    return top, {r["contender"]: r for r in data["runs"] if r["n"] == top and "failed" not in r}


def capacity_checks(data: dict[str, Any]) -> list[Check]:
    if not data.get("runs"):
        return []
    top, group = _top_group(data)
    ours, dbt = group.get("ours"), group.get("dbt")
    if ours is None:
        return [Check("Capacity", f"our triggers at N = {top:,}", "the run failed", False)]
    area = f"Capacity, N = {top:,}"
    rpp = ours["requests_per_poll"] or 0.0
    checks = []
    if dbt is not None:
        checks.append(
            Check(
                area,
                f"CPU per poll at most {MAX_CPU_VS_DBT:g}x dbt Cloud's",
                f"{_cpu(ours):.2f} ms vs {_cpu(dbt):.2f} ms ({_cpu(ours) / _cpu(dbt):.2f}x)",
                _cpu(ours) <= MAX_CPU_VS_DBT * _cpu(dbt),
            )
        )
    checks.append(
        Check(
            area,
            f"RSS per waiting trigger at most {MAX_RSS_KB:g} KB",
            f"{_rss(ours):.1f} KB",
            _rss(ours) <= MAX_RSS_KB,
        )
    )
    if dbt is not None:
        checks.append(
            Check(
                area,
                "p99 event-loop lag at most dbt Cloud's",
                f"{ours['lag_p99_ms']:.1f} ms vs {dbt['lag_p99_ms']:.1f} ms",
                ours["lag_p99_ms"] <= MAX_LAG_VS_DBT * dbt["lag_p99_ms"],
            )
        )
    checks += [
        Check(area, "at most 1 request per poll", f"{rpp:.3f}", rpp <= 1.0005),
        Check(area, "no errors", f"{ours['errors']}", ours["errors"] == 0),
    ]
    return checks


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
    by_n: dict[int, dict[str, dict[str, Any]]] = {}
    for r in data["runs"]:
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
            lines = []
            for name in ("dbt", "airbyte"):
                r = group.get(name)
                if not r or "failed" in r:
                    continue
                lines.append(
                    f"{NAMES[name]} / ours: CPU per poll {ratio(_cpu(r), _cpu(ours))}, "
                    f"RSS per trigger {ratio(_rss(r), _rss(ours))}, "
                    f"p99 loop lag {ratio(r['lag_p99_ms'], ours['lag_p99_ms'])}."
                )
            out += ["", *lines]
            if n == max(by_n):
                out += [
                    "",
                    f"Targets for ours at N = {n:,} (server saw {ours['server']['per_path_min']}–"
                    f"{ours['server']['per_path_max']} requests per backfill, triggers made "
                    f"{ours['polls_per_trigger_min']}–{ours['polls_per_trigger_max']} polls each):",
                    "",
                    *(f"- {c.target}: {c.measured} — {c.verdict};" for c in capacity_checks(data)),
                ]
        out.append("")
    return out


# ------------------------------------------------------------------------------------------------- economy


def _behind(row: dict[str, Any]) -> str:
    """A warning when the event loop could not keep up (fewer polls, so fewer requests, than the scenario
    asks for): the row's figures then understate or distort what the waits cost."""
    polls, expected = row.get("polls"), row.get("polls_expected")
    if not polls or not expected or polls >= 0.9 * expected:
        return ""
    return f" (the event loop fell behind: {polls / expected:.0%} of the polls were made)"


def _reference_text(row: dict[str, Any]) -> str:
    reference = row.get("reference")
    return "n/a" if reference is None else f"{reference:,} ({row.get('reference_label', '')})"


def _row_ratio(row: dict[str, Any]) -> float | None:
    reference = row.get("reference")
    return row["requests"] / reference if reference else None


def economy_checks(data: dict[str, Any]) -> list[Check]:
    checks = []
    for row in data.get("scenarios", []):
        target = row.get("target")
        if target is None:
            continue
        value = _row_ratio(row)
        what = "the minimum" if str(row.get("reference_label", "")).startswith("minimum") else "one wait"
        checks.append(
            Check(
                "API economy",
                f"{row.get('short', row['name'])}: at most {target:g}x {what}",
                "failed"
                if value is None
                else f"{row['requests']:,} requests = {value:.3f}x {row['reference']:,}{_behind(row)}",
                value is not None and value <= target + 1e-9,
            )
        )
    return checks


def economy_section(data: dict[str, Any]) -> list[str]:
    out = ["## 3. API economy", ""]
    if "failed" in data:
        return [*out, f"Not measured: {data['failed']}", ""]
    out += data.get("preamble", [])
    rows = data.get("scenarios", [])
    if rows:
        out += [
            "",
            "| Scenario | Requests | Compared with | Ratio | Target | Requests by kind, notes |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows:
            value = _row_ratio(row)
            target = row.get("target")
            verdict = (
                ""
                if target is None
                else f"≤ {target:g}x: "
                + ("met" if value is not None and value <= target + 1e-9 else "**missed**")
            )
            out.append(
                f"| {row['name']} | {row['requests']:,} | "
                f"{_reference_text(row)} | "
                f"{'n/a' if value is None else f'{value:.2f}'} | {verdict} | {row.get('notes', '')} |"
            )
    if data.get("rate_limit"):
        out += ["", *data["rate_limit"]]
    out.append("")
    return out


# ------------------------------------------------------------------------------------------------- summary


def all_checks(results: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "imports" in results:
        checks += import_checks(results["imports"])
    if "capacity" in results:
        checks += capacity_checks(results["capacity"])
    economy = results.get("economy", {})
    if "failed" not in economy:
        checks += economy_checks(economy)
    return checks


def summary_section(results: dict[str, Any]) -> list[str]:
    """Headline figures (ours against each contender, at the largest N), the economy rows, our targets."""
    rows: list[tuple[str, dict[str, str]]] = []
    if "imports" in results:
        added = {
            k: summary([x["added_s"] * 1000 for x in v["samples"]])[0] for k, v in results["imports"].items()
        }
        rows.append(("DAG-file import cost added, ms", {k: f"{v:.1f}" for k, v in added.items()}))
    if "capacity" in results and results["capacity"]["runs"]:
        top, group = _top_group(results["capacity"])
        if group:
            rows += [
                (f"CPU ms per poll, N = {top:,}", {k: f"{_cpu(r):.2f}" for k, r in group.items()}),
                (
                    f"RSS per waiting trigger, KB, N = {top:,}",
                    {k: f"{_rss(r):.1f}" for k, r in group.items()},
                ),
                (
                    f"Event-loop lag p99, ms, N = {top:,}",
                    {k: f"{r['lag_p99_ms']:.1f}" for k, r in group.items()},
                ),
                (
                    f"Polls done / expected, N = {top:,}",
                    {k: f"{r['polls_total']:,} / {r['polls_expected']:,}" for k, r in group.items()},
                ),
            ]
    out = ["## Summary", ""]
    if rows:
        out += [
            "| Figure | " + " | ".join(NAMES[k] for k in NAMES) + " |",
            "|---|" + "---|" * len(NAMES),
            *(f"| {label} | " + " | ".join(v.get(k, "n/a") for k in NAMES) + " |" for label, v in rows),
            "",
        ]
    economy = results.get("economy", {})
    scenarios = economy.get("scenarios", [])
    if scenarios:
        out += [
            "API economy, ours (section 3), lineage on:",
            "",
            "| Scenario | Requests | Compared with | Ratio |",
            "|---|---|---|---|",
        ]
        for row in scenarios:
            value = _row_ratio(row)
            out.append(
                f"| {row['name']} | {row['requests']:,} | "
                f"{_reference_text(row)} | "
                f"{'n/a' if value is None else f'{value:.2f}x'} |"
            )
        rl = economy.get("rate_limit_data")
        if rl:
            out += [
                "",
                f"{rl['waits']} concurrent waits on one key at 480 requests/minute: {rl['succeeded']} "
                f"succeeded, {rl['failed']} failed, {rl['throttled']} responses 429 absorbed by retries.",
            ]
        out.append("")
    checks = all_checks(results)
    if checks:
        missed = [c for c in checks if not c.met]
        out += [
            f"Our targets in this run: {len(checks) - len(missed)} of {len(checks)} met"
            + (f"; missed: {'; '.join(f'{c.area}: {c.target}' for c in missed)}." if missed else "."),
            "",
            "| Area | Target | Measured | Result |",
            "|---|---|---|---|",
            *(f"| {c.area} | {c.target} | {c.measured} | {c.verdict} |" for c in checks),
            "",
        ]
    return out


def headlines(results: dict[str, Any]) -> list[str]:
    """The figures README quotes, from this run, one line each (``make bench`` prints them)."""
    lines: list[str] = []
    if "imports" in results:
        data = results["imports"]
        added = {k: _median_ms(v["samples"], "added_s") for k, v in data.items()}
        times = {k: ratio(added.get(k, 0), added["ours"]) for k in ("dbt", "airbyte")}
        lines.append(
            f"Parse time: our operators and sensors add {added['ours']:.1f} ms to a DAG file's imports "
            f"({len(_our_modules(data))} of our modules; dbt Cloud {times['dbt']}, "
            f"Airbyte {times['airbyte']} as much)."
        )
    if results.get("capacity", {}).get("runs"):
        top, group = _top_group(results["capacity"])
        ours, dbt = group.get("ours"), group.get("dbt")
        if ours:
            versus = f" (dbt Cloud: {_cpu(dbt):.2f} ms, {dbt['lag_p99_ms']:.1f} ms)" if dbt else ""
            lines.append(
                f"Triggerer: {top:,} waiting triggers in one event loop cost {_cpu(ours):.2f} ms CPU per "
                f"poll, {_rss(ours):.1f} KB each, p99 loop lag {ours['lag_p99_ms']:.1f} ms{versus}."
            )
    for row in results.get("economy", {}).get("scenarios", []):
        value = _row_ratio(row)
        if value is not None:
            steady = row.get("requests_per_interval_after")
            lines.append(
                f"API economy, {row.get('short', row['name'])}: {row['requests']:,} requests, {value:.2f}x "
                f"{'the minimum' if str(row.get('reference_label')).startswith('minimum') else 'one wait'} "
                f"({row['reference']:,})"
                + (
                    f"; once every wait had polled, {steady:.1f} requests per poll interval (one wait: 1)"
                    if steady is not None
                    else ""
                )
                + "."
            )
    rl = results.get("economy", {}).get("rate_limit_data")
    if rl:
        lines.append(
            f"Rate limits: {rl['waits']} concurrent waits on one key at 480 requests/minute: "
            f"{rl['succeeded']} succeeded, {rl['throttled']} responses 429 absorbed."
        )
    checks = all_checks(results)
    if checks:
        missed = [c for c in checks if not c.met]
        lines.append(
            f"Targets: {len(checks) - len(missed)} of {len(checks)} met"
            + (": missed " + "; ".join(f"{c.target} ({c.measured})" for c in missed) if missed else "")
            + "."
        )
    if under_load(results) is not None:
        lines.append(f"(The machine was under load at the start: 1-minute load {under_load(results):.2f}.)")
    return lines


def write_report(results: dict[str, Any], path: Path) -> None:
    load = under_load(results)
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
        + " (anything else running on the machine shows up here).",
        "",
    ]
    if load is not None:
        lines += [
            f"> **This run was under load**: the 1-minute load average was {load:.2f} when it started (above "
            f"{LOAD_THRESHOLD:g}), so something else was using the CPU. Timings (import times, CPU per poll, "
            "loop lag) may be inflated; request counts are not affected.",
            "",
        ]
    if results.get("quick"):
        lines += [
            "> **Quick smoke run** (`--quick`): few samples, small N, short waits; do not quote its figures.",
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
    if notes.exists():  # appended once, under its own heading
        lines += ["## Analysis and profiles", "", notes.read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
