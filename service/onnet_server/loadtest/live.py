"""The progress line a load test redraws on standard error while a phase runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TextIO

from onnet_server.loadtest.stats import Samples

__all__ = ["LiveLine"]


class LiveLine:
    """Redraws ``[phase] warm-up|measuring ... calls, calls/s, errors`` about twice a second."""

    def __init__(self, out: TextIO | None, interval: float = 0.5) -> None:
        """Draw on ``out``; None draws nothing."""
        self._out = out
        self._interval = interval

    def watch(
        self, label: str, samples: Samples, position: Callable[[], str]
    ) -> asyncio.Task[None] | None:
        """Start redrawing for one phase until the task is cancelled (``stop``).

        ``position`` says how far the phase is, e.g. ``3.1/10 s`` or ``warm-up 0.4/1 s``.
        """
        if self._out is None:
            return None
        return asyncio.get_running_loop().create_task(self._draw(label, samples, position))

    async def _draw(self, label: str, samples: Samples, position: Callable[[], str]) -> None:
        out = self._out
        assert out is not None
        before, before_at = 0, time.perf_counter()
        try:
            while True:
                await asyncio.sleep(self._interval)
                now = time.perf_counter()
                done = samples.calls + samples.warmup_calls
                rate = (done - before) / (now - before_at)
                before, before_at = done, now
                out.write(f"\r[{label}] {position()}  {_counts(samples)}  {rate:,.0f}/s now   ")
                out.flush()
        finally:
            # The last state, whatever the phase's length, and the end of the line.
            out.write(f"\r[{label}] done  {_counts(samples)}{' ' * 20}\n")
            out.flush()

    async def stop(self, task: asyncio.Task[None] | None) -> None:
        """Stop redrawing; the line ends with the phase's last state."""
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _counts(samples: Samples) -> str:
    errors = sum(samples.errors.values())
    return f"{samples.calls:,} calls measured, {errors:,} errors"
