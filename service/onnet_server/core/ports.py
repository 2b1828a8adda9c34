"""The ports the core depends on; adapters in ``onnet_server.stores`` implement them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from onnet_server.core._native import FingerprintKey, LookupJob
from onnet_server.core._resync_native import TokenStep
from onnet_server.core.quota import QuotaDecision, QuotaPolicy

__all__ = [
    "BatchLookup",
    "FeedState",
    "Matches",
    "ProbeThread",
    "QuotaStore",
    "Registration",
    "RegistryReads",
    "RegistryStore",
    "RegistryWrites",
    "UserRow",
]


class UserRow(NamedTuple):
    """One row of a bulk registration."""

    user_id: str
    fingerprint: bytes
    """16 bytes."""
    discoverable: bool
    private_entry: bytes
    """The private-mode bucket entry; empty for a user who is not discoverable."""


@dataclass(frozen=True)
class FeedState:
    """How closely this process's index follows a registry other processes also write."""

    lag_seconds: float
    """How far behind the shared registry the index may be (0 for a store of its own)."""
    reloads: int
    """Whole snapshots loaded so far, the first one included (0 for a store of its own)."""


@dataclass(frozen=True)
class Registration:
    """What a registration changed."""

    updated: bool
    """The user was registered before (with this number or another)."""
    displaced_user_id: str | None
    """The user who held the number before and lost it, if any."""


@dataclass(frozen=True)
class Matches:
    """Discoverable users found among a batch of fingerprints."""

    indexes: npt.NDArray[np.uint32]
    """Ascending positions in the batch."""
    user_ids: list[str]
    """The user at each position, parallel to ``indexes``."""


class QuotaStore(Protocol):
    """Where the accounts' quota buckets live.

    Every store keeps core/quota.py's rules (the contract tests check them). A charge is
    atomic: concurrent charges on one account never both take the last units.
    """

    async def charge(self, account: str, count: int) -> QuotaDecision:
        """Charge ``count`` new numbers to ``account``; raises StoreUnavailable."""
        ...

    async def remaining(self, account: str) -> int:
        """Whole units ``account`` may charge now; raises StoreUnavailable."""
        ...


class RegistryWrites(Protocol):
    """The registry's writes.

    Async, since they go to the store of record (Redis); each raises StoreUnavailable when
    it cannot be reached.
    """

    async def register(
        self, user_id: str, fingerprint: bytes, discoverable: bool, private_entry: bytes = b""
    ) -> Registration:
        """Add or move ``user_id`` to ``fingerprint`` (16 bytes); raises StoreUnavailable.

        ``private_entry`` is the user's private-mode bucket entry (4-byte prefix, sealed
        entry), empty for a user who is not discoverable.
        """
        ...

    async def register_many(self, users: list[UserRow]) -> list[Registration]:
        """Register rows (user_id, fingerprint, discoverable, private_entry) in order.

        Each row as ``register`` would.

        Each row is written whole or not at all; a store failure part-way raises
        StoreUnavailable and leaves the rows before it written.
        """
        ...

    async def unregister(self, user_id: str) -> bool:
        """Remove ``user_id``; False when no such user was registered."""
        ...

    async def set_blocked(self, user_id: str, fingerprint: bytes, blocked: bool) -> bool | None:
        """Block (or unblock) the number behind ``fingerprint`` for ``user_id``.

        True when this changed the blocklist, False when it was so already, None when no
        such user is registered. Raises QuotaExceeded (field user_id) when the blocklist is full
        (``MAX_BLOCKED``), StoreUnavailable when the store cannot be reached. Unregistering
        (or losing one's number) erases the user's blocklist.
        """
        ...

    async def refresh(self) -> None:
        """Apply every change other processes have made so far; raises StoreUnavailable.

        A store that shares its registry (Redis) follows their changes in the background,
        a few milliseconds behind; this catches up now. A store of its own does nothing.
        """
        ...


class BatchLookup(Protocol):
    """A Discover batch looked up (``RegistryReads.look_up_batch``)."""

    fingerprints: bytes
    """The batch's fingerprints, 16 bytes each, in order."""
    distinct: int
    """How many distinct fingerprints (numbers) the batch holds."""
    digest: tuple[int, int]
    """The sums modulo 2^64 of the distinct fingerprints' two 64-bit lanes."""

    def answer(self, token: bytes) -> tuple[bytes, int]:
        """The serialized DiscoverResponse carrying ``token``, and its match count."""
        ...


