"""Discovery: packed contact hashes in, the matching discoverable users out.

Every call is made by an account (from its credential) and is charged against that
account's quota of new numbers (P4): each distinct hash that the account's re-sync token
does not cover costs one unit. Users who blocked the number the account holds are left out
of its matches (P5), so they look exactly like numbers that are not registered (P7), to a
stopwatch too: duplicate hashes collapse before the lookup, and a blocker, a hidden user and
an unknown number go through the same vectorized lookup and masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onnet import CONTACT_HASH_SIZE, CONTACT_HASH_VERSION
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
        """The parameters ``account`` needs before it uploads, its quota left included.

        The same accounts as ``discover`` are served: a stranger learns nothing, not even
        the limits.
        """
        self._accounts.blockers(account)  # refuses an account the registry does not know
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
        distinct, of_position = _distinct_hashes(hashes)
        matches = self._store.match(self._fingerprinter.fingerprints(distinct), blockers)
        if of_position is not None:
            matches = _spread(matches, of_position)
        return DiscoveryAnswer(matches, next_token)


def _distinct_hashes(hashes: bytes) -> tuple[bytes, npt.NDArray[np.intp] | None]:
    """The distinct hashes of packed ``hashes``, and for each position its distinct one.

    Hashes count as the same when their first 16 bytes (all that a fingerprint reads) are
    equal, exactly. Returns ``(hashes, None)`` when there are no duplicates; otherwise the
    distinct hashes packed (in no particular order) and, for each position of ``hashes``,
    the index of its hash among them.
    """
    count = len(hashes) // CONTACT_HASH_SIZE
    if count < 2:
        return hashes, None
    lanes = np.frombuffer(hashes, dtype=np.uint64).reshape(count, -1)[:, :2]
    # Without duplicates (the common case) a sort of the values, cheaper than one of
    # their indexes, is all it takes to know.
    firsts = np.sort(lanes[:, 0])
    if not (firsts[1:] == firsts[:-1]).any():
        return hashes, None
    order = np.argsort(lanes[:, 0], kind="stable")
    ordered = lanes[order]
    tied = ordered[1:, 0] == ordered[:-1, 0]
    if (ordered[1:, 1][tied] != ordered[:-1, 1][tied]).any():
        # Hashes that share their first 8 bytes only: sort on all 16. A client can send
        # such hashes on purpose; they cost it a second sort, and nobody else anything.
        order = np.lexsort((lanes[:, 1], lanes[:, 0]))
        ordered = lanes[order]
    starts = np.ones(count, dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    of_position = np.empty(count, dtype=np.intp)
    of_position[order] = np.cumsum(starts) - 1
    rows = np.frombuffer(hashes, dtype=np.uint8).reshape(count, CONTACT_HASH_SIZE)
    return rows[order[starts]].tobytes(), of_position


def _spread(found: Matches, of_position: npt.NDArray[np.intp]) -> Matches:
    """Matches among distinct hashes, repeated at every position each one was asked at."""
    distinct = int(of_position.max()) + 1
    match_of = np.full(distinct, -1, dtype=np.intp)
    match_of[found.indexes] = np.arange(len(found.indexes))
    at = match_of[of_position]
    indexes = np.flatnonzero(at >= 0)
    users = np.array(found.user_ids, dtype=object)
    return Matches(indexes.astype(np.uint32), users[at[indexes]].tolist())
