"""PrivateDiscovery without a server: BlindEvaluate's charge and refusals, FetchBuckets' bounds.

docs/protocol.md "Discovery.BlindEvaluate": each element costs one unit of the account's
quota, and a call that does not fit is refused whole, field ``blinded_elements``, before any
evaluation. "Discovery.FetchBuckets": ``prefix_bits`` is GetConfig's ``b`` or ``b - 1``, at
most ``max_buckets`` buckets below ``2^prefix_bits``, no quota, and no entry of a user who
blocked the caller's number.
"""

from __future__ import annotations

import pytest

from onnet import ImportRow
from onnet.protocol import buckets, oprf
from onnet_server.core.errors import InvalidArgument, QuotaExceeded, UnknownAccount
from onnet_server.core.wire_answers import decode_buckets
from tests.unit.core.wiring import (
    ACCOUNT,
    ACCOUNT_NUMBER,
    CAPACITY,
    MAX_BATCH,
    REFILL_SECONDS,
    Core,
    MakeCore,
    numbers,
    packed,
)

USERS = numbers(64)
"""Enough discoverable users for buckets of two bits (16 to 31 entries each)."""
BITS = 2


def blinded(*e164: str) -> tuple[list[bytes], bytes]:
    """The blinds and the packed blinded elements of ``e164``, as a client makes them."""
    pairs = [oprf.blind(number.encode("ascii")) for number in e164]
    return [blind for blind, _ in pairs], b"".join(element for _, element in pairs)


def output(core: Core, e164: str) -> bytes:
    """The OPRF output of ``e164``: what a client finalizes from BlindEvaluate's answer."""
    return oprf.evaluate(core.oprf_key.secret, e164.encode("ascii"))


def opened(answer: bytes, output: bytes) -> list[str]:
    """The user ids in ``answer``'s entries that open with ``output``."""
    entries = [entry for found in decode_buckets(answer).values() for entry in found]
    return [user for entry in entries if (user := buckets.open_entry(output, entry)) is not None]


@pytest.fixture
async def populated(core: Core) -> Core:
    """USERS registered, user-0 to user-63, all discoverable."""
    rows = [ImportRow(f"user-{n}", e164, True) for n, e164 in enumerate(USERS)]
    outcome = await core.registry.import_batch(rows[:MAX_BATCH], first_row=0)
    outcome_rest = await core.registry.import_batch(rows[MAX_BATCH:], first_row=MAX_BATCH)
    assert outcome.imported + outcome_rest.imported == len(USERS)
    assert core.private.buckets.prefix_bits() == BITS
    return core


# BlindEvaluate


async def test_blind_evaluate_answers_each_element_and_charges_one_unit_each(core: Core) -> None:
    book = numbers(3)
    blinds, elements = blinded(*book, book[0])  # a repeated contact costs again
    evaluated = await core.private.blind_evaluate(ACCOUNT, elements)
    assert len(evaluated) == 4 * oprf.ELEMENT_SIZE
    outputs = [
        oprf.finalize(number.encode("ascii"), blind, evaluated[32 * i : 32 * i + 32])
        for i, (number, blind) in enumerate(zip([*book, book[0]], blinds, strict=True))
    ]
    assert outputs == [output(core, number) for number in [*book, book[0]]]
    assert await core.remaining() == CAPACITY - 4
    assert core.heavy.ran == ["check", "evaluate_checked"]  # both off the event loop


async def test_a_whole_batch_of_elements_is_taken(core: Core) -> None:
    _, elements = blinded(*numbers(MAX_BATCH))
    assert len(await core.private.blind_evaluate(ACCOUNT, elements)) == len(elements)
    assert await core.remaining() == CAPACITY - MAX_BATCH


async def test_blind_evaluate_and_discover_spend_one_quota(core: Core) -> None:
    _, elements = blinded(*numbers(30))
    await core.private.blind_evaluate(ACCOUNT, elements)
    with pytest.raises(QuotaExceeded):
        await core.discovery.discover(ACCOUNT, packed(*numbers(CAPACITY - 29, 500)), b"", b"")
    assert await core.remaining() == CAPACITY - 30


