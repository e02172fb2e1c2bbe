"""Export management operators with a mocked hook (destination secrets stay out of logs and fields); the
cancel operators against a scripted PostHog (``fake_posthog``), through the real cancel operation."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest
from fake_posthog import FakePostHog, http_error, with_hook

from airflow_provider_posthog.api.models import BatchExport
from airflow_provider_posthog.exceptions import (
    PostHogCancelNotEffectiveError,
    PostHogConfigError,
    PostHogError,
    PostHogNotFoundError,
    PostHogValidationError,
)
from airflow_provider_posthog.operators.backfill import (
    PostHogCancelBackfillOperator,
    PostHogCancelRunOperator,
)
from airflow_provider_posthog.operators.batch_export import (
    PostHogCreateBatchExportOperator,
    PostHogDeleteBatchExportOperator,
    PostHogPauseBatchExportOperator,
    PostHogUnpauseBatchExportOperator,
    PostHogUpdateBatchExportOperator,
    mask_destination_secrets,
)

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET"
DESTINATION = {
    "type": "S3",
    "config": {"bucket_name": "b", "region": "us-east-1", "prefix": "p", "aws_secret_access_key": SECRET},
}


def _export(export_id: str, name: str) -> BatchExport:
    return BatchExport.from_api(
        {"id": export_id, "name": name, "interval": "hour", "destination": {"type": "S3"}}
    )


def _hook(**attrs: Any) -> mock.MagicMock:
    hook = mock.MagicMock()
    hook.ui_url.side_effect = lambda export_id, tab=None: f"https://ph.test/{export_id}?tab={tab}"
    hook.list_batch_exports.return_value = []
    hook.create_batch_export.return_value = _export("new-id", "nightly")
    for name, value in attrs.items():
        setattr(hook, name, value)
    return hook


def _run(op: Any, hook: mock.MagicMock) -> Any:
    op.__dict__["hook"] = hook
    return op.execute({"ti": mock.MagicMock()})


def _create(**kwargs: Any) -> PostHogCreateBatchExportOperator:
    params: dict[str, Any] = {
        "task_id": "create",
        "name": "nightly",
        "destination": DESTINATION,
        "interval": "hour",
    }
    params.update(kwargs)
    return PostHogCreateBatchExportOperator(**params)


def test_create_sends_the_payload_and_returns_the_id() -> None:
    hook = _hook()
    assert _run(_create(interval="day", paused=True, extra_fields={"timezone": "UTC"}), hook) == "new-id"
    payload = hook.create_batch_export.call_args.args[0]
    assert payload["name"] == "nightly" and payload["interval"] == "day" and payload["paused"] is True
    assert "model" not in payload and payload["timezone"] == "UTC"  # PostHog's default model applies
    assert payload["destination"]["config"]["aws_secret_access_key"] == SECRET


@pytest.mark.parametrize(
    ("if_exists", "expect"), [("update", "update"), ("skip", "skip"), ("error", "error")]
)
def test_create_is_idempotent_by_name(if_exists: str, expect: str) -> None:
    hook = _hook()
    hook.list_batch_exports.return_value = [_export("old-id", "nightly"), _export("x", "other")]
    op = _create(if_exists=if_exists)
    if expect == "error":
        with pytest.raises(PostHogError, match="already exists"):
            _run(op, hook)
        return
    assert _run(op, hook) == "old-id"
    hook.create_batch_export.assert_not_called()
    if expect == "update":
        hook.update_batch_export.assert_called_once()
        assert hook.update_batch_export.call_args.kwargs == {"partial": True}
        sent = hook.update_batch_export.call_args.args[1]
        # Only what the task sets: a rerun must not unpause or re-model an export changed by hand.
        assert "paused" not in sent and "model" not in sent
        assert sent["interval"] == "hour" and sent["name"] == "nightly"
    else:
        hook.update_batch_export.assert_not_called()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": "minute"}, "interval='minute'"),
        ({"model": "people"}, "model='people'"),
        ({"name": ""}, "name is required"),
        ({"destination": {"config": {}}}, r"destination\['type'\]"),
        ({"if_exists": "replace"}, "if_exists"),
        ({"start_at": "2024-01-01T00:00:00"}, "start_at.*naive"),
    ],
)
def test_create_validates_before_any_api_call(kwargs: dict[str, Any], match: str) -> None:
    hook = _hook()
    with pytest.raises(PostHogConfigError, match=match):
        _run(_create(**kwargs), hook)
    hook.list_batch_exports.assert_not_called()
    hook.create_batch_export.assert_not_called()


def test_destination_is_not_templated_and_secrets_are_masked() -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    assert "destination" not in PostHogCreateBatchExportOperator.template_fields
    assert "destination" not in PostHogUpdateBatchExportOperator.template_fields
    assert mask_destination_secrets(
        {"config": {"nested": [{"password": "p4ssw0rd-xyz"}], "region": "eu"}}
    ) == ["p4ssw0rd-xyz"]
    assert "p4ssw0rd-xyz" not in str(redact("connecting with p4ssw0rd-xyz"))


def test_rendered_fields_and_logs_hold_no_destination_secret(caplog: pytest.LogCaptureFixture) -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    op = _create(name="{{ params.name }}")
    context: dict[str, Any] = {"params": {"name": "nightly"}, "ti": mock.MagicMock()}
    op.render_template_fields(context)  # type: ignore[arg-type]
    rendered = {field: getattr(op, field) for field in op.template_fields}
    assert rendered["name"] == "nightly"
    assert SECRET not in repr(rendered)
    hook = _hook()
    with caplog.at_level(logging.DEBUG):
        _run(op, hook)
    assert SECRET not in caplog.text
    assert SECRET not in str(redact(f"payload {DESTINATION}"))


def test_update_sends_only_given_fields() -> None:
    hook = _hook()
    op = PostHogUpdateBatchExportOperator(task_id="u", batch_export_id="e1", paused=True, interval="day")
    assert _run(op, hook) == "e1"
    hook.update_batch_export.assert_called_once_with("e1", {"interval": "day", "paused": True}, partial=True)
    with pytest.raises(PostHogConfigError, match="Nothing to update"):
        _run(PostHogUpdateBatchExportOperator(task_id="u", batch_export_id="e1"), _hook())


def test_pause_unpause_delete() -> None:
    hook = _hook()
    assert _run(PostHogPauseBatchExportOperator(task_id="p", batch_export_id="e1"), hook) == "e1"
    hook.pause_batch_export.assert_called_once_with("e1")
    _run(PostHogUnpauseBatchExportOperator(task_id="u", batch_export_id="e1"), hook)
    hook.unpause_batch_export.assert_called_once_with("e1", backfill=False)
    _run(PostHogDeleteBatchExportOperator(task_id="d", batch_export_id="e1"), hook)
    hook.delete_batch_export.assert_called_once_with("e1")
    with pytest.raises(PostHogConfigError, match="batch_export_id is required"):
        _run(PostHogPauseBatchExportOperator(task_id="p", batch_export_id=""), _hook())


def test_delete_missing_is_ok_unless_told_otherwise() -> None:
    hook = _hook(delete_batch_export=mock.Mock(side_effect=PostHogNotFoundError("404")))
    assert _run(PostHogDeleteBatchExportOperator(task_id="d", batch_export_id="e1"), hook) == "e1"
    with pytest.raises(PostHogNotFoundError):
        _run(PostHogDeleteBatchExportOperator(task_id="d", batch_export_id="e1", missing_ok=False), hook)


def _cancel(op: Any, fake: FakePostHog) -> Any:
    with_hook(op, fake)
    return op.execute({"ti": mock.MagicMock()})


RUN_PATH = "batch_exports/e1/runs/run-1/"
BACKFILL_PATH = "batch_exports/e1/backfills/b1/"


def test_cancel_run_running_finished_and_strict() -> None:
    """A running run is cancelled and its status read back; a finished one (PostHog refuses the cancel with
    400) is left alone, which ``strict=True`` makes an error."""
    fake = FakePostHog().run("Running")
    op = PostHogCancelRunOperator(task_id="c", batch_export_id="e1", run_id="run-1")
    assert _cancel(op, fake) == "Cancelled"
    assert fake.paths() == [f"{RUN_PATH}cancel/", RUN_PATH]

    done = FakePostHog().run("Completed")
    done.cancels["run-1"] = http_error(400, "Cannot cancel a run that is Completed", method="POST")
    assert _cancel(PostHogCancelRunOperator(task_id="c", batch_export_id="e1", run_id="run-1"), done) == (
        "Completed"
    )
    assert done.paths() == [f"{RUN_PATH}cancel/", RUN_PATH]  # the refusal is read back, not trusted
    with pytest.raises(PostHogError, match="strict"):
        _cancel(
            PostHogCancelRunOperator(task_id="c", batch_export_id="e1", run_id="run-1", strict=True), done
        )


def test_cancel_backfill_race_with_completion_is_not_an_error() -> None:
    """The backfill finished just before the cancel arrived: PostHog answers 400, the read-back says
    Completed, and the task succeeds with that status."""
    fake = FakePostHog().backfill("Completed", backfill_id="b1")
    fake.cancels["b1"] = http_error(400, "Cannot cancel a backfill that is Completed", method="POST")
    op = PostHogCancelBackfillOperator(task_id="c", batch_export_id="e1", backfill_id="b1")
    assert _cancel(op, fake) == "Completed"
    assert fake.paths() == [f"{BACKFILL_PATH}cancel/", BACKFILL_PATH]


def test_cancel_refused_while_still_running_fails() -> None:
    """A 400 for a backfill that is still running is not "already finished": the refusal fails the task."""
    fake = FakePostHog().backfill("Running", backfill_id="b1")
    refusal = http_error(400, "Cancel refused", method="POST")
    fake.cancels["b1"] = refusal
    op = PostHogCancelBackfillOperator(task_id="c", batch_export_id="e1", backfill_id="b1")
    with pytest.raises(PostHogValidationError) as raised:
        _cancel(op, fake)
    assert raised.value is refusal


def test_a_cancel_posthog_ignored_fails_naming_the_backfill() -> None:
    fake = FakePostHog().backfill("Running", backfill_id="b1")
    fake.cancels["b1"] = "ignore"
    op = PostHogCancelBackfillOperator(task_id="c", batch_export_id="e1", backfill_id="b1")
    with pytest.raises(
        PostHogCancelNotEffectiveError, match=r"backfill b1 of batch export e1.*still Running"
    ):
        _cancel(op, fake)


# -- destination builders -----------------------------------------------------------------------------------

BUILDER_KEY_ID = "AKIAOPERATORUNIT0001"
BUILDER_SECRET = "operator-unit/Secret+Key-0123456789"


@pytest.fixture
def aws_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``aws`` connection the way a deployment defines one: ``AIRFLOW_CONN_AWS_UNIT`` JSON."""
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_UNIT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": BUILDER_KEY_ID,
                "password": BUILDER_SECRET,
                "extra": {"region_name": "eu-central-1"},
            }
        ),
    )


