"""Emulator settings: one frozen-ish dataclass shared by the server, the control API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ApiGeneration = Literal["docs", "new"]

DEFAULT_API_KEY = "phx_emulator_key"
READ_SCOPE = "batch_export:read"
WRITE_SCOPE = "batch_export:write"


@dataclass
class EmulatorSettings:
    """Knobs of the emulated PostHog (times are emulated seconds; see ``docs/emulator.md``).

    ``api_generation`` picks between the behaviour the public docs page describes (``"docs"``, the default)
    and the newest PostHog code (``"new"``), see API.md's [DOCS]/[NEW] markers.
    """

    api_generation: ApiGeneration = "docs"
    run_duration: float = 1.0
    backfill_row_delay: float = 0.5
    backfill_run_delay: float = 0.1
    backfill_starting_time: float = 0.2
    run_starting_fraction: float = 0.1
    records_per_run: int = 100
    rate_limit_per_minute: int | None = None
    rate_limit_per_hour: int | None = None
    retry_after_header: bool = True
    max_concurrent_backfills: int | None = None
    api_key: str = DEFAULT_API_KEY
    project_id: int = 1
    organization_id: int = 1
    logs_pak_access: bool = True
    feature_flags: frozenset[str] = field(default_factory=frozenset)
    earliest_data_at: str | None = None
    no_data: bool = False

    def __post_init__(self) -> None:
        if self.api_generation not in ("docs", "new"):
            raise ValueError(f"api_generation must be 'docs' or 'new', not {self.api_generation!r}")
        if self.run_duration < 0 or self.backfill_row_delay < 0 or self.backfill_run_delay < 0:
            raise ValueError("durations must be >= 0")
        self.feature_flags = frozenset(self.feature_flags)
