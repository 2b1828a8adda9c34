"""Waits said the way a person reads them: "retry in 3 days 8 h", not "retry in 288000 s"."""

from __future__ import annotations

import math

__all__ = ["for_people"]

_MINUTE, _HOUR, _DAY = 60, 3_600, 86_400


def for_people(seconds: float) -> str:
    """``seconds`` rounded up to the unit a person would use (s, min, h, then days and h)."""
    whole = max(0, math.ceil(seconds))
    if whole < 90:
        return f"{whole} s"
    if whole < 90 * _MINUTE:
        return f"{math.ceil(whole / _MINUTE)} min"
    if whole < 2 * _DAY:
        return f"{math.ceil(whole / _HOUR)} h"
    days, rest = divmod(whole, _DAY)
    hours = math.ceil(rest / _HOUR)
    if hours == 24:
        days, hours = days + 1, 0
    return f"{days} days" + (f" {hours} h" if hours else "")
