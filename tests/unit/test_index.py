"""The index's holder of a number is a function of the records alone, not of arrival order."""

from __future__ import annotations

import os
import random

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.index import Record, RegistryIndex

NUMBERS = [os.urandom(16) for _ in range(4)]


def test_newest_claim_holds_and_the_next_newest_is_promoted() -> None:
    index = RegistryIndex()
    f = NUMBERS[0]
    assert index.put("alice", f, 10, True) is None
    assert index.put("bob", f, 20, True) == "alice"
    assert index.match(f).user_ids == ["bob"]
    assert index.put("carol", f, 15, True) is None  # older than bob's claim: shadowed
    assert index.match(f).user_ids == ["bob"]
    assert index.delete("bob", 21)
    assert index.match(f).user_ids == ["carol"]  # the newest remaining claim
    assert index.delete("carol", 22)
    assert index.match(f).user_ids == ["alice"]
    assert len(index) == 1


def test_stale_and_repeated_changes_are_ignored() -> None:
    index = RegistryIndex()
    index.put("alice", NUMBERS[0], 10, True)
    assert index.put("alice", NUMBERS[1], 5, True) is None  # older than the record
    assert index.put("alice", NUMBERS[0], 10, False) is None  # a replay
    assert index.match(NUMBERS[0]).user_ids == ["alice"]
    assert not index.delete("alice", 9)
    assert index.match(NUMBERS[0]).user_ids == ["alice"]
    assert index.delete("alice", 11)
    assert not index.delete("alice", 12)


Change = tuple[str, str, int, int]  # (op, user, number, version)


@st.composite
def histories(draw: st.DrawFn) -> list[Change]:
    """Per-user change histories with increasing versions, as each user's stream holds them.

    Versions come from a small range, so that claims of different users often tie: groups
    count their versions apart, and a tie goes to the greater user id.
    """
    changes: list[Change] = []
    for user in ("u1", "u2", "u3", "u4"):
        for version in sorted(draw(st.sets(st.integers(1, 20), max_size=8))):
            op = draw(st.sampled_from(["put", "put", "del"]))
            changes.append((op, user, draw(st.integers(0, 3)), version))
    return changes


def interleave(changes: list[Change], seed: int) -> list[Change]:
    """A random merge of the per-user streams that keeps each stream's order."""
    rng = random.Random(seed)
    queues: dict[str, list[Change]] = {}
    for change in changes:
        queues.setdefault(change[1], []).append(change)
    merged: list[Change] = []
    while queues:
        user = rng.choice(sorted(queues))
        merged.append(queues[user].pop(0))
        if not queues[user]:
            del queues[user]
    return merged


def discoverable(version: int) -> bool:
    """Whether a registration is discoverable: some are hidden, by their version."""
    return version % 3 != 0


Outcome = tuple[dict[int, str], int]  # (matched number -> user, users with a record)


def state(changes: list[Change]) -> Outcome:
    """What the index answers after applying ``changes`` in their order."""
    index = RegistryIndex()
    for op, user, number, version in changes:
        if op == "put":
            index.put(user, NUMBERS[number], version, discoverable(version))
        else:
            index.delete(user, version)
    found = index.match(b"".join(NUMBERS))
    return dict(zip(found.indexes.tolist(), found.user_ids, strict=True)), len(index)


def model(changes: list[Change]) -> Outcome:
    """The rule of overlay.py, on plain dicts, blind to arrival order.

    A user's record is its newest change: a registration names its number, an erasure
    leaves none. A number belongs to the record with the greatest (version, user id) that
    names it; a hidden holder keeps it, but matches nobody.
    """
    newest: dict[str, Change] = {}
    for change in changes:
        user, version = change[1], change[3]
        if user not in newest or version > newest[user][3]:
            newest[user] = change
    records = [
        (number, version, user) for op, user, number, version in newest.values() if op == "put"
    ]
    holders: dict[int, tuple[int, str]] = {}
    for number, version, user in records:
        holders[number] = max(holders.get(number, (0, "")), (version, user))
    matches = {n: user for n, (version, user) in holders.items() if discoverable(version)}
    return matches, len(records)


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 2**32))
def test_every_arrival_order_gives_the_same_matches(changes: list[Change], seed: int) -> None:
    assert state(interleave(changes, seed)) == model(changes)


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(1, 40))
def test_replaying_a_suffix_changes_nothing(changes: list[Change], cut: int) -> None:
    """A process that loads a snapshot and then replays changes it already saw agrees."""
    assert state(changes + changes[-cut:]) == model(changes)


