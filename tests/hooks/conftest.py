"""Fixtures for hook tests: env-var connections, a fast retry policy (constants in hook_helpers.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hook_helpers import HOST, PROJECT, set_conn

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def mock_conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    set_conn(monkeypatch)
    yield f"{HOST}/api/projects/{PROJECT}/batch_exports/"
