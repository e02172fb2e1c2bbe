"""PostHog's ``HTTP`` destination: events sent to another PostHog project's batch endpoint.

The token (the receiving project's API key) comes from the password of any Airflow connection, e.g. a
generic or ``http`` connection. PostHog accepts this destination for the ``events`` model only, and newer
PostHog versions accept only ``https://us.i.posthog.com/batch/`` and ``https://eu.i.posthog.com/batch/``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_posthog.destinations.base import (
    DestinationBuilder,
    get_connection,
    missing,
    require_str,
    secret,
)
from airflow_provider_posthog.exceptions import PostHogConfigError


class HTTPDestination(DestinationBuilder):
    """PostHog's ``HTTP`` destination.

    :param url: the batch endpoint, e.g. ``https://eu.i.posthog.com/batch/`` (templated).
    :param token_conn_id: Airflow connection whose password is the receiving project's API key (templated).
    """

    destination_type = "HTTP"
    template_fields = ("url", "token_conn_id")
    _settings = template_fields

    def __init__(
        self,
        *,
        url: str,
        token_conn_id: str,
        include_events: list[str] | None = None,
        exclude_events: list[str] | None = None,
    ) -> None:
        super().__init__(include_events=include_events, exclude_events=exclude_events)
        self.url = url
        self.token_conn_id = token_conn_id
        self._check()

    def _check(self) -> None:
        super()._check()
        require_str(self.url, "url")
        if not self.url.startswith(("https://", "http://", "{{")):
            raise PostHogConfigError(
                f"url must be an http(s) URL such as https://eu.i.posthog.com/batch/ (got {self.url!r})."
            )
        require_str(self.token_conn_id, "token_conn_id")

    def _config(self) -> dict[str, Any]:
        conn = get_connection(self.token_conn_id, "token_conn_id")
        if not conn.password:
            raise missing(self.token_conn_id, "token_conn_id", "password (the project API key)")
        return {"url": self.url, "token": secret(conn.password)}
