"""DiscoveryService without a server: what a Discover charges, matches and refuses.

docs/protocol.md "Discovery.Discover": each distinct hash the token does not cover costs one
unit; a re-sync in either form costs nothing for what its token covers; a call that does not
fit is refused whole; blockers and hidden users look like unknown numbers; a bad field is
refused by name; an account the registry does not know is refused.
"""

from __future__ import annotations

import pytest

import onnet
from onnet_server.core._native import FingerprintKey
from onnet_server.core._resync_native import TokenStep
from onnet_server.core.errors import InvalidArgument, QuotaExceeded, UnknownAccount
from onnet_server.core.ports import BatchLookup as Batch
from onnet_server.core.ports import Matches
from tests.unit.core.wiring import (
    ACCOUNT,
    ACCOUNT_NUMBER,
    CAPACITY,
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    REFILL_SECONDS,
    TOKEN_TTL,
    Core,
    MakeCore,
    numbers,
    packed,
)

BOOK = numbers(5)


def found(matches: Matches) -> list[tuple[int, str]]:
    return list(zip(matches.indexes.tolist(), matches.user_ids, strict=True))


async def register(core: Core, user_id: str, e164: str, discoverable: bool = True) -> None:
    await core.registry.register(user_id, e164, discoverable)


def recorded_answers(core: Core, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The lookups Discover answers from now on: each batch's fingerprints."""
    answered: list[bytes] = []
    look_up = core.store.look_up_batch

    async def recorded(
        hashes: bytes, key: FingerprintKey, excluded: frozenset[str], *, step: TokenStep | None
    ) -> Batch:
        batch = await look_up(hashes, key, excluded, step=step)
        answer = batch.answer

        def recorded_answer(token: bytes) -> tuple[bytes, int]:
            answered.append(batch.fingerprints)
            return answer(token)

        monkeypatch.setattr(batch, "answer", recorded_answer)
        return batch

    monkeypatch.setattr(core.store, "look_up_batch", recorded)
    return answered


# Charging


async def test_a_first_sync_whose_compiled_step_fails_is_issued_by_the_python_path(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's token step proves nothing (as when libcrypto fails): the same charge, and
    the token ``first_sync`` issues."""
    await register(core, "alice", BOOK[0])
    tokens = core.discovery._tokens
    step = tokens.step
    # A step that renews a malformed token, not the first sync's issue: it proves nothing.
    monkeypatch.setattr(tokens, "step", lambda account, token: step(account, b"\x00"))
    book = [BOOK[0], BOOK[1], BOOK[0]]
    answer = await core.discovery.discover(ACCOUNT, packed(*book), b"", b"")
    assert await core.remaining() == CAPACITY - 2
    assert found(answer.matches) == [(0, "alice"), (2, "alice")]
    assert answer.token == tokens.first_sync(ACCOUNT, packed(*book))[1]


async def test_a_first_sync_charges_each_distinct_hash_once(core: Core) -> None:
    await register(core, "alice", BOOK[0])
    book = [BOOK[0], BOOK[1], BOOK[0], BOOK[2], BOOK[1]]
    answer = await core.discovery.discover(ACCOUNT, packed(*book), b"", b"")
    assert await core.remaining() == CAPACITY - 3
    assert found(answer.matches) == [(0, "alice"), (2, "alice")]
    assert answer.match_count == 2
    assert len(answer.token) == 45


async def test_the_old_form_resync_is_free_and_charges_only_newcomers(core: Core) -> None:
    first = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), b"", b"")
    assert await core.remaining() == CAPACITY - 3
    again = await core.discovery.discover(
        ACCOUNT, packed(*reversed(BOOK[:3])), first.token, packed(*BOOK[:3])
    )
    assert await core.remaining() == CAPACITY - 3
    # One contact more: only it is charged; the token now covers all four.
    grown = await core.discovery.discover(
        ACCOUNT, packed(*BOOK[:4]), again.token, packed(*BOOK[:3])
    )
    assert await core.remaining() == CAPACITY - 4
    await core.discovery.discover(ACCOUNT, packed(*BOOK[:4]), grown.token, packed(*BOOK[:4]))
    assert await core.remaining() == CAPACITY - 4


async def test_the_difference_form_resync_is_free_and_charges_only_what_it_adds(
    core: Core,
) -> None:
    first = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), b"", b"")
    same = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), first.token, b"")
    assert await core.remaining() == CAPACITY - 3
    # BOOK[0] left the book, BOOK[3] joined it: one unit, and the new token covers the new book.
    changed = await core.discovery.discover(
        ACCOUNT,
        packed(*BOOK[1:4]),
        same.token,
        b"",
        added_hashes=packed(BOOK[3]),
        removed_hashes=packed(BOOK[0]),
    )
    assert await core.remaining() == CAPACITY - 4
    await core.discovery.discover(ACCOUNT, packed(*BOOK[1:4]), changed.token, b"")
    assert await core.remaining() == CAPACITY - 4


async def test_an_unchanged_resync_is_proved_in_one_step_and_matches_as_the_first_sync(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(core, "alice", BOOK[1])
    await register(core, "bob", BOOK[3])
    first = await core.discovery.discover(ACCOUNT, packed(*BOOK), b"", b"")
    answered = recorded_answers(core, monkeypatch)

    def python_renewal(*args: object, **kwargs: object) -> tuple[int, bytes]:
        raise AssertionError("an unchanged re-sync needs no Python renewal")

    with monkeypatch.context() as patched:
        patched.setattr(core.discovery._tokens, "renew_difference", python_renewal)
        again = await core.discovery.discover(ACCOUNT, packed(*reversed(BOOK)), first.token, b"")
        assert found(again.matches) == [(1, "bob"), (3, "alice")]
        # A book with a hash twice is the same set: its digest (of the distinct hashes) is
        # proved by the same step, and the hash is answered at each of its positions.
        twice = await core.discovery.discover(ACCOUNT, packed(*BOOK, BOOK[1]), again.token, b"")
    assert found(twice.matches) == [(1, "alice"), (3, "bob"), (5, "alice")]
    assert len(answered) == 2
    assert await core.remaining() == CAPACITY - len(BOOK)


async def test_a_resync_that_hides_a_new_hash_is_refused_and_charges_nothing(core: Core) -> None:
    first = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), b"", b"")
    with pytest.raises(InvalidArgument) as refused:
        await core.discovery.discover(ACCOUNT, packed(*BOOK[:4]), first.token, b"")
    assert refused.value.field == "token"
    with pytest.raises(InvalidArgument) as old_form:
        await core.discovery.discover(
            ACCOUNT, packed(*BOOK[:4]), first.token, packed(*BOOK[:2], BOOK[4])
        )
    assert old_form.value.field == "token"
    assert await core.remaining() == CAPACITY - 3


async def test_a_token_is_the_accounts_own_and_expires(core: Core) -> None:
    await register(core, "other", "+12025550101", discoverable=False)
    first = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), b"", b"")
    with pytest.raises(InvalidArgument) as borrowed:
        await core.discovery.discover("other", packed(*BOOK[:3]), first.token, b"")
    assert borrowed.value.field == "token"
    core.clock.now += TOKEN_TTL
    with pytest.raises(InvalidArgument, match="expired") as expired:
        await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), first.token, b"")
    assert expired.value.field == "token"
    assert await core.remaining("other") == CAPACITY


# Quota refusals


async def test_a_call_over_the_quota_is_refused_whole(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(core, "alice", BOOK[0])
    spent = numbers(CAPACITY - 2, first=1000)
    await core.discovery.discover(ACCOUNT, packed(*spent[:MAX_BATCH]), b"", b"")
    await core.discovery.discover(ACCOUNT, packed(*spent[MAX_BATCH:]), b"", b"")
    assert await core.remaining() == 2
    answered = recorded_answers(core, monkeypatch)
    with pytest.raises(QuotaExceeded) as refused:
        await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), b"", b"")
    assert refused.value.field == "hashes"
    # One unit short; the bucket leaks one unit every REFILL_SECONDS / CAPACITY seconds.
    wait = refused.value.retry_after
    assert wait is not None
    assert wait == pytest.approx(REFILL_SECONDS / CAPACITY)
    assert await core.remaining() == 2  # nothing charged
    assert answered == []  # nothing answered, so nothing matched
    core.clock.now += wait
    answer_after = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), b"", b"")
    assert found(answer_after.matches) == [(0, "alice")]
    assert await core.remaining() == 0


async def test_a_call_larger_than_the_whole_quota_says_waiting_will_not_help(
    make_core: MakeCore,
) -> None:
    core = make_core(capacity=10)
    with pytest.raises(QuotaExceeded, match="exceed the whole quota") as refused:
        await core.discovery.discover(ACCOUNT, packed(*numbers(11)), b"", b"")
    assert (refused.value.field, refused.value.retry_after) == ("hashes", None)
    assert await core.remaining() == 10


async def test_a_resync_that_costs_nothing_passes_an_empty_quota(core: Core) -> None:
    first = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), b"", b"")
    spent = numbers(CAPACITY - 3, first=1000)
    await core.discovery.discover(ACCOUNT, packed(*spent[:MAX_BATCH]), b"", b"")
    await core.discovery.discover(ACCOUNT, packed(*spent[MAX_BATCH:]), b"", b"")
    assert await core.remaining() == 0
    await register(core, "late", BOOK[1])
    answer = await core.discovery.discover(ACCOUNT, packed(*BOOK[:3]), first.token, b"")
    assert found(answer.matches) == [(1, "late")]


async def test_a_whole_batch_is_taken(core: Core) -> None:
    await core.discovery.discover(ACCOUNT, packed(*numbers(MAX_BATCH)), b"", b"")
    assert await core.remaining() == CAPACITY - MAX_BATCH


# Who is matched


async def test_blockers_and_hidden_users_look_like_unknown_numbers(core: Core) -> None:
    await register(core, "alice", BOOK[0])
    await register(core, "hidden", BOOK[1], discoverable=False)
    await register(core, "blocker", BOOK[2])
    assert await core.registry.set_blocked("blocker", ACCOUNT_NUMBER, True)
    await register(core, "stranger", "+12025550101", discoverable=False)
    book = packed(*BOOK[:4])
    mine = await core.discovery.discover(ACCOUNT, book, b"", b"")
    assert found(mine.matches) == [(0, "alice")]
    # The blocker blocked one number: another account still finds them.
    theirs = await core.discovery.discover("stranger", book, b"", b"")
    assert found(theirs.matches) == [(0, "alice"), (2, "blocker")]
    # The blocked account paid for the blocker's number like for any other.
    assert await core.remaining() == CAPACITY - 4


async def test_an_unblock_and_a_switch_to_discoverable_show_the_user_again(core: Core) -> None:
    await register(core, "blocker", BOOK[0])
    await register(core, "hidden", BOOK[1], discoverable=False)
    await core.registry.set_blocked("blocker", ACCOUNT_NUMBER, True)
    first = await core.discovery.discover(ACCOUNT, packed(*BOOK[:2]), b"", b"")
    assert found(first.matches) == []
    await core.registry.set_blocked("blocker", ACCOUNT_NUMBER, False)
    await register(core, "hidden", BOOK[1], discoverable=True)
    again = await core.discovery.discover(ACCOUNT, packed(*BOOK[:2]), first.token, b"")
    assert found(again.matches) == [(0, "blocker"), (1, "hidden")]


# Refusals naming the field


HASH = onnet.contact_hash(BOOK[0])
MAX_PREVIOUS = (MAX_MESSAGE_BYTES - 1024) // 32 - MAX_BATCH


@pytest.mark.parametrize(
    ("with_token", "fields", "field", "reason"),
    [
        (False, {"hashes": b""}, "hashes", "must hold at least one 32-byte contact hash"),
        (False, {"hashes": HASH[:31]}, "hashes", "length 31 is not a multiple of 32 bytes"),
        (False, {"hashes": HASH * (MAX_BATCH + 1)}, "hashes", "41 hashes exceeds the limit of 40"),
        (False, {"previous_hashes": HASH}, "previous_hashes", "needs the token that covers them"),
        (False, {"added_hashes": HASH}, "added_hashes", "needs the token that they are added to"),
        (False, {"removed_hashes": HASH}, "removed_hashes", "needs the token that covers them"),
        (True, {"previous_hashes": HASH + b"x"}, "previous_hashes", "length 33 is not a multiple"),
        (True, {"added_hashes": HASH[:16]}, "added_hashes", "length 16 is not a multiple"),
        (True, {"removed_hashes": HASH[:1]}, "removed_hashes", "length 1 is not a multiple"),
        (True, {"added_hashes": HASH * (MAX_BATCH + 1)}, "added_hashes", "exceeds the limit"),
        (
            True,
            {"previous_hashes": HASH * (MAX_PREVIOUS + 1)},
            "previous_hashes",
            f"exceeds the limit of {MAX_PREVIOUS}",
        ),
        (
            True,
            {"removed_hashes": HASH * (MAX_PREVIOUS + 1)},
            "removed_hashes",
            f"exceeds the limit of {MAX_PREVIOUS}",
        ),
        (
            True,
            {"previous_hashes": HASH, "added_hashes": HASH},
            "added_hashes",
            "belongs to the difference form",
        ),
        (
            True,
            {"previous_hashes": HASH, "removed_hashes": HASH},
            "removed_hashes",
            "belongs to the difference form",
        ),
        (True, {"added_hashes": HASH * 2}, "added_hashes", "holds a hash more than once"),
        (
            True,
            {"added_hashes": onnet.contact_hash(BOOK[1])},
            "added_hashes",
            "holds a hash that hashes does not hold",
        ),
        (False, {"token": b"\x02" * 44}, "token", "token is malformed"),
    ],
)
async def test_bad_fields_are_refused_by_name_and_charge_nothing(
    core: Core, with_token: bool, fields: dict[str, bytes], field: str, reason: str
) -> None:
    first = await core.discovery.discover(ACCOUNT, HASH, b"", b"")
    request = {"hashes": HASH, "token": first.token if with_token else b"", **fields}
    spent = await core.remaining()
    with pytest.raises(InvalidArgument) as refused:
        await core.discovery.discover(
            ACCOUNT,
            request["hashes"],
            request["token"],
            request.get("previous_hashes", b""),
            added_hashes=request.get("added_hashes", b""),
            removed_hashes=request.get("removed_hashes", b""),
        )
    assert refused.value.field == field
    assert reason in refused.value.reason
    assert await core.remaining() == spent


# The caller


async def test_an_account_the_registry_does_not_know_is_refused(core: Core) -> None:
    with pytest.raises(UnknownAccount) as refused:
        await core.discovery.discover("alice", packed(BOOK[0]), b"", b"")
    assert refused.value.field == "authorization"
    with pytest.raises(UnknownAccount):
        await core.discovery.parameters("alice")
    assert await core.remaining("alice") == CAPACITY  # refused before any charge
    # Once registered, alice is served; once erased, she is refused again.
    await register(core, "alice", BOOK[1])
    await core.discovery.discover("alice", packed(BOOK[0]), b"", b"")
    await core.registry.unregister("alice")
    with pytest.raises(UnknownAccount):
        await core.discovery.discover("alice", packed(BOOK[0]), b"", b"")


async def test_development_mode_serves_any_account_and_blocks_none(make_core: MakeCore) -> None:
    core = make_core(dev_mode=True, account=None)
    await register(core, "alice", BOOK[0])
    answer = await core.discovery.discover("dev", packed(BOOK[0]), b"", b"")
    assert found(answer.matches) == [(0, "alice")]
    assert await core.remaining("dev") == CAPACITY - 1


async def test_parameters_announce_the_limits_and_the_quota_left(core: Core) -> None:
    await core.discovery.discover(ACCOUNT, packed(*BOOK), b"", b"")
    parameters = await core.discovery.parameters(ACCOUNT)
    assert parameters.contact_hash_version == onnet.CONTACT_HASH_VERSION
    assert parameters.max_batch == MAX_BATCH
    assert parameters.max_message_bytes == MAX_MESSAGE_BYTES
    assert parameters.quota_remaining == CAPACITY - len(BOOK)
