"""Waits in refusals read as a person reads them, always rounded up (never too early)."""

from __future__ import annotations

import pytest

from onnet_server.core.durations import for_people


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0 s"),
        (0.2, "1 s"),
        (89, "89 s"),
        (90, "2 min"),
        (5_399, "90 min"),
        (5_400, "2 h"),
        (172_799, "48 h"),
        (172_800, "2 days"),
        (288_000, "3 days 8 h"),
        (86_400 * 3 + 1, "3 days 1 h"),
        (86_400 * 3 - 1, "3 days"),
        (86_400 * 10 - 60, "10 days"),
    ],
)
def test_a_wait_is_said_in_its_largest_sensible_unit(seconds: float, said: str) -> None:
    assert for_people(seconds) == said