class ProbeThread(Protocol):
    """Somewhere off the event loop's thread that runs index probes (stores/lookup_thread.py)."""

    async def run(self, job: LookupJob) -> bool:
        """Run ``job``'s probe there and wait for it; False when it was not taken."""
        ...


class RegistryReads(Protocol):
    """The registry's reads.

    Sync, from this process's index: they never wait on a store, so lookups keep working
    while the store is down (Discover's may run their probe on ``lookup_thread``).
    """

    lookup_thread: ProbeThread | None
    """Where Discover's probes run off the event loop, if anywhere (the server sets it)."""

    def blocked_by(self, user_id: str) -> frozenset[str] | None:
        """The users who block the number ``user_id`` holds now (from process memory).

        None when ``user_id`` is not registered: it holds no number.
        """
        ...

    def holders(self, fingerprints: bytes) -> Matches:
        """Like ``match``, but every registered holder, discoverable or not (call routing)."""
        ...

    def blocks(self, user_id: str, fingerprint: bytes) -> bool | None:
        """Whether ``user_id`` blocked the number behind ``fingerprint``; None: no such user."""
        ...

    def match(self, fingerprints: bytes, excluded: frozenset[str] = frozenset()) -> Matches:
        """Look up packed 16-byte fingerprints in process memory.

        Only discoverable users match, and none of ``excluded``; a number held by a hidden
        or excluded user costs the same work as one nobody holds (P7). Never waits on a
        store: lookups keep working while the store is down.
        """
        ...

    def discover_answer(
        self, fingerprints: bytes, excluded: frozenset[str], token: bytes, *, distinct: bool = False
    ) -> tuple[bytes, int]:
        """``match``, answered as a serialized DiscoverResponse that carries ``token``.

        ``distinct``: the caller knows that no fingerprint comes twice, so the lookup need
        not collapse duplicates (the answer is the same either way).
        """
        ...

    async def look_up_batch(
        self,
        hashes: bytes,
        key: FingerprintKey,
        excluded: frozenset[str],
        *,
        step: TokenStep | None = None,
    ) -> BatchLookup:
        """Discover's lookup of packed 32-byte ``hashes``, by their fingerprints under ``key``.

        Off the event loop's thread where the store can. The result holds the batch's
        fingerprints and set digest (for the re-sync token) and gives the answer that
        ``discover_answer`` would give, for any token. A token ``step`` is run with the
        batch's digest (its ``next_token`` read after).
        """
        ...

    def bucket_answer(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> bytes:
        """Private mode: every entry of the asked ``bits``-bit buckets, from process memory.

        The answer is a serialized FetchBucketsResponse (one Bucket per distinct asked
        bucket, ascending). The entries of the users in ``hidden`` are left out.
        """
        ...

    def bucket_entries(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> dict[int, list[bytes]]:
        """``bucket_answer``, read back into Python objects: entries by bucket."""
        ...

    def bucket_entry_count(self) -> int:
        """Private mode: how many entries buckets serve (discoverable users with one)."""
        ...

    def __len__(self) -> int:
        """Registered users."""
        ...


class RegistryStore(RegistryWrites, RegistryReads, Protocol):
    """The registry: fingerprint -> user, with each user's discoverability.

    Its writes, its reads, and its lifecycle (the feed it follows, the quota beside it,
    closing).

    Rules every store keeps (the contract tests check them): a user holds one number; a
    number belongs to one user, the latest to register it (numbers are recycled by
    carriers, so the newest verified owner wins and the previous holder is dropped);
    unregistering removes every trace of the user.
    """

    def feed_state(self) -> FeedState:
        """How this process follows the registry's changes (for the metrics)."""
        ...

    def quota_store(self, policy: QuotaPolicy) -> QuotaStore:
        """The accounts' quota under ``policy``, kept where this registry is kept.

        Quota keys do not take the registry's prefix: a pepper rotation imports into a new
        prefix, and must not hand every account a fresh quota.
        """
        ...

    async def close(self) -> None:
        """Stop following changes and let go of connections; the store is not used after."""
        ...
