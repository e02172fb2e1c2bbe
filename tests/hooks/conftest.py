"""Fixtures for hook tests: env-var connections, a fast retry policy (constants in hook_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hook_helpers import HOST, PROJECT, set_conn


@pytest.fixture
def mock_conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    set_conn(monkeypatch)
    yield f"{HOST}/api/projects/{PROJECT}/batch_exports/"
