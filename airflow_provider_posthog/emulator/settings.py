"""Emulator settings: one frozen-ish dataclass shared by the server, the control API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ApiGeneration = Literal["docs", "new"]

DEFAULT_API_KEY = "phx_emulator_key"
#: Five digits, like a real PostHog project id. Airflow's secrets masker is handed every value of a
#: connection's extra and warns "Skipping masking for a secret as it's too short" for any value under five
#: characters (``[logging] min_length_masked_secret``), so a one-digit id would open every task log with it.
DEFAULT_PROJECT_ID = 10001
READ_SCOPE = "batch_export:read"
WRITE_SCOPE = "batch_export:write"


@dataclass
class EmulatorSettings:
    """Knobs of the emulated PostHog (times are emulated seconds).

    ``api_generation`` picks between PostHog's current server code (``"new"``, the default) and the older
    behaviour its public API docs page describes (``"docs"``). ``logs_pak_access=None`` means "as the
    generation does" (``new``: logs readable with a personal API key; ``docs``: 403). ``schedule_runs`` makes
    unpaused exports start a run per interval as it ends; ``schedule_history`` (hours) back-fills completed
    scheduled runs for intervals that ended before an export was first scheduled. ``auto_pause`` pauses an
    export, and cancels its running backfills, once ``auto_pause_threshold`` of its latest runs (24 for an
    hourly export, 7 daily, 4 weekly) ended ``Failed``, as PostHog's run-finishing step does.
    """

    api_generation: ApiGeneration = "new"
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
    project_id: int = DEFAULT_PROJECT_ID
    organization_id: int = 1
    logs_pak_access: bool | None = None
    legacy_pak_wording: bool = False
    schedule_runs: bool = False
    schedule_history: float = 0.0
    feature_flags: frozenset[str] = field(default_factory=frozenset)
    earliest_data_at: str | None = None
    no_data: bool = False
    auto_pause: bool = True
    auto_pause_threshold: int = 3

    def __post_init__(self) -> None:
        if self.api_generation not in ("docs", "new"):
            raise ValueError(f"api_generation must be 'docs' or 'new', not {self.api_generation!r}")
        if self.run_duration < 0 or self.backfill_row_delay < 0 or self.backfill_run_delay < 0:
            raise ValueError("durations must be >= 0")
        if self.schedule_history < 0:
            raise ValueError("schedule_history must be >= 0")
        if self.auto_pause_threshold < 1:
            raise ValueError("auto_pause_threshold must be >= 1")
        self.feature_flags = frozenset(self.feature_flags)

    @property
    def logs_for_personal_keys(self) -> bool:
        """Whether the logs endpoints accept a personal API key (the override, else the generation's way)."""
        if self.logs_pak_access is not None:
            return self.logs_pak_access
        return self.api_generation == "new"

    @property
    def no_pak_message(self) -> str:
        """PostHog's 403 text for actions closed to personal API keys (older servers capitalise it)."""
        if self.legacy_pak_wording:
            return "This action does not support Personal API Key access"
        return "This action does not support personal API key access"
