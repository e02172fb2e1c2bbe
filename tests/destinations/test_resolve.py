"""``resolve_destination``: what the operators call; templates render through a real Airflow operator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_posthog.destinations import PostgresDestination, S3Destination, resolve_destination
from airflow_provider_posthog.exceptions import PostHogConfigError

from .cases import AWS

if TYPE_CHECKING:
    from collections.abc import Callable
    from unittest import mock


def _operator() -> Any:
    from airflow.sdk import BaseOperator

    return BaseOperator(task_id="create_export")


def test_a_dict_passes_through_unchanged(no_lookup: mock.MagicMock) -> None:
    destination = {"type": "NoOp", "config": {"arg": "x"}}
    assert resolve_destination(destination) is destination
    assert resolve_destination(None) is None
    assert no_lookup.call_count == 0


def test_anything_else_is_refused() -> None:
    with pytest.raises(PostHogConfigError, match=r"destination must be a dict .* or a destination builder"):
        resolve_destination("S3")  # type: ignore[arg-type]


def test_templated_settings_render_before_the_build(set_conn: Callable[..., None]) -> None:
    set_conn("aws_test", **AWS)
    builder = S3Destination(
        bucket_name="{{ params.bucket }}", prefix="posthog/{{ ds }}/", aws_conn_id="{{ params.conn }}"
    )
    context = {"ds": "2024-03-01", "params": {"bucket": "analytics-raw", "conn": "aws_test"}}
    destination = resolve_destination(builder, operator=_operator(), context=context)  # type: ignore[arg-type]
    assert destination is not None
    assert destination["config"]["bucket_name"] == "analytics-raw"
    assert destination["config"]["prefix"] == "posthog/2024-03-01/"
    assert destination["config"]["aws_access_key_id"] == AWS["login"]


def test_a_template_is_checked_after_rendering(no_lookup: mock.MagicMock) -> None:
    builder = PostgresDestination(table_name="{{ params.table }}", schema="{{ params.schema }}")
    with pytest.raises(PostHogConfigError, match="schema is required"):
        context: Any = {"params": {"table": "t", "schema": ""}}
        resolve_destination(builder, operator=_operator(), context=context)
    assert no_lookup.call_count == 0  # settings are checked before the connection is read


def test_an_unrendered_template_is_not_sent(no_lookup: mock.MagicMock) -> None:
    builder = S3Destination(bucket_name="b", prefix="{{ ds }}/")
    with pytest.raises(PostHogConfigError, match=r"S3Destination.prefix='\{\{ ds \}\}/' was not rendered"):
        builder.build()
    assert no_lookup.call_count == 0


def test_repr_shows_settings_only() -> None:
    builder = S3Destination(bucket_name="b", prefix="p/", aws_conn_id="aws_prod", compression="gzip")
    assert (
        repr(builder)
        == "S3Destination(bucket_name='b', prefix='p/', aws_conn_id='aws_prod', compression='gzip')"
    )
    assert str(builder) == repr(builder)


def test_a_template_in_a_setting_that_is_not_templated_is_refused(no_lookup: mock.MagicMock) -> None:
    with pytest.raises(
        PostHogConfigError, match=r"file_format='\{\{ params.fmt \}\}': file_format is not templated"
    ):
        S3Destination(bucket_name="b", prefix="p/", file_format="{{ params.fmt }}")
    assert no_lookup.call_count == 0


def test_each_run_renders_its_own_copy(set_conn: Callable[..., None]) -> None:
    """The DAG's builder keeps its templates: a second run (or another task sharing it) renders afresh."""
    set_conn("aws_test", **AWS)
    builder = S3Destination(bucket_name="b", prefix="posthog/{{ ds }}/", aws_conn_id="aws_test")
    op = _operator()
    first = resolve_destination(builder, operator=op, context={"ds": "2024-03-01"})
    second = resolve_destination(builder, operator=op, context={"ds": "2024-03-02"})
    assert first is not None and second is not None
    assert (first["config"]["prefix"], second["config"]["prefix"]) == (
        "posthog/2024-03-01/",
        "posthog/2024-03-02/",
    )
    assert builder.prefix == "posthog/{{ ds }}/"


def test_a_template_that_fails_to_render_names_the_setting(no_lookup: mock.MagicMock) -> None:
    builder = S3Destination(bucket_name="{{ 1 // 0 }}", prefix="p/")
    with pytest.raises(
        PostHogConfigError,
        match=r"destination: S3Destination.bucket_name='\{\{ 1 // 0 \}\}' could not be rendered: "
        r"ZeroDivisionError",
    ):
        resolve_destination(builder, operator=_operator(), context={})
    assert no_lookup.call_count == 0
