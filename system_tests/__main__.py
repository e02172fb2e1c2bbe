"""``python -m system_tests`` (``make test-system``): start everything, run the scenarios, print the figures.

Exit status 0 only if every scenario passed, no secret reached a log and no process of the run survived.
``python -m system_tests --deployment celery outage worker-kill`` runs a subset (names as in the table) on one
deployment (``sqlite``, the default, or ``celery``); without names, the scenarios of that deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from system_tests.deployments import DEPLOYMENTS
from system_tests.harness import API_KEY, S3_SECRET, SystemUnderTest
from system_tests.scenarios import ALL, Result, Scenario, alias_races, race_text

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Per deployment, phases of scenarios run side by side; a phase starts when the previous one has ended.
PHASES: dict[str, list[list[str]]] = {
    # The example DAGs need a steady scheduler and triggerer; then the lone triggerer's restart, alone.
    "sqlite": [["example-dags"], ["triggerer-kill"]],
    "celery": [
        # The outage runs in the background (its own emulator: only its waits see the faults) while the
        # scenarios that need a steady scheduler and triggerers run side by side. worker-kill kills a worker
        # of its own (its own queue), so it shares the phase.
        ["outage", "worker-kill", "clock-skew", "timeouts", "mark-failed", "asset-alias"],
        # Starting 50 and 200 waits takes every worker slot for minutes on 2 cores (the rate-limited ones
        # hold theirs while their requests wait for Retry-After), and the outage's rescheduled sensor needs a
        # slot for each poke. The two overlap well: one waits on its rate limit, the other on the CPU.
        ["rate-limit", "many-waits"],
        # Faults that touch every deferred wait. The database restart alone (the scheduler and triggerers
        # exit with it); a scheduler restart and a triggerer's death together, as in a rolling restart: the
        # triggerers adopt each other's triggers without the scheduler, and neither scenario's waits may
        # notice the other's fault.
        ["postgres-restart"],
        ["scheduler-restart", "two-triggerers"],
    ],
}


def say(text: str) -> None:
    """One progress line, written at once: scenarios run in threads side by side."""
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stdout.flush()


def run_scenario(sut: SystemUnderTest, scenario: Scenario) -> None:
    started = time.monotonic()
    say(f"start {scenario.name}")
    try:
        scenario.run(sut)
        scenario.result.passed = True
    except Exception as exc:  # a scenario failure must not stop the others
        scenario.result.error = f"{type(exc).__name__}: {exc}"
        with open(sut.proc_logs / "scenario-errors.txt", "a") as log:
            log.write(f"== {scenario.name}\n{traceback.format_exc()}\n")
        if scenario.emu is not None:
            with contextlib.suppress(Exception):  # the figures of a failed scenario, as far as they go
                scenario.count_requests()
    try:
        left = scenario.fail_leftovers(sut)
        if left:
            scenario.result.notes.append(f"marked failed at its end, still going: {left}")
    except Exception as exc:  # reported; the next scenarios may then starve, and say so themselves
        scenario.result.notes.append(f"could not fail its leftover runs: {type(exc).__name__}: {exc}")
    scenario.result.seconds = time.monotonic() - started
    verdict = "PASS" if scenario.result.passed else f"FAIL {scenario.result.error}"
    say(f"{scenario.name}: {verdict}")


def run_concurrently(sut: SystemUnderTest, scenarios: Iterable[Scenario]) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=run_scenario, args=(sut, s), name=s.name, daemon=True) for s in scenarios
    ]
    for t in threads:
        t.start()
    return threads


def alias_race_note(sut: SystemUnderTest) -> str:
    where = "PostgreSQL's log" if sut.deployment.name == "celery" else "the api-server's log"
    return f"asset-alias race over the whole run ({where}): {race_text(alias_races(sut))}"


def secret_scan(sut: SystemUnderTest) -> Result:
    """The API key and the S3 secret must be in no log: task, triggerer, scheduler, processes' output."""
    result = Result("secrets-in-logs")
    started = time.monotonic()
    hits = []
    files = [p for d in (sut.home / "logs", sut.proc_logs) for p in d.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for name, secret in (("API key", API_KEY), ("S3 secret", S3_SECRET)):
            if secret.encode() in data:
                hits.append(f"{name} in {path.relative_to(sut.state)}")
    result.notes.append(f"{len(files)} log files scanned")
    result.passed = not hits and len(files) > 0
    result.error = "; ".join(hits[:10])
    result.seconds = time.monotonic() - started
    return result


def table(results: list[Result], total: float, deployment: str) -> str:
    head = (
        "| scenario | result | wall s | backfills created/expected | waits lost | requests | 429s "
        "| 503s/dropped | task retries |"
    )
    lines = [f"Deployment: {deployment}\n", head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r.name} | {'pass' if r.passed else 'FAIL'} | {r.seconds:.0f} | {r.backfills}/{r.expected} | "
            f"{r.lost} | {r.requests} | {r.throttled} | {r.unavailable} | {r.retries} |"
        )
    lines.append(f"\nTotal wall time: {total:.0f} s.\n")
    for r in results:
        for note in r.notes:
            lines.append(f"- {r.name}: {note}")
        if r.error:
            lines.append(f"- {r.name}: **{r.error}**")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    parser = argparse.ArgumentParser(prog="python -m system_tests")
    parser.add_argument("--deployment", choices=sorted(DEPLOYMENTS), default="sqlite")
    parser.add_argument("scenarios", nargs="*", help="names (default: those of the deployment)")
    args = parser.parse_args(argv)
    known = {cls.name for cls in ALL}
    unknown = set(args.scenarios) - known
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {sorted(known)}")
    wanted = set(args.scenarios)
    scenarios = {
        cls.name: cls()
        for cls in ALL
        if (cls.name in wanted if wanted else args.deployment in cls.deployments)
    }
    sut = SystemUnderTest(args.deployment)

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Installed explicitly: a run started in the background of a non-interactive shell inherits SIGINT as
    # ignored, and the Airflow components would inherit that too (a handler is reset to default on exec).
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    results: list[Result] = []
    leftovers: list[int] = []
    try:
        sut.prepare()
        for s in scenarios.values():
            s.setup(sut)
        sut.start_airflow()
        print(f"[{time.strftime('%H:%M:%S')}] Airflow healthy after {time.monotonic() - t0:.0f}s", flush=True)
        sut.wait_dag("system_deferred_waits")

        phases = PHASES[args.deployment]
        phased = {n for phase in phases for n in phase}
        # Scenarios named from the other deployment's list run last, one at a time.
        for phase in [*phases, *([n] for n in scenarios if n not in phased)]:
            for t in run_concurrently(sut, [scenarios[n] for n in phase if n in scenarios]):
                t.join()
        results = [s.result for s in scenarios.values()]
    except KeyboardInterrupt:
        print("interrupted: stopping every process of this run", flush=True)
        results = [s.result for s in scenarios.values()]
        for r in results:
            if not r.passed and not r.error:
                r.error = "interrupted"
    except Exception as exc:
        traceback.print_exc()
        results = [s.result for s in scenarios.values()]
        for r in results:
            if not r.passed and not r.error:
                r.error = f"harness: {type(exc).__name__}: {exc}"
    finally:
        leftovers = sut.stop()
    results.append(secret_scan(sut))
    total = time.monotonic() - t0
    text = table(results, total, args.deployment) + f"- {alias_race_note(sut)}\n"
    if leftovers:
        text += f"\n**Processes left running after stop: {leftovers}**\n"
    figures = sut.state / "figures.md"
    figures.write_text(text)
    print("\n" + text)
    failed = [r.name for r in results if not r.passed]
    print(f"Logs: {sut.state}; figures: {figures}")
    if failed or leftovers:
        print(f"SYSTEM TESTS FAILED: {', '.join(failed) or 'leftover processes'} ({total:.0f}s)")
        return 1
    print(f"SYSTEM TESTS PASSED: {len(results)} scenarios ({total:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
