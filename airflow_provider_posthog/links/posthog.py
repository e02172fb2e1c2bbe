"""Extra links to PostHog's UI, read from XCom: ``get_link`` never calls PostHog.

The operators push ``batch_export_url``, ``backfills_url`` and ``runs_url`` as soon as the export id is known,
before any wait or deferral, so the links work while the task is still waiting and after it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom keys the operators push and the links read.
XCOM_BATCH_EXPORT_URL = "batch_export_url"
XCOM_BACKFILLS_URL = "backfills_url"
XCOM_RUNS_URL = "runs_url"


class _PostHogXComLink(BaseOperatorLink):
    """A link whose URL was pushed to XCom under ``url_key`` by the task itself."""

    url_key: ClassVar[str]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(key=self.url_key, ti_key=ti_key)
        return value if isinstance(value, str) else ""


class PostHogBatchExportLink(_PostHogXComLink):
    """The batch export's page (configuration tab)."""

    name = "PostHog batch export"
    url_key = XCOM_BATCH_EXPORT_URL


class PostHogBackfillsLink(_PostHogXComLink):
    """The batch export's backfills tab."""

    name = "PostHog backfills"
    url_key = XCOM_BACKFILLS_URL


class PostHogRunsLink(_PostHogXComLink):
    """The batch export's runs tab (PostHog's UI has no per-run page)."""

    name = "PostHog runs"
    url_key = XCOM_RUNS_URL


ALL_LINKS = (PostHogBatchExportLink(), PostHogBackfillsLink(), PostHogRunsLink())
