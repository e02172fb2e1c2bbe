"""The summary ``make demo`` prints (pure function; the demo itself runs the real DAG)."""

from __future__ import annotations

from scripts.demo import build_summary

EXPORT = {"id": "e1", "name": "demo", "interval": "hour"}
BACKFILL = {"id": "b1", "status": "Completed", "start_at": "2024-01-01 00:00", "end_at": "2024-01-01 02:00"}


def _runs(*statuses: str) -> list[dict[str, object]]:
    return [{"backfill": "b1", "status": s, "records_completed": 100} for s in statuses] + [
        {"backfill": None, "status": "Failed", "records_completed": 7}  # a scheduled run: not counted
    ]


def test_summary_reports_export_backfill_runs_records_and_link() -> None:
    text, ok = build_summary(
        export=EXPORT,
        backfills=[BACKFILL],
        runs=_runs("Completed", "Completed"),
        link="http://ph/x",
        dag_ok=True,
        seconds=3.2,
    )
    assert ok
    assert "succeeded" in text and "demo (e1)" in text and "b1" in text and "Completed" in text
    assert "2 completed, 0 not completed" in text and "records   : 200" in text and "http://ph/x" in text


def test_summary_fails_on_a_failed_run_a_failed_dag_or_a_duplicate_backfill() -> None:
    args = {"export": EXPORT, "link": "l", "seconds": 1.0}
    assert not build_summary(backfills=[BACKFILL], runs=_runs("Completed", "Failed"), dag_ok=True, **args)[1]
    assert not build_summary(backfills=[BACKFILL], runs=_runs("Completed"), dag_ok=False, **args)[1]
    text, ok = build_summary(backfills=[BACKFILL, BACKFILL], runs=_runs("Completed"), dag_ok=True, **args)
    assert not ok and "expected exactly one" in text
    text, ok = build_summary(backfills=[], runs=[], dag_ok=True, **args)
    assert not ok and "FAILED" in text
