"""The four waiting tasks wired to lineage, through a real hook on a scripted PostHog (``fake_posthog``): what
they read, when they emit, and never on anything but a verified success. (Real runs against the emulator:
``tests/e2e/test_lineage_*.py``.)

A wait hands lineage the runs its last poll decided on and the export its polls read (in this process, or
in the trigger's event after a deferral), so lineage reads only what its wait did not: the export of a
single run's wait, or, resumed on an event of an older version, the export and the runs again."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from fake_posthog import (
    BACKFILL,
    EXPORT,
    FakePostHog,
    export_row,
    http_error,
    run_row,
    with_async_hook,
    with_hook,
)
from lineage_cases import DESTINATIONS, SECRETS

from airflow_provider_posthog.api.models import Backfill
from airflow_provider_posthog.compat import AirflowSensorTimeout, AirflowSkipException
from airflow_provider_posthog.exceptions import (
    PostHogAPIError,
    PostHogJobFailedError,
    PostHogRemoteFailureError,
    PostHogWaitTimeoutError,
)
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator, PostHogRetryRunOperator
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor, PostHogBatchExportRunSensor
from airflow_provider_posthog.tasks.waiting import make_event

S3_URI = "s3://analytics-lake/posthog/events"
START, MIDDLE, END = "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"
EXPORT_PATH = f"batch_exports/{EXPORT}/"
BACKFILL_PATH = f"batch_exports/{EXPORT}/backfills/{BACKFILL}/"
RUNS_PATH = f"batch_exports/{EXPORT}/runs/"
RUN_PATH = f"batch_exports/{EXPORT}/runs/run-1/"
CLASSES = {
    "backfill": (
        PostHogCreateBackfillOperator,
        {
            "batch_export_id": EXPORT,
            "start_at": START,
            "end_at": END,
            "poll_interval": 0,
            "deferrable": False,
        },
    ),
    "retry": (PostHogRetryRunOperator, {"batch_export_id": EXPORT, "run_id": "run-0"}),
    "backfill_sensor": (PostHogBackfillSensor, {"batch_export_id": EXPORT, "backfill_id": BACKFILL}),
    "run_sensor": (PostHogBatchExportRunSensor, {"batch_export_id": EXPORT, "run_id": "run-1"}),
    "interval_sensor": (
        PostHogBatchExportRunSensor,
        {"batch_export_id": EXPORT, "data_interval_start": START, "data_interval_end": END},
    ),
}


class OutletEvents:
    """``context["outlet_events"]``: records what the task adds to an alias, ``(alias name, asset, extra)``,
    and the extra it gives a declared asset's event, ``(None, asset, extra)``."""

    def __init__(self) -> None:
        self.added: list[tuple[str | None, Any, dict[str, Any]]] = []

    def __getitem__(self, key: Any) -> Any:
        events = self

        class _Accessor:
            def add(self, asset: Any, extra: dict[str, Any]) -> None:
                events.added.append((key.name, asset, extra))

            def __setattr__(self, name: str, value: Any) -> None:
                assert name == "extra"
                events.added.append((None, key, value))

        return _Accessor()


def _fake(backfill: tuple[str, ...] = ("Completed",)) -> FakePostHog:
    """PostHog with an S3 export, a backfill answering ``backfill`` to successive reads, its two completed
    runs (and an older one of another backfill) and ``run-1`` to read by id."""
    fake = FakePostHog(export=export_row(model="events", destination=DESTINATIONS["S3"]))
    # The backfill spans both runs' intervals: the runs listed over its range are those inside it.
    fake.backfill(*backfill, end_at=END)
    fake.run("Completed", run_id="run-1", backfill_id=None)
    fake.run_list = [
        run_row("Completed", run_id="run-1"),
        run_row("Completed", run_id="run-2", start=MIDDLE, end=END),
        run_row("Completed", run_id="other", backfill_id="someone-else", created_at="2024-01-01T23:00:00Z"),
    ]
    return fake


