"""The benchmarks are integration tests: they run once as smoke tests, many start servers."""

from __future__ import annotations

from pathlib import Path

import pytest

_BENCH = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every benchmark ``integration``: ``-m "not integration"`` leaves them out."""
    for item in items:
        if item.path.is_relative_to(_BENCH):
            item.add_marker(pytest.mark.integration)
