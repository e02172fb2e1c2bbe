"""``batch_export_name=`` wherever ``batch_export_id`` is: exactly one of the two, checked before any request;
a name found when the task runs with one list request, by the one rule of ``api.endpoints.exports_named``, and
used exactly as a given id (XCom, links, trigger). Real operators and sensors over a real hook answered by an
in-memory PostHog that also lists exports; no DAG run, no HTTP."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pendulum
import pytest
from fake_posthog import BACKFILL, FakePostHog, backfill_row, run_row, with_hook

import airflow_provider_posthog.operators
import airflow_provider_posthog.sensors
from airflow_provider_posthog.api.endpoints import exports_named
from airflow_provider_posthog.api.models import Backfill, BatchExport
from airflow_provider_posthog.compat import TaskDeferred
from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.operators.backfill import (
    PostHogCancelBackfillOperator,
    PostHogCancelRunOperator,
    PostHogCreateBackfillOperator,
    PostHogRetryRunOperator,
)
from airflow_provider_posthog.operators.batch_export import (
    PostHogDeleteBatchExportOperator,
    PostHogPauseBatchExportOperator,
    PostHogUnpauseBatchExportOperator,
    PostHogUpdateBatchExportOperator,
)
from airflow_provider_posthog.sensors.batch_export import PostHogBackfillSensor, PostHogBatchExportRunSensor
from airflow_provider_posthog.tasks.args import ExportRef

SECRET = "wJalrXUtnFEMI-K7MDENG-names-SECRET"
S3_ID, BQ_ID, TWIN_ID, NEAR_ID = "0190-s3", "0190-bq", "0190-s3-twin", "0190-near"
LIST_PATH = "batch_exports/"
START, END = "2024-01-01T00:00:00+00:00", "2024-01-01T01:00:00+00:00"


def _export(export_id: str, name: str) -> dict[str, Any]:
    return {
        "id": export_id,
        "name": name,
        "interval": "hour",
        "paused": False,
        "destination": {"type": "S3", "config": {"bucket_name": "b", "aws_secret_access_key": SECRET}},
    }


class NamedPostHog(FakePostHog):
    """The scripted PostHog, plus the list of exports (one page) and pause/delete of an export."""

    def __init__(self, *exports: dict[str, Any]) -> None:
        super().__init__()
        self.exports = list(exports) or [_export(S3_ID, "events to S3"), _export(BQ_ID, "events to BigQuery")]

    def answer(self, spec: Any) -> Any:
        if spec.path == LIST_PATH and spec.method == "GET":
            self.sent.append(spec)
            return {"count": len(self.exports), "next": None, "results": [dict(e) for e in self.exports]}
        if (spec.method == "POST" and spec.path.endswith("/pause/")) or spec.method == "DELETE":
            self.sent.append(spec)
            return None
        return super().answer(spec)


def _context(try_number: int = 1, **extra: Any) -> dict[str, Any]:
    ti = mock.MagicMock()
    ti.try_number, ti.max_tries = try_number, 1
    ti.get_first_reschedule_date.return_value = None
    return {
        "ti": ti,
        "task": SimpleNamespace(retries=0),
        "dag_run": SimpleNamespace(start_date=pendulum.parse("2024-01-01T23:59:00+00:00")),
        **extra,
    }


def _pushed(context: dict[str, Any]) -> dict[str, Any]:
    return {c.kwargs["key"]: c.kwargs["value"] for c in context["ti"].xcom_push.call_args_list}


# -- the rule ------------------------------------------------------------------------------------------------


def test_names_match_exactly_and_near_misses_are_told_apart() -> None:
    exports = [
        BatchExport.from_api(_export(S3_ID, "events to S3")),
        BatchExport.from_api(_export(NEAR_ID, " Events  to s3")),
        BatchExport.from_api(_export(BQ_ID, "events to BigQuery")),
    ]
    found = exports_named("events to S3", exports)
    assert [e.id for e in found.matches] == [S3_ID]
    assert [e.id for e in found.similar] == [NEAR_ID]
    assert found.listed == 3
    assert exports_named("events", exports).matches == ()


@pytest.mark.parametrize(
    ("given_id", "name", "expected"),
    [
        ("e1", None, ExportRef(id="e1")),
        (None, "events", ExportRef(name="events")),
    ],
)
def test_export_ref_takes_exactly_one(given_id: Any, name: Any, expected: ExportRef) -> None:
    assert ExportRef.of(given_id, name) == expected
    with pytest.raises(PostHogConfigError, match=r"batch_export_id or batch_export_name, not both .*'e1'"):
        ExportRef.of("e1", "events")
    with pytest.raises(PostHogConfigError, match=r"batch_export_id is required: .*batch_export_name"):
        ExportRef.of(None, None)


# -- every task that takes an id takes a name ----------------------------------------------------------------


def _tasks_with_an_export_id() -> list[type]:
    found: dict[str, type] = {}
    for package in (airflow_provider_posthog.operators, airflow_provider_posthog.sensors):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for _, cls in inspect.getmembers(module, inspect.isclass):
                fields = getattr(cls, "template_fields", ())
                if cls.__module__ == module.__name__ and "batch_export_id" in fields:
                    found[cls.__qualname__] = cls
    return list(found.values())


def test_every_task_with_batch_export_id_takes_a_templated_batch_export_name() -> None:
    classes = _tasks_with_an_export_id()
    assert PostHogBatchExportRunSensor in classes and PostHogCancelRunOperator in classes
    for cls in classes:
        assert "batch_export_name" in cls.template_fields, cls.__name__
        names = {p for klass in cls.__mro__ for p in inspect.signature(klass.__init__).parameters}
        assert "batch_export_name" in names, cls.__name__


#: Each task with what it needs besides the export (a sensor waits on an interval if given no run id).
TASKS: list[tuple[type, dict[str, Any]]] = [
    (PostHogUpdateBatchExportOperator, {"paused": True}),
    (PostHogDeleteBatchExportOperator, {}),
    (PostHogPauseBatchExportOperator, {}),
    (PostHogUnpauseBatchExportOperator, {}),
    (PostHogCreateBackfillOperator, {"start_at": START, "end_at": END, "deferrable": False}),
    (PostHogRetryRunOperator, {"run_id": "run-1", "deferrable": False}),
    (PostHogCancelRunOperator, {"run_id": "run-1"}),
    (PostHogCancelBackfillOperator, {"backfill_id": BACKFILL}),
    (PostHogBackfillSensor, {"backfill_id": BACKFILL, "deferrable": False}),
    (PostHogBatchExportRunSensor, {"data_interval_start": START, "data_interval_end": END}),
]


@pytest.mark.parametrize(("cls", "kwargs"), TASKS, ids=[c.__name__ for c, _ in TASKS])
def test_both_or_neither_fail_before_any_request(cls: type, kwargs: dict[str, Any]) -> None:
    both = cls(task_id="t", batch_export_id=S3_ID, batch_export_name="events to S3", **kwargs)
    neither = cls(task_id="t", **kwargs)
    for task, message in (
        (both, r"Give batch_export_id or batch_export_name, not both"),
        (neither, r"batch_export_id is required: give batch_export_id, or batch_export_name"),
    ):
        fake = NamedPostHog()
        with_hook(task, fake)
        with pytest.raises(PostHogConfigError, match=message):
            task.execute(_context())
        assert fake.sent == []


@pytest.mark.parametrize(("cls", "kwargs"), TASKS, ids=[c.__name__ for c, _ in TASKS])
def test_a_name_resolves_to_the_id_with_one_request(cls: type, kwargs: dict[str, Any]) -> None:
    task = cls(task_id="t", batch_export_name="events to S3", **kwargs)
    fake = NamedPostHog()
    with_hook(task, fake)
    assert task.export_id(task.export_ref()) == S3_ID
    assert fake.paths() == [LIST_PATH]
    assert task.resolved_export_id == S3_ID


# -- the one request, and what follows it --------------------------------------------------------------------


def test_a_name_is_pushed_and_linked_exactly_as_an_id() -> None:
    by_name, by_id = NamedPostHog(), NamedPostHog()
    named = PostHogPauseBatchExportOperator(task_id="p", batch_export_name="events to S3")
    given = PostHogPauseBatchExportOperator(task_id="p", batch_export_id=S3_ID)
    with_hook(named, by_name)
    with_hook(given, by_id)
    name_ctx, id_ctx = _context(), _context()
    assert named.execute(name_ctx) == given.execute(id_ctx) == S3_ID
    assert _pushed(name_ctx) == _pushed(id_ctx)
    assert _pushed(name_ctx)["batch_export_id"] == S3_ID
    assert S3_ID in _pushed(name_ctx)["runs_url"]
    assert by_name.paths() == [LIST_PATH, f"batch_exports/{S3_ID}/pause/"]
    assert by_id.paths() == [f"batch_exports/{S3_ID}/pause/"]


def test_a_name_that_matches_nothing_fails_naming_it_after_one_request() -> None:
    fake = NamedPostHog(_export(S3_ID, "events to S3"), _export(BQ_ID, "events to BigQuery"))
    task = PostHogPauseBatchExportOperator(task_id="p", batch_export_name="events to s3")
    with_hook(task, fake)
    context = _context()
    with pytest.raises(PostHogConfigError) as excinfo:
        task.execute(context)
    message = str(excinfo.value)
    assert message.startswith("batch_export_name='events to s3' matches no batch export")
    assert "2 export(s)" in message
    assert f"Not the same name: 'events to S3' ({S3_ID})" in message  # a near miss, by case
    assert BQ_ID not in message and SECRET not in message
    assert fake.paths() == [LIST_PATH]
    assert _pushed(context) == {}


def test_a_name_shared_by_two_exports_fails_naming_both_ids_after_one_request() -> None:
    fake = NamedPostHog(
        _export(S3_ID, "events to S3"), _export(TWIN_ID, "events to S3"), _export(BQ_ID, "events to BigQuery")
    )
    task = PostHogCreateBackfillOperator(
        task_id="b", batch_export_name="events to S3", start_at=START, end_at=END, deferrable=False
    )
    with_hook(task, fake)
    with pytest.raises(PostHogConfigError) as excinfo:
        task.execute(_context())
    message = str(excinfo.value)
    assert message.startswith(
        f"batch_export_name='events to S3' matches 2 batch exports ({S3_ID}, {TWIN_ID})"
    )
    assert BQ_ID not in message and SECRET not in message
    assert fake.paths() == [LIST_PATH]


def test_other_bad_arguments_fail_before_the_name_is_looked_up() -> None:
    task = PostHogCreateBackfillOperator(
        task_id="b", batch_export_name="events to S3", start_at="2024-01-01T00:00:00", end_at=END
    )
    fake = NamedPostHog()
    with_hook(task, fake)
    with pytest.raises(PostHogConfigError, match=r"start_at.*naive"):
        task.execute(_context())
    assert fake.sent == []


def test_delete_by_a_name_already_gone_is_fine_with_missing_ok_only() -> None:
    fake = NamedPostHog()
    gone = PostHogDeleteBatchExportOperator(task_id="d", batch_export_name="old export")
    with_hook(gone, fake)
    assert gone.execute(_context()) is None
    assert fake.paths() == [LIST_PATH]
    strict = PostHogDeleteBatchExportOperator(task_id="d", batch_export_name="old export", missing_ok=False)
    with_hook(strict, NamedPostHog())
    with pytest.raises(PostHogConfigError, match="'old export' matches no batch export"):
        strict.execute(_context())
    found = PostHogDeleteBatchExportOperator(task_id="d", batch_export_name="events to S3")
    fake = NamedPostHog()
    with_hook(found, fake)
    assert found.execute(_context()) == S3_ID
    assert [(s.method, s.path) for s in fake.sent] == [
        ("GET", LIST_PATH),
        ("DELETE", f"batch_exports/{S3_ID}/"),
    ]


def test_a_deferred_wait_hands_the_resolved_id_to_the_trigger() -> None:
    fake = NamedPostHog()
    fake.backfill("Running")
    task = PostHogCreateBackfillOperator(
        task_id="b", batch_export_name="events to S3", start_at=START, end_at=END, deferrable=True
    )
    running = Backfill.from_api(backfill_row("Running", batch_export=S3_ID))
    with_hook(
        task,
        fake,
        find_backfill=mock.Mock(return_value=None),
        create_backfill=mock.Mock(return_value=running),
    )
    context = _context()
    with pytest.raises(TaskDeferred) as excinfo:
        task.execute(context)
    trigger = excinfo.value.trigger
    assert trigger.batch_export_id == S3_ID
    task.hook.create_backfill.assert_called_once()
    assert task.hook.create_backfill.call_args.args[0] == S3_ID
    assert _pushed(context)["batch_export_id"] == S3_ID
    assert fake.paths().count(LIST_PATH) == 1


def test_a_template_rendered_blank_counts_as_not_given() -> None:
    from airflow.sdk import DAG

    def rendered(export_id: Any, export_name: Any) -> PostHogPauseBatchExportOperator:
        with DAG("names_unit", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
            task = PostHogPauseBatchExportOperator(
                task_id="p",
                batch_export_id="{{ params.export_id }}",
                batch_export_name="{{ params.export_name }}",
            )
        task.render_template_fields({"params": {"export_id": export_id, "export_name": export_name}})
        return task

    assert rendered(None, "events to S3").export_ref() == ExportRef(name="events to S3")
    assert rendered(S3_ID, "").export_ref() == ExportRef(id=S3_ID)
    with pytest.raises(PostHogConfigError) as excinfo:
        rendered("", None).export_ref()
    assert str(excinfo.value).startswith("batch_export_id rendered empty from the template")
    assert "param 'export_id' is empty" in str(excinfo.value)
    assert str(excinfo.value).endswith("No batch_export_name was given either; give one of the two.")
    with pytest.raises(PostHogConfigError, match="not both"):
        rendered(S3_ID, "events to S3").export_ref()


# -- sensors: once per try ---------------------------------------------------------------------------------


class StateStore:
    """Airflow 3.3's ``context["task_state_store"]``, in memory: what outlives one poke's process."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def _poke(
    fake: NamedPostHog, store: StateStore | None, pokes: int, try_number: int = 1, **kwargs: Any
) -> bool:
    """One poke of a sensor in a process (a sensor object) of its own."""
    sensor = PostHogBackfillSensor(
        task_id="wait", batch_export_name="events to S3", backfill_id=BACKFILL, poke_interval=0, **kwargs
    )
    with_hook(sensor, fake)
    extra = {} if store is None else {"task_state_store": store}
    return bool(sensor.poke(_context(try_number, task_reschedule_count=pokes, **extra)))


