"""Apache Airflow provider for PostHog batch exports."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

    Pure data: Airflow calls this in every CLI command and process start, so it must import nothing.
    """
    return {
        "package-name": "airflow-provider-posthog",
        "name": "PostHog",
        "description": "Drive PostHog batch exports (exports, runs, backfills) from Airflow DAGs.",
        "integrations": [
            {
                "integration-name": "PostHog",
                "external-doc-url": "https://posthog.com/docs/cdp/batch-exports",
                "tags": ["service"],
            }
        ],
    }
