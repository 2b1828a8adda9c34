"""The SDK's re-sync state in parts: stable parts, doubling, removals, and what is stored.

The requests a SyncState makes are answered by the server's own token logic (ResyncTokens,
in process), so each test also shows the server accepts them and what it charges.
"""

from __future__ import annotations

import os
import random

import pytest

import onnet
from onnet._resync import PartSync, part_of
from onnet_server.core.resync import ResyncTokens
from tests.covered import covers

ACCOUNT = "alice"


@pytest.fixture
def tokens() -> ResyncTokens:
    return ResyncTokens.from_peppers(b"pepper" * 5 + b"!!", ttl_seconds=3600)


def book_of(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(count)]


def split(packed: bytes) -> list[bytes]:
    return [packed[i : i + 32] for i in range(0, len(packed), 32)]


def sync(
    state: onnet.SyncState,
    tokens: ResyncTokens,
    book: list[bytes],
    max_batch: int,
    max_hashes: int = 1_000_000,
) -> tuple[int, list[PartSync]]:
    """One sync of ``book`` answered by the server's token logic: (quota charged, requests)."""
    charged = 0
    requests = state.syncs(b"".join(book), max_batch, max_hashes)
    for request in requests:
        assert len(request.removed_hashes) // 32 <= max_hashes - max_batch  # the server's limit
        if request.token:
            cost, token = tokens.renew_difference(
                ACCOUNT, request.token, request.hashes, request.added_hashes, request.removed_hashes
            )
        else:
            cost, token = tokens.renew(ACCOUNT, b"", b"", request.hashes)
        charged += cost
        state.settle(request, token)
    return charged, requests


def test_parts_are_named_by_the_leading_bits_most_significant_first() -> None:
    contact_hash = bytes([0b1011_0010, 0xFF]) + bytes(30)
    assert [part_of(contact_hash, bits) for bits in (0, 1, 2, 4, 8)] == [0, 1, 2, 11, 0xB2]
    assert part_of(contact_hash, 12) == 0xB2F
    assert part_of(b"\xff" * 32, 64) == 2**64 - 1


def test_a_small_book_is_one_part_sent_once(tokens: ResyncTokens) -> None:
    state, book = onnet.SyncState(), book_of(100)
    charged, first = sync(state, tokens, book, max_batch=1_000)
    assert charged == 100
    assert (state.bits, len(first), first[0].token) == (0, 1, b"")
    charged, again = sync(state, tokens, book, max_batch=1_000)
    assert charged == 0
    [request] = again
    assert request.hashes == b"".join(book)  # the book once, in book order
    assert request.positions == tuple(range(100))
    assert (request.added_hashes, request.removed_hashes) == (b"", b"")
    assert request.token == first_token(state)


def first_token(state: onnet.SyncState) -> bytes:
    return state.tokens()[0]


def test_a_large_book_is_cut_into_parts_of_about_half_a_batch(tokens: ResyncTokens) -> None:
    state, book = onnet.SyncState(), book_of(25_000)
    charged, requests = sync(state, tokens, book, max_batch=10_000)
    assert charged == 25_000
    assert state.bits == 3  # 25,000 / 8 = 3,125 a part, at most 5,000 on average
    assert [r.part for r in requests] == list(range(8))
    seen: list[int] = []
    for request in requests:
        assert len(request.positions) <= 10_000
        hashes = split(request.hashes)
        assert hashes == [book[i] for i in request.positions]
        assert {part_of(h, 3) for h in hashes} == {request.part}
        seen += request.positions
    assert sorted(seen) == list(range(25_000))  # every hash once
    charged, again = sync(state, tokens, book, max_batch=10_000)
    assert charged == 0
    assert all(not r.added_hashes and not r.removed_hashes for r in again)
    assert sum(len(r.hashes) for r in again) == 32 * 25_000  # the book once, not twice


