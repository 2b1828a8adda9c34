"""The in-process registry index: every lookup is answered from here, never from a store.

The index holds one record per user: (fingerprint, version, discoverable). A number belongs
to the newest claim on it: among the users whose record names a fingerprint, the one with
the greatest (version, user_id) holds it; the others are *shadowed* (kept, but never
matched) until their own records are deleted. Because the holder is a function of the set of
records alone, every process that has seen the same records agrees on every match, whatever
order the changes arrived in (changes of different users may come through different
streams). A change older than the user's current record is ignored, so replaying changes
the index has already seen is harmless.

Layout, chosen for bytes per user (no Python object per user):
- rows: numpy arrays of the fingerprint's two 64-bit halves, the version, the flag, and
  where the user id sits in one shared byte arena (offset and length);
- two RowSlots tables of row numbers: holders by fingerprint (for lookups) and users by a
  hash of their id (for changes);
- private mode: the rows that have a bucket entry, in order of its 32-bit prefix
  (``_PrefixOrder``), so that a bucket is a range of positions found by binary search.

Reads are written so that their work depends on the request's size, not on what it finds
(P7 against a stopwatch): a number that is hidden, blocked or unknown is dropped by a mask
over the looked-up rows, like every other row, before any user id is read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from onnet.protocol.buckets import PREFIX_SIZE
from onnet_server.core import _native
from onnet_server.core.index.base import BaseIndex, Columns
from onnet_server.core.index.hashing import user_hash, user_hashes
from onnet_server.core.index.row_slots import EMPTY, RowSlots
from onnet_server.core.ports import Matches

__all__ = ["Overlay", "Record", "split_fingerprints"]

_HALVES = np.dtype("<u8")
_FINGERPRINT = struct.Struct("<QQ")  # a fingerprint's two halves, as _HALVES reads them

_NO_BASE = BaseIndex.empty().view
_NO_OVERRIDES = np.zeros(0, dtype=np.uint8)
_NO_ROWS = np.zeros(0, dtype=np.int64)
_GROWTH = 1.5


def split_fingerprints(
    fingerprints: bytes,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Packed 16-byte fingerprints as (first halves, second halves)."""
    halves = np.frombuffer(fingerprints, dtype=_HALVES).reshape(-1, 2)
    return halves[:, 0], halves[:, 1]


def halves_of(fingerprint: bytes) -> tuple[int, int]:
    """One fingerprint's (first half, second half), as ``split_fingerprints`` reads them.

    For one fingerprint a struct is several times cheaper than numpy's per-call setup,
    which an import pays a few times a row.
    """
    hi, lo = _FINGERPRINT.unpack(fingerprint)
    return hi, lo


def _gather(
    arena: bytearray, offsets: npt.NDArray[np.uint32], lengths: npt.NDArray[np.uint8]
) -> tuple[bytes, list[int]]:
    """The byte strings at (offsets, lengths) in ``arena``, joined, and their end positions."""
    sizes = lengths.astype(np.int64)
    ends = np.cumsum(sizes)
    if not len(ends):
        return b"", []
    positions = np.repeat(offsets.astype(np.int64) - (ends - sizes), sizes)
    positions += np.arange(int(ends[-1]))
    return np.frombuffer(arena, dtype=np.uint8)[positions].tobytes(), ends.tolist()


# The tables' hash of user ids, from a per-process random seed: nobody outside can steer ids
# into one probe chain.
_HASH_SEED = int.from_bytes(os.urandom(8), "little")


def _user_hash(user_id: str) -> int:
    """The 64-bit table hash of one user id."""
    return user_hash(user_id, _HASH_SEED)


def _user_hashes(
    arena: bytearray, offsets: npt.NDArray[np.uint32], lengths: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint64]:
    """``_user_hash`` of many ids in the arena at once."""
    return user_hashes(np.frombuffer(arena, dtype=np.uint8), offsets, lengths, _HASH_SEED)


# Rows added since the last merge are read in Python on every bucket read, and a merge
# rewrites the whole order. The overlay holds only the changes since the base (a new base
# is built after ONNET_INDEX_REBUILD_CHANGES of them), so a merge is short (about 1 ms at
# 50,000 entries): 512 keeps each read's Python part small, for about 2 us a registration.
_RECENT_ROWS = 512


