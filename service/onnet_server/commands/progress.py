"""A one-line progress bar for long jobs: done/total, rate, and time left."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """Redraws one line on ``out`` at most ten times a second."""

    def __init__(self, total: int, out: TextIO, unit: str = "rows", width: int = 30) -> None:
        """Track ``total`` units of work."""
        self._total = max(total, 1)
        self._out = out
        self._unit = unit
        self._width = width
        self._started = time.monotonic()
        self._drawn_at = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        """Show ``done`` units finished."""
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        elapsed = max(now - self._started, 1e-9)
        rate = done / elapsed
        share = min(done / self._total, 1.0)
        left = (self._total - done) / rate if rate > 0 else float("inf")
        filled = int(share * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        eta = f"{left:.0f} s left" if left != float("inf") else "--"
        self._out.write(
            f"\r[{bar}] {done:,}/{self._total:,} {self._unit} {share:4.0%} {rate:,.0f}/s {eta}   "
        )
        self._out.flush()

    def finish(self, done: int) -> None:
        """Draw the last state and end the line."""
        self.update(done, force=True)
        self._out.write("\n")
        self._out.flush()