async def test_a_blind_evaluate_over_the_quota_is_refused_before_any_work(
    make_core: MakeCore,
) -> None:
    core = make_core(capacity=10)
    _, spent = blinded(*numbers(8))
    await core.private.blind_evaluate(ACCOUNT, spent)
    core.heavy.ran.clear()
    _, elements = blinded(*numbers(3, first=500))
    with pytest.raises(QuotaExceeded) as refused:
        await core.private.blind_evaluate(ACCOUNT, elements)
    assert refused.value.field == "blinded_elements"
    wait = refused.value.retry_after
    assert wait is not None
    assert wait == pytest.approx(REFILL_SECONDS / 10)  # one unit short
    assert core.heavy.ran == []  # not even decoded
    assert await core.remaining() == 2  # nothing charged
    core.clock.now += wait
    assert len(await core.private.blind_evaluate(ACCOUNT, elements)) == 3 * oprf.ELEMENT_SIZE
    assert await core.remaining() == 0


async def test_a_blind_evaluate_larger_than_the_whole_quota_says_waiting_will_not_help(
    make_core: MakeCore,
) -> None:
    core = make_core(capacity=10)
    _, elements = blinded(*numbers(11))
    with pytest.raises(QuotaExceeded, match="exceed the whole quota") as refused:
        await core.private.blind_evaluate(ACCOUNT, elements)
    assert (refused.value.field, refused.value.retry_after) == ("blinded_elements", None)
    assert core.heavy.ran == []
    assert await core.remaining() == 10


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (bytes(32), "element 1 is not a canonical, non-identity ristretto255 element"),
        (b"\xff" * 32, "element 1 is not a canonical, non-identity ristretto255 element"),
    ],
)
async def test_a_bad_element_is_named_and_nothing_is_charged_or_evaluated(
    core: Core, bad: bytes, reason: str
) -> None:
    _, good = blinded(*numbers(2))
    with pytest.raises(InvalidArgument) as refused:
        await core.private.blind_evaluate(ACCOUNT, good[:32] + bad + good[32:])
    assert (refused.value.field, refused.value.reason) == ("blinded_elements", reason)
    assert await core.remaining() == CAPACITY
    assert core.heavy.ran == ["check"]


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        (0, "must hold at least one element"),
        (33, "length 33 is not a multiple of 32 bytes"),
        (32 * (MAX_BATCH + 1), f"batch of 41 elements exceeds the limit of {MAX_BATCH}"),
    ],
)
async def test_a_bad_size_is_refused_first_even_for_an_unknown_account(
    core: Core, size: int, reason: str
) -> None:
    for account in (ACCOUNT, "nobody"):
        with pytest.raises(InvalidArgument) as refused:
            await core.private.blind_evaluate(account, b"\x01" * size)
        assert (refused.value.field, refused.value.reason) == ("blinded_elements", reason)
    assert core.heavy.ran == []
    assert await core.remaining() == CAPACITY


async def test_an_unknown_account_is_refused_before_the_quota_or_any_work(core: Core) -> None:
    _, elements = blinded(*numbers(2))
    with pytest.raises(UnknownAccount) as refused:
        await core.private.blind_evaluate("nobody", elements)
    assert refused.value.field == "authorization"
    assert core.heavy.ran == []
    assert await core.remaining("nobody") == CAPACITY


# FetchBuckets


async def test_every_users_entry_opens_with_its_output_only(populated: Core) -> None:
    for n, e164 in enumerate(USERS):
        mine = output(populated, e164)
        answer = populated.private.fetch(ACCOUNT, BITS, [buckets.bucket_of(mine, BITS)])
        assert opened(answer, mine) == [f"user-{n}"]
    stranger = output(populated, "+12025550199")
    every = populated.private.fetch(ACCOUNT, BITS, list(range(1 << BITS)))
    assert opened(every, stranger) == []
    assert sum(map(len, decode_buckets(every).values())) == len(USERS)


