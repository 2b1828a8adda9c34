"""Promises of the README and docs/protocol.md about the Registry and Discovery calls, each
proved against real servers and a real Redis (and Redis Cluster where cluster code runs):

- a blocklist holds at most 10,000 numbers; one more is RESOURCE_EXHAUSTED, field
  `user_id`, no RetryInfo (README "Users' controls"; docs/protocol.md "Registry.Block");
- Unregister and Block while Redis is away fail fast with UNAVAILABLE and write nothing
  (README "Running with Redis": "Redis gone while serving"; docs/protocol.md "Errors");
- equal versions on one number are decided by user id, in every process, whatever order
  the claims arrive in, and the loser is removed from Redis (README "Recycled numbers";
  core/index/overlay.py);
- FetchBuckets of an account the registry does not know is PERMISSION_DENIED, field
  `authorization` (README "Apps"; docs/protocol.md "Credentials" and "Errors").
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import redis

import onnet
from onnet.v1 import discovery_pb2
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.stores.redis_connection import RedisClient, connect
from onnet_server.stores.redis_layout import STREAM_MAXLEN, Layout, UserRecord, flags_byte
from onnet_server.stores.redis_scripts import BLOCK, REGISTER
from onnet_server.stores.redis_store import RedisRegistry
from tests.redis_servers import RedisProcess, redis_server
from tests.security import discovery_client, registry_client
from tests.servers import ThreadedServer
from tests.waiting import wait_until

ALICE, BOB, CAROL, DAVE = "+14155550100", "+442079460958", "+4930901820", "+33612345678"

DOCUMENTED_BLOCKLIST_CAP = 10_000
"""README "Users' controls" and docs/protocol.md "Registry.Block" (not the code's constant:
the test must fail if the code's cap drifts from what the documents promise)."""

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
"""A Redis that keeps every acknowledged write across a restart (README "Persistence")."""


def fingerprints_of(server: ThreadedServer, numbers: list[str]) -> list[bytes]:
    """The fingerprints ``server`` keeps for ``numbers`` (under its pepper)."""
    assert server.config.pepper_hex is not None
    fingerprinter = Fingerprinter(bytes.fromhex(server.config.pepper_hex))
    return [fingerprinter.fingerprint(onnet.contact_hash(number)) for number in numbers]


# -- the blocklist cap ---------------------------------------------------------------------


def block_with_the_registry_script(url: str, user_id: str, fingerprints: list[bytes]) -> None:
    """Block each fingerprint for ``user_id`` with the registry's own BLOCK script, pipelined.

    The same atomic step a Block call takes (and the same change-stream entry), so every
    server follows it; thousands of gRPC calls would take seconds.
    """
    client = redis.Redis.from_url(url)
    try:
        sha = client.script_load(BLOCK.source)
        keys = Layout().user_keys(user_id)
        pipe = client.pipeline(transaction=False)
        for fingerprint in fingerprints:
            pipe.evalsha(
                sha, len(keys), *keys, user_id, fingerprint, STREAM_MAXLEN, 1,
                DOCUMENTED_BLOCKLIST_CAP,
            )  # fmt: skip
        assert pipe.execute() == [1] * len(fingerprints)
    finally:
        client.close()


def test_a_blocklist_holds_at_most_ten_thousand_numbers(
    make_server: Callable[..., ThreadedServer], redis_url: str
) -> None:
    server = make_server(redis_url=redis_url)
    blocked = [f"+1212555{n:04d}" for n in range(DOCUMENTED_BLOCKLIST_CAP - 1)]
    last_that_fits, one_more = "+16505550000", "+16505550001"
    with registry_client(server.target) as registry:
        registry.register("ann", ALICE)
        block_with_the_registry_script(redis_url, "ann", fingerprints_of(server, blocked))
        wait_until(lambda: registry.screen(blocked[-1], "ann") == onnet.Verdict.BLOCKED)

        assert registry.block("ann", last_that_fits) is True  # the 10,000th
        with pytest.raises(onnet.QuotaExceededError) as full:
            registry.block("ann", one_more)
        refusal = full.value
        assert (refusal.code, refusal.field) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "user_id")
        assert refusal.retry_after is None  # no RetryInfo: waiting will not help

        # The refused block wrote nothing, in the process or in Redis.
        assert registry.screen(one_more, "ann") == onnet.Verdict.ALLOWED
        assert registry.screen(last_that_fits, "ann") == onnet.Verdict.BLOCKED
        counted = redis.Redis.from_url(redis_url)
        try:
            assert counted.scard(Layout().blocks_key("ann")) == DOCUMENTED_BLOCKLIST_CAP
        finally:
            counted.close()
        # A number already on a full list is no change, not a refusal; the cap is on what
        # the list holds, so an unblock makes room again.
        assert registry.block("ann", blocked[0]) is False
        assert registry.unblock("ann", blocked[0]) is True
        assert registry.block("ann", one_more) is True
        assert registry.screen(one_more, "ann") == onnet.Verdict.BLOCKED


