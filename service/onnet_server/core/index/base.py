"""The base of the index: the registry as of one moment, in flat arrays that never change.

A base is built in one vectorized pass (``build_base``) from the registry's records, and is
then only read: every process of a host can map the same base file (stores/index_files.py),
so a host holds one copy of it, however many workers serve from it. Changes since the base
was built live in each process's own small overlay (core/index/overlay.py); the combined
view (core/index/combined.py) answers from both.

Layout, chosen for bytes per user (bench/README.md has the measured figures):

- ``hi``, ``lo``: the fingerprint's two 64-bit halves, rows sorted by them; a number has at
  most one row (contested numbers stay in the overlay, where the claim rule decides them);
- ``fp_dir``: for each value of the fingerprint's top bits, the first row with it, so a
  lookup reads one directory word and a run of about four rows;
- ``claim``: the record's version, with the discoverable flag in the top bit;
- user ids in one byte arena, in row order: ``id_end`` (ends relative to their block of
  512 rows: ids have at most 64 characters, so 16 bits suffice) and ``id_block`` (where
  each block starts), so 2 bytes a row (and 8 a block) address any arena size;
- ``users``: an open-addressing table of row numbers (plus one; 0 is empty) by a hash of the
  user id, at a load of three quarters, keyed by the base's own seed;
- private mode: discoverable users' bucket entries, one class per entry size, each sorted
  by its 32-bit prefix. The prefixes are not stored whole: a directory gives, for each value
  of the prefix's top ``bits`` bits (one more than a bucket needs when the base is built),
  where its entries start, and each entry keeps the next 16 bits (``entry_low``), so a
  bucket is a directory range (or, asked with more bits, a search within one slot) and an
  entry costs 2 bytes of prefix instead of 4. Buckets never have more than 24 bits
  (core/private.py), so the bits past ``bits + 16`` are not needed, and at least 8 of the
  directory's are kept. ``entry_of_row`` says where a row's entry is (``NO_ENTRY`` for
  none), so that a changed user's entry can be left out without a search.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from onnet.protocol.buckets import PREFIX_SIZE
from onnet_server.core import _native
from onnet_server.core.bucket_size import MAX_PREFIX_BITS, prefix_bits_for
from onnet_server.core.index.hashing import user_hashes

__all__ = ["NO_ENTRY", "BaseIndex", "Columns", "build_base"]

NO_ENTRY = 0xFFFFFFFF
"""``entry_of_row`` of a row without a served entry."""

_FINGERPRINT = struct.Struct("<QQ")  # the two halves, little-endian as the arrays hold them
_ID_BLOCK_BITS = 9  # 512 rows of ids of at most 64 characters end within 2^15
_DISCOVERABLE = np.uint64(1 << 63)
_VERSION_BITS = np.uint64((1 << 63) - 1)
_ROWS_PER_DIRECTORY_SLOT = 4
_LOW_BITS = 16  # prefix bits each entry keeps after the directory's
_LOW_MASK = (1 << _LOW_BITS) - 1
_MIN_ENTRY_BITS = MAX_PREFIX_BITS - _LOW_BITS  # so that every bucket can be found
_USERS_LOAD = 0.75

Arrays = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class Columns:
    """Records in columns: the builder's input (each user once, each number once)."""

    hi: npt.NDArray[np.uint64]
    lo: npt.NDArray[np.uint64]
    version: npt.NDArray[np.uint64]
    discoverable: npt.NDArray[np.bool_]
    id_data: npt.NDArray[np.uint8]
    """User ids, one after another (ASCII)."""
    id_start: npt.NDArray[np.int64]
    id_length: npt.NDArray[np.int64]
    entry_prefix: npt.NDArray[np.uint32]
    entry_size: npt.NDArray[np.int64]
    """Bytes of each row's entry after its prefix; 0 for none (hidden users have none)."""
    entry_data: npt.NDArray[np.uint8]
    entry_start: npt.NDArray[np.int64]

    def __len__(self) -> int:
        """Rows."""
        return len(self.hi)

    @classmethod
    def empty(cls) -> Columns:
        """No rows."""
        return cls.of_records([], b"", np.zeros(0, np.uint64), np.zeros(0, bool))

    @classmethod
    def of_records(
        cls,
        user_ids: list[str],
        fingerprints: bytes,
        versions: npt.NDArray[np.uint64],
        discoverable: npt.NDArray[np.bool_],
        private_entries: list[bytes] | None = None,
    ) -> Columns:
        """Columns of records as the Redis snapshot reads them (entries: prefix + sealed)."""
        halves = np.frombuffer(fingerprints, dtype="<u8").reshape(-1, 2)
        id_length = np.fromiter(map(len, user_ids), dtype=np.int64, count=len(user_ids))
        entries = private_entries if private_entries is not None else [b""] * len(user_ids)
        sizes = np.fromiter(
            (max(len(entry) - PREFIX_SIZE, 0) for entry in entries),
            dtype=np.int64,
            count=len(entries),
        )
        prefixes = np.fromiter(
            (int.from_bytes(entry[:PREFIX_SIZE], "big") if entry else 0 for entry in entries),
            dtype=np.uint32,
            count=len(entries),
        )
        body = b"".join(entry[PREFIX_SIZE:] for entry in entries)
        return cls(
            hi=halves[:, 0].copy(),
            lo=halves[:, 1].copy(),
            version=np.asarray(versions, dtype=np.uint64),
            discoverable=np.asarray(discoverable, dtype=bool),
            id_data=np.frombuffer("".join(user_ids).encode("ascii"), dtype=np.uint8),
            id_start=np.cumsum(id_length) - id_length,
            id_length=id_length,
            entry_prefix=prefixes,
            entry_size=sizes,
            entry_data=np.frombuffer(body, dtype=np.uint8),
            entry_start=np.cumsum(sizes) - sizes,
        )

    def record(self, row: int) -> tuple[str, bytes, int, bool, bytes]:
        """Row ``row`` as (user, fingerprint, version, discoverable, private entry)."""
        start, length = int(self.id_start[row]), int(self.id_length[row])
        user = self.id_data[start : start + length].tobytes().decode("ascii")
        fingerprint = np.array([self.hi[row], self.lo[row]], dtype="<u8").tobytes()
        size = int(self.entry_size[row])
        entry = b""
        if size:
            at = int(self.entry_start[row])
            body = self.entry_data[at : at + size].tobytes()
            entry = int(self.entry_prefix[row]).to_bytes(PREFIX_SIZE, "big") + body
        return user, fingerprint, int(self.version[row]), bool(self.discoverable[row]), entry

    def take(self, rows: npt.NDArray[np.intp]) -> Columns:
        """These ``rows``, in this order (their ids and entries gathered)."""
        id_data, id_start = _gather_runs(self.id_data, self.id_start[rows], self.id_length[rows])
        entry_data, entry_start = _gather_runs(
            self.entry_data, self.entry_start[rows], self.entry_size[rows]
        )
        return Columns(
            self.hi[rows],
            self.lo[rows],
            self.version[rows],
            self.discoverable[rows],
            id_data,
            id_start,
            self.id_length[rows],
            self.entry_prefix[rows],
            self.entry_size[rows],
            entry_data,
            entry_start,
        )

    @staticmethod
    def concatenate(parts: list[Columns]) -> Columns:
        """The rows of ``parts``, one after another."""
        id_shift = np.cumsum([0] + [len(part.id_data) for part in parts[:-1]])
        entry_shift = np.cumsum([0] + [len(part.entry_data) for part in parts[:-1]])
        return Columns(
            np.concatenate([part.hi for part in parts]),
            np.concatenate([part.lo for part in parts]),
            np.concatenate([part.version for part in parts]),
            np.concatenate([part.discoverable for part in parts]),
            np.concatenate([part.id_data for part in parts]),
            np.concatenate([p.id_start + s for p, s in zip(parts, id_shift, strict=True)]),
            np.concatenate([part.id_length for part in parts]),
            np.concatenate([part.entry_prefix for part in parts]),
            np.concatenate([part.entry_size for part in parts]),
            np.concatenate([part.entry_data for part in parts]),
            np.concatenate([p.entry_start + s for p, s in zip(parts, entry_shift, strict=True)]),
        )


