"""Private mode for an account: BlindEvaluate charged to its quota, buckets without blockers.

The server cannot tell which number a blinded element stands for, so it cannot know which
ones the account paid for before: every element costs one new number. The SDK caches its
finalized outputs, so a re-sync sends only contacts it has not evaluated yet.

A BlindEvaluate is refused as cheaply as it can be: its size first (from the length alone),
then the account, then whether the quota could take it at all, and only then are its
elements decoded and checked, off the event loop, before the charge and the evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from onnet_server.core.accounts import Accounts
from onnet_server.core.ports import QuotaStore
from onnet_server.core.private.buckets import BucketServer
from onnet_server.core.private.keys import BlindEvaluator
from onnet_server.core.quota import refuse_over_quota

__all__ = ["HeavyWork", "PrivateDiscovery"]

_Result = TypeVar("_Result")


class HeavyWork(Protocol):
    """Where work whose cost a caller chooses runs: off the event loop, bounded, fair."""

    async def run(self, account: str, work: Callable[..., _Result], *args: object) -> _Result:
        """``work(*args)`` on behalf of ``account``; may refuse with a DomainError."""
        ...


class PrivateDiscovery:
    """BlindEvaluate and FetchBuckets on behalf of an account."""

    def __init__(
        self,
        evaluator: BlindEvaluator,
        buckets: BucketServer,
        quota: QuotaStore,
        accounts: Accounts,
        heavy: HeavyWork,
    ) -> None:
        """Evaluate with ``evaluator`` on ``heavy``, serve ``buckets``, charge ``quota``."""
        self.evaluator = evaluator
        self.buckets = buckets
        self._quota = quota
        self._accounts = accounts
        self._heavy = heavy

    async def blind_evaluate(self, account: str, blinded_elements: bytes) -> bytes:
        """Check the elements, charge one new number each, then evaluate them."""
        count = self.evaluator.count(blinded_elements)
        self._accounts.blockers(account)  # refuses an account the registry does not know
        if await self._quota.remaining(account) < count:
            # Refused before any element is decoded; the charge that cannot fit changes
            # nothing and says how long to wait.
            refuse_over_quota(await self._quota.charge(account, count), "blinded_elements", count)
        await self._heavy.run(account, self.evaluator.check, blinded_elements)
        refuse_over_quota(await self._quota.charge(account, count), "blinded_elements", count)
        # Scalar multiplications release the GIL: the pool keeps the event loop free for
        # other calls and lets a second core share the work.
        return await self._heavy.run(account, self.evaluator.evaluate_checked, blinded_elements)

    def fetch(self, account: str, prefix_bits: int, buckets: list[int]) -> bytes:
        """The asked buckets' entries, less those of users who blocked ``account``'s number.

        The answer is a serialized FetchBucketsResponse (see ``BucketServer.fetch``).
        """
        return self.buckets.fetch(prefix_bits, buckets, self._accounts.blockers(account))
