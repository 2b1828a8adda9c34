"""The in-process registry index: every lookup is answered from here, never from a store.

It is a base (core/index/base.py: the registry as of one moment, immutable, possibly one
file mapped by every process of the host) and this process's overlay (core/index/overlay.py:
the changes since, in mutable arrays). The rule that decides who holds a number is the
overlay's (the newest claim, by (version, user id), holds it; see overlay.py); the base holds
only numbers that nobody contests. To keep the overlay's rule whole, any change that touches
a user or a number first *pulls* the base's record of that user and of that number's holder
into the overlay, and marks their base rows overridden. Then:

- a number with a claim in the overlay is answered by the overlay; any other by the base
  (unless its row is overridden);
- a user known to the overlay (or overridden in the base: erased) by the overlay; any other
  by the base.

A new base is built from the current view (``snapshot``: the base's rows that are not
overridden, and the overlay's uncontested records) and swapped in (``rebase``); the changes
applied since the snapshot was taken are replayed onto a fresh overlay over it. Each change
may carry its position in the change feed, so that a base built elsewhere (another process
of the host) at some position only has the later changes replayed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onnet_server.core import _native
from onnet_server.core._resync_native import TokenStep
from onnet_server.core.index.base import NO_ENTRY, BaseIndex, Columns, build_base
from onnet_server.core.index.overlay import Overlay, Record, halves_of
from onnet_server.core.ports import Matches
from onnet_server.core.wire_answers import decode_buckets

__all__ = ["Change", "RegistryIndex", "Snapshot"]

_NO_ROWS = np.zeros(0, dtype=np.int64)

LookupTables = tuple[
    _native.BaseView,
    npt.NDArray[np.uint8],
    _native.OverlayView,
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]
"""``_native.match``'s and ``_native.discover_answer``'s arguments after the fingerprints."""

Position = tuple[int, int] | None
"""Where a change came from in the feed: (group, sequence number); None for a local write."""


@dataclass(frozen=True)
class Change:
    """One change applied to the index, kept until a base that includes it is swapped in."""

    user_id: str
    fingerprint: bytes
    """Empty for an erasure."""
    version: int
    discoverable: bool
    private_entry: bytes
    position: Position


@dataclass(frozen=True)
class Snapshot:
    """What a new base is built from, taken at one moment.

    Taking it copies only what may change (the overridden flags, the small overlay); the
    heavy part, reading the base's millions of rows, happens in ``build``, which may run in
    another thread: the base it reads never changes.
    """

    base: BaseIndex
    kept: npt.NDArray[np.bool_]
    """Base rows still served (not overridden), copied."""
    overlay: Columns
    contested: list[tuple[str, bytes, int, bool, bytes]]
    """Claims on contested numbers: they stay in the next overlay."""
    changes_before: int
    """How many logged changes the snapshot includes."""
    generation: int
    """Which base it was taken over: another base swapped in since makes it stale."""

    def columns(self) -> Columns:
        """Every uncontested record of the snapshot."""
        rows = np.flatnonzero(self.kept)
        return Columns.concatenate([self.base.columns(rows), self.overlay])

    def build(self, seed: int) -> BaseIndex:
        """The new base (vectorized; seconds at tens of millions of users)."""
        return BaseIndex(build_base(self.columns(), seed), seed, self.contested)


class RegistryIndex:
    """A base and an overlay, read as one registry. Not thread-safe: one event loop."""

    def __init__(self, base: BaseIndex | None = None) -> None:
        """Serve ``base`` (an empty one by default) with an empty overlay."""
        self._base = base or BaseIndex.empty(new_seed())
        self._overlay = Overlay()
        self._overridden = np.zeros(len(self._base), dtype=bool)
        self._overridden_bytes = self._overridden.view(np.uint8)  # as a lookup reads it
        self._left_out: list[int] = []  # entry positions of overridden base rows
        self._left_out_sorted: npt.NDArray[np.uint32] | None = None
        self._base_live = len(self._base)
        self._base_entries_live = self._base.entry_count
        self._changes: list[Change] = []
        self._generation = 0
        self._edits = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def base(self) -> BaseIndex:
        """The base served now."""
        return self._base

    @property
    def overlay_size(self) -> int:
        """Records in the overlay: what a new base would absorb."""
        return len(self._overlay)

    @property
    def changes(self) -> Sequence[Change]:
        """Changes applied since the base, oldest first."""
        return self._changes

    def __len__(self) -> int:
        """Users with a record (holders and shadowed alike)."""
        return self._base_live + len(self._overlay)

    @property
    def nbytes(self) -> int:
        """Bytes held: the base's arrays and the overlay's."""
        return sum(self.memory_breakdown().values())

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes held, by part (rows, tables, user_ids, bucket_entries), base and overlay."""
        parts = self._base.memory_breakdown()
        for name, size in self._overlay.memory_breakdown().items():
            parts[name] += size
        parts["rows"] += self._overridden.nbytes
        return parts

    # -- reading ---------------------------------------------------------------------------

    def match(self, fingerprints: bytes, excluded: frozenset[str] = frozenset()) -> Matches:
        """Positions (ascending) and users of the discoverable holders among ``fingerprints``.

        The users in ``excluded`` are left out. A hidden, excluded or unknown number costs
        the same work: every looked-up row goes through the same masks before any id is read.
        """
        return self._lookup(fingerprints, excluded, discoverable_only=True)

    def holders(self, fingerprints: bytes) -> Matches:
        """Positions (ascending) and users of every holder among ``fingerprints``."""
        return self._lookup(fingerprints, frozenset(), discoverable_only=False)

    def discover_answer(
        self,
        fingerprints: bytes,
        excluded: frozenset[str],
        token: bytes,
        distinct: bool = False,
    ) -> tuple[bytes, int]:
        """``match`` as a serialized DiscoverResponse that carries ``token``; its match count.

        The answer's bytes are written from the index's rows (no Python object per match);
        ``match`` is the same lookup read back into Python objects. ``distinct``: no
        fingerprint comes twice (known to the caller), so none need collapsing.
        """
        return _native.discover_answer(fingerprints, *self._tables(excluded), token, distinct)

    def lookup_job(
        self,
        data: bytes,
        excluded: frozenset[str],
        key: _native.FingerprintKey | None = None,
        distinct: bool = False,
        *,
        step: TokenStep | None = None,
    ) -> _native.LookupJob:
        """``discover_answer`` as a job whose probe may run on another thread (no GIL).

        ``data`` is fingerprints, or with ``key`` packed contact hashes that the job
        fingerprints itself; a token ``step`` runs on the batch's digest. Its answer holds
        only while ``edits`` has not moved since the job was made (the job refuses to
        answer otherwise).
        """
        tables = self._tables(excluded)
        return _native.LookupJob(data, *tables, key, distinct, self._edits, step)

    @property
    def edits(self) -> int:
        """How many changes this index has made: equal counts, the same arrays' contents."""
        return self._edits

    def _lookup(
        self, fingerprints: bytes, excluded: frozenset[str], *, discoverable_only: bool
    ) -> Matches:
        indexes, users = _native.match(fingerprints, *self._tables(excluded), discoverable_only)
        return Matches(indexes, users)

    def _tables(self, excluded: frozenset[str]) -> LookupTables:
        """What a lookup reads, the rows of the ``excluded`` users included.

        The base, its overridden rows, the overlay, then the excluded users' rows in the
        overlay and in the base (each ascending).
        """
        if excluded:
            excluded_mine = np.sort(self._overlay.rows_of(excluded).astype(np.int64))
            excluded_theirs = np.sort(self._base_rows_of(excluded))
        else:
            excluded_mine = excluded_theirs = _NO_ROWS
        return (
            self._base.view,
            self._overridden_bytes,
            self._overlay.view(),
            excluded_mine,
            excluded_theirs,
        )

    def _base_rows_of(self, users: frozenset[str]) -> npt.NDArray[np.int64]:
        rows = (self._base.user_row(user) for user in users)
        return np.array([row for row in rows if row >= 0 and not self._overridden[row]], np.int64)

    def holder_claim(self, fingerprint: bytes) -> tuple[str, int] | None:
        """(user, version) of the claim that holds ``fingerprint`` now, if anyone holds it."""
        claim = self._overlay.holder_claim(fingerprint)
        if claim is not None:
            return claim
        row = self._base_row_of_number(fingerprint)
        return (self._base.user_id(row), self._base.version(row)) if row >= 0 else None

    def record(self, user_id: str) -> Record | None:
        """The user's current record, if any."""
        record = self._overlay.record(user_id)
        if record is not None:
            return record
        row = self._base_row_of_user(user_id)
        if row < 0:
            return None
        base = self._base
        return Record(base.fingerprint(row), base.version(row), base.discoverable(row))

    def shadowed_claims(self) -> list[tuple[str, bytes, int]]:
        """(user, fingerprint, holder's version) for every claim that lost its number."""
        return self._overlay.shadowed_claims()

    def shadowed_of(self, fingerprint: bytes) -> list[tuple[str, int, str]]:
        """(user, holder's version, holder) for each claim on ``fingerprint`` that lost it."""
        return self._overlay.shadowed_of(fingerprint)

    def _base_row_of_user(self, user_id: str) -> int:
        row = self._base.user_row(user_id)
        return row if row >= 0 and not self._overridden[row] else -1

    def _base_row_of_number(self, fingerprint: bytes) -> int:
        hi, lo = halves_of(fingerprint)
        row = self._base.row_of(hi, lo)
        return row if row >= 0 and not self._overridden[row] else -1

    # -- private mode ----------------------------------------------------------------------

    def bucket_entry_count(self) -> int:
        """Entries that buckets serve: discoverable users that have one (lost claims aside)."""
        return self._base_entries_live + self._overlay.bucket_entry_count()

    def discoverable_without_entry(self) -> int:
        """Discoverable users with no bucket entry (registered before private mode)."""
        base = self._base.discoverable_without_entry(~self._overridden)
        return base + self._overlay.discoverable_without_entry()

    def bucket_answer(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> bytes:
        """Private mode: every entry of the asked ``bits``-bit buckets, less ``hidden`` users'.

        The answer is a FetchBucketsResponse in its wire form: one Bucket per distinct asked
        bucket, ascending. Only discoverable holders have an entry served; a bucket never
        reveals a hidden user or a lost claim. The work grows with the buckets asked and
        their entries, and no Python object is made per entry.
        """
        if not 0 <= bits <= 32:
            raise ValueError("bits must be between 0 and 32")
        wanted = np.unique(np.array(buckets, dtype=np.int64))
        wanted = wanted[(wanted >= 0) & (wanted >> bits == 0)]
        left_out = self._left_out_positions()
        hidden_rows = self._base_rows_of(hidden)
        if len(hidden_rows):
            extra = self._base.entry_positions(hidden_rows)
            left_out = np.union1d(left_out, extra[extra != NO_ENTRY]).astype(np.uint32)
        classes, newest = self._overlay.bucket_parts(wanted, bits, hidden)
        return _native.encode_buckets(
            wanted, bits, [*self._base.entry_classes, *classes], left_out, newest
        )

    def bucket_entries(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> dict[int, list[bytes]]:
        """``bucket_answer`` read back into Python objects (for tools and tests)."""
        return decode_buckets(self.bucket_answer(buckets, bits, hidden))

    def _left_out_positions(self) -> npt.NDArray[np.uint32]:
        if self._left_out_sorted is None:
            self._left_out_sorted = np.unique(np.array(self._left_out, dtype=np.uint32))
        return self._left_out_sorted

    # -- changing --------------------------------------------------------------------------

    def put(
        self,
        user_id: str,
        fingerprint: bytes,
        version: int,
        discoverable: bool,
        private_entry: bytes = b"",
        *,
        position: Position = None,
    ) -> str | None:
        """Apply a registration; return the user it took the number from, if any.

        Ignored (returns None) when the user already has a record of this version or newer.
        """
        self._edits += 1
        self._changes.append(
            Change(user_id, fingerprint, version, discoverable, private_entry, position)
        )
        self._pull_user(user_id)
        self._pull_number(fingerprint)
        return self._overlay.put(user_id, fingerprint, version, discoverable, private_entry)

    def delete(self, user_id: str, version: int, *, position: Position = None) -> bool:
        """Apply an erasure; False when there was no record older than ``version``."""
        self._edits += 1
        self._changes.append(Change(user_id, b"", version, False, b"", position))
        self._pull_user(user_id)
        return self._overlay.delete(user_id, version)

    def _pull_user(self, user_id: str) -> None:
        if not self._overlay.knows(user_id):
            row = self._base_row_of_user(user_id)
            if row >= 0:
                self._pull(row)

    def _pull_number(self, fingerprint: bytes) -> None:
        row = self._base_row_of_number(fingerprint)
        if row >= 0:
            self._pull(row)

    def _pull(self, row: int) -> None:
        """Move the base's record of ``row`` into the overlay; the row is overridden."""
        base = self._base
        self._overridden[row] = True
        self._base_live -= 1
        position = int(base.entry_positions(np.array([row]))[0])
        if position != NO_ENTRY:
            self._left_out.append(position)
            self._left_out_sorted = None
            self._base_entries_live -= 1
        self._overlay.put(
            base.user_id(row),
            base.fingerprint(row),
            base.version(row),
            base.discoverable(row),
            base.entry(row),
        )

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
        self.load_columns(
            Columns.of_records(user_ids, fingerprints, versions, discoverable, private_entries)
        )

    def load_columns(self, columns: Columns) -> None:
        """``load`` of records already in columns (a snapshot read in chunks)."""
        if len(self):
            raise ValueError("load() fills an empty index")
        order = np.lexsort((columns.lo, columns.hi))
        same = (columns.hi[order][1:] == columns.hi[order][:-1]) & (
            columns.lo[order][1:] == columns.lo[order][:-1]
        )
        contested = np.zeros(len(columns), dtype=bool)
        contested[order[1:][same]] = True
        contested[order[:-1][same]] = True
        seed = self._base.seed
        uncontested = columns.take(np.flatnonzero(~contested))
        claims = [columns.record(row) for row in np.flatnonzero(contested).tolist()]
        # The contested claims go with the base (a file written from it carries them) and
        # into the overlay, where the claim rule decides each number.
        self.rebase(BaseIndex(build_base(uncontested, seed), seed, claims), [])

    # -- a new base ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current view, to build the next base from (copies: the index may change)."""
        mine, contested = self._overlay.export()
        kept = ~self._overridden
        return Snapshot(self._base, kept, mine, contested, len(self._changes), self._generation)

    def is_current(self, snapshot: Snapshot) -> bool:
        """Whether ``snapshot`` was taken over the base served now (else its build is moot)."""
        return snapshot.generation == self._generation

    def rebase(self, base: BaseIndex, changes: Sequence[Change]) -> None:
        """Serve ``base`` from now on, and ``changes`` (those it does not include) again.

        The fresh overlay starts with the base's contested claims.
        """
        self._install(base)
        for user_id, fingerprint, version, discoverable, entry in base.contested:
            self._overlay.put(user_id, fingerprint, version, discoverable, entry)
        self._replay(list(changes))

    def changes_after(self, snapshot: Snapshot) -> list[Change]:
        """The changes applied since ``snapshot`` (of this index) was taken."""
        if not self.is_current(snapshot):
            raise ValueError("the snapshot is stale: another base was swapped in since")
        return self._changes[snapshot.changes_before :]

    def changes_since(self, positions: Sequence[int]) -> list[Change]:
        """The changes a base built at feed ``positions`` does not include.

        ``positions`` is the last sequence number per group. Local writes are kept too:
        replaying one the base already has is harmless.
        """
        return [
            change
            for change in self._changes
            if change.position is None or change.position[1] > positions[change.position[0]]
        ]

    def _install(self, base: BaseIndex) -> None:
        self._edits += 1
        self._base = base
        self._overlay = Overlay()
        self._overridden = np.zeros(len(base), dtype=bool)
        self._overridden_bytes = self._overridden.view(np.uint8)
        self._left_out = []
        self._left_out_sorted = None
        self._base_live = len(base)
        self._base_entries_live = base.entry_count
        self._changes = []
        self._generation += 1

    def _replay(self, changes: list[Change]) -> None:
        for change in changes:
            if change.fingerprint:
                self.put(
                    change.user_id,
                    change.fingerprint,
                    change.version,
                    change.discoverable,
                    change.private_entry,
                    position=change.position,
                )
            else:
                self.delete(change.user_id, change.version, position=change.position)


def new_seed() -> int:
    """A random seed for a base's users table (nobody outside can steer ids into a chain)."""
    return int.from_bytes(os.urandom(8), "little")
