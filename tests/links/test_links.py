"""Extra links read XCom only; the provider info lists importable classes."""

from __future__ import annotations

from unittest import mock

import pytest

from airflow_provider_posthog import get_provider_info
from airflow_provider_posthog.links.posthog import (
    PostHogBackfillsLink,
    PostHogBatchExportLink,
    PostHogRunsLink,
)
from airflow_provider_posthog.operators.backfill import PostHogCreateBackfillOperator


@pytest.mark.parametrize(
    ("link", "key"),
    [
        (PostHogBatchExportLink(), "batch_export_url"),
        (PostHogBackfillsLink(), "backfills_url"),
        (PostHogRunsLink(), "runs_url"),
    ],
)
def test_get_link_reads_xcom_and_never_the_api(link: object, key: str) -> None:
    ti_key = mock.MagicMock()
    with (
        mock.patch("airflow.sdk.execution_time.xcom.XCom.get_value", return_value="https://ph/x") as get,
        mock.patch("airflow_provider_posthog.hooks.posthog.PostHogHook") as hook_cls,
    ):
        assert link.get_link(mock.MagicMock(), ti_key=ti_key) == "https://ph/x"  # type: ignore[attr-defined]
    get.assert_called_once_with(key=key, ti_key=ti_key)
    hook_cls.assert_not_called()
    with mock.patch("airflow.sdk.execution_time.xcom.XCom.get_value", return_value=None):
        assert link.get_link(mock.MagicMock(), ti_key=ti_key) == ""  # type: ignore[attr-defined]


def test_operator_declares_links_with_distinct_names() -> None:
    names = [link.name for link in PostHogCreateBackfillOperator.operator_extra_links]
    assert names == ["PostHog batch export", "PostHog backfills", "PostHog runs"]


def test_provider_info_lists_importable_operators_sensors_triggers_and_links() -> None:
    import importlib

    info = get_provider_info()
    for section in ("operators", "sensors", "triggers"):
        modules = [m for entry in info[section] for m in entry["python-modules"]]
        assert modules, section
        for module in modules:
            importlib.import_module(module)
    for path in info["extra-links"]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)
