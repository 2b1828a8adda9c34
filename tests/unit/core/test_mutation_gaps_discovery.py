"""Discovery: the limits GetConfig announces, and the answer as it is sent.

Each test here was seen to fail with a mutant of core/discovery.py that the unit layer let
live (README, "Testing").
"""

from __future__ import annotations

import pytest

from onnet.protocol import MESSAGE_OVERHEAD_BYTES
from onnet.v1 import discovery_pb2
from onnet_server.core.discovery import DiscoveryLimits
from onnet_server.core.errors import QuotaExceeded
from tests.unit.core.wiring import (
    ACCOUNT,
    CAPACITY,
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    Core,
    MakeCore,
    numbers,
    packed,
)


def test_max_previous_is_the_whole_hashes_that_fit_beside_a_full_batch() -> None:
    limits = DiscoveryLimits.for_messages(40, MESSAGE_OVERHEAD_BYTES + 32 * 100 + 31)
    assert limits.max_previous == 60
    assert isinstance(limits.max_previous, int)  # announced in a uint32 field
    tight = DiscoveryLimits.for_messages(40, MESSAGE_OVERHEAD_BYTES + 32 * 30)
    assert tight.max_previous == 0  # a full batch alone fills the message


async def test_get_config_announces_max_previous(core: Core) -> None:
    parameters = await core.discovery.parameters(ACCOUNT)
    expected = DiscoveryLimits.for_messages(MAX_BATCH, MAX_MESSAGE_BYTES).max_previous
    assert parameters.max_previous == expected > 0


async def test_the_answer_sent_carries_the_token_it_issued(core: Core) -> None:
    book = packed(*numbers(3))
    answer = await core.discovery.discover(ACCOUNT, book, b"", b"")
    # The servicer sends ``encoded`` as it is: the client's token is the one inside it.
    sent = discovery_pb2.DiscoverResponse.FromString(answer.encoded)
    assert sent.token == answer.token
    await core.discovery.discover(ACCOUNT, book, sent.token, b"")
    assert await core.remaining() == CAPACITY - 3


async def test_a_refusal_says_how_many_new_numbers_the_call_asked(make_core: MakeCore) -> None:
    core = make_core(capacity=3)
    with pytest.raises(QuotaExceeded) as refused:
        await core.discovery.discover(ACCOUNT, packed(*numbers(5)), b"", b"")
    assert refused.value.reason.startswith("5 new numbers exceed the whole quota")
