"""Extra links to PostHog's UI, read from XCom: ``get_link`` never calls PostHog.

The operators push ``batch_export_url``, ``backfills_url`` and ``runs_url`` as soon as the export id is known,
before any wait or deferral, so the links work while the task is still waiting and after it failed.

PostHog's UI has one page per batch export, with the tabs ``configuration``, ``metrics``, ``logs``, ``runs``
and ``backfills``, and no page of its own for a backfill or a run. So every link opens the export the task
acted on: its page, its backfills tab (where the task's backfill is listed) or its runs tab (where its runs
are). The ids of the task's backfill and runs are in its XCom and its log.
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
    """The batch export's backfills tab, listing the task's backfill (PostHog has no page per backfill)."""

    name = "PostHog backfills"
    url_key = XCOM_BACKFILLS_URL


class PostHogRunsLink(_PostHogXComLink):
    """The batch export's runs tab, which lists the task's runs (PostHog has no page per run)."""

    name = "PostHog runs"
    url_key = XCOM_RUNS_URL


ALL_LINKS = (PostHogBatchExportLink(), PostHogBackfillsLink(), PostHogRunsLink())
