"""BigQuery destination, with the service account key of a Google Cloud connection.

Field meanings are the Google provider's: the key file JSON in extra ``keyfile_dict`` (a JSON string or an
object) or at extra ``key_path`` on the worker, the default project in extra ``project``, each also under
the older ``extra__google_cloud_platform__`` prefix. See
https://airflow.apache.org/docs/apache-airflow-providers-google/stable/connections/gcp.html.
Application Default Credentials, impersonation and Secret Manager keys live outside the connection and
cannot be handed to PostHog, which needs the key itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_provider_posthog.destinations.base import (
    DestinationBuilder,
    extra_field,
    get_connection,
    missing,
    optional_bool,
    optional_str,
    parse_json,
    require_str,
    secret,
)
from airflow_provider_posthog.exceptions import PostHogConfigError

_PREFIX = "extra__google_cloud_platform__"
#: Key file fields PostHog's BigQuery config takes (all secret for PostHog).
_KEY_FIELDS = ("private_key", "private_key_id", "client_email", "token_uri")


class BigQueryDestination(DestinationBuilder):
    """PostHog's ``BigQuery`` destination.

    :param dataset_id: the dataset (templated).
    :param table_id: the table (PostHog's default ``events``; templated).
    :param project_id: the project (templated); default: the connection's extra ``project``, else the key
        file's ``project_id``.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection (templated).
    :param use_json_type: write JSON columns instead of strings.
    """

    destination_type = "BigQuery"
    template_fields = ("dataset_id", "table_id", "project_id", "gcp_conn_id")
    _settings = ("dataset_id", "table_id", "project_id", "gcp_conn_id", "use_json_type")

    def __init__(
        self,
        *,
        dataset_id: str,
        table_id: str | None = None,
        project_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        use_json_type: bool | None = None,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.dataset_id = dataset_id
        self.table_id = table_id
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self.use_json_type = use_json_type
        self._check()

    def _check(self) -> None:
        super()._check()
        require_str(self.dataset_id, "dataset_id")
        optional_str(self.table_id, "table_id")
        optional_str(self.project_id, "project_id")
        require_str(self.gcp_conn_id, "gcp_conn_id")
        optional_bool(self.use_json_type, "use_json_type")

    def _config(self) -> dict[str, Any]:
        arg, conn_id = "gcp_conn_id", self.gcp_conn_id
        conn = get_connection(conn_id, arg)
        raw = extra_field(conn, "keyfile_dict", prefix=_PREFIX)
        path = extra_field(conn, "key_path", prefix=_PREFIX)
        if raw is None and path:
            try:
                raw = Path(str(path)).read_text()
            except OSError as exc:
                raise PostHogConfigError(
                    f"Connection {arg}={conn_id!r}: cannot read extra 'key_path' ({exc.strerror})."
                ) from None
        if raw is None:
            raise missing(
                conn_id,
                arg,
                "service account key (extra 'keyfile_dict' or 'key_path'); PostHog cannot use Application "
                "Default Credentials or a Secret Manager key",
            )
        if isinstance(raw, str):
            secret(raw)
        key = parse_json(raw, conn_id, arg, "the service account key")
        if key.get("type", "service_account") != "service_account":
            raise PostHogConfigError(
                f"Connection {arg}={conn_id!r}: the key is a {key.get('type')!r} credential; PostHog needs a "
                "service account key."
            )
        credentials: dict[str, str] = {}
        for field in _KEY_FIELDS:
            value = key.get(field)
            if not isinstance(value, str) or not value:
                raise missing(conn_id, arg, f"{field!r} in its service account key")
            credentials[field] = secret(value)
        project_id = self.project_id or extra_field(conn, "project", prefix=_PREFIX) or key.get("project_id")
        if not project_id:
            raise PostHogConfigError(
                f"project_id is required: pass project_id= or set extra 'project' of connection "
                f"{arg}={conn_id!r}."
            )
        config: dict[str, Any] = {"project_id": str(project_id), "dataset_id": self.dataset_id, **credentials}
        if self.table_id is not None:
            config["table_id"] = self.table_id
        if self.use_json_type is not None:
            config["use_json_type"] = self.use_json_type
        return config
