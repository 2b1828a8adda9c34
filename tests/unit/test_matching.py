"""Discover's matching: duplicates collapse inside the lookup, blockers and hidden users are
masked like unknown numbers, and the answer lists every asked position, against a model."""

from __future__ import annotations

import asyncio
import os

from hypothesis import given, settings
from hypothesis import strategies as st

import onnet
from onnet_server.core._native import FingerprintKey
from onnet_server.core._resync_native import TokenStep
from onnet_server.core.accounts import Accounts
from onnet_server.core.discovery import DiscoveryLimits, DiscoveryService
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.index import RegistryIndex
from onnet_server.core.ports import Matches
from onnet_server.core.quota import QuotaPolicy
from onnet_server.core.resync import ResyncTokens
from onnet_server.stores.index_reads import LookedUpBatch
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.memory_quota import MemoryQuota

ACCOUNT, ACCOUNT_NUMBER = "me", "+12025550100"
NUMBERS = [f"+1415555{n:04d}" for n in range(100, 108)]
HASHES = [onnet.contact_hash(number) for number in NUMBERS]


class RecordingRegistry(MemoryRegistry):
    """The in-memory registry, keeping what each lookup was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[bytes, frozenset[str]]] = []

    async def look_up_batch(
        self,
        hashes: bytes,
        key: FingerprintKey,
        excluded: frozenset[str],
        *,
        step: TokenStep | None = None,
    ) -> LookedUpBatch:
        batch = await super().look_up_batch(hashes, key, excluded, step=step)
        self.asked.append((batch.fingerprints, excluded))
        return batch


def fresh_tokens() -> ResyncTokens:
    """Re-sync tokens under a fresh pepper; their fingerprinter is the lookup's."""
    return ResyncTokens.from_peppers(os.urandom(32), ttl_seconds=3600)


def discovery(store: MemoryRegistry, tokens: ResyncTokens) -> DiscoveryService:
    return DiscoveryService(
        store,
        DiscoveryLimits(max_batch=20_000, max_previous=20_000, max_message_bytes=4 << 20),
        MemoryQuota(QuotaPolicy(1_000_000, 1_000.0)),
        tokens=tokens,
        accounts=Accounts(store),
    )


def registry(
    users: dict[str, tuple[int, bool]], blockers: set[str], fingerprinter: Fingerprinter
) -> RecordingRegistry:
    """``users`` (user -> (index in NUMBERS, discoverable)); ``blockers`` block ACCOUNT."""
    store = RecordingRegistry()
    own = fingerprinter.fingerprint(onnet.contact_hash(ACCOUNT_NUMBER))
    store.register_now(ACCOUNT, own, False)
    for user, (number, discoverable) in users.items():
        store.register_now(user, fingerprinter.fingerprint(HASHES[number]), discoverable)
    for user in blockers:
        asyncio.run(store.set_blocked(user, own, True))
    return store


def found(answer: Matches) -> list[tuple[int, str]]:
    return list(zip(answer.indexes.tolist(), answer.user_ids, strict=True))


def ask(service: DiscoveryService, hashes: bytes) -> list[tuple[int, str]]:
    return found(asyncio.run(service.discover(ACCOUNT, hashes, b"", b"")).matches)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["u0", "u1", "u2", "u3", "u4", "u5"]),
        st.tuples(st.integers(0, len(NUMBERS) - 2), st.booleans()),
    ),
    st.sets(st.sampled_from(["u0", "u1", "u2", "u3", "u4", "u5"])),
    st.lists(st.integers(0, len(NUMBERS) - 1), min_size=1, max_size=40),
)
def test_matches_agree_with_a_model(
    users: dict[str, tuple[int, bool]], blockers: set[str], request: list[int]
) -> None:
    """Every asked position of a number whose holder is discoverable and no blocker, in order.

    The last number is never registered; users are registered in the dictionary's order,
    so the last one to claim a number holds it.
    """
    tokens = fresh_tokens()
    fingerprinter = tokens.fingerprinter
    store = registry(users, blockers & set(users), fingerprinter)
    holder = {number: user for user, (number, _) in users.items()}
    expected = [
        (position, holder[number])
        for position, number in enumerate(request)
        if number in holder and users[holder[number]][1] and holder[number] not in blockers
    ]
    assert ask(discovery(store, tokens), b"".join(HASHES[n] for n in request)) == expected