# -- writes while Redis is away ------------------------------------------------------------


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which it may kill and start again (by pid)."""
    with redis_server(tmp_path / "redis", *DURABLE) as server:
        yield server


def registry_state(registry: onnet.RegistryClient) -> tuple[object, ...]:
    """What the Registry answers about the test's users: holders, and who blocks Carol."""
    return (
        registry.lookup([ALICE, BOB, CAROL]),
        registry.screen(CAROL, "alice"),
        registry.screen(CAROL, "bob"),
    )


def try_register(registry: onnet.RegistryClient, user_id: str, e164: str) -> bool:
    try:
        registry.register(user_id, e164)
    except onnet.UnavailableError:
        return False
    return True


def test_unregister_and_block_while_redis_is_down_are_unavailable_and_write_nothing(
    make_server: Callable[..., ThreadedServer], durable_redis: RedisProcess
) -> None:
    server = make_server(redis_url=durable_redis.url)
    with registry_client(server.target, timeout=5) as registry:
        registry.register("alice", ALICE)
        registry.register("bob", BOB)
        registry.block("alice", CAROL)
        before = registry_state(registry)
        assert before == (["alice", "bob", None], onnet.Verdict.BLOCKED, onnet.Verdict.ALLOWED)

        durable_redis.stop()
        writes: list[Callable[[], object]] = [
            lambda: registry.unregister("alice"),
            lambda: registry.block("bob", CAROL),
        ]
        for write in writes:
            started = time.monotonic()
            with pytest.raises(onnet.UnavailableError) as refused:
                write()
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 3  # fails fast, no wait for a deadline
        # Lookups still answer from the index, which neither write touched.
        assert registry_state(registry) == before

        durable_redis.start()  # same port and folder: the append-only file is replayed
        wait_until(lambda: try_register(registry, "dave", DAVE))
        assert registry_state(registry) == before
    # Redis holds exactly what was acknowledged: a process that loads it sees the same.
    fresh = make_server(redis_url=durable_redis.url, pepper_hex=server.config.pepper_hex)
    with registry_client(fresh.target, timeout=5) as registry:
        assert registry_state(registry) == before


# -- equal-version ties --------------------------------------------------------------------

AHEAD_US = 10_000_000
"""How far ahead (in microseconds) the clock of the master that wrote the first holder ran."""


def location(kind: str, request: pytest.FixtureRequest) -> tuple[str | None, str | None]:
    if kind == "redis":
        return request.getfixturevalue("redis_url"), None
    return None, request.getfixturevalue("cluster_seeds")


@asynccontextmanager
async def redis_process_store(where: tuple[str | None, str | None]) -> AsyncIterator[RedisRegistry]:
    """A store as one server process has it, that follows the streams only when asked.

    Its feed polls once at start and then waits an hour, so that the test decides when it
    learns of the other processes' changes (``refresh``), as a slow feed would.
    """
    client = connect(*where)
    if where[1]:
        await client.initialize()
    store = RedisRegistry(client, poll_interval=3600)
    started = time.monotonic()
    await store.start()
    while store.stats.polled_at < started:  # the feed's first poll is done
        await asyncio.sleep(0.01)
    try:
        yield store
    finally:
        await store.close()


async def write_first_holder(
    where: tuple[str | None, str | None], user_id: str, fingerprint: bytes
) -> int:
    """Register ``user_id`` with the registry's own script, as a master whose clock runs
    ``AHEAD_US`` ahead would (versions are that master's clock); returns the version."""
    client: RedisClient = connect(*where)
    try:
        if where[1]:
            await client.initialize()
        ahead = time.time_ns() // 1000 + AHEAD_US
        args: list[bytes | str | int] = [
            user_id, fingerprint, flags_byte(True), STREAM_MAXLEN, ahead, b"",
        ]  # fmt: skip
        _, version, _, _ = await REGISTER(client, Layout().user_keys(user_id), args)
        return int(version)
    finally:
        await client.aclose()


async def record_in_redis(where: tuple[str | None, str | None], user_id: str) -> bytes | None:
    client: RedisClient = connect(*where)
    try:
        if where[1]:
            await client.initialize()
        layout = Layout()
        group, bucket = layout.group_of(user_id)
        value = await client.hget(layout.bucket_key(group, bucket), user_id)
        return value if isinstance(value, bytes) else None
    finally:
        await client.aclose()


