"""The hot lookup path: fingerprint + index lookup of 1,000 hashes against N registered users.

The ceiling, measured in the same run, is a plain Python ``set`` membership test of the same
1,000 unkeyed hashes (already split into bytes objects, which favours the set) against a set
of the same N hashes. The suite runs this once at a small N as a smoke test; ``make bench``
runs it with N = 1,000,000 (ONNET_BENCH_USERS) and prints throughput, the ratio, and memory
per registered user. Results go in bench/README.md.
"""

from __future__ import annotations

import gc
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.stores.memory import MemoryRegistry

USERS = int(os.environ.get("ONNET_BENCH_USERS", "20000"))
BATCH = 1000
MATCH_SHARE = 0.1  # a tenth of an address book is on the network
RESULTS: dict[str, float] = {}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class Workload:
    fingerprinter: Fingerprinter
    store: MemoryRegistry
    plain_set: set[bytes]
    batch: bytes
    batch_items: list[bytes]
    store_bytes_per_user: float
    set_bytes_per_user: float


@pytest.fixture(scope="module")
def workload() -> Workload:
    rng = np.random.default_rng(2026)
    registered = rng.bytes(32 * USERS)
    fingerprinter = Fingerprinter(secrets.token_bytes(32))
    fingerprints = fingerprinter.fingerprints(registered)
    gc.collect()
    before = rss_bytes()
    store = MemoryRegistry()
    for i in range(USERS):
        store.register_now(f"u{i}", fingerprints[16 * i : 16 * i + 16], True)
    gc.collect()
    store_bytes = rss_bytes() - before
    before = rss_bytes()
    plain_set = {registered[32 * i : 32 * i + 32] for i in range(USERS)}
    gc.collect()
    set_bytes = rss_bytes() - before
    hits = int(BATCH * MATCH_SHARE)
    chosen = rng.choice(USERS, size=hits, replace=False)
    items = [registered[32 * i : 32 * i + 32] for i in chosen]
    items += [rng.bytes(32) for _ in range(BATCH - hits)]
    order = rng.permutation(BATCH)
    items = [items[i] for i in order]
    return Workload(
        fingerprinter, store, plain_set, b"".join(items), items,
        store_bytes / USERS, set_bytes / USERS,
    )  # fmt: skip


def record(benchmark: BenchmarkFixture, name: str, run: Callable[[], object]) -> object:
    result = benchmark(run)
    if benchmark.stats is not None:
        RESULTS[name] = benchmark.stats.stats.median
    return result


def test_lookup_hot_path(benchmark: BenchmarkFixture, workload: Workload) -> None:
    def run() -> object:
        return workload.store.match(workload.fingerprinter.fingerprints(workload.batch))

    matches = record(benchmark, "onnet", run)
    assert len(matches.indexes) == int(BATCH * MATCH_SHARE)  # type: ignore[attr-defined]


def test_set_ceiling(benchmark: BenchmarkFixture, workload: Workload) -> None:
    def run() -> list[int]:
        members = workload.plain_set
        return [i for i, item in enumerate(workload.batch_items) if item in members]

    found = record(benchmark, "set", run)
    onnet_found = workload.store.match(workload.fingerprinter.fingerprints(workload.batch))
    assert found == onnet_found.indexes.tolist()


def test_lookup_of_fresh_batches(workload: Workload) -> None:
    """Each call a batch never asked before: the base's arrays come from memory, not cache,
    as they do for a server's requests (each from another address book)."""
    if not os.environ.get("ONNET_BENCH_USERS"):
        pytest.skip("benchmarks run small: `make bench` for figures")
    rng = np.random.default_rng(7)
    registered = list(workload.plain_set)
    batches = []
    for _ in range(200):
        hits = [registered[i] for i in rng.choice(len(registered), 100, replace=False)]
        fresh = hits + [rng.bytes(32) for _ in range(BATCH - 100)]
        batches.append(workload.fingerprinter.fingerprints(b"".join(fresh)))
    started = time.perf_counter()
    for fingerprints in batches:
        workload.store.match(fingerprints)
    RESULTS["fresh"] = (time.perf_counter() - started) / len(batches)


def test_report(workload: Workload) -> None:
    """Print the figures of this run (only when the benchmarks were enabled)."""
    if {"onnet", "set"} - RESULTS.keys():
        pytest.skip("benchmarks disabled: run `make bench` for figures")
    onnet_rate = BATCH / RESULTS["onnet"]
    set_rate = BATCH / RESULTS["set"]
    print(
        f"\nhot lookup path, {BATCH} hashes against {USERS:,} users:"
        f"\n  onnet (AES fingerprint + table): {onnet_rate / 1e6:.2f} M hashes/s"
        f"\n  plain set of unkeyed hashes:      {set_rate / 1e6:.2f} M hashes/s"
        f"\n  ratio onnet / set ceiling:        {onnet_rate / set_rate:.2f}"
        f"\n  memory per user, onnet store (RSS): {workload.store_bytes_per_user:.0f} B"
        f" (lookup arrays alone: {workload.store.nbytes / USERS:.0f} B)"
        f"\n  memory per user, plain set (RSS):   {workload.set_bytes_per_user:.0f} B"
    )
    if "fresh" in RESULTS:
        print(f"  a batch never asked before (cold caches): {RESULTS['fresh'] * 1e6:.0f} us")
