"""``python -m airflow_provider_posthog.emulator``."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
