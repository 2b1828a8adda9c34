"""A vectorized hash table from 16-byte fingerprints to row numbers, over numpy arrays.

Open addressing with linear probing. A fingerprint is split into two 64-bit halves: the
high half picks the slot and is stored in it; the low half is stored per row and checked
on a hit, so lookups are exact. Fingerprints are AES outputs, hence uniform, so the high
half's low bits serve directly as the slot number. A batch is looked up with a handful of
array operations per probe round, and at a load of at most one half most fingerprints
settle in the first round.

Memory: 12 bytes a slot (key + row) at a load of 1/4 to 1/2, plus 8 bytes a row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["FingerprintTable"]

_EMPTY = -1
_DELETED = -2
_MIN_CAPACITY = 1024
_HALVES = np.dtype("<u8")


def split_fingerprints(
    fingerprints: bytes,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Packed 16-byte fingerprints as (high halves, low halves) arrays."""
    halves = np.frombuffer(fingerprints, dtype=_HALVES).reshape(-1, 2)
    return halves[:, 0], halves[:, 1]


class FingerprintTable:
    """Fingerprint -> row (a small int the caller assigns). Not thread-safe."""

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        """Make an empty table with room for ``capacity // 2`` fingerprints before it grows."""
        size = _MIN_CAPACITY
        while size < capacity:
            size *= 2
        self._allocate(size)
        self._row_low = np.zeros(0, dtype=np.uint64)

    def _allocate(self, size: int) -> None:
        self._keys = np.zeros(size, dtype=np.uint64)
        self._rows = np.full(size, _EMPTY, dtype=np.int32)
        self._mask = np.uint64(size - 1)
        self._used = 0
        self._deleted = 0

    def __len__(self) -> int:
        """Fingerprints in the table."""
        return self._used

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        return self._keys.nbytes + self._rows.nbytes + self._row_low.nbytes

    def lookup(self, fingerprints: bytes) -> npt.NDArray[np.int32]:
        """Rows of packed 16-byte fingerprints, -1 where absent."""
        high, low = split_fingerprints(fingerprints)
        result = np.full(len(high), _EMPTY, dtype=np.int32)
        pending = np.arange(len(high))
        slots = high & self._mask
        while pending.size:
            probe = slots[pending]
            rows = self._rows[probe]
            same_key = (self._keys[probe] == high[pending]) & (rows >= 0)
            found = np.zeros(pending.size, dtype=bool)
            if same_key.any():
                candidate_rows = rows[same_key]
                exact = self._row_low[candidate_rows] == low[pending[same_key]]
                found[np.flatnonzero(same_key)[exact]] = True
                result[pending[found]] = rows[found]
            unresolved = ~(found | (rows == _EMPTY))
            pending = pending[unresolved]
            slots[pending] = (slots[pending] + np.uint64(1)) & self._mask
        return result

    def insert(self, fingerprint: bytes, row: int) -> None:
        """Map ``fingerprint`` to ``row``; the fingerprint must not be present."""
        if (self._used + self._deleted + 1) * 2 > len(self._keys):
            self._rehash()
        high, low = (int(x[0]) for x in split_fingerprints(fingerprint))
        if row >= len(self._row_low):
            grown = np.zeros(max(row + 1, 2 * len(self._row_low), 16), dtype=np.uint64)
            grown[: len(self._row_low)] = self._row_low
            self._row_low = grown
        self._row_low[row] = low
        self._place(high, row)
        self._used += 1

    def _place(self, high: int, row: int) -> None:
        mask = int(self._mask)
        slot = high & mask
        while self._rows[slot] >= 0:
            slot = (slot + 1) & mask
        if self._rows[slot] == _DELETED:
            self._deleted -= 1
        self._keys[slot] = high
        self._rows[slot] = row

    def remove(self, fingerprint: bytes) -> int:
        """Remove ``fingerprint``; return its row, or -1 when it was absent."""
        high, low = (int(x[0]) for x in split_fingerprints(fingerprint))
        mask = int(self._mask)
        slot = high & mask
        while (row := int(self._rows[slot])) != _EMPTY:
            if row >= 0 and int(self._keys[slot]) == high and int(self._row_low[row]) == low:
                # A tombstone keeps later members of this probe chain reachable; the key and
                # the row's low half are cleared so that nothing of the number stays behind.
                self._rows[slot] = _DELETED
                self._keys[slot] = 0
                self._row_low[row] = 0
                self._used -= 1
                self._deleted += 1
                return row
            slot = (slot + 1) & mask
        return _EMPTY

    def _rehash(self) -> None:
        live = self._rows >= 0
        keys, rows = self._keys[live], self._rows[live]
        size = len(self._keys)
        # Grow when live entries fill more than a quarter; otherwise only sweep tombstones.
        while (len(keys) + 1) * 4 > size:
            size *= 2
        self._allocate(size)
        self._place_many(keys, rows)
        self._used = len(keys)

    def insert_many(self, fingerprints: bytes, rows: npt.NDArray[np.int32]) -> None:
        """Insert many fingerprints (none present, all distinct) at once, vectorized."""
        high, low = split_fingerprints(fingerprints)
        if len(high) == 0:
            return
        top = int(rows.max())
        if top >= len(self._row_low):
            grown = np.zeros(max(top + 1, 2 * len(self._row_low), 16), dtype=np.uint64)
            grown[: len(self._row_low)] = self._row_low
            self._row_low = grown
        self._row_low[rows] = low
        size = len(self._keys)
        while (self._used + self._deleted + len(high)) * 2 > size:
            size *= 2
        if size != len(self._keys):
            live = self._rows >= 0
            keys, old_rows = self._keys[live], self._rows[live]
            self._allocate(size)
            self._place_many(keys, old_rows)
            self._used = len(keys)
        self._place_many(high.copy(), rows.astype(np.int32))
        self._used += len(high)

    def _place_many(self, keys: npt.NDArray[np.uint64], rows: npt.NDArray[np.int32]) -> None:
        """Linear probing for a whole array at once.

        In each round, every free slot takes the first key that wants it; the others move
        one slot on.
        """
        slots = keys & self._mask
        pending = np.arange(len(keys))
        while pending.size:
            wanted = slots[pending]
            free = self._rows[wanted] < 0
            candidates = pending[free]
            unique_slots, first = np.unique(wanted[free], return_index=True)
            takers = candidates[first]
            self._deleted -= int(np.count_nonzero(self._rows[unique_slots] == _DELETED))
            self._keys[unique_slots] = keys[takers]
            self._rows[unique_slots] = rows[takers]
            placed = np.zeros(len(keys), dtype=bool)
            placed[takers] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + np.uint64(1)) & self._mask