def test_duplicates_are_answered_at_every_position_by_one_lookup_call() -> None:
    tokens = fresh_tokens()
    fingerprinter = tokens.fingerprinter
    users = {"alice": (0, True), "bob": (1, True), "hidden": (2, False)}
    store = registry(users, {"bob"}, fingerprinter)
    service = discovery(store, tokens)
    request = [0, 1, 2, 3] * 2_500 + [0]
    answer = ask(service, b"".join(HASHES[n] for n in request))
    assert answer == [(i, "alice") for i, n in enumerate(request) if n == 0]
    # One lookup call, which made each position's fingerprint (the lookup collapses
    # duplicates itself: tests/unit/test_native.py), with the blocker masked inside it.
    ((fingerprints, excluded),) = store.asked
    assert fingerprints == b"".join(fingerprinter.fingerprint(HASHES[n]) for n in request)
    assert excluded == {"bob"}
    # The same number blocked, hidden or unknown, 10,000 times: nobody found.
    for number in (1, 2, 3):
        assert ask(service, HASHES[number] * 10_000) == []


def test_hashes_are_the_same_number_exactly_when_their_first_16_bytes_are() -> None:
    """A fingerprint reads 16 bytes: hashes that agree there are one number, however their
    other bytes differ; hashes that agree in 8 bytes only are two."""
    tokens = fresh_tokens()
    fingerprinter = tokens.fingerprinter
    store = RecordingRegistry()
    store.register_now(
        ACCOUNT, fingerprinter.fingerprint(onnet.contact_hash(ACCOUNT_NUMBER)), False
    )
    base = os.urandom(32)
    near = base[:8] + os.urandom(24)  # same first 8 bytes, another number
    tail = base[:16] + os.urandom(16)  # same first 16 bytes: the same number
    store.register_now("base", fingerprinter.fingerprint(base), True)
    store.register_now("near", fingerprinter.fingerprint(near), True)
    request = [base, near, base, tail, near, os.urandom(32), base[:8] + os.urandom(24)]
    answer = ask(discovery(store, tokens), b"".join(request))
    assert answer == [(0, "base"), (1, "near"), (2, "base"), (3, "base"), (4, "near")]


def test_an_answers_token_covers_exactly_the_distinct_hashes_asked() -> None:
    """Discover reuses the lookup's fingerprints as the token's set values: the token it
    answers must be the one ResyncTokens makes from the hashes themselves, for a first sync,
    a re-sync in the difference form and one in the old form."""
    tokens = fresh_tokens()
    store = registry({"alice": (0, True)}, set(), tokens.fingerprinter)
    service = discovery(store, tokens)
    book = [HASHES[n] for n in (0, 1, 2, 1)]
    first = asyncio.run(service.discover(ACCOUNT, b"".join(book), b"", b""))
    tokens.verify(first.token, ACCOUNT, b"".join(HASHES[n] for n in (0, 1, 2)))
    grown = [*book, HASHES[3]]
    again = asyncio.run(
        service.discover(ACCOUNT, b"".join(grown), first.token, b"", added_hashes=HASHES[3])
    )
    tokens.verify(again.token, ACCOUNT, b"".join(HASHES[n] for n in (0, 1, 2, 3)))
    old_form = asyncio.run(
        service.discover(ACCOUNT, HASHES[4], again.token, b"".join(HASHES[n] for n in (0, 1, 2, 3)))
    )
    tokens.verify(old_form.token, ACCOUNT, b"".join(HASHES[n] for n in (0, 1, 2, 3, 4)))


def test_the_index_masks_hidden_and_excluded_holders_but_holders_counts_them() -> None:
    index = RegistryIndex()
    numbers = [os.urandom(16) for _ in range(5)]
    for version, (user, number, discoverable) in enumerate(
        [("a", 0, True), ("b", 1, False), ("c", 2, True), ("d", 3, True)], start=1
    ):
        index.put(user, numbers[number], version, discoverable)
    asked = b"".join(numbers[n] for n in (4, 3, 2, 1, 0, 3))
    assert found(index.match(asked)) == [(1, "d"), (2, "c"), (4, "a"), (5, "d")]
    excluded = frozenset({"d", "b", "nobody"})
    assert found(index.match(asked, excluded)) == [(2, "c"), (4, "a")]
    assert found(index.match(numbers[3], excluded)) == []  # the one-number path
    assert found(index.match(numbers[2], excluded)) == [(0, "c")]
    assert found(index.holders(asked)) == [(1, "d"), (2, "c"), (3, "b"), (4, "a"), (5, "d")]
