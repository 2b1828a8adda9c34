"""The compiled loops (core/index/_native.pyx) against plain-Python statements of them.

The hash must be FNV-1a from the seed then mixed, bit for bit (a base file built by one
process is searched by another); the lookup must find exactly the holder the definition
says: the overlay's claim if it has one, else the base's row unless overridden, with the
discoverable filter applied to whichever answered.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.index import _native
from onnet_server.core.index.base import _directory
from onnet_server.core.index.hashing import user_hash, user_hashes
from onnet_server.core.index.row_slots import RowSlots

MASK64 = (1 << 64) - 1


def reference_hash(data: bytes, seed: int) -> int:
    h = seed
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    return h ^ (h >> 33)


@given(st.binary(max_size=40), st.integers(0, MASK64))
def test_user_hash_is_seeded_fnv1a_then_mixed(data: bytes, seed: int) -> None:
    assert _native.user_hash(data, seed) == reference_hash(data, seed)


@given(st.lists(st.text("abcdefghij0123456789-", max_size=30), max_size=20), st.integers(0, MASK64))
def test_user_hashes_hash_each_id_of_an_arena(ids: list[str], seed: int) -> None:
    arena = np.frombuffer(b"xx" + "".join(ids).encode() + b"yy", dtype=np.uint8)
    lengths = np.array([len(i) for i in ids], dtype=np.int64)
    starts = 2 + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    hashes = user_hashes(arena, starts[: len(ids)], lengths, seed)
    assert hashes.tolist() == [reference_hash(i.encode(), seed) for i in ids]
    assert [user_hash(i, seed) for i in ids] == hashes.tolist()


# -- lookup ------------------------------------------------------------------------------


class World:
    """A base and an overlay in the arrays ``_native.lookup`` reads, and the truth of them."""

    def __init__(self, rng: random.Random, base_size: int, overlay_size: int) -> None:
        # Few distinct first halves, so that ties on the first half (and on the overlay's
        # tag) happen, and both probes must read on past them.
        firsts = [rng.getrandbits(64) for _ in range(max(1, (base_size + overlay_size) // 3))]
        pairs = {(rng.choice(firsts), rng.getrandbits(64)) for _ in range(base_size)}
        self.base = sorted(pairs)
        self.base_hi = np.array([p[0] for p in self.base], dtype=np.uint64)
        self.base_lo = np.array([p[1] for p in self.base], dtype=np.uint64)
        self.directory = _directory(self.base_hi)
        self.bits = (len(self.directory) - 1).bit_length() - 1
        self.overridden = np.array([rng.random() < 0.3 for _ in self.base], dtype=np.uint8)
        self.claim = np.array(
            [(rng.getrandbits(1) << 63) | rng.getrandbits(20) for _ in self.base], np.uint64
        )
        # The overlay holds some of the base's numbers (overriding them) and new ones.
        overlay = [p for p in self.base if rng.random() < 0.3]
        overlay += [(rng.choice(firsts), rng.getrandbits(64)) for _ in range(overlay_size)]
        overlay = list(dict.fromkeys(overlay))
        self.overlay = overlay
        self.overlay_hi = np.array([p[0] for p in overlay] + [0] * 5, dtype=np.uint64)
        self.overlay_lo = np.array([p[1] for p in overlay] + [0] * 5, dtype=np.uint64)
        self.discoverable = np.array(
            [rng.random() < 0.6 for _ in overlay] + [False] * 5, dtype=np.uint8
        )
        self.table = RowSlots(tagged=True)
        for row, (hi, _) in enumerate(overlay):
            self.table.place(hi, row)
        # A few tombstones: chains must be read on past them.
        self.live = set(range(len(overlay)))
        for row in rng.sample(range(len(overlay)), len(overlay) // 5):
            slot = next(s for s, r in self.table.probe(overlay[row][0]) if r == row)
            self.table.remove_slot(slot)
            self.live.discard(row)

    def lookup(
        self, queries: list[tuple[int, int]], discoverable_only: bool
    ) -> tuple[list[int], list[int], list[bool]]:
        hi = np.array([q[0] for q in queries], dtype=np.uint64)
        lo = np.array([q[1] for q in queries], dtype=np.uint64)
        positions, rows, in_overlay = _native.lookup(
            hi,
            lo,
            self.base_hi,
            self.base_lo,
            self.directory,
            self.bits,
            self.overridden,
            self.claim,
            self.table.slots,
            self.table.mask,
            self.table.home_mask,
            self.overlay_hi,
            self.overlay_lo,
            self.discoverable,
            discoverable_only,
        )
        return positions.tolist(), rows.tolist(), in_overlay.tolist()

    def expected(
        self, queries: list[tuple[int, int]], discoverable_only: bool
    ) -> tuple[list[int], list[int], list[bool]]:
        positions: list[int] = []
        rows: list[int] = []
        in_overlay: list[bool] = []
        for position, query in enumerate(queries):
            mine = [r for r in self.live if self.overlay[r] == query]
            if mine:
                row, kept, from_overlay = mine[0], bool(self.discoverable[mine[0]]), True
            elif query in self.base and not self.overridden[self.base.index(query)]:
                row = self.base.index(query)
                kept, from_overlay = bool(int(self.claim[row]) >> 63), False
            else:
                continue
            if kept or not discoverable_only:
                positions.append(position)
                rows.append(row)
                in_overlay.append(from_overlay)
        return positions, rows, in_overlay


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 300), st.integers(0, 300), st.booleans())
def test_lookup_finds_the_holder_the_definition_names(
    seed: int, base_size: int, overlay_size: int, discoverable_only: bool
) -> None:
    rng = random.Random(seed)
    world = World(rng, base_size, overlay_size)
    known = world.base + world.overlay
    queries = [rng.choice(known) for _ in range(len(known) // 2)] if known else []
    # Unknown numbers, some sharing a first half with a known one.
    queries += [(rng.getrandbits(64), rng.getrandbits(64)) for _ in range(20)]
    queries += [(q[0], rng.getrandbits(64)) for q in known[:20]]
    rng.shuffle(queries)
    assert world.lookup(queries, discoverable_only) == world.expected(queries, discoverable_only)


def test_lookup_of_nothing_is_empty() -> None:
    world = World(random.Random(1), 50, 50)
    assert world.lookup([], True) == ([], [], [])


def test_arrays_of_the_wrong_type_are_refused_not_misread() -> None:
    world = World(random.Random(2), 10, 10)
    signed: Any = world.base_hi.astype(np.int64)
    with pytest.raises(ValueError, match=r"(?i)dtype|mismatch"):
        _native.lookup(
            signed,
            signed,
            world.base_hi,
            world.base_lo,
            world.directory,
            world.bits,
            world.overridden,
            world.claim,
            world.table.slots,
            world.table.mask,
            world.table.home_mask,
            world.overlay_hi,
            world.overlay_lo,
            world.discoverable,
            True,
        )
