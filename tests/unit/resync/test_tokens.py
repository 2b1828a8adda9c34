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
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.resync import TOKEN_SIZE, ResyncKey, ResyncTokens, derive_resync_key
from tests.unit.resync.support import (
    ACCOUNT,
    NEW_PEPPER,
    NOW,
    TTL,
    Clock,
    packed,
    split,
)

NOT_COVERED = "token does not cover previous_hashes for this account"


def refused(tokens: ResyncTokens, token: bytes, account: str, hashes: bytes, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        tokens.verify(token, account, hashes)
    assert info.value.field == "token"
    assert info.value.reason == reason


def lanes_digest(values: list[bytes]) -> bytes:
    """The sum of 16-byte values as two little-endian 64-bit lanes, modulo 2^64 each."""
    lanes = [0, 0]
    for value in values:
        for lane in (0, 1):
            part = int.from_bytes(value[8 * lane : 8 * lane + 8], "little")
            lanes[lane] = (lanes[lane] + part) % 2**64
    return b"".join(lane.to_bytes(8, "little") for lane in lanes)


def reference_digest(pepper: bytes, hashes: set[bytes]) -> bytes:
    """A version-2 set digest, one hash at a time, written from the module docstring: the
    sum of the hashes' fingerprints, AES-256 under the pepper of each hash's first 16 bytes."""
    aes = Cipher(algorithms.AES(pepper), modes.ECB()).encryptor()
    return lanes_digest(list({aes.update(h[:16]) for h in hashes}))


def reference_digest_v1(token_key: bytes, hashes: set[bytes]) -> bytes:
    """A version-1 set digest (the CBC-MAC values), one hash at a time."""
    set_key = hmac.digest(token_key, b"onnet/resync-set/v1", "sha256")
    values = []
    for h in hashes:
        aes = Cipher(algorithms.AES(set_key), modes.ECB()).encryptor()
        inner = aes.update(h[16:])
        values.append(aes.update(bytes(a ^ b for a, b in zip(h[:16], inner, strict=True))))
    return lanes_digest(values)


def version_1_token(token_key: bytes, key_id: bytes, account: str, hashes: set[bytes]) -> bytes:
    """A token as servers before version 2 issued them, made by hand from the old format."""
    header = bytes([1]) + key_id + (NOW + TTL).to_bytes(8, "big")
    digest = reference_digest_v1(token_key, hashes)
    message = b"onnet/resync/v1" + header[1:] + bytes([len(account)]) + account.encode() + digest
    return header + hmac.digest(token_key, message, "sha256")


def test_round_trip_and_layout(tokens: ResyncTokens, keyring: dict[bytes, ResyncKey]) -> None:
    covered = packed(100)
    token = tokens.issue(ACCOUNT, covered)
    tokens.verify(token, ACCOUNT, covered)
    assert len(token) == TOKEN_SIZE == 45
    kid, key = list(keyring.items())[1]
    assert token[0] == 2
    assert token[1:5] == kid
    assert int.from_bytes(token[5:13], "big") == NOW + TTL
    digest = reference_digest(NEW_PEPPER, set(split(covered)))
    message = b"onnet/resync/v2" + token[1:13] + bytes([len(ACCOUNT)]) + ACCOUNT.encode() + digest
    mac_key = hmac.digest(key.mac_key, b"onnet/resync-mac/v2", "sha256")
    assert token[13:] == hashlib.blake2b(message, key=mac_key, digest_size=32).digest()


def test_version_1_tokens_still_verify_and_renew_as_version_2(
    tokens: ResyncTokens, keyring: dict[bytes, ResyncKey]
) -> None:
    kid, key = list(keyring.items())[1]
    book = split(packed(20))
    old = version_1_token(key.mac_key, kid, ACCOUNT, set(book[:15]))
    tokens.verify(old, ACCOUNT, b"".join(book[:15]))
    refused(tokens, old, ACCOUNT, b"".join(book[:14]), NOT_COVERED)
    refused(tokens, old, "bob", b"".join(book[:15]), NOT_COVERED)
    # Read as version 2, the same MAC does not verify: the version is under the MAC.
    refused(tokens, b"\x02" + old[1:], ACCOUNT, b"".join(book[:15]), NOT_COVERED)
    # Both forms: charged for the five new hashes, answered with a version-2 token.
    cost, renewed = tokens.renew(ACCOUNT, old, b"".join(book[:15]), b"".join(book))
    assert (cost, renewed[0]) == (5, 2)
    tokens.verify(renewed, ACCOUNT, b"".join(book))
    added, removed = b"".join(book[15:]), b"".join(book[:2])
    cost, renewed = tokens.renew_difference(ACCOUNT, old, b"".join(book[2:]), added, removed)
    assert (cost, renewed[0]) == (5, 2)
    tokens.verify(renewed, ACCOUNT, b"".join(book[2:]))
    with pytest.raises(InvalidArgument) as info:  # a version-1 token proves no more than before
        tokens.renew_difference(ACCOUNT, old, b"".join(book[2:]), added[32:], removed)
    assert info.value.field == "token"


def test_a_token_covers_hash_prefixes(tokens: ResyncTokens) -> None:
    """Version 2's values are fingerprints, which read a hash's first 16 bytes, as the lookup
    does: a hash with the same prefix is the same number, one with another prefix is not."""
    book = split(packed(3))
    token = tokens.issue(ACCOUNT, b"".join(book))
    same_prefix = book[0][:16] + os.urandom(16)
    tokens.verify(token, ACCOUNT, same_prefix + b"".join(book[1:]))
    other_prefix = os.urandom(16) + book[0][16:]
    refused(tokens, token, ACCOUNT, other_prefix + b"".join(book[1:]), NOT_COVERED)


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
    swapped[-17] ^= 1  # the last byte of the last hash's prefix: another number
    refused(tokens, token, ACCOUNT, bytes(swapped), NOT_COVERED)


def test_malformed(tokens: ResyncTokens) -> None:
    token = tokens.issue(ACCOUNT, b"")
    for bad in (b"", token[:-1], token + b"\x00", b"\x03" + token[1:], b"\x00" + token[1:]):
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


def test_retired_key(keyring: dict[bytes, ResyncKey], clock: Clock) -> None:
    old_id, new_id = list(keyring)
    covered = packed(5)
    token = ResyncTokens(keyring, old_id, TTL, clock=clock).issue(ACCOUNT, covered)
    retired = ResyncTokens({new_id: keyring[new_id]}, new_id, TTL, clock=clock)
    refused(
        retired, token, ACCOUNT, covered, "token was issued under a retired key; sync without it"
    )


def test_old_key_in_keyring_still_verifies(keyring: dict[bytes, ResyncKey], clock: Clock) -> None:
    old_id, new_id = list(keyring)
    covered = packed(5)
    before = ResyncTokens({old_id: keyring[old_id]}, old_id, TTL, clock=clock)
    token = before.issue(ACCOUNT, covered)
    after = ResyncTokens(keyring, new_id, TTL, clock=clock)
    after.verify(token, ACCOUNT, covered)
    assert after.issue(ACCOUNT, covered)[1:5] == new_id


def test_same_key_bytes_under_another_id_do_not_verify(
    keyring: dict[bytes, ResyncKey], clock: Clock
) -> None:
    kid, key = next(iter(keyring.items()))
    covered = packed(2)
    token = ResyncTokens({kid: key}, kid, TTL, clock=clock).issue(ACCOUNT, covered)
    other = ResyncTokens({b"\x00\x00\x00\x00": key}, b"\x00\x00\x00\x00", TTL, clock=clock)
    relabelled = token[:1] + b"\x00\x00\x00\x00" + token[5:]
    refused(other, relabelled, ACCOUNT, covered, NOT_COVERED)


def test_constructor_checks(keyring: dict[bytes, ResyncKey]) -> None:
    kid, key = next(iter(keyring.items()))
    with pytest.raises(ValueError, match="keyring"):
        ResyncTokens(keyring, b"nope", TTL)
    with pytest.raises(ValueError, match="lifetime"):
        ResyncTokens(keyring, kid, 0)
    with pytest.raises(ValueError, match="4-byte ids"):
        ResyncTokens({b"abc": key}, b"abc", TTL)
    with pytest.raises(ValueError, match="32-byte keys"):
        ResyncKey(bytes(16), key.fingerprinter)


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
    keyring: dict[bytes, ResyncKey], old_tokens: ResyncTokens, tokens: ResyncTokens
) -> None:
    old, new, new_id = old_tokens, tokens, list(keyring)[-1]
    covered, more = packed(5), packed(2)
    cost, token = new.renew(ACCOUNT, old.issue(ACCOUNT, covered), covered, covered + more)
    assert cost == 2
    assert token[1:5] == new_id
    new.verify(token, ACCOUNT, more + covered)


def test_derived_keys() -> None:
    first_id, first = derive_resync_key(b"\x01" * 32)
    second_id, second = derive_resync_key(b"\x02" * 32)
    assert (len(first_id), len(first.mac_key)) == (4, 32)
    assert first_id != second_id
    assert first.mac_key != second.mac_key
    again_id, again = derive_resync_key(b"\x01" * 32)
    assert (again_id, again.mac_key) == (first_id, first.mac_key)
    assert first_id == hashlib.sha256(first.mac_key).digest()[:4]
    assert first.mac_key != b"\x01" * 32
    hashes = packed(2)
    assert first.fingerprinter.fingerprints(hashes) == Fingerprinter(b"\x01" * 32).fingerprints(
        hashes
    )


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


def test_previous_hashes_without_a_token_are_refused_not_free(tokens: ResyncTokens) -> None:
    book = packed(5)
    with pytest.raises(InvalidArgument) as info:
        tokens.renew(ACCOUNT, b"", book, book)
    assert (info.value.field, info.value.reason) == (
        "previous_hashes",
        "needs the token that covers them",
    )
