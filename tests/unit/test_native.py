"""The compiled loops (core/_native.pyx) against plain-Python statements of them.

The hash must be FNV-1a from the seed then mixed, bit for bit (a base file built by one
process is searched by another); the lookup must find exactly the holder the definition
says: the overlay's claim if it has one, else the base's row unless overridden, with the
discoverable filter applied to whichever answered.
"""

from __future__ import annotations

import itertools
import random
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet.v1 import discovery_pb2
from onnet_server.core import _native
from onnet_server.core.block_cipher import BlockCipher
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.index import RegistryIndex
from onnet_server.core.index.base import BaseIndex, Columns, _EntryClass, _low_bits, build_base
from onnet_server.core.index.combined import LookupTables
from onnet_server.core.index.hashing import user_hash, user_hashes
from onnet_server.core.index.row_slots import RowSlots
from onnet_server.core.wire_answers import decode_buckets
from tests.unit.job_runs import run_job

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


# -- match -------------------------------------------------------------------------------


class World:
    """A base and an overlay in the arrays ``_native.match`` reads, and the truth of them."""

    def __init__(self, rng: random.Random, base_size: int, overlay_size: int) -> None:
        # Few distinct first halves, so that ties on the first half (and on the overlay's
        # tag) happen, and both probes must read on past them.
        firsts = [rng.getrandbits(64) for _ in range(max(1, (base_size + overlay_size) // 3))]
        pairs = {(rng.choice(firsts), rng.getrandbits(64)) for _ in range(base_size)}
        numbers = sorted(pairs)
        names = [f"base-{i}" * rng.randint(1, 3) for i in range(len(numbers))]
        discoverable = [rng.random() < 0.6 for _ in numbers]
        columns = Columns.of_records(
            names,
            b"".join(struct.pack("<QQ", *number) for number in numbers),
            np.array([rng.getrandbits(20) for _ in numbers], dtype=np.uint64),
            np.array(discoverable, dtype=bool),
        )
        self.base = BaseIndex(build_base(columns, 7), 7)
        # build_base sorts by (first half, second half), as ``numbers`` already is.
        self.base_rows = {
            number: (name, flag)
            for number, name, flag in zip(numbers, names, discoverable, strict=True)
        }
        self.base_order = numbers
        self.overridden = np.array([rng.random() < 0.3 for _ in numbers], dtype=np.uint8)
        # The overlay holds some of the base's numbers (overriding them) and new ones.
        overlay = [p for p in numbers if rng.random() < 0.3]
        overlay += [(rng.choice(firsts), rng.getrandbits(64)) for _ in range(overlay_size)]
        overlay = list(dict.fromkeys(overlay))
        self.overlay = overlay
        self.overlay_names = [f"mine-{i}" for i in range(len(overlay))]
        self.arena = bytearray("".join(self.overlay_names).encode())
        lengths = [len(name) for name in self.overlay_names]
        self.lengths = np.array(lengths + [0] * 5, dtype=np.uint8)
        self.offsets = np.array(
            list(itertools.accumulate([0, *lengths]))[:-1] + [0] * 5, dtype=np.uint32
        )
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
        # Excluded users (a caller's blockers): some of each side's rows.
        self.excluded_mine = sorted(rng.sample(range(len(overlay)), len(overlay) // 6))
        self.excluded_base = sorted(rng.sample(range(len(numbers)), len(numbers) // 6))

    def match(
        self, queries: list[tuple[int, int]], discoverable_only: bool
    ) -> tuple[list[int], list[str]]:
        positions, users = self.raw_match(
            b"".join(struct.pack("<QQ", *query) for query in queries),
            self.table.slots.view(np.int64),
            excluded=True,
            discoverable_only=discoverable_only,
        )
        return positions.tolist(), users

    def raw_match(
        self,
        fingerprints: bytes,
        slots: Any,
        *,
        excluded: bool = False,
        discoverable_only: bool = True,
    ) -> tuple[Any, list[str]]:
        """``_native.match`` over this world, with the given fingerprints and slots."""
        return _native.match(fingerprints, *self.tables(slots, excluded), discoverable_only)

    def tables(self, slots: Any, excluded: bool) -> LookupTables:
        """What a lookup reads (the excluded rows only if ``excluded``), with ``slots``."""
        return (
            self.base.view,
            self.overridden,
            self.overlay_view(slots),
            np.array(self.excluded_mine if excluded else [], dtype=np.int64),
            np.array(self.excluded_base if excluded else [], dtype=np.int64),
        )

    def overlay_view(self, slots: Any) -> _native.OverlayView:
        """The overlay's arrays as a lookup reads them, with the given slots."""
        return _native.OverlayView(
            slots,
            self.table.mask,
            self.table.home_mask,
            self.overlay_hi,
            self.overlay_lo,
            self.discoverable,
            self.arena,
            self.offsets,
            self.lengths,
        )

    def expected(
        self, queries: list[tuple[int, int]], discoverable_only: bool
    ) -> tuple[list[int], list[str]]:
        positions: list[int] = []
        users: list[str] = []
        for position, query in enumerate(queries):
            mine = [r for r in self.live if self.overlay[r] == query]
            if mine:
                row = mine[0]
                user, shown = self.overlay_names[row], bool(self.discoverable[row])
                excluded = row in self.excluded_mine
            elif query in self.base_rows and not self.overridden[self.base_order.index(query)]:
                row = self.base_order.index(query)
                user, shown = self.base_rows[query]
                excluded = row in self.excluded_base
            else:
                continue
            if (shown or not discoverable_only) and not excluded:
                positions.append(position)
                users.append(user)
        return positions, users


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 300), st.integers(0, 300), st.booleans())
def test_match_finds_the_holder_the_definition_names(
    seed: int, base_size: int, overlay_size: int, discoverable_only: bool
) -> None:
    rng = random.Random(seed)
    world = World(rng, base_size, overlay_size)
    known = world.base_order + world.overlay
    queries = [rng.choice(known) for _ in range(len(known) // 2)] if known else []
    # Unknown numbers, some sharing a first half with a known one.
    queries += [(rng.getrandbits(64), rng.getrandbits(64)) for _ in range(20)]
    queries += [(q[0], rng.getrandbits(64)) for q in known[:20]]
    rng.shuffle(queries)
    assert world.match(queries, discoverable_only) == world.expected(queries, discoverable_only)


@pytest.mark.parametrize("chain", [7, 8, 9, 30])
def test_overlay_chains_are_read_across_windows_and_around_the_table(chain: int) -> None:
    """The compiled probe reads a chain a window (8 slots) at a time: a chain that fills its
    window, runs on into the next, wraps from the table's last window to its first, or has
    tombstones and tag ties on the way must give the answers a slot-by-slot walk gives.
    Some holders are hidden and some excluded: the marks read must be those of the row
    found, also where it is not the first with its tag or not in its home window."""
    rng = random.Random(chain)
    world = World(rng, 0, 0)
    table = RowSlots(tagged=True)
    first = table.home_mask  # the last window: a long chain wraps to slot 0
    numbers = [(first, rng.getrandbits(64)) for _ in range(chain)]  # one tag, one home
    numbers += [(first | (1 << 40), rng.getrandbits(64)) for _ in range(3)]  # another tag
    world.overlay = numbers
    world.overlay_names = [f"chain-{i}" for i in range(len(numbers))]
    world.arena = bytearray("".join(world.overlay_names).encode())
    lengths = [len(name) for name in world.overlay_names]
    world.lengths = np.array(lengths, dtype=np.uint8)
    world.offsets = np.array(list(itertools.accumulate([0, *lengths]))[:-1], dtype=np.uint32)
    world.overlay_hi = np.array([n[0] for n in numbers], dtype=np.uint64)
    world.overlay_lo = np.array([n[1] for n in numbers], dtype=np.uint64)
    world.discoverable = np.array([row % 3 != 1 for row in range(len(numbers))], np.uint8)
    for row, (hi, _) in enumerate(numbers):
        table.place(hi, row)
    world.table = table
    assert table.slots[0] >= 0 or chain + 3 <= 8, "the chain should wrap around"
    # Tombstones early in the chain: the rows behind them stay reachable.
    world.live = set(range(len(numbers)))
    for row in (1, chain // 2):
        slot = next(s for s, r in table.probe(numbers[row][0]) if r == row)
        table.remove_slot(slot)
        world.live.discard(row)
    world.excluded_mine, world.excluded_base = [row for row in world.live if row % 3 == 2], []
    queries = numbers + [(first, rng.getrandbits(64)) for _ in range(5)]
    rng.shuffle(queries)
    everyone = world.expected(queries, False)
    assert len(everyone[0]) == len([row for row in world.live if row % 3 != 2])
    assert world.match(queries, False) == everyone
    shown = world.expected(queries, True)
    assert len(shown[0]) == len([row for row in world.live if row % 3 == 0])
    assert world.match(queries, True) == shown


def test_match_of_nothing_is_empty() -> None:
    world = World(random.Random(1), 50, 50)
    assert world.match([], True) == ([], [])


@given(st.integers(0, 2**32))
@settings(max_examples=20, deadline=None)
def test_a_base_finds_each_of_its_users_and_nobody_else(seed: int) -> None:
    world = World(random.Random(seed), 200, 0)
    for number, (name, _) in world.base_rows.items():
        assert world.base.view.user_row(name.encode()) == world.base_order.index(number)
    assert world.base.view.user_row(b"nobody") == -1
    assert world.base.view.user_row(b"") == -1
    rows = np.arange(len(world.base_order), dtype=np.int64)
    assert world.base.view.user_ids(rows) == [world.base_rows[n][0] for n in world.base_order]


def test_a_ragged_batch_of_fingerprints_is_refused() -> None:
    world = World(random.Random(2), 10, 10)
    with pytest.raises(ValueError, match="16 bytes"):
        world.raw_match(bytes(17), world.table.slots.view(np.int64))


def test_arrays_of_the_wrong_type_are_refused_not_misread() -> None:
    world = World(random.Random(2), 10, 10)
    with pytest.raises(ValueError, match=r"(?i)dtype|mismatch"):
        world.raw_match(bytes(16), world.table.slots.view(np.uint64))


# -- the bytes around a lookup ----------------------------------------------------------


@given(st.binary(max_size=20).map(lambda b: b * 32))
def test_split_halves_takes_each_hash_apart(packed: bytes) -> None:
    first, second = _native.split_halves(packed)
    hashes = [packed[i : i + 32] for i in range(0, len(packed), 32)]
    assert first == b"".join(h[:16] for h in hashes)
    assert second == b"".join(h[16:] for h in hashes)


def test_split_halves_refuses_a_partial_hash() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        _native.split_halves(bytes(33))


@given(
    st.binary(max_size=100).flatmap(
        lambda a: st.tuples(st.just(a), st.binary(min_size=len(a), max_size=len(a)))
    )
)
def test_xor_bytes_is_bytewise(pair: tuple[bytes, bytes]) -> None:
    left, right = pair
    assert _native.xor_bytes(left, right) == bytes(a ^ b for a, b in zip(left, right, strict=True))


@given(st.lists(st.tuples(st.integers(0, MASK64), st.integers(0, MASK64)), max_size=50))
def test_lane_sums_add_each_column_modulo_2_64(rows: list[tuple[int, int]]) -> None:
    values = np.array(rows, dtype=np.uint64).reshape(-1, 2)
    expected = (sum(r[0] for r in rows) & MASK64, sum(r[1] for r in rows) & MASK64)
    assert _native.lane_sums(values) == expected


@st.composite
def repeated_blocks(draw: st.DrawFn) -> list[bytes]:
    """Up to 60 16-byte blocks drawn from a pool of 7, so that repeats are common."""
    pool = draw(st.binary(min_size=16 * 7, max_size=16 * 7))
    picks = draw(st.lists(st.integers(0, 6), max_size=60))
    return [pool[16 * pick : 16 * pick + 16] for pick in picks]


@given(repeated_blocks())
def test_first_rows_are_where_each_distinct_row_is_first_seen(blocks: list[bytes]) -> None:
    seen = list(dict.fromkeys(blocks))
    values = np.frombuffer(b"".join(blocks), dtype=np.uint64).reshape(-1, 2)
    assert _native.first_rows(values).tolist() == [blocks.index(b) for b in seen]


@given(repeated_blocks())
def test_distinct_sums_count_and_sum_each_distinct_block_once(blocks: list[bytes]) -> None:
    lanes = [struct.unpack("<QQ", block) for block in dict.fromkeys(blocks)]
    expected = (
        len(lanes),
        sum(lane[0] for lane in lanes) & MASK64,
        sum(lane[1] for lane in lanes) & MASK64,
    )
    assert _native.distinct_sums(b"".join(blocks)) == expected


def test_distinct_sums_take_whole_blocks_only() -> None:
    with pytest.raises(ValueError, match="whole 16-byte blocks"):
        _native.distinct_sums(bytes(17))


# -- Discover's answer in wire form -----------------------------------------------------


def asked_with_repeats(rng: random.Random, world: World) -> list[tuple[int, int]]:
    """A batch of ``world``'s numbers, repeats included (each position of a kept number is
    answered), and ten unknown ones, shuffled."""
    known = world.base_order + world.overlay
    queries = [rng.choice(known) for _ in range(len(known))] if known else []
    queries += [(rng.getrandbits(64), rng.getrandbits(64)) for _ in range(10)]
    rng.shuffle(queries)
    return queries


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 200), st.integers(0, 200), st.binary(max_size=60))
def test_discover_answer_is_the_protobuf_serialization_of_the_match(
    seed: int, base_size: int, overlay_size: int, token: bytes
) -> None:
    rng = random.Random(seed)
    world = World(rng, base_size, overlay_size)
    queries = asked_with_repeats(rng, world)
    packed = b"".join(struct.pack("<QQ", *query) for query in queries)
    tables = world.tables(world.table.slots.view(np.int64), excluded=True)
    answer, found = _native.discover_answer(packed, *tables, token)
    positions, users = world.expected(queries, True)
    expected = discovery_pb2.DiscoverResponse(
        matched_indexes=positions, user_ids=users, token=token
    )
    assert answer == expected.SerializeToString()
    assert found == len(positions)
    # Told the numbers are distinct, the lookup skips collapsing duplicates, and answers
    # the same, repeats or not: a repeated number is looked up once per position.
    assert _native.discover_answer(packed, *tables, token, True) == (answer, found)


def test_a_number_asked_many_times_is_answered_at_every_position() -> None:
    world = World(random.Random(3), 50, 50)
    number = next(n for n in world.base_order if world.expected([n], True)[0])
    copies = 10_000
    tables = world.tables(world.table.slots.view(np.int64), excluded=False)
    answer, _ = _native.discover_answer(struct.pack("<QQ", *number) * copies, *tables, b"")
    message = discovery_pb2.DiscoverResponse.FromString(answer)
    assert list(message.matched_indexes) == list(range(copies))
    assert set(message.user_ids) == {world.expected([number], True)[1][0]}
    uncollapsed = struct.pack("<QQ", *number) * copies
    assert _native.discover_answer(uncollapsed, *tables, b"", True)[0] == answer


# -- A lookup job that makes its batch's fingerprints -----------------------------------


@pytest.mark.parametrize("count", [0, 1, 7, 1000])
@pytest.mark.parametrize("on_a_thread", [False, True])
def test_a_job_makes_the_fingerprints_the_fingerprinter_makes(
    count: int, on_a_thread: bool
) -> None:
    rng = random.Random(count)
    pepper = rng.randbytes(32)
    hashes = rng.randbytes(32 * count)
    reference = Fingerprinter(pepper)  # cryptography's AES-256
    job = RegistryIndex().lookup_job(hashes, frozenset(), reference.lookup_key)
    run_job(job, on_a_thread=on_a_thread)
    assert job.fingerprints == reference.fingerprints(hashes)


def test_a_fingerprint_key_refuses_what_is_not_a_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _native.FingerprintKey(bytes(31))


def hashes_of(fingerprints: list[bytes], pepper: bytes, rng: random.Random) -> bytes:
    """Contact hashes whose fingerprints under ``pepper`` are ``fingerprints``.

    AES is a permutation: a fingerprint decrypted is the first half of a hash that has it.
    """
    first_halves = BlockCipher(pepper).decrypt(b"".join(fingerprints))
    return b"".join(
        first_halves[16 * i : 16 * i + 16] + rng.randbytes(16) for i in range(len(fingerprints))
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 100), st.integers(0, 100), st.booleans())
def test_a_job_given_hashes_answers_as_one_given_their_fingerprints(
    seed: int, base_size: int, overlay_size: int, on_a_thread: bool
) -> None:
    rng = random.Random(seed)
    world = World(rng, base_size, overlay_size)
    fingerprints = [struct.pack("<QQ", *query) for query in asked_with_repeats(rng, world)]
    packed = b"".join(fingerprints)
    pepper = rng.randbytes(32)
    tables = world.tables(world.table.slots.view(np.int64), excluded=True)
    job = _native.LookupJob(
        hashes_of(fingerprints, pepper, rng), *tables, _native.FingerprintKey(pepper)
    )
    assert job.digest() is None  # not run yet
    run_job(job, on_a_thread=on_a_thread)
    assert job.fingerprints == packed
    # The batch as a set, for the re-sync token: each distinct fingerprint once.
    assert job.digest() == _native.distinct_sums(packed)
    token = rng.randbytes(45)
    assert job.answer(0, token) == _native.discover_answer(packed, *tables, token)


def test_a_job_takes_whole_hashes_only() -> None:
    world = World(random.Random(1), 5, 5)
    tables = world.tables(world.table.slots.view(np.int64), excluded=False)
    with pytest.raises(ValueError, match="32 bytes each"):
        _native.LookupJob(bytes(48), *tables, _native.FingerprintKey(bytes(32)))


def test_first_halves_are_split_halves_first_part() -> None:
    packed = bytes(range(256)) * 4
    assert _native.first_halves(packed) == _native.split_halves(packed)[0]
    with pytest.raises(ValueError, match="whole 32-byte hashes"):
        _native.first_halves(packed[:-1])
    with pytest.raises(ValueError, match="whole 32-byte hashes"):
        _native.split_halves(packed[:-1])


# -- FetchBuckets' answer in wire form --------------------------------------------------


def entry_class_of(prefixes: list[int], entries: list[bytes], size: int, first: int) -> Any:
    """The native size class of sorted ``prefixes``: a directory of their top bits, and the
    next 16 bits of each (core/index/base.py's layout), with a directory of random size."""
    bits = random.Random(len(prefixes)).randint(8, 20)
    tops = np.array(prefixes, dtype=np.uint64) >> np.uint64(32 - bits)
    directory = np.searchsorted(tops, np.arange(2**bits + 1, dtype=np.uint64)).astype(np.uint32)
    shift = 16 - bits  # the 16 bits after the top ``bits``, as the low bits of each prefix
    kept = [(p >> shift if shift >= 0 else p << -shift) & 0xFFFF for p in prefixes]
    low = np.array(kept, dtype=np.uint16)
    data = np.frombuffer(b"".join(entries), dtype=np.uint8).reshape(-1, size)
    return _native.entry_class(directory, low, data, size, first)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 24), st.data())
def test_encode_buckets_writes_what_protobuf_would(bits: int, data: st.DataObject) -> None:
    shift = 32 - bits
    wanted = sorted(set(data.draw(st.lists(st.integers(0, 2**bits - 1), max_size=12))))
    # Prefixes mostly inside the wanted buckets (and in their neighbours), some anywhere.
    near = [b + d for b in wanted for d in (-1, 0, 1) if 0 <= b + d < 2**bits] or [0]
    prefix = st.one_of(
        st.builds(
            lambda bucket, low: (bucket << shift) | (low & ((1 << shift) - 1)),
            st.sampled_from(near),
            st.integers(0, 2**32 - 1),
        ),
        st.integers(0, 2**32 - 1),
    )
    classes = []
    for size in data.draw(st.lists(st.integers(1, 140), unique=True, max_size=3)):
        prefixes = sorted(data.draw(st.lists(prefix, max_size=40)))
        classes.append(
            (prefixes, [data.draw(st.binary(min_size=size, max_size=size)) for _ in prefixes], size)
        )
    total = sum(len(prefixes) for prefixes, _, _ in classes)
    left_out = sorted(set(data.draw(st.lists(st.integers(0, max(0, total - 1)), max_size=15))))
    some = st.lists(st.sampled_from(wanted), max_size=5) if wanted else st.just([])
    extra = {b: data.draw(st.lists(st.binary(max_size=200), max_size=3)) for b in data.draw(some)}
    native_classes, first = [], 0
    expected: dict[int, list[bytes]] = {bucket: [] for bucket in wanted}
    for prefixes, entries, size in classes:
        native_classes.append(entry_class_of(prefixes, entries, size, first))
        for position, (at, entry) in enumerate(zip(prefixes, entries, strict=True)):
            if at >> shift in expected and first + position not in left_out:
                expected[at >> shift].append(entry)
        first += len(prefixes)
    for bucket in wanted:
        expected[bucket] += extra.get(bucket, [])
    answer = _native.encode_buckets(
        np.array(wanted, dtype=np.int64),
        bits,
        native_classes,
        np.array(left_out, dtype=np.uint32),
        extra,
    )
    message = discovery_pb2.FetchBucketsResponse(
        buckets=[discovery_pb2.Bucket(bucket=b, entries=e) for b, e in expected.items()]
    )
    assert answer == message.SerializeToString()
    assert decode_buckets(answer) == expected


def test_encode_buckets_refuses_a_bucket_beyond_its_bits() -> None:
    with pytest.raises(ValueError, match="more bits"):
        _native.encode_buckets(np.array([4], dtype=np.int64), 2, [], np.zeros(0, np.uint32), {})
    with pytest.raises(ValueError, match="between 0 and 24"):
        _native.encode_buckets(np.array([4], dtype=np.int64), 25, [], np.zeros(0, np.uint32), {})


@pytest.mark.parametrize("bits", [8, 12, 16, 17, 20, 25])
def test_a_base_keeps_every_prefix_bit_a_bucket_can_ask(bits: int) -> None:
    # The directory's bits and the 16 kept after them give back the prefix's top bits + 16.
    rng = np.random.default_rng(bits)
    prefixes = np.sort(rng.integers(0, 2**32, 1000, dtype=np.uint64))
    tops = prefixes >> np.uint64(32 - bits)
    directory = np.searchsorted(tops, np.arange(2**bits + 1, dtype=np.uint64)).astype(np.uint32)
    kind = _EntryClass(52, 0, directory, _low_bits(prefixes, bits), np.zeros((1000, 52), np.uint8))
    keep = min(32, bits + 16)
    mask = np.uint64(((1 << keep) - 1) << (32 - keep))
    assert (kind.prefixes(np.arange(1000)).astype(np.uint64) == (prefixes & mask)).all()


def test_excluded_rows_must_be_ascending() -> None:
    """The probe searches the excluded rows by halves: out of order, they are refused, not
    silently missed."""
    world = World(random.Random(3), 50, 50)
    world.excluded_base = [5, 2]
    with pytest.raises(ValueError, match="excluded_base must be in ascending order"):
        world.match([(1, 2)], discoverable_only=True)