def _s3(**kwargs: Any) -> Any:
    from airflow_provider_posthog.destinations import S3Destination

    params: dict[str, Any] = {"bucket_name": "lake", "prefix": "posthog/{{ ds }}/", "aws_conn_id": "aws_unit"}
    params.update(kwargs)
    return S3Destination(**params)


def _rendered_run(op: Any, hook: mock.MagicMock, **context: Any) -> Any:
    """As the task runner does it: render the operator's template fields, then execute."""
    ctx: dict[str, Any] = {"ds": "2024-03-01", "params": {}, "ti": mock.MagicMock(), **context}
    op.render_template_fields(ctx)
    op.__dict__["hook"] = hook
    return op.execute(ctx)


def test_create_with_a_builder_sends_the_connections_keys_and_the_rendered_prefix(
    aws_conn: None, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    hook = _hook()
    builder = _s3()
    op = _create(destination=builder)
    with caplog.at_level(logging.DEBUG):
        assert _rendered_run(op, hook) == "new-id"
    sent = hook.create_batch_export.call_args.args[0]["destination"]
    assert sent == {
        "type": "S3",
        "config": {
            "bucket_name": "lake",
            "region": "eu-central-1",
            "prefix": "posthog/2024-03-01/",
            "aws_access_key_id": BUILDER_KEY_ID,
            "aws_secret_access_key": BUILDER_SECRET,
        },
    }
    assert BUILDER_SECRET not in caplog.text
    assert BUILDER_SECRET not in str(redact(f"sending {sent}"))  # registered with the masker
    # The DAG's builder is untouched: the next run (same process) renders its own date.
    assert op.destination is builder and builder.prefix == "posthog/{{ ds }}/"
    assert "destination" not in op.template_fields


def test_update_with_a_builder_patches_the_built_destination(aws_conn: None) -> None:
    hook = _hook()
    op = PostHogUpdateBatchExportOperator(
        task_id="u", batch_export_id="e1", destination=_s3(prefix="v2/{{ ds }}/", file_format="Parquet")
    )
    assert _rendered_run(op, hook) == "e1"
    (export_id, payload), kwargs = hook.update_batch_export.call_args
    assert export_id == "e1" and kwargs == {"partial": True} and list(payload) == ["destination"]
    config = payload["destination"]["config"]
    assert config["prefix"] == "v2/2024-03-01/" and config["file_format"] == "Parquet"
    assert config["aws_secret_access_key"] == BUILDER_SECRET


@pytest.mark.parametrize("operator", ["create", "update"])
def test_a_missing_connection_fails_before_any_api_call(operator: str) -> None:
    hook = _hook()
    builder = _s3(aws_conn_id="aws_nowhere")
    if operator == "create":
        op: Any = _create(destination=builder)
    else:
        op = PostHogUpdateBatchExportOperator(task_id="u", batch_export_id="e1", destination=builder)
    with pytest.raises(PostHogConfigError, match="aws_conn_id='aws_nowhere': no Airflow connection"):
        _rendered_run(op, hook)
    assert hook.method_calls == []  # neither a list, nor a create, nor a PATCH


def test_a_builder_template_that_cannot_render_is_named(aws_conn: None) -> None:
    from airflow.sdk import DAG

    hook = _hook()
    with DAG(dag_id="builder_render_error", schedule=None):  # a DAG's templates are strict
        op = _create(destination=_s3(bucket_name="{{ params.bucket }}"))
    with pytest.raises(
        PostHogConfigError, match=r"S3Destination.bucket_name='\{\{ params.bucket \}\}' could not be rendered"
    ):
        _rendered_run(op, hook)
    assert hook.method_calls == []


def test_a_bad_builder_setting_fails_when_the_dag_file_is_parsed() -> None:
    with pytest.raises(PostHogConfigError, match=r"compression='zstd' is not allowed with file_format"):
        _create(destination=_s3(compression="zstd"))


def test_anything_but_a_dict_or_a_builder_is_refused_naming_both() -> None:
    hook = _hook()
    with pytest.raises(PostHogConfigError, match="or a destination builder such as S3Destination"):
        _run(_create(destination="S3"), hook)
    assert hook.method_calls == []


@pytest.mark.parametrize("operator", ["create", "update"])
def test_an_api_error_quoting_a_destination_secret_is_scrubbed(operator: str) -> None:
    echoed = PostHogValidationError(
        f"PostHog API POST /x failed with HTTP 400 (invalid_input): bad key {SECRET} [field: destination]",
        detail=f"bad key {SECRET}",
    )
    hook = _hook(
        create_batch_export=mock.Mock(side_effect=echoed),
        update_batch_export=mock.Mock(side_effect=echoed),
    )
    if operator == "create":
        op: Any = _create()
    else:
        op = PostHogUpdateBatchExportOperator(task_id="u", batch_export_id="e1", destination=DESTINATION)
    with pytest.raises(PostHogValidationError) as raised:
        _run(op, hook)
    assert raised.value is echoed  # the same error (type, status, attr), only scrubbed
    assert str(raised.value).endswith("bad key *** [field: destination]")
    assert raised.value.detail == "bad key ***"
