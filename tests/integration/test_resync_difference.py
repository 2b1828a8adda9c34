"""A re-sync that sends its book once, through the real SDK and a real server over TLS.

The SDK's requests are recorded as they leave it (a client interceptor on a real channel),
and the quota is read back from the server: what each sync pays, and what it sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

import onnet
from onnet.v1 import bench_pb2_grpc, discovery_pb2
from onnet_server.commands.main import main
from onnet_server.loadtest.population import make_books, registered_number
from onnet_server.loadtest.runner import VirtualClient
from tests.security import (
    DEFAULT_ACCOUNT,
    account_metadata,
    async_discovery_client,
    discovery_client,
    register_account,
    registry_client,
    secure_channel,
    security,
)
from tests.servers import ThreadedServer

QUOTA = 100_000
PERIOD = 1e9  # seconds to refill QUOTA: none comes back while a test runs, so counts are exact
BOOK = [registered_number(i) for i in range(25_000)]
"""25,000 valid numbers, the first ten of them registered by the fixture."""
DISCOVER = "/onnet.v1.Discovery/Discover"


@pytest.fixture
def roomy(make_server: Callable[..., ThreadedServer]) -> ThreadedServer:
    """The default batch (10,000) and message limit, a quota of 100,000 new numbers."""
    server = make_server(quota_new_numbers=QUOTA, quota_period=PERIOD)
    with registry_client(server.target) as registry:
        for i in range(10):
            registry.register(f"user-{i}", BOOK[i])
    register_account(server.target)
    return server


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """Keeps every DiscoverRequest that leaves the client, and its size on the wire."""

    def __init__(self) -> None:
        self.requests: list[discovery_pb2.DiscoverRequest] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if details.method == DISCOVER:
            self.requests.append(request)
        return continuation(details, request)

    def take(self) -> list[discovery_pb2.DiscoverRequest]:
        taken, self.requests = self.requests, []
        return taken


@contextmanager
def recorded(target: str, **options: Any) -> Iterator[tuple[onnet.Client, Recorder]]:
    """The SDK's Client, its calls made over a channel that records them."""
    recorder = Recorder()
    with discovery_client(target, **options) as client, secure_channel(target) as plain:
        client.calls = onnet.DiscoveryCalls(
            grpc.intercept_channel(plain, recorder), metadata=account_metadata()
        )
        yield client, recorder


def quota_left(client: onnet.Client) -> int:
    return client.calls.get_config(discovery_pb2.GetConfigRequest()).quota_remaining


def matched(result: onnet.DiscoveryResult) -> list[str]:
    return sorted(m.user_id for m in result.matches)


@pytest.mark.slow
def test_a_book_of_25000_pays_once_then_only_what_changes(roomy: ThreadedServer) -> None:
    users = [f"user-{i}" for i in range(10)]
    with recorded(roomy.target) as (client, recorder):
        # First sync: every contact is new.
        assert matched(client.discover(BOOK)) == sorted(users)
        assert quota_left(client) == QUOTA - 25_000
        first = recorder.take()
        assert len(first) == 8  # 2^3 parts of about 3,125: at most half a batch each
        assert all(not r.token and len(r.hashes) <= 32 * 10_000 for r in first)
        assert client.sync_state.bits == 3

        # An unchanged re-sync: free, the book once, no previous_hashes.
        with registry_client(roomy.target) as registry:
            registry.register("newcomer", BOOK[20_000])  # joined since: still found
        assert matched(client.discover(BOOK)) == sorted([*users, "newcomer"])
        assert quota_left(client) == QUOTA - 25_000
        again = recorder.take()
        assert len(again) == 8
        for request in again:
            assert request.token
            assert (request.previous_hashes, request.added_hashes) == (b"", b"")
            assert request.removed_hashes == b""
        assert sum(len(r.hashes) for r in again) == 32 * 25_000

        # Five contacts added, three removed: five paid, only the changes sent twice.
        added = [registered_number(i) for i in range(30_000, 30_005)]
        book = [*BOOK[3:], *added]
        assert matched(client.discover(book)) == sorted([*users[3:], "newcomer"])
        assert quota_left(client) == QUOTA - 25_005
        changed = recorder.take()
        assert all(not r.previous_hashes for r in changed)
        assert sum(len(r.added_hashes) for r in changed) == 32 * 5
        assert sum(len(r.removed_hashes) for r in changed) == 32 * 3

        # The book grows past half a batch a part: parts double, old contacts stay free.
        grown = [*book, *(registered_number(i) for i in range(40_000, 55_000))]
        client.discover(grown)
        assert client.sync_state.bits == 4
        assert quota_left(client) == QUOTA - 25_005 - 15_000
        doubled = recorder.take()
        assert len(doubled) == 16
        assert all(r.token and not r.previous_hashes for r in doubled)
        assert len({r.token for r in doubled}) == 8  # each parent's token, shown twice
        client.discover(grown)
        assert quota_left(client) == QUOTA - 40_005
        assert all(not r.added_hashes and not r.removed_hashes for r in recorder.take())


