"""The compiled token step of a lookup job (``ResyncTokens.step``) against the Python paths.

For an unchanged book the step may only renew where ``renew_difference`` would renew for
free, with the very same token; everywhere else it says None and leaves the decision (and
any refusal) to ``renew_difference``. For a first sync it issues ``first_sync``'s token.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.errors import InvalidArgument
from onnet_server.core.resync import ResyncTokens
from onnet_server.stores.memory import MemoryRegistry
from tests.unit.job_runs import run_job
from tests.unit.resync.support import ACCOUNT, TTL, Clock, packed, split


def job_step(
    tokens: ResyncTokens,
    token: bytes,
    hashes: bytes,
    *,
    account: str = ACCOUNT,
    on_a_thread: bool = False,
) -> bytes | None:
    """The next token a lookup job's token step gives a call with ``token`` and ``hashes``
    (as Discover runs it: the job makes the batch's digest, then issues or renews)."""
    index = MemoryRegistry().index
    step = tokens.step(account, token)
    job = index.lookup_job(hashes, frozenset(), tokens.fingerprinter.lookup_key, step=step)
    run_job(job, on_a_thread=on_a_thread)
    return step.next_token()


@settings(max_examples=50, deadline=None)
@given(size=st.integers(min_value=1, max_value=300), seed=st.integers(0, 2**32 - 1))
def test_an_unchanged_book_renews_as_the_python_renewal_does(size: int, seed: int) -> None:
    tokens = ResyncTokens.from_peppers(random.Random(seed).randbytes(32), ttl_seconds=TTL)
    book = split(random.Random(seed).randbytes(32 * size))
    token = tokens.issue(ACCOUNT, b"".join(book))
    random.Random(seed).shuffle(book)  # any order
    hashes = b"".join(book)
    renewed = job_step(tokens, token, hashes)
    assert renewed is not None
    assert (0, renewed) == tokens.renew_difference(ACCOUNT, token, hashes, b"", b"")
    tokens.verify(renewed, ACCOUNT, hashes)


def test_the_renewed_token_expires_a_lifetime_after_now(tokens: ResyncTokens, clock: Clock) -> None:
    book = packed(20)
    token = tokens.issue(ACCOUNT, book)
    clock.now += 1234.75
    renewed = job_step(tokens, token, book)
    assert renewed is not None
    assert int.from_bytes(renewed[5:13], "big") == int(clock.now) + TTL


def undecided(tokens: ResyncTokens, token: bytes, hashes: bytes, account: str = ACCOUNT) -> None:
    """The job's token step leaves this call to ``renew_difference``."""
    assert job_step(tokens, token, hashes, account=account) is None


def test_a_book_with_a_hash_twice_renews_as_the_python_renewal_does(tokens: ResyncTokens) -> None:
    book = packed(30)
    token = tokens.issue(ACCOUNT, book)
    twice = book + book[:32]
    renewed = job_step(tokens, token, twice)
    # The rows' sum does not verify; the set's does: the same token as the Python renewal
    # gives once it collapsed the twin.
    assert renewed is not None
    assert (0, renewed) == tokens.renew_difference(ACCOUNT, token, twice, b"", b"")
    tokens.verify(renewed, ACCOUNT, book)


@pytest.mark.parametrize(
    "change",
    ["another account", "another book", "a hash more", "a hash less", "expired"],
)
def test_what_the_token_does_not_prove_is_left_to_the_python_renewal_which_refuses(
    tokens: ResyncTokens, clock: Clock, change: str
) -> None:
    book = packed(30)
    token = tokens.issue(ACCOUNT, book)
    account, hashes = ACCOUNT, book
    if change == "another account":
        account = "mallory"
    elif change == "another book":
        hashes = packed(30)
    elif change == "a hash more":
        hashes = book + packed(1)
    elif change == "a hash less":
        hashes = book[32:]
    else:
        clock.now += TTL
    undecided(tokens, token, hashes, account)
    with pytest.raises(InvalidArgument) as refusal:
        tokens.renew_difference(account, token, hashes, b"", b"")
    assert refusal.value.field == "token"


def test_every_altered_byte_of_the_token_is_left_to_the_python_renewal(
    tokens: ResyncTokens,
) -> None:
    book = packed(10)
    token = tokens.issue(ACCOUNT, book)
    for at in range(len(token)):
        altered = bytearray(token)
        altered[at] ^= 0x01
        undecided(tokens, bytes(altered), book)
    # (An empty token is no re-sync's: it asks for a first sync, whose token the step issues.)
    for malformed in (token[:1], token[:-1], token + b"\x00"):
        undecided(tokens, malformed, book)


def test_tokens_of_another_key_or_version_are_left_to_the_python_renewal(
    tokens: ResyncTokens, old_tokens: ResyncTokens
) -> None:
    book = packed(10)
    before_rotation = old_tokens.issue(ACCOUNT, book)
    undecided(tokens, before_rotation, book)
    cost, renewed = tokens.renew_difference(ACCOUNT, before_rotation, book, b"", b"")
    assert cost == 0
    assert job_step(tokens, renewed, book) is not None
    version_1 = bytes([1]) + before_rotation[1:]
    undecided(tokens, version_1, book)


def test_an_account_id_the_token_cannot_hold_is_an_error(tokens: ResyncTokens) -> None:
    book = packed(2)
    token = tokens.issue(ACCOUNT, book)
    with pytest.raises(ValueError, match="longer than 255"):
        job_step(tokens, token, book, account="a" * 256)
    with pytest.raises(UnicodeEncodeError):
        job_step(tokens, token, book, account="ålice")


@pytest.mark.parametrize("on_a_thread", [False, True])
def test_a_lookup_jobs_token_step_issues_and_renews_as_the_python_paths_do(
    tokens: ResyncTokens, clock: Clock, on_a_thread: bool
) -> None:
    book = packed(40)
    twice = book + book[:32]  # a first sync's hashes may repeat: the token covers the set
    issued = job_step(tokens, b"", twice, on_a_thread=on_a_thread)
    assert issued is not None
    assert issued == tokens.first_sync(ACCOUNT, twice)[1]
    clock.now += 60
    shuffled = b"".join(random.Random(1).sample(split(book), 40))
    renewed = job_step(tokens, issued, shuffled, on_a_thread=on_a_thread)
    assert renewed is not None
    assert (0, renewed) == tokens.renew_difference(ACCOUNT, issued, shuffled, b"", b"")
    # A book with a hash twice: the rows' sum does not verify, the set's does.
    again = job_step(tokens, issued, shuffled + book[:32], on_a_thread=on_a_thread)
    assert again == renewed
    # What the token does not cover is left to the Python renewal (which refuses it).
    assert job_step(tokens, issued, book + packed(1), on_a_thread=on_a_thread) is None
    assert job_step(tokens, issued[:-1] + b"\x00", book, on_a_thread=on_a_thread) is None
