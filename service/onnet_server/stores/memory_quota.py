"""The quota in process memory: one process's view, for ``onnet serve`` without Redis.

A real implementation of the QuotaStore port (not a test double), held by the contract tests
to the same rules as the Redis store. Buckets do not outlive the process, and several
processes each keep their own: behind a load balancer, use RedisQuota.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from onnet_server.core.quota import (
    QuotaDecision,
    QuotaPolicy,
    apply_charge,
    check_charge,
    leak,
    remaining_of,
)

__all__ = ["MemoryQuota"]

# An account charged once would otherwise keep its entry for the life of the process. An
# entry whose level has leaked to 0 means the same as no entry, so dropping it is invisible;
# sweeping whenever the table doubles since the last sweep keeps the cost constant per
# charge, and the table below twice the accounts charged in the last refill period.
_SWEEP_FLOOR = 1024


class MemoryQuota:
    """Buckets in a dict: account -> (level, updated at)."""

    def __init__(self, policy: QuotaPolicy, clock: Callable[[], float] = time.time) -> None:
        """Start with every bucket empty; ``clock`` gives seconds (tests pass a fake one)."""
        self.policy = policy
        """The capacity and refill period of every bucket."""
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._sweep_at = _SWEEP_FLOOR

    def __len__(self) -> int:
        """Buckets held, including leaked-empty ones the next sweep will drop."""
        return len(self._buckets)

    async def charge(self, account: str, count: int) -> QuotaDecision:
        """Charge ``count`` units to ``account``: all of them, or none if they do not fit."""
        # Nothing here awaits, so on one event loop a charge cannot interleave with another.
        check_charge(account, count)
        now = self._clock()
        level, updated_at = self._level(account, now)
        new_level, decision = apply_charge(level, count, self.policy)
        if decision.allowed and count:
            # A clock that stepped back must not make the next call leak the same time twice.
            self._buckets[account] = (new_level, max(now, updated_at))
            if len(self._buckets) > self._sweep_at:
                self._sweep(now)
        return decision

    async def remaining(self, account: str) -> int:
        """Whole units ``account`` may charge now."""
        check_charge(account, 0)
        level, _ = self._level(account, self._clock())
        return remaining_of(level, self.policy)

    def _level(self, account: str, now: float) -> tuple[float, float]:
        """The account's level leaked to ``now``, and when it was last written."""
        stored = self._buckets.get(account)
        if stored is None:
            return 0.0, now
        level, updated_at = stored
        return leak(level, now - updated_at, self.policy), updated_at

    def _sweep(self, now: float) -> None:
        self._buckets = {
            account: (level, updated_at)
            for account, (level, updated_at) in self._buckets.items()
            if leak(level, now - updated_at, self.policy) > 0
        }
        self._sweep_at = max(_SWEEP_FLOOR, 2 * len(self._buckets))
