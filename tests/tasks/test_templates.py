"""Templated ids that rendered empty, or could not be rendered: the error quotes the template and says which
param or Variable it reads and what is wrong with it (unit tests; the real ``dag.test()`` runs are in
tests/operators/test_template_errors_dag.py)."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest

from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks.template_snapshot import Reference, TemplateSnapshot, references
from airflow_provider_posthog.tasks.templates import blank, is_template

START = pendulum.datetime(2024, 1, 1, tz="UTC")


class Variables:
    """The context's ``var.value`` accessor: ``get(key, default)``; reading a missing key by name raises like
    Airflow's (``VARIABLE_NOT_FOUND``)."""

    def __init__(self, **values: str) -> None:
        self.values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def __getattr__(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse

        raise AirflowRuntimeError(
            ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"message": f"Variable {key} not found"})
        )


class BrokenVariables(Variables):
    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("no execution API here")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ params.batch_export_id }}", [Reference("param", "batch_export_id", True)]),
        ("{{ params['x'] }}", [Reference("param", "x", True)]),
        ("{{ params.get('x', '') }}", [Reference("param", "x", False)]),
        ("{{ var.value.posthog_id }}", [Reference("variable", "posthog_id", True)]),
        ("{{ var.json.cfg.id }}", [Reference("variable", "cfg", True)]),
        ('{{ var.value.get("posthog_id", "") }}', [Reference("variable", "posthog_id", False)]),
        (
            "{{ params.batch_export_id or var.value.get('posthog_batch_export_id', '') }}",
            [
                Reference("param", "batch_export_id", True),
                Reference("variable", "posthog_batch_export_id", False),
            ],
        ),
        ("{{ params.a }}-{{ params.a }}", [Reference("param", "a", True)]),
        ("{{ ti.xcom_pull(task_ids='t') }}", []),
    ],
)
def test_references_finds_params_and_variables(template: str, expected: list[Reference]) -> None:
    assert references(template) == expected


def test_what_counts_as_a_template_and_as_blank() -> None:
    assert is_template("{{ x }}") and is_template("{% if x %}a{% endif %}")
    assert not is_template("0190-export") and not is_template(None) and not is_template(3)
    assert blank(None) and blank("") and blank("  ") and blank("None")
    assert not blank("0190-export") and not blank("none-of-it")


def _snapshot(template: str, params: dict[str, Any] | None = None, **variables: str) -> TemplateSnapshot:
    return TemplateSnapshot({"batch_export_id": template}, params or {}, Variables(**variables))


def test_an_empty_variable_is_named_with_how_to_set_it() -> None:
    snap = _snapshot("{{ var.value.posthog_batch_export_id }}", posthog_batch_export_id="")
    assert snap.explain_blank("batch_export_id", "") == (
        "batch_export_id rendered empty from the template '{{ var.value.posthog_batch_export_id }}': "
        "Airflow Variable 'posthog_batch_export_id' is empty; set it (Admin > Variables, or the environment "
        "variable AIRFLOW_VAR_POSTHOG_BATCH_EXPORT_ID)."
    )


def test_a_variable_read_with_a_default_is_told_missing_from_empty() -> None:
    template = "{{ var.value.get('ph_id', '') }}"
    assert "Variable 'ph_id' does not exist; set it" in _snapshot(template).explain_blank(
        "batch_export_id", ""
    )
    assert "Variable 'ph_id' is empty" in _snapshot(template, ph_id=" ").explain_blank("batch_export_id", "")
    broken = TemplateSnapshot({"batch_export_id": template}, {}, BrokenVariables())
    assert "Variable 'ph_id' is not set or is empty" in broken.explain_blank("batch_export_id", "")
    nothing = TemplateSnapshot({"batch_export_id": template}, {}, None)
    assert "Variable 'ph_id' is not set or is empty" in nothing.explain_blank("batch_export_id", "")


