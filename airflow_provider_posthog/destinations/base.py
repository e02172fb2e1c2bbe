"""The builder base class, argument checks, connection reading and the one entry point the operators call.

A builder holds only non-secret settings and connection ids, so constructing one (at DAG parse time) reads
nothing, and ``repr()``, rendered fields and serialized DAGs cannot carry a credential. Credentials are read
from the Airflow connection in :meth:`DestinationBuilder.build`, which runs inside the task, and every secret
is registered with Airflow's log masker before it is used.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_posthog.exceptions import PostHogConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection, Context

#: PostHog's S3 and Azure Blob file formats, and the compressions each accepts.
FILE_FORMATS: tuple[str, ...] = ("JSONLines", "Parquet")
COMPRESSIONS: dict[str, tuple[str, ...]] = {
    "Parquet": ("zstd", "lz4", "snappy", "gzip", "brotli"),
    "JSONLines": ("gzip", "brotli"),
}


def is_template(value: Any) -> bool:
    """A Jinja string is checked after rendering, in ``build()``, not when the DAG file is parsed."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def require_str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PostHogConfigError(f"{name} is required: a non-empty string (got {value!r}).")
    return value


def optional_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    return require_str(value, name)


def choice(value: Any, name: str, allowed: Sequence[str]) -> str | None:
    """``None`` means "PostHog's default"; anything else must be one of ``allowed``."""
    if value is None or is_template(value):
        return value
    if value not in allowed:
        raise PostHogConfigError(f"{name}={value!r} is not allowed; use one of {list(allowed)}.")
    return str(value)


def optional_bool(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool) or is_template(value):
        return value
    raise PostHogConfigError(f"{name} must be True or False (got {value!r}).")


def optional_int(value: Any, name: str, *, minimum: int = 1) -> int | None:
    if value is None or is_template(value):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PostHogConfigError(f"{name} must be an integer >= {minimum} (got {value!r}).")
    return value


def event_names(value: Any, name: str) -> list[str] | None:
    """``include_events``/``exclude_events``: a list of event names, as PostHog stores them."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Collection):
        raise PostHogConfigError(f"{name} must be a list of event names (got {value!r}).")
    names = list(value)
    if not all(isinstance(n, str) and n for n in names):
        raise PostHogConfigError(f"{name} must be a list of non-empty event names (got {names!r}).")
    return names


def check_compression(file_format: Any, compression: Any) -> None:
    """PostHog's rule: the compression must suit the file format (``JSONLines`` when none is given)."""
    if compression is None or is_template(compression) or is_template(file_format):
        return
    allowed = COMPRESSIONS.get(file_format or "JSONLines", ())
    if compression not in allowed:
        raise PostHogConfigError(
            f"compression={compression!r} is not allowed with file_format={file_format or 'JSONLines'!r}; "
            f"use one of {list(allowed)} or None."
        )


# -- connections ------------------------------------------------------------------------------------------


def get_connection(conn_id: str, arg: str) -> Connection:
    """Airflow's connection API (secrets backends, env vars, the metadata DB); no provider package needed."""
    from airflow.sdk import BaseHook

    try:
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import AirflowNotFoundException  # type: ignore[no-redef,attr-defined,unused-ignore]

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise PostHogConfigError(
            f"{arg}={conn_id!r}: no Airflow connection with this id is defined."
        ) from None


def extra_field(conn: Connection, name: str, *, prefix: str | None = None) -> Any:
    """An extra, by its short name or (older UIs) ``extra__<conn_type>__<name>``; empty means absent."""
    extras = conn.extra_dejson
    value = extras.get(name)
    if value in (None, "") and prefix:
        value = extras.get(f"{prefix}{name}")
    return None if value == "" else value


def secret(value: str) -> str:
    """Register a credential with Airflow's log masker, before anything else is done with it.

    Each line of a multi-line secret (a PEM key) is registered too, so a key logged line by line is hidden.
    """
    from airflow.sdk.log import mask_secret

    mask_secret(value)
    if "\n" in value:
        for line in value.splitlines():
            if line.strip() and not line.startswith("-----"):
                mask_secret(line.strip())
    return value


def missing(conn_id: str, arg: str, field: str) -> PostHogConfigError:
    return PostHogConfigError(f"Connection {arg}={conn_id!r} has no {field}.")


def sql_login_config(
    conn: Connection, conn_id: str, arg: str, database: str | None, *, password_hint: str = ""
) -> dict[str, Any]:
    """``user``/``password``/``host``/``database``[/``port``] of a Postgres-style connection.

    The Postgres and Amazon providers keep the *database* in the connection's schema field; ``database``
    (the builder's setting) overrides it.
    """
    if not conn.host:
        raise missing(conn_id, arg, "host")
    if not conn.login:
        raise missing(conn_id, arg, "login (user)")
    if not conn.password:
        raise missing(conn_id, arg, f"password{password_hint}")
    database = database or conn.schema
    if not database:
        raise PostHogConfigError(
            f"database is required: pass database= or set the database (schema field) of connection "
            f"{arg}={conn_id!r}."
        )
    config: dict[str, Any] = {
        "user": secret(conn.login),
        "password": secret(conn.password),
        "host": conn.host,
        "database": database,
    }
    if conn.port:
        config["port"] = int(conn.port)
    return config


