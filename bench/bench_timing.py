"""P7 against a stopwatch: Discover's time for a blocker, a hidden user and an unknown number.

The attack of the security review's finding 2: an account pays once for three numbers, then
re-syncs for free, each call one of them copied 10,000 times (the largest batch). The three
answers are identical (no match); the figures are the median times of the three kinds of
call, measured in interleaved rounds (each round in another order), and the largest spread
between them, which should be within 5%. Each kind is its own reference: the unknown
number, which no lookup can find, is what the other two must cost.

Two views, in the same run:
- end to end: the SDK's typed call over TLS to a real server in this process;
- in process: DiscoveryService.discover on the same store (re-sync token, dedupe,
  fingerprints, lookup, masks), without gRPC.

A third asks the index alone for DISTINCT numbers of each kind (an account that pays for
10,000 numbers of one kind), where duplicates cannot collapse: every probe must take the
same steps and reach as far into memory whether its number is hidden, blocked or unknown.
It runs twice: with every user in the base (as after a build), and with 30,000 users in the
overlay (a server's recent registrations; all the users of a population below a build's
50,000 changes), which holds them in another structure, probed by other steps. With nobody
blocked it also asks a batch of half hidden and half unknown numbers, mixed: a branch that
goes one way for held numbers and the other for unknown ones is foreseen in a batch of one
kind, and mispredicted there.

Smoke size (the test suite): 1,000 registered users, 5 rounds. Full (`make bench`):
ONNET_BENCH_USERS users (1,000,000), 200 rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest

import onnet
from onnet.v1 import discovery_pb2
from onnet_server.core.accounts import Accounts
from onnet_server.core.discovery import DiscoveryLimits, DiscoveryService
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.index import RegistryIndex
from onnet_server.core.quota import QuotaPolicy
from onnet_server.core.resync import ResyncTokens
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.memory_quota import MemoryQuota
from tests.security import (
    DEFAULT_ACCOUNT,
    DEFAULT_ACCOUNT_NUMBER,
    discovery_client,
    registry_client,
)
from tests.servers import ThreadedServer, fresh_config

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
USERS = int(os.environ.get("ONNET_BENCH_USERS", "0")) or 1_000
ROUNDS = 200 if FULL else 5
WARMUP = 20 if FULL else 2
COPIES = 10_000
DISTINCT = 10_000 if FULL else 100
NUMBERS = {"blocker": "+14155550111", "hidden": "+14155550122", "unknown": "+14155550133"}
RESULTS: dict[str, dict[str, float]] = {}


def populated(fingerprinter: Fingerprinter) -> MemoryRegistry:
    """USERS discoverable users at random numbers, loaded in bulk."""
    store = MemoryRegistry()
    rng = np.random.default_rng(2026)
    store.index.load(
        [f"user-{i:07d}" for i in range(USERS)],
        fingerprinter.fingerprints(rng.bytes(32 * USERS)),
        np.arange(1, USERS + 1, dtype=np.uint64),
        np.ones(USERS, dtype=bool),
    )
    return store


def interleaved(calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median seconds of each call, measured in rounds that rotate the order of the calls."""
    times: dict[str, list[float]] = {kind: [] for kind in calls}
    kinds = list(calls)
    for round_ in range(WARMUP + ROUNDS):
        for kind in kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]:
            started = time.perf_counter()
            calls[kind]()
            elapsed = time.perf_counter() - started
            if round_ >= WARMUP:
                times[kind].append(elapsed)
    return {kind: statistics.median(samples) for kind, samples in times.items()}


def test_three_kinds_of_non_match() -> None:
    config = fresh_config()
    assert config.pepper_hex is not None
    fingerprinter = Fingerprinter(bytes.fromhex(config.pepper_hex))
    store = populated(fingerprinter)
    server = ThreadedServer(config, store=store).start()
    try:
        with registry_client(server.target) as registry:
            registry.register("blocker", NUMBERS["blocker"])
            registry.block("blocker", DEFAULT_ACCOUNT_NUMBER)
            registry.register("hidden", NUMBERS["hidden"], discoverable=False)
        hashes = {kind: onnet.contact_hash(e164) for kind, e164 in NUMBERS.items()}
        paid = b"".join(hashes.values())
        with discovery_client(server.target) as client:
            token = client.calls.discover(discovery_pb2.DiscoverRequest(hashes=paid)).token

            def over_grpc(contact_hash: bytes) -> Callable[[], object]:
                request = discovery_pb2.DiscoverRequest(
                    hashes=contact_hash * COPIES, token=token, previous_hashes=paid
                )

                def call() -> object:
                    answer = client.calls.discover(request)
                    assert not answer.matched_indexes
                    return answer

                return call

            RESULTS["end to end"] = interleaved(
                {kind: over_grpc(contact_hash) for kind, contact_hash in hashes.items()}
            )
    finally:
        server.stop()
    tokens = ResyncTokens.from_peppers(bytes.fromhex(config.pepper_hex), ttl_seconds=3600)
    service = DiscoveryService(
        store,
        DiscoveryLimits(COPIES, COPIES, 4 << 20),
        MemoryQuota(QuotaPolicy(1_000, 1_000.0)),
        tokens=tokens,
        accounts=Accounts(store),
    )
    own_token = tokens.issue(DEFAULT_ACCOUNT, paid)
    loop = asyncio.new_event_loop()

    def in_process(contact_hash: bytes) -> Callable[[], object]:
        asked = contact_hash * COPIES

        def call() -> object:
            answer = loop.run_until_complete(
                service.discover(DEFAULT_ACCOUNT, asked, own_token, paid)
            )
            assert not answer.matches.user_ids
            return answer

        return call

    try:
        RESULTS["in process"] = interleaved(
            {kind: in_process(contact_hash) for kind, contact_hash in hashes.items()}
        )
    finally:
        loop.close()