def _task(kind: str, fake: FakePostHog | None = None, **kwargs: Any) -> Any:
    """The task in a DAG, on a real hook answered by ``fake``; creating a backfill is not what these tests
    look at, so the operator's lookup and create calls are mocks."""
    from airflow.sdk import DAG

    cls, required = CLASSES[kind]
    with DAG("lineage_tasks", schedule=None):
        task = cls(task_id=kind, **{**required, **kwargs})
    running = Backfill.from_api(dict(fake.backfills[BACKFILL][0], status="Running")) if fake else None
    with_hook(
        task,
        fake or _fake(),
        find_backfill=mock.Mock(return_value=None),
        create_backfill=mock.Mock(return_value=running),
    )
    return task


def _context(task: Any, *, outlets: bool = True) -> dict[str, Any]:
    """A task runner's context (``outlets=False``: a call outside Airflow's task runner)."""
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = 1, 0
    ti.get_first_reschedule_date.return_value = None
    context: dict[str, Any] = {"ti": ti, "task": task, "dag_run": SimpleNamespace(start_date=None)}
    if outlets:
        context["outlet_events"] = OutletEvents()
    return context


def _success(**ids: Any) -> dict[str, Any]:
    return {**make_event("success", "done", batch_export_id=EXPORT, **ids), "records_completed": 20}


