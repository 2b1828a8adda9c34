"""Per-account call rates and calls in flight, on a fake clock."""

from __future__ import annotations

import pytest

from onnet_server.core.call_rate import CallRatePolicy, CallRates, RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_call_per_refill_step() -> None:
    clock = Clock()
    rates = CallRates(CallRatePolicy(burst=3, period=30.0), clock=clock)
    for _ in range(3):
        rates.admit("alice")
    with pytest.raises(RateLimited) as refused:
        rates.admit("alice")
    assert refused.value.retry_after == pytest.approx(10.0)  # one call every 30/3 s
    assert "3 per 30 s" in refused.value.reason
    rates.admit("bob")  # another account is not affected
    clock.now += 9.9
    with pytest.raises(RateLimited):
        rates.admit("alice")
    clock.now += 0.2
    rates.admit("alice")
    with pytest.raises(RateLimited):
        rates.admit("alice")


def test_a_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    rates = CallRates(CallRatePolicy(burst=2, period=10.0), clock=clock)
    rates.admit("alice")
    clock.now += 1e6
    rates.admit("alice")
    rates.admit("alice")
    with pytest.raises(RateLimited):
        rates.admit("alice")


def test_zero_switches_the_limits_off() -> None:
    rates = CallRates(CallRatePolicy(burst=0, period=1.0, concurrent=0), clock=Clock())
    for _ in range(10_000):
        rates.admit("alice")
        rates.enter("alice")
    assert rates.tracked() == 0


def test_calls_in_flight_are_bounded_per_account() -> None:
    rates = CallRates(CallRatePolicy(concurrent=2), clock=Clock())
    rates.enter("alice")
    rates.enter("alice")
    with pytest.raises(RateLimited, match="2 calls in flight"):
        rates.enter("alice")
    rates.enter("bob")
    rates.leave("alice")
    rates.enter("alice")
    assert rates.in_flight() == 3
    for account in ("alice", "alice", "bob"):
        rates.leave(account)
    assert rates.in_flight() == 0


def test_memory_is_bounded_and_full_buckets_go_first() -> None:
    clock = Clock()
    rates = CallRates(CallRatePolicy(burst=2, period=10.0), clock=clock, max_tracked=3)
    for account in ("a", "b", "c"):
        rates.admit(account)
    clock.now += 10  # a, b and c have refilled: they say nothing any more
    rates.admit("d")
    assert rates.tracked() == 1
    rates.admit("e")
    rates.admit("f")
    rates.admit("g")  # all mid-burst: the stalest half goes
    assert rates.tracked() <= 3


def test_policy_values_are_checked() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        CallRatePolicy(burst=-1)
    with pytest.raises(ValueError, match="positive"):
        CallRatePolicy(period=0)
