"""Discovery: packed contact hashes in, the matching discoverable users out.

Every call is made by an account (from its credential) and is charged against that
account's quota of new numbers (P4): each distinct hash that the account's re-sync token
does not cover costs one unit. Users who blocked the number the account holds are left out
of its matches (P5), so they look exactly like numbers that are not registered (P7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnet import CONTACT_HASH_VERSION
from onnet_server.core.accounts import Accounts
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import Matches, RegistryStore
from onnet_server.core.quota import QuotaStore, refuse_over_quota
from onnet_server.core.resync import ResyncTokens
from onnet_server.core.validation import check_packed_hashes

__all__ = [
    "DiscoveryAnswer",
    "DiscoveryLimits",
    "DiscoveryParameters",
    "DiscoveryService",
]


@dataclass(frozen=True)
class DiscoveryLimits:
    """Bounds on one Discover call."""

    max_batch: int
    """Most hashes in ``hashes``."""
    max_previous: int
    """Most hashes in ``previous_hashes``."""
    max_message_bytes: int
    """The transport's limit on a request, announced to clients."""


@dataclass(frozen=True)
class DiscoveryParameters:
    """What GetConfig announces."""

    contact_hash_version: int
    max_batch: int
    max_message_bytes: int
    quota_remaining: int


@dataclass(frozen=True)
class DiscoveryAnswer:
    """The matches of one Discover call and the re-sync token that covers its hashes."""

    matches: Matches
    token: bytes


class DiscoveryService:
    """Matches uploads against the registry. Keeps nothing of what it is sent."""

    def __init__(
        self,
        store: RegistryStore,
        fingerprinter: Fingerprinter,
        limits: DiscoveryLimits,
        quota: QuotaStore,
        *,
        tokens: ResyncTokens,
        accounts: Accounts,
    ) -> None:
        """Serve lookups from ``store`` to ``accounts``, charging ``quota``, issuing ``tokens``."""
        self._store = store
        self._fingerprinter = fingerprinter
        self._limits = limits
        self._quota = quota
        self._tokens = tokens
        self._accounts = accounts

    async def parameters(self, account: str) -> DiscoveryParameters:
        """The parameters ``account`` needs before it uploads, its quota left included."""
        return DiscoveryParameters(
            contact_hash_version=CONTACT_HASH_VERSION,
            max_batch=self._limits.max_batch,
            max_message_bytes=self._limits.max_message_bytes,
            quota_remaining=await self._quota.remaining(account),
        )

    async def discover(
        self, account: str, hashes: bytes, token: bytes, previous_hashes: bytes
    ) -> DiscoveryAnswer:
        """Match packed 32-byte ``hashes`` for ``account``.

        ``previous_hashes`` must be exactly what ``token`` covers; those cost nothing. The
        call is refused whole (nothing matched, nothing charged) when the new hashes do not
        fit the account's quota.
        """
        blockers = self._accounts.blockers(account)
        check_packed_hashes("hashes", hashes, max_count=self._limits.max_batch, allow_empty=False)
        check_packed_hashes(
            "previous_hashes",
            previous_hashes,
            max_count=self._limits.max_previous,
            allow_empty=True,
        )
        if previous_hashes and not token:
            raise InvalidArgument("previous_hashes", "needs the token that covers them")
        cost, next_token = self._tokens.renew(account, token, previous_hashes, hashes)
        if cost:
            refuse_over_quota(await self._quota.charge(account, cost), "hashes", cost)
        matches = self._store.match(self._fingerprinter.fingerprints(hashes))
        if blockers and matches.user_ids:
            matches = _without(matches, blockers)
        return DiscoveryAnswer(matches, next_token)


def _without(matches: Matches, users: frozenset[str]) -> Matches:
    """``matches`` less the given users."""
    keep = [user not in users for user in matches.user_ids]
    return Matches(
        matches.indexes[np.array(keep, dtype=bool)],
        [user for user, kept in zip(matches.user_ids, keep, strict=True) if kept],
    )