def _added(context: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    return context["outlet_events"].added


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_every_task_has_the_options_and_declares_its_alias(kind: str) -> None:
    from airflow.sdk import AssetAlias

    task = _task(kind)
    assert task.emit_asset_events is True and task.asset_uri is None
    assert task.asset_alias == f"posthog-batch-export:lineage_tasks.{kind}"
    assert AssetAlias(task.asset_alias) in task.outlets
    assert "asset_uri" in task.template_fields
    assert _task(kind, emit_asset_events=False).outlets == []
    assert _task(kind, asset_alias="mine").outlets == [AssetAlias("mine")]
    with pytest.raises(ValueError, match="asset_uri must be a non-empty string"):
        _task(kind, asset_uri=" ")
    with pytest.raises(TypeError, match="emit_asset_events must be True or False"):
        _task(kind, emit_asset_events="no")


def test_construction_reads_nothing() -> None:
    with mock.patch("airflow_provider_posthog.hooks.posthog.PostHogHook") as hook_class:
        for kind, (cls, required) in CLASSES.items():
            cls(task_id=kind, **required)
    hook_class.assert_not_called()


# ------------------------------------------------------------------------- a wait that succeeded in process


def _sync_wait(kind: str, emit: bool) -> tuple[Any, dict[str, Any], FakePostHog]:
    """Run ``kind``'s wait to success in this process (the operator's worker loop, or the sensor's pokes):
    what it waits on is running at the first poll and done at the second."""
    fake = _fake(("Running", "Completed"))
    if kind == "run_sensor":
        fake.run("Running", "Completed", run_id="run-1", backfill_id=None)
    if kind == "interval_sensor":
        fake.run_list = [[dict(row, status="Running") for row in fake.run_list], fake.run_list]
    mode = {"mode": "poke"} if "sensor" in kind else {}
    task = _task(kind, fake, emit_asset_events=emit, **mode)
    context = _context(task)
    if "sensor" in kind:
        assert [task.poke(context) for _ in range(2)] == [False, True]
    else:
        assert task.execute(context) == BACKFILL
    return task, context, fake


@pytest.mark.parametrize("kind", ["backfill", "backfill_sensor", "run_sensor", "interval_sensor"])
def test_a_wait_that_succeeded_here_emits_once_reading_at_most_the_export(kind: str) -> None:
    """The runs come from the poll that decided the success, and the export from the wait's polls where
    they read it (a finished backfill's poll, an interval's first poll): lineage reads only the export of a
    single run's wait; the same wait without asset events sends everything else."""
    task, context, fake = _sync_wait(kind, emit=True)
    extra_reads = Counter({EXPORT_PATH: 1}) if kind == "run_sensor" else Counter()
    _, off_context, off = _sync_wait(kind, emit=False)
    ((alias, asset, extra),) = _added(context)
    assert (alias, asset.uri) == (task.asset_alias, S3_URI)
    assert not any(secret in repr(extra) for secret in SECRETS)
    assert _added(off_context) == []
    assert Counter(fake.paths()) - Counter(off.paths()) == extra_reads
    assert Counter(off.paths()) - Counter(fake.paths()) == Counter()
    expected = {
        "backfill": (["run-1", "run-2"], BACKFILL, 20),
        "backfill_sensor": (["run-1", "run-2"], BACKFILL, 20),
        "run_sensor": (["run-1"], None, 10),
        "interval_sensor": (["run-1", "run-2"], None, 20),
    }[kind]
    assert (extra["run_ids"], extra["backfill_id"], extra["records_completed"]) == expected
    # OpenLineage reads nothing more either.
    lineage = task.get_openlineage_facets_on_complete(None)
    assert lineage.outputs[0].outputFacets["outputStatistics"].rowCount == expected[2]
    assert Counter(fake.paths()) - Counter(off.paths()) == extra_reads


def test_the_interval_sensor_reports_the_newest_completed_run_of_each_interval_inside_its_window() -> None:
    fake = _fake()
    retried = {"start": MIDDLE, "end": END, "backfill_id": None}
    fake.run_list = [
        run_row("Completed", run_id="hour-1", backfill_id=None),
        run_row("Failed", run_id="hour-2-first", created_at="2024-01-02T00:00:00Z", **retried),
        run_row("Completed", run_id="hour-2-retry", created_at="2024-01-02T00:05:00Z", **retried),
        run_row("Completed", run_id="before", start="2023-12-31T23:00:00Z", end=START, backfill_id=None),
    ]
    task = _task("interval_sensor", fake, mode="poke")
    context = _context(task)
    assert task.poke(context) is True
    ((_, _, extra),) = _added(context)
    assert extra["run_ids"] == ["hour-1", "hour-2-retry"] and extra["records_completed"] == 20
    assert (extra["data_interval_start"], extra["data_interval_end"]) == (
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T02:00:00+00:00",
    )
    assert fake.paths().count(RUNS_PATH) == 1


def _backfill_failed() -> FakePostHog:
    fake = _fake()
    fake.run_list = [*fake.run_list, run_row("Failed", run_id="run-3", latest_error="S3 AccessDenied")]
    return fake


def _backfill_running() -> FakePostHog:
    return _fake(("Running",))


@pytest.mark.parametrize(
    ("kind", "script", "kwargs", "error"),
    [
        ("backfill", _backfill_failed, {}, PostHogJobFailedError),
        ("backfill", _backfill_running, {"timeout": 0.05, "cancel_on_kill": False}, PostHogWaitTimeoutError),
        ("backfill_sensor", _backfill_failed, {}, PostHogRemoteFailureError),
        ("backfill_sensor", _backfill_failed, {"soft_fail": True}, AirflowSkipException),
        ("backfill_sensor", _backfill_running, {"timeout": 0.05}, AirflowSensorTimeout),
    ],
    ids=["operator-failed", "operator-timeout", "sensor-failed", "sensor-soft-fail", "sensor-timeout"],
)
def test_a_wait_that_ended_otherwise_here_emits_nothing_and_reads_nothing_more(
    kind: str, script: Any, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """Failure, timeout and soft-fail skip never reach lineage: the same wait without asset events sends the
    same requests (polls of a running backfill aside: a timeout's count of them varies)."""
    sent = []
    for emit in (True, False):
        fake = script()
        mode = {"mode": "poke", "poke_interval": 0} if "sensor" in kind else {}
        task = _task(kind, fake, emit_asset_events=emit, **mode, **kwargs)
        context = _context(task)
        with pytest.raises(error):
            task.execute(context)
        assert _added(context) == []
        assert task.get_openlineage_facets_on_complete(None) is None
        sent.append([path for path in fake.paths() if path != BACKFILL_PATH])
    with_events, without = sent
    assert with_events == without


# --------------------------------------------------------------------------- a wait resumed after a deferral


@pytest.mark.parametrize("kind", ["backfill", "retry", "backfill_sensor"])
def test_a_resumed_backfill_wait_polls_its_backfill_again_for_the_runs_it_counted(kind: str) -> None:
    """``execute_complete`` of a fresh instance has only the trigger's event: it reads the export for the
    asset once per task instance, and polls the backfill again (backfill, export, runs over its range), so
    the event lists the runs the wait's own rule counted, runs PostHog adopted into the backfill included."""
    fake = _fake()
    task = _task(kind, fake)
    context = _context(task)
    task.execute_complete(context, _success(backfill_id=BACKFILL))
    ((alias, asset, extra),) = _added(context)
    assert (alias, asset.uri) == (task.asset_alias, S3_URI)
    assert extra["backfill_id"] == BACKFILL and extra["run_ids"] == ["run-1", "run-2"]
    assert extra["records_completed"] == 20 and extra["batch_export_id"] == EXPORT
    assert extra["intervals"][1] == {"start": "2024-01-01T01:00:00+00:00", "end": "2024-01-01T02:00:00+00:00"}
    assert not any(secret in repr(extra) for secret in SECRETS)
    assert fake.paths() == [EXPORT_PATH, BACKFILL_PATH, EXPORT_PATH, RUNS_PATH]
    # A second success of the same instance (a sensor re-poked) reads the export for the asset no more.
    task.execute_complete(context, _success(backfill_id=BACKFILL))
    poll = [BACKFILL_PATH, EXPORT_PATH, RUNS_PATH]
    assert fake.paths() == [EXPORT_PATH, *poll, *poll]
    assert len(_added(context)) == 2


@pytest.mark.parametrize("kind", ["backfill", "backfill_sensor", "interval_sensor"])
async def test_a_wait_resumed_on_its_triggers_event_reads_nothing_more(kind: str) -> None:
    """The trigger's success event carries the export's identity (never a credential) and the runs it
    counted: the resumed task emits the same asset event as a wait that succeeded in its own process, and
    OpenLineage gets its counts, without a request."""
    import json

    from airflow_provider_posthog.triggers.batch_export import (
        PostHogBackfillTrigger,
        PostHogBatchExportRunTrigger,
    )

    fake = _fake()
    trigger: Any
    if kind == "interval_sensor":
        fake.run_list = fake.run_list[:2]
        trigger = PostHogBatchExportRunTrigger(
            batch_export_id=EXPORT, data_interval_start=START, data_interval_end=END, poll_interval=0
        )
    else:
        trigger = PostHogBackfillTrigger(batch_export_id=EXPORT, backfill_id=BACKFILL, poll_interval=0)
    with_async_hook(trigger, fake)
    (event,) = [e async for e in trigger.run()]
    payload = json.loads(json.dumps(event.payload))  # as it crosses Airflow's database
    assert payload["status"] == "success" and payload["export"]["id"] == EXPORT
    assert not any(secret in json.dumps(payload) for secret in SECRETS)
    polled = len(fake.sent)
    task = _task(kind, fake)
    context = _context(task)
    task.execute_complete(context, payload)
    ((alias, asset, extra),) = _added(context)
    assert (alias, asset.uri) == (task.asset_alias, S3_URI)
    assert (extra["run_ids"], extra["records_completed"]) == (["run-1", "run-2"], 20)
    lineage = task.get_openlineage_facets_on_complete(None)
    assert lineage.outputs[0].outputFacets["outputStatistics"].rowCount == 20
    assert fake.sent[polled:] == []


def test_a_resumed_interval_wait_lists_the_runs_again() -> None:
    fake = _fake()
    task = _task("interval_sensor", fake)
    context = _context(task)
    task.execute_complete(context, _success())
    ((_, _, extra),) = _added(context)
    assert extra["run_ids"] == ["run-1", "run-2"] and extra["records_completed"] == 20
    assert fake.paths() == [EXPORT_PATH, RUNS_PATH]


def test_asset_uri_overrides_the_destination() -> None:
    fake = _fake()
    task = _task("run_sensor", fake, asset_uri="snowflake://acme/db/raw/{{ task.task_id }}")
    task.asset_uri = "snowflake://acme/db/raw/run_sensor"  # as Airflow renders it before the task runs
    context = _context(task)
    task.execute_complete(context, _success(run_id="run-1"))
    ((alias, asset, extra),) = _added(context)
    assert (alias, asset.uri) == (task.asset_alias, "snowflake://acme/db/raw/run_sensor")
    assert (extra["run_ids"], extra["backfill_id"], extra["records_completed"]) == (["run-1"], None, 10)
    assert fake.paths() == [EXPORT_PATH, RUN_PATH]


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("backfill", "failed", PostHogJobFailedError),
        ("backfill", "timeout", Exception),
        ("backfill", "error", Exception),
        ("backfill_sensor", "failed", PostHogRemoteFailureError),
        ("run_sensor", "timeout", Exception),
    ],
)
def test_no_event_and_no_read_unless_the_resumed_wait_succeeded(kind: str, status: str, error: type) -> None:
    fake = _fake()
    task = _task(kind, fake, cancel_on_kill=False) if kind == "backfill" else _task(kind, fake)
    context = _context(task)
    event = make_event(status, "not done", batch_export_id=EXPORT, backfill_id=BACKFILL)
    with pytest.raises(error):
        task.execute_complete(context, event)
    assert _added(context) == [] and fake.sent == []
    # The OpenLineage failure facets still name the datasets and the job (the export read lazily).
    lineage = task.get_openlineage_facets_on_failure(None)
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://analytics-lake", "posthog/events")]
    assert lineage.run_facets["externalQuery"].externalQueryId == BACKFILL
    assert fake.paths() == [EXPORT_PATH]


