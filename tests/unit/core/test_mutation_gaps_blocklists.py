"""Blocklists: a repeated block, an erased user, and the arrays of a base file.

Each test here was seen to fail with a mutant of core/blocklists.py that the unit layer let
live (README, "Testing"); the arrays were exercised only by the Redis store's integration
tests before.
"""

from __future__ import annotations

import os

import numpy as np

from onnet_server.core.blocklists import Blocklists


def test_blocking_a_number_twice_changes_nothing_the_second_time() -> None:
    lists = Blocklists()
    number = os.urandom(16)
    assert lists.add("bob", number) is True
    assert lists.add("bob", number) is False
    assert lists.count("bob") == 1


def test_an_erased_user_blocks_nobody_any_more() -> None:
    shared, own = os.urandom(16), os.urandom(16)
    lists = Blocklists()
    lists.load([("bob", shared), ("bob", own), ("carol", shared)])
    lists.drop_user("bob")
    # A user re-registered under the same id must not inherit the old blocks.
    assert lists.blockers_of(shared) == frozenset({"carol"})
    assert lists.blockers_of(own) == frozenset()
    assert (len(lists), lists.count("bob")) == (1, 0)


def test_a_base_file_holds_every_block_and_gives_back_the_same_lists() -> None:
    first, second, third = (os.urandom(16) for _ in range(3))
    blocks = [("b", first), ("bob", second), ("bob", third), ("x" * 64, first)]
    lists = Blocklists()
    lists.load(blocks)
    arrays = lists.to_arrays()
    # The file's layout: id characters, one length per block, 16 bytes per fingerprint.
    assert {name: array.dtype for name, array in arrays.items()} == {
        "block_ids": np.uint8,
        "block_id_lengths": np.uint8,
        "block_fingerprints": np.uint8,
    }
    assert arrays["block_ids"].size == len("b" + "bob" * 2 + "x" * 64)
    assert sorted(arrays["block_id_lengths"].tolist()) == [1, 3, 3, 64]
    assert arrays["block_fingerprints"].size == 16 * len(blocks)
    again = Blocklists.from_arrays(arrays)
    assert all(again.blocks(user, number) for user, number in blocks)
    assert [again.count(user) for user in ("b", "bob", "x" * 64)] == [1, 2, 1]
    assert again.blockers_of(first) == frozenset({"b", "x" * 64})
    assert len(again) == 3
    empty = Blocklists.from_arrays(Blocklists().to_arrays())
    assert len(empty) == 0