@pytest.mark.parametrize(
    ("params", "rendered", "expected"),
    [
        (
            {"batch_export_id": None},
            "None",
            "rendered 'None' from the template '{{ params.batch_export_id }}': "
            "param 'batch_export_id' is None; pass it in the DAG run's conf",
        ),
        (
            {"batch_export_id": ""},
            "",
            "rendered empty from the template '{{ params.batch_export_id }}': "
            "param 'batch_export_id' is empty; pass it in the DAG run's conf",
        ),
        (
            {},
            None,
            "rendered None from the template '{{ params.batch_export_id }}': this DAG run has no param "
            "'batch_export_id'",
        ),
    ],
    ids=["none", "empty", "native-none-undeclared"],
)
def test_a_blank_param_is_named(params: dict[str, Any], rendered: Any, expected: str) -> None:
    message = _snapshot("{{ params.batch_export_id }}", params).explain_blank("batch_export_id", rendered)
    assert message.startswith("batch_export_id " + expected)
    assert message.endswith("or give the param a default.")


def test_an_or_of_a_param_and_a_variable_names_both() -> None:
    template = "{{ params.batch_export_id or var.value.get('posthog_batch_export_id', '') }}"
    message = _snapshot(template, {"batch_export_id": None}).explain_blank("batch_export_id", "")
    assert "param 'batch_export_id' is None; pass it in the DAG run's conf" in message
    assert "; and Airflow Variable 'posthog_batch_export_id' does not exist; set it" in message


def test_a_reference_that_has_a_value_is_not_blamed() -> None:
    template = "{{ params.prefix }}{{ var.value.get('suffix', '') }}"
    message = _snapshot(template, {"prefix": "abc"}).explain_blank("batch_export_id", "")
    assert "prefix" not in message.split(":", 1)[1] and "Variable 'suffix' does not exist" in message


def test_a_template_that_reads_neither_still_quotes_the_template() -> None:
    snap = _snapshot("{{ ti.xcom_pull(task_ids='find_export') }}")
    assert snap.explain_blank("batch_export_id", "None") == (
        "batch_export_id rendered 'None' from the template \"{{ ti.xcom_pull(task_ids='find_export') }}\": "
        "the value it reads is None (for one, an XCom that was never pushed)."
    )
    assert snap.explain_blank("batch_export_id", " ").endswith("; it needs a non-empty value.")


def test_render_errors_for_a_missing_variable_or_param_are_explained() -> None:
    from jinja2.exceptions import UndefinedError

    variables = Variables()
    with pytest.raises(Exception) as missing_var:
        variables.posthog_batch_export_id  # noqa: B018 - Airflow's accessor raises here
    snap = _snapshot("{{ var.value.other or var.value.posthog_batch_export_id }}", other="")
    message = snap.explain_render_error("batch_export_id", missing_var.value)
    assert message == (
        "batch_export_id: the template '{{ var.value.other or var.value.posthog_batch_export_id }}' could "
        "not be rendered: Airflow Variable 'posthog_batch_export_id' does not exist; set it (Admin > "
        "Variables, or the environment variable AIRFLOW_VAR_POSTHOG_BATCH_EXPORT_ID)."
    )
    undefined = UndefinedError("'dict object' has no attribute 'batch_export_id'")
    snap = _snapshot("{{ params.batch_export_id }}", {"other": 1})
    assert snap.explain_render_error("batch_export_id", undefined) == (
        "batch_export_id: the template '{{ params.batch_export_id }}' could not be rendered: this DAG run "
        "has no param 'batch_export_id'; declare it in the DAG's params with a default, or pass it in the "
        "DAG run's conf."
    )
    # Anything else stays Airflow's own error.
    assert snap.explain_render_error("batch_export_id", ZeroDivisionError("x")) is None
    assert _snapshot("{{ ti.x }}").explain_render_error("batch_export_id", undefined) is None
    assert snap.explain_render_error("other_field", undefined) is None


# ------------------------------------------------------------------- the mixin on a real operator, rendered


def _backfill_op(**fields: Any) -> Any:
    from airflow.sdk import DAG

    from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator

    kwargs: dict[str, Any] = {
        "batch_export_id": "{{ var.value.posthog_batch_export_id }}",
        "start_at": "2024-01-01T00:00:00+00:00",
        "end_at": "2024-01-01T01:00:00+00:00",
        "deferrable": False,
        **fields,
    }
    with DAG("templates_unit", schedule=None, start_date=START):  # the DAG's templates are strict
        return PostHogCreateBackfillOperator(task_id="backfill", **kwargs)


