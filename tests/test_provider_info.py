"""The provider registers with Airflow: entry point, matching package name, importable class paths."""

from __future__ import annotations

from importlib.metadata import entry_points, version

import airflow_provider_posthog


def test_entry_point_resolves_to_get_provider_info() -> None:
    eps = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_posthog")
    ]
    assert len(eps) == 1
    assert eps[0].load() is airflow_provider_posthog.get_provider_info


def test_package_name_matches_distribution() -> None:
    info = airflow_provider_posthog.get_provider_info()
    assert info["package-name"] == "airflow-provider-posthog"
    assert version("airflow-provider-posthog") == airflow_provider_posthog.__version__
