"""FetchBuckets per call: the entries of the buckets a 1,000-contact private sync asks for.

The registry holds USERS discoverable users with a private-mode entry each (a random 4-byte
prefix and 52 bytes, the size of a sealed short id), loaded in bulk and then changed a little
(new users, erasures), as a live registry is. A 1,000-contact sync asks for the buckets of
its contacts at the announced prefix length (about 985 distinct buckets at 1,000,000 users),
in calls of at most ``BucketServer.max_buckets`` (656 with the default 4 MiB messages): the
figure is the median time of the largest call, through ``BucketServer.fetch`` (what the
servicer calls) and through the index alone.

The floor, measured in the same run: copying the answer's bytes once (a ``bytes`` of the
serialized answer, about 1.1 MB at 1,000,000 users), the least any answer must do.

What keeping the order costs registrations: the time of each of REGISTRATIONS registrations
with an entry after the reads, median and largest (the largest is the one that merges the
recent entries into the sorted ones).

Smoke size (the test suite): 2,000 users, 3 rounds. Full (`make bench`): ONNET_BENCH_USERS
users (1,000,000), 200 rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest

from onnet_server.core.private.buckets import BucketServer
from onnet_server.core.wire_answers import decode_buckets
from onnet_server.stores.memory import MemoryRegistry

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
USERS = int(os.environ.get("ONNET_BENCH_USERS", "0")) or 2_000
ROUNDS = 200 if FULL else 3
CONTACTS = 1_000
REGISTRATIONS = 10_000 if FULL else 100
ENTRY = 52
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
RESULTS: dict[str, float] = {}


def interleaved(calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median seconds of each call, measured in rounds of one call each (after one warm-up
    round), so that a burst of other work on the machine lands on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(ROUNDS + 1):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            if round_:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(samples) for name, samples in times.items()}


def registry(rng: np.random.Generator) -> MemoryRegistry:
    """USERS users with entries, then a few hundred registrations and erasures."""
    store = MemoryRegistry()
    records = rng.bytes((4 + ENTRY) * USERS)
    size = 4 + ENTRY
    store.index.load(
        [f"user-{i:07d}" for i in range(USERS)],
        rng.bytes(16 * USERS),
        np.arange(1, USERS + 1, dtype=np.uint64),
        np.ones(USERS, dtype=bool),
        [records[i * size : (i + 1) * size] for i in range(USERS)],
    )
    store._version = USERS
    churn = max(10, USERS // 1_000)
    for i in range(churn):
        store.register_now(f"new-{i}", rng.bytes(16), True, rng.bytes(4 + ENTRY))

    async def erase() -> None:
        for i in rng.choice(USERS, size=churn, replace=False).tolist():
            await store.unregister(f"user-{i:07d}")

    asyncio.run(erase())
    return store


def test_fetch_buckets_of_a_sync() -> None:
    rng = np.random.default_rng(2026)
    store = registry(rng)
    server = BucketServer(store, MAX_MESSAGE_BYTES)
    bits = server.prefix_bits()
    contacts = rng.integers(0, 2**32, size=CONTACTS, dtype=np.uint64)
    wanted = sorted(set((contacts >> np.uint64(32 - bits)).tolist()))
    calls = [wanted[i : i + server.max_buckets] for i in range(0, len(wanted), server.max_buckets)]
    largest = calls[0]
    hidden = frozenset({"user-0000001", "user-0000002", "new-1"})  # the caller's blockers
    found = decode_buckets(server.fetch(bits, largest, hidden))
    served = sum(len(entries) for entries in found.values())
    every = store.bucket_entries(list(range(2**bits)), bits)
    assert sum(len(entries) for entries in every.values()) == store.bucket_entry_count()
    answer = bytearray(server.fetch(bits, largest, hidden))
    RESULTS.update(
        users=USERS,
        bits=bits,
        buckets=len(wanted),
        calls=len(calls),
        largest=len(largest),
        served=served,
        **interleaved(
            {
                "fetch": lambda: server.fetch(bits, largest, hidden),
                "index": lambda: store.bucket_answer(largest, bits, hidden),
                "sync": lambda: [server.fetch(bits, call, hidden) for call in calls],
                "floor": lambda: bytes(answer),
            }
        ),
    )
    times = []
    for i in range(REGISTRATIONS):
        fingerprint, entry = rng.bytes(16), rng.bytes(4 + ENTRY)
        started = time.perf_counter()
        store.register_now(f"late-{i}", fingerprint, True, entry)
        times.append(time.perf_counter() - started)
    RESULTS.update(register=statistics.median(times), register_max=max(times))


def test_report() -> None:
    """Print the figures of this run."""
    if not FULL:
        pytest.skip("benchmarks run small: `make bench` for figures")
    r, ms = RESULTS, 1e3
    print(
        f"\nFetchBuckets, {r['users']:,.0f} users, {r['bits']:.0f}-bit buckets; a sync of "
        f"{CONTACTS:,} contacts asks {r['buckets']:.0f} buckets in {r['calls']:.0f} calls:"
        f"\n  largest call ({r['largest']:.0f} buckets, {r['served']:,.0f} entries):"
        f" fetch {r['fetch'] * ms:.3f} ms, index alone {r['index'] * ms:.3f} ms"
        f"\n  whole sync: {r['sync'] * ms:.3f} ms"
        f"\n  floor, one copy of the answer's bytes: {r['floor'] * ms:.3f} ms"
        f" ({r['floor'] / r['fetch']:.2f} of the call)"
        f"\n  a registration with an entry, of {REGISTRATIONS:,}: median"
        f" {r['register'] * 1e6:.0f} us, largest {r['register_max'] * ms:.1f} ms"
    )
