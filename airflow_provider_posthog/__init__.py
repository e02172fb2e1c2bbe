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
        # -- the hook: connection form, declarative since Airflow 3.2 --
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_posthog.hooks.posthog.PostHogHook",
                "connection-type": "posthog",
                "hook-name": "PostHog",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "PostHog host", "password": "Personal API key"},
                    # Extra fields render in the collapsed "Extra Fields" section without placeholders, so
                    # the always-visible host field points at the required Project ID there (a "description"
                    # placeholder would be prefixed as an extra field by Airflow and never shown).
                    "placeholders": {
                        "host": "https://us.posthog.com, https://eu.posthog.com or self-hosted; "
                        "then set Project ID under Extra Fields",
                        "password": "phx_... (scopes batch_export:read, batch_export:write)",
                        "extra": '{"project_id": 12345, "timeout": 30}',
                    },
                },
                "conn-fields": {
                    "project_id": {
                        "label": "Project ID",
                        "description": (
                            "Required. The numeric PostHog project (environment) id, e.g. 12345: shown in "
                            "PostHog under Settings > Project and in its URLs (/project/12345/)."
                        ),
                        # A non-null integer: the UI renders a number input (minimum 1), marks it required
                        # and keeps Save disabled while it is empty.
                        "schema": {"type": "integer", "minimum": 1},
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "Read timeout of each API request; connect timeout is min(10, this).",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                    },
                },
            }
        ],
        "hooks": [
            {"integration-name": "PostHog", "python-modules": ["airflow_provider_posthog.hooks.posthog"]}
        ],
        # -- operators --
        "operators": [
            {
                "integration-name": "PostHog",
                "python-modules": [
                    "airflow_provider_posthog.operators.backfill",
                    "airflow_provider_posthog.operators.batch_export",
                    "airflow_provider_posthog.operators.retry_failed",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "PostHog",
                "python-modules": ["airflow_provider_posthog.sensors.batch_export"],
            }
        ],
        "triggers": [
            {
                "integration-name": "PostHog",
                "python-modules": ["airflow_provider_posthog.triggers.batch_export"],
            }
        ],
        "notifications": ["airflow_provider_posthog.notifications.posthog.PostHogSummaryNotifier"],
        "extra-links": [
            "airflow_provider_posthog.links.posthog.PostHogBatchExportLink",
            "airflow_provider_posthog.links.posthog.PostHogBackfillsLink",
            "airflow_provider_posthog.links.posthog.PostHogRunsLink",
        ],
    }
