"""Manage batch exports as code: create (idempotent by name), update, pause, unpause, delete.

``destination`` holds credentials, so it is deliberately **not** a template field (rendered fields are stored
in the metadata DB and shown in the UI) and every secret value in it is registered with Airflow's log masker
before anything is logged. Prefer a destination builder (``airflow_provider_posthog.destinations``): it names
an Airflow connection, read only when the task runs, and its own templated settings are rendered in
``execute`` without ever being stored as rendered fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.links.posthog import ALL_LINKS
from airflow_provider_posthog.operators._base import PostHogBaseOperator
from airflow_provider_posthog.tasks.args import check_past, config_error, require_id, to_bool, to_datetime

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_posthog.destinations import DestinationBuilder

#: Export intervals PostHog accepts (``every 15 minutes`` exists in newer PostHog versions).
VALID_INTERVALS: frozenset[str] = frozenset({"hour", "day", "week", "every 5 minutes", "every 15 minutes"})
#: Export models PostHog accepts.
VALID_MODELS: frozenset[str] = frozenset({"events", "persons", "sessions", "hogql"})
IF_EXISTS_CHOICES: frozenset[str] = frozenset({"update", "skip", "error"})


def mask_destination_secrets(destination: Any) -> list[str]:
    """Register every secret value of a destination config with Airflow's masker; returns the values."""
    from airflow.sdk.log import mask_secret

    from airflow_provider_posthog.api.errors import body_secrets

    found = body_secrets(destination)
    for value in found:
        mask_secret(value)
    return found


@contextmanager
def _secrets_scrubbed(secrets: Sequence[str]) -> Iterator[None]:
    """PostHog may quote a submitted value in an error; the exception must not carry it out of the task.

    The log masker hides it in task logs, but failure callbacks and notifiers get the exception object
    itself, so its message (and PostHog's ``detail`` on it) is scrubbed here.
    """
    from airflow_provider_posthog.exceptions import PostHogError

    try:
        yield
    except PostHogError as exc:
        from airflow_provider_posthog.api.errors import scrub

        seen: set[int] = set()
        error: BaseException | None = exc
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            error.args = tuple(scrub(a, secrets) if isinstance(a, str) else a for a in error.args)
            if isinstance(getattr(error, "detail", None), str):
                error.detail = scrub(error.detail, secrets)  # type: ignore[attr-defined]
            error = error.__cause__ or error.__context__
        raise


def _validate_destination(destination: Any) -> dict[str, Any]:
    if not isinstance(destination, Mapping):
        raise config_error(
            "destination must be a dict like {'type': 'S3', 'config': {...}} or a destination builder such "
            f"as S3Destination (got {type(destination).__name__})."
        )
    if not isinstance(destination.get("type"), str) or not destination.get("type"):
        raise config_error("destination['type'] is required (e.g. 'S3', 'Postgres', 'NoOp').")
    if "config" in destination and not isinstance(destination["config"], Mapping):
        raise config_error("destination['config'] must be a dict.")
    return dict(destination)


def _validate_choice(value: Any, name: str, choices: frozenset[str]) -> str:
    if value not in choices:
        raise config_error(f"{name}={value!r} is not one of {sorted(choices)}.")
    return str(value)


