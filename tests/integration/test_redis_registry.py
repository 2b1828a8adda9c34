"""The registry in real Redis and Redis Cluster: snapshots, change feeds, recycled numbers."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import redis

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


async def test_concurrent_claims_settle_on_the_newest_everywhere(redis_url: str) -> None:
    (number,) = numbers(1)
    async with open_redis_store(redis_url) as first, open_redis_store(redis_url) as second:
        await asyncio.gather(
            first.register("alice", number, True), second.register("bob", number, True)
        )
        await first.catch_up()
        await second.catch_up()
        assert first.match(number).user_ids == second.match(number).user_ids
        winner = first.match(number).user_ids[0]
        loser = "bob" if winner == "alice" else "alice"
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
    client = redis.Redis.from_url(where[0]) if where[0] else None
    if client is not None:  # erasure left no blocklist key and no stream entry naming alice
        assert not list(client.scan_iter(match="onnet:*:b:*"))
        for group in range(GROUPS):
            for _id, fields in client.xrange(Layout().stream_key(group)) or []:
                assert fields is not None
                assert fields[b"user"] != b"alice" or fields[b"op"] == b"del"
