"""The rules every RegistryStore keeps, on every store: memory, Redis, Redis Cluster."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from onnet_server.core.ports import RegistryStore
from tests.stores import STORE_KINDS, open_store


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RegistryStore]:
    async with open_store(request.param, request) as opened:
        yield opened


def fp() -> bytes:
    return os.urandom(16)


async def test_register_then_match(store: RegistryStore) -> None:
    a, b, unknown = fp(), fp(), fp()
    assert (await store.register("alice", a, True)).updated is False
    await store.register("bob", b, True)
    matches = store.match(unknown + b + a)
    assert matches.indexes.tolist() == [1, 2]
    assert matches.user_ids == ["bob", "alice"]
    assert len(store) == 2


async def test_non_discoverable_users_never_match(store: RegistryStore) -> None:
    a = fp()
    await store.register("alice", a, False)
    assert store.match(a).user_ids == []
    await store.register("alice", a, True)
    assert store.match(a).user_ids == ["alice"]
    await store.register("alice", a, False)
    assert store.match(a).user_ids == []


async def test_reregistering_moves_the_user(store: RegistryStore) -> None:
    old, new = fp(), fp()
    await store.register("alice", old, True)
    outcome = await store.register("alice", new, True)
    assert outcome.updated is True
    assert outcome.displaced_user_id is None
    assert store.match(old + new).indexes.tolist() == [1]
    assert len(store) == 1


async def test_a_recycled_number_goes_to_its_newest_holder(store: RegistryStore) -> None:
    number, bobs_old = fp(), fp()
    await store.register("alice", number, True)
    await store.register("bob", bobs_old, True)
    outcome = await store.register("bob", number, True)
    assert outcome.displaced_user_id == "alice"
    assert store.match(number + bobs_old).user_ids == ["bob"]
    assert await store.unregister("alice") is False  # alice lost her only number: gone
    assert len(store) == 1


async def test_unregister_erases(store: RegistryStore) -> None:
    a = fp()
    await store.register("alice", a, True)
    assert await store.unregister("alice") is True
    assert store.match(a).user_ids == []
    assert await store.unregister("alice") is False
    assert len(store) == 0
    await store.register("alice2", a, True)  # the freed number can be taken again
    assert store.match(a).user_ids == ["alice2"]


async def test_empty_batch_matches_nothing(store: RegistryStore) -> None:
    assert store.match(b"").indexes.tolist() == []


async def test_blocks_are_kept_per_user_and_answered_by_number(store: RegistryStore) -> None:
    alice, bob, carol = fp(), fp(), fp()
    await store.register("alice", alice, True)
    await store.register("bob", bob, True)
    await store.register("carol", carol, True)
    assert await store.set_blocked("alice", bob, True) is True
    assert await store.set_blocked("alice", bob, True) is False  # already blocked
    assert await store.set_blocked("carol", bob, True) is True
    assert store.blocked_by("bob") == frozenset({"alice", "carol"})
    assert store.blocked_by("carol") == frozenset()
    assert await store.set_blocked("carol", bob, False) is True
    assert await store.set_blocked("carol", bob, False) is False
    assert store.blocked_by("bob") == frozenset({"alice"})
    assert store.blocked_by("nobody") is None  # not registered: holds no number


async def test_a_block_follows_the_number_not_the_user(store: RegistryStore) -> None:
    alice, number, elsewhere = fp(), fp(), fp()
    await store.register("alice", alice, True)
    await store.register("bob", number, True)
    await store.set_blocked("alice", number, True)
    await store.register("bob", elsewhere, True)  # bob moves away from the blocked number
    assert store.blocked_by("bob") == frozenset()
    await store.register("dave", number, True)  # whoever holds it now is blocked
    assert store.blocked_by("dave") == frozenset({"alice"})


async def test_blocking_needs_a_registered_user(store: RegistryStore) -> None:
    assert await store.set_blocked("ghost", fp(), True) is None
    assert await store.set_blocked("ghost", fp(), False) is None


async def test_erasure_erases_the_blocklist(store: RegistryStore) -> None:
    alice, bob = fp(), fp()
    await store.register("alice", alice, True)
    await store.register("bob", bob, True)
    await store.set_blocked("alice", bob, True)
    await store.unregister("alice")
    assert store.blocked_by("bob") == frozenset()
    await store.register("alice", alice, True)  # a new registration starts with no blocks
    assert store.blocked_by("bob") == frozenset()


async def test_losing_ones_number_erases_the_blocklist(store: RegistryStore) -> None:
    alice, bob = fp(), fp()
    await store.register("alice", alice, True)
    await store.register("bob", bob, True)
    await store.set_blocked("alice", bob, True)
    await store.register("zed", alice, True)  # alice's number is recycled: alice is gone
    assert store.blocked_by("bob") == frozenset()


async def test_blocked_users_are_left_out_of_buckets(store: RegistryStore) -> None:
    alice, bob = fp(), fp()
    await store.register("alice", alice, True, bytes(4) + b"alice-entry")
    await store.register("bob", bob, True, bytes(4) + b"bob-entry")
    assert sorted(store.bucket_entries([0], 1)[0]) == [b"alice-entry", b"bob-entry"]
    assert store.bucket_entries([0], 1, frozenset({"alice"})) == {0: [b"bob-entry"]}


async def test_holders_include_hidden_users_and_follow_moves(store: RegistryStore) -> None:
    alice, hidden, old, new, nobody = fp(), fp(), fp(), fp(), fp()
    await store.register("alice", alice, True)
    await store.register("hidden", hidden, False)
    await store.register("mover", old, True)
    await store.register("mover", new, True)
    found = store.holders(nobody + hidden + alice + old + new)
    assert found.indexes.tolist() == [1, 2, 4]
    assert found.user_ids == ["hidden", "alice", "mover"]
    await store.unregister("hidden")
    assert store.holders(hidden).user_ids == []


async def test_blocks_answer_one_question(store: RegistryStore) -> None:
    alice, caller, other = fp(), fp(), fp()
    await store.register("alice", alice, True)
    await store.set_blocked("alice", caller, True)
    assert store.blocks("alice", caller) is True
    assert store.blocks("alice", other) is False
    assert store.blocks("ghost", caller) is None
