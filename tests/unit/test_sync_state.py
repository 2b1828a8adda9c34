"""The SDK's re-sync state: what a token covers, kept and restored exactly."""

from __future__ import annotations

import os

import pytest

import onnet
from tests.covered import covers


def hashes(count: int) -> bytes:
    return os.urandom(32 * count)


def test_advancing_covers_every_batch_once() -> None:
    state = onnet.SyncState()
    first, second = hashes(3), hashes(2)
    state.advance(b"t1", first)
    state.advance(b"t2", second + first[:32])  # a hash seen before counts once
    assert state.token == b"t2"
    assert len(state) == 5
    covered = state.previous_hashes()
    assert sorted(covered[i : i + 32] for i in range(0, 160, 32)) == covered_list(first + second)
    assert covers(state, first[:32])
    assert not covers(state, bytes(32))


def covered_list(packed: bytes) -> list[bytes]:
    return sorted(packed[i : i + 32] for i in range(0, len(packed), 32))


def test_an_answer_without_a_token_leaves_nothing_to_carry() -> None:
    state = onnet.SyncState()
    state.advance(b"t1", hashes(2))
    state.advance(b"", hashes(1))  # a server that issues no token
    assert (state.token, len(state), state.previous_hashes()) == (b"", 0, b"")


def test_the_state_survives_a_round_trip() -> None:
    state = onnet.SyncState()
    state.advance(os.urandom(45), hashes(4))
    again = onnet.SyncState.from_bytes(state.to_bytes())
    assert (again.token, again.previous_hashes()) == (state.token, state.previous_hashes())
    empty = onnet.SyncState.from_bytes(onnet.SyncState().to_bytes())
    assert (empty.token, len(empty)) == (b"", 0)


@pytest.mark.parametrize(
    "data", [b"", b"something else", b"onnet-sync-v1\n", b"onnet-sync-v1\n\x00"]
)
def test_what_is_not_a_state_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="sync state"):
        onnet.SyncState.from_bytes(data)


def test_covered_hashes_need_their_token() -> None:
    with pytest.raises(ValueError, match="need the token"):
        onnet.SyncState(b"", hashes(1))
    with pytest.raises(ValueError, match="32 bytes each"):
        onnet.SyncState(b"t", b"x" * 33)


def test_private_outputs_survive_a_round_trip_under_their_key() -> None:
    state = onnet.SyncState()
    book = hashes(3)
    outputs = state.private_outputs("key-1")
    for i in range(3):
        outputs[book[32 * i : 32 * i + 32]] = os.urandom(64)
    saved = state.to_bytes()
    assert saved.startswith(b"onnet-sync-v3\n")
    again = onnet.SyncState.from_bytes(saved)
    assert again.private_outputs("key-1") == outputs
    assert again.to_bytes() == saved
    assert again.private_outputs("key-2") == {}  # another server key: they open nothing
    assert again.private_outputs("key-1") == {}


def test_outputs_are_kept_for_the_book_only() -> None:
    state = onnet.SyncState()
    book = hashes(3)
    outputs = state.private_outputs("k")
    for i in range(3):
        outputs[book[32 * i : 32 * i + 32]] = bytes(64)
    state.keep_outputs(book[:64])  # the third contact left the book
    assert set(state.private_outputs("k")) == {book[:32], book[32:64]}


def test_a_format_2_state_is_read_without_outputs() -> None:
    state = onnet.SyncState()
    state.advance(os.urandom(45), hashes(2))
    v3 = state.to_bytes()
    # Format 2 is format 3 without the outputs' part (here: key id length 0, count 0).
    v2 = b"onnet-sync-v2\n" + v3[len(b"onnet-sync-v3\n") : -6]
    assert v3.endswith(bytes(6))
    again = onnet.SyncState.from_bytes(v2)
    assert (again.token, again.previous_hashes()) == (state.token, state.previous_hashes())
    assert again.private_outputs("k") == {}


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00\x01",  # a key id's length, then nothing
        b"\x00\x01k\x00\x00\x00\x01" + bytes(31),  # a truncated contact hash
        b"\x00\x01k\x00\x00\x00\x01" + bytes(32) + b"\x40" + bytes(63),  # a truncated output
        b"\x00\x01\xff\x00\x00\x00\x00",  # a key id that is not UTF-8
        b"\x00\x00\x00\x00\x00\x00\x00",  # a byte after the end
    ],
)
def test_a_malformed_format_3_is_refused(tail: bytes) -> None:
    parts = onnet.SyncState().to_bytes()[:-6]  # format 3 up to the outputs' part
    with pytest.raises(ValueError, match="not an onnet sync state"):
        onnet.SyncState.from_bytes(parts + tail)
