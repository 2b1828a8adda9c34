"""The combined index (a base and an overlay) answers exactly as one overlay would.

A reference overlay-only index sees the same changes; the index under test builds new bases
at arbitrary points, with changes arriving while a base is built, and from a base built by
another process at a feed position. Every read must agree.
"""

from __future__ import annotations

import os
import random
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.index import RegistryIndex
from onnet_server.core.index import overlay as overlay_module
from onnet_server.core.index.overlay import Overlay

NUMBERS = [os.urandom(16) for _ in range(6)]
USERS = [f"user{i}" for i in range(8)]
# (op, user, number, discoverable, entry?, rebase?)
Op = tuple[str, int, int, bool, bool, str]


def entry(user: int, number: int) -> bytes:
    return bytes([user, number, 0, 0]) + bytes([user]) * 52


@st.composite
def scripts(draw: st.DrawFn) -> list[Op]:
    ops = []
    for _ in range(draw(st.integers(1, 40))):
        ops.append(
            (
                draw(st.sampled_from(["put", "put", "put", "del"])),
                draw(st.integers(0, len(USERS) - 1)),
                draw(st.integers(0, len(NUMBERS) - 1)),
                draw(st.booleans()),
                draw(st.booleans()),
                draw(st.sampled_from(["", "", "", "", "now", "start", "finish"])),
            )
        )
    return ops


def reads(index: RegistryIndex | Overlay) -> tuple[object, ...]:
    probe = b"".join(NUMBERS)
    matches = index.match(probe, frozenset({USERS[1]}))
    holders = index.holders(probe)
    return (
        matches.indexes.tolist(),
        matches.user_ids,
        holders.indexes.tolist(),
        holders.user_ids,
        [index.record(user) for user in USERS],
        [index.holder_claim(number) for number in NUMBERS],
        sorted(index.shadowed_claims()),
        len(index),
        index.bucket_entry_count(),
        {
            b: sorted(e)
            for b, e in index.bucket_entries([0, 1, 2, 3], 2, frozenset({USERS[2]})).items()
        },
    )


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(scripts())
def test_rebasing_anywhere_changes_no_answer(script: list[Op]) -> None:
    run_with_rebases(script)


@settings(max_examples=150, deadline=None)
@given(scripts())
def test_entries_merged_into_the_sorted_part_answer_alike(script: list[Op]) -> None:
    # Merged every two entries, so that most entries are read from the sorted part (the
    # compiled path), lost claims and removed entries included, not from the newest ones.
    with patch.object(overlay_module, "_RECENT_ROWS", 2):
        run_with_rebases(script)


def run_with_rebases(script: list[Op]) -> None:
    """Play ``script`` on a combined index and a reference overlay; they must agree."""
    reference, index = Overlay(), RegistryIndex()
    pending = None
    for version, (op, user, number, discoverable, has_entry, rebase) in enumerate(script, 1):
        if op == "put":
            private = entry(user, number) if has_entry else b""
            args = (USERS[user], NUMBERS[number], version, discoverable, private)
            assert index.put(*args) == reference.put(*args)
        else:
            assert index.delete(USERS[user], version) == reference.delete(USERS[user], version)
        if rebase == "now":
            snapshot = index.snapshot()
            index.rebase(snapshot.build(version), index.changes_after(snapshot))
        elif rebase == "start" and pending is None:
            pending = index.snapshot()  # changes keep arriving while it is built
        elif rebase == "finish" and pending is not None:
            if index.is_current(pending):  # else another base came first: the build is moot
                index.rebase(pending.build(version), index.changes_after(pending))
            pending = None
        assert reads(index) == reads(reference)


@settings(max_examples=200, deadline=None)
@given(scripts(), st.integers(0, 39))
def test_a_base_built_by_another_process_at_a_feed_position(script: list[Op], cut: int) -> None:
    """Two processes follow one feed; one builds a base at position ``cut``; the other
    serves it with only the later changes replayed."""
    builder, follower, reference = RegistryIndex(), RegistryIndex(), Overlay()
    built = None
    for sequence, (op, user, number, discoverable, has_entry, _) in enumerate(script, 1):
        for index in (builder, follower):
            if op == "put":
                private = entry(user, number) if has_entry else b""
                index.put(USERS[user], NUMBERS[number], sequence, discoverable, private,
                          position=(0, sequence))  # fmt: skip
            else:
                index.delete(USERS[user], sequence, position=(0, sequence))
        if op == "put":
            reference.put(USERS[user], NUMBERS[number], sequence, discoverable,
                          entry(user, number) if has_entry else b"")  # fmt: skip
        else:
            reference.delete(USERS[user], sequence)
        if sequence == cut:
            built = builder.snapshot().build(99)
    if built is None:
        return
    follower.rebase(built, follower.changes_since([cut]))
    assert reads(follower) == reads(reference)


def test_a_large_churn_with_periodic_rebases_agrees_with_a_model() -> None:
    rng = random.Random(7)
    numbers = [rng.randbytes(16) for _ in range(2000)]
    reference, index = Overlay(), RegistryIndex()
    for version in range(1, 15_001):
        user = f"user-{rng.randrange(1500)}"
        if rng.random() < 0.2:
            assert index.delete(user, version) == reference.delete(user, version)
        else:
            args = (user, numbers[rng.randrange(len(numbers))], version, rng.random() < 0.8,
                    rng.randbytes(4) + rng.randbytes(52))  # fmt: skip
            assert index.put(*args) == reference.put(*args)
        if version % 2500 == 0:
            snapshot = index.snapshot()
            index.rebase(snapshot.build(version), index.changes_after(snapshot))
            # Only the claims on contested numbers stay in the overlay.
            claims: dict[bytes, int] = {}
            for user in {f"user-{i}" for i in range(1500)}:
                record = reference.record(user)
                if record is not None:
                    claims[record.fingerprint] = claims.get(record.fingerprint, 0) + 1
            assert index.overlay_size == sum(n for n in claims.values() if n > 1)
    probe = b"".join(numbers)
    assert index.match(probe).user_ids == reference.match(probe).user_ids
    assert len(index) == len(reference)
    buckets = list(range(16))
    assert {b: sorted(e) for b, e in index.bucket_entries(buckets, 4).items()} == {
        b: sorted(e) for b, e in reference.bucket_entries(buckets, 4).items()
    }


def test_an_overlay_emptied_then_loaded_finds_every_later_registration() -> None:
    """Rows freed by erasures belong to the arrays a load replaces: none may be reused past
    the rows the load filled (a lookup reads only the rows ever used)."""
    overlay = Overlay()
    numbers = [bytes([n]) * 16 for n in range(1, 7)]
    for n in range(4):
        overlay.put(f"gone-{n}", numbers[n], 1, True)
    for n in range(4):
        assert overlay.delete(f"gone-{n}", 2)
    overlay.load(["first", "second"], numbers[4] + numbers[5], np.array([3, 3], np.uint64),
                 np.array([True, True]))  # fmt: skip
    overlay.put("third", numbers[0], 4, True)
    found = overlay.match(numbers[0] + numbers[4] + numbers[5])
    assert found.user_ids == ["third", "first", "second"]
