"""A Prometheus histogram by one label, observed without a lock.

prometheus_client's Histogram takes a lock for its sum and another for a bucket on every
observation (about 3 us a call, paid twice by every RPC: its latency and its batch size).
Here an observation is a binary search and two additions. Only the event loop observes (one
writer); the scrape, on the metrics server's thread, copies the counts under the GIL, so
it may see one observation in the counts a moment before the sum, never a torn number.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LabelledHistogram", "Series"]


class Series:
    """The observations of one label value."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Observations in each bucket (not cumulative); the last is above every bound."""
        self.total = 0.0
        """The sum of the observations."""

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is at least ``value``."""
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value


class LabelledHistogram(Collector):
    """A histogram with one label, exposed as Prometheus exposes its own histograms."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        """Register ``name`` (with upper ``buckets``, ascending) in ``registry``."""
        bounds = tuple(float(bound) for bound in buckets)
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram buckets must be ascending and distinct")
        self._name = name
        self._documentation = documentation
        self._label = label
        self._bounds = bounds
        self._series: dict[str, Series] = {}
        registry.register(self)

    def labels(self, value: str) -> Series:
        """The series of one label value (made on first use, then the same object)."""
        series = self._series.get(value)
        if series is None:
            series = self._series[value] = Series(self._bounds)
        return series

    def collect(self) -> Iterator[Metric]:
        """The histogram's samples: cumulative buckets, count and sum of each label value."""
        family = HistogramMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, series in list(self._series.items()):
            counts = list(series.counts)  # one copy: the loop may observe meanwhile
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((_bound_text(bound), cumulative))
            family.add_metric([value], buckets, sum_value=series.total)
        yield family

    def describe(self) -> Iterator[Metric]:
        """The family without samples (for the registry's duplicate-name check)."""
        yield HistogramMetricFamily(self._name, self._documentation, labels=[self._label])


def _bound_text(bound: float) -> str:
    """A bucket's ``le`` label as prometheus_client writes it (``+Inf``, ``0.5``, ``10.0``)."""
    return "+Inf" if bound == float("inf") else repr(bound)
