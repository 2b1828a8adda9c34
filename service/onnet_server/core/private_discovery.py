"""Private mode for an account: BlindEvaluate charged to its quota, buckets without blockers.

The server cannot tell which number a blinded element stands for, so it cannot know which
ones the account paid for before: every element costs one new number. The SDK caches its
finalized outputs, so a re-sync sends only contacts it has not evaluated yet.
"""

from __future__ import annotations

import asyncio

from onnet_server.core.discovery import blockers_of_account, refuse_over_quota
from onnet_server.core.ports import RegistryStore
from onnet_server.core.private import BlindEvaluator, BucketServer
from onnet_server.core.quota import QuotaStore

__all__ = ["PrivateDiscovery"]


class PrivateDiscovery:
    """BlindEvaluate and FetchBuckets on behalf of an account."""

    def __init__(
        self,
        evaluator: BlindEvaluator,
        buckets: BucketServer,
        quota: QuotaStore,
        store: RegistryStore,
        *,
        open_accounts: bool = False,
    ) -> None:
        """Evaluate with ``evaluator``, serve ``buckets``, charge ``quota``.

        ``open_accounts`` (development mode) serves accounts the registry does not know.
        """
        self.evaluator = evaluator
        self.buckets = buckets
        self._quota = quota
        self._store = store
        self._open_accounts = open_accounts

    async def blind_evaluate(self, account: str, blinded_elements: bytes) -> bytes:
        """Check the elements, charge one new number each, then evaluate them."""
        blockers_of_account(self._store, account, open_accounts=self._open_accounts)
        count = self.evaluator.check(blinded_elements)
        refuse_over_quota(await self._quota.charge(account, count), "blinded_elements", count)
        # Scalar multiplications release the GIL: a worker thread keeps the event loop free
        # for other calls and lets a second core share the work.
        return await asyncio.to_thread(self.evaluator.evaluate_checked, blinded_elements)

    def fetch(self, account: str, prefix_bits: int, buckets: list[int]) -> dict[int, list[bytes]]:
        """The asked buckets' entries, less those of users who blocked ``account``'s number."""
        hidden = blockers_of_account(self._store, account, open_accounts=self._open_accounts)
        return self.buckets.fetch(prefix_bits, buckets, hidden)
