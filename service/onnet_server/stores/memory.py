"""The embedded registry: everything in process memory, nothing else to run.

A real implementation of the RegistryStore port (not a test double): it is what
``onnet serve`` uses by default, and the contract tests hold it to the same rules as
every other store. The registry does not outlive the process.
"""

from __future__ import annotations

from onnet_server.core.blocklists import MAX_BLOCKED, Blocklists, blocklist_full
from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.index import RegistryIndex
from onnet_server.core.ports import FeedState, QuotaStore, Registration, UserRow
from onnet_server.core.quota import QuotaPolicy
from onnet_server.stores.index_reads import IndexReads
from onnet_server.stores.index_rebuild import BasePolicy, Rebuilder

__all__ = ["MemoryRegistry"]


class MemoryRegistry(IndexReads):
    """The registry index alone, with a local version counter."""

    def __init__(self, base_policy: BasePolicy | None = None) -> None:
        """Make an empty registry; ``base_policy`` says when the index gets a new base."""
        self.index = RegistryIndex()
        """The index that answers lookups."""
        self.rebuilder = Rebuilder(self, base_policy or BasePolicy())
        """Builds the index's next base when changes have piled up."""
        self.blocklists = Blocklists()
        """Each user's blocked fingerprints."""
        self._version = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's numpy arrays."""
        return self.index.nbytes

    async def refresh(self) -> None:
        """Nothing to catch up: no other process writes this registry."""

    def feed_state(self) -> FeedState:
        """Never behind: no other process writes this registry."""
        return FeedState(lag_seconds=0.0, reloads=0)

    def quota_store(self, policy: QuotaPolicy) -> QuotaStore:
        """The quota in this process's memory, like the registry."""
        from onnet_server.stores.memory_quota import MemoryQuota  # noqa: PLC0415 - one job each

        return MemoryQuota(policy)

    async def close(self) -> None:
        """Stop a base build in progress; the registry dies with the process."""
        await self.rebuilder.close()

    async def register(
        self, user_id: str, fingerprint: bytes, discoverable: bool, private_entry: bytes = b""
    ) -> Registration:
        """Add or move ``user_id``; the newest holder of a number wins it."""
        return self.register_now(user_id, fingerprint, discoverable, private_entry)

    def register_now(
        self, user_id: str, fingerprint: bytes, discoverable: bool, private_entry: bytes = b""
    ) -> Registration:
        """``register`` without the event loop, for bulk loading and benchmarks."""
        if len(fingerprint) != FINGERPRINT_SIZE:
            raise ValueError("a fingerprint is 16 bytes")
        updated = self.index.record(user_id) is not None
        displaced = self.index.put(
            user_id, fingerprint, self._next_version(), discoverable, private_entry
        )
        if displaced is not None:
            # The previous holder had only this number: losing it removes them.
            self.index.delete(displaced, self._next_version())
            self.blocklists.drop_user(displaced)
        self.rebuilder.note_change()
        return Registration(updated=updated, displaced_user_id=displaced)

    async def register_many(self, users: list[UserRow]) -> list[Registration]:
        """Register rows in order."""
        return [self.register_now(*row) for row in users]

    async def unregister(self, user_id: str) -> bool:
        """Erase ``user_id`` and their blocklist; False when no such user was registered."""
        erased = self.index.delete(user_id, self._next_version())
        self.blocklists.drop_user(user_id)
        self.rebuilder.note_change()
        return erased

    async def set_blocked(self, user_id: str, fingerprint: bytes, blocked: bool) -> bool | None:
        """Block or unblock a number for ``user_id``; None when no such user."""
        if self.index.record(user_id) is None:
            return None
        if not blocked:
            return self.blocklists.remove(user_id, fingerprint)
        if self.blocklists.blocks(user_id, fingerprint):
            return False
        if self.blocklists.count(user_id) >= MAX_BLOCKED:
            raise blocklist_full()
        return self.blocklists.add(user_id, fingerprint)

    def _next_version(self) -> int:
        self._version += 1
        return self._version