def test_erasure_leaves_no_trace_of_the_number_in_the_arrays() -> None:
    index = RegistryIndex()
    number = os.urandom(16)
    index.put("alice", number, 1, True)
    index.put("bob", os.urandom(16), 1, True)
    snapshot = index.snapshot()
    index.rebase(snapshot.build(7), index.changes_after(snapshot))  # alice is in the base now
    index.delete("alice", 2)
    overlay = index._overlay
    arrays: list[npt.NDArray[np.generic]] = [
        overlay._hi, overlay._lo, overlay._holders.slots, overlay._users.slots,
    ]  # fmt: skip
    memory = b"".join(array.tobytes() for array in arrays) + bytes(overlay._arena)
    assert number[:8] not in memory
    assert number[8:] not in memory
    assert b"alice" not in memory
    # The base still holds her until the next one is built, which leaves no trace either.
    snapshot = index.snapshot()
    index.rebase(snapshot.build(8), index.changes_after(snapshot))
    base = b"".join(array.tobytes() for array in index.base.arrays.values())
    assert number[:8] not in base
    assert b"alice" not in base
    assert index.match(number).user_ids == []


@settings(max_examples=100, deadline=None)
@given(histories())
def test_loading_a_snapshot_equals_applying_its_records(changes: list[Change]) -> None:
    applied = RegistryIndex()
    for op, user, number, version in changes:
        if op == "put":
            applied.put(user, NUMBERS[number], version, version % 3 != 0)
        else:
            applied.delete(user, version)
    users = sorted({user for _, user, _, _ in changes if applied.record(user) is not None})
    records = [applied.record(user) for user in users]
    loaded = RegistryIndex()
    loaded.load(
        users,
        b"".join(r.fingerprint for r in records if r is not None),
        np.array([r.version for r in records if r is not None], dtype=np.uint64),
        np.array([r.discoverable for r in records if r is not None], dtype=bool),
    )
    probe = b"".join(NUMBERS)
    assert loaded.match(probe).user_ids == applied.match(probe).user_ids
    assert loaded.match(probe).indexes.tolist() == applied.match(probe).indexes.tolist()
    assert len(loaded) == len(applied)
    assert sorted(loaded.shadowed_claims()) == sorted(applied.shadowed_claims())


def test_row_slots_bulk_and_single_placement_agree() -> None:
    from onnet_server.core.index.row_slots import RowSlots

    rng = np.random.default_rng(5)
    hashes = rng.integers(0, 2**63, size=20_000, dtype=np.uint64)
    hashes[:500] = hashes[0]  # one long probe chain
    table = RowSlots()
    table.place(int(hashes[0]), 99_999)
    slot, _ = table.probe(int(hashes[0]))[0]
    table.remove_slot(slot)  # a tombstone for the bulk placement to reuse
    table.rebuild(hashes, np.arange(20_000, dtype=np.int32))
    for i in (0, 250, 499, 500, 19_999):
        assert i in [r for _, r in table.probe(int(hashes[i]))]
    assert sorted(table.slots[table.slots >= 0].tolist()) == list(range(20_000))


def test_lookups_between_changes_see_each_change() -> None:
    """The overlay keeps its lookup view between changes: every change must drop it.

    Lookups interleaved with registrations, moves and erasures that grow the arrays, reuse
    rows and compact the id arena (as a serving process does, between Discovers).
    """
    rng = random.Random(5)
    numbers = [rng.randbytes(16) for _ in range(400)]
    index = RegistryIndex()
    holder: dict[int, str] = {}
    held: dict[str, int] = {}
    for version in range(1, 3001):
        k = rng.randrange(300)
        user = f"user-{k}-{'x' * (k % 40)}"  # ids of many lengths: the arena fills unevenly
        if user in held and rng.random() < 0.3:
            index.delete(user, version)
            holder.pop(held.pop(user))
        else:
            number = rng.choice([n for n in range(len(numbers)) if n not in holder])
            if user in held:
                holder.pop(held.pop(user))
            index.put(user, numbers[number], version, True)
            holder[number], held[user] = user, number
        if version % 25 == 0 or version < 40:
            found = index.match(b"".join(numbers))
            got = dict(zip(found.indexes.tolist(), found.user_ids, strict=True))
            assert got == holder, version