def _gather_runs(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The runs ``data[starts[i] : starts[i] + lengths[i]]`` joined, and their new starts."""
    ends = np.cumsum(lengths)
    new_starts = ends - lengths
    if not len(ends) or not ends[-1]:
        return np.zeros(0, dtype=np.uint8), new_starts
    positions = np.repeat(starts - new_starts, lengths) + np.arange(int(ends[-1]))
    return data[positions], new_starts


def build_base(columns: Columns, seed: int) -> dict[str, npt.NDArray[Any]]:
    """The arrays of a base holding ``columns`` (whose numbers must be distinct)."""
    count = len(columns)
    order = np.lexsort((columns.lo, columns.hi))
    rows = columns.take(order)
    if count > 1 and ((rows.hi[1:] == rows.hi[:-1]) & (rows.lo[1:] == rows.lo[:-1])).any():
        raise ValueError("a base holds each number once: contested numbers stay in the overlay")
    claim = rows.version & _VERSION_BITS
    claim[rows.discoverable] |= _DISCOVERABLE
    arrays: dict[str, npt.NDArray[Any]] = {
        "hi": rows.hi,
        "lo": rows.lo,
        "claim": claim,
        "fp_dir": _directory(rows.hi),
        "ids": rows.id_data,
    }
    arrays.update(_id_ends(rows.id_length))
    arrays["users"] = _users_table(rows, seed)
    arrays.update(_entries(rows))
    return arrays


def _directory(hi: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint32]:
    bits = max(0, math.ceil(math.log2(max(1, len(hi) / _ROWS_PER_DIRECTORY_SLOT))))
    top = hi >> np.uint64(64 - bits) if bits else np.zeros(len(hi), dtype=np.uint64)
    return np.searchsorted(top, np.arange((1 << bits) + 1, dtype=np.uint64)).astype(np.uint32)


def _id_ends(lengths: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[Any]]:
    ends = np.cumsum(lengths)
    block_of_row = np.arange(len(ends)) >> _ID_BLOCK_BITS
    blocks = (len(ends) + (1 << _ID_BLOCK_BITS) - 1) >> _ID_BLOCK_BITS
    # Each block starts where the previous block's last id ends.
    block_start = np.zeros(blocks, dtype=np.uint64)
    if blocks > 1:
        block_start[1:] = ends[(np.arange(1, blocks) << _ID_BLOCK_BITS) - 1]
    relative = ends - block_start[block_of_row].astype(np.int64)
    if len(relative) and relative.max() >= 1 << 16:
        raise ValueError("user ids of 512 rows take more than 64 KiB: an id is too long")
    return {"id_end": relative.astype(np.uint16), "id_block": block_start}


def _table_size(count: int) -> int:
    return max(8, math.ceil(count / _USERS_LOAD))


def _home(hashes: npt.NDArray[np.uint64], size: int) -> npt.NDArray[np.int64]:
    """Each hash's home slot in a table of ``size``: the top bits, scaled (no modulo)."""
    return ((hashes >> np.uint64(32)) * np.uint64(size) >> np.uint64(32)).astype(np.int64)


def _users_table(rows: Columns, seed: int) -> npt.NDArray[np.uint32]:
    """Row + 1 of every user, by linear probing from the home slot of its id's hash."""
    size = _table_size(len(rows))
    table = np.zeros(size, dtype=np.uint32)
    hashes = user_hashes(rows.id_data, rows.id_start, rows.id_length, seed)
    positions = _home(hashes, size)
    pending = np.arange(len(rows))
    while pending.size:
        # Each free slot takes the first pending row that wants it; the others move on.
        wanted = positions[pending]
        free = table[wanted] == 0
        slots, first = np.unique(wanted[free], return_index=True)
        takers = pending[free][first]
        table[slots] = (takers + 1).astype(np.uint32)
        placed = np.zeros(len(rows), dtype=bool)
        placed[takers] = True
        pending = pending[~placed[pending]]
        positions[pending] = (positions[pending] + 1) % size
    return table


def _low_bits(prefixes: npt.NDArray[np.uint64], bits: int) -> npt.NDArray[np.uint16]:
    """The 16 bits after the top ``bits`` of each 32-bit prefix (zeros past its end)."""
    shift = 32 - bits - _LOW_BITS
    moved = prefixes >> np.uint64(shift) if shift >= 0 else prefixes << np.uint64(-shift)
    return (moved & np.uint64(_LOW_MASK)).astype(np.uint16)


def entry_directory_bits(count: int) -> int:
    """The directory's bits for ``count`` entries: one more than their buckets need."""
    return max(_MIN_ENTRY_BITS, prefix_bits_for(count) + 1)


def _entries(rows: Columns) -> dict[str, npt.NDArray[Any]]:
    """Discoverable rows' entries by size class, each sorted by prefix; and where each is."""
    entry_of_row = np.full(len(rows), NO_ENTRY, dtype=np.uint32)
    served = (rows.entry_size > 0) & rows.discoverable
    sizes = np.unique(rows.entry_size[served])
    arrays: dict[str, npt.NDArray[Any]] = {"entry_sizes": sizes.astype(np.uint32)}
    first = 0
    for size in sizes.tolist():
        members = np.flatnonzero(served & (rows.entry_size == size))
        members = members[np.argsort(rows.entry_prefix[members], kind="stable")]
        starts = rows.entry_start[members]
        positions = (starts[:, None] + np.arange(size)).ravel()
        prefixes = rows.entry_prefix[members]
        bits = entry_directory_bits(len(members))
        wide = prefixes.astype(np.uint64)
        arrays[f"entry_dir_{size}"] = np.searchsorted(
            wide >> np.uint64(32 - bits), np.arange((1 << bits) + 1, dtype=np.uint64)
        ).astype(np.uint32)
        arrays[f"entry_low_{size}"] = _low_bits(wide, bits)
        arrays[f"entry_data_{size}"] = rows.entry_data[positions].reshape(len(members), size)
        entry_of_row[members] = first + np.arange(len(members), dtype=np.uint32)
        first += len(members)
    arrays["entry_of_row"] = entry_of_row
    return arrays


@dataclass(frozen=True)
class _EntryClass:
    size: int
    first: int
    directory: npt.NDArray[np.uint32]
    low: npt.NDArray[np.uint16]
    data: npt.NDArray[np.uint8]

    @property
    def bits(self) -> int:
        return (len(self.directory) - 1).bit_length() - 1

    def __len__(self) -> int:
        return len(self.low)

    def prefixes(self, at: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
        """The prefixes of the entries at ``at`` (their top ``bits + 16`` bits; the rest 0)."""
        top = (np.searchsorted(self.directory, at, side="right") - 1).astype(np.uint64)
        low = self.low[at].astype(np.uint64)
        shift = 32 - self.bits - _LOW_BITS  # where the kept bits go (below 0: partly beyond)
        low = low << np.uint64(shift) if shift >= 0 else low >> np.uint64(-shift)
        prefixes: npt.NDArray[np.uint32] = ((top << np.uint64(32 - self.bits)) | low).astype(
            np.uint32
        )
        return prefixes


class BaseIndex:
    """Lookups in a base's arrays (mapped from a file, or in memory). Read-only."""

    def __init__(
        self,
        arrays: Arrays,
        seed: int,
        contested: Sequence[tuple[str, bytes, int, bool, bytes]] = (),
    ) -> None:
        """Read ``arrays`` as ``build_base`` made them, with the seed the users table used.

        ``contested`` are the claims on numbers that several users claim: they are not in
        the arrays, and whoever serves this base keeps them in its overlay.
        """
        self.arrays = arrays
        self.seed = seed
        self.contested = list(contested)
        self._hi = arrays["hi"]
        self._lo = arrays["lo"]
        self._claim = arrays["claim"]
        self._dir = arrays["fp_dir"]
        self._dir_bits = (len(self._dir) - 1).bit_length() - 1
        self._ids = arrays["ids"]
        self._id_end = arrays["id_end"]
        self._id_block = arrays["id_block"]
        self._users = arrays["users"]
        self._entry_of_row = arrays["entry_of_row"]
        self._classes = []
        first = 0
        for size in arrays["entry_sizes"].tolist():
            kind = _EntryClass(
                size,
                first,
                arrays[f"entry_dir_{size}"],
                arrays[f"entry_low_{size}"],
                arrays[f"entry_data_{size}"],
            )
            self._classes.append(kind)
            first += len(kind)
        self.entry_count = first
        """Entries served from this base (discoverable users with one)."""
        self.entry_classes = [
            _native.entry_class(kind.directory, kind.low, kind.data, kind.size, kind.first)
            for kind in self._classes
        ]
        """The size classes as ``_native.encode_buckets`` reads them."""
        self.view = _native.BaseView(
            self._hi,
            self._lo,
            self._dir,
            self._claim,
            self._ids,
            self._id_end,
            self._id_block,
            _ID_BLOCK_BITS,
            self._users,
            seed,
        )
        """The arrays as the compiled lookups read them."""

    @classmethod
    def empty(cls, seed: int = 0) -> BaseIndex:
        """A base of no users."""
        nothing = Columns.of_records([], b"", np.zeros(0, np.uint64), np.zeros(0, bool))
        return cls(build_base(nothing, seed), seed)

    def __len__(self) -> int:
        """Rows (users)."""
        return len(self._hi)

    @property
    def nbytes(self) -> int:
        """Bytes of all its arrays."""
        return sum(array.nbytes for array in self.arrays.values())

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes of its arrays, by part: as the overlay names its own."""
        parts = {"rows": 0, "tables": 0, "user_ids": 0, "bucket_entries": 0}
        for name, array in self.arrays.items():
            if name.startswith("entry_"):
                part = "bucket_entries"
            elif name in ("users", "fp_dir"):
                part = "tables"
            elif name == "ids":
                part = "user_ids"
            else:
                part = "rows"
            parts[part] += array.nbytes
        return parts

    # -- by fingerprint --------------------------------------------------------------------

    def row_of(self, hi: int, lo: int) -> int:
        """The row of one fingerprint, or -1."""
        slot = hi >> (64 - self._dir_bits) if self._dir_bits else 0
        for row in range(int(self._dir[slot]), int(self._dir[slot + 1])):
            if int(self._hi[row]) == hi and int(self._lo[row]) == lo:
                return row
        return -1

    # -- by user ---------------------------------------------------------------------------

    def user_row(self, user_id: str) -> int:
        """The row of ``user_id``, or -1."""
        return self.view.user_row(user_id.encode("ascii"))

    def user_id(self, row: int) -> str:
        """The user id of ``row``."""
        return self._id_bytes(row).decode("ascii")

    def _id_starts(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        block = rows >> _ID_BLOCK_BITS
        first_of_block = (rows & ((1 << _ID_BLOCK_BITS) - 1)) == 0
        previous = self._id_end[np.maximum(rows - 1, 0)].astype(np.int64)
        starts: npt.NDArray[np.int64] = self._id_block[block].astype(np.int64)
        return starts + np.where(first_of_block, 0, previous)

    def _id_bytes(self, row: int) -> bytes:
        block = int(self._id_block[row >> _ID_BLOCK_BITS])
        first_of_block = row & ((1 << _ID_BLOCK_BITS) - 1) == 0
        start = block if first_of_block else block + int(self._id_end[row - 1])
        return self._ids[start : block + int(self._id_end[row])].tobytes()

    # -- a row's record --------------------------------------------------------------------

    def fingerprint(self, row: int) -> bytes:
        """The 16-byte fingerprint of ``row``."""
        return _FINGERPRINT.pack(int(self._hi[row]), int(self._lo[row]))

    def version(self, row: int) -> int:
        """The version of ``row``'s record."""
        return int(self._claim[row] & _VERSION_BITS)

    def discoverable(self, row: int) -> bool:
        """Whether ``row``'s user is discoverable."""
        return bool(self._claim[row] & _DISCOVERABLE)

    def entry(self, row: int) -> bytes:
        """The row's private-mode entry (prefix, then the sealed entry), or empty."""
        position = int(self._entry_of_row[row])
        if position == NO_ENTRY:
            return b""
        for kind in self._classes:
            if position < kind.first + len(kind):
                at = position - kind.first
                sealed: bytes = kind.data[at].tobytes()
                prefix = int(kind.prefixes(np.array([at], dtype=np.int64))[0])
                return prefix.to_bytes(PREFIX_SIZE, "big") + sealed
        raise AssertionError("entry position out of range")

    def entry_positions(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
        """Where the entries of ``rows`` are (NO_ENTRY for rows without one)."""
        positions: npt.NDArray[np.uint32] = self._entry_of_row[rows]
        return positions

    def columns(self, rows: npt.NDArray[np.int64]) -> Columns:
        """The records of ``rows`` as columns (to build the next base from)."""
        starts = self._id_starts(rows)
        blocks = self._id_block[rows >> _ID_BLOCK_BITS].astype(np.int64)
        lengths = self._id_end[rows].astype(np.int64) + blocks - starts
        id_data, id_start = _gather_runs(self._ids, starts, lengths)
        claim = self._claim[rows]
        positions = self._entry_of_row[rows].astype(np.int64)
        sizes = np.zeros(len(rows), dtype=np.int64)
        prefixes = np.zeros(len(rows), dtype=np.uint32)
        members = []
        for kind in self._classes:
            local = positions - kind.first
            mine = np.flatnonzero((local >= 0) & (local < len(kind)))
            sizes[mine] = kind.size
            prefixes[mine] = kind.prefixes(local[mine])
            members.append((kind, mine, local[mine]))
        entry_start = np.cumsum(sizes) - sizes
        entry_data = np.zeros(int(sizes.sum()), dtype=np.uint8)
        for kind, mine, local in members:
            at = (entry_start[mine][:, None] + np.arange(kind.size)).ravel()
            entry_data[at] = np.take(kind.data, local, axis=0).ravel()
        return Columns(
            self._hi[rows],
            self._lo[rows],
            claim & _VERSION_BITS,
            (claim & _DISCOVERABLE) != 0,
            id_data,
            id_start,
            lengths,
            prefixes,
            sizes,
            entry_data,
            entry_start,
        )

    def discoverable_without_entry(self, rows: npt.NDArray[np.bool_]) -> int:
        """Of the rows where ``rows`` is true: discoverable ones without an entry."""
        without = (self._claim & _DISCOVERABLE != 0) & (self._entry_of_row == NO_ENTRY)
        return int(np.count_nonzero(without & rows))

    # -- private mode ----------------------------------------------------------------------
