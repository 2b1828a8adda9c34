"""The embedded registry: everything in process memory, nothing else to run.

A real implementation of the RegistryStore port (not a test double): it is what
``onnet serve`` uses by default, and the contract tests hold it to the same rules as
every other store. The registry does not outlive the process.
"""

from __future__ import annotations

import numpy as np

from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.fingerprint_table import FingerprintTable
from onnet_server.core.ports import Matches, Registration

__all__ = ["MemoryRegistry"]


class MemoryRegistry:
    """Users in rows: a fingerprint table for lookups, per-row arrays for the rest.

    Not thread-safe: the server calls it from its one event loop.
    """

    def __init__(self) -> None:
        """Make an empty registry."""
        self._table = FingerprintTable()
        self._row_of_user: dict[str, int] = {}
        self._user_of_row: list[str | None] = []
        self._fingerprint_of_row = np.zeros((16, FINGERPRINT_SIZE), dtype=np.uint8)
        self._discoverable = np.zeros(16, dtype=bool)
        self._free_rows: list[int] = []

    def __len__(self) -> int:
        """Registered users."""
        return len(self._row_of_user)

    def register(self, user_id: str, fingerprint: bytes, discoverable: bool) -> Registration:
        """Add or move ``user_id``; the newest holder of a number wins it."""
        if len(fingerprint) != FINGERPRINT_SIZE:
            raise ValueError("a fingerprint is 16 bytes")
        displaced: str | None = None
        holder_row = int(self._table.lookup(fingerprint)[0])
        if holder_row >= 0:
            holder = self._user_of_row[holder_row]
            if holder == user_id:
                self._discoverable[holder_row] = discoverable
                return Registration(updated=True, displaced_user_id=None)
            assert holder is not None
            self._drop(holder)
            displaced = holder
        updated = self._drop(user_id)
        row = self._free_rows.pop() if self._free_rows else self._new_row()
        self._table.insert(fingerprint, row)
        self._row_of_user[user_id] = row
        self._user_of_row[row] = user_id
        self._fingerprint_of_row[row] = np.frombuffer(fingerprint, dtype=np.uint8)
        self._discoverable[row] = discoverable
        return Registration(updated=updated, displaced_user_id=displaced)

    def unregister(self, user_id: str) -> bool:
        """Erase ``user_id``; False when no such user was registered."""
        return self._drop(user_id)

    def match(self, fingerprints: bytes) -> Matches:
        """Positions (ascending) and users of the discoverable users among ``fingerprints``."""
        rows = self._table.lookup(fingerprints)
        hit = rows >= 0
        hit[hit] = self._discoverable[rows[hit]]
        indexes = np.flatnonzero(hit).astype(np.uint32)
        users = self._user_of_row
        return Matches(indexes, [users[row] for row in rows[indexes].tolist()])

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy arrays (the user-id strings and their dict are not counted)."""
        return self._table.nbytes + self._discoverable.nbytes + self._fingerprint_of_row.nbytes

    def _new_row(self) -> int:
        row = len(self._user_of_row)
        self._user_of_row.append(None)
        if row >= len(self._discoverable):
            self._discoverable = np.concatenate(
                [self._discoverable, np.zeros_like(self._discoverable)]
            )
            self._fingerprint_of_row = np.concatenate(
                [self._fingerprint_of_row, np.zeros_like(self._fingerprint_of_row)]
            )
        return row

    def _drop(self, user_id: str) -> bool:
        row = self._row_of_user.pop(user_id, None)
        if row is None:
            return False
        self._table.remove(self._fingerprint_of_row[row].tobytes())
        self._user_of_row[row] = None
        self._discoverable[row] = False
        self._free_rows.append(row)
        return True