class _PrefixOrder:
    """Entries of one length with their rows, in order of their 32-bit bucket prefix.

    A bucket is then a range of positions, and its entries one block of a two-dimensional
    array (one row of bytes per entry): reading a bucket touches only its own memory, where
    entries kept in registration order would cost a cache miss each. Entries added since the
    last merge wait in a small unsorted part, merged in (vectorized) when it fills. A removed
    entry's position is marked dead (row -1) at once, its bytes zeroed and its prefix set to
    its predecessor's, which keeps the order sorted and leaves no trace of the number; the
    next merge drops the position.
    """

    def __init__(self, size: int, recent_rows: int = _RECENT_ROWS) -> None:
        """An empty order of ``size``-byte entries that merges every ``recent_rows`` ones."""
        self._prefixes = np.zeros(0, dtype=np.uint32)
        self._rows = np.zeros(0, dtype=np.int32)
        self._entries = np.zeros((0, size), dtype=np.uint8)
        self._recent_prefixes = np.zeros(recent_rows, dtype=np.uint32)
        self._recent_rows = np.full(recent_rows, EMPTY, dtype=np.int32)
        self._recent_entries = np.zeros((recent_rows, size), dtype=np.uint8)
        self._recent_count = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by both parts."""
        parts = (
            self._prefixes,
            self._rows,
            self._entries,
            self._recent_prefixes,
            self._recent_rows,
            self._recent_entries,
        )
        return sum(part.nbytes for part in parts)

    def load(
        self,
        rows: npt.NDArray[np.int32],
        prefixes: npt.NDArray[np.uint32],
        entries: npt.NDArray[np.uint8],
    ) -> None:
        """Start over with exactly ``rows``, whose prefixes and entries are given."""
        order = np.argsort(prefixes, kind="stable")
        self._prefixes, self._rows = prefixes[order], rows[order]
        self._entries = np.take(entries, order, axis=0)
        self._recent_count = 0

    def add(self, row: int, prefix: int, entry: bytes) -> None:
        """Add a row that is not in the order yet."""
        at = self._recent_count
        self._recent_prefixes[at] = prefix
        self._recent_rows[at] = row
        self._recent_entries[at] = np.frombuffer(entry, dtype=np.uint8)
        self._recent_count += 1
        if self._recent_count == len(self._recent_rows):
            self._merge()

    def remove(self, row: int, prefix: int) -> None:
        """Take ``row`` (added with ``prefix``) out of the order, erasing its entry."""
        start = int(np.searchsorted(self._prefixes, np.uint32(prefix), side="left"))
        end = int(np.searchsorted(self._prefixes, np.uint32(prefix), side="right"))
        for position in range(start, end):  # a run of equal 32-bit prefixes: one row, or few
            if self._rows[position] == row:
                self._rows[position] = EMPTY
                self._prefixes[position] = self._prefixes[position - 1] if position else 0
                self._entries[position] = 0
                return
        recent = np.flatnonzero(self._recent_rows[: self._recent_count] == row)
        self._recent_rows[recent] = EMPTY
        self._recent_prefixes[recent] = 0
        self._recent_entries[recent] = 0

    def select(
        self,
        buckets: npt.NDArray[np.int64],
        bits: int,
        served: Callable[[npt.NDArray[np.int32]], npt.NDArray[np.bool_]],
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
        """(prefixes, entries) of the rows in the ``bits``-bit ``buckets`` that ``served``.

        In prefix order. ``buckets`` are distinct, ascending and below 2^bits: each is one
        range of the main part, all found by binary search at once; ``served`` says which
        of the rows found may be served, so that only their entries are copied.
        """
        shift = 32 - bits
        lows = (buckets << shift).astype(np.uint32)
        highs = (((buckets + 1) << shift) - 1).astype(np.uint32)
        starts = np.searchsorted(self._prefixes, lows, side="left")
        counts = np.searchsorted(self._prefixes, highs, side="right") - starts
        positions = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        positions += np.arange(len(positions))
        rows = self._rows[positions]
        positions = positions[(rows >= 0) & served(rows)]
        prefixes = self._prefixes[positions]
        recent = self._recent_in(buckets, shift)
        recent = recent[served(self._recent_rows[recent])]
        if not len(recent):
            return prefixes, np.take(self._entries, positions, axis=0)
        recent = recent[np.argsort(self._recent_prefixes[recent], kind="stable")]
        # The recent entries go between the main ones: one gather of main rows (any row in
        # the recent slots), then the few recent rows written in place.
        at = np.searchsorted(prefixes, self._recent_prefixes[recent], side="right")
        at += np.arange(len(recent))
        main = np.ones(len(positions) + len(recent), dtype=bool)
        main[at] = False
        merged = np.empty(len(main), dtype=np.uint32)
        merged[main], merged[at] = prefixes, self._recent_prefixes[recent]
        if len(self._rows):
            source = np.zeros(len(main), dtype=np.intp)
            source[main] = positions
            entries = np.take(self._entries, source, axis=0)
        else:
            entries = np.empty((len(main), self._entries.shape[1]), dtype=np.uint8)
        entries[at] = self._recent_entries[recent]
        return merged, entries

    def native(
        self, lost: npt.NDArray[np.uint8], hidden: npt.NDArray[np.int64]
    ) -> _native._SortedEntries:
        """The main part as ``_native.encode_buckets`` reads it (served: not lost, hidden)."""
        size = self._entries.shape[1]
        return _native.sorted_entries(self._prefixes, self._rows, self._entries, size, lost, hidden)

    def recent(
        self,
        buckets: npt.NDArray[np.int64],
        bits: int,
        served: Callable[[npt.NDArray[np.int32]], npt.NDArray[np.bool_]],
    ) -> dict[int, list[bytes]]:
        """The served entries of the unsorted part that fall in ``buckets``, by bucket."""
        recent = self._recent_in(buckets, 32 - bits)
        recent = recent[served(self._recent_rows[recent])]
        found: dict[int, list[bytes]] = {}
        size = self._entries.shape[1]
        prefixes = self._recent_prefixes[recent].tolist()
        entries = self._recent_entries[recent].view(f"V{size}").ravel().tolist()
        for prefix, entry in zip(prefixes, entries, strict=True):
            found.setdefault(prefix >> (32 - bits), []).append(entry)
        return found

    def members(
        self,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
        """(rows, prefixes, entries) of every live entry, both parts, in no set order."""
        main = np.flatnonzero(self._rows >= 0)
        recent = np.flatnonzero(self._recent_rows[: self._recent_count] >= 0)
        return (
            np.concatenate([self._rows[main], self._recent_rows[recent]]),
            np.concatenate([self._prefixes[main], self._recent_prefixes[recent]]),
            np.concatenate([self._entries[main], self._recent_entries[recent]]),
        )

    def _recent_in(self, buckets: npt.NDArray[np.int64], shift: int) -> npt.NDArray[np.intp]:
        """Positions of the live recent entries that fall in ``buckets``."""
        count = self._recent_count
        if not count or not len(buckets):
            return np.zeros(0, dtype=np.intp)
        of = self._recent_prefixes[:count].astype(np.int64) >> shift
        at = np.minimum(np.searchsorted(buckets, of), len(buckets) - 1)
        return np.flatnonzero((buckets[at] == of) & (self._recent_rows[:count] >= 0))

    def _merge(self) -> None:
        """Merge the recent entries into the main part and drop its dead positions."""
        count = self._recent_count
        fresh = np.flatnonzero(self._recent_rows[:count] >= 0)
        fresh = fresh[np.argsort(self._recent_prefixes[fresh], kind="stable")]
        live = np.flatnonzero(self._rows >= 0)
        # Each recent entry goes after the main entries of its prefix, shifted by those
        # recent entries placed before it; one gather then moves every kept entry at once.
        at = np.searchsorted(self._prefixes[live], self._recent_prefixes[fresh], side="right")
        at += np.arange(len(fresh))
        kept = np.ones(len(live) + len(fresh), dtype=bool)
        kept[at] = False
        source = np.zeros(len(kept), dtype=np.intp)
        source[kept] = live
        if len(self._rows):
            self._entries = np.take(self._entries, source, axis=0)
            self._prefixes, self._rows = self._prefixes[source], self._rows[source]
        else:  # nothing to take from: every position is a recent entry's
            self._entries = np.empty((len(kept), self._entries.shape[1]), dtype=np.uint8)
            self._prefixes = np.empty(len(kept), dtype=np.uint32)
            self._rows = np.empty(len(kept), dtype=np.int32)
        self._entries[at] = self._recent_entries[fresh]
        self._prefixes[at] = self._recent_prefixes[fresh]
        self._rows[at] = self._recent_rows[fresh]
        self._recent_rows[:] = EMPTY
        self._recent_prefixes[:] = 0
        self._recent_entries[:] = 0
        self._recent_count = 0


@dataclass(frozen=True)
class Record:
    """A user's current claim on a number."""

    fingerprint: bytes
    version: int
    discoverable: bool


