"""Sensors that wait for PostHog work someone else started: a backfill, a run, or a scheduled interval.

Poke, reschedule and deferrable modes decide through the same ``tasks.waiting`` functions as the triggers.
Every error is an ``AirflowException``; remote failures are also ``AirflowFailException`` (retrying a sensor
does not un-fail a run), so ``soft_fail=True`` turns them into a skip in every mode.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator

from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.compat import AirflowSensorTimeout
from airflow_provider_posthog.exceptions import PostHogRemoteFailureError
from airflow_provider_posthog.lineage.mixin import (
    LINEAGE_TEMPLATE_FIELDS,
    PostHogLineageMixin,
    latest_completed_runs,
)
from airflow_provider_posthog.links.posthog import ALL_LINKS
from airflow_provider_posthog.tasks.args import to_seconds
from airflow_provider_posthog.tasks.data_interval import resolve_range
from airflow_provider_posthog.tasks.decisions import decide_interval, decide_run
from airflow_provider_posthog.tasks.mixin import PostHogTaskMixin, default_deferrable
from airflow_provider_posthog.tasks.waiting import (
    ProgressLog,
    Wait,
    deadline,
    describe_backfill,
    describe_interval,
    describe_run,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_posthog.api.models import BatchExport, BatchExportRun
    from airflow_provider_posthog.tasks.decisions import Decision
    from airflow_provider_posthog.triggers.batch_export import _PostHogPollingTrigger


class _PostHogSensor(PostHogTaskMixin, PostHogLineageMixin, BaseSensorOperator):
    """Shared sensor logic: lazy hook, links, poke -> decision, defer -> same decision via the trigger.

    On success (poke, reschedule or deferred) the sensor emits an asset event for the export's destination.

    :param batch_export_id: the export (templated).
    :param posthog_conn_id: Airflow connection id.
    :param project_id: overrides the connection's project id.
    :param deferrable: wait in the triggerer. Default: ``[operators] default_deferrable``.
    :param poke_interval: seconds between checks (default 60): a non-negative number or a ``timedelta``.
    :param emit_asset_events: on success, emit an Airflow asset event for the export's destination through
        the alias ``asset_alias`` (default ``True``; ``False``: no alias, no event).
    :param asset_alias: the alias (default ``posthog-batch-export:{dag_id}.{task_id}``; not templated).
    :param asset_uri: the asset URI instead of the destination's (templated).
    """

    template_fields: tuple[str, ...] = (
        "batch_export_id",
        "posthog_conn_id",
        "project_id",
        *LINEAGE_TEMPLATE_FIELDS,
    )
    operator_extra_links = ALL_LINKS
    failure_error: ClassVar[type[Exception]] = PostHogRemoteFailureError
    timeout_error: ClassVar[type[Exception]] = AirflowSensorTimeout

    def __init__(
        self,
        *,
        batch_export_id: str,
        posthog_conn_id: str = "posthog_default",
        project_id: int | str | None = None,
        deferrable: bool | None = None,
        poke_interval: float = 60,
        emit_asset_events: bool = True,
        asset_alias: str | None = None,
        asset_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=to_seconds(poke_interval, "poke_interval"), **kwargs)
        self.batch_export_id = batch_export_id
        self.posthog_conn_id = posthog_conn_id
        self.project_id = project_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._links_pushed = False
        self._progress_log = ProgressLog()
        self._init_lineage(emit_asset_events=emit_asset_events, asset_alias=asset_alias, asset_uri=asset_uri)

    # -- subclass API ---------------------------------------------------------------------------------------
    def _validate(self, context: Context) -> None:
        """Check the rendered arguments before the first call (config errors are never retried)."""

    def _wait(self, batch_export_id: str) -> Wait:
        raise NotImplementedError

    def _decide(self, batch_export_id: str) -> Decision:
        raise NotImplementedError

    def _trigger(self, wait: Wait, first_poll_at: float | None) -> _PostHogPollingTrigger:
        raise NotImplementedError

    # -- modes ----------------------------------------------------------------------------------------------
    def _start(self, context: Context) -> Wait:
        batch_export_id = self.require_field("batch_export_id")
        self._validate(context)
        wait = self._wait(batch_export_id)
        # One progress log for all pokes of this process (reschedule mode: a new process each poke).
        wait.progress_log = self._progress_log
        if not self._links_pushed:
            self.push_export_xcom(context, batch_export_id)
            wait.log_link(self.log, self.hook.ui_url)
            self._links_pushed = True
        return wait

    def poke(self, context: Context) -> bool:
        wait = self._start(context)
        step = wait.step(self._decide(wait.batch_export_id), time.time())
        if step.progress:
            self.log.info("%s", step.progress)
        if step.event is None:
            return False
        self.finish_wait(context, step.event)
        return True

    def execute(self, context: Context) -> Any:
        # Argument errors fail here, before the poke loop (where soft_fail would turn them into a skip).
        if not self.deferrable:
            self.require_field("batch_export_id")
            self._validate(context)
            return super().execute(context)
        wait = self._start(context)
        decision = self._decide(wait.batch_export_id)
        if decision.done and decision.outcome is Outcome.SUCCEEDED:
            self.finish_wait(context, wait.event(decision))
            return None
        # Failures too go through the trigger: resume_execution then applies soft_fail/never_fail uniformly.
        # Still running: the trigger's first poll waits an interval (we just polled). Failed: poll at once.
        now = time.time()
        wait.end_time = deadline(now, self.timeout, None)
        self.defer(
            trigger=self._trigger(wait, None if decision.done else now + wait.poll_interval),
            method_name="execute_complete",
            # The trigger's own deadline (self.timeout) comes first and ends in AirflowSensorTimeout.
            timeout=None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        self.finish_wait(context, event)


class PostHogBackfillSensor(_PostHogSensor):
    """Wait until a backfill completed and none of its runs failed.

    :param backfill_id: the backfill (templated), e.g. ``{{ ti.xcom_pull(task_ids='backfill',
        key='backfill_id') }}``.
    """

    template_fields: tuple[str, ...] = (*_PostHogSensor.template_fields, "backfill_id")

    def __init__(self, *, backfill_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backfill_id = backfill_id

    def _validate(self, context: Context) -> None:
        self.require_field("backfill_id")

    def _wait(self, batch_export_id: str) -> Wait:
        backfill_id = self.require_field("backfill_id")
        return Wait(
            what=describe_backfill(batch_export_id, backfill_id),
            batch_export_id=batch_export_id,
            backfill_id=backfill_id,
            poll_interval=float(self.poke_interval),
        )

    def _decide(self, batch_export_id: str) -> Decision:
        return self.poll_backfill(batch_export_id, self.require_field("backfill_id"))

    def _trigger(self, wait: Wait, first_poll_at: float | None) -> _PostHogPollingTrigger:
        from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

        assert wait.backfill_id is not None
        return PostHogBackfillTrigger(
            backfill_id=wait.backfill_id, **self.trigger_kwargs(wait, first_poll_at)
        )


class PostHogBatchExportRunSensor(_PostHogSensor):
    """Wait for one run, or for every run of the export covering ``[data_interval_start, data_interval_end)``.

    Use case: PostHog exports on its own schedule; downstream loads must wait until this DAG's interval has
    fully landed. Without ``run_id`` the sensor lists the export's runs inside the interval (ordering
    ``-data_interval_start``), keeps the newest run per sub-interval (a retried run replaces its failed
    original) and succeeds once they cover the whole interval and all completed. The export's interval must
    not be coarser than the DAG's.

    :param run_id: a single run to wait for (templated); or leave ``None`` and give the interval.
    :param data_interval_start: interval start (templated, default ``{{ data_interval_start }}``).
    :param data_interval_end: interval end (templated, default ``{{ data_interval_end }}``).

    A zero-width interval (start == end, what Airflow 3 gives the runs of cron schedules) means the last
    complete period of the DAG's own schedule ending at that time (``tasks.data_interval``).
    """

    template_fields: tuple[str, ...] = (
        *_PostHogSensor.template_fields,
        "run_id",
        "data_interval_start",
        "data_interval_end",
    )

    def __init__(
        self,
        *,
        run_id: str | None = None,
        data_interval_start: Any = "{{ data_interval_start }}",
        data_interval_end: Any = "{{ data_interval_end }}",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.data_interval_start = data_interval_start
        self.data_interval_end = data_interval_end
        self._resolved: tuple[dt.datetime, dt.datetime] | None = None
        self._listed_runs: Sequence[BatchExportRun] | None = None  # the last poll's runs (interval mode)

    def _validate(self, context: Context | None) -> None:
        """Check the rendered interval; a zero-width one becomes the schedule's last complete period."""
        if self.optional_field("run_id") is not None:
            return
        self._resolved = resolve_range(
            self.data_interval_start,
            self.data_interval_end,
            context,
            start_name="data_interval_start",
            end_name="data_interval_end",
            log=self.log,
        )

    def _interval(self) -> tuple[dt.datetime, dt.datetime]:
        if self._resolved is None:
            self._validate(None)
        assert self._resolved is not None
        return self._resolved

    def _wait(self, batch_export_id: str) -> Wait:
        run_id = self.optional_field("run_id")
        if run_id is not None:
            what = describe_run(batch_export_id, run_id)
        else:
            start, end = self._interval()
            what = describe_interval(batch_export_id, start.isoformat(), end.isoformat())
        return Wait(
            what=what, batch_export_id=batch_export_id, run_id=run_id, poll_interval=float(self.poke_interval)
        )

    def _decide(self, batch_export_id: str) -> Decision:
        run_id = self.optional_field("run_id")
        if run_id is not None:
            return decide_run(self.hook.get_run(batch_export_id, run_id))
        start, end = self._interval()
        runs = self._list_interval_runs(batch_export_id, start, end)
        self._listed_runs = runs
        return decide_interval(runs, start, end)

    def _list_interval_runs(
        self, batch_export_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[BatchExportRun]:
        return self.hook.list_runs(
            batch_export_id, ordering="-data_interval_start", start=start.isoformat(), end=end.isoformat()
        )

    def _lineage_completed_runs(
        self, context: Context, event: Mapping[str, Any], export: BatchExport
    ) -> Sequence[BatchExportRun]:
        """Interval mode: the runs the success was decided on (listed again after a deferral)."""
        if event.get("run_id"):
            return super()._lineage_completed_runs(context, event, export)
        if self._resolved is None:
            self._validate(context)
        start, end = self._interval()
        runs = self._listed_runs
        if runs is None:
            runs = self._list_interval_runs(str(event["batch_export_id"]), start, end)
        return latest_completed_runs(runs, start, end)

    def _trigger(self, wait: Wait, first_poll_at: float | None) -> _PostHogPollingTrigger:
        from airflow_provider_posthog.triggers.batch_export import PostHogBatchExportRunTrigger

        start = end = None
        if wait.run_id is None:
            start_dt, end_dt = self._interval()
            start, end = start_dt.isoformat(), end_dt.isoformat()
        return PostHogBatchExportRunTrigger(
            run_id=wait.run_id,
            data_interval_start=start,
            data_interval_end=end,
            **self.trigger_kwargs(wait, first_poll_at),
        )