async def test_fetching_costs_no_quota(populated: Core) -> None:
    for _ in range(3):
        populated.private.fetch(ACCOUNT, BITS, list(range(1 << BITS)))
    assert await populated.remaining() == CAPACITY


async def test_buckets_are_answered_distinct_and_ascending(populated: Core) -> None:
    answer = populated.private.fetch(ACCOUNT, BITS, [3, 1, 3])
    assert list(decode_buckets(answer)) == [1, 3]


async def test_one_bit_fewer_than_announced_is_served(populated: Core) -> None:
    mine = output(populated, USERS[5])
    answer = populated.private.fetch(ACCOUNT, BITS - 1, [buckets.bucket_of(mine, BITS - 1)])
    assert opened(answer, mine) == ["user-5"]


async def test_entries_of_users_who_blocked_the_caller_are_left_out(populated: Core) -> None:
    await populated.registry.set_blocked("user-7", ACCOUNT_NUMBER, True)
    await populated.registry.register("other", "+12025550101", False)
    theirs = output(populated, USERS[7])
    bucket = [buckets.bucket_of(theirs, BITS)]
    assert opened(populated.private.fetch(ACCOUNT, BITS, bucket), theirs) == []
    assert opened(populated.private.fetch("other", BITS, bucket), theirs) == ["user-7"]


async def test_hidden_users_have_no_entry(populated: Core) -> None:
    await populated.registry.register("user-9", USERS[9], False)
    hidden = output(populated, USERS[9])
    bits = populated.private.buckets.prefix_bits()
    every = populated.private.fetch(ACCOUNT, bits, list(range(1 << bits)))
    assert opened(every, hidden) == []
    assert sum(map(len, decode_buckets(every).values())) == len(USERS) - 1


@pytest.mark.parametrize(
    ("prefix_bits", "asked", "field", "reason"),
    [
        (BITS + 1, [0], "prefix_bits", f"must be {BITS} or {BITS - 1}, as GetConfig says now"),
        (BITS - 2, [0], "prefix_bits", f"must be {BITS} or {BITS - 1}"),
        (BITS, [], "buckets", "must name at least one bucket"),
        (BITS, [0, 1 << BITS], "buckets", f"a bucket number is not below 2^{BITS}"),
        (BITS - 1, [1 << (BITS - 1)], "buckets", f"a bucket number is not below 2^{BITS - 1}"),
    ],
)
async def test_bad_fetches_are_refused_by_name(
    populated: Core, prefix_bits: int, asked: list[int], field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        populated.private.fetch(ACCOUNT, prefix_bits, asked)
    assert refused.value.field == field
    assert reason in refused.value.reason


async def test_at_most_max_buckets_a_call(populated: Core) -> None:
    most = populated.private.buckets.max_buckets
    asked = [n % (1 << BITS) for n in range(most)]
    assert len(decode_buckets(populated.private.fetch(ACCOUNT, BITS, asked))) == 1 << BITS
    with pytest.raises(InvalidArgument) as refused:
        populated.private.fetch(ACCOUNT, BITS, [*asked, 0])
    assert refused.value.field == "buckets"
    assert f"{most + 1} buckets exceed the limit of {most}" in refused.value.reason


def test_a_small_registry_has_one_bucket_and_no_bit(core: Core) -> None:
    assert core.private.buckets.prefix_bits() == 0
    assert decode_buckets(core.private.fetch(ACCOUNT, 0, [0])) == {0: []}
    with pytest.raises(InvalidArgument) as refused:
        core.private.fetch(ACCOUNT, 0, [1])
    assert refused.value.field == "buckets"


def test_an_unknown_account_fetches_nothing(core: Core) -> None:
    with pytest.raises(UnknownAccount):
        core.private.fetch("nobody", 0, [0])
