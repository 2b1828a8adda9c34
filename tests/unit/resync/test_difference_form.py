"""The difference form of a re-sync: the book once, plus what was added and removed.

The promise (core/resync.py): a request is free only for hashes the token covers, charged
exactly the added ones, and the next token covers exactly the book. Every way of claiming
coverage that the token does not prove is refused.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnet_server.core.errors import InvalidArgument
from onnet_server.core.resync import ResyncKey, ResyncTokens, derive_resync_key
from tests.unit.resync.support import (
    ACCOUNT,
    NOW,
    TTL,
    Clock,
    packed,
    split,
)

NOT_COVERED = (
    "token does not cover hashes without added_hashes, plus removed_hashes, for this account"
)


def refused(
    tokens: ResyncTokens,
    token: bytes,
    hashes: bytes,
    added: bytes = b"",
    removed: bytes = b"",
    *,
    field: str = "token",
    reason: str = NOT_COVERED,
    account: str = ACCOUNT,
) -> None:
    with pytest.raises(InvalidArgument) as info:
        tokens.renew_difference(account, token, hashes, added, removed)
    assert (info.value.field, info.value.reason) == (field, reason)


def test_an_unchanged_book_is_free_and_the_next_token_covers_it(tokens: ResyncTokens) -> None:
    book = split(packed(50))
    token = tokens.issue(ACCOUNT, b"".join(book))
    random.shuffle(book)  # any order
    cost, renewed = tokens.renew_difference(ACCOUNT, token, b"".join(book), b"", b"")
    assert cost == 0
    tokens.verify(renewed, ACCOUNT, b"".join(book))


def test_added_ones_are_charged_removed_ones_are_dropped(tokens: ResyncTokens) -> None:
    kept, gone, new = packed(40), packed(3), packed(5)
    token = tokens.issue(ACCOUNT, kept + gone)
    cost, renewed = tokens.renew_difference(ACCOUNT, token, new + kept, new, gone)
    assert cost == 5
    tokens.verify(renewed, ACCOUNT, kept + new)  # exactly the book: the removed are gone
    with pytest.raises(InvalidArgument):
        tokens.verify(renewed, ACCOUNT, kept + new + gone)


def test_a_hash_missing_from_added_is_refused(tokens: ResyncTokens) -> None:
    kept, new = packed(10), packed(3)
    token = tokens.issue(ACCOUNT, kept)
    refused(tokens, token, kept + new, new[32:])  # one new hash claimed as covered
    refused(tokens, token, kept + new)  # all of them


def test_a_forged_removal_is_refused(tokens: ResyncTokens) -> None:
    kept, gone = packed(10), packed(2)
    token = tokens.issue(ACCOUNT, kept + gone)
    forged = packed(1)
    refused(tokens, token, kept, b"", gone + forged)  # removes one it never covered
    refused(tokens, token, kept, b"", gone[32:])  # forgets a removal
    # A hash sent as new that is not covered, cancelled by a removal of another one: the
    # sums differ unless the keyed values collide, which nobody can arrange.
    refused(tokens, token, kept + forged, b"", gone[32:])


def test_added_must_be_in_hashes(tokens: ResyncTokens) -> None:
    kept = packed(10)
    token = tokens.issue(ACCOUNT, kept)
    refused(
        tokens,
        token,
        kept,
        packed(1),
        field="added_hashes",
        reason="holds a hash that hashes does not hold",
    )


def test_added_and_removed_hold_each_hash_once(tokens: ResyncTokens) -> None:
    kept, new, gone = packed(10), packed(2), packed(2)
    token = tokens.issue(ACCOUNT, kept + gone)
    once = "holds a hash more than once"
    refused(tokens, token, kept + new, new + new[:32], gone, field="added_hashes", reason=once)
    refused(tokens, token, kept + new, new, gone + gone[:32], field="removed_hashes", reason=once)


def test_duplicates_in_hashes_collapse(tokens: ResyncTokens) -> None:
    kept, new = packed(10), packed(2)
    token = tokens.issue(ACCOUNT, kept)
    # A repeated covered hash is free once and adds nothing to what the token covers.
    cost, renewed = tokens.renew_difference(ACCOUNT, token, kept + kept[:64], b"", b"")
    assert cost == 0
    tokens.verify(renewed, ACCOUNT, kept)
    # A repeated new hash is charged once.
    cost, renewed = tokens.renew_difference(ACCOUNT, token, kept + new + new, new, b"")
    assert cost == 2
    tokens.verify(renewed, ACCOUNT, kept + new)
    # A repeat does not stand in for a missing removal or a missing addition.
    refused(tokens, tokens.issue(ACCOUNT, kept + new), kept + kept[:32])
    refused(tokens, token, kept + new[:32] + new[:32])
    # Nor for a covered hash declared added: as a set, the book lacks it.
    refused(tokens, token, kept + kept[:32], kept[:32])


def test_a_hash_both_added_and_removed(tokens: ResyncTokens) -> None:
    kept = packed(10)
    token = tokens.issue(ACCOUNT, kept)
    both = kept[:32]
    # Covered, listed in both: it verifies, and is charged although it was paid for.
    cost, renewed = tokens.renew_difference(ACCOUNT, token, kept, both, both)
    assert cost == 1
    tokens.verify(renewed, ACCOUNT, kept)
    # Not covered, listed in both: refused, so it cannot pass for a covered one.
    new = packed(1)
    refused(tokens, token, kept + new, new, new)


def test_another_accounts_token_is_refused(tokens: ResyncTokens) -> None:
    book = packed(10)
    token = tokens.issue("bob", book)
    refused(tokens, token, book)
    refused(tokens, token, book, book)  # even when every hash is declared new


def test_an_expired_or_malformed_token_is_refused(tokens: ResyncTokens, clock: Clock) -> None:
    book = packed(3)
    token = tokens.issue(ACCOUNT, book)
    clock.now = NOW + TTL
    refused(tokens, token, book, reason="token expired; sync without it")
    refused(tokens, token[:-1], book, reason="token is malformed")


def test_an_altered_token_is_refused(tokens: ResyncTokens) -> None:
    book = packed(5)
    token = tokens.issue(ACCOUNT, book)
    for bit in range(13 * 8, len(token) * 8, 7):  # the MAC's bits
        altered = bytearray(token)
        altered[bit // 8] ^= 1 << (bit % 8)
        refused(tokens, bytes(altered), book)


def test_a_token_may_be_presented_more_than_once(tokens: ResyncTokens) -> None:
    """It proves coverage; it is not spent. Each use is free only for what it covers."""
    low, high = packed(6), packed(6)
    token = tokens.issue(ACCOUNT, low + high)
    cost, for_low = tokens.renew_difference(ACCOUNT, token, low, b"", high)
    assert cost == 0
    cost, for_high = tokens.renew_difference(ACCOUNT, token, high, b"", low)
    assert cost == 0
    tokens.verify(for_low, ACCOUNT, low)
    tokens.verify(for_high, ACCOUNT, high)
    assert tokens.renew_difference(ACCOUNT, token, low + high, b"", b"")[0] == 0
    refused(tokens, token, low + packed(1), b"", high)  # still nothing it does not cover


def test_misaligned_fields_are_named(tokens: ResyncTokens) -> None:
    token = tokens.issue(ACCOUNT, b"")
    reason = "length 33 is not a multiple of 32 bytes"
    for field, args in {
        "hashes": (b"x" * 33, b"", b""),
        "added_hashes": (packed(1), b"x" * 33, b""),
        "removed_hashes": (packed(1), b"", b"x" * 33),
    }.items():
        with pytest.raises(InvalidArgument) as info:
            tokens.renew_difference(ACCOUNT, token, *args)
        assert (info.value.field, info.value.reason) == (field, reason)


def test_a_token_of_the_previous_key_renews_under_the_current_one(
    keyring: dict[bytes, ResyncKey], old_tokens: ResyncTokens, tokens: ResyncTokens
) -> None:
    old, new, new_id = old_tokens, tokens, list(keyring)[-1]
    kept, gone, added = packed(8), packed(2), packed(3)
    for book, plus in ((kept, b""), (kept + added, added), (kept + kept[:32], b"")):
        cost, token = new.renew_difference(
            ACCOUNT, old.issue(ACCOUNT, kept + gone), book, plus, gone
        )
        assert cost == len(plus) // 32
        assert token[1:5] == new_id
        new.verify(token, ACCOUNT, kept + plus)


# A small alphabet, so that drawn sets overlap often.
ALPHABET = [bytes([i]) * 32 for i in range(16)]
sets = st.sets(st.sampled_from(ALPHABET), max_size=12)


@given(sets, sets, st.randoms(use_true_random=False))
def test_the_difference_of_any_two_sets_verifies_and_charges_the_new(
    covered: set[bytes], book: set[bytes], rng: random.Random
) -> None:
    tokens = ResyncTokens(
        dict([derive_resync_key(b"p" * 32)]), derive_resync_key(b"p" * 32)[0], TTL
    )
    token = tokens.issue(ACCOUNT, b"".join(covered))
    added, removed = book - covered, covered - book
    order = list(book)
    rng.shuffle(order)
    if not order:
        return  # a Discover needs at least one hash
    cost, renewed = tokens.renew_difference(
        ACCOUNT, token, b"".join(order), b"".join(added), b"".join(removed)
    )
    assert cost == len(added)
    tokens.verify(renewed, ACCOUNT, b"".join(book))
    # Claiming any one hash of `added` as covered, or leaving out any removal, is refused.
    for claim in added:
        with pytest.raises(InvalidArgument):
            tokens.renew_difference(
                ACCOUNT, token, b"".join(order), b"".join(added - {claim}), b"".join(removed)
            )
    for kept in removed:
        with pytest.raises(InvalidArgument):
            tokens.renew_difference(
                ACCOUNT, token, b"".join(order), b"".join(added), b"".join(removed - {kept})
            )
