"""What one phase of a load test measured: every call recorded, then summed up.

Figures count only calls whose (scheduled) start fell in the measured window, after the
warm-up. Rates divide by the time from the window's start to the last measured answer, so
calls still in flight when the window closed are neither dropped nor given free time.
Percentiles are exact (nearest rank), not estimated from buckets: over the successful calls,
and again over every call, where a failed call counts with its time to failure and a call
the open loop never sent with the least it would have waited (the window's end minus when
it was due). Under overload the second set is the honest one: dropping the slowest calls
would hide exactly the wait the clients saw.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np

__all__ = ["Latency", "PhaseStats", "Samples", "code_name", "percentile", "summarize"]

_OK = grpc.StatusCode.OK.value[0]
_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class Samples:
    """Every measured call of one phase, in compact arrays (a few bytes a call)."""

    def __init__(self) -> None:
        """Start empty."""
        self.offsets = array("d")
        """Seconds from the window's start to each call's (scheduled) start."""
        self.latencies = array("d")
        """Seconds from each call's (scheduled) start to its answer."""
        self.codes = array("B")
        """Each call's status code number (0: OK)."""
        self.hashes = 0
        """Contact hashes in successful calls."""
        self.hashes_sent = 0
        """Contact hashes in every measured call, answered well or not."""
        self.matches = 0
        """Matches in successful calls."""
        self.warmup_calls = 0
        """Calls answered during the warm-up (not measured; shown in the progress line)."""
        self.errors: Counter[str] = Counter()
        """Failed calls by status code name."""
        self.unsent = array("d")
        """Open loop: for each measured call never sent, the least it would have waited."""

    def add(
        self, offset: float, latency: float, code: grpc.StatusCode, hashes: int, matches: int
    ) -> None:
        """Record one measured call."""
        number = code.value[0]
        self.offsets.append(offset)
        self.latencies.append(latency)
        self.codes.append(number)
        self.hashes_sent += hashes
        if number == _OK:
            self.hashes += hashes
            self.matches += matches
        else:
            self.errors[code.name] += 1

    @property
    def calls(self) -> int:
        """Measured calls answered, successful or not."""
        return len(self.codes)

    def last_answer(self) -> float:
        """Seconds from the window's start to the last measured answer (0 if none)."""
        if not self.offsets:
            return 0.0
        ends = np.frombuffer(self.offsets, dtype=np.float64) + np.frombuffer(
            self.latencies, dtype=np.float64
        )
        return float(ends.max())

    def add_unsent(self, waited_at_least: float) -> None:
        """Record a measured call the open loop never sent, and its least wait."""
        self.unsent.append(waited_at_least)

    def all_latencies(self) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        """Every measured call's latency, failed and unsent ones included, sorted."""
        answered = np.frombuffer(self.latencies, dtype=np.float64)
        unsent = np.frombuffer(self.unsent, dtype=np.float64)
        return np.sort(np.concatenate([answered, unsent]))

    def ok_latencies(self) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        """The latencies of successful calls, sorted."""
        latencies = np.frombuffer(self.latencies, dtype=np.float64)
        codes = np.frombuffer(self.codes, dtype=np.uint8)
        return np.sort(latencies[codes == _OK])


def code_name(number: int) -> str:
    """The name of status code ``number`` (as Samples.codes holds it)."""
    return _NAMES.get(number, str(number))


def percentile(ordered: np.ndarray[tuple[int], np.dtype[np.float64]], share: float) -> float:
    """The nearest-rank percentile: the smallest value with ``share`` of the values at or below.

    ``ordered`` must be sorted and not empty; ``share`` is in (0, 1].
    """
    if not len(ordered):
        raise ValueError("no values")
    rank = max(math.ceil(share * len(ordered)), 1)
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class Latency:
    """Latency of a set of calls, in seconds."""

    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float

    @classmethod
    def of(cls, ordered: np.ndarray[tuple[int], np.dtype[np.float64]]) -> Latency | None:
        """The summary of sorted latencies; None when there are none."""
        if not len(ordered):
            return None
        return cls(
            p50=percentile(ordered, 0.50),
            p90=percentile(ordered, 0.90),
            p99=percentile(ordered, 0.99),
            p999=percentile(ordered, 0.999),
            max=float(ordered[-1]),
            mean=float(ordered.mean()),
        )


