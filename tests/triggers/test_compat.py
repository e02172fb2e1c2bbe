"""The one compat module: version flag and async extras on any Airflow 3.x connection."""

from __future__ import annotations

import json

from airflow_provider_posthog import compat


def test_version_flags_match_the_installed_airflow() -> None:
    import airflow

    major, minor = (int(x) for x in airflow.__version__.split(".")[:2])
    assert (major, minor) == compat.AIRFLOW_VERSION
    assert compat.TRIGGER_ON_KILL_SUPPORTED is ((major, minor) >= (3, 3))


async def test_aextra_dejson_uses_the_async_method_or_falls_back() -> None:
    class New:
        async def aextra_dejson(self) -> dict[str, str]:
            return {"project_id": "7"}

    class Old:
        extra = json.dumps({"project_id": "8"})

        @property
        def extra_dejson(self) -> dict[str, str]:
            return dict(json.loads(self.extra))

    assert await compat.aextra_dejson(New()) == {"project_id": "7"}
    assert await compat.aextra_dejson(Old()) == {"project_id": "8"}