def test_turned_off_or_outside_the_task_runner_reads_nothing() -> None:
    off = _task("backfill", emit_asset_events=False)
    bare = _task("backfill")
    for task, context in ((off, _context(off)), (bare, _context(bare, outlets=False))):
        assert task.execute_complete(context, _success(backfill_id=BACKFILL)) == BACKFILL
        assert task.hook.fake.sent == []
        assert not context.get("outlet_events") or _added(context) == []


def test_a_failed_read_after_success_fails_the_task_so_a_retry_emits() -> None:
    fake = _fake().fail_next(1, http_error(503))
    task = _task("backfill", fake)
    context = _context(task)
    with pytest.raises(PostHogAPIError):
        task.execute_complete(context, _success(backfill_id=BACKFILL))
    assert _added(context) == []
    assert fake.paths() == [EXPORT_PATH]


def test_openlineage_on_complete_carries_the_counts_and_survives_a_failed_read() -> None:
    task = _task("backfill")
    task.execute_complete(_context(task), _success(backfill_id=BACKFILL))
    lineage = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("posthog://ph.test/project/1", "events")]
    assert lineage.outputs[0].outputFacets["outputStatistics"].rowCount == 20
    assert lineage.run_facets["externalQuery"].externalQueryId == BACKFILL

    # Verified outside the task runner (nothing read then), and PostHog fails the read OpenLineage makes.
    fake = _fake()
    broken = _task("backfill", fake)
    broken.execute_complete(_context(broken, outlets=False), _success(backfill_id=BACKFILL))
    fake.fail_next(1, http_error(500))
    assert broken.get_openlineage_facets_on_complete(None) is None
    assert fake.paths() == [EXPORT_PATH]


def test_no_openlineage_datasets_when_the_task_did_not_wait() -> None:
    """``wait_for_completion=False``: the backfill was only started, nothing is claimed as written."""
    fake = _fake()
    task = _task("backfill", fake, wait_for_completion=False)
    context = _context(task)
    assert task.execute(context) == BACKFILL
    assert _added(context) == []
    assert task.get_openlineage_facets_on_complete(None) is None
    assert fake.sent == []
