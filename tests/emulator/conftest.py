"""Helpers for the emulator's own tests: a tiny HTTP client bound to the session emulator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from airflow_provider_posthog.emulator import PostHogEmulator

S3_CONFIG = {
    "bucket_name": "my-bucket",
    "region": "us-east-1",
    "prefix": "posthog-events/",
    "aws_access_key_id": "AKIA_SECRET",
    "aws_secret_access_key": "very-secret",
}


class Api:
    """Real HTTP against the emulator, with the default key and project unless told otherwise."""

    def __init__(self, emulator: PostHogEmulator) -> None:
        self.emulator = emulator
        self.session = requests.Session()
        self.key = emulator.api_key

    def url(self, suffix: str = "", *, prefix: str = "projects", project: int | str | None = None) -> str:
        project = self.emulator.project_id if project is None else project
        return f"{self.emulator.base_url}/api/{prefix}/{project}/batch_exports/{suffix.lstrip('/')}"

    def request(
        self,
        method: str,
        suffix: str = "",
        *,
        key: str | None = None,
        prefix: str = "projects",
        project: int | str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {key or self.key}")
        url = self.url(suffix, prefix=prefix, project=project)
        return self.session.request(method, url, headers=headers, timeout=10, **kwargs)

    def get(self, suffix: str = "", **kwargs: Any) -> requests.Response:
        return self.request("GET", suffix, **kwargs)

    def post(self, suffix: str = "", json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", suffix, json=json, **kwargs)

    def create_export(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "name": "S3 export",
            "interval": "hour",
            "destination": {"type": "S3", "config": dict(S3_CONFIG)},
        }
        body.update(overrides)
        response = self.post("", body)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def api(posthog_emulator: PostHogEmulator) -> Api:
    return Api(posthog_emulator)


@pytest.fixture
def docs_generation(posthog_emulator: PostHogEmulator) -> None:
    """Pin a test to the older API generation the public docs page describes (the default is ``new``)."""
    posthog_emulator.control.configure(api_generation="docs")
