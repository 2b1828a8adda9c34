"""The client's side of re-sync tokens: what it already paid for, and the proof of it.

Each Discover answer carries a token covering every contact hash the account has asked
about (through this state). Sending the token back with exactly those hashes makes them
free, so a re-sync of an unchanged address book costs no quota, and still finds contacts
who registered since. The server keeps no list of an account's contacts; this object is
that list, on the client, as hashes.
"""

from __future__ import annotations

from onnet._contact_hash import CONTACT_HASH_SIZE

__all__ = ["SyncState"]

_MAGIC = b"onnet-sync-v1\n"


class SyncState:
    """A re-sync token and the distinct contact hashes it covers.

    Keep one per account (and server); ``to_bytes``/``from_bytes`` store it across runs. It
    holds hashes of the address book, so store it as privately as the address book itself.
    """

    def __init__(self, token: bytes = b"", covered: bytes = b"") -> None:
        """A state with ``token`` covering the packed 32-byte hashes ``covered``."""
        if len(covered) % CONTACT_HASH_SIZE:
            raise ValueError("covered hashes must be 32 bytes each")
        if covered and not token:
            raise ValueError("covered hashes need the token that covers them")
        self.token = token
        """The last token the server issued (empty before the first sync)."""
        self._covered = {
            covered[i : i + CONTACT_HASH_SIZE] for i in range(0, len(covered), CONTACT_HASH_SIZE)
        }

    def __len__(self) -> int:
        """How many distinct hashes the token covers."""
        return len(self._covered)

    def previous_hashes(self) -> bytes:
        """The covered hashes, packed, for a request's ``previous_hashes``."""
        return b"".join(sorted(self._covered))

    def covers(self, contact_hash: bytes) -> bool:
        """Whether ``contact_hash`` is already paid for."""
        return contact_hash in self._covered

    def advance(self, token: bytes, batch: bytes) -> None:
        """Take the token of an answer to a request that sent ``batch`` with this state.

        An answer without a token (a server that issues none) leaves nothing to carry.
        """
        if not token:
            self.clear()
            return
        self._covered.update(
            batch[i : i + CONTACT_HASH_SIZE] for i in range(0, len(batch), CONTACT_HASH_SIZE)
        )
        self.token = token

    def clear(self) -> None:
        """Forget the token and its hashes (after the server refused the token)."""
        self.token = b""
        self._covered.clear()

    def to_bytes(self) -> bytes:
        """A serialization for ``from_bytes``."""
        return _MAGIC + len(self.token).to_bytes(2, "big") + self.token + self.previous_hashes()

    @classmethod
    def from_bytes(cls, data: bytes) -> SyncState:
        """Read what ``to_bytes`` wrote; ValueError if it is not that."""
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 2:
            raise ValueError("not an onnet sync state")
        start = len(_MAGIC) + 2
        length = int.from_bytes(data[len(_MAGIC) : start], "big")
        return cls(data[start : start + length], data[start + length :])
