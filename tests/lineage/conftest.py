"""Lineage fixtures: a migrated metadata DB in the session's temp AIRFLOW_HOME (set by tests/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def lineage_db() -> Iterator[None]:
    """Create or upgrade the tables without dropping anything another test area stored."""
    from airflow.utils import db

    db.initdb()
    yield
