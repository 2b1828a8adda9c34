"""The registry in real Redis and Redis Cluster: snapshots, change feeds, recycled numbers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from onnet_server.stores.redis_layout import GROUPS, Layout
from onnet_server.stores.redis_store import RedisRegistry
from tests.redis_servers import redis_server
from tests.stores import open_redis_store

KINDS = ["redis", "cluster"]


def location(kind: str, request: pytest.FixtureRequest) -> tuple[str | None, str | None]:
    """(redis_url, cluster seeds) for open_redis_store."""
    if kind == "redis":
        return request.getfixturevalue("redis_url"), None
    return None, request.getfixturevalue("cluster_seeds")


def keys_on_every_node(where: tuple[str | None, str | None], match: str) -> list[bytes]:
    """Every key matching ``match``, on the Redis or on each node of the Redis Cluster."""
    url, seeds = where
    if url is not None:
        nodes = [redis.Redis.from_url(url)]
    else:
        assert seeds is not None
        addresses = [seed.rpartition(":") for seed in seeds.split(",")]
        nodes = [redis.Redis(host=host, port=int(port)) for host, _, port in addresses]
    keys: list[bytes] = []
    for node in nodes:
        keys += node.scan_iter(match=match)
        node.close()
    return keys


def stream_entries(where: tuple[str | None, str | None]) -> list[dict[bytes | str, bytes | str]]:
    """The fields of every change-stream entry, each stream read from the node holding it."""
    url, seeds = where
    client: redis.Redis | RedisCluster
    if url is not None:
        client = redis.Redis.from_url(url)
    else:
        assert seeds is not None
        client = RedisCluster.from_url(f"redis://{seeds.split(',')[0]}")  # finds the others
    entries = []
    for group in range(GROUPS):
        for _id, fields in client.xrange(Layout().stream_key(group)) or []:
            assert fields is not None
            entries.append(fields)
    client.close()
    return entries


async def eventually(check: object, timeout: float = 5.0) -> float:
    """Wait until ``check()`` is true; return the seconds it took."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def numbers(count: int) -> list[bytes]:
    return [os.urandom(16) for _ in range(count)]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_new_process_loads_what_others_wrote(
    kind: str, request: pytest.FixtureRequest
) -> None:
    where = location(kind, request)
    fps = numbers(300)
    async with open_redis_store(*where) as writer:
        for i, fp in enumerate(fps[:200]):
            await writer.register(f"user-{i}", fp, discoverable=i % 5 != 0)
        for i in range(0, 200, 7):
            await writer.unregister(f"user-{i}")
        for i in range(1, 200, 11):
            await writer.register(f"user-{i}", fps[200 + i % 100], discoverable=True)
        expected = writer.match(b"".join(fps))
        async with open_redis_store(*where) as reader:
            loaded = reader.match(b"".join(fps))
            assert len(reader) == len(writer)
    assert loaded.indexes.tolist() == expected.indexes.tolist()
    assert loaded.user_ids == expected.user_ids
    assert len(expected.user_ids) > 100


@pytest.mark.parametrize("kind", KINDS)
async def test_changes_reach_another_process_through_the_feed(
    kind: str, request: pytest.FixtureRequest
) -> None:
    where = location(kind, request)
    a, b = numbers(2)
    async with open_redis_store(*where) as writer, open_redis_store(*where) as reader:
        await writer.register("alice", a, True)
        await eventually(lambda: reader.match(a).user_ids == ["alice"])
        await writer.register("alice", b, True)  # a move
        await eventually(lambda: reader.match(a + b).indexes.tolist() == [1])
        assert reader.match(a + b).user_ids == ["alice"]
        await writer.register("alice", b, False)  # hidden
        await eventually(lambda: reader.match(b).user_ids == [])
        await writer.register("alice", b, True)
        await writer.unregister("alice")  # erased
        await eventually(lambda: len(reader) == 0)
        assert reader.match(a + b).user_ids == []


