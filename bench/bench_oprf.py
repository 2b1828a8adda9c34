"""Private mode's server step: BlindEvaluate against raw libsodium scalar multiplication.

The ceiling is libsodium's `crypto_scalarmult_ristretto255` called directly on the same
elements in the same run; onnet's `blind_evaluate` adds the element checks (canonical
encoding, not the identity). Target (private-mode issue): at least 80% of the ceiling.
"""

from __future__ import annotations

import os

import pysodium
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from onnet.protocol import oprf

ELEMENTS = 1000 if os.environ.get("ONNET_BENCH_USERS") else 20
SECRET, _ = oprf.derive_key_pair(bytes(32), b"bench", oprf.Mode.OPRF)
BLINDED = [oprf.blind(f"+1415555{i:04d}".encode())[1] for i in range(ELEMENTS)]
RESULTS: dict[str, float] = {}


def record(benchmark: BenchmarkFixture, name: str, run: object) -> object:
    result = benchmark(run)
    if benchmark.stats is not None:
        RESULTS[name] = ELEMENTS / benchmark.stats.stats.median
    return result


def test_raw_scalar_multiplication(benchmark: BenchmarkFixture) -> None:
    def run() -> list[bytes]:
        return [pysodium.crypto_scalarmult_ristretto255(SECRET, e) for e in BLINDED]

    raw = record(benchmark, "raw", run)
    assert raw == [oprf.blind_evaluate(SECRET, e) for e in BLINDED]


def test_blind_evaluate(benchmark: BenchmarkFixture) -> None:
    def run() -> list[bytes]:
        return [oprf.blind_evaluate(SECRET, e) for e in BLINDED]

    assert len(record(benchmark, "onnet", run)) == ELEMENTS  # type: ignore[arg-type]


def test_report() -> None:
    """Print the figures of this run."""
    if {"raw", "onnet"} - RESULTS.keys():
        pytest.skip("benchmarks disabled: run `make bench` for figures")
    print(
        f"\nBlindEvaluate, {ELEMENTS} elements, one core:"
        f"\n  raw libsodium scalar multiplication: {RESULTS['raw']:,.0f}/s"
        f"\n  onnet blind_evaluate (with checks):  {RESULTS['onnet']:,.0f}/s"
        f"\n  ratio: {RESULTS['onnet'] / RESULTS['raw']:.2f}"
    )
