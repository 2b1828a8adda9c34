"""Call rates: when a refused call may retry, and which buckets go when memory is full.

Each test here was seen to fail with a mutant of core/call_rate.py that the unit layer let
live (README, "Testing"). The clocks step by powers of two, so that a bucket refills to
exactly its burst.
"""

from __future__ import annotations

import pytest

from onnet_server.core.call_rate import CallRatePolicy, CallRates, RateLimited


class Clock:
    """Monotonic seconds that stand still until a test moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_counts_the_wait_from_what_has_refilled_already() -> None:
    clock = Clock()
    rates = CallRates(CallRatePolicy(burst=2, period=10.0), clock=clock)  # a call per 5 s
    rates.admit("alice")
    rates.admit("alice")
    clock.now += 2.5  # half a call back
    with pytest.raises(RateLimited) as refused:
        rates.admit("alice")
    assert refused.value.retry_after == pytest.approx(2.5)
    assert refused.value.field == ""  # about the call, not a field of its request


def test_a_call_over_the_in_flight_limit_may_retry_soon() -> None:
    rates = CallRates(CallRatePolicy(concurrent=1), clock=Clock())
    rates.enter("alice")
    with pytest.raises(RateLimited) as refused:
        rates.enter("alice")
    assert refused.value.field == ""
    # None would tell the client that waiting never helps (QuotaExceeded.retry_after).
    assert refused.value.retry_after is not None
    assert refused.value.retry_after > 0


def test_a_new_account_forgets_nobody_while_there_is_room() -> None:
    rates = CallRates(CallRatePolicy(burst=1, period=60.0), clock=Clock(), max_tracked=10)
    for account in ("alice", "bob", "carol"):
        rates.admit(account)
    with pytest.raises(RateLimited):
        rates.admit("alice")  # her spent bucket was kept: she gets no fresh burst
    assert rates.tracked() == 3


def test_when_memory_is_full_a_refilled_bucket_goes_before_a_spent_one() -> None:
    clock = Clock()
    rates = CallRates(CallRatePolicy(burst=8, period=1.0), clock=clock, max_tracked=2)
    for _ in range(8):
        rates.admit("spent")
    clock.now += 0.5
    rates.admit("sipped")
    clock.now += 0.125  # one call back at 8 a second: sipped is full again, spent holds 5
    rates.admit("newcomer")  # no room: sipped goes, it says nothing any more
    assert rates.tracked() == 2
    for _ in range(5):
        rates.admit("spent")
    with pytest.raises(RateLimited):
        rates.admit("spent")


def test_when_every_bucket_is_spent_the_stalest_half_goes() -> None:
    clock = Clock()
    rates = CallRates(CallRatePolicy(burst=1, period=60.0), clock=clock, max_tracked=4)
    for account in ("zed", "yan", "abe", "bea"):  # oldest first: not the order of the names
        rates.admit(account)
        clock.now += 1
    rates.admit("cal")
    assert rates.tracked() == 3  # zed and yan went; cal came
    for account in ("abe", "bea"):
        with pytest.raises(RateLimited):
            rates.admit(account)
    rates.admit("zed")  # forgotten: a fresh burst