def test_the_resync_of_1000_contacts_weighs_one_book(server: ThreadedServer) -> None:
    book = [registered_number(i) for i in range(1_000)]
    with recorded(server.target) as (client, recorder):
        client.discover(book)
        first = recorder.take()
        client.discover(book)
        [resync] = recorder.take()
    one_book = 32 * 1_000
    assert first[0].ByteSize() < one_book + 16
    # The hashes, the 45-byte token and the protobuf framing; the old form was two books.
    assert one_book < resync.ByteSize() <= one_book + 64


def test_the_old_form_still_works(roomy: ThreadedServer) -> None:
    """An SDK of before (a raw request here) re-syncs with previous_hashes, as it did."""
    book = b"".join(onnet.contact_hash(e164) for e164 in BOOK[:100])
    more = b"".join(onnet.contact_hash(e164) for e164 in BOOK[100:110])
    with discovery_client(roomy.target) as client:
        ask = client.calls.discover
        token = ask(discovery_pb2.DiscoverRequest(hashes=book)).token
        answer = ask(discovery_pb2.DiscoverRequest(hashes=book, token=token, previous_hashes=book))
        assert len(answer.matched_indexes) == 10
        assert quota_left(client) == QUOTA - 100
        # The old form's token covers previous + hashes; a new hash there costs one.
        answer = ask(
            discovery_pb2.DiscoverRequest(hashes=more, token=answer.token, previous_hashes=book)
        )
        assert quota_left(client) == QUOTA - 110
        # The same token proves its set in the difference form too.
        ask(discovery_pb2.DiscoverRequest(hashes=book + more, token=answer.token))
        assert quota_left(client) == QUOTA - 110


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"added_hashes": b"a" * 32}, "added_hashes", "needs the token that they are added to"),
        ({"removed_hashes": b"r" * 32}, "removed_hashes", "needs the token that covers them"),
        (
            {"token": b"t", "previous_hashes": b"p" * 32, "added_hashes": b"a" * 32},
            "added_hashes",
            "belongs to the difference form: no previous_hashes",
        ),
        ({"token": b"t", "removed_hashes": b"r" * 33}, "removed_hashes", "not a multiple of 32"),
        ({"token": b"t", "added_hashes": b"a" * 32 * 10_001}, "added_hashes", "exceeds the limit"),
    ],
)
def test_misplaced_or_malformed_difference_fields_are_named(
    server: ThreadedServer, fields: dict[str, bytes], field: str, reason: str
) -> None:
    with discovery_client(server.target) as client, pytest.raises(onnet.InvalidArgumentError) as e:
        client.calls.discover(discovery_pb2.DiscoverRequest(hashes=b"h" * 32, **fields))
    assert e.value.field == field
    assert reason in e.value.reason


def test_a_forged_difference_gains_nothing(roomy: ThreadedServer) -> None:
    paid = b"".join(onnet.contact_hash(e164) for e164 in BOOK[:30])
    wanted = b"".join(onnet.contact_hash(e164) for e164 in BOOK[30:40])
    with discovery_client(roomy.target) as client:
        token = client.calls.discover(discovery_pb2.DiscoverRequest(hashes=paid)).token
        before = quota_left(client)
        attempts: list[dict[str, bytes]] = [
            {"hashes": paid + wanted, "added_hashes": wanted[32:]},  # one left out of added
            {"hashes": paid[32:] + wanted, "removed_hashes": wanted[:32]},  # forged removal
            {"hashes": wanted},  # another set altogether
        ]
        for fields in attempts:
            with pytest.raises(onnet.InvalidArgumentError) as refused:
                client.calls.discover(discovery_pb2.DiscoverRequest(token=token, **fields))
            assert refused.value.field == "token"
        with pytest.raises(onnet.InvalidArgumentError) as outside:
            client.calls.discover(
                discovery_pb2.DiscoverRequest(hashes=paid, token=token, added_hashes=wanted[:32])
            )
        assert outside.value.field == "added_hashes"
        assert quota_left(client) == before  # nothing refused was charged
        client.calls.discover(
            discovery_pb2.DiscoverRequest(hashes=paid + wanted, token=token, added_hashes=wanted)
        )
        assert quota_left(client) == before - 10


