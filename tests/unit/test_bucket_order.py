"""FetchBuckets' entries come from a prefix-ordered structure; they must be exactly what a
scan of every record would serve: discoverable holders only, no lost claim, no hidden user."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.index.overlay import (
    Overlay as RegistryIndex,
)  # the prefix order is the overlay's

USERS = ["u0", "u1", "u2", "u3", "u4", "u5"]
NUMBERS = [bytes([n]) * 16 for n in range(5)]
# Equal prefixes, neighbours across bucket edges at every size, and both ends of the range.
PREFIXES = [0, 1, 0x7FFF_FFFF, 0x8000_0000, 0x8000_0001, 0x1234_5678, 0x1234_FFFF, 0xFFFF_FFFF]
BITS = [0, 1, 2, 4, 16, 31, 32]


@dataclass
class Claim:
    number: int
    version: int
    discoverable: bool
    entry: bytes  # prefix (4 bytes) and body, or empty


def served(
    claims: dict[str, Claim], buckets: list[int], bits: int, hidden: set[str]
) -> dict[int, list[bytes]]:
    """Brute force: the entries of discoverable holders in each bucket, none of ``hidden``."""
    holders: dict[int, tuple[int, str]] = {}
    for user, claim in claims.items():
        holders[claim.number] = max(holders.get(claim.number, (0, "")), (claim.version, user))
    result: dict[int, list[bytes]] = {bucket: [] for bucket in buckets}
    for _, user in holders.values():
        claim = claims[user]
        if not claim.discoverable or not claim.entry or user in hidden:
            continue
        bucket = int.from_bytes(claim.entry[:4], "big") >> (32 - bits)
        if bucket in result:
            result[bucket].append(claim.entry[4:])
    return {bucket: sorted(entries) for bucket, entries in result.items()}


def fetched(
    index: RegistryIndex, buckets: list[int], bits: int, hidden: set[str]
) -> dict[int, list[bytes]]:
    found = index.bucket_entries(buckets, bits, frozenset(hidden))
    return {bucket: sorted(entries) for bucket, entries in found.items()}


def entry(prefix: int, version: int, size: int) -> bytes:
    # Trailing zero bytes: an entry must come back whole, not as a C string.
    return prefix.to_bytes(4, "big") + version.to_bytes(4, "big") + bytes(size - 4)


Op = tuple[str, str, int, bool, int, int, int, list[int], list[int]]

operations = st.tuples(
    st.sampled_from(["put", "put", "put", "delete", "fetch"]),
    st.sampled_from(USERS),
    st.integers(0, len(NUMBERS) - 1),
    st.booleans(),  # discoverable
    st.one_of(st.sampled_from(PREFIXES), st.integers(0, 2**32 - 1)),
    st.sampled_from([0, 4, 48, 64, 251]),  # body size; 0: no entry
    st.sampled_from(BITS),
    st.lists(st.one_of(st.sampled_from(PREFIXES), st.integers(0, 2**32 - 1)), max_size=6),
    st.lists(st.sampled_from(range(len(USERS))), max_size=3),  # hidden users
)


def apply(index: RegistryIndex | None, claims: dict[str, Claim], op: Op, version: int) -> None:
    kind, user, number, discoverable, prefix, size, bits, asked, hidden_users = op
    if kind == "put":
        private = entry(prefix, version, size) if size else b""
        claims[user] = Claim(number, version, discoverable, private)
        if index is not None:
            index.put(user, NUMBERS[number], version, discoverable, private)
    elif kind == "delete":
        claims.pop(user, None)
        if index is not None:
            index.delete(user, version)
    elif index is not None:
        buckets = sorted({p >> (32 - bits) for p in asked} | {0})
        hidden = {USERS[i] for i in hidden_users}
        assert fetched(index, buckets, bits, hidden) == served(claims, buckets, bits, hidden)


def snapshot(claims: dict[str, Claim], recent: int) -> RegistryIndex:
    """An index loaded from the claims, merging every ``recent`` new entries after."""
    index = RegistryIndex()
    index._merge_every = recent
    users = sorted(claims)
    index.load(
        users,
        b"".join(NUMBERS[claims[u].number] for u in users),
        np.array([claims[u].version for u in users], dtype=np.uint64),
        np.array([claims[u].discoverable for u in users], dtype=bool),
        [claims[u].entry for u in users],
    )
    return index


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=60), st.integers(1, 4), st.integers(0, 60))
def test_buckets_agree_with_a_brute_force_model(ops: list[Op], recent: int, loaded_at: int) -> None:
    """Random registrations, moves, erasures and blocks, with a merge every ``recent`` new
    entries; the first ``loaded_at`` changes arrive as a snapshot."""
    claims: dict[str, Claim] = {}
    for version, op in enumerate(ops[:loaded_at], start=1):
        apply(None, claims, op, version)
    index = snapshot(claims, recent)
    for version, op in enumerate(ops[loaded_at:], start=loaded_at + 1):
        apply(index, claims, op, version)
    everything = list(range(2))
    assert fetched(index, everything, 1, set()) == served(claims, everything, 1, set())
    assert index.bucket_entry_count() == len(fetched(index, [0], 0, set())[0])


def test_churn_through_many_merges_agrees_with_the_model() -> None:
    """Thousands of changes at the real merge size, over a few thousand users."""
    rng = random.Random(7)
    index, claims = RegistryIndex(), dict[str, Claim]()
    numbers = [rng.randbytes(16) for _ in range(2_500)]
    for version in range(1, 30_001):
        user = f"user-{rng.randrange(3_000)}"
        if rng.random() < 0.25:
            index.delete(user, version)
            claims.pop(user, None)
            continue
        number = rng.randrange(len(numbers))
        private = entry(rng.getrandbits(32), version, 48) if rng.random() < 0.9 else b""
        discoverable = rng.random() < 0.8
        index.put(user, numbers[number], version, discoverable, private)
        claims[user] = Claim(number, version, discoverable, private)
        if version % 5_000 == 0:
            bits = 6
            buckets = sorted(rng.sample(range(64), 20))
            hidden = set(rng.sample(sorted(claims), 50))
            found = fetched(index, buckets, bits, hidden)
            assert found == served(claims, buckets, bits, hidden)


def test_erasure_leaves_no_trace_in_the_bucket_order() -> None:
    """An erased entry is zeroed where it sits: waiting unsorted, or merged in."""
    index = RegistryIndex()
    index._merge_every = 2

    def memory() -> bytes:
        order = index._orders[48]
        arrays = (
            order._prefixes,
            order._entries,
            order._recent_prefixes,
            order._recent_entries,
        )
        return b"".join(array.tobytes() for array in arrays)

    alice, bob = bytes(range(1, 49)), bytes(range(49, 1, -1))
    index.put("alice", NUMBERS[0], 1, True, b"\xab\xcd\xef\x01" + alice)
    index.delete("alice", 2)  # erased while it waits unsorted
    assert alice not in memory()
    assert (0xABCDEF01).to_bytes(4, "little") not in memory()
    index.put("bob", NUMBERS[1], 3, True, b"\xab\xcd\xef\x02" + bob)  # merged in
    index.put("carol", NUMBERS[2], 4, True, entry(7, 4, 48))
    index.delete("bob", 5)  # erased in the sorted part
    assert bob not in memory()
    assert (0xABCDEF02).to_bytes(4, "little") not in memory()
    assert fetched(index, [0], 0, set()) == {0: [entry(7, 4, 48)[4:]]}