class Overlay:
    """Users in rows of numpy arrays, found through two tables of row numbers.

    Not thread-safe: the server uses it from its one event loop.
    """

    def __init__(self) -> None:
        """Make an empty index."""
        self._allocate_rows(16)
        self._arena = bytearray()
        self._garbage = 0  # arena bytes of users that are gone
        # Private mode: each discoverable user's bucket entry, in prefix order, one order
        # per entry length (ids are padded, so there are few); a row keeps its prefix and
        # entry length. The rows with an entry whose user is discoverable, and those of them
        # whose claim is lost, are counted as changes happen, so that GetConfig and
        # FetchBuckets need not count them over every row.
        self._orders: dict[int, _PrefixOrder] = {}
        self._merge_every = _RECENT_ROWS
        self._served_rows = 0
        self._lost_served = 0
        self._count = 0
        self._free_rows: list[int] = []
        self._next_row = 0
        self._holders = RowSlots(tagged=True)
        self._users = RowSlots()
        self._shadowed: dict[bytes, set[int]] = {}
        self._view: _native.OverlayView | None = None  # made by view(), until a change

    def _allocate_rows(self, capacity: int) -> None:
        self._view = None  # a view holds the arrays being replaced
        self._hi = np.zeros(capacity, dtype=np.uint64)
        self._lo = np.zeros(capacity, dtype=np.uint64)
        self._version = np.zeros(capacity, dtype=np.uint64)
        self._discoverable = np.zeros(capacity, dtype=bool)
        self._uid_offset = np.zeros(capacity, dtype=np.uint32)
        self._uid_length = np.zeros(capacity, dtype=np.uint8)  # 0: a free row
        self._prefix = np.zeros(capacity, dtype=np.uint32)
        self._entry_length = np.zeros(capacity, dtype=np.uint8)  # 0: no entry
        self._lost = np.zeros(capacity, dtype=bool)  # a shadowed claim (in self._shadowed)

    def __len__(self) -> int:
        """Users with a record (holders and shadowed alike)."""
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the index: row arrays, both tables and the user-id arena."""
        return sum(part for part in self.memory_breakdown().values())

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes held, by part."""
        return {
            "rows": sum(array.nbytes for array in self._row_arrays()),
            "tables": self._holders.nbytes + self._users.nbytes,
            "user_ids": len(self._arena),
            "bucket_entries": sum(order.nbytes for order in self._orders.values()),
        }

    # -- reading ---------------------------------------------------------------------------

    def match(self, fingerprints: bytes, excluded: frozenset[str] = frozenset()) -> Matches:
        """Positions (ascending) and users of the discoverable holders among ``fingerprints``.

        The users in ``excluded`` (those who blocked the asking account) are left out. A
        hidden or excluded holder costs what a number nobody holds costs: every looked-up
        row goes through the same masks, and only the rows that pass have their ids read.
        """
        excluded_rows = np.sort(self._rows_of(excluded).astype(np.int64)) if excluded else _NO_ROWS
        indexes, users = _native.match(
            fingerprints,
            _NO_BASE,
            _NO_OVERRIDES,
            self.view(),
            excluded_rows,
            _NO_ROWS,
            True,
        )
        return Matches(indexes, users)

    def holders(self, fingerprints: bytes) -> Matches:
        """Positions (ascending) and users of every holder among ``fingerprints``.

        Unlike ``match``, hidden users count: call routing must reach them.
        """
        indexes, users = _native.match(
            fingerprints,
            _NO_BASE,
            _NO_OVERRIDES,
            self.view(),
            _NO_ROWS,
            _NO_ROWS,
            False,
        )
        return Matches(indexes, users)

    def view(self) -> _native.OverlayView:
        """The holders table, row arrays and id arena, as a lookup reads them.

        Made once and kept until the next change (``put``, ``delete``, ``load``): a change
        may write the arrays, replace them as the overlay grows, or move the id arena, and
        the view holds their addresses. Kept, it spares every Discover its making.
        """
        if self._view is None:
            self._view = self._new_view()
        return self._view

    def _new_view(self) -> _native.OverlayView:
        table = self._holders
        used = self._next_row  # rows beyond it were never held: no stand-in is picked there
        return _native.OverlayView(
            table.slots.view(np.int64),
            table.mask,
            table.home_mask,
            self._hi[:used],
            self._lo[:used],
            self._discoverable.view(np.uint8),
            self._arena,
            self._uid_offset,
            self._uid_length,
        )

    def holder_claim(self, fingerprint: bytes) -> tuple[str, int] | None:
        """(user, version) of the claim that holds ``fingerprint`` now, if anyone holds it."""
        hi, lo = halves_of(fingerprint)
        row = self._holder_row(hi, lo)
        return (self._user_id(row), int(self._version[row])) if row >= 0 else None

    def record(self, user_id: str) -> Record | None:
        """The user's current record, if any."""
        row = self._find_user(user_id)[1]
        if row < 0:
            return None
        return Record(
            self._fingerprint(row), int(self._version[row]), bool(self._discoverable[row])
        )

    def shadowed_claims(self) -> list[tuple[str, bytes, int]]:
        """(user, fingerprint, holder's version) for every claim that lost its number."""
        claims = []
        for fingerprint, rows in self._shadowed.items():
            hi, lo = halves_of(fingerprint)
            holder = self._holder_row(hi, lo)
            if holder < 0:
                continue
            for row in rows:
                claims.append((self._user_id(row), fingerprint, int(self._version[holder])))
        return claims

    def shadowed_of(self, fingerprint: bytes) -> list[tuple[str, int, str]]:
        """(user, holder's version, holder) for each claim on ``fingerprint`` that lost it."""
        rows = self._shadowed.get(fingerprint)
        if not rows:
            return []
        hi, lo = halves_of(fingerprint)
        holder = self._holder_row(hi, lo)
        version, holder_id = int(self._version[holder]), self._user_id(holder)
        return [(self._user_id(row), version, holder_id) for row in sorted(rows)]

    def knows(self, user_id: str) -> bool:
        """Whether ``user_id`` has a record here."""
        return self._find_user(user_id)[1] >= 0

    def rows_of(self, users: frozenset[str]) -> npt.NDArray[np.int32]:
        """The rows of those of ``users`` that have a record here."""
        return self._rows_of(users)

    def export(self) -> tuple[Columns, list[tuple[str, bytes, int, bool, bytes]]]:
        """Everything here, to build a base from.

        Uncontested records come as columns; the claims on contested numbers (which stay in
        an overlay) as records (user, fingerprint, version, discoverable, private entry).
        """
        live = self._live_rows()
        contested = np.zeros(len(self._hi), dtype=bool)
        for fingerprint, claims in self._shadowed.items():
            contested[list(claims)] = True
            hi, lo = halves_of(fingerprint)
            contested[self._holder_row(hi, lo)] = True
        plain = live[~contested[live]]
        where = np.full(len(self._hi), -1, dtype=np.int64)
        where[plain] = np.arange(len(plain))
        sizes = np.zeros(len(plain), dtype=np.int64)
        prefixes = np.zeros(len(plain), dtype=np.uint32)
        by_size = []
        entry_of: dict[int, bytes] = {}
        for size, order in self._orders.items():
            rows, row_prefixes, entries = order.members()
            at = where[rows]
            mine = at >= 0
            sizes[at[mine]] = size
            prefixes[at[mine]] = row_prefixes[mine]
            by_size.append((size, at[mine], entries[mine]))
            for row, prefix, entry in zip(
                rows[~mine].tolist(), row_prefixes[~mine].tolist(), entries[~mine], strict=True
            ):
                entry_of[row] = prefix.to_bytes(PREFIX_SIZE, "big") + entry.tobytes()
        entry_start = np.cumsum(sizes) - sizes
        entry_data = np.zeros(int(sizes.sum()), dtype=np.uint8)
        for size, at, entries in by_size:
            entry_data[(entry_start[at][:, None] + np.arange(size)).ravel()] = entries.ravel()
        lengths = self._uid_length[plain].astype(np.int64)
        ids, _ = _gather(self._arena, self._uid_offset[plain], self._uid_length[plain])
        columns = Columns(
            self._hi[plain],
            self._lo[plain],
            self._version[plain],
            self._discoverable[plain],
            np.frombuffer(ids, dtype=np.uint8),
            np.cumsum(lengths) - lengths,
            lengths,
            prefixes,
            sizes,
            entry_data,
            entry_start,
        )
        records = [
            (
                self._user_id(row),
                self._fingerprint(row),
                int(self._version[row]),
                bool(self._discoverable[row]),
                entry_of.get(row, b""),
            )
            for row in np.flatnonzero(contested).tolist()
            if self._uid_length[row]
        ]
        return columns, records

    def _holder_row(self, hi: int, lo: int) -> int:
        """The holder's row of one fingerprint, or -1: a scalar probe, for single changes."""
        for _, row in self._holders.probe(hi):
            if int(self._hi[row]) == hi and int(self._lo[row]) == lo:
                return row
        return EMPTY

    def _rows_of(self, users: frozenset[str]) -> npt.NDArray[np.int32]:
        """The rows of those of ``users`` that have a record."""
        rows = (self._find_user(user)[1] for user in users)
        return np.array([row for row in rows if row >= 0], dtype=np.int32)

    def _user_id(self, row: int) -> str:
        start = int(self._uid_offset[row])
        return self._arena[start : start + int(self._uid_length[row])].decode("ascii")

    def _fingerprint(self, row: int) -> bytes:
        return _FINGERPRINT.pack(int(self._hi[row]), int(self._lo[row]))

    def _find_user(self, user_id: str) -> tuple[int, int]:
        """(slot, row) of ``user_id`` in the users table, or (-1, -1)."""
        table = self._users
        return _native.arena_user_row(
            table.slots,
            table.mask,
            table.home_mask,
            self._arena,
            self._uid_offset,
            self._uid_length,
            user_id.encode("ascii"),
            _user_hash(user_id),
        )

    def _find_holder_slot(self, fingerprint_row: int) -> int:
        for slot, row in self._holders.probe(int(self._hi[fingerprint_row])):
            if row == fingerprint_row:
                return slot
        return -1

    # -- changing --------------------------------------------------------------------------

    def put(
        self,
        user_id: str,
        fingerprint: bytes,
        version: int,
        discoverable: bool,
        private_entry: bytes = b"",
    ) -> str | None:
        """Apply a registration; return the user it took the number from, if any.

        ``private_entry`` is the user's private-mode bucket entry (4-byte prefix, then the
        sealed entry), or empty. Ignored (returns None) when the user already has a record
        of this version or newer.
        """
        self._view = None  # arrays may be written, replaced or moved
        slot, current = self._find_user(user_id)
        if current >= 0:
            if int(self._version[current]) >= version:
                return None
            self._detach(current, slot)
        row = self._new_row(user_id)
        hi, lo = halves_of(fingerprint)
        self._hi[row], self._lo[row] = hi, lo
        self._version[row] = version
        self._discoverable[row] = discoverable
        self._set_entry(row, private_entry)
        self._add_to(self._users, _user_hash(user_id), row)
        holder = self._holder_row(hi, lo)
        if holder < 0:
            self._add_to(self._holders, hi, row)
            return None
        if self._claim(row) > self._claim(holder):
            self._holders.set_row(self._find_holder_slot(holder), hi, row)
            self._shadowed.setdefault(fingerprint, set()).add(holder)
            self._mark_lost(holder, True)
            return self._user_id(holder)
        self._shadowed.setdefault(fingerprint, set()).add(row)
        self._mark_lost(row, True)
        return None

    def delete(self, user_id: str, version: int) -> bool:
        """Apply an erasure; False when there was no record older than ``version``."""
        self._view = None
        slot, row = self._find_user(user_id)
        if row < 0 or int(self._version[row]) >= version:
            return False
        self._detach(row, slot)
        return True

    def load(
        self,
        user_ids: list[str],
        fingerprints: bytes,
        versions: npt.NDArray[np.uint64],
        discoverable: npt.NDArray[np.bool_],
        private_entries: list[bytes] | None = None,
    ) -> None:
        """Fill an empty index with many records at once (a snapshot), vectorized.

        The result is the same as ``put`` of every record in any order: each user once
        (the caller guarantees it), the newest claim on each number holds it.
        """
        if self._count:
            raise ValueError("load() fills an empty index")
        self._view = None
        count = len(user_ids)
        if count == 0:
            return
        hi, lo = split_fingerprints(fingerprints)
        self._allocate_rows(max(16, count + count // 8))
        self._free_rows = []  # rows freed before were in the arrays just replaced
        self._hi[:count], self._lo[:count] = hi, lo
        self._version[:count] = versions
        self._discoverable[:count] = discoverable
        lengths = np.fromiter((len(user) for user in user_ids), dtype=np.uint8, count=count)
        self._uid_length[:count] = lengths
        self._uid_offset[:count] = np.cumsum(lengths, dtype=np.uint64) - lengths
        self._arena = bytearray("".join(user_ids).encode("ascii"))
        self._count = self._next_row = count
        rows = np.arange(count, dtype=np.int32)
        hashes = _user_hashes(self._arena, self._uid_offset[:count], self._uid_length[:count])
        self._users.rebuild(hashes, rows)
        # The holder of each number: the greatest (version, user id) among its claims.
        order = np.lexsort((np.array(user_ids, dtype=object), versions, lo, hi))
        same_as_next = (hi[order][1:] == hi[order][:-1]) & (lo[order][1:] == lo[order][:-1])
        is_holder = np.ones(count, dtype=bool)
        is_holder[order[:-1][same_as_next]] = False
        self._holders.rebuild(hi[is_holder], rows[is_holder])
        for row in np.flatnonzero(~is_holder).tolist():
            self._shadowed.setdefault(self._fingerprint(row), set()).add(row)
        self._lost[:count] = ~is_holder
        if private_entries is not None:
            self._load_entries(private_entries)
        served = (self._entry_length[:count] > 0) & self._discoverable[:count]
        self._served_rows = int(np.count_nonzero(served))
        self._lost_served = int(np.count_nonzero(served & ~is_holder))

    def _set_entry(self, row: int, private_entry: bytes) -> None:
        if not private_entry:
            self._entry_length[row] = 0
            return
        size = len(private_entry) - PREFIX_SIZE
        if not 0 < size <= 255:
            raise ValueError("a private entry is a 4-byte prefix and 1 to 255 bytes")
        prefix = int.from_bytes(private_entry[:PREFIX_SIZE], "big")
        self._prefix[row] = prefix
        self._entry_length[row] = size
        # A hidden user's entry is never served, and a row's flag never changes (a new
        # record takes a new row): only discoverable users' entries are kept.
        if self._discoverable[row]:
            self._served_rows += 1
            self._order_of(size).add(row, prefix, private_entry[PREFIX_SIZE:])

    def _order_of(self, size: int) -> _PrefixOrder:
        """The order that holds entries of ``size`` bytes."""
        order = self._orders.get(size)
        if order is None:
            order = self._orders[size] = _PrefixOrder(size, self._merge_every)
        return order

    def _mark_lost(self, row: int, lost: bool) -> None:
        """Record that ``row``'s claim was shadowed (or promoted), keeping the served count."""
        self._lost[row] = lost
        if self._entry_length[row] and self._discoverable[row]:
            self._lost_served += 1 if lost else -1

    def bucket_entry_count(self) -> int:
        """Entries that buckets serve: discoverable users that have one (lost claims aside)."""
        return self._served_rows - self._lost_served

    def discoverable_without_entry(self) -> int:
        """Discoverable users with no bucket entry (registered before private mode)."""
        rows = self._uid_length[: self._next_row] > 0
        rows &= self._discoverable[: self._next_row]
        rows &= self._entry_length[: self._next_row] == 0
        return int(np.count_nonzero(rows))

    def bucket_entries(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> dict[int, list[bytes]]:
        """Private mode: the entries of every bucket asked for (``bits``-bit bucket numbers).

        Only holders of their number who are discoverable have an entry served, so a bucket
        never reveals a hidden user or a lost claim; nor the users in ``hidden`` (those who
        blocked the asking account). Within a bucket, entries come by length, then prefix.
        The work grows with the buckets asked and the entries in them, not with the
        registry: no entry outside the asked buckets is visited. (The combined index serves
        FetchBuckets natively from ``bucket_parts``; this is the overlay on its own.)
        """
        if not 0 <= bits <= 32:
            raise ValueError("bits must be between 0 and 32")
        wanted = np.unique(np.array(buckets, dtype=np.int64))
        wanted = wanted[(wanted >= 0) & (wanted >> bits == 0)]
        hidden_rows = self._rows_of(hidden)

        def served(rows: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
            # Lost claims and blockers go by masks, not by a test per entry.
            kept: npt.NDArray[np.bool_] = ~self._lost[rows] & ~np.isin(rows, hidden_rows)
            return kept

        result: dict[int, list[bytes]] = {bucket: [] for bucket in buckets}
        for number, (size, order) in enumerate(sorted(self._orders.items())):
            prefixes, entries = order.select(wanted, bits, served)
            found: list[bytes] = entries.view(f"V{size}").ravel().tolist()
            of = prefixes.astype(np.int64) >> (32 - bits)
            # In prefix order, each bucket's entries are one run, sliced off in C.
            edges = np.flatnonzero(np.diff(of, prepend=-1, append=-1))
            runs = zip(
                of[edges[:-1]].tolist(),
                map(found.__getitem__, map(slice, edges[:-1].tolist(), edges[1:].tolist())),
                strict=True,
            )
            if not number:  # the first length: every list is still empty
                result.update(runs)
            else:
                for bucket, run in runs:
                    result.setdefault(bucket, []).extend(run)
        return result

    def bucket_parts(
        self, wanted: npt.NDArray[np.int64], bits: int, hidden: frozenset[str] = frozenset()
    ) -> tuple[list[_native._Entries], dict[int, list[bytes]]]:
        """What ``_native.encode_buckets`` needs of the overlay to answer ``wanted`` buckets.

        The sorted part of each length as a native class, and the unsorted part's entries
        in those buckets (``wanted``: distinct, ascending, below 2^bits). Served as
        ``bucket_entries`` serves: not lost claims, nor the users in ``hidden``.
        """
        hidden_rows = self._rows_of(hidden).astype(np.int64)
        lost = self._lost.view(np.uint8)

        def served(rows: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
            kept: npt.NDArray[np.bool_] = ~self._lost[rows] & ~np.isin(rows, hidden_rows)
            return kept

        classes: list[_native._Entries] = []
        extra: dict[int, list[bytes]] = {}
        for _, order in sorted(self._orders.items()):
            classes.append(order.native(lost, hidden_rows))
            for bucket, entries in order.recent(wanted, bits, served).items():
                extra.setdefault(bucket, []).extend(entries)
        return classes, extra

    def _load_entries(self, private_entries: list[bytes]) -> None:
        """Rows' prefixes and entry lengths, and the discoverable rows' entries in order."""
        count = len(private_entries)
        sizes = np.fromiter(
            (max(len(e) - PREFIX_SIZE, 0) for e in private_entries), dtype=np.int64, count=count
        )
        if (sizes > 255).any():
            raise ValueError("a private entry is at most 255 bytes after its prefix")
        self._entry_length[:count] = sizes
        self._prefix[:count] = np.fromiter(
            (int.from_bytes(e[:PREFIX_SIZE], "big") if e else 0 for e in private_entries),
            dtype=np.uint32,
            count=count,
        )
        served = (sizes > 0) & self._discoverable[:count]
        for size in np.unique(sizes[served]).tolist():
            rows = np.flatnonzero(served & (sizes == size)).astype(np.int32)
            body = b"".join(private_entries[row][PREFIX_SIZE:] for row in rows.tolist())
            entries = np.frombuffer(body, dtype=np.uint8).reshape(len(rows), size)
            self._order_of(size).load(rows, self._prefix[rows], entries)

    def _claim(self, row: int) -> tuple[int, str]:
        return int(self._version[row]), self._user_id(row)

    def _add_to(self, table: RowSlots, hash_value: int, row: int) -> None:
        """Put ``row`` in ``table``, rebuilding the table first when it is full."""
        if table.full_after(1):
            live = self._live_rows()
            live = live[live != row]  # the row being added is placed below
            if table is self._holders:
                shadowed = [r for rows in self._shadowed.values() for r in rows]
                live = live[~np.isin(live, np.array(shadowed, dtype=np.int32))]
                hashes = self._hi[live]
            else:
                hashes = _user_hashes(self._arena, self._uid_offset[live], self._uid_length[live])
            table.rebuild(hashes, live)
        table.place(hash_value, row)

    def _live_rows(self) -> npt.NDArray[np.int32]:
        """Rows in use."""
        return np.flatnonzero(self._uid_length[: self._next_row] > 0).astype(np.int32)

    def _detach(self, row: int, user_slot: int) -> None:
        """Remove the row's record; promote the newest shadowed claim if it held the number."""
        fingerprint = self._fingerprint(row)
        shadowed = self._shadowed.get(fingerprint, set())
        if row in shadowed:
            shadowed.discard(row)
            self._mark_lost(row, False)
        else:
            holder_slot = self._find_holder_slot(row)
            if shadowed:
                successor = max(shadowed, key=self._claim)
                shadowed.discard(successor)
                self._mark_lost(successor, False)
                self._holders.set_row(holder_slot, int(self._hi[successor]), successor)
            else:
                self._holders.remove_slot(holder_slot)
        if not shadowed:
            self._shadowed.pop(fingerprint, None)
        self._users.remove_slot(user_slot)
        start, length = int(self._uid_offset[row]), int(self._uid_length[row])
        self._arena[start : start + length] = bytes(length)
        self._garbage += length
        # Erasure leaves no trace of the number or the user in the arrays.
        entry_length = int(self._entry_length[row])
        if entry_length and self._discoverable[row]:
            self._served_rows -= 1
            self._orders[entry_length].remove(row, int(self._prefix[row]))
        self._entry_length[row] = self._prefix[row] = 0
        self._hi[row] = self._lo[row] = self._version[row] = 0
        self._discoverable[row] = False
        self._uid_length[row] = 0
        self._count -= 1
        self._free_rows.append(row)

    def _new_row(self, user_id: str) -> int:
        if self._free_rows:
            row = self._free_rows.pop()
        else:
            row = self._next_row
            self._next_row += 1
            if row >= len(self._hi):
                self._grow_rows()
        if self._garbage > max(1 << 20, len(self._arena) // 2):
            self._compact_arena()
        encoded = user_id.encode("ascii")
        self._uid_offset[row] = len(self._arena)
        self._uid_length[row] = len(encoded)
        self._arena += encoded
        self._count += 1
        return row

    def _row_arrays(self) -> tuple[npt.NDArray[Any], ...]:
        return (
            self._hi,
            self._lo,
            self._version,
            self._discoverable,
            self._uid_offset,
            self._uid_length,
            self._prefix,
            self._entry_length,
            self._lost,
        )

    def _grow_rows(self) -> None:
        old = self._row_arrays()
        self._allocate_rows(int(len(self._hi) * _GROWTH) + 16)
        for before, after in zip(old, self._row_arrays(), strict=True):
            after[: len(before)] = before

    def _compact_arena(self) -> None:
        """Rewrite the arena without the ids of users who are gone (vectorized)."""
        self._view = None  # a view holds the arena being replaced
        live = self._live_rows()
        lengths = self._uid_length[live]
        kept, ends = _gather(self._arena, self._uid_offset[live], lengths)
        self._arena = bytearray(kept)
        self._uid_offset[live] = np.asarray(ends, dtype=np.int64) - lengths
        self._garbage = 0
