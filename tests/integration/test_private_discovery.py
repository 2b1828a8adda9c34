"""Private discovery (RFC 9497 OPRF + buckets) returns exactly what hashed mode returns,
on memory, Redis and a Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import onnet
from onnet.v1 import discovery_pb2
from tests.security import (
    async_discovery_client,
    async_registry_client,
    discovery_client,
    registry_client,
)
from tests.servers import ThreadedServer

USERS = {
    "alice": ("+14155550100", True),
    "bob": ("+442079460958", True),
    "carol": ("+4930901820", False),  # hidden: never found, in either mode
    "dave": ("+33612345678", True),
}
BOOK = ["(415) 555-0100", "+44 20 7946 0958", "+49 30 901820", "+1 202 555 0123", "911"]


@pytest.fixture(params=["memory", "redis", "cluster"])
def private_server(
    request: pytest.FixtureRequest, make_server: Callable[..., ThreadedServer]
) -> ThreadedServer:
    if request.param == "memory":
        return make_server()
    if request.param == "redis":
        return make_server(redis_url=request.getfixturevalue("redis_url"))
    return make_server(redis_cluster=request.getfixturevalue("cluster_seeds"))


def test_private_equals_hashed(private_server: ThreadedServer) -> None:
    with registry_client(private_server.target) as registry:
        for user_id, (e164, discoverable) in USERS.items():
            registry.register(user_id, e164, discoverable=discoverable)
        registry.register("dave", "+12025550123")  # a move: the old number's entry goes
    with discovery_client(private_server.target) as client:
        hashed = client.discover(BOOK, "US")
        private = client.discover(BOOK, "US", private=True)
        again = client.discover(BOOK, "US", private=True)  # from cached outputs
    assert private.matches == hashed.matches == again.matches
    assert private.rejected == hashed.rejected == again.rejected
    # Both first syncs paid for each number; the private re-sync, from kept outputs, not.
    assert private.charged == hashed.charged == private.uploaded
    assert again.charged == 0
    assert {m.user_id for m in private.matches} == {"alice", "bob", "dave"}


async def test_async_private_discovery(private_server: ThreadedServer) -> None:
    async with async_registry_client(private_server.target) as registry:
        await registry.register("alice", "+14155550100")
    async with async_discovery_client(private_server.target) as client:
        result = await client.discover(BOOK, "US", private=True)
    assert [(m.e164, m.user_id) for m in result.matches] == [("+14155550100", "alice")]


def test_a_recycled_number_opens_only_for_its_new_holder(server: ThreadedServer) -> None:
    with registry_client(server.target) as registry:
        registry.register("alice", "+14155550100")
        registry.register("bob", "+14155550100")
    with discovery_client(server.target) as client:
        result = client.discover(["+14155550100"], private=True)
    assert [m.user_id for m in result.matches] == ["bob"]


@pytest.mark.parametrize(
    ("bits", "buckets", "field", "message"),
    [
        (0, [], "buckets", "at least one bucket"),
        (0, [1], "buckets", "not below 2^0"),
        (4, [1], "prefix_bits", "must be 0, as GetConfig says now; ask it again"),
        (0, [0] * 1_000, "buckets", "exceed the limit of"),
        (0, [0] * 10_000, "request", "exceed this method's limit of"),
    ],
)
def test_bad_bucket_requests(
    server: ThreadedServer, bits: int, buckets: list[int], field: str, message: str
) -> None:
    request = discovery_pb2.FetchBucketsRequest(prefix_bits=bits, buckets=buckets)
    with discovery_client(server.target) as client:
        with pytest.raises(onnet.InvalidArgumentError) as caught:
            client.calls.fetch_buckets(request)
        assert caught.value.field == field
        assert message in caught.value.reason


def test_stale_outputs_are_not_trusted_across_a_key_change(
    make_server: Callable[..., ThreadedServer],
) -> None:
    """A client whose cache holds outputs of an old key finds matches under the new one."""
    first = make_server()
    with registry_client(first.target) as registry:
        registry.register("alice", "+14155550100")
    with discovery_client(first.target) as client:
        found = client.discover(BOOK, "US", private=True)
        assert [m.user_id for m in found.matches] == ["alice"]
        assert found.charged == found.uploaded  # every number evaluated once
        again = client.discover(BOOK, "US", private=True)
        assert (again.matches, again.charged) == (found.matches, 0)  # outputs kept
        state = client.sync_state
    second = make_server()  # another pepper, so another OPRF key and key id
    with registry_client(second.target) as registry:
        registry.register("alice", "+14155550100")
    with discovery_client(second.target, sync_state=state) as client:
        moved = client.discover(BOOK, "US", private=True)
        assert [m.user_id for m in moved.matches] == ["alice"]
        assert moved.charged == moved.uploaded  # the old key's outputs were not used
