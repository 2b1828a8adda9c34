"""Blocklists: both directions of the map stay in step."""

from __future__ import annotations

import os

from onnet_server.core.blocklists import Blocklists


def test_replace_makes_a_list_exactly_what_the_store_holds() -> None:
    kept, dropped, added = os.urandom(16), os.urandom(16), os.urandom(16)
    lists = Blocklists()
    lists.load([("bob", kept), ("bob", dropped), ("carol", dropped)])
    lists.replace("bob", {kept, added})
    assert (lists.blocks("bob", kept), lists.blocks("bob", added)) == (True, True)
    assert not lists.blocks("bob", dropped)
    assert lists.blockers_of(dropped) == frozenset({"carol"})  # carol's list is hers
    assert lists.blockers_of(added) == frozenset({"bob"})
    assert lists.count("bob") == 2
    lists.replace("bob", set())
    assert (len(lists), lists.count("bob"), lists.blockers_of(kept)) == (1, 0, frozenset())
    lists.replace("dave", [added])  # a user with no list yet
    assert lists.blockers_of(added) == frozenset({"dave"})