@pytest.mark.parametrize("kind", KINDS)
async def test_every_process_agrees_who_holds_a_recycled_number(
    kind: str, request: pytest.FixtureRequest
) -> None:
    where = location(kind, request)
    (number,) = numbers(1)
    async with open_redis_store(*where) as first, open_redis_store(*where) as second:
        await first.register("alice", number, True)
        await eventually(lambda: second.match(number).user_ids == ["alice"])
        outcome = await second.register("bob", number, True)  # the carrier recycled it
        assert outcome.displaced_user_id == "alice"
        await eventually(lambda: first.match(number).user_ids == ["bob"] and len(first) == 1)
        async with open_redis_store(*where) as third:
            assert third.match(number).user_ids == ["bob"]
            assert len(third) == 1
        assert not await first.unregister("alice")  # alice is gone from Redis too


_C_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a", ord("b"): b"\b"}


def monitored_arguments(line: bytes) -> list[bytes]:
    """The arguments of a MONITOR line, which Redis writes as quoted C-escaped strings."""
    arguments = []
    for quoted in re.findall(rb'"((?:[^"\\]|\\.)*)"', line):
        value, at = bytearray(), 0
        while at < len(quoted):
            if quoted[at] != ord("\\"):
                value.append(quoted[at])
                at += 1
            elif quoted[at + 1] == ord("x"):
                value.append(int(quoted[at + 2 : at + 4], 16))
                at += 4
            else:
                value += _C_ESCAPES.get(quoted[at + 1], bytes([quoted[at + 1]]))
                at += 2
        arguments.append(bytes(value))
    return arguments


@asynccontextmanager
async def records_written(redis_url: str) -> AsyncIterator[dict[str, bytes]]:
    """Each user's record as Redis stored it (HSET of a bucket), from MONITOR: it shows the
    commands scripts run, so a claim that another process removes a moment later is seen."""
    client = redis.asyncio.Redis.from_url(redis_url)
    written: dict[str, bytes] = {}
    async with client.monitor() as monitor:
        assert monitor.connection is not None

        async def read(connection: redis.asyncio.Connection) -> None:
            while True:
                arguments = monitored_arguments(await connection.read_response())
                if arguments[:1] == [b"HSET"] and b":u:" in arguments[1]:
                    written[arguments[2].decode()] = arguments[3]

        reader = asyncio.create_task(read(monitor.connection))
        try:
            yield written
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    await client.aclose()


def version_of(record: bytes) -> int:
    """A record's version: 16-byte fingerprint, flag byte, 7-byte big-endian version."""
    return int.from_bytes(record[17:24], "big")


async def test_concurrent_claims_settle_on_the_newest_everywhere(redis_url: str) -> None:
    (number,) = numbers(1)
    async with (
        records_written(redis_url) as written,
        open_redis_store(redis_url) as first,
        open_redis_store(redis_url) as second,
    ):
        await asyncio.gather(
            first.register("alice", number, True), second.register("bob", number, True)
        )
        await eventually(lambda: {"alice", "bob"} <= written.keys())
        assert written["alice"][:16] == written["bob"][:16] == number  # read back whole
        # overlay.py: the claim with the greatest (version, user id) holds the number.
        claims = {user: (version_of(written[user]), user) for user in ("alice", "bob")}
        winner = max(claims, key=claims.__getitem__)
        loser = min(claims, key=claims.__getitem__)
        await first.catch_up()
        await second.catch_up()
        assert first.match(number).user_ids == [winner]
        assert second.match(number).user_ids == [winner]
        await eventually(lambda: len(first) == 1 and len(second) == 1)
        async with open_redis_store(redis_url) as third:
            assert third.match(number).user_ids == [winner]
            assert len(third) == 1
        assert not await first.unregister(loser)  # the loser is gone from Redis


async def test_a_writer_whose_feed_is_behind_still_displaces(redis_url: str) -> None:
    (number,) = numbers(1)
    # A writer that never follows the feed: it does not know alice holds the number.
    blind = RedisRegistry(redis.asyncio.Redis.from_url(redis_url))
    await blind.reload()
    async with open_redis_store(redis_url) as other:
        await other.register("alice", number, True)
        await blind.register("bob", number, True)
        # The other process sees bob's newer claim and removes alice from Redis.
        await eventually(lambda: other.match(number).user_ids == ["bob"] and len(other) == 1)
        async with open_redis_store(redis_url) as fresh:
            assert fresh.match(number).user_ids == ["bob"]
            assert len(fresh) == 1
        await other.unregister("bob")
        await eventually(lambda: other.match(number).user_ids == [])  # alice does not return
    await blind.close()