@dataclass(frozen=True)
class PhaseStats:
    """One phase's figures: Discover's, or the ceiling's."""

    method: str
    """"Discover" or "Ceiling"."""
    calls: int
    """Measured calls answered."""
    ok: int
    """Of which successful."""
    errors: dict[str, int]
    """Failed calls by status code name."""
    seconds: float
    """From the window's start to the last measured answer."""
    hashes: int
    """Contact hashes in successful calls."""
    hashes_sent: int
    """Contact hashes in every measured call."""
    matches: int
    """Matches in successful calls."""
    latency: Latency | None
    """Of the successful calls; None when no call succeeded."""
    harness_cpu: float
    """CPU seconds this process (the harness) spent in the window."""
    server_cpu: float | None = None
    """CPU seconds the server spent in the window, when it could be read."""
    latency_all: Latency | None = None
    """Of every measured call, failed and never-sent ones included (see the module's
    docstring); None when every call succeeded and was sent."""
    missed: int = 0
    """Open loop: calls of the timetable never sent because too many were in flight."""
    max_late: float = 0.0
    """Open loop: the longest a call waited past its scheduled start to be sent."""
    notes: list[str] = field(default_factory=list)
    """Anything that qualifies the figures."""

    @property
    def requests_per_second(self) -> float:
        """Successful calls per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def hashes_per_second(self) -> float:
        """Contact hashes of successful calls per second."""
        return self.hashes / self.seconds if self.seconds > 0 else 0.0

    @property
    def matches_per_request(self) -> float:
        """Matches per successful call."""
        return self.matches / self.ok if self.ok else 0.0

    @property
    def matches_per_hash(self) -> float:
        """Matches per contact hash sent in successful calls."""
        return self.matches / self.hashes if self.hashes else 0.0

    @property
    def harness_cores(self) -> float:
        """Cores the harness kept busy on average (near 1 or more: it may be the bottleneck)."""
        return self.harness_cpu / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """Server CPU milliseconds per answered call, when known.

        Refused calls are cheap; counting them would flatter the figure, so only answered
        calls divide it (the report shows errors beside it).
        """
        if self.server_cpu is None or not self.ok:
            return None
        return self.server_cpu * 1000 / self.ok

    @property
    def server_cpu_ms_per_1000_hashes(self) -> float | None:
        """Server CPU milliseconds per 1,000 contact hashes of answered calls, when known."""
        if self.server_cpu is None or not self.hashes:
            return None
        return self.server_cpu * 1000 / self.hashes * 1000


def summarize(
    method: str,
    samples: Samples,
    *,
    harness_cpu: float,
    server_cpu: float | None = None,
    missed: int = 0,
    max_late: float = 0.0,
    notes: list[str] | None = None,
) -> PhaseStats:
    """The figures of one phase's samples."""
    latency = Latency.of(samples.ok_latencies())
    everything = None
    if samples.errors or len(samples.unsent):
        everything = Latency.of(samples.all_latencies())
    return PhaseStats(
        method=method,
        calls=samples.calls,
        ok=samples.calls - sum(samples.errors.values()),
        errors=dict(sorted(samples.errors.items())),
        seconds=samples.last_answer(),
        hashes=samples.hashes,
        hashes_sent=samples.hashes_sent,
        matches=samples.matches,
        latency=latency,
        latency_all=everything,
        harness_cpu=harness_cpu,
        server_cpu=server_cpu,
        missed=missed,
        max_late=max_late,
        notes=list(notes or []),
    )