def test_churn_agrees_with_a_model_through_growth_and_reuse() -> None:
    """Thousands of registrations, moves and erasures: tables grow, rows and arena reused."""
    rng = random.Random(11)
    numbers = [rng.randbytes(16) for _ in range(3000)]
    numbers += [numbers[0][:8] + rng.randbytes(8) for _ in range(50)]  # same first half
    index = RegistryIndex()
    model: dict[str, tuple[int, int, bool]] = {}  # user -> (number, version, discoverable)
    for version in range(1, 20_001):
        user = f"user-{rng.randrange(2500)}"
        if rng.random() < 0.25:
            index.delete(user, version)
            model.pop(user, None)
        else:
            number = rng.randrange(len(numbers))
            discoverable = rng.random() < 0.8
            index.put(user, numbers[number], version, discoverable)
            model[user] = (number, version, discoverable)
    holders: dict[int, tuple[int, str]] = {}
    for user, (number, claimed_at, _) in model.items():
        holders[number] = max(holders.get(number, (0, "")), (claimed_at, user))
    expected = [
        holders[n][1] if n in holders and model[holders[n][1]][2] else None
        for n in range(len(numbers))
    ]
    for compacted in (False, True):
        if compacted:
            index._overlay._compact_arena()  # what a large overlay does once half its ids are gone
        found = index.match(b"".join(numbers))
        got: list[str | None] = [None] * len(numbers)
        for position, user in zip(found.indexes.tolist(), found.user_ids, strict=True):
            got[position] = user
        assert got == expected
        assert len(index) == len(model)
        for user, (number, claimed_at, discoverable) in list(model.items())[:200]:
            assert index.record(user) == Record(numbers[number], claimed_at, discoverable)


def test_records_parse_alike_one_by_one_and_in_bulk() -> None:
    from onnet_server.stores.redis_layout import UserRecord, flags_byte, parse_records

    values = [
        os.urandom(16)
        + flags_byte(i % 2 == 0)
        + (1_700_000_000_000_000 + i).to_bytes(7, "big")
        + (os.urandom(40) if i % 2 == 0 else b"")  # a private entry for discoverable users
        for i in range(50)
    ]
    fingerprints, versions, discoverable, entries = parse_records(values)
    for i, value in enumerate(values):
        one = UserRecord.unpack(value)
        assert fingerprints[16 * i : 16 * i + 16] == one.fingerprint
        assert int(versions[i]) == one.version
        assert bool(discoverable[i]) == one.discoverable
        assert entries[i] == one.private_entry


def test_user_hashes_agree_one_by_one_and_in_bulk() -> None:
    from onnet_server.core.index.overlay import _user_hash, _user_hashes

    users = ["a", "alice", "user-0000001", "~" * 64, "acct:12 34", "b"]
    arena = bytearray("".join(users).encode())
    lengths = np.array([len(u) for u in users], dtype=np.uint8)
    offsets = (np.cumsum(lengths, dtype=np.int64) - lengths).astype(np.uint32)
    bulk = _user_hashes(arena, offsets, lengths).tolist()
    assert bulk == [_user_hash(u) for u in users]
    assert len(set(bulk)) == len(users)


def test_users_without_a_bucket_entry_are_counted() -> None:
    index = RegistryIndex()
    index.put("legacy", NUMBERS[0], 1, True)  # registered before private mode
    index.put("hidden", NUMBERS[1], 2, False)  # hidden users need no entry
    entry = os.urandom(52)
    index.put("current", NUMBERS[2], 3, True, b"\x00\x00\x00\x01" + entry)
    assert index.discoverable_without_entry() == 1
    assert index.bucket_entry_count() == 1
    assert index.bucket_entries([0], 0) == {0: [entry]}  # one bucket: only the entry served


def test_the_served_entry_count_follows_every_change() -> None:
    rng = random.Random(3)
    index = RegistryIndex()
    for version in range(1, 3000):
        user = f"user-{rng.randrange(300)}"
        if rng.random() < 0.3:
            index.delete(user, version)
        else:
            entry = rng.randbytes(4) + rng.randbytes(40)
            index.put(user, NUMBERS[rng.randrange(4)] if rng.random() < 0.1 else rng.randbytes(16),
                      version, rng.random() < 0.7, entry)  # fmt: skip
        if version % 250 == 0:
            assert index.bucket_entry_count() == len(index.bucket_entries([0], 0)[0])
