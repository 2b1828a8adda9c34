"""Open addressing over row numbers: a hash table whose keys live in the caller's arrays.

A slot holds a row number, and in a tagged table also 31 bits of the row's hash (the tag):
the full key of a row is read from the caller's per-row arrays only when the tag agrees, so
a lookup that misses usually touches one slot and nothing else. Untagged slots take 4 bytes,
tagged ones 8. With linear probing at a load of at most 0.6 (0.3 for a tagged table), most
lookups end in the first or second slot. Probing starts at the beginning of an aligned
window of ``WINDOW`` slots (one 64-byte cache line of tagged slots), so almost every lookup
ends in the one cache line it reads first (the compiled probe, core/_native.pyx, reads a
whole window at once). Removal leaves a tombstone, so that rows further along a probe chain
stay reachable; tombstones go at the next rebuild.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DELETED", "EMPTY", "WINDOW", "RowSlots", "tag_of"]

EMPTY = -1
DELETED = -2
_MIN_SIZE = 1024
_MAX_LOAD = 0.6  # grow past this share of slots in use (tombstones included)
# A tagged table (the holders that lookups of untrusted numbers probe) grows sooner. A held
# number's home window holds at least itself, so it is fuller than an unknown number's and
# more often runs on into the next window: at a load of 0.6, held numbers read 13% more
# windows than unknown ones, at 0.3 under 1% (a simulation of the chains), and the probe's
# time must not tell them apart (P7; bench/README.md, issue 12, eighth round). The cost:
# 8 bytes a slot, about 30 bytes per overlay row instead of 15, in every worker's overlay
# (up to a build's worth of changes: stores/index_rebuild.py's BasePolicy).
_TAGGED_MAX_LOAD = 0.3
# A rebuilt table starts at a load of at most its maximum / 1.25, leaving room to grow.


WINDOW = 8
"""Probe chains start at a multiple of it: an aligned window of slots, one cache line."""
_CACHE_LINE = 64  # bytes
_TAG_SHIFT = 33  # the tag is the hash's top 31 bits, so a tagged slot stays non-negative


def tag_of(hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """The tag bits of each hash, already in place (bits 32 to 62) for a tagged slot."""
    return ((hashes >> np.uint64(_TAG_SHIFT)) << np.uint64(32)).astype(np.int64)


def _line_aligned(size: int, dtype: np.dtype[Any]) -> npt.NDArray[np.signedinteger[Any]]:
    """``size`` EMPTY slots starting on a cache line, so that each window is one line.

    numpy aligns a large array to 16 bytes only: a window would then span two lines, and a
    probe that misses the cache would wait for both (measured: 1.6 times slower at 1,000,000
    overlay rows, bench/README.md, issue 12, sixth round).
    """
    spare = _CACHE_LINE // dtype.itemsize
    room = np.full(size + spare, EMPTY, dtype=dtype)
    skip = (-room.ctypes.data % _CACHE_LINE) // dtype.itemsize
    return room[skip : skip + size]


def _size_for(count: int, max_load: float) -> int:
    size = _MIN_SIZE
    while count > size * max_load / 1.25:
        size *= 2
    return size


class RowSlots:
    """Slots of row numbers; the caller supplies each row's 64-bit hash when asked."""

    def __init__(self, count: int = 0, *, tagged: bool = False) -> None:
        """Make an empty table sized for ``count`` rows; ``tagged`` slots carry a tag."""
        self.tagged = tagged
        self._max_load = _TAGGED_MAX_LOAD if tagged else _MAX_LOAD
        self._allocate(_size_for(count, self._max_load))

    def _allocate(self, size: int) -> None:
        dtype = np.dtype(np.int64 if self.tagged else np.int32)
        self.slots: npt.NDArray[np.signedinteger[Any]] = _line_aligned(size, dtype)
        """The slots: EMPTY, DELETED, or a row (with its tag in bits 32 and up if tagged)."""
        self.mask = size - 1
        self.home_mask = self.mask & ~(WINDOW - 1)
        """hash & home_mask is where a hash's probe chain starts."""
        self._used = 0
        self._deleted = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the slots."""
        return self.slots.nbytes

    def full_after(self, extra: int) -> bool:
        """True when ``extra`` more rows would pass the maximum load."""
        return (self._used + self._deleted + extra) > len(self.slots) * self._max_load

    def rebuild(self, hashes: npt.NDArray[np.uint64], rows: npt.NDArray[np.int32]) -> None:
        """Start over with exactly ``rows`` (whose hashes are ``hashes``), vectorized."""
        self._allocate(_size_for(len(rows), self._max_load))
        self.place_many(hashes, rows)

    def place_many(self, hashes: npt.NDArray[np.uint64], rows: npt.NDArray[np.int32]) -> None:
        """Insert rows that are not in the table yet, all at once.

        Linear probing as array passes: in each round, every free slot takes the first row
        that wants it; the others move one slot on.
        """
        positions = hashes & np.uint64(self.home_mask)
        pending = np.arange(len(rows))
        while pending.size:
            wanted = positions[pending]
            free = self.slots[wanted] < 0
            candidates = pending[free]
            unique_slots, first = np.unique(wanted[free], return_index=True)
            takers = candidates[first]
            self._deleted -= int(np.count_nonzero(self.slots[unique_slots] == DELETED))
            values = rows[takers].astype(np.int64)
            if self.tagged:
                values |= tag_of(hashes[takers])
            self.slots[unique_slots] = values
            self._used += len(takers)
            placed = np.zeros(len(rows), dtype=bool)
            placed[takers] = True
            pending = pending[~placed[pending]]
            positions[pending] = (positions[pending] + np.uint64(1)) & np.uint64(self.mask)

    def place(self, hash_value: int, row: int) -> None:
        """Insert one row that is not in the table yet (the caller grows the table first)."""
        slot = hash_value & self.home_mask
        while self.slots[slot] >= 0:
            slot = (slot + 1) & self.mask
        if self.slots[slot] == DELETED:
            self._deleted -= 1
        self.slots[slot] = self._value(hash_value, row)
        self._used += 1

    def _value(self, hash_value: int, row: int) -> int:
        return ((hash_value >> _TAG_SHIFT) << 32) | row if self.tagged else row

    def set_row(self, slot: int, hash_value: int, row: int) -> None:
        """Put ``row`` (whose hash is ``hash_value``) in an occupied ``slot`` of its chain."""
        self.slots[slot] = self._value(hash_value, row)

    def probe(self, hash_value: int) -> list[tuple[int, int]]:
        """(slot, row) of the live rows on the probe chain of ``hash_value``, in order.

        In a tagged table, only the rows whose tag agrees.
        """
        found = []
        tag = (hash_value >> _TAG_SHIFT) if self.tagged else 0
        slot = hash_value & self.home_mask
        while (value := int(self.slots[slot])) != EMPTY:
            if value >= 0 and (value >> 32) == tag:
                found.append((slot, value & 0xFFFFFFFF))
            slot = (slot + 1) & self.mask
        return found

    def remove_slot(self, slot: int) -> None:
        """Empty ``slot`` (leaving a tombstone)."""
        self.slots[slot] = DELETED
        self._used -= 1
        self._deleted += 1
