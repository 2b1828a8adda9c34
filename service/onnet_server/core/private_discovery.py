"""Private mode for an account: BlindEvaluate charged to its quota, buckets without blockers.

The server cannot tell which number a blinded element stands for, so it cannot know which
ones the account paid for before: every element costs one new number. The SDK caches its
finalized outputs, so a re-sync sends only contacts it has not evaluated yet.
"""

from __future__ import annotations

import asyncio

from onnet_server.core.accounts import Accounts
from onnet_server.core.private import BlindEvaluator, BucketServer
from onnet_server.core.quota import QuotaStore, refuse_over_quota

__all__ = ["PrivateDiscovery"]


class PrivateDiscovery:
    """BlindEvaluate and FetchBuckets on behalf of an account."""

    def __init__(
        self,
        evaluator: BlindEvaluator,
        buckets: BucketServer,
        quota: QuotaStore,
        accounts: Accounts,
    ) -> None:
        """Evaluate with ``evaluator``, serve ``buckets`` to ``accounts``, charge ``quota``."""
        self.evaluator = evaluator
        self.buckets = buckets
        self._quota = quota
        self._accounts = accounts

    async def blind_evaluate(self, account: str, blinded_elements: bytes) -> bytes:
        """Check the elements, charge one new number each, then evaluate them."""
        self._accounts.blockers(account)  # refuses an account the registry does not know
        count = self.evaluator.check(blinded_elements)
        refuse_over_quota(await self._quota.charge(account, count), "blinded_elements", count)
        # Scalar multiplications release the GIL: a worker thread keeps the event loop free
        # for other calls and lets a second core share the work.
        return await asyncio.to_thread(self.evaluator.evaluate_checked, blinded_elements)

    def fetch(self, account: str, prefix_bits: int, buckets: list[int]) -> dict[int, list[bytes]]:
        """The asked buckets' entries, less those of users who blocked ``account``'s number."""
        return self.buckets.fetch(prefix_bits, buckets, self._accounts.blockers(account))