def _render(task: Any, params: dict[str, Any] | None = None, **variables: str) -> None:
    task.render_template_fields({"params": params or {}, "var": {"value": Variables(**variables)}})


def _fail_on_any_call(task: Any) -> None:
    class NoHook:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"hook.{name} used before the arguments were checked")

    task.__dict__["hook"] = NoHook()


def test_the_operator_quotes_the_template_of_an_empty_id_before_any_call() -> None:
    task = _backfill_op()
    _render(task, posthog_batch_export_id="")
    assert task.batch_export_id == ""
    assert task.template_source("batch_export_id") == "{{ var.value.posthog_batch_export_id }}"
    assert task.template_source("start_at") is None  # a literal
    _fail_on_any_call(task)
    with pytest.raises(PostHogConfigError, match="Variable 'posthog_batch_export_id' is empty; set it"):
        task.execute({"ti": None})


def test_a_missing_variable_fails_while_rendering_naming_field_and_variable() -> None:
    task = _backfill_op(start_at="{{ params.start }}", end_at="{{ params.end }}")
    params = {"start": "2024-01-01T00:00:00+00:00", "end": "2024-01-01T01:00:00+00:00"}
    with pytest.raises(PostHogConfigError) as err:
        _render(task, params)
    assert str(err.value).startswith(
        "batch_export_id: the template '{{ var.value.posthog_batch_export_id }}' could not be rendered: "
        "Airflow Variable 'posthog_batch_export_id' does not exist"
    )
    assert "VARIABLE_NOT_FOUND" in repr(err.value.__cause__)


def test_an_undeclared_param_fails_while_rendering_naming_it() -> None:
    task = _backfill_op(batch_export_id="0190-export", end_at="{{ params.end_at }}")
    with pytest.raises(PostHogConfigError, match=r"end_at: the template .* no param 'end_at'"):
        _render(task)
    assert task.batch_export_id == "0190-export"


def test_other_render_errors_are_left_as_airflow_raised_them() -> None:
    task = _backfill_op(batch_export_id="{{ 1 // 0 }}")
    with pytest.raises(ZeroDivisionError):
        _render(task)


def test_a_param_that_is_none_is_not_taken_for_an_id() -> None:
    task = _backfill_op(batch_export_id="{{ params.batch_export_id }}")
    _render(task, {"batch_export_id": None})
    assert task.batch_export_id == "None"  # what Airflow renders for a None
    _fail_on_any_call(task)
    with pytest.raises(PostHogConfigError, match=r"rendered 'None' .* param 'batch_export_id' is None"):
        task.execute({"ti": None})


def test_a_rendered_id_with_a_value_passes_and_an_unrendered_task_keeps_the_plain_check() -> None:
    task = _backfill_op()
    _render(task, posthog_batch_export_id=" 0190-export ")
    assert task.require_field("batch_export_id") == "0190-export"
    plain = _backfill_op(batch_export_id="")
    with pytest.raises(PostHogConfigError, match=r"^batch_export_id is required\.$"):
        plain.require_field("batch_export_id")
    literal_none = _backfill_op(batch_export_id="None")  # a literal is not second-guessed
    _render(literal_none)
    assert literal_none.require_field("batch_export_id") == "None"


def test_an_optional_id_from_a_none_param_is_left_out() -> None:
    from airflow.sdk import DAG

    from airflow_provider_posthog.sensors.batch_export import PostHogBatchExportRunSensor

    with DAG("templates_unit_sensor", schedule=None, start_date=START):
        sensor = PostHogBatchExportRunSensor(
            task_id="wait", batch_export_id="0190-export", run_id="{{ params.run_id }}"
        )
    sensor.render_template_fields(
        {
            "params": {"run_id": None},
            "var": {"value": Variables()},
            "data_interval_start": START,
            "data_interval_end": START.add(hours=1),
        }
    )
    assert sensor.run_id == "None"
    assert sensor.optional_field("run_id") is None
    sensor.run_id = "run-7"
    assert sensor.optional_field("run_id") == "run-7"