def test_parts_are_stable_and_only_changes_travel(tokens: ResyncTokens) -> None:
    state, book = onnet.SyncState(), book_of(1_800)
    sync(state, tokens, book, max_batch=1_000)
    assert state.bits == 2  # 1,800 / 4 = 450 a part, at most 500 on average
    parts_before = {h: part_of(h, state.bits) for h in book}
    added, removed = book_of(5, seed=2), book[:3]
    changed = [*book[3:], *added]
    random.Random(3).shuffle(changed)  # a new order changes nothing
    charged, requests = sync(state, tokens, changed, max_batch=1_000)
    assert charged == 5
    assert state.bits == 2
    assert all(part_of(h, 2) == parts_before[h] for h in book[3:])
    sent_added = {h for r in requests for h in split(r.added_hashes)}
    sent_removed = {h for r in requests for h in split(r.removed_hashes)}
    assert (sent_added, sent_removed) == (set(added), set(removed))
    for request in requests:  # each change travels in its own part's request
        for h in split(request.added_hashes) + split(request.removed_hashes):
            assert part_of(h, 2) == request.part
    assert not any(covers(state, h) for h in removed)
    assert all(covers(state, h) for h in changed)
    # A shrinking book keeps its parts: the bits are never reduced.
    charged, _ = sync(state, tokens, changed[:100], max_batch=1_000)
    assert (charged, state.bits) == (0, 2)


def test_when_parts_double_each_starts_from_its_parents_token(tokens: ResyncTokens) -> None:
    state, book = onnet.SyncState(), book_of(1_000)
    sync(state, tokens, book, max_batch=2_000)
    assert state.bits == 0
    parent = first_token(state)
    grown = [*book, *book_of(1_500, seed=9)]
    charged, requests = sync(state, tokens, grown, max_batch=2_000)
    assert charged == 1_500  # the old contacts cost nothing
    assert state.bits == 2
    assert len(requests) == 4
    for request in requests:
        assert request.token == parent  # one token shown four times: it is not spent
        mine = {h for h in book if part_of(h, 2) == request.part}
        assert set(split(request.removed_hashes)) == set(book) - mine
        assert set(split(request.added_hashes)) == set(split(request.hashes)) - set(book)
    assert len(set(state.tokens().values())) == 4
    assert sync(state, tokens, grown, max_batch=2_000)[0] == 0


def test_a_part_the_book_left_is_dropped(tokens: ResyncTokens) -> None:
    state = onnet.SyncState()
    low = [bytes([0x00]) + os.urandom(31) for _ in range(30)]
    high = [bytes([0xFF]) + os.urandom(31) for _ in range(30)]
    sync(state, tokens, low + high, max_batch=40)
    assert (state.bits, sorted(state.tokens())) == (2, [0, 3])
    charged, requests = sync(state, tokens, low, max_batch=40)
    assert charged == 0
    assert [r.part for r in requests] == [0]  # no request for a part with nothing in it
    assert sorted(state.tokens()) == [0]
    assert not any(covers(state, h) for h in high)
    assert sync(state, tokens, low + high[:2], max_batch=40)[0] == 2  # back: paid again


def test_an_empty_book_changes_nothing(tokens: ResyncTokens) -> None:
    state, book = onnet.SyncState(), book_of(10)
    sync(state, tokens, book, max_batch=100)
    saved = state.to_bytes()
    assert state.syncs(b"", 100, 1_000) == []
    assert state.to_bytes() == saved


def test_a_crowded_part_splits_further(tokens: ResyncTokens) -> None:
    # 12 hashes, 8 of them in the first quarter: half a batch of 6 on average asks for 2
    # bits, and the crowded quarter (over a whole batch) then needs one more.
    crowded = [bytes([first]) + os.urandom(31) for first in [0x10] * 4 + [0x30] * 4]
    spread = [bytes([first]) + os.urandom(31) for first in (0x41, 0x81, 0xC1, 0xC2)]
    state = onnet.SyncState()
    _, requests = sync(state, tokens, crowded + spread, max_batch=6)
    assert state.bits == 3
    assert max(len(r.positions) for r in requests) <= 6


