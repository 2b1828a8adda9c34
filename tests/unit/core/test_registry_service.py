"""RegistryService without a server: Register, Unregister, Block and Import, and their refusals.

docs/protocol.md "Registry": a user holds one number and a number one user, the newest to
register it (the previous holder is displaced, and erased); Unregister and losing one's
number erase the blocklist; a bad field is refused by name and writes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import onnet
from onnet import ImportRejection, ImportRow
from onnet_server.core.blocklists import MAX_BLOCKED
from onnet_server.core.errors import InvalidArgument, NotFound, QuotaExceeded
from onnet_server.core.ports import Registration, UserRow
from tests.unit.core.wiring import MAX_BATCH, Core, numbers

ANN, BOB, CAROL = numbers(3)


def holders(core: Core, *e164: str) -> list[str]:
    return core.routing.lookup(list(e164), b"")


async def test_register_adds_then_updates_then_moves(core: Core) -> None:
    before = len(core.store)
    assert await core.registry.register("ann", ANN, True) == Registration(False, None)
    assert len(core.store) == before + 1
    assert await core.registry.register("ann", ANN, True) == Registration(True, None)
    assert await core.registry.register("ann", BOB, True) == Registration(True, None)
    assert holders(core, ANN, BOB) == ["", "ann"]  # the old number is let go
    assert len(core.store) == before + 1


async def test_the_newest_holder_of_a_number_displaces_the_previous_one(core: Core) -> None:
    await core.registry.register("ann", ANN, True)
    await core.registry.set_blocked("ann", CAROL, True)
    assert await core.registry.register("bob", ANN, True) == Registration(False, "ann")
    assert holders(core, ANN) == ["bob"]
    # Losing her only number erased ann, and her blocklist with her.
    with pytest.raises(NotFound):
        await core.registry.unregister("ann")
    await core.registry.register("ann", BOB, True)
    assert core.routing.screen(CAROL, "ann") is False


async def test_registering_again_switches_discoverability(core: Core) -> None:
    await core.registry.register("ann", ANN, True)
    assert core.store.bucket_entry_count() == 1  # a private-mode entry
    await core.registry.register("ann", ANN, False)
    assert core.store.bucket_entry_count() == 0  # a hidden user has none
    assert holders(core, ANN) == ["ann"]  # and is still routed
    await core.registry.register("ann", ANN, True)
    assert core.store.bucket_entry_count() == 1


async def test_a_hidden_user_hands_the_store_no_private_entry(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port's rule: the entry is empty for a user who is not discoverable (ports.py)."""
    written: list[tuple[str, bytes]] = []
    register, register_many = core.store.register, core.store.register_many

    async def one(user_id: str, fingerprint: bytes, discoverable: bool, entry: bytes = b"") -> Any:
        written.append((user_id, entry))
        return await register(user_id, fingerprint, discoverable, entry)

    async def many(rows: list[UserRow]) -> Any:
        written.extend((row.user_id, row.private_entry) for row in rows)
        return await register_many(rows)

    monkeypatch.setattr(core.store, "register", one)
    monkeypatch.setattr(core.store, "register_many", many)
    await core.registry.register("ann", ANN, False)
    await core.registry.register("bob", BOB, True)
    await core.registry.import_batch(
        [ImportRow("carol", CAROL, False), ImportRow("dan", numbers(1, 300)[0], True)], 0
    )
    assert [(user, len(entry) > 0) for user, entry in written] == [
        ("ann", False),
        ("bob", True),
        ("carol", False),
        ("dan", True),
    ]


@pytest.mark.parametrize(
    ("user_id", "e164", "field", "reason"),
    [
        ("", ANN, "user_id", "must not be empty"),
        ("x" * 65, ANN, "user_id", "longer than 64 characters"),
        ("caf\u00e9", ANN, "user_id", "must be printable ASCII"),
        ("ann", "", "e164", "must not be empty"),
        ("ann", "+1 415 555 0100", "e164", "not in E.164 form"),
        ("ann", "(415) 555-0100", "e164", "not a valid phone number: no country code"),
        ("ann", "+1415555", "e164", "not a valid phone number"),
    ],
)
async def test_bad_registrations_are_refused_by_name_and_write_nothing(
    core: Core, user_id: str, e164: str, field: str, reason: str
) -> None:
    before = len(core.store)
    with pytest.raises(InvalidArgument) as refused:
        await core.registry.register(user_id, e164, True)
    assert refused.value.field == field
    assert reason in refused.value.reason
    assert len(core.store) == before


async def test_unregister_erases_the_user_and_their_blocklist(core: Core) -> None:
    await core.registry.register("ann", ANN, True)
    await core.registry.set_blocked("ann", BOB, True)
    await core.registry.unregister("ann")
    assert holders(core, ANN) == [""]
    assert core.store.bucket_entry_count() == 0
    with pytest.raises(NotFound) as again:
        await core.registry.unregister("ann")
    assert again.value.field == "user_id"
    await core.registry.register("ann", ANN, True)
    assert core.routing.screen(BOB, "ann") is False  # a new user, with an empty blocklist


