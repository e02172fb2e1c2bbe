"""Export management and cancel operators with a mocked hook; destination secrets stay out of logs/fields."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest

from airflow_provider_posthog.api.models import BatchExport
from airflow_provider_posthog.exceptions import (
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
    assert (
        mask_destination_secrets({"config": {"nested": [{"password": "p4ssw0rd-xyz"}], "region": "eu"}}) == 1
    )
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
    _run(PostHogUnpauseBatchExportOperator(task_id="u", batch_export_id="e1", backfill=True), hook)
    hook.unpause_batch_export.assert_called_once_with("e1", backfill=True)
    _run(PostHogDeleteBatchExportOperator(task_id="d", batch_export_id="e1"), hook)
    hook.delete_batch_export.assert_called_once_with("e1")
    with pytest.raises(PostHogConfigError, match="batch_export_id is required"):
        _run(PostHogPauseBatchExportOperator(task_id="p", batch_export_id=""), _hook())


def test_delete_missing_is_ok_unless_told_otherwise() -> None:
    hook = _hook(delete_batch_export=mock.Mock(side_effect=PostHogNotFoundError("404")))
    assert _run(PostHogDeleteBatchExportOperator(task_id="d", batch_export_id="e1"), hook) == "e1"
    with pytest.raises(PostHogNotFoundError):
        _run(PostHogDeleteBatchExportOperator(task_id="d", batch_export_id="e1", missing_ok=False), hook)


def test_cancel_run_running_finished_and_strict(factories: Any) -> None:
    hook = _hook(
        get_run=mock.Mock(return_value=factories.run("Running")),
        cancel_run=mock.Mock(return_value="Cancelled"),
    )
    op = PostHogCancelRunOperator(task_id="c", batch_export_id="e1", run_id="run-1")
    assert _run(op, hook) == "Cancelled"
    hook.cancel_run.assert_called_once_with("e1", "run-1")

    done = _hook(get_run=mock.Mock(return_value=factories.run("Completed")))
    assert (
        _run(PostHogCancelRunOperator(task_id="c", batch_export_id="e1", run_id="run-1"), done) == "Completed"
    )
    done.cancel_run.assert_not_called()
    with pytest.raises(PostHogError, match="strict"):
        _run(PostHogCancelRunOperator(task_id="c", batch_export_id="e1", run_id="run-1", strict=True), done)


def test_cancel_backfill_race_with_completion_is_not_an_error(factories: Any) -> None:
    hook = _hook(
        get_backfill=mock.Mock(side_effect=[factories.backfill("Running"), factories.backfill("Completed")]),
        cancel_backfill=mock.Mock(side_effect=PostHogValidationError("Cannot cancel a backfill ...")),
    )
    op = PostHogCancelBackfillOperator(task_id="c", batch_export_id="e1", backfill_id="b1")
    assert _run(op, hook) == "Completed"
