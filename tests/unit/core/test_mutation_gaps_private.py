"""Private mode: whose work BlindEvaluate runs, a quota spent meanwhile, FetchBuckets' bounds.

Each test here was seen to fail with a mutant of core/private/ that the unit layer let live
(README, "Testing").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from onnet.protocol import MESSAGE_OVERHEAD_BYTES, oprf
from onnet_server.core.accounts import Accounts
from onnet_server.core.bucket_size import ENTRIES_PER_BUCKET
from onnet_server.core.errors import InvalidArgument, QuotaExceeded
from onnet_server.core.private.buckets import BucketServer
from onnet_server.core.private.service import PrivateDiscovery
from onnet_server.core.quota import QuotaDecision
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.memory_quota import MemoryQuota
from tests.unit.core.wiring import ACCOUNT, Core, MakeCore, numbers

_Result = TypeVar("_Result")

WORST_BUCKET = 2 * (2 * ENTRIES_PER_BUCKET - 1) * 119
"""Bytes of the fullest bucket a call may get: 62 entries (31, or twice that with one bit
fewer) of at most 119 bytes (tag, nonce, a sealed 64-character id, AEAD tag, framing)."""


def elements(count: int) -> bytes:
    """``count`` packed blinded elements, as a client makes them."""
    return b"".join(oprf.blind(e164.encode("ascii"))[1] for e164 in numbers(count))


@dataclass
class AccountWork:
    """The server's WorkPool, minus its threads: records on whose behalf each job runs."""

    on_behalf_of: list[str] = field(default_factory=list)

    async def run(self, account: str, work: Callable[..., _Result], *args: object) -> _Result:
        self.on_behalf_of.append(account)
        return work(*args)


class SpentMeanwhile:
    """A quota whose last units a concurrent call of the account takes once it was read."""

    def __init__(self, quota: MemoryQuota) -> None:
        self._quota = quota

    async def remaining(self, account: str) -> int:
        left = await self._quota.remaining(account)
        await self._quota.charge(account, left)
        return left

    async def charge(self, account: str, count: int) -> QuotaDecision:
        return await self._quota.charge(account, count)


class Overfull(MemoryRegistry):
    """A registry far off its bucket size: every bucket answer is ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def bucket_answer(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> bytes:
        return bytes(self.size)


async def test_blind_evaluate_runs_its_work_on_behalf_of_the_caller(core: Core) -> None:
    """The work pool shares the heavy work fairly by account: it must know whose it is."""
    work = AccountWork()
    private = PrivateDiscovery(
        core.private.evaluator, core.private.buckets, core.quota, Accounts(core.store), work
    )
    await private.blind_evaluate(ACCOUNT, elements(2))
    assert work.on_behalf_of == [ACCOUNT, ACCOUNT]  # the check, then the evaluation


async def test_a_quota_spent_by_a_concurrent_call_refuses_by_field_and_count(core: Core) -> None:
    work = AccountWork()
    private = PrivateDiscovery(
        core.private.evaluator,
        core.private.buckets,
        SpentMeanwhile(core.quota),
        Accounts(core.store),
        work,
    )
    with pytest.raises(QuotaExceeded) as refused:
        await private.blind_evaluate(ACCOUNT, elements(2))
    assert refused.value.field == "blinded_elements"
    assert "(0 left, 2 asked)" in refused.value.reason
    assert len(work.on_behalf_of) == 1  # checked, never evaluated


async def test_a_refusal_before_decoding_says_how_many_elements_were_asked(
    make_core: MakeCore,
) -> None:
    core = make_core(capacity=2)
    with pytest.raises(QuotaExceeded) as refused:
        await core.private.blind_evaluate(ACCOUNT, elements(3))
    assert refused.value.reason.startswith("3 new numbers exceed the whole quota")


def test_max_buckets_is_as_many_of_the_fullest_buckets_as_fit_in_a_response() -> None:
    store = MemoryRegistry()
    assert BucketServer(store, MESSAGE_OVERHEAD_BYTES + 3 * WORST_BUCKET).max_buckets == 3
    assert BucketServer(store, MESSAGE_OVERHEAD_BYTES + 3 * WORST_BUCKET - 1).max_buckets == 2
    assert BucketServer(store, MESSAGE_OVERHEAD_BYTES + 100).max_buckets == 1  # never none


def test_an_answer_larger_than_a_response_is_refused_naming_buckets() -> None:
    limit = 1000
    fits = BucketServer(Overfull(limit), MESSAGE_OVERHEAD_BYTES + limit)
    assert len(fits.fetch(0, [0])) == limit
    too_large = BucketServer(Overfull(limit + 1), MESSAGE_OVERHEAD_BYTES + limit)
    with pytest.raises(InvalidArgument) as refused:
        too_large.fetch(0, [0])
    assert (refused.value.field, refused.value.reason) == (
        "buckets",
        "the response would be too large; ask for fewer",
    )