LOW, HIGH = "amy", "zed"
"""The two tied claimants; the greater id must win. Their slot groups differ (checked), so
each claim's version is the floor its writer computed, not its group's last version + 1."""


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_equal_versions_are_decided_by_user_id_in_every_process(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Two processes each move a recycled number to a new user before either has seen the
    other's claim; both claims get the same version (the floor above the holder they knew,
    on masters whose clocks run behind). Every process must give the number to the greater
    (version, user id): the one that saw LOW first, the one that saw HIGH first, and one
    that loads the registry afterwards."""
    where = location(kind, request)
    layout = Layout()
    assert layout.group_of(LOW)[0] != layout.group_of(HIGH)[0]
    fingerprint = Fingerprinter(secrets.token_bytes(32)).fingerprint(onnet.contact_hash(ALICE))
    first_version = await write_first_holder(where, "hal", fingerprint)
    async with redis_process_store(where) as sees_low, redis_process_store(where) as sees_high:
        for store in (sees_low, sees_high):
            assert store.holders(fingerprint).user_ids == ["hal"]
        assert (await sees_low.register(LOW, fingerprint, True)).displaced_user_id == "hal"
        assert (await sees_high.register(HIGH, fingerprint, True)).displaced_user_id == "hal"
        low_record = await record_in_redis(where, LOW)
        high_record = await record_in_redis(where, HIGH)
        assert low_record is not None
        assert high_record is not None
        tie = UserRecord.unpack(low_record).version
        assert tie == UserRecord.unpack(high_record).version == first_version + 1  # a real tie

        await sees_low.refresh()  # learns of HIGH after LOW
        await sees_high.refresh()  # learns of LOW after HIGH
        for store in (sees_low, sees_high):
            assert store.holders(fingerprint).user_ids == [HIGH]
            assert store.match(fingerprint).user_ids == [HIGH]
        async with redis_process_store(where) as loads_later:
            assert loads_later.holders(fingerprint).user_ids == [HIGH]
            assert loads_later.match(fingerprint).user_ids == [HIGH]


async def test_the_loser_of_a_tie_is_removed_from_the_registry(redis_url: str) -> None:
    """README "Recycled numbers": the loser is removed from Redis in a second atomic step by
    whichever process sees the conflict first; docs/protocol.md "Registry.Register": the
    previous holder is removed from the registry."""
    where = (redis_url, None)
    fingerprint = Fingerprinter(secrets.token_bytes(32)).fingerprint(onnet.contact_hash(ALICE))
    await write_first_holder(where, "hal", fingerprint)
    async with redis_process_store(where) as sees_low, redis_process_store(where) as sees_high:
        await sees_low.register(LOW, fingerprint, True)
        await sees_high.register(HIGH, fingerprint, True)
        await sees_low.refresh()  # each process sees the conflict, and settles it
        await sees_high.refresh()
        assert sees_low.holders(fingerprint).user_ids == [HIGH]
        removed = await record_in_redis(where, LOW) is None
        await sees_high.unregister(HIGH)  # the number's holder is erased
        await sees_low.refresh()
        held_after = sees_low.holders(fingerprint).user_ids
    assert (removed, held_after) == (True, [])


# -- FetchBuckets of an account the registry does not know ----------------------------------


def assert_refused_as_unregistered(target: str, account: str, prefix_bits: int) -> None:
    """FetchBuckets with ``account``'s credential is PERMISSION_DENIED, field authorization."""
    request = discovery_pb2.FetchBucketsRequest(prefix_bits=prefix_bits, buckets=[0])
    with (
        discovery_client(target, account=account) as client,
        pytest.raises(onnet.PermissionDeniedError) as refused,
    ):
        client.calls.fetch_buckets(request)
    assert (refused.value.code, refused.value.field) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "authorization",
    )


def test_fetch_buckets_refuses_an_account_the_registry_does_not_know(
    make_server: Callable[..., ThreadedServer],
) -> None:
    server = make_server()
    with registry_client(server.target) as registry:
        registry.register("alice", ALICE)
        registry.register("erin", BOB)
    with discovery_client(server.target, account="erin") as erin:
        answer = erin.calls.fetch_buckets(discovery_pb2.FetchBucketsRequest(buckets=[0]))
        assert len(answer.buckets) == 1
        with pytest.raises(onnet.InvalidArgumentError) as bad_prefix:
            erin.calls.fetch_buckets(discovery_pb2.FetchBucketsRequest(prefix_bits=20, buckets=[0]))
        assert bad_prefix.value.field == "prefix_bits"

    # Never registered: refused on its headers, before the request is read (a prefix no
    # server announces would otherwise be INVALID_ARGUMENT).
    assert_refused_as_unregistered(server.target, "never-registered", 0)
    assert_refused_as_unregistered(server.target, "never-registered", 20)

    # Erased while its credential lives on.
    with registry_client(server.target) as registry:
        registry.unregister("erin")
    assert_refused_as_unregistered(server.target, "erin", 0)
