"""Sensors that wait for PostHog work someone else started: a backfill, a run, or a scheduled interval.

Poke, reschedule and deferrable modes decide through the same ``utils.wait`` functions as the triggers.
Every error is an ``AirflowException``; remote failures are also ``AirflowFailException`` (retrying a sensor
does not un-fail a run), so ``soft_fail=True`` turns them into a skip in every mode.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_posthog.api.statuses import Outcome
from airflow_provider_posthog.compat import AirflowSensorTimeout
from airflow_provider_posthog.exceptions import PostHogRemoteFailureError, PostHogTriggerError
from airflow_provider_posthog.links.posthog import (
    ALL_LINKS,
)
from airflow_provider_posthog.operators._base import PostHogTaskMixin, default_deferrable
from airflow_provider_posthog.utils.wait import (
    ERROR,
    FAILED,
    SUCCESS,
    TIMEOUT,
    decide_interval,
    decide_run,
    decision_event,
    failure_message,
    require_id,
    validate_event,
)

if TYPE_CHECKING:
    import datetime as dt

    from airflow.sdk import Context

    from airflow_provider_posthog.triggers.batch_export import _PostHogPollingTrigger
    from airflow_provider_posthog.utils.wait import Decision


class _PostHogSensor(PostHogTaskMixin, BaseSensorOperator):
    """Shared sensor logic: lazy hook, links, poke -> decision, defer -> same decision via the trigger.

    :param batch_export_id: the export (templated).
    :param posthog_conn_id: Airflow connection id.
    :param project_id: overrides the connection's project id.
    :param deferrable: wait in the triggerer. Default: ``[operators] default_deferrable``.
    :param poke_interval: seconds between checks (default 60).
    """

    template_fields: tuple[str, ...] = ("batch_export_id", "posthog_conn_id", "project_id")
    operator_extra_links = ALL_LINKS

    def __init__(
        self,
        *,
        batch_export_id: str,
        posthog_conn_id: str = "posthog_default",
        project_id: int | str | None = None,
        deferrable: bool | None = None,
        poke_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.batch_export_id = batch_export_id
        self.posthog_conn_id = posthog_conn_id
        self.project_id = project_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._links_pushed = False

    # -- subclass API ---------------------------------------------------------------------------------------
    def _validate(self, context: Context) -> None:
        """Check the rendered arguments before the first call (config errors are never retried)."""

    def _decide(self, batch_export_id: str) -> Decision:
        raise NotImplementedError

    def _event_ids(self) -> dict[str, str | None]:
        return {}

    def _trigger(
        self, batch_export_id: str, end_time: float, first_poll_at: float | None
    ) -> _PostHogPollingTrigger:
        raise NotImplementedError

    # -- modes ----------------------------------------------------------------------------------------------
    def _push_links(self, context: Context, batch_export_id: str) -> None:
        if self._links_pushed:
            return
        self.push_export_xcom(context, batch_export_id)
        self._links_pushed = True

    def poke(self, context: Context) -> bool:
        batch_export_id = require_id(self.batch_export_id, "batch_export_id")
        self._validate(context)
        self._push_links(context, batch_export_id)
        decision = self._decide(batch_export_id)
        if not decision.done:
            self.log.info("%s", decision.message)
            return False
        event = decision_event(decision, batch_export_id=batch_export_id, **self._event_ids())
        self._finish(event)
        return True

    def execute(self, context: Context) -> Any:
        # Argument errors fail here, before the poke loop (where soft_fail would turn them into a skip).
        batch_export_id = require_id(self.batch_export_id, "batch_export_id")
        self._validate(context)
        if not self.deferrable:
            return super().execute(context)
        self._push_links(context, batch_export_id)
        decision = self._decide(batch_export_id)
        if decision.done and decision.outcome is Outcome.SUCCEEDED:
            self.log.info("%s", decision.message)
            return None
        # Failures too go through the trigger: resume_execution then applies soft_fail/never_fail uniformly.
        # Still running: the trigger's first poll waits an interval (we just polled). Failed: poll at once.
        first_poll_at = None if decision.done else time.time() + float(self.poke_interval)
        self.defer(
            trigger=self._trigger(batch_export_id, time.time() + self.timeout, first_poll_at),
            method_name="execute_complete",
            # The trigger's own deadline (self.timeout) comes first and ends in AirflowSensorTimeout.
            timeout=None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        self._finish(validate_event(event))

    def _finish(self, event: dict[str, Any]) -> None:
        """One completion path for poke and deferred modes: success only on an explicit success event."""
        status = event["status"]
        if status == SUCCESS:
            self.log.info("%s", event["message"])
            return
        if status == FAILED:
            raise PostHogRemoteFailureError(
                failure_message(event, self._log_tails(str(event["batch_export_id"]), event))
            )
        if status == TIMEOUT:
            raise AirflowSensorTimeout(str(event["message"]))
        if status == ERROR:
            raise PostHogTriggerError(str(event["message"]))
        raise PostHogTriggerError(f"Unknown PostHog event status {status!r}.")


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
        require_id(self.backfill_id, "backfill_id")

    def _event_ids(self) -> dict[str, str | None]:
        return {"backfill_id": require_id(self.backfill_id, "backfill_id")}

    def _decide(self, batch_export_id: str) -> Decision:
        return self._poll_backfill(batch_export_id, require_id(self.backfill_id, "backfill_id"))

    def _trigger(
        self, batch_export_id: str, end_time: float, first_poll_at: float | None
    ) -> _PostHogPollingTrigger:
        from airflow_provider_posthog.triggers.batch_export import PostHogBackfillTrigger

        return PostHogBackfillTrigger(
            batch_export_id=batch_export_id,
            backfill_id=require_id(self.backfill_id, "backfill_id"),
            posthog_conn_id=self.posthog_conn_id,
            project_id=self._project_id(),
            poll_interval=float(self.poke_interval),
            end_time=end_time,
            first_poll_at=first_poll_at,
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
    complete period of the DAG's own schedule ending at that time (``utils.data_interval``).
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

    def _validate(self, context: Context) -> None:
        self._resolve_interval(context)

    def _single_run(self) -> str | None:
        if self.run_id is None or (isinstance(self.run_id, str) and not self.run_id.strip()):
            return None
        return require_id(self.run_id, "run_id")

    def _resolve_interval(self, context: Context | None) -> None:
        """Check the rendered interval; a zero-width one becomes the schedule's last complete period."""
        from airflow_provider_posthog.utils.data_interval import resolve_range

        if self._single_run() is not None:
            return
        self._resolved = resolve_range(
            self.data_interval_start,
            self.data_interval_end,
            context,
            start_name="data_interval_start",
            end_name="data_interval_end",
            log=self.log,
        )
        self._interval()

    def _interval(self) -> tuple[dt.datetime, dt.datetime]:
        from airflow_provider_posthog.exceptions import PostHogConfigError

        if self._resolved is None:
            self._resolve_interval(None)
        assert self._resolved is not None
        start, end = self._resolved
        if start >= end:
            raise PostHogConfigError(
                f"data_interval_start ({start.isoformat()}) must be before "
                f"data_interval_end ({end.isoformat()})."
            )
        return start, end

    def _event_ids(self) -> dict[str, str | None]:
        return {"run_id": self._single_run()}

    def _decide(self, batch_export_id: str) -> Decision:
        run_id = self._single_run()
        if run_id is not None:
            return decide_run(self.hook.get_run(batch_export_id, run_id))
        start, end = self._interval()
        runs = self.hook.list_runs(
            batch_export_id, ordering="-data_interval_start", start=start.isoformat(), end=end.isoformat()
        )
        return decide_interval(runs, start, end)

    def _trigger(
        self, batch_export_id: str, end_time: float, first_poll_at: float | None
    ) -> _PostHogPollingTrigger:
        from airflow_provider_posthog.triggers.batch_export import PostHogBatchExportRunTrigger

        run_id = self._single_run()
        start = end = None
        if run_id is None:
            start_dt, end_dt = self._interval()
            start, end = start_dt.isoformat(), end_dt.isoformat()
        return PostHogBatchExportRunTrigger(
            batch_export_id=batch_export_id,
            run_id=run_id,
            data_interval_start=start,
            data_interval_end=end,
            posthog_conn_id=self.posthog_conn_id,
            project_id=self._project_id(),
            poll_interval=float(self.poke_interval),
            end_time=end_time,
            first_poll_at=first_poll_at,
        )
