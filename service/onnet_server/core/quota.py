"""The per-account quota on new numbers: a leaky bucket, against enumeration.

Each account has a bucket of ``capacity`` units. Looking up a number the account has not
asked about before adds one unit; the bucket leaks linearly, emptying from full in
``refill_seconds``::

    level(t) = max(0, level(t0) - (t - t0) * capacity / refill_seconds)

A charge of ``n`` units succeeds if ``level + n <= capacity`` and then adds ``n``; a charge
that does not fit changes nothing and says when it would (``retry_after``), or that it never
will (``n > capacity``). A steady client thus gets ``capacity`` new numbers per refill period,
with bursts up to ``capacity``; a scraper walking the number space gets nowhere.

The functions here are the arithmetic every store follows: ``MemoryQuota`` calls them, and
the Lua script of ``RedisQuota`` is a line-by-line transcription of them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

from onnet_server.core.durations import for_people
from onnet_server.core.errors import QuotaExceeded

__all__ = [
    "CLOCK_RESOLUTION",
    "MAX_ACCOUNT_LENGTH",
    "MAX_CAPACITY",
    "MAX_RATE",
    "QuotaDecision",
    "QuotaPolicy",
    "apply_charge",
    "check_charge",
    "leak",
    "refuse_over_quota",
    "remaining_of",
]

MAX_ACCOUNT_LENGTH = 64
"""Characters in an account id at most (printable ASCII, like a user id)."""
CLOCK_RESOLUTION = 1e-6
"""Seconds: the finest time step the stores resolve (Redis TIME counts microseconds)."""
MAX_RATE = 10_000.0
"""Units per second a policy may leak at most: faster is no quota at all, and would make the
slack (what leaks in one clock step) approach a whole unit."""
MAX_CAPACITY = 1_000_000_000
"""Units a bucket may hold at most, so that float levels stay exact far below one unit."""
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))


@dataclass(frozen=True)
class QuotaPolicy:
    """How many new numbers an account may look up, and how fast the allowance returns."""

    capacity: int = 20_000
    """Units the bucket holds: the largest burst, and the allowance per refill period."""
    refill_seconds: float = 864_000.0
    """Seconds a full bucket takes to leak empty (default: ten days)."""

    def __post_init__(self) -> None:
        """Refuse a policy that cannot work: empty, never refilling, or too large to measure."""
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise TypeError("capacity must be an int")
        if not 0 < self.capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be positive and at most {MAX_CAPACITY}")
        if not math.isfinite(self.refill_seconds) or self.refill_seconds <= 0:
            raise ValueError("refill_seconds must be positive and finite")
        if self.rate > MAX_RATE:
            raise ValueError(f"the bucket must leak at most {MAX_RATE:.0f} units per second")

    # Cached: every charge reads them, and the policy never changes (frozen).
    @functools.cached_property
    def rate(self) -> float:
        """Units leaked per second."""
        return self.capacity / self.refill_seconds

    @functools.cached_property
    def slack(self) -> float:
        """Units by which a charge may overshoot the capacity and still fit.

        What leaks in one clock step (timestamps near today's epoch as floats also round to
        a fraction of a microsecond), plus a trillionth of the capacity for the rounding of
        the level itself: without it, a client that waits exactly ``retry_after`` could be
        refused by a rounding error. At most a hundredth of a unit (see MAX_RATE).
        """
        return self.rate * CLOCK_RESOLUTION + self.capacity * 1e-12


class QuotaDecision(NamedTuple):
    """The outcome of one charge.

    A named tuple: one is made on every charged call, at a third of a frozen dataclass's cost.
    """

    allowed: bool
    """The charge fitted and was added to the bucket."""
    remaining: int
    """Whole units the account may still charge now (after this charge, if allowed)."""
    retry_after: float | None
    """Refused: seconds until this same charge would fit. None when allowed, or never."""
    never: bool = False
    """Refused for good: the charge exceeds the capacity, so no wait makes it fit."""


def check_charge(account: str, count: int) -> None:
    """Raise ValueError unless ``account`` is 1 to 64 printable ASCII characters, ``count`` >= 0.

    The caller (the servicer) derives both itself, so a bad one is a bug, not a bad request.
    """
    if not 0 < len(account) <= MAX_ACCOUNT_LENGTH or not _PRINTABLE_ASCII.issuperset(account):
        raise ValueError(f"an account id is 1 to {MAX_ACCOUNT_LENGTH} printable ASCII characters")
    if count < 0:
        raise ValueError("a charge is not negative")


def leak(level: float, elapsed: float, policy: QuotaPolicy) -> float:
    """The level ``elapsed`` seconds after it was ``level``.

    A clock that stepped back (negative ``elapsed``) leaks nothing rather than filling up.
    """
    return max(0.0, level - max(0.0, elapsed) * policy.rate)


def remaining_of(level: float, policy: QuotaPolicy) -> int:
    """Whole units that fit on top of ``level``: a charge of ``n`` fits iff ``n <= this``.

    That is ``floor(capacity - level)`` but for the slack, and never above the capacity.
    """
    return min(policy.capacity, math.floor(policy.capacity - level + policy.slack))


def apply_charge(level: float, count: int, policy: QuotaPolicy) -> tuple[float, QuotaDecision]:
    """Charge ``count`` units on a bucket at ``level`` (already leaked to now).

    Returns the new level (unchanged unless allowed) and the decision.
    """
    if count > policy.capacity:
        return level, QuotaDecision(False, remaining_of(level, policy), None, never=True)
    if count == 0:
        return level, QuotaDecision(True, remaining_of(level, policy), None)
    excess = level + count - policy.capacity
    if excess > policy.slack:
        return level, QuotaDecision(False, remaining_of(level, policy), excess / policy.rate)
    level += count
    return level, QuotaDecision(True, remaining_of(level, policy), None)


def refuse_over_quota(decision: QuotaDecision, field: str, count: int) -> None:
    """Raise QuotaExceeded unless ``decision`` allowed a charge of ``count`` new numbers."""
    if decision.allowed:
        return
    if decision.never:
        raise QuotaExceeded(
            field,
            f"{count} new numbers exceed the whole quota; send fewer per call",
            None,
        )
    raise QuotaExceeded(
        field,
        f"quota of new numbers exhausted ({decision.remaining} left, {count} asked); "
        f"retry in {for_people(decision.retry_after or 0)}",
        decision.retry_after,
    )
