"""The leaky-bucket quota on a fake clock: exact cut-offs, leaks and retry times."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.quota import (
    MAX_CAPACITY,
    MAX_RATE,
    QuotaDecision,
    QuotaPolicy,
    apply_charge,
    leak,
)
from onnet_server.stores.memory_quota import MemoryQuota

# Timestamps of today's magnitude: floats near 1.7e9 round to ~0.2 microseconds, which the
# stores must absorb.
EPOCH = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def quota(clock: FakeClock, capacity: int = 100, refill_seconds: float = 100.0) -> MemoryQuota:
    return MemoryQuota(QuotaPolicy(capacity, refill_seconds), clock)


async def test_exact_cut_off(clock: FakeClock) -> None:
    q = quota(clock)  # leaks 1 unit per second
    for i in range(14):
        decision = await q.charge("alice", 7)
        assert decision == QuotaDecision(True, 100 - 7 * (i + 1), None)
    assert await q.remaining("alice") == 2
    assert await q.charge("alice", 7) == QuotaDecision(False, 2, 5.0)
    assert await q.charge("alice", 2) == QuotaDecision(True, 0, None)
    assert await q.charge("alice", 1) == QuotaDecision(False, 0, 1.0)
    assert await q.remaining("alice") == 0


async def test_leak_restores_the_allowance_proportionally(clock: FakeClock) -> None:
    q = quota(clock, capacity=20_000, refill_seconds=864_000.0)
    assert (await q.charge("alice", 20_000)).remaining == 0
    clock.now += 864_000 / 4
    assert await q.remaining("alice") == 5_000
    clock.now += 864_000 / 2
    assert await q.remaining("alice") == 15_000
    assert (await q.charge("alice", 15_000)).allowed
    assert not (await q.charge("alice", 1)).allowed
    clock.now += 864_000 * 10  # long idle: the bucket is empty, never below
    assert await q.remaining("alice") == 20_000


@pytest.mark.parametrize(
    ("capacity", "refill_seconds", "count"),
    [(100, 100.0, 7), (20_000, 864_000.0, 7), (20_000, 864_000.0, 20_000), (10, 2.0, 3),
     (3, 7.0, 2)],
)  # fmt: skip
async def test_retry_after_is_exact(
    clock: FakeClock, capacity: int, refill_seconds: float, count: int
) -> None:
    q = quota(clock, capacity, refill_seconds)
    await q.charge("alice", capacity)
    clock.now += 0.3  # an arbitrary fraction of a unit leaked
    refused = await q.charge("alice", count)
    assert not refused.allowed
    assert refused.retry_after is not None
    start = clock.now
    clock.now = start + refused.retry_after - 0.001
    assert not (await q.charge("alice", count)).allowed
    clock.now = start + refused.retry_after
    assert (await q.charge("alice", count)).allowed


async def test_more_than_the_capacity_never_fits(clock: FakeClock) -> None:
    q = quota(clock)
    assert await q.charge("alice", 101) == QuotaDecision(False, 100, None, never=True)
    assert await q.remaining("alice") == 100  # the refusal charged nothing
    assert (await q.charge("alice", 100)).allowed


async def test_a_zero_charge_always_succeeds_and_changes_nothing(clock: FakeClock) -> None:
    q = quota(clock)
    assert await q.charge("alice", 0) == QuotaDecision(True, 100, None)
    assert len(q) == 0
    await q.charge("alice", 100)
    assert await q.charge("alice", 0) == QuotaDecision(True, 0, None)


async def test_remaining_of_an_unknown_account_is_the_capacity(clock: FakeClock) -> None:
    assert await quota(clock).remaining("nobody") == 100


async def test_accounts_are_independent(clock: FakeClock) -> None:
    q = quota(clock)
    await q.charge("alice", 100)
    assert not (await q.charge("alice", 1)).allowed
    assert await q.charge("bob", 60) == QuotaDecision(True, 40, None)
    assert await q.remaining("alice") == 0


async def test_a_clock_stepping_back_leaks_nothing(clock: FakeClock) -> None:
    q = quota(clock)
    await q.charge("alice", 50)
    clock.now -= 30
    assert await q.remaining("alice") == 50
    await q.charge("alice", 10)
    clock.now += 40  # 10 s past the first charge, not 40
    assert await q.remaining("alice") == 50


async def test_concurrent_charges_take_the_last_units_once(clock: FakeClock) -> None:
    q = quota(clock, capacity=10)
    decisions = await asyncio.gather(*(q.charge("alice", 1) for _ in range(20)))
    assert sum(d.allowed for d in decisions) == 10


async def test_leaked_empty_buckets_are_swept(clock: FakeClock) -> None:
    q = quota(clock)
    for i in range(1000):
        await q.charge(f"old{i}", 1)
    clock.now += 100  # every old bucket has leaked empty
    for i in range(2000):
        await q.charge(f"new{i}", 1)
    assert len(q) < 2500
    assert await q.remaining("new0") == 99  # live buckets stay


@pytest.mark.parametrize("account", ["", "x" * 65, "caf\u00e9", "tab\there"])
async def test_bad_account_ids_are_refused(clock: FakeClock, account: str) -> None:
    with pytest.raises(ValueError, match="account id"):
        await quota(clock).charge(account, 1)


async def test_a_negative_charge_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="negative"):
        await quota(clock).charge("alice", -1)


@pytest.mark.parametrize(
    ("capacity", "refill_seconds"),
    [(0, 10.0), (-1, 10.0), (10**9 + 1, 10.0**9), (10, 0.0), (10, -1.0), (10, float("inf")),
     (10, float("nan")), (10_001, 1.0)],
)  # fmt: skip
def test_policy_validation(capacity: int, refill_seconds: float) -> None:
    with pytest.raises(ValueError, match=r"must be positive|at most"):
        QuotaPolicy(capacity, refill_seconds)


def test_policy_limits_are_inclusive() -> None:
    assert QuotaPolicy(MAX_CAPACITY, 10.0**9).capacity == MAX_CAPACITY
    assert QuotaPolicy(10_000, 1.0).rate == MAX_RATE


def test_policy_capacity_is_an_int() -> None:
    with pytest.raises(TypeError):
        QuotaPolicy(10.5, 10.0)  # type: ignore[arg-type]


def test_default_policy() -> None:
    assert QuotaPolicy() == QuotaPolicy(20_000, 864_000.0)


def test_leak_arithmetic() -> None:
    policy = QuotaPolicy(100, 50.0)  # 2 units per second
    assert leak(10.0, 3.0, policy) == 4.0
    assert leak(10.0, 6.0, policy) == 0.0
    assert leak(10.0, -5.0, policy) == 10.0
    assert apply_charge(99.0, 1, policy) == (100.0, QuotaDecision(True, 0, None))
    assert apply_charge(99.0, 2, policy) == (99.0, QuotaDecision(False, 1, 0.5))


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 1_000_000),
    rate=st.floats(1e-6, MAX_RATE / 2),
    steps=st.lists(st.tuples(st.floats(0, 1e6), st.integers(0, 1_000_000)), max_size=20),
)
def test_the_rules_hold_for_any_policy(
    capacity: int, rate: float, steps: list[tuple[float, int]]
) -> None:
    clock = FakeClock()
    q = quota(clock, capacity, capacity / rate)

    async def run() -> None:
        for wait, count in steps:
            clock.now += wait
            before = await q.remaining("alice")
            assert 0 <= before <= capacity
            decision = await q.charge("alice", count)
            assert decision.allowed == (count <= before)
            assert decision.never == (count > capacity)
            if decision.allowed:
                assert decision.remaining == before - count
            elif not decision.never:
                assert decision.retry_after is not None
                clock.now += decision.retry_after
                assert (await q.charge("alice", count)).allowed

    asyncio.run(run())