def parse_json(value: Any, conn_id: str, arg: str, field: str) -> dict[str, Any]:
    """A JSON object given as a dict or a string; the error never quotes the (secret) content."""
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        raise PostHogConfigError(f"Connection {arg}={conn_id!r}: {field} is not a JSON object.")
    return parsed


# -- the builder base ---------------------------------------------------------------------------------------


class DestinationBuilder:
    """A PostHog batch export destination whose credentials come from an Airflow connection.

    Subclasses declare their PostHog ``destination_type``, validate their settings in ``__init__`` (through
    :meth:`_check`) and read the connection in :meth:`_config`. Every constructor argument is a setting,
    never a secret, so ``repr()`` shows them all.

    :param include_events: export only these events (PostHog's ``include_events``).
    :param exclude_events: never export these events (PostHog's ``exclude_events``).
    """

    destination_type: ClassVar[str]
    #: Settings Airflow renders with Jinja before ``execute`` when the operator renders the builder.
    template_fields: Sequence[str] = ()
    #: Constructor arguments in ``repr()`` order (all non-secret).
    _settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, include_events: Any = None, exclude_events: Any = None) -> None:
        self.include_events = include_events
        self.exclude_events = exclude_events

    def _check(self) -> None:
        """Validate the non-secret settings; called at construction and again after templates rendered."""
        event_names(self.include_events, "include_events")
        event_names(self.exclude_events, "exclude_events")
        for name in self._settings:
            if name not in self.template_fields and is_template(getattr(self, name)):
                raise PostHogConfigError(
                    f"{name}={getattr(self, name)!r}: {name} is not templated; the templated settings of "
                    f"{type(self).__name__} are {list(self.template_fields)}."
                )

    def _config(self) -> dict[str, Any]:
        """PostHog's ``config`` for this destination, credentials included. Runs only in ``build()``."""
        raise NotImplementedError

    def _integration_id(self) -> int | None:
        """The PostHog Integration holding the credentials, for destinations that need one."""
        return None

    def build(self) -> dict[str, Any]:
        """PostHog's ``{"type": ..., "config": {...}}``: reads the connection now (call it in the task)."""
        self._check()
        for name in self.template_fields:
            if is_template(getattr(self, name)):
                raise PostHogConfigError(
                    f"{type(self).__name__}.{name}={getattr(self, name)!r} was not rendered; "
                    "pass the builder to a PostHog operator, which renders it before building."
                )
        config = self._config()
        for key in ("include_events", "exclude_events"):
            names = event_names(getattr(self, key), key)
            if names is not None:
                config[key] = names
        destination: dict[str, Any] = {"type": self.destination_type, "config": config}
        integration_id = self._integration_id()
        if integration_id is not None:
            destination["integration_id"] = integration_id
        return destination

    def __repr__(self) -> str:
        names = (*self._settings, "include_events", "exclude_events")
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names if getattr(self, n) is not None)
        return f"{type(self).__name__}({shown})"

    __str__ = __repr__


def resolve_destination(
    value: Mapping[str, Any] | DestinationBuilder | None,
    *,
    operator: Any = None,
    context: Context | None = None,
) -> dict[str, Any] | None:
    """What the operators send as ``destination``: a dict passes through, a builder is rendered and built.

    :param value: ``{"type": ..., "config": {...}}``, a :class:`DestinationBuilder` or ``None``.
    :param operator: the running operator; with ``context`` it renders the builder's ``template_fields``
        (the builder is not an operator template field, so nothing secret is ever stored as rendered).
        A copy is rendered: the DAG's builder keeps its templates for the next run in the same process
        (``dag.test()``) and for any other task sharing it.
    :param context: the task's context.
    """
    if value is None:
        return None
    if isinstance(value, DestinationBuilder):
        if operator is not None and context is not None:
            value = _render(value, operator, context)
        return value.build()
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise PostHogConfigError(
        "destination must be a dict like {'type': 'S3', 'config': {...}} or a destination builder such as "
        f"S3Destination (got {type(value).__name__})."
    )


def _render(builder: DestinationBuilder, operator: Any, context: Context) -> DestinationBuilder:
    """A rendered shallow copy; a failing template is named (settings only: the message holds no secret)."""
    rendered = copy.copy(builder)
    for name in builder.template_fields:
        raw = getattr(builder, name)
        try:
            setattr(rendered, name, operator.render_template(raw, context))
        except Exception as exc:
            raise PostHogConfigError(
                f"destination: {type(builder).__name__}.{name}={raw!r} could not be rendered: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return rendered
