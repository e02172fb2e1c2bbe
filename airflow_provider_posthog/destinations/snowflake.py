"""Snowflake destination, from a ``snowflake`` connection of the Snowflake provider.

Field meanings are the provider's: login = user, password = password (or, with a private key, the key's
passphrase), schema = schema, extras ``account``, ``region``, ``warehouse``, ``database``, ``role``,
``private_key_content`` (PEM, or PEM encoded in base64) and ``private_key_file`` (a path on the worker),
each also accepted with the older ``extra__snowflake__`` prefix. See
https://airflow.apache.org/docs/apache-airflow-providers-snowflake/stable/connections/snowflake.html.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.destinations.base import (
    DestinationBuilder,
    extra_field,
    get_connection,
    missing,
    optional_str,
    require_str,
    secret,
)
from airflow_provider_posthog.exceptions import PostHogConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

_PREFIX = "extra__snowflake__"
#: Authenticators PostHog can reproduce: plain password or key pair (the provider's default ``snowflake``).
_SUPPORTED_AUTHENTICATORS = (None, "snowflake", "snowflake_jwt")


class SnowflakeDestination(DestinationBuilder):
    """PostHog's ``Snowflake`` destination; password or key-pair authentication, as the connection has it.

    Each setting left ``None`` comes from the connection; PostHog requires account, database, warehouse
    and schema, so one of the two must give each.

    :param account: account identifier (templated); default: extra ``account`` (with ``.region`` appended
        when the connection sets extra ``region``, as the Snowflake connector does).
    :param database: database (templated); default: extra ``database``.
    :param warehouse: warehouse (templated); default: extra ``warehouse``.
    :param schema: schema (templated); default: the connection's schema.
    :param role: role (templated); default: extra ``role``.
    :param table_name: the table (PostHog's default ``events``; templated).
    :param snowflake_conn_id: Airflow ``snowflake`` connection (templated).
    """

    destination_type = "Snowflake"
    template_fields = (
        "account",
        "database",
        "warehouse",
        "schema",
        "role",
        "table_name",
        "snowflake_conn_id",
    )
    _settings = template_fields

    def __init__(
        self,
        *,
        account: str | None = None,
        database: str | None = None,
        warehouse: str | None = None,
        schema: str | None = None,
        role: str | None = None,
        table_name: str | None = None,
        snowflake_conn_id: str = "snowflake_default",
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.account = account
        self.database = database
        self.warehouse = warehouse
        self.schema = schema
        self.role = role
        self.table_name = table_name
        self.snowflake_conn_id = snowflake_conn_id
        self._check()

    def _check(self) -> None:
        super()._check()
        for name in ("account", "database", "warehouse", "schema", "role", "table_name"):
            optional_str(getattr(self, name), name)
        require_str(self.snowflake_conn_id, "snowflake_conn_id")

    def _config(self) -> dict[str, Any]:
        arg, conn_id = "snowflake_conn_id", self.snowflake_conn_id
        conn = get_connection(conn_id, arg)
        authenticator = conn.extra_dejson.get("authenticator")
        if authenticator not in _SUPPORTED_AUTHENTICATORS:
            raise PostHogConfigError(
                f"Connection {arg}={conn_id!r} uses authenticator {authenticator!r}; PostHog supports only "
                "password or key-pair authentication."
            )
        if not conn.login:
            raise missing(conn_id, arg, "login (user)")

        def setting(name: str, fallback: Any) -> str:
            value = getattr(self, name) or fallback
            if not value:
                source = "schema" if name == "schema" else f"extra {name!r}"
                raise PostHogConfigError(
                    f"{name} is required: pass {name}= or set the {source} of connection {arg}={conn_id!r}."
                )
            return str(value)

        account = self.account
        if not account:
            account = extra_field(conn, "account", prefix=_PREFIX)
            region = extra_field(conn, "region", prefix=_PREFIX)
            if account and region and "." not in str(account):
                account = f"{account}.{region}"
        config: dict[str, Any] = {
            "account": setting("account", account),
            "user": secret(conn.login),
            "database": setting("database", extra_field(conn, "database", prefix=_PREFIX)),
            "warehouse": setting("warehouse", extra_field(conn, "warehouse", prefix=_PREFIX)),
            "schema": setting("schema", conn.schema),
        }
        role = self.role or extra_field(conn, "role", prefix=_PREFIX)
        if role:
            config["role"] = role
        if self.table_name is not None:
            config["table_name"] = self.table_name
        private_key = _private_key(conn, conn_id, arg)
        if private_key is not None:
            config["authentication_type"] = "keypair"
            config["private_key"] = private_key
            if conn.password:
                config["private_key_passphrase"] = secret(conn.password)
        else:
            if not conn.password:
                raise missing(conn_id, arg, "password (nor extra 'private_key_content'/'private_key_file')")
            config["authentication_type"] = "password"
            config["password"] = secret(conn.password)
        return config


def _private_key(conn: Connection, conn_id: str, arg: str) -> str | None:
    """The PEM text PostHog expects: ``private_key_content`` (PEM or base64 PEM) or ``private_key_file``."""
    content = extra_field(conn, "private_key_content", prefix=_PREFIX)
    path = extra_field(conn, "private_key_file", prefix=_PREFIX)
    if content and path:
        raise PostHogConfigError(
            f"Connection {arg}={conn_id!r} sets both extra 'private_key_content' and 'private_key_file'; "
            "keep one (as the Snowflake provider requires)."
        )
    if path:
        try:
            content = Path(str(path)).read_text()
        except OSError as exc:
            raise PostHogConfigError(
                f"Connection {arg}={conn_id!r}: cannot read extra 'private_key_file' ({exc.strerror})."
            ) from None
    if not content:
        return None
    text = secret(str(content))
    if "-----BEGIN" not in text:
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise PostHogConfigError(
                f"Connection {arg}={conn_id!r}: the private key is neither PEM nor base64-encoded PEM."
            ) from None
        secret(text)
    return text
