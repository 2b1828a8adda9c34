"""Fixtures of the core unit tests: the services wired from in-memory parts (wiring.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.unit.core.wiring import Core, MakeCore, build_core


@pytest.fixture
async def make_core() -> AsyncIterator[MakeCore]:
    """Build cores with ``build_core``'s options; each store is closed after the test."""
    built: list[Core] = []

    def make(**options: Any) -> Core:
        core = build_core(**options)
        built.append(core)
        return core

    yield make
    for core in built:
        await core.store.close()


@pytest.fixture
def core(make_core: MakeCore) -> Core:
    """Every core service, an empty registry but for the discovering account, a full quota."""
    return make_core()
