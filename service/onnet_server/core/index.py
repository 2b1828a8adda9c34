"""The in-process registry index: every lookup is answered from here, never from a store.

The index holds one record per user: (fingerprint, version, discoverable). A number belongs
to the newest claim on it: among the users whose record names a fingerprint, the one with
the greatest (version, user_id) holds it; the others are *shadowed* (kept, but never
matched) until their own records are deleted. Because the holder is a function of the set of
records alone, every process that has seen the same records agrees on every match, whatever
order the changes arrived in (changes of different users may come through different
streams). A change older than the user's current record is ignored, so replaying changes
the index has already seen is harmless.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.fingerprint_table import FingerprintTable
from onnet_server.core.ports import Matches

__all__ = ["Record", "RegistryIndex"]


@dataclass(frozen=True)
class Record:
    """A user's current claim on a number."""

    fingerprint: bytes
    version: int
    discoverable: bool


class RegistryIndex:
    """Users in rows: a fingerprint table of holders, per-row arrays for the rest.

    Not thread-safe: the server uses it from its one event loop.
    """

    def __init__(self) -> None:
        """Make an empty index."""
        self._table = FingerprintTable()
        self._row_of_user: dict[str, int] = {}
        self._user_of_row: list[str | None] = []
        self._fingerprint = np.zeros((16, FINGERPRINT_SIZE), dtype=np.uint8)
        self._version = np.zeros(16, dtype=np.uint64)
        self._discoverable = np.zeros(16, dtype=bool)
        self._shadowed: dict[bytes, set[int]] = {}
        self._free_rows: list[int] = []

    def __len__(self) -> int:
        """Users with a record (holders and shadowed alike)."""
        return len(self._row_of_user)

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy arrays (user-id strings and their dict are not counted)."""
        arrays = (self._fingerprint, self._version, self._discoverable)
        return self._table.nbytes + sum(a.nbytes for a in arrays)

    def load(
        self,
        user_ids: list[str],
        fingerprints: bytes,
        versions: npt.NDArray[np.uint64],
        discoverable: npt.NDArray[np.bool_],
    ) -> None:
        """Fill an empty index with many records at once (a snapshot), vectorized.

        The result is the same as ``put`` of every record in any order: each user once
        (the caller guarantees it), the newest claim on each number holds it.
        """
        if self._row_of_user:
            raise ValueError("load() fills an empty index")
        count = len(user_ids)
        if count == 0:
            return
        fps = np.frombuffer(fingerprints, dtype=np.uint8).reshape(count, FINGERPRINT_SIZE)
        capacity = max(16, 1 << (count - 1).bit_length())
        self._fingerprint = np.zeros((capacity, FINGERPRINT_SIZE), dtype=np.uint8)
        self._fingerprint[:count] = fps
        self._version = np.zeros(capacity, dtype=np.uint64)
        self._version[:count] = versions
        self._discoverable = np.zeros(capacity, dtype=bool)
        self._discoverable[:count] = discoverable
        self._user_of_row = [*user_ids, *([None] * (capacity - count))]
        self._free_rows = list(range(capacity - 1, count - 1, -1))
        self._row_of_user = dict(zip(user_ids, range(count), strict=True))
        # The holder of each number: the greatest (version, user id) among its claims.
        halves = fps.view("<u8")
        order = np.lexsort((np.array(user_ids, dtype=object), versions, halves[:, 1], halves[:, 0]))
        same_as_next = np.all(halves[order][1:] == halves[order][:-1], axis=1)
        is_holder = np.ones(count, dtype=bool)
        is_holder[order[:-1][same_as_next]] = False
        holders = np.flatnonzero(is_holder).astype(np.int32)
        self._table.insert_many(fps[holders].tobytes(), holders)
        for row in np.flatnonzero(~is_holder).tolist():
            self._shadowed.setdefault(fps[row].tobytes(), set()).add(row)

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes held, by part: the numpy arrays, and the Python objects for user ids."""
        strings = sum(sys.getsizeof(user) for user in self._row_of_user)
        return {
            "arrays": self.nbytes,
            "user_ids": strings
            + sys.getsizeof(self._row_of_user)
            + sys.getsizeof(self._user_of_row),
        }

    def record(self, user_id: str) -> Record | None:
        """The user's current record, if any."""
        row = self._row_of_user.get(user_id)
        if row is None:
            return None
        return Record(
            self._fingerprint[row].tobytes(),
            int(self._version[row]),
            bool(self._discoverable[row]),
        )

    def holder(self, fingerprint: bytes) -> str | None:
        """The user who holds ``fingerprint`` now, if anyone."""
        row = int(self._table.lookup(fingerprint)[0])
        return self._user_of_row[row] if row >= 0 else None

    def put(self, user_id: str, fingerprint: bytes, version: int, discoverable: bool) -> str | None:
        """Apply a registration; return the user it took the number from, if any.

        Ignored (returns None) when the user already has a record of this version or newer.
        """
        current = self._row_of_user.get(user_id)
        if current is not None:
            if int(self._version[current]) >= version:
                return None
            self._detach(current)
        row = self._free_rows.pop() if self._free_rows else self._new_row()
        self._row_of_user[user_id] = row
        self._user_of_row[row] = user_id
        self._fingerprint[row] = np.frombuffer(fingerprint, dtype=np.uint8)
        self._version[row] = version
        self._discoverable[row] = discoverable
        holder = int(self._table.lookup(fingerprint)[0])
        if holder < 0:
            self._table.insert(fingerprint, row)
            return None
        if self._claim(row) > self._claim(holder):
            self._table.remove(fingerprint)
            self._table.insert(fingerprint, row)
            self._shadowed.setdefault(fingerprint, set()).add(holder)
            return self._user_of_row[holder]
        self._shadowed.setdefault(fingerprint, set()).add(row)
        return None

    def delete(self, user_id: str, version: int) -> bool:
        """Apply an erasure; False when there was no record older than ``version``."""
        row = self._row_of_user.get(user_id)
        if row is None or int(self._version[row]) >= version:
            return False
        self._detach(row)
        return True

    def shadowed_claims(self) -> list[tuple[str, bytes, int]]:
        """(user, fingerprint, holder's version) for every claim that lost its number."""
        claims = []
        for fingerprint, rows in self._shadowed.items():
            holder = int(self._table.lookup(fingerprint)[0])
            for row in rows:
                user_id = self._user_of_row[row]
                if user_id is not None and holder >= 0:
                    claims.append((user_id, fingerprint, int(self._version[holder])))
        return claims

    def match(self, fingerprints: bytes) -> Matches:
        """Positions (ascending) and users of the discoverable holders among ``fingerprints``."""
        rows = self._table.lookup(fingerprints)
        hit = rows >= 0
        hit[hit] = self._discoverable[rows[hit]]
        indexes = np.flatnonzero(hit).astype(np.uint32)
        users = self._user_of_row
        return Matches(indexes, [users[row] or "" for row in rows[indexes].tolist()])

    def _claim(self, row: int) -> tuple[int, str]:
        return int(self._version[row]), self._user_of_row[row] or ""

    def _detach(self, row: int) -> None:
        """Remove the row's record; promote the newest shadowed claim if it held the number."""
        fingerprint = self._fingerprint[row].tobytes()
        shadowed = self._shadowed.get(fingerprint, set())
        if row in shadowed:
            shadowed.discard(row)
        else:
            self._table.remove(fingerprint)
            if shadowed:
                successor = max(shadowed, key=self._claim)
                shadowed.discard(successor)
                self._table.insert(fingerprint, successor)
        if not shadowed:
            self._shadowed.pop(fingerprint, None)
        user_id = self._user_of_row[row]
        if user_id is not None:
            del self._row_of_user[user_id]
        self._user_of_row[row] = None
        self._fingerprint[row] = 0  # erasure leaves no trace of the number in memory
        self._version[row] = 0
        self._discoverable[row] = False
        self._free_rows.append(row)

    def _new_row(self) -> int:
        row = len(self._user_of_row)
        self._user_of_row.append(None)
        if row >= len(self._version):
            self._fingerprint = np.concatenate(
                [self._fingerprint, np.zeros_like(self._fingerprint)]
            )
            self._version = np.concatenate([self._version, np.zeros_like(self._version)])
            self._discoverable = np.concatenate(
                [self._discoverable, np.zeros_like(self._discoverable)]
            )
        return row