async def test_a_redis_that_lost_its_data_makes_the_index_reload(tmp_path: Path) -> None:
    (number,) = numbers(1)
    with redis_server(tmp_path / "volatile") as server:
        async with open_redis_store(server.url, position_check_interval=0.2) as store:
            await store.register("alice", number, True)
            await store.register("bob", os.urandom(16), True)
            server.stop()
            server.start()  # no persistence: it comes back empty
            await eventually(lambda: len(store) == 0, timeout=10)
            assert store.match(number).user_ids == []


async def test_a_gap_in_the_feed_makes_the_index_reload(redis_url: str) -> None:
    fps = numbers(20)
    client = redis.Redis.from_url(redis_url)
    # A reader whose feed does not run: it falls behind while the streams are trimmed.
    reader = RedisRegistry(redis.asyncio.Redis.from_url(redis_url))
    await reader.reload()
    async with open_redis_store(redis_url) as writer:
        for i, fp in enumerate(fps[:10]):
            await writer.register(f"user-{i}", fp, True)
        for group in range(GROUPS):
            client.xtrim(Layout().stream_key(group), maxlen=0)
        for i, fp in enumerate(fps[10:], start=10):
            await writer.register(f"user-{i}", fp, True)
        reloads = reader.stats.reloads
        await reader.catch_up()
        assert reader.stats.reloads == reloads + 1
        assert reader.match(b"".join(fps)).user_ids == [f"user-{i}" for i in range(20)]
        (late,) = numbers(1)
        await writer.register("late", late, True)
        assert await reader.catch_up() == 1  # following resumes from the new position
        assert reader.match(late).user_ids == ["late"]
        await reader.close()


async def test_keys_carry_hash_tags_and_hold_no_numbers(redis_url: str) -> None:
    fps = numbers(50)
    async with open_redis_store(redis_url) as store:
        for i, fp in enumerate(fps):
            await store.register(f"user-{i}", fp, True)
    client = redis.Redis.from_url(redis_url)
    keys = [key.decode() for key in client.scan_iter(count=1000)]
    assert keys
    assert "onnet:epoch" in keys  # a random marker of the data set, nothing personal
    for key in set(keys) - {"onnet:epoch"}:
        assert key.startswith("onnet:{g")  # one hash tag: one slot per group
        assert "}:" in key
    bucket = next(key for key in keys if ":u:" in key)
    assert client.object("encoding", bucket) == b"listpack"  # the compact encoding


@pytest.mark.parametrize("kind", KINDS)
async def test_blocks_reach_other_processes_and_snapshots(
    kind: str, request: pytest.FixtureRequest
) -> None:
    where = location(kind, request)
    alice, bob = numbers(2)
    async with open_redis_store(*where) as writer, open_redis_store(*where) as reader:
        await writer.register("alice", alice, True)
        await writer.register("bob", bob, True)
        await writer.set_blocked("alice", bob, True)
        await eventually(lambda: reader.blocked_by("bob") == frozenset({"alice"}))
        async with open_redis_store(*where) as late:
            assert late.blocked_by("bob") == frozenset({"alice"})
        await writer.set_blocked("alice", bob, False)
        await eventually(lambda: reader.blocked_by("bob") == frozenset())
        await writer.set_blocked("alice", bob, True)
        await writer.unregister("alice")
        await eventually(lambda: reader.blocked_by("bob") == frozenset() and len(reader) == 1)
    # Erasure left no blocklist key, and no stream entry naming alice but the erasure's own.
    assert keys_on_every_node(where, "onnet:*:u:*")  # bob's record: the scan finds keys
    assert keys_on_every_node(where, "onnet:*:b:*") == []
    assert [e[b"op"] for e in stream_entries(where) if e[b"user"] == b"alice"] == [b"del"]
