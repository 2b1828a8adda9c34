"""The rules every RegistryStore keeps. Each store adapter is added to STORES."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from onnet_server.core.ports import RegistryStore
from onnet_server.stores.memory import MemoryRegistry

STORES: dict[str, Callable[[], RegistryStore]] = {"memory": MemoryRegistry}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> RegistryStore:
    return STORES[request.param]()


def fp() -> bytes:
    return os.urandom(16)


def test_register_then_match(store: RegistryStore) -> None:
    a, b, unknown = fp(), fp(), fp()
    assert store.register("alice", a, True).updated is False
    store.register("bob", b, True)
    matches = store.match(unknown + b + a)
    assert matches.indexes.tolist() == [1, 2]
    assert matches.user_ids == ["bob", "alice"]
    assert len(store) == 2


def test_non_discoverable_users_never_match(store: RegistryStore) -> None:
    a = fp()
    store.register("alice", a, False)
    assert store.match(a).user_ids == []
    store.register("alice", a, True)
    assert store.match(a).user_ids == ["alice"]
    store.register("alice", a, False)
    assert store.match(a).user_ids == []


def test_reregistering_moves_the_user(store: RegistryStore) -> None:
    old, new = fp(), fp()
    store.register("alice", old, True)
    outcome = store.register("alice", new, True)
    assert outcome.updated is True
    assert outcome.displaced_user_id is None
    assert store.match(old + new).indexes.tolist() == [1]
    assert len(store) == 1


def test_a_recycled_number_goes_to_its_newest_holder(store: RegistryStore) -> None:
    number, bobs_old = fp(), fp()
    store.register("alice", number, True)
    store.register("bob", bobs_old, True)
    outcome = store.register("bob", number, True)
    assert outcome.displaced_user_id == "alice"
    assert store.match(number + bobs_old).user_ids == ["bob"]
    assert store.unregister("alice") is False  # alice lost her only number: gone
    assert len(store) == 1


def test_unregister_erases(store: RegistryStore) -> None:
    a = fp()
    store.register("alice", a, True)
    assert store.unregister("alice") is True
    assert store.match(a).user_ids == []
    assert store.unregister("alice") is False
    assert len(store) == 0
    store.register("alice2", a, True)  # the freed number can be taken again
    assert store.match(a).user_ids == ["alice2"]


def test_empty_batch_matches_nothing(store: RegistryStore) -> None:
    assert store.match(b"").indexes.tolist() == []