def test_a_format_1_state_file_still_works(
    roomy: ThreadedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's --state, written by an SDK of before: its re-sync is still free."""
    numbers = BOOK[:50]
    book = b"".join(onnet.contact_hash(e164) for e164 in numbers)
    with discovery_client(roomy.target) as client:
        token = client.calls.discover(discovery_pb2.DiscoverRequest(hashes=book)).token
        paid = quota_left(client)
    state = tmp_path / "alice.sync"
    state.write_bytes(b"onnet-sync-v1\n" + len(token).to_bytes(2, "big") + token + book)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("phone\n" + "\n".join([*numbers, BOOK[60]]) + "\n")
    for name, value in security().client_env(DEFAULT_ACCOUNT).items():
        monkeypatch.setenv(name, value)
    args = ["discover", str(contacts), "--target", roomy.target, "--state", str(state)]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    assert state.read_bytes().startswith(b"onnet-sync-v3\n")
    with discovery_client(roomy.target) as client:
        assert quota_left(client) == paid - 1  # only the contact the old state did not cover
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    with discovery_client(roomy.target) as client:
        assert quota_left(client) == paid - 1


class AsyncRecorder(aio.UnaryUnaryClientInterceptor):
    """Keeps every DiscoverRequest that leaves an asyncio client."""

    def __init__(self) -> None:
        self.requests: list[discovery_pb2.DiscoverRequest] = []

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if details.method in (DISCOVER, DISCOVER.encode()):
            self.requests.append(request)
        return await continuation(details, request)


async def test_the_async_client_syncs_in_the_difference_form_too(
    make_server: Callable[..., ThreadedServer],
) -> None:
    server = make_server(max_batch=100, quota_new_numbers=1_000, quota_period=PERIOD)
    book = [registered_number(i) for i in range(250)]
    recorder = AsyncRecorder()
    channel = aio.secure_channel(server.target, security().channel(), interceptors=[recorder])
    async with async_discovery_client(server.target) as client, channel:
        client.calls = onnet.AsyncDiscoveryCalls(channel, metadata=account_metadata())

        async def quota() -> int:
            config = await client.calls.get_config(discovery_pb2.GetConfigRequest())
            return config.quota_remaining

        await client.discover(book)
        assert await quota() == 750
        assert client.sync_state.bits == 3  # 250 / 8 = 31 a part, at most 50 on average
        recorder.requests.clear()
        await client.discover(book)
        assert await quota() == 750
        assert all(r.token and not r.previous_hashes for r in recorder.requests)
        assert sum(len(r.hashes) for r in recorder.requests) == 32 * 250
        changed = [*book[3:], *(registered_number(i) for i in range(1_000, 1_005))]
        await asyncio.gather(client.discover(changed), client.discover(changed))
        assert await quota() == 745  # two syncs at once: the lock keeps one token per part


def test_the_load_harness_resyncs_weigh_what_the_ceiling_is_sent(
    make_server: Callable[..., ThreadedServer],
) -> None:
    """Its re-sync weighs one book, and Bench/Ceiling is sent exactly as much."""
    server = make_server(bench_ceiling=True)
    [book] = make_books(1, 1_000, 0.0, 0, seed=1)
    discovering = VirtualClient(book, resync=True)
    against_ceiling = VirtualClient(book, resync=True)
    with discovery_client(server.target) as client, secure_channel(server.target) as channel:
        discovering.answered(client.calls.discover(discovering.request()))
        ceiling = bench_pb2_grpc.BenchStub(channel).Ceiling
        against_ceiling.answered(ceiling(against_ceiling.request(), metadata=account_metadata()))
        resync = discovering.request()
        client.calls.discover(resync)  # a valid, free re-sync
    assert resync.ByteSize() == against_ceiling.request().ByteSize()
    assert 32 * 1_000 < resync.ByteSize() <= 32 * 1_000 + 64
