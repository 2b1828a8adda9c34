"""What the enumeration defenses add to a Discover call, against the lookup they guard.

Per request of 1,000 hashes (a re-sync carrying 10,000 previous hashes, full size):

- the re-sync token's work (verify, count new hashes, issue the next) against the lookup
  itself (fingerprints + index) on the same hashes, in the same run;
- a quota charge in memory, and in a real Redis against a bare round trip (PING) to the
  same Redis, in the same run;
- BlindEvaluate's checked path (element checks, then evaluation) against raw libsodium.

Smoke size (the test suite): 100 hashes, 1,000 previous, 1,000 users.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pysodium
import pytest

import onnet
from onnet.protocol import oprf
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.private.keys import BlindEvaluator, OprfKey
from onnet_server.core.quota import QuotaPolicy
from onnet_server.core.resync import ResyncTokens
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.memory_quota import MemoryQuota
from onnet_server.stores.redis_connection import connect
from onnet_server.stores.redis_quota import RedisQuota
from tests.redis_servers import redis_server

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
USERS = 100_000 if FULL else 1_000
HASHES = 1_000 if FULL else 100
PREVIOUS = 10_000 if FULL else 1_000
ELEMENTS = 1_000 if FULL else 20
ROUNDS = 200 if FULL else 5
RESULTS: dict[str, float] = {}


def per_call(run: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Median seconds of one call of ``run``."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


async def per_call_async(run: Callable[[], Awaitable[object]], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def test_resync_token_against_the_lookup() -> None:
    pepper = secrets.token_bytes(32)
    fingerprinter = Fingerprinter(pepper)
    store = MemoryRegistry()
    for i in range(USERS):
        fingerprint = fingerprinter.fingerprint(onnet.contact_hash(f"+1202{i:07d}"))
        store.register_now(f"user-{i}", fingerprint, True)
    hashes = b"".join(onnet.contact_hash(f"+1202{i:07d}") for i in range(0, 2 * HASHES, 2))
    previous = os.urandom(32 * PREVIOUS)
    tokens = ResyncTokens.from_peppers(secrets.token_bytes(32), ttl_seconds=3600)
    token = tokens.issue("alice", previous)

    def lookup() -> object:
        return store.match(fingerprinter.fingerprints(hashes))

    def token_work() -> object:
        cost, renewed = tokens.renew("alice", token, previous, hashes)
        assert cost == HASHES
        return renewed

    assert len(store.match(fingerprinter.fingerprints(hashes)).user_ids) == HASHES
    RESULTS["lookup"] = per_call(lookup)
    RESULTS["token"] = per_call(token_work)


def test_quota_charges(tmp_path: Path) -> None:
    policy = QuotaPolicy(10**9, 864_000.0)
    with redis_server(tmp_path / "redis") as redis:
        asyncio.run(measure_quota(policy, redis.url))
    assert RESULTS["quota_redis"] > 0


async def measure_quota(policy: QuotaPolicy, redis_url: str) -> None:

    memory = MemoryQuota(policy)
    RESULTS["quota_memory"] = await per_call_async(lambda: memory.charge("alice", HASHES))
    client = connect(redis_url, None)
    try:
        quota = RedisQuota(client, policy)
        await quota.charge("alice", 1)  # loads the script
        RESULTS["redis_ping"] = await per_call_async(client.ping)
        RESULTS["quota_redis"] = await per_call_async(lambda: quota.charge("alice", HASHES))
    finally:
        await client.aclose()


def test_blind_evaluate_checked_path() -> None:
    key = OprfKey.from_pepper(secrets.token_bytes(32))
    evaluator = BlindEvaluator(key, ELEMENTS)
    blinded = b"".join(oprf.blind(os.urandom(8))[1] for _ in range(ELEMENTS))
    elements = [blinded[i : i + 32] for i in range(0, len(blinded), 32)]

    def raw() -> object:
        return [pysodium.crypto_scalarmult_ristretto255(key.secret, e) for e in elements]

    def checked() -> object:  # what PrivateDiscovery does: check all, charge, evaluate
        evaluator.check(blinded)
        return evaluator.evaluate_checked(blinded)

    assert b"".join(raw()) == checked()  # type: ignore[arg-type]
    RESULTS["raw_mul"] = per_call(raw, max(3, ROUNDS // 20))
    RESULTS["blind_checked"] = per_call(checked, max(3, ROUNDS // 20))


def test_report() -> None:
    """Print the figures of this run."""
    if not FULL:
        pytest.skip("benchmarks run small: `make bench` for figures")
    ms = 1000.0
    print(
        f"\nDiscover of {HASHES} hashes with {PREVIOUS} previous, {USERS:,} users, one core:"
        f"\n  lookup (fingerprints + index), the ceiling: {RESULTS['lookup'] * ms:.3f} ms"
        f"\n  re-sync token work:                        {RESULTS['token'] * ms:.3f} ms"
        f"  ({RESULTS['token'] / RESULTS['lookup']:.2f}x the lookup)"
        f"\nQuota charge of {HASHES}:"
        f"\n  memory: {RESULTS['quota_memory'] * 1e6:.1f} us"
        f"\n  Redis:  {RESULTS['quota_redis'] * ms:.3f} ms against a PING round trip of "
        f"{RESULTS['redis_ping'] * ms:.3f} ms "
        f"({RESULTS['quota_redis'] / RESULTS['redis_ping']:.2f}x)"
        f"\nBlindEvaluate of {ELEMENTS}, checked path against raw libsodium: "
        f"{RESULTS['raw_mul'] / RESULTS['blind_checked']:.2f} of the raw rate "
        f"({ELEMENTS / RESULTS['blind_checked']:,.0f}/s "
        f"vs {ELEMENTS / RESULTS['raw_mul']:,.0f}/s)"
    )
