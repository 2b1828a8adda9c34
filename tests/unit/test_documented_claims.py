"""The blocklist cap on the embedded store, and the status it becomes on the wire.

README "Users' controls" and docs/protocol.md "Registry.Block": at most 10,000 numbers a
user; one more is RESOURCE_EXHAUSTED, field `user_id`, no RetryInfo. (The Redis store keeps
the same cap in its Lua script: tests/integration/test_documented_claims.py.)
"""

from __future__ import annotations

import secrets

import pytest
from google.rpc import code_pb2, error_details_pb2

from onnet_server.api.status import status_of
from onnet_server.core.errors import QuotaExceeded
from onnet_server.stores.memory import MemoryRegistry

DOCUMENTED_BLOCKLIST_CAP = 10_000


async def test_the_embedded_store_blocks_at_most_ten_thousand_numbers() -> None:
    store = MemoryRegistry()
    await store.register("ann", secrets.token_bytes(16), True)
    numbers = [secrets.token_bytes(16) for _ in range(DOCUMENTED_BLOCKLIST_CAP + 1)]
    for fingerprint in numbers[:-1]:
        assert await store.set_blocked("ann", fingerprint, True) is True
    with pytest.raises(QuotaExceeded) as full:
        await store.set_blocked("ann", numbers[-1], True)
    assert (full.value.field, full.value.retry_after) == ("user_id", None)
    assert store.blocks("ann", numbers[-1]) is False  # the refused block wrote nothing
    # A number already on a full list is no change, not a refusal; an unblock makes room.
    assert await store.set_blocked("ann", numbers[0], True) is False
    assert await store.set_blocked("ann", numbers[0], False) is True
    assert await store.set_blocked("ann", numbers[-1], True) is True

    status = status_of(full.value)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert not [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    (detail,) = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["user_id"]
