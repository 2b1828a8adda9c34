"""The SDK's re-sync state: what a token covers, kept and restored exactly."""

from __future__ import annotations

import os

import pytest

import onnet


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
    assert state.covers(first[:32])
    assert not state.covers(bytes(32))


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
