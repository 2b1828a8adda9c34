"""Re-sync tokens across a pepper rotation and an upgrade, and the key they are made under.

Each test here was seen to fail with a mutant of core/resync.py that the unit layer let
live (README, "Testing"). The peppers, clock and version-1 tokens are those of the token
tests (tests/unit/resync).
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onnet_server.core.resync import ResyncTokens, derive_resync_key
from tests.unit.resync.support import ACCOUNT, NEW_PEPPER, OLD_PEPPER, TTL, Clock, packed, split
from tests.unit.resync.test_tokens import version_1_token


def test_a_token_of_the_previous_pepper_still_counts_after_a_rotation() -> None:
    clock = Clock()
    before = ResyncTokens.from_peppers(OLD_PEPPER, ttl_seconds=TTL, clock=clock)
    after = ResyncTokens.from_peppers(NEW_PEPPER, OLD_PEPPER, ttl_seconds=TTL, clock=clock)
    book = packed(5)
    token = before.issue(ACCOUNT, book)
    after.verify(token, ACCOUNT, book)
    cost, renewed = after.renew(ACCOUNT, token, book, book)
    assert cost == 0
    assert renewed[1:5] == derive_resync_key(NEW_PEPPER)[0] != token[1:5]


def test_a_version_1_token_proves_a_book_that_only_shrank() -> None:
    """The difference form with removed hashes alone: no added hashes to take values of."""
    current_id, current = derive_resync_key(NEW_PEPPER)
    tokens = ResyncTokens({current_id: current}, current_id, TTL, clock=Clock())
    book = split(packed(6))
    old = version_1_token(current.mac_key, current_id, ACCOUNT, set(book))
    kept, removed = b"".join(book[2:]), b"".join(book[:2])
    cost, renewed = tokens.renew_difference(ACCOUNT, old, kept, b"", removed)
    assert (cost, renewed[0]) == (0, 2)
    tokens.verify(renewed, ACCOUNT, kept)


def test_the_token_key_is_hkdf_sha256_of_the_pepper_under_its_own_label() -> None:
    """Written from the module: every token ever issued is under this key, so a change to
    the derivation would void them all at an upgrade (and charge every book again)."""
    key_id, key = derive_resync_key(NEW_PEPPER)
    hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"onnet/resync-token/v1")
    expected = hkdf.derive(NEW_PEPPER)
    assert key.mac_key == expected
    assert key_id == hashlib.sha256(expected).digest()[:4]


def test_a_token_may_live_one_second_but_not_none() -> None:
    ResyncTokens.from_peppers(NEW_PEPPER, ttl_seconds=1)
    with pytest.raises(ValueError, match="must be positive"):
        ResyncTokens.from_peppers(NEW_PEPPER, ttl_seconds=0)
