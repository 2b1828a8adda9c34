"""The rules every QuotaStore keeps, on every store: memory, Redis, Redis Cluster.

The memory store runs on a fake clock that the tests move, so its figures are exact. Redis
leaks buckets on its own clock (TIME: this machine's wall clock), which no test can stop;
there, tests wait in real time and bound what leaked by the wall-clock time measured around
each call, so that a loaded machine, which stretches waits and calls, widens the bounds
instead of failing them. Other checks need no waiting at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import pytest

from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.ports import QuotaStore
from onnet_server.core.quota import CLOCK_RESOLUTION, QuotaDecision, QuotaPolicy
from onnet_server.stores.memory_quota import MemoryQuota
from onnet_server.stores.redis_connection import RedisClient, connect
from onnet_server.stores.redis_quota import RedisQuota
from tests.redis_servers import RedisClusterProcesses
from tests.servers import free_port

MakeQuota = Callable[[QuotaPolicy], Awaitable[QuotaStore]]
SLOW = QuotaPolicy(10, 1_000.0)
"""Leaks 0.01 unit per second: nothing measurable leaks during a test."""
FAST = QuotaPolicy(10, 1.0)
"""Leaks 10 units per second: a unit comes back every 0.1 s."""


class StoreClock(Protocol):
    """The clock a store leaks buckets by, as a test reads and advances it."""

    tick: float
    """Seconds by which the store's own reading may differ from ``now()`` (its rounding)."""

    def now(self) -> float:
        """Seconds: read before and after a call, they bracket the store's reading."""
        ...

    async def wait(self, seconds: float) -> None:
        """Let at least ``seconds`` pass on the store's clock."""
        ...


class FakeClock:
    """The memory store's clock: it stands still until a test moves it."""

    tick = 0.0

    def __init__(self) -> None:
        # Today's magnitude, where floats round to a fraction of a microsecond, as in use.
        self._now = 1_700_000_000.0

    def __call__(self) -> float:
        return self._now

    def now(self) -> float:
        return self._now

    async def wait(self, seconds: float) -> None:
        self._now += seconds


class WallClock:
    """Redis's clock: TIME reads this machine's wall clock, to the microsecond."""

    tick = CLOCK_RESOLUTION

    def now(self) -> float:
        return time.time()

    async def wait(self, seconds: float) -> None:
        # An asyncio sleep keeps to the monotonic clock and may end a hair early by the
        # wall clock: sleep again until the wall clock has moved on far enough.
        end = time.time() + seconds
        while (left := end - time.time()) > 0:
            await asyncio.sleep(left)


