"""Fairness between accounts: how many calls each account may make, and how many at once.

The quota (core.quota) bounds how many *new numbers* an account may learn about; it says
nothing about calls that cost no quota (a free re-sync, FetchBuckets) or that are refused
(a spent quota), and each of those still costs the server work. This module bounds the calls
themselves, per account:

- a token bucket of ``burst`` calls that refills at ``burst / period`` calls a second, so an
  app's sync (a handful of calls) always fits while a flood is refused after its burst;
- at most ``concurrent`` calls of one account in flight, so that one account cannot hold
  most of the server's call slots (ONNET_MAX_CONCURRENT_CALLS) with slow uploads.

The work pool (onnet_server.work_pool) bounds each account's share of the heavy work.

Refusals are decided from the credential alone, before a call's message is read, so they
cost almost nothing. Buckets live in process memory (a refusal must not wait on Redis): with
``--workers N`` each worker keeps its own, which lets an account make up to N times the
configured rate on one host, still bounded. Memory is bounded too: a bucket that has refilled
completely carries no information and is dropped when room is needed.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from onnet_server.core.durations import for_people
from onnet_server.core.errors import QuotaExceeded

__all__ = ["CallRatePolicy", "CallRates", "RateLimited"]

_MAX_TRACKED = 100_000  # accounts with a partly spent bucket


class RateLimited(QuotaExceeded):
    """An account made too many calls; ``retry_after`` says when the next one fits."""


@dataclass(frozen=True)
class CallRatePolicy:
    """How many calls an account may make: ``burst`` at once, refilled over ``period``."""

    burst: int = 60
    """Calls a fresh account may make back to back; 0 switches the limit off."""
    period: float = 60.0
    """Seconds in which a spent bucket refills completely."""
    concurrent: int = 8
    """Calls of one account in flight at once; 0 switches that limit off."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work."""
        if self.burst < 0 or self.concurrent < 0:
            raise ValueError("burst and concurrent must not be negative")
        if not math.isfinite(self.period) or self.period <= 0:
            raise ValueError("period must be a positive number of seconds")

    @property
    def rate(self) -> float:
        """Calls a second an account may sustain."""
        return self.burst / self.period


class CallRates:
    """Each account's bucket of calls, and its calls in flight.

    Not thread-safe: the server's one event loop uses it.
    """

    def __init__(
        self,
        policy: CallRatePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = _MAX_TRACKED,
    ) -> None:
        """Apply ``policy``; ``clock`` gives monotonic seconds (tests pass a fake one)."""
        self.policy = policy
        self._clock = clock
        self._max_tracked = max_tracked
        # account -> (tokens, when they were counted); absent means a full bucket.
        self._buckets: dict[str, tuple[float, float]] = {}
        self._in_flight: Counter[str] = Counter()

    def admit(self, account: str) -> None:
        """Take one call from ``account``'s bucket, or raise RateLimited saying when to retry."""
        policy = self.policy
        if not policy.burst:
            return
        now = self._clock()
        tokens, then = self._buckets.get(account, (float(policy.burst), now))
        tokens = min(float(policy.burst), tokens + max(0.0, now - then) * policy.rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / policy.rate
            raise RateLimited(
                "",
                f"too many calls from this account ({policy.burst} per {policy.period:g} s); "
                f"retry in {for_people(wait)}",
                wait,
            )
        if account not in self._buckets and len(self._buckets) >= self._max_tracked:
            self._forget_full(now)
        self._buckets[account] = (tokens - 1.0, now)

    def enter(self, account: str) -> None:
        """Count one more call of ``account`` in flight, or raise RateLimited; then ``leave``."""
        limit = self.policy.concurrent
        if limit and self._in_flight[account] >= limit:
            raise RateLimited(
                "", f"this account already has {limit} calls in flight; wait for one to end", 1.0
            )
        self._in_flight[account] += 1

    def leave(self, account: str) -> None:
        """A call counted by ``enter`` has ended."""
        self._in_flight[account] -= 1
        if self._in_flight[account] <= 0:
            del self._in_flight[account]  # idle accounts take no memory

    def in_flight(self) -> int:
        """Calls of every account in flight now."""
        return sum(self._in_flight.values())

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they say nothing); if none has, the oldest half."""
        policy = self.policy
        full = [
            account
            for account, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * policy.rate >= policy.burst
        ]
        if not full:
            # Every tracked account is mid-burst: a flood of distinct accounts. Forgetting
            # the stalest half gives those a fresh burst, which is bounded by the number of
            # accounts an attacker holds credentials for.
            by_age = sorted(self._buckets, key=lambda account: self._buckets[account][1])
            full = by_age[: len(by_age) // 2]
        for account in full:
            del self._buckets[account]

    def tracked(self) -> int:
        """Accounts whose bucket is kept (partly spent); for tests and metrics."""
        return len(self._buckets)
