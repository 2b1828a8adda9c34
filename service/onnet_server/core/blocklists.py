"""Users' blocklists: which numbers (as fingerprints, never numbers) each user blocked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from onnet_server.core.errors import QuotaExceeded

__all__ = ["MAX_BLOCKED", "Blocklists", "blocklist_full"]

MAX_BLOCKED = 10_000
"""The most numbers one user may block (a blocklist is a user's choice, not a phone book)."""


def blocklist_full() -> QuotaExceeded:
    """The error for a block that would go past ``MAX_BLOCKED`` (waiting will not help)."""
    return QuotaExceeded("user_id", f"the blocklist is full ({MAX_BLOCKED} numbers)", None)


class Blocklists:
    """Each user's blocked fingerprints, and for each fingerprint the users who block it.

    Discover asks the second question ("who blocked the number of the account asking?"),
    so it is kept as its own map rather than computed by scanning every list. Not
    thread-safe: the server uses it from its one event loop.
    """

    def __init__(self) -> None:
        """Start with no blocks."""
        self._by_user: dict[str, set[bytes]] = {}
        self._blockers: dict[bytes, set[str]] = {}

    def __len__(self) -> int:
        """Users with at least one block."""
        return len(self._by_user)

    def count(self, user_id: str) -> int:
        """How many numbers ``user_id`` blocks."""
        return len(self._by_user.get(user_id, ()))

    def blocks(self, user_id: str, fingerprint: bytes) -> bool:
        """Whether ``user_id`` blocks the number behind ``fingerprint``."""
        return fingerprint in self._by_user.get(user_id, ())

    def add(self, user_id: str, fingerprint: bytes) -> bool:
        """Block; False when it was blocked already."""
        blocked = self._by_user.setdefault(user_id, set())
        if fingerprint in blocked:
            return False
        blocked.add(fingerprint)
        self._blockers.setdefault(fingerprint, set()).add(user_id)
        return True

    def remove(self, user_id: str, fingerprint: bytes) -> bool:
        """Unblock; False when it was not blocked."""
        blocked = self._by_user.get(user_id)
        if blocked is None or fingerprint not in blocked:
            return False
        blocked.discard(fingerprint)
        if not blocked:
            del self._by_user[user_id]
        self._forget_blocker(fingerprint, user_id)
        return True

    def drop_user(self, user_id: str) -> None:
        """Erase ``user_id``'s whole blocklist (the user was erased)."""
        for fingerprint in self._by_user.pop(user_id, set()):
            self._forget_blocker(fingerprint, user_id)

    def replace(self, user_id: str, fingerprints: Iterable[bytes]) -> None:
        """Make ``user_id``'s blocklist exactly ``fingerprints`` (as read from the store)."""
        wanted = set(fingerprints)
        held = self._by_user.get(user_id, set())
        for fingerprint in held - wanted:
            self.remove(user_id, fingerprint)
        for fingerprint in wanted - held:
            self.add(user_id, fingerprint)

    def load(self, pairs: Iterable[tuple[str, bytes]]) -> None:
        """Add many (user, fingerprint) blocks, as read from a snapshot."""
        for user_id, fingerprint in pairs:
            self.add(user_id, fingerprint)

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Every block as arrays (for a base file): users' ids, their lengths, fingerprints."""
        pairs = [(user, fp) for user, blocked in self._by_user.items() for fp in blocked]
        users = "".join(user for user, _ in pairs).encode("ascii")
        return {
            "block_ids": np.frombuffer(users, dtype=np.uint8),
            "block_id_lengths": np.array([len(user) for user, _ in pairs], dtype=np.uint8),
            "block_fingerprints": np.frombuffer(b"".join(fp for _, fp in pairs), dtype=np.uint8),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> Blocklists:
        """The blocklists ``to_arrays`` wrote."""
        blocklists = cls()
        ids = arrays["block_ids"].tobytes().decode("ascii")
        fingerprints = arrays["block_fingerprints"].tobytes()
        start = 0
        for number, length in enumerate(arrays["block_id_lengths"].tolist()):
            user = ids[start : start + length]
            blocklists.add(user, fingerprints[16 * number : 16 * number + 16])
            start += length
        return blocklists

    def blockers_of(self, fingerprint: bytes) -> frozenset[str]:
        """Every user who blocks the number behind ``fingerprint``."""
        return frozenset(self._blockers.get(fingerprint, ()))

    def _forget_blocker(self, fingerprint: bytes, user_id: str) -> None:
        blockers = self._blockers.get(fingerprint)
        if blockers is not None:
            blockers.discard(user_id)
            if not blockers:
                del self._blockers[fingerprint]