class _ExportFieldsMixin:
    """Builds a create/update payload from the operator's fields, validating each one."""

    name: Any
    destination: Any
    interval: Any
    model: Any
    paused: Any
    start_at: Any
    end_at: Any
    hogql_query: Any
    filters: Any
    extra_fields: Any

    def _payload(self, *, partial: bool, destination: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``destination`` is the resolved one (a builder is built in ``execute``, never stored here)."""
        payload: dict[str, Any] = {}
        if self.name is not None:
            payload["name"] = require_id(self.name, "name")
        if destination is not None:
            payload["destination"] = _validate_destination(destination)
        if self.interval is not None:
            payload["interval"] = _validate_choice(self.interval, "interval", VALID_INTERVALS)
        if self.model is not None:
            payload["model"] = _validate_choice(self.model, "model", VALID_MODELS)
        if self.paused is not None:
            payload["paused"] = to_bool(self.paused, "paused")
        for field in ("start_at", "end_at"):
            value = getattr(self, field)
            if value is not None and value != "":
                payload[field] = to_datetime(value, field).isoformat()
        if self.hogql_query is not None:
            payload["hogql_query"] = str(self.hogql_query)
        if self.filters is not None:
            payload["filters"] = self.filters
        if self.extra_fields:
            if not isinstance(self.extra_fields, Mapping):
                raise config_error("extra_fields must be a dict of other batch export fields.")
            payload.update(self.extra_fields)
        if not partial:
            for required in ("name", "destination", "interval"):
                if required not in payload:
                    raise config_error(f"{required} is required to create a batch export.")
        elif not payload:
            raise config_error("Nothing to update: give at least one field.")
        return payload


class PostHogCreateBatchExportOperator(_ExportFieldsMixin, PostHogBaseOperator):
    """Create a batch export, idempotently by ``name``. Returns the export id (XCom ``batch_export_id`` too).

    :param name: export name, the idempotency key (templated).
    :param destination: ``{"type": ..., "config": {...}}`` (PostHog's destination) or a destination builder
        such as :class:`~airflow_provider_posthog.destinations.S3Destination`, which reads its credentials
        from an Airflow connection when the task runs. Not a template field (secrets); a builder's own
        templated settings are rendered in ``execute``.
    :param interval: ``hour``, ``day``, ``week``, ``every 5 minutes`` or ``every 15 minutes`` (templated).
    :param model: ``events``, ``persons``, ``sessions`` or ``hogql`` (templated); ``None`` (default) sends
        nothing: PostHog creates ``events`` and an update leaves the model alone.
    :param paused: ``True``/``False`` sets it; ``None`` (default) sends nothing, so a rerun never unpauses an
        export paused by hand.
    :param start_at: optional schedule start (aware datetime or ISO string, templated).
    :param end_at: optional schedule end (templated).
    :param hogql_query: optional custom query (events model).
    :param filters: optional filters (newer PostHog).
    :param extra_fields: any other batch export field, e.g. ``{"timezone": "Europe/Berlin"}``.
    :param if_exists: when an export with this name exists: ``update`` it (PATCH, the default), ``skip``
        (leave it, return its id) or ``error``.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "name",
        "interval",
        "model",
        "start_at",
        "end_at",
        "hogql_query",
    )
    operator_extra_links = ALL_LINKS

    def __init__(
        self,
        *,
        name: str,
        destination: Mapping[str, Any] | DestinationBuilder,
        interval: str,
        model: str | None = None,
        paused: bool | None = None,
        start_at: Any = None,
        end_at: Any = None,
        hogql_query: str | None = None,
        filters: Any = None,
        extra_fields: Mapping[str, Any] | None = None,
        if_exists: str = "update",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.destination = destination
        self.interval = interval
        self.model = model
        self.paused = paused
        self.start_at = start_at
        self.end_at = end_at
        self.hogql_query = hogql_query
        self.filters = filters
        self.extra_fields = extra_fields
        self.if_exists = if_exists

    def execute(self, context: Context) -> str:
        from airflow_provider_posthog.destinations import resolve_destination

        if_exists = _validate_choice(self.if_exists, "if_exists", IF_EXISTS_CHOICES)
        # A builder reads its connection here (never at parse time) and fails before any API call.
        destination = resolve_destination(self.destination, operator=self, context=context)
        secrets = mask_destination_secrets(destination)
        payload = self._payload(partial=False, destination=destination)
        with _secrets_scrubbed(secrets):
            export_id = self._create_or_update(payload, if_exists)
        self.push_export_xcom(context, export_id)
        return export_id

    def _create_or_update(self, payload: dict[str, Any], if_exists: str) -> str:
        from airflow_provider_posthog.api.endpoints import exports_named

        existing = exports_named(payload["name"], self.hook.list_batch_exports()).matches
        # A name conflict is not fixed by trying again: fail at once (PostHogConfigError is never retried).
        if len(existing) > 1:
            raise config_error(
                f"{len(existing)} batch exports are named {payload['name']!r} "
                f"({', '.join(e.id for e in existing)}); rename or delete the duplicates."
            )
        if not existing:
            export_id = self.hook.create_batch_export(payload).id
            self.log.info("Created batch export %r (%s).", payload["name"], export_id)
            return export_id
        export_id = existing[0].id
        if if_exists == "error":
            raise config_error(
                f"A batch export named {payload['name']!r} already exists ({export_id}); if_exists='error'."
            )
        if if_exists == "skip":
            self.log.info("Batch export %r exists (%s); leaving it unchanged.", payload["name"], export_id)
        else:
            self.hook.update_batch_export(export_id, payload, partial=True)
            self.log.info("Updated batch export %r (%s).", payload["name"], export_id)
        return export_id


class PostHogUpdateBatchExportOperator(_ExportFieldsMixin, PostHogBaseOperator):
    """Change some fields of an export (PATCH: fields left ``None`` are untouched). Returns the export id.

    Parameters as :class:`PostHogCreateBatchExportOperator`, all optional, plus ``batch_export_id`` or
    ``batch_export_name`` (exactly one, templated: the export to change, by id or by its current name;
    ``name`` renames it). ``destination`` may be a dict or a destination builder, as for create; a dict's
    ``config`` is merged by PostHog, so secrets need not be resent.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
        "name",
        "interval",
        "model",
        "start_at",
        "end_at",
        "hogql_query",
    )
    operator_extra_links = ALL_LINKS

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        name: str | None = None,
        destination: Mapping[str, Any] | DestinationBuilder | None = None,
        interval: str | None = None,
        model: str | None = None,
        paused: bool | None = None,
        start_at: Any = None,
        end_at: Any = None,
        hogql_query: str | None = None,
        filters: Any = None,
        extra_fields: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.name = name
        self.destination = destination
        self.interval = interval
        self.model = model
        self.paused = paused
        self.start_at = start_at
        self.end_at = end_at
        self.hogql_query = hogql_query
        self.filters = filters
        self.extra_fields = extra_fields

    def execute(self, context: Context) -> str:
        from airflow_provider_posthog.destinations import resolve_destination

        ref = self.export_ref()
        destination = resolve_destination(self.destination, operator=self, context=context)
        secrets = mask_destination_secrets(destination)
        payload = self._payload(partial=True, destination=destination)
        export_id = self.export_id(ref)
        self.push_export_xcom(context, export_id)
        with _secrets_scrubbed(secrets):
            self.hook.update_batch_export(export_id, payload, partial=True)
        self.log.info("Updated batch export %s: %s.", export_id, ", ".join(sorted(payload)))
        return export_id


class PostHogDeleteBatchExportOperator(PostHogBaseOperator):
    """Delete an export (PostHog soft-deletes it and cancels its running backfills).

    :param batch_export_id: the export (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two).
    :param missing_ok: an export that is already gone (404, or no export with ``batch_export_name``) is not
        an error (default True); the task then returns the id given, or ``None`` for a name.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
    )

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        missing_ok: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.missing_ok = missing_ok

    def execute(self, context: Context) -> str | None:
        ref = self.export_ref()
        missing_ok = to_bool(self.missing_ok, "missing_ok")
        export_id = self.resolve_export(ref, missing_ok=missing_ok)
        if export_id is None:
            self.log.info("No batch export is named %r (already deleted?); nothing to do.", ref.name)
            return None
        from airflow_provider_posthog.exceptions import PostHogNotFoundError

        try:
            self.hook.delete_batch_export(export_id)
        except PostHogNotFoundError:
            if not missing_ok:
                raise
            self.log.info("Batch export %s does not exist (already deleted?); nothing to do.", export_id)
            return export_id
        self.log.info("Deleted batch export %s.", export_id)
        return export_id


class PostHogPauseBatchExportOperator(PostHogBaseOperator):
    """Pause an export's schedule (idempotent; running runs continue). Returns the export id.

    :param batch_export_id: the export (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two).
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
    )
    operator_extra_links = ALL_LINKS

    def __init__(
        self, *, batch_export_id: str | None = None, batch_export_name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name

    def execute(self, context: Context) -> str:
        export_id = self.export_id(self.export_ref())
        self.push_export_xcom(context, export_id)
        self.hook.pause_batch_export(export_id)
        self.log.info("Paused batch export %s.", export_id)
        return export_id


class PostHogUnpauseBatchExportOperator(PostHogBaseOperator):
    """Unpause an export; with ``backfill=True``, first export what the pause skipped. Returns the export id.

    PostHog's own unpause backfill starts at the export's ``last_paused_at`` without a check, and only
    PostHog's pause action (:class:`PostHogPauseBatchExportOperator`) records that: an export created paused
    or paused with an update has none, and PostHog would then export the project's whole history. So this
    task never asks PostHog for that backfill. It backfills from a start it knows: ``backfill_start``, or
    ``last_paused_at`` when PostHog has it (and the schedule has not run since). It creates the backfill
    while the export is still paused, from the interval holding the start to the last finished interval,
    then unpauses; the schedule exports the current interval. Without a known start it fails before
    changing anything, and a failed backfill leaves the export paused. The backfill ids are pushed as XCom
    ``backfill_id`` (the first one) and ``backfill_ids``; the task does not wait for them (a
    :class:`~airflow_provider_posthog.sensors.batch_export.PostHogBackfillSensor` can).

    :param batch_export_id: the export (templated).
    :param batch_export_name: the export by its name instead (templated; give exactly one of the two).
    :param backfill: backfill the paused gap (default False).
    :param backfill_start: where that backfill starts: an aware datetime or ISO-8601 string in the past
        (templated); needed when PostHog has no usable ``last_paused_at``. Only with ``backfill=True``.
    """

    template_fields: tuple[str, ...] = (
        *PostHogBaseOperator.template_fields,
        "batch_export_id",
        "batch_export_name",
        "backfill",
        "backfill_start",
    )
    operator_extra_links = ALL_LINKS

    def __init__(
        self,
        *,
        batch_export_id: str | None = None,
        batch_export_name: str | None = None,
        backfill: bool = False,
        backfill_start: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_export_id = batch_export_id
        self.batch_export_name = batch_export_name
        self.backfill = backfill
        self.backfill_start = backfill_start

    def execute(self, context: Context) -> str:
        ref = self.export_ref()
        backfill = to_bool(self.backfill, "backfill")
        start = None
        if self.backfill_start is not None and self.backfill_start != "":
            if not backfill:
                raise config_error(
                    f"backfill_start={self.backfill_start!r} is only used with backfill=True; set "
                    "backfill=True or leave backfill_start out."
                )
            start = check_past(to_datetime(self.backfill_start, "backfill_start"), "backfill_start")
        export_id = self.export_id(ref)
        self.push_export_xcom(context, export_id)
        if not backfill:
            self.hook.unpause_batch_export(export_id, backfill=False)
            self.log.info("Unpaused batch export %s.", export_id)
            return export_id
        from airflow_provider_posthog.api.unpause import unpause_export

        result = self.hook.run(
            unpause_export(export_id, backfill=True, backfill_start=start, lookup=self.hook.backfill_lookup)
        )
        ids = [b.id for b in result.backfills]
        if ids:
            context["ti"].xcom_push(key="backfill_id", value=ids[0])
            context["ti"].xcom_push(key="backfill_ids", value=ids)
        self.log.info("%s", result.message)
        return export_id
