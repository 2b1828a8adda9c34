"""The lock-free histogram exposes exactly what prometheus_client's own Histogram does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from onnet_server.api.histogram import LabelledHistogram

BUCKETS = (1, 10, 100, 1_000)


def samples(registry: CollectorRegistry) -> list[str]:
    """The exposition's sample lines of the histogram, without ``_created``."""
    lines = generate_latest(registry).decode().splitlines()
    return sorted(line for line in lines if line.startswith("h_") and "_created" not in line)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            # The bounds themselves included: a value equal to a bound is in its bucket.
            st.one_of(st.sampled_from(BUCKETS), st.integers(0, 5_000)),
        ),
        max_size=40,
    )
)
def test_exposition_matches_prometheus_clients_histogram(
    observations: list[tuple[str, int]],
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "doc", ["method"], buckets=BUCKETS, registry=theirs)
    histogram = LabelledHistogram("h", "doc", "method", BUCKETS, ours)
    for label, value in observations:
        reference.labels(label).observe(value)
        histogram.labels(label).observe(value)
    assert samples(ours) == samples(theirs)


def test_a_label_value_keeps_one_series() -> None:
    histogram = LabelledHistogram("h", "doc", "method", BUCKETS, CollectorRegistry())
    assert histogram.labels("a") is histogram.labels("a")


def test_buckets_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        LabelledHistogram("h", "doc", "method", (10, 1), CollectorRegistry())
