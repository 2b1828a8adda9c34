from __future__ import annotations

import hashlib
import hmac
import os
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from onnet_server.core.errors import InvalidArgument
from onnet_server.core.resync import (
    TOKEN_SIZE,
    ResyncTokens,
    derive_resync_key,
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


def reference_digest(token_key: bytes, hashes: set[bytes]) -> bytes:
    """The set digest, one hash at a time, written from the module docstring."""
    set_key = hmac.digest(token_key, b"onnet/resync-set/v1", "sha256")
    lanes = [0, 0]
    for h in hashes:
        aes = Cipher(algorithms.AES(set_key), modes.ECB()).encryptor()
        inner = aes.update(h[16:])
        value = aes.update(bytes(a ^ b for a, b in zip(h[:16], inner, strict=True)))
        for lane in (0, 1):
            part = int.from_bytes(value[8 * lane : 8 * lane + 8], "little")
            lanes[lane] = (lanes[lane] + part) % 2**64
    return b"".join(lane.to_bytes(8, "little") for lane in lanes)


def test_round_trip_and_layout(tokens: ResyncTokens, keyring: dict[bytes, bytes]) -> None:
    covered = packed(100)
    token = tokens.issue(ACCOUNT, covered)
    tokens.verify(token, ACCOUNT, covered)
    assert len(token) == TOKEN_SIZE == 45
    kid, key = list(keyring.items())[1]
    assert token[0] == 1
    assert token[1:5] == kid
    assert int.from_bytes(token[5:13], "big") == NOW + TTL
    digest = reference_digest(key, set(split(covered)))
    message = b"onnet/resync/v1" + token[1:13] + bytes([len(ACCOUNT)]) + ACCOUNT.encode() + digest
    assert token[13:] == hmac.digest(key, message, "sha256")


def test_empty_set_round_trip(tokens: ResyncTokens) -> None:
    tokens.verify(tokens.issue(ACCOUNT, b""), ACCOUNT, b"")
    refused(tokens, tokens.issue(ACCOUNT, b""), ACCOUNT, packed(1), NOT_COVERED)


def test_order_does_not_matter_but_each_hash_comes_once(tokens: ResyncTokens) -> None:
    hashes = split(packed(50))
    token = tokens.issue(ACCOUNT, b"".join(hashes + hashes[:10]))  # issued for the set
    shuffled = list(hashes)
    random.shuffle(shuffled)
    tokens.verify(token, ACCOUNT, b"".join(shuffled))
    tokens.verify(token, ACCOUNT, b"".join(sorted(hashes)))
    refused(tokens, token, ACCOUNT, b"".join(hashes + hashes[:1]), NOT_COVERED)


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


def renew_with_sets(
    tokens: ResyncTokens, previous: list[bytes], hashes: list[bytes]
) -> tuple[int, bytes]:
    distinct = list(dict.fromkeys(previous))  # what a token covers: each hash once
    token = tokens.issue(ACCOUNT, b"".join(previous)) if previous else b""
    return tokens.renew(ACCOUNT, token, b"".join(distinct), b"".join(hashes))


@given(batches, batches)
def test_renew_charges_and_covers_like_sets(previous: list[bytes], hashes: list[bytes]) -> None:
    tokens = ResyncTokens(
        dict([derive_resync_key(b"p" * 32)]), derive_resync_key(b"p" * 32)[0], TTL
    )
    cost, token = renew_with_sets(tokens, previous, hashes)
    assert cost == len(set(hashes) - set(previous))
    union = sorted(set(previous) | set(hashes))
    tokens.verify(token, ACCOUNT, b"".join(union))  # the next token covers exactly the union
    if union:
        with pytest.raises(InvalidArgument):
            tokens.verify(token, ACCOUNT, b"".join(union[1:]))


def test_large_random_batches_match_sets(tokens: ResyncTokens) -> None:
    pool = split(packed(15_000))
    rng = random.Random(7)
    previous = rng.choices(pool, k=12_000)
    hashes = rng.choices(pool, k=12_000)
    cost, token = renew_with_sets(tokens, previous, hashes)
    assert cost == len(set(hashes) - set(previous))
    tokens.verify(token, ACCOUNT, b"".join(set(previous) | set(hashes)))


def test_empty_inputs(tokens: ResyncTokens) -> None:
    one = packed(1)
    assert renew_with_sets(tokens, [], [])[0] == 0
    assert renew_with_sets(tokens, [one], [])[0] == 0
    assert renew_with_sets(tokens, [], [one, one])[0] == 1
    tokens.verify(renew_with_sets(tokens, [], [one, one])[1], ACCOUNT, one)


def test_renew_checks_the_token_first(tokens: ResyncTokens) -> None:
    covered = packed(3)
    with pytest.raises(InvalidArgument) as info:
        tokens.renew(ACCOUNT, tokens.issue("bob", covered), covered, packed(1))
    assert info.value.field == "token"
    with pytest.raises(InvalidArgument) as misaligned:
        tokens.renew(ACCOUNT, b"", b"", b"x" * 33)
    assert misaligned.value.field == "hashes"


def test_a_token_of_the_previous_key_renews_under_the_current_one(
    keyring: dict[bytes, bytes], clock: Clock
) -> None:
    old_id, new_id = list(keyring)
    old = ResyncTokens(keyring, old_id, TTL, clock=clock)
    new = ResyncTokens(keyring, new_id, TTL, clock=clock)
    covered, more = packed(5), packed(2)
    cost, token = new.renew(ACCOUNT, old.issue(ACCOUNT, covered), covered, covered + more)
    assert cost == 2
    assert token[1:5] == new_id
    new.verify(token, ACCOUNT, more + covered)


def test_derived_keys() -> None:
    first_id, first_key = derive_resync_key(b"\x01" * 32)
    second_id, second_key = derive_resync_key(b"\x02" * 32)
    assert (len(first_id), len(first_key)) == (4, 32)
    assert first_id != second_id
    assert first_key != second_key
    assert derive_resync_key(b"\x01" * 32) == (first_id, first_key)
    assert first_id == hashlib.sha256(first_key).digest()[:4]
    assert first_key != b"\x01" * 32


def test_an_unchanged_book_renews_for_free(tokens: ResyncTokens) -> None:
    book = packed(20)
    cost, token = tokens.renew(ACCOUNT, tokens.issue(ACCOUNT, book), book, book)
    assert cost == 0
    tokens.verify(token, ACCOUNT, book)
    with pytest.raises(InvalidArgument):  # the shortcut still checks the token first
        tokens.renew("bob", token, book, book)


def test_an_unchanged_book_in_another_order_renews_for_free(tokens: ResyncTokens) -> None:
    book = split(packed(20))
    token = tokens.issue(ACCOUNT, b"".join(book))
    shuffled = list(book)
    random.shuffle(shuffled)
    cost, renewed = tokens.renew(ACCOUNT, token, b"".join(sorted(book)), b"".join(shuffled))
    assert cost == 0
    tokens.verify(renewed, ACCOUNT, b"".join(book))
    # As many hashes, one of them new: charged, not skipped.
    swapped = [*shuffled[:-1], packed(1)]
    assert tokens.renew(ACCOUNT, token, b"".join(book), b"".join(swapped))[0] == 1
    # As many hashes, one of them a repeat: nothing new, by the full path.
    repeated = [*shuffled[:-1], shuffled[0]]
    assert tokens.renew(ACCOUNT, token, b"".join(book), b"".join(repeated))[0] == 0