@pytest.fixture(params=["memory", "redis", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> StoreClock:
    return FakeClock() if kind == "memory" else WallClock()


@pytest.fixture
async def make_quota(
    request: pytest.FixtureRequest, kind: str, clock: StoreClock
) -> AsyncIterator[MakeQuota]:
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    seeds = request.getfixturevalue("cluster_seeds") if kind == "cluster" else None
    clients: list[RedisClient] = []

    async def make(policy: QuotaPolicy) -> QuotaStore:
        if isinstance(clock, FakeClock):
            return MemoryQuota(policy, clock)
        client = connect(url, seeds)
        clients.append(client)
        if seeds:
            await client.initialize()
        return RedisQuota(client, policy)

    yield make
    for client in clients:
        await client.aclose()


async def test_exact_cut_off(make_quota: MakeQuota) -> None:
    q = await make_quota(QuotaPolicy(100, 100_000.0))
    for _ in range(14):
        assert (await q.charge("alice", 7)).allowed
    assert await q.remaining("alice") == 2
    refused = await q.charge("alice", 7)
    assert (refused.allowed, refused.remaining, refused.never) == (False, 2, False)
    assert refused.retry_after is not None
    assert 4_990 < refused.retry_after <= 5_000  # 5 units at 0.001 unit/s, less what leaked
    assert (await q.charge("alice", 2)) == QuotaDecision(True, 0, None)
    refused = await q.charge("alice", 1)
    assert not refused.allowed
    assert refused.remaining == 0


async def test_waiting_retry_after_is_enough(make_quota: MakeQuota, clock: StoreClock) -> None:
    q = await make_quota(FAST)
    before = clock.now()
    assert (await q.charge("alice", 10)).allowed
    refused = await q.charge("alice", 3)
    between = clock.now() - before + clock.tick  # at most this leaked between the charges
    assert not refused.allowed
    assert refused.retry_after is not None
    # 3 units over a full bucket take 0.3 s to leak, less what leaked between the charges.
    assert 0.3 - between <= refused.retry_after <= 0.3
    # Exactly retry_after on the fake clock (the unit tests show a hair less is refused);
    # on Redis's, at least that and no margin added.
    await clock.wait(refused.retry_after)
    assert (await q.charge("alice", 3)).allowed


async def test_the_bucket_leaks_over_time(make_quota: MakeQuota, clock: StoreClock) -> None:
    q = await make_quota(FAST)
    before = clock.now()
    assert (await q.charge("alice", 10)).remaining == 0
    charged = clock.now()
    await clock.wait(0.5)
    asked = clock.now()
    left = await q.remaining("alice")
    answered = clock.now()
    # 10 units a second leak from the charge to the question: at least for the time from
    # the charge's answer to the question, at most from the charge's sending to the answer.
    least = math.floor(FAST.rate * (asked - charged - clock.tick))
    most = math.floor(FAST.rate * (answered - before + clock.tick) + FAST.slack)
    assert least <= left <= most  # both 5 on the fake clock
    await clock.wait(0.6)  # 1.1 s in all: a full bucket leaked empty
    assert await q.remaining("alice") == 10
    # Empty, and no lower: a full charge fills it again to the brim.
    assert await q.charge("alice", 10) == QuotaDecision(True, 0, None)


async def test_more_than_the_capacity_never_fits(make_quota: MakeQuota) -> None:
    q = await make_quota(SLOW)
    assert await q.charge("alice", 11) == QuotaDecision(False, 10, None, never=True)
    assert await q.remaining("alice") == 10
    assert (await q.charge("alice", 10)).allowed
    assert (await q.charge("alice", 11)).never


async def test_a_zero_charge_always_succeeds(make_quota: MakeQuota) -> None:
    q = await make_quota(SLOW)
    assert await q.charge("alice", 0) == QuotaDecision(True, 10, None)
    await q.charge("alice", 10)
    assert await q.charge("alice", 0) == QuotaDecision(True, 0, None)
    assert await q.remaining("alice") == 0


async def test_accounts_are_independent(make_quota: MakeQuota) -> None:
    q = await make_quota(SLOW)
    await q.charge("alice", 10)
    assert await q.charge("bob", 4) == QuotaDecision(True, 6, None)
    assert await q.remaining("alice") == 0
    assert await q.remaining("carol") == 10


async def test_concurrent_charges_take_the_capacity_exactly(make_quota: MakeQuota) -> None:
    q = await make_quota(SLOW)
    decisions = await asyncio.gather(*(q.charge("alice", 1) for _ in range(20)))
    assert sum(d.allowed for d in decisions) == 10
    assert await q.remaining("alice") == 0


async def test_bad_arguments_are_refused(make_quota: MakeQuota) -> None:
    q = await make_quota(SLOW)
    with pytest.raises(ValueError, match="account id"):
        await q.charge("", 1)
    with pytest.raises(ValueError, match="negative"):
        await q.charge("alice", -1)


def expected_key(account: str) -> bytes:
    return b"onnet:q:{" + hashlib.sha256(account.encode()).hexdigest()[:16].encode() + b"}"


ACCOUNT = "alice@example.com"


async def test_redis_keys_hide_the_account_and_expire(redis_url: str) -> None:
    client = connect(redis_url, None)
    try:
        q = RedisQuota(client, QuotaPolicy(10, 100.0))
        await q.charge(ACCOUNT, 0)
        assert await client.keys("*") == []  # a zero charge writes nothing
        await q.charge(ACCOUNT, 4)
        keys = await client.keys("*")
        assert keys == [expected_key(ACCOUNT)]
        assert ACCOUNT.encode() not in keys[0]
        assert b"alice" not in keys[0]
        # 4 units leak in 40 s; the key goes a second after that.
        assert 39_000 < await client.pttl(keys[0]) <= 41_000
    finally:
        await client.aclose()


async def test_cluster_keys_hide_the_account(
    cluster_seeds: str, redis_cluster_nodes: RedisClusterProcesses
) -> None:
    client = connect(None, cluster_seeds)
    try:
        await RedisQuota(client, SLOW).charge(ACCOUNT, 1)
    finally:
        await client.aclose()
    keys = [key for node in redis_cluster_nodes.nodes for key in node.client().keys("*")]
    assert keys == [expected_key(ACCOUNT)]


async def test_redis_reloads_the_script_after_a_flush(redis_url: str) -> None:
    client = connect(redis_url, None)
    try:
        q = RedisQuota(client, SLOW)
        await q.charge("alice", 3)
        await client.script_flush()
        assert await q.charge("alice", 3) == QuotaDecision(True, 4, None)
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_unreachable_redis_is_store_unavailable(kind: str) -> None:
    where = f"127.0.0.1:{free_port()}"
    client = connect(f"redis://{where}/0", None) if kind == "redis" else connect(None, where)
    try:
        q = RedisQuota(client, SLOW)
        with pytest.raises(StoreUnavailable, match="quota store is unavailable"):
            await q.charge("alice", 1)
        with pytest.raises(StoreUnavailable):
            await q.remaining("alice")
    finally:
        await client.aclose()
