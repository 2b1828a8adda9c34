"""Waiting for a condition with a deadline, never for a fixed time (house rule)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(check: Callable[[], object], what: str = "condition", timeout: float = 10.0) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


async def wait_until_async(
    check: Callable[[], object], what: str = "condition", timeout: float = 10.0
) -> None:
    """``wait_until`` for a test running on an event loop (the loop keeps running)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)