def test_a_rescheduled_sensor_looks_the_name_up_once_per_try() -> None:
    store = StateStore()
    fake = NamedPostHog()
    fake.backfill("Running")
    assert _poke(fake, store, 0, mode="reschedule") is False
    assert _poke(fake, store, 1, mode="reschedule") is False
    assert fake.paths().count(LIST_PATH) == 1
    assert store.values["posthog_batch_export"] == {"try": 1, "name": "events to S3", "id": S3_ID}
    assert fake.paths()[-1] == f"batch_exports/{S3_ID}/backfills/{BACKFILL}/"
    _poke(fake, store, 0, try_number=2, mode="reschedule")  # a retry looks again
    assert fake.paths().count(LIST_PATH) == 2


def test_a_poking_sensor_looks_the_name_up_once_and_succeeds_on_the_id() -> None:
    fake = NamedPostHog()
    fake.backfill("Running", "Completed", batch_export=S3_ID)
    fake.run_list = [run_row("Completed", batch_export=S3_ID)]
    sensor = PostHogBackfillSensor(
        task_id="wait",
        batch_export_name="events to S3",
        backfill_id=BACKFILL,
        poke_interval=0,
        emit_asset_events=False,
    )
    with_hook(sensor, fake)
    context = _context()
    assert sensor.poke(context) is False
    assert sensor.poke(context) is True
    assert fake.paths().count(LIST_PATH) == 1
    assert _pushed(context)["batch_export_id"] == S3_ID
