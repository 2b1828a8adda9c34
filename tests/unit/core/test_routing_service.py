"""RoutingService without a server: Lookup reaches every registered user, Screen one block.

docs/protocol.md "Registry.Lookup" and "Registry.Screen": the holder of each number, hidden
users too, "" where nobody holds it, by E.164 or by contact hash but not both; whether one
callee blocked one caller; a bad field is refused by name.
"""

from __future__ import annotations

import pytest

from onnet_server.core.errors import InvalidArgument, NotFound
from tests.unit.core.wiring import ACCOUNT, ACCOUNT_NUMBER, MAX_BATCH, Core, numbers, packed

ANN, HIDDEN, FREE, CALLER = numbers(4)


@pytest.fixture
async def routed(core: Core) -> Core:
    """ann (discoverable) at ANN, hidden (not) at HIDDEN; nobody at FREE or CALLER."""
    await core.registry.register("ann", ANN, True)
    await core.registry.register("hidden", HIDDEN, False)
    return core


def test_lookup_finds_every_holder_hidden_users_too(routed: Core) -> None:
    asked = [FREE, ANN, HIDDEN, ACCOUNT_NUMBER, ANN]
    assert routed.routing.lookup(asked, b"") == ["", "ann", "hidden", ACCOUNT, "ann"]


def test_lookup_by_contact_hash_answers_the_same(routed: Core) -> None:
    asked = [FREE, ANN, HIDDEN, ANN]
    assert routed.routing.lookup([], packed(*asked)) == routed.routing.lookup(asked, b"")


async def test_lookup_follows_moves_and_erasures(routed: Core) -> None:
    await routed.registry.register("ann", FREE, True)
    await routed.registry.unregister("hidden")
    assert routed.routing.lookup([ANN, HIDDEN, FREE], b"") == ["", "", "ann"]


def test_lookup_takes_a_whole_batch(routed: Core) -> None:
    asked = numbers(MAX_BATCH)
    assert routed.routing.lookup(asked, b"") == ["ann", "hidden"] + [""] * (MAX_BATCH - 2)
    assert len(routed.routing.lookup([], packed(*asked))) == MAX_BATCH


@pytest.mark.parametrize(
    ("e164", "hashes", "field", "reason"),
    [
        ([ANN], packed(ANN), "hashes", "set e164 or hashes, not both"),
        ([], b"", "e164", "the request holds no number"),
        (numbers(MAX_BATCH + 1), b"", "e164", f"41 numbers exceeds the limit of {MAX_BATCH}"),
        ([ANN, "+1 415 555 0100"], b"", "e164", "entry 1: not in E.164 form"),
        ([ANN, ""], b"", "e164", "entry 1: must not be empty"),
        ([], packed(ANN)[:-1], "hashes", "length 31 is not a multiple of 32 bytes"),
        ([], packed(*numbers(MAX_BATCH + 1)), "hashes", "41 hashes exceeds the limit of 40"),
    ],
)
def test_bad_lookups_are_refused_by_name(
    routed: Core, e164: list[str], hashes: bytes, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        routed.routing.lookup(e164, hashes)
    assert refused.value.field == field
    assert reason in refused.value.reason


async def test_screen_says_whether_the_callee_blocked_the_caller(routed: Core) -> None:
    assert routed.routing.screen(CALLER, "ann") is False
    await routed.registry.set_blocked("ann", CALLER, True)
    assert routed.routing.screen(CALLER, "ann") is True
    assert routed.routing.screen(FREE, "ann") is False  # only the blocked number
    assert routed.routing.screen(CALLER, "hidden") is False  # only ann's list
    await routed.registry.set_blocked("hidden", CALLER, True)
    assert routed.routing.screen(CALLER, "hidden") is True  # hidden users block too
    await routed.registry.set_blocked("ann", CALLER, False)
    assert routed.routing.screen(CALLER, "ann") is False


async def test_a_block_follows_the_number_not_whoever_holds_it(routed: Core) -> None:
    await routed.registry.set_blocked("ann", CALLER, True)
    await routed.registry.register("caller", CALLER, True)
    await routed.registry.register("caller", FREE, True)  # moves away from the blocked number
    assert routed.routing.screen(FREE, "ann") is False
    assert routed.routing.screen(CALLER, "ann") is True


@pytest.mark.parametrize(
    ("caller", "callee", "error", "field"),
    [
        (CALLER, "nobody", NotFound, "callee_user_id"),
        (CALLER, "", InvalidArgument, "callee_user_id"),
        (CALLER, "x" * 65, InvalidArgument, "callee_user_id"),
        ("", "ann", InvalidArgument, "caller_e164"),
        ("+1 415 555 0103", "ann", InvalidArgument, "caller_e164"),
        ("911", "ann", InvalidArgument, "caller_e164"),
    ],
)
def test_bad_screens_are_refused_by_name(
    routed: Core, caller: str, callee: str, error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as refused:
        routed.routing.screen(caller, callee)
    assert getattr(refused.value, "field", None) == field
