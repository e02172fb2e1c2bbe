"""Small statistics and formatting helpers shared by the runner and the report."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max); zeros for no values."""
    if not values:
        return (0.0, 0.0, 0.0)
    return (statistics.median(values), min(values), max(values))


def fmt(values: Sequence[float] | float, digits: int = 1, unit: str = "") -> str:
    """``median (min–max)`` of a sample, or a single value; ``n/a`` when empty."""
    if isinstance(values, (int, float)):
        return f"{values:.{digits}f}{unit}"
    if not values:
        return "n/a"
    med, lo, hi = summary(values)
    if len(values) == 1 or lo == hi:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f})"


def ratio(theirs: float, ours: float) -> str:
    """How many times the contender's figure is ours (``12.3x``); ``∞`` when ours is zero."""
    if ours <= 0:
        return "∞" if theirs > 0 else "1.0x"
    value = theirs / ours
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"
