from __future__ import annotations

import hashlib
import hmac
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnet_server.core.errors import InvalidArgument
from onnet_server.core.resync import (
    TOKEN_SIZE,
    ResyncTokens,
    covered_union,
    derive_resync_key,
    new_hashes,
)

NOW = 1_700_000_000
TTL = 86_400
ACCOUNT = "alice-7f3a"
NOT_COVERED = "token does not cover previous_hashes for this account"


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def packed(n: int) -> bytes:
    return os.urandom(32 * n)


def split(data: bytes) -> list[bytes]:
    return [data[i : i + 32] for i in range(0, len(data), 32)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyring() -> dict[bytes, bytes]:
    return dict([derive_resync_key(b"old pepper " * 3), derive_resync_key(b"new pepper " * 3)])


@pytest.fixture
def tokens(keyring: dict[bytes, bytes], clock: Clock) -> ResyncTokens:
    return ResyncTokens(keyring, list(keyring)[1], TTL, clock=clock)


def refused(tokens: ResyncTokens, token: bytes, account: str, hashes: bytes, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        tokens.verify(token, account, hashes)
    assert info.value.field == "token"
    assert info.value.reason == reason


def test_round_trip_and_layout(tokens: ResyncTokens, keyring: dict[bytes, bytes]) -> None:
    covered = packed(100)
    token = tokens.issue(ACCOUNT, covered)
    tokens.verify(token, ACCOUNT, covered)
    assert len(token) == TOKEN_SIZE == 45
    kid, key = list(keyring.items())[1]
    assert token[0] == 1
    assert token[1:5] == kid
    assert int.from_bytes(token[5:13], "big") == NOW + TTL
    digest = hashlib.sha256(b"".join(sorted(set(split(covered))))).digest()
    message = b"onnet/resync/v1" + token[1:13] + bytes([len(ACCOUNT)]) + ACCOUNT.encode() + digest
    assert token[13:] == hmac.digest(key, message, "sha256")


def test_empty_set_round_trip(tokens: ResyncTokens) -> None:
    tokens.verify(tokens.issue(ACCOUNT, b""), ACCOUNT, b"")
    refused(tokens, tokens.issue(ACCOUNT, b""), ACCOUNT, packed(1), NOT_COVERED)


def test_order_and_duplicates_do_not_matter(tokens: ResyncTokens) -> None:
    hashes = split(packed(50))
    token = tokens.issue(ACCOUNT, b"".join(hashes + hashes[:10]))
    shuffled = hashes + hashes[5:20]
    random.shuffle(shuffled)
    tokens.verify(token, ACCOUNT, b"".join(shuffled))
    tokens.verify(token, ACCOUNT, covered_union(b"".join(hashes), b""))


def test_other_account_refused(tokens: ResyncTokens) -> None:
    covered = packed(10)
    token = tokens.issue(ACCOUNT, covered)
    refused(tokens, token, "bob", covered, NOT_COVERED)
    # The length prefix keeps the account from running into the digest.
    refused(tokens, token, ACCOUNT + "x", covered, NOT_COVERED)


def test_flipped_bit_anywhere_refused(tokens: ResyncTokens) -> None:
    covered = packed(10)
    token = tokens.issue(ACCOUNT, covered)
    for bit in range(len(token) * 8):
        altered = bytearray(token)
        altered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidArgument) as info:
            tokens.verify(bytes(altered), ACCOUNT, covered)
        assert info.value.field == "token"


def test_extra_or_missing_previous_hash_refused(tokens: ResyncTokens) -> None:
    covered = packed(10)
    token = tokens.issue(ACCOUNT, covered)
    refused(tokens, token, ACCOUNT, covered + packed(1), NOT_COVERED)
    refused(tokens, token, ACCOUNT, covered[32:], NOT_COVERED)
    refused(tokens, token, ACCOUNT, b"", NOT_COVERED)
    swapped = bytearray(covered)
    swapped[-1] ^= 1
    refused(tokens, token, ACCOUNT, bytes(swapped), NOT_COVERED)


def test_malformed(tokens: ResyncTokens) -> None:
    token = tokens.issue(ACCOUNT, b"")
    for bad in (b"", token[:-1], token + b"\x00", b"\x02" + token[1:]):
        refused(tokens, bad, ACCOUNT, b"", "token is malformed")


def test_misaligned_previous_hashes(tokens: ResyncTokens) -> None:
    with pytest.raises(InvalidArgument) as info:
        tokens.verify(tokens.issue(ACCOUNT, b""), ACCOUNT, b"\x00" * 33)
    assert info.value.field == "previous_hashes"
    with pytest.raises(ValueError, match="32-byte"):
        tokens.issue(ACCOUNT, b"\x00" * 31)


def test_expired(tokens: ResyncTokens, clock: Clock) -> None:
    covered = packed(3)
    token = tokens.issue(ACCOUNT, covered)
    clock.now = NOW + TTL - 0.5
    tokens.verify(token, ACCOUNT, covered)
    clock.now = NOW + TTL
    refused(tokens, token, ACCOUNT, covered, "token expired; sync without it")


def test_retired_key(keyring: dict[bytes, bytes], clock: Clock) -> None:
    old_id, new_id = list(keyring)
    covered = packed(5)
    token = ResyncTokens(keyring, old_id, TTL, clock=clock).issue(ACCOUNT, covered)
    retired = ResyncTokens({new_id: keyring[new_id]}, new_id, TTL, clock=clock)
    refused(
        retired, token, ACCOUNT, covered, "token was issued under a retired key; sync without it"
    )


def test_old_key_in_keyring_still_verifies(keyring: dict[bytes, bytes], clock: Clock) -> None:
    old_id, new_id = list(keyring)
    covered = packed(5)
    before = ResyncTokens({old_id: keyring[old_id]}, old_id, TTL, clock=clock)
    token = before.issue(ACCOUNT, covered)
    after = ResyncTokens(keyring, new_id, TTL, clock=clock)
    after.verify(token, ACCOUNT, covered)
    assert after.issue(ACCOUNT, covered)[1:5] == new_id


def test_same_key_bytes_under_another_id_do_not_verify(
    keyring: dict[bytes, bytes], clock: Clock
) -> None:
    kid, key = next(iter(keyring.items()))
    covered = packed(2)
    token = ResyncTokens({kid: key}, kid, TTL, clock=clock).issue(ACCOUNT, covered)
    other = ResyncTokens({b"\x00\x00\x00\x00": key}, b"\x00\x00\x00\x00", TTL, clock=clock)
    relabelled = token[:1] + b"\x00\x00\x00\x00" + token[5:]
    refused(other, relabelled, ACCOUNT, covered, NOT_COVERED)


def test_constructor_checks(keyring: dict[bytes, bytes]) -> None:
    kid = next(iter(keyring))
    with pytest.raises(ValueError, match="keyring"):
        ResyncTokens(keyring, b"nope", TTL)
    with pytest.raises(ValueError, match="ttl"):
        ResyncTokens(keyring, kid, 0)
    with pytest.raises(ValueError, match="4-byte ids"):
        ResyncTokens({b"abc": bytes(32)}, b"abc", TTL)
    with pytest.raises(ValueError, match="32-byte keys"):
        ResyncTokens({b"abcd": bytes(16)}, b"abcd", TTL)


# A small alphabet of hashes, so that drawn batches overlap and repeat often.
ALPHABET = [hashlib.sha256(bytes([i])).digest() for i in range(12)] + [bytes(32), b"\xff" * 32]
batches = st.lists(st.sampled_from(ALPHABET), max_size=30)


@given(batches, batches)
def test_new_hashes_and_covered_union_match_sets(
    previous: list[bytes], hashes: list[bytes]
) -> None:
    assert new_hashes(b"".join(hashes), b"".join(previous)) == len(set(hashes) - set(previous))
    union = covered_union(b"".join(previous), b"".join(hashes))
    assert union == b"".join(sorted(set(previous) | set(hashes)))


def test_large_random_batches_match_sets() -> None:
    pool = split(packed(15_000))
    rng = random.Random(7)
    previous = rng.choices(pool, k=12_000)
    hashes = rng.choices(pool, k=12_000)
    assert new_hashes(b"".join(hashes), b"".join(previous)) == len(set(hashes) - set(previous))
    union = covered_union(b"".join(previous), b"".join(hashes))
    assert union == b"".join(sorted(set(previous) | set(hashes)))


def test_empty_inputs() -> None:
    one = packed(1)
    assert new_hashes(b"", b"") == 0
    assert new_hashes(b"", one) == 0
    assert new_hashes(one + one, b"") == 1
    assert covered_union(b"", b"") == b""
    assert covered_union(one, b"") == one
    assert covered_union(b"", one + one) == one


def test_sorting_is_bytewise_not_numeric() -> None:
    low, high = b"\x01" + b"\xff" * 31, b"\x02" + b"\x00" * 31
    assert covered_union(high, low) == low + high


def test_derived_keys() -> None:
    first_id, first_key = derive_resync_key(b"\x01" * 32)
    second_id, second_key = derive_resync_key(b"\x02" * 32)
    assert (len(first_id), len(first_key)) == (4, 32)
    assert first_id != second_id
    assert first_key != second_key
    assert derive_resync_key(b"\x01" * 32) == (first_id, first_key)
    assert first_id == hashlib.sha256(first_key).digest()[:4]
    assert first_key != b"\x01" * 32
