"""Sensors that wait for PostHog work someone else started: a backfill, a run, or a scheduled interval.

Poke, reschedule and deferrable modes decide through the same ``tasks.waiting`` functions as the triggers.
Every error is an ``AirflowException``; remote failures are also ``AirflowFailException`` (retrying a sensor
does not un-fail a run), so ``soft_fail=True`` turns them into a skip in every mode.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator

from airflow_provider_posthog.lineage.mixin import LINEAGE_TEMPLATE_FIELDS, PostHogLineageMixin
from airflow_provider_posthog.links.posthog import ALL_LINKS
from airflow_provider_posthog.tasks.args import to_optional_seconds, to_seconds
from airflow_provider_posthog.tasks.mixin import default_deferrable

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_posthog.api.jobs import Job
    from airflow_provider_posthog.api.models import BatchExport, BatchExportRun
    from airflow_provider_posthog.tasks.args import ExportRef
    from airflow_provider_posthog.tasks.waiting import Wait
    from airflow_provider_posthog.triggers.batch_export import _PostHogPollingTrigger


class _PostHogSensor(PostHogLineageMixin, BaseSensorOperator):
    """Shared sensor logic: lazy hook, links, one ``Wait`` per process, poke -> the same step as the trigger.

    On success (poke, reschedule or deferred) the sensor emits an asset event for the export's destination.

    :param batch_export_id: the export (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two): one
        request when the sensor starts finds its id (in ``reschedule`` mode on Airflow 3.3+ the id is kept in
        the task state store for the following pokes of the try; before 3.3 each poke looks it up).
    :param posthog_conn_id: Airflow connection id.
    :param project_id: overrides the connection's project id.
    :param deferrable: wait in the triggerer. Default: ``[operators] default_deferrable``.
    :param poke_interval: seconds between checks (default 60): a non-negative number or a ``timedelta``.
    :param unreachable_timeout: seconds PostHog may stay unreachable (5xx, throttling, dropped connections,
        timeouts) before the sensor fails; ``None`` (default): keep waiting until ``timeout``. In
        ``reschedule`` mode it spans pokes on Airflow 3.3+ (the task state store); before, one poke.
    :param emit_asset_events: on success, emit an Airflow asset event for the export's destination (default
        ``True``; ``False``: no outlet, no event).
    :param asset_alias: emit through this alias (not templated). Default: a plain ``Asset`` outlet when the
        asset is known when the DAG is parsed, else the alias ``posthog-batch-export:{dag_id}.{task_id}``.
    :param asset_uri: the asset URI instead of the destination's (templated; a literal one is declared as the
        task's ``Asset`` outlet).
    :param asset_destination: the export's destination, literally (a ``{"type", "config"}`` dict or a
        destination builder): its asset is declared as the task's outlet, and a different destination in
        PostHog's answer fails the sensor. Not templated.
    :param completeness: what a success does with runs that exported fewer records than PostHog counted for
        their interval (``records_completed < records_total_count``): ``"warn"`` (default) logs one warning
        naming them, ``"fail"`` fails the sensor (``soft_fail`` skips), ``"off"`` does not check
        (templated).
    """

    template_fields: tuple[str, ...] = (
        "batch_export_id",
        "batch_export_name",
        "posthog_conn_id",
        "project_id",
        "completeness",
        *LINEAGE_TEMPLATE_FIELDS,
    )
    operator_extra_links = ALL_LINKS

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        posthog_conn_id: str = "posthog_default",
        project_id: int | str | None = None,
        deferrable: bool | None = None,
        poke_interval: float = 60,
        unreachable_timeout: float | None = None,
        emit_asset_events: bool = True,
        asset_alias: str | None = None,
        asset_uri: str | None = None,
        asset_destination: Any = None,
        completeness: str = "warn",
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=to_seconds(poke_interval, "poke_interval"), **kwargs)
        self.completeness = completeness
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.posthog_conn_id = posthog_conn_id
        self.project_id = project_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.unreachable_timeout = to_optional_seconds(unreachable_timeout, "unreachable_timeout")
        self._wait: Wait | None = None
        self._wait_of: tuple[Any, Any] | None = None  # (try, reschedule) the wait belongs to
        self._init_lineage(
            emit_asset_events=emit_asset_events,
            asset_alias=asset_alias,
            asset_uri=asset_uri,
            asset_destination=asset_destination,
        )

    # -- subclass API ---------------------------------------------------------------------------------------
    def _validate(self, context: Context) -> None:
        """Check the rendered arguments before the first call (config errors are never retried)."""

    def _job(self, batch_export_id: str) -> Job:
        raise NotImplementedError

    def _trigger(self, wait: Wait, first_poll_at: float | None) -> _PostHogPollingTrigger:
        raise NotImplementedError

    def wait_errors(self) -> tuple[type[Exception], type[Exception]]:
        """A failed job fails the sensor without a retry; a timeout is Airflow's own, which ``soft_fail``
        turns into a skip."""
        from airflow_provider_posthog.compat import AirflowSensorTimeout
        from airflow_provider_posthog.exceptions import PostHogRemoteFailureError

        return PostHogRemoteFailureError, AirflowSensorTimeout

    # -- modes ----------------------------------------------------------------------------------------------
    def _start(self, context: Context) -> Wait:
        """The wait of this try: built, announced and its links pushed once per process (a poke-mode loop
        keeps it, so "PostHog is unreachable since ..." and progress are tracked across pokes)."""
        from airflow_provider_posthog.tasks.waiting import Wait, deadline

        ti = context.get("ti")
        reschedules = context.get("task_reschedule_count") or 0
        of = (getattr(ti, "try_number", None), reschedules)
        if self._wait is not None and self._wait_of == of:
            return self._wait
        ref = self.export_ref()
        self._validate(context)
        self.completeness_mode()
        batch_export_id = self._export_id_of_try(context, ref)
        # A rescheduled poke pushes the links again (Airflow clears a task's XComs when it starts) but
        # repeats no line of the first poke.
        first = reschedules == 0
        self.push_export_xcom(context, batch_export_id, announce=first)
        wait = Wait(
            self._job(batch_export_id),
            poll_interval=float(self.poke_interval),
            end_time=deadline(self._started_at(context, reschedules), self.timeout, None),
            unreachable_timeout=self.unreachable_timeout,
            first_reads_export=first,
        )
        if first:
            wait.log_link(self.log, self.hook.ui_url)
        self._wait, self._wait_of = wait, of
        return wait

    #: Where a rescheduled sensor keeps the id it found for ``batch_export_name`` (Airflow 3.3+).
    EXPORT_KEY = "posthog_batch_export"

    def _export_id_of_try(self, context: Context, ref: ExportRef) -> str:
        """The export's id; a name is looked up once per try: in ``reschedule`` mode the id found on the
        first poke is read back from the task state store (Airflow 3.3+; before, each poke looks it up)."""
        store = self._state_store(context)
        if ref.name is None or store is None:
            return self.export_id(ref)
        try_number = context["ti"].try_number
        saved = store.get(self.EXPORT_KEY)
        if (
            isinstance(saved, dict)
            and saved.get("try") == try_number
            and saved.get("name") == ref.name
            and isinstance(saved.get("id"), str)
        ):
            self.resolved_export_id = str(saved["id"])
            return self.resolved_export_id
        export_id = self.export_id(ref)
        store.set(self.EXPORT_KEY, {"try": try_number, "name": ref.name, "id": export_id})
        return export_id

    def _started_at(self, context: Context, reschedules: int) -> float:
        """When the sensor's ``timeout`` started counting (a rescheduled sensor: its first poke)."""
        if self.reschedule and reschedules:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                return first.timestamp()
        return time.time()

    def poke(self, context: Context) -> bool:
        from airflow_provider_posthog.tasks.waiting import log_step

        wait = self._start(context)
        early = wait.before_first_poll(time.time())
        if early is not None:  # nothing PostHog could say yet would end the wait: no request
            log_step(self.log, early)
            return False
        store = self._state_store(context)
        if store is not None:
            self._carry_unreachable(store, context, wait)
        before = wait.unreachable_since
        try:
            step = wait.step(self.poll(wait), time.time())
        finally:
            if store is not None and wait.unreachable_since != before:
                self._keep_unreachable(store, context, wait.unreachable_since)
        log_step(self.log, step)
        if step.event is None:
            return False
        self.finish_wait(context, step.event)
        return True

    # In ``reschedule`` mode each poke is a new process. On Airflow 3.3+ the time PostHog became unreachable
    # is kept in the task's state store, so ``unreachable_timeout`` and "PostHog answered again" hold across
    # pokes as they do in one process (on older Airflow each poke starts afresh).
    UNREACHABLE_KEY = "posthog_unreachable_since"

    def _state_store(self, context: Context) -> Any:
        return context.get("task_state_store") if self.reschedule else None

    def _carry_unreachable(self, store: Any, context: Context, wait: Wait) -> None:
        saved = store.get(self.UNREACHABLE_KEY)
        if wait.unreachable_since is None and isinstance(saved, dict):
            since = saved.get("since")
            if saved.get("try") == context["ti"].try_number and isinstance(since, (int, float)):
                wait.unreachable_since = float(since)

    def _keep_unreachable(self, store: Any, context: Context, since: float | None) -> None:
        if since is None:
            store.delete(self.UNREACHABLE_KEY)
        else:
            store.set(self.UNREACHABLE_KEY, {"try": context["ti"].try_number, "since": since})

    def execute(self, context: Context) -> Any:
        from airflow_provider_posthog.tasks.waiting import SUCCESS, log_step

        # Argument errors fail here, before the poke loop (where soft_fail would turn them into a skip).
        wait = self._start(context)
        if not self.deferrable:
            return super().execute(context)
        now = time.time()
        early = wait.before_first_poll(now)
        if early is not None:  # nothing to poll yet: defer at once, the trigger polls first when it is due
            log_step(self.log, early)
            self._defer(wait, now + early.sleep)
        step = wait.step(self.poll(wait), time.time())
        log_step(self.log, step)
        if step.event is not None and step.event["status"] == SUCCESS:
            self.finish_wait(context, step.event)
            return None
        # Failures too go through the trigger: resume_execution then applies soft_fail/never_fail uniformly.
        # Still running: the trigger's first poll waits an interval (we just polled). Ended: poll at once.
        self._defer(wait, None if step.event else time.time() + wait.poll_interval)

    def _defer(self, wait: Wait, first_poll_at: float | None) -> NoReturn:
        self.defer(
            trigger=self._trigger(wait, first_poll_at),
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

    def _job(self, batch_export_id: str) -> Job:
        from airflow_provider_posthog.api.jobs import BackfillJob

        return BackfillJob(batch_export_id, self.require_field("backfill_id"))

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
    not be coarser than the DAG's. PostHog starts the interval's last run only when the interval ends, so an
    interval wait checks first one ``poke_interval`` after ``data_interval_end`` (at once if it starts later).

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

    def _validate(self, context: Context | None) -> None:
        """Check the rendered interval once; a zero-width one becomes the schedule's last complete period."""
        if self.optional_field("run_id") is not None or self._resolved is not None:
            return
        from airflow_provider_posthog.tasks.data_interval import resolve_range

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

    def _job(self, batch_export_id: str) -> Job:
        from airflow_provider_posthog.api.jobs import IntervalJob, RunJob

        run_id = self.optional_field("run_id")
        if run_id is not None:
            return RunJob(batch_export_id, run_id)
        return IntervalJob(batch_export_id, *self._interval())

    def _lineage_completed_runs(
        self, context: Context, event: Mapping[str, Any], export: BatchExport
    ) -> Sequence[BatchExportRun]:
        """Interval mode after a deferral: the runs the success was decided on, polled once more."""
        if event.get("run_id"):
            return super()._lineage_completed_runs(context, event, export)
        self._validate(context)
        return self.hook.run(self._job(str(event["batch_export_id"])).poll()).completed_runs

    def _trigger(self, wait: Wait, first_poll_at: float | None) -> _PostHogPollingTrigger:
        from airflow_provider_posthog.triggers.batch_export import PostHogBatchExportRunTrigger

        start = end = None
        if wait.run_id is None:
            start_at, end_at = self._interval()
            start, end = start_at.isoformat(), end_at.isoformat()
        return PostHogBatchExportRunTrigger(
            run_id=wait.run_id,
            data_interval_start=start,
            data_interval_end=end,
            **self.trigger_kwargs(wait, first_poll_at),
        )
