"""The open loop's timetable: when each call is due, whatever happened to the calls before.

A closed loop (each client waits for its answer before the next call) slows down with the
server, so a slow answer also delays the calls that would have waited behind it, and they
never show in the latency: coordinated omission. An open loop sends on a fixed timetable
and counts each call's latency from the moment it was due, so a server that falls behind
shows the wait its clients would really see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Timetable"]


@dataclass(frozen=True)
class Timetable:
    """Calls due every ``1 / rate`` seconds from ``start``: the warm-up's, then the measured."""

    start: float
    """Clock reading when call 0 is due."""
    rate: float
    """Calls per second."""
    warmup: float
    """Seconds of warm-up calls before the measured ones."""
    measured: int
    """How many calls are measured."""

    @classmethod
    def for_run(
        cls,
        start: float,
        rate: float,
        warmup: float,
        *,
        duration: float | None = None,
        requests: int | None = None,
    ) -> Timetable:
        """The timetable of a run bounded by ``duration`` seconds or ``requests`` calls."""
        if requests is None:
            if duration is None:
                raise ValueError("give duration or requests")
            requests = max(math.ceil(duration * rate - 1e-9), 1)
        return cls(start, rate, warmup, requests)

    @property
    def warmup_calls(self) -> int:
        """Calls due before the measurement starts."""
        return math.ceil(self.warmup * self.rate - 1e-9)

    @property
    def total(self) -> int:
        """Calls in all, warm-up included."""
        return self.warmup_calls + self.measured

    @property
    def window_start(self) -> float:
        """Clock reading when the first measured call is due."""
        return self.due(self.warmup_calls)

    @property
    def window_end(self) -> float:
        """Clock reading one interval after the last measured call is due."""
        return self.due(self.total)

    def due(self, call: int) -> float:
        """Clock reading when call number ``call`` (from 0) is due."""
        return self.start + call / self.rate

    def is_measured(self, call: int) -> bool:
        """Whether call number ``call`` counts in the figures."""
        return self.warmup_calls <= call < self.total
