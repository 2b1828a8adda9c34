"""The index's holder of a number is a function of the records alone, not of arrival order."""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.index import RegistryIndex

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
    """Per-user change histories with increasing versions, as each user's stream holds them."""
    changes: list[Change] = []
    versions = draw(st.permutations(range(1, 41)))
    position = 0
    for user in ("u1", "u2", "u3", "u4"):
        for _ in range(draw(st.integers(0, 8))):
            op = draw(st.sampled_from(["put", "put", "del"]))
            changes.append((op, user, draw(st.integers(0, 3)), versions[position]))
            position += 1
    per_user: dict[str, list[Change]] = {}
    for change in changes:
        per_user.setdefault(change[1], []).append(change)
    ordered: list[Change] = []
    for user_changes in per_user.values():  # each user's stream is in version order
        ordered += sorted(user_changes, key=lambda c: c[3])
    return ordered


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


def state(changes: list[Change]) -> list[str]:
    index = RegistryIndex()
    for op, user, number, version in changes:
        if op == "put":
            index.put(user, NUMBERS[number], version, True)
        else:
            index.delete(user, version)
    return index.match(b"".join(NUMBERS)).user_ids


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 2**32))
def test_every_arrival_order_gives_the_same_matches(changes: list[Change], seed: int) -> None:
    assert state(interleave(changes, seed)) == state(changes)


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(1, 40))
def test_replaying_a_suffix_changes_nothing(changes: list[Change], cut: int) -> None:
    """A process that loads a snapshot and then replays changes it already saw agrees."""
    assert state(changes + changes[-cut:]) == state(changes)


def test_erasure_leaves_no_trace_of_the_number_in_the_arrays() -> None:
    index = RegistryIndex()
    number = os.urandom(16)
    index.put("alice", number, 1, True)
    index.delete("alice", 2)
    arrays = [index._table._keys, index._table._row_low, index._fingerprint]
    memory = b"".join(bytes(array.tobytes()) for array in arrays)  # type: ignore[attr-defined]
    assert number[:8] not in memory
    assert number[8:] not in memory