async def test_unregister_with_a_bad_user_id_is_refused_by_name(core: Core) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await core.registry.unregister("")
    assert refused.value.field == "user_id"


async def test_block_and_unblock_say_whether_they_changed_the_list(core: Core) -> None:
    await core.registry.register("ann", ANN, True)
    assert await core.registry.set_blocked("ann", BOB, True) is True
    assert await core.registry.set_blocked("ann", BOB, True) is False
    assert core.routing.screen(BOB, "ann") is True
    assert await core.registry.set_blocked("ann", BOB, False) is True
    assert await core.registry.set_blocked("ann", BOB, False) is False
    assert core.routing.screen(BOB, "ann") is False


@pytest.mark.parametrize(
    ("user_id", "e164", "error", "field"),
    [
        ("nobody", BOB, NotFound, "user_id"),
        ("", BOB, InvalidArgument, "user_id"),
        ("ann", "+1 415 555 0101", InvalidArgument, "e164"),
        ("ann", "", InvalidArgument, "e164"),
    ],
)
async def test_bad_blocks_are_refused_by_name(
    core: Core, user_id: str, e164: str, error: type[Exception], field: str
) -> None:
    await core.registry.register("ann", ANN, True)
    for blocked in (True, False):
        with pytest.raises(error) as refused:
            await core.registry.set_blocked(user_id, e164, blocked)
        assert getattr(refused.value, "field", None) == field
    assert core.store.blocklists.count("ann") == 0


async def test_a_full_blocklist_refuses_one_more_for_good(core: Core) -> None:
    await core.registry.register("ann", ANN, True)
    for _ in range(MAX_BLOCKED):
        core.store.blocklists.add("ann", os.urandom(16))
    with pytest.raises(QuotaExceeded) as refused:
        await core.registry.set_blocked("ann", BOB, True)
    assert (refused.value.field, refused.value.retry_after) == ("user_id", None)
    assert core.routing.screen(BOB, "ann") is False


# Import


async def test_an_import_registers_the_valid_rows_and_names_the_others(core: Core) -> None:
    rows = [
        ImportRow("ann", ANN, True),
        ImportRow("", BOB, True),
        ImportRow("bob", "+44 20 7946 0958", True),
        ImportRow("carol", CAROL, False),
    ]
    outcome = await core.registry.import_batch(rows, first_row=100)
    assert outcome.imported == 2
    assert outcome.rejected == [
        ImportRejection(101, "user_id", "must not be empty"),
        ImportRejection(102, "e164", "not in E.164 form ('+', country code, number, no spaces)"),
    ]
    assert holders(core, ANN, BOB, CAROL) == ["ann", "", "carol"]
    assert core.store.bucket_entry_count() == 1  # carol hides: no private-mode entry


async def test_rows_sharing_a_number_apply_in_order(core: Core) -> None:
    await core.registry.register("old", ANN, True)
    rows = [
        ImportRow("ann", ANN, True),
        ImportRow("bob", BOB, True),
        ImportRow("carol", ANN, True),
        ImportRow("bob", CAROL, True),
    ]
    outcome = await core.registry.import_batch(rows, first_row=0)
    assert (outcome.imported, outcome.rejected) == (4, [])
    assert holders(core, ANN, BOB, CAROL) == ["carol", "", "bob"]
    with pytest.raises(NotFound):  # displaced by ann, who was displaced by carol
        await core.registry.unregister("old")
    with pytest.raises(NotFound):
        await core.registry.unregister("ann")


async def test_a_batch_over_the_limit_is_refused_whole(core: Core) -> None:
    rows = [ImportRow(f"user-{n}", e164, True) for n, e164 in enumerate(numbers(MAX_BATCH + 1))]
    before = len(core.store)
    with pytest.raises(InvalidArgument) as refused:
        await core.registry.import_batch(rows, first_row=0)
    assert refused.value.field == "rows"
    assert f"batch of {MAX_BATCH + 1} rows exceeds the limit of {MAX_BATCH}" in str(refused.value)
    assert len(core.store) == before
    outcome = await core.registry.import_batch(rows[:MAX_BATCH], first_row=0)
    assert outcome.imported == MAX_BATCH


async def test_an_empty_batch_imports_nothing(core: Core) -> None:
    outcome = await core.registry.import_batch([], first_row=7)
    assert (outcome.imported, outcome.rejected) == (0, [])


async def test_imported_and_registered_users_are_found_alike(core: Core) -> None:
    await core.registry.import_batch([ImportRow("ann", ANN, True)], first_row=0)
    await core.registry.register("bob", BOB, True)
    book = b"".join(onnet.contact_hash(e164) for e164 in (ANN, BOB))
    answer = await core.discovery.discover("me", book, b"", b"")
    assert answer.matches.user_ids == ["ann", "bob"]