@pytest.mark.parametrize("held_in", ["base", "overlay"])
def test_distinct_numbers_of_each_kind(held_in: str) -> None:
    """Every user in the base (as after a build), or in the overlay (a server's recent
    registrations, and every user of a population smaller than a build's 50,000 changes):
    the two hold users in different structures, probed by different steps."""
    rng = np.random.default_rng(12)
    # The overlay holds what changed since the last build, never more than a build's worth.
    users = max(USERS, 3 * DISTINCT) if held_in == "base" else 3 * DISTINCT
    fingerprints = rng.bytes(16 * users)
    index = RegistryIndex()
    for row in range(users):  # every third user hidden
        index.put(f"user{row}", fingerprints[16 * row : 16 * row + 16], row + 1, row % 3 != 0)
    if held_in == "base":
        index.rebase(index.snapshot().build(5), [])
    assert (index.overlay_size == users) == (held_in == "overlay")

    def of_rows(rows: range) -> bytes:
        # In an order of their own, not the index's rows': the overlay's rows are in order
        # of registration, which no client sees, and a batch asked in row order would have
        # its rows read in address order, the processor's prefetcher helping where the
        # stand-in rows of unknown numbers (scattered) get no help.
        shuffled = rng.permutation(np.fromiter(rows, dtype=np.int64))
        return b"".join(fingerprints[16 * row : 16 * row + 16] for row in shuffled)

    hidden = of_rows(range(0, 3 * DISTINCT, 3))
    blocked = of_rows(range(1, 3 * DISTINCT, 3))
    blockers = frozenset(f"user{row}" for row in range(1, 3 * DISTINCT, 3))
    unknown = rng.bytes(16 * DISTINCT)
    # Half hidden, half unknown, mixed: a branch that goes one way for held numbers and the
    # other for unknown ones is foreseen in a batch of one kind, and mispredicted here.
    half = 16 * (DISTINCT // 2)  # bytes: the first half of each batch's fingerprints
    records = [batch[i : i + 16] for batch in (hidden, unknown) for i in range(0, half, 16)]
    half_hidden = b"".join(records[i] for i in rng.permutation(len(records)))
    for asked in (hidden, blocked, unknown, half_hidden):
        assert not index.match(asked, blockers).user_ids
    where = "" if held_in == "base" else f", {users:,} users in the overlay"
    RESULTS[f"index probe, {DISTINCT:,} distinct numbers{where}, nobody blocked"] = interleaved(
        {
            "hidden": lambda: index.match(hidden),
            "unknown": lambda: index.match(unknown),
            "half hidden": lambda: index.match(half_hidden),
        }
    )
    with_blockers = f"index probe, {DISTINCT:,} distinct numbers{where}, {len(blockers):,} blockers"
    RESULTS[with_blockers] = interleaved(
        {
            "blocker": lambda: index.match(blocked, blockers),
            "hidden": lambda: index.match(hidden, blockers),
            "unknown": lambda: index.match(unknown, blockers),
        }
    )


def test_report() -> None:
    """Print the figures of this run."""
    if not FULL:
        pytest.skip("benchmarks run small: `make bench` for figures")
    print(f"\nDiscover of one hash x {COPIES:,}, free re-sync, {USERS:,} users, {ROUNDS} rounds")
    print("(the index probe: distinct numbers, the blockers of the blocked ones excluded):")
    for view, medians in RESULTS.items():
        spread = max(medians.values()) / min(medians.values()) - 1
        shown = ", ".join(f"{kind} {seconds * 1e3:.3f} ms" for kind, seconds in medians.items())
        print(f"  {view}: {shown}; largest spread {spread:.1%} (target: within 5%)")