def test_a_proof_too_large_for_a_message_is_left_out(tokens: ResyncTokens) -> None:
    """A crowded part (60 of a 100-hash batch) whose hashes all changed: 60 hashes, 60 added
    and 60 removed do not fit 170 in all, though 60 removals fit the server's 70."""
    low = [bytes([0x00]) + os.urandom(31) for _ in range(60)]
    high = [bytes([0xFF]) + os.urandom(31) for _ in range(40)]
    state = onnet.SyncState()
    sync(state, tokens, low + high, max_batch=100, max_hashes=170)
    replaced = [bytes([0x00]) + os.urandom(31) for _ in range(60)]
    charged, requests = sync(state, tokens, replaced + high, max_batch=100, max_hashes=170)
    assert [(len(r.hashes) // 32, bool(r.token)) for r in requests] == [(60, False), (40, True)]
    assert charged == 60
    assert covers(state, replaced[0])


def test_removals_beyond_the_servers_limit_are_left_out(tokens: ResyncTokens) -> None:
    """A state of an old, large token: 10 of its 400 hashes synced would remove 390, more
    than the server takes (max_hashes - max_batch = 350): the part pays for its 10 again
    rather than being refused for good."""
    covered = book_of(400)
    state = onnet.SyncState(tokens.issue(ACCOUNT, b"".join(covered)), b"".join(covered))
    charged, [request] = sync(state, tokens, covered[:10], max_batch=100, max_hashes=450)
    assert (request.token, charged) == (b"", 10)
    assert covers(state, covered[0])


def test_a_refused_token_is_forgotten(tokens: ResyncTokens) -> None:
    state, book = onnet.SyncState(), book_of(10)
    sync(state, tokens, book, max_batch=100)
    [request] = state.syncs(b"".join(book), 100, 1_000)
    bare = state.forget(request)
    assert (bare.token, bare.added_hashes, bare.removed_hashes) == (b"", b"", b"")
    assert (bare.hashes, bare.positions) == (request.hashes, request.positions)
    assert state.tokens() == {}
    assert len(state) == 0


def test_a_state_in_parts_survives_a_round_trip(tokens: ResyncTokens) -> None:
    state, book = onnet.SyncState(), book_of(3_000)
    sync(state, tokens, book, max_batch=1_000)
    again = onnet.SyncState.from_bytes(state.to_bytes())
    assert (again.bits, again.tokens(), len(again)) == (state.bits, state.tokens(), 3_000)
    assert all(covers(again, h) for h in book)
    assert again.to_bytes() == state.to_bytes()
    assert again.to_bytes().startswith(b"onnet-sync-v3\n")
    with pytest.raises(ValueError, match="a token a part"):
        _ = again.token
    assert sync(again, tokens, book, max_batch=1_000)[0] == 0


def test_a_format_1_state_is_read_as_one_part(tokens: ResyncTokens) -> None:
    book = book_of(50)
    token = tokens.issue(ACCOUNT, b"".join(book))
    # Byte for byte what the SDK wrote before parts: magic, token length, token, hashes.
    v1 = b"onnet-sync-v1\n" + len(token).to_bytes(2, "big") + token + b"".join(book)
    state = onnet.SyncState.from_bytes(v1)
    assert (state.bits, state.token, len(state)) == (0, token, 50)
    assert sync(state, tokens, book + book_of(2, seed=3), max_batch=1_000)[0] == 2


@pytest.mark.parametrize(
    "data",
    [
        b"onnet-sync-v2\n",  # truncated
        b"onnet-sync-v2\n\x00\x00\x00\x00\x00\x00",  # bytes after the end
        b"onnet-sync-v2\n\x41\x00\x00\x00\x00",  # 65 bits
        # part 2 of 2^1
        b"onnet-sync-v2\n\x01\x00\x00\x00\x01" + (2).to_bytes(8, "big") + b"\x00\x01t" + bytes(4),
        # a part without a token
        b"onnet-sync-v2\n\x00\x00\x00\x00\x01" + bytes(8) + b"\x00\x00" + bytes(4),
    ],
)
def test_a_malformed_format_2_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an onnet sync state"):
        onnet.SyncState.from_bytes(data)
