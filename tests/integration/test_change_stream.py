"""The change streams carry no number: no fingerprint and no private-mode entry is ever in a
stream entry, and every process's index still converges (real Redis and Redis Cluster)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import RedisCluster

from onnet import ImportRow, contact_hash
from onnet.protocol import oprf
from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import UserRow
from onnet_server.core.private.keys import OprfKey
from onnet_server.core.registry import RegistryService
from onnet_server.stores.redis_connection import RedisClient, connect, scan_keys
from onnet_server.stores.redis_feed import FeedFollower, _Change, _Current
from onnet_server.stores.redis_layout import Layout
from onnet_server.stores.redis_scripts import REGISTER, Script
from onnet_server.stores.redis_state import RegistryState
from onnet_server.stores.redis_store import RedisRegistry
from onnet_server.stores.redis_writes import RedisWriter
from tests.stores import open_redis_store

KINDS = ["redis", "cluster"]
NUMBERS = {
    "alice-1": "+14155550100",
    "alice-2": "+442079460958",
    "bob": "+4930901820",
    "carol": "+33612345678",
    "eve": "+819012345678",
    "frank": "+61412345678",
}
EVERYONE = ["alice", "bob", "carol", "dave", "eve", "frank"]


def location(kind: str, request: pytest.FixtureRequest) -> tuple[str | None, str | None]:
    if kind == "redis":
        return request.getfixturevalue("redis_url"), None
    return None, request.getfixturevalue("cluster_seeds")


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def stored(client: RedisClient, user_id: str) -> bytes:
    """The user's record as Redis holds it now."""
    layout = Layout()
    group, bucket = layout.group_of(user_id)
    value = await client.hget(layout.bucket_key(group, bucket), user_id)
    assert isinstance(value, bytes)
    return value


async def stream_entries(client: RedisClient) -> list[dict[bytes, bytes]]:
    """Every entry of every stream key under the prefix (every master of a cluster)."""
    entries: list[dict[bytes, bytes]] = []
    streams = 0
    for key in await scan_keys(client, "onnet:*"):
        if await client.type(key) in (b"stream", "stream"):
            streams += 1
            for _id, fields in await client.xrange(key) or []:
                assert fields is not None
                entries.append({raw(name): raw(value) for name, value in fields.items()})
    assert streams > 0
    return entries


def raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def answers(store: RedisRegistry, fingerprints: bytes) -> object:
    """Everything a lookup can ask the store, for comparing two processes."""
    matched, held = store.match(fingerprints), store.holders(fingerprints)
    numbers = [fingerprints[i : i + 16] for i in range(0, len(fingerprints), 16)]
    return (
        len(store),
        matched.indexes.tolist(),
        matched.user_ids,
        held.indexes.tolist(),
        held.user_ids,
        {user: store.blocked_by(user) for user in EVERYONE},
        {(user, fp): store.blocks(user, fp) for user in EVERYONE for fp in numbers},
        sorted(store.bucket_entries([0], 0)[0]),
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_no_stream_entry_holds_a_fingerprint_or_a_private_entry(
    kind: str, request: pytest.FixtureRequest
) -> None:
    where = location(kind, request)
    pepper = secrets.token_bytes(32)
    fingerprinter, oprf_key = Fingerprinter(pepper), OprfKey.from_pepper(pepper)
    fingerprint = {name: fingerprinter.fingerprint(contact_hash(n)) for name, n in NUMBERS.items()}
    async with open_redis_store(*where) as follower, open_redis_store(*where) as writer:
        service = RegistryService(writer, fingerprinter, oprf_key)
        records: list[bytes] = []  # every record the registry held at some point

        async def remember(*user_ids: str) -> None:
            records.extend([await stored(writer.client, user_id) for user_id in user_ids])

        await service.register("alice", NUMBERS["alice-1"], True)
        await remember("alice")
        await service.register("alice", NUMBERS["alice-2"], True)  # a move
        await remember("alice")
        await service.register("bob", NUMBERS["bob"], True)
        await service.register("carol", NUMBERS["carol"], True)
        await remember("bob", "carol")
        displaced = await service.register("dave", NUMBERS["alice-2"], True)  # recycled number
        assert displaced.displaced_user_id == "alice"
        await remember("dave")
        assert await service.set_blocked("bob", NUMBERS["alice-1"], True)
        assert await service.set_blocked("bob", NUMBERS["alice-1"], False)
        assert await service.set_blocked("bob", NUMBERS["alice-2"], True)  # bob hides from dave
        assert await service.set_blocked("carol", NUMBERS["bob"], True)
        outcome = await service.import_batch(
            [ImportRow("eve", NUMBERS["eve"], True), ImportRow("frank", NUMBERS["frank"], False)],
            0,
        )
        assert outcome.imported == 2
        await remember("eve", "frank")
        await service.unregister("carol")  # erasure, with carol's blocklist

        # What must never be in a stream: each number's fingerprint and OPRF output, and
        # every private-mode entry the registry held (its sealed part on its own too).
        forbidden: set[bytes] = set()
        for name, e164 in NUMBERS.items():
            output = oprf.evaluate(oprf_key.secret, e164.encode("ascii"))
            forbidden |= {fingerprint[name], fingerprint[name].hex().encode(), output}
            forbidden.add(output.hex().encode())
        entries = [record[24:] for record in records if len(record) > 24]
        assert len(entries) == 6  # every discoverable registration had one
        forbidden |= set(entries) | {entry[4:] for entry in entries}
        assert {record[:16] for record in records} <= forbidden  # the test's own numbers

        found = await stream_entries(writer.client)
        assert found
        for fields in found:
            assert set(fields) in ({b"op", b"user", b"seq"}, {b"op", b"user", b"seq", b"version"})
            assert (b"version" in fields) == (fields[b"op"] == b"del")
            for field, value in fields.items():
                for secret in forbidden:
                    assert secret not in field
                    assert secret not in value
        # Erasure and displacement leave the same trace: the user's erasure event alone.
        for gone in ("alice", "carol"):
            assert [f[b"op"] for f in found if f[b"user"] == gone.encode()] == [b"del"]

        everything = b"".join(fingerprint.values())
        expected = answers(writer, everything)
        assert writer.match(everything).user_ids == ["dave", "bob", "eve"]
        assert writer.blocked_by("dave") == frozenset({"bob"})
        assert writer.blocked_by("bob") == frozenset()  # carol's blocklist went with her
        # A process that followed every change from before the first one agrees...
        await eventually(lambda: answers(follower, everything) == expected)
        # ...and so does one that loads a snapshot now.
        async with open_redis_store(*where) as fresh:
            assert answers(fresh, everything) == expected


@pytest.mark.parametrize("kind", KINDS)
async def test_entries_of_the_previous_format_are_applied_without_their_value(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A process of the previous release (during an upgrade) writes entries with a "value"
    field: the record, the blocked fingerprint, the erasure's version. The follower takes
    records and blocklists from where they live, and reads only the erasure's version."""
    where = location(kind, request)
    layout = Layout()
    user = "old-timer"
    group, bucket = layout.group_of(user)
    held, claimed, blocked = os.urandom(16), os.urandom(16), os.urandom(16)
    version = time.time_ns() // 1000
    async with open_redis_store(*where) as follower:
        client = follower.client

        async def old_entry(op: str, value: bytes) -> None:
            seq = await client.incr(layout.seq_key(group))
            fields = {"op": op, "user": user, "value": value, "seq": seq}
            await client.xadd(layout.stream_key(group), fields)  # type: ignore[arg-type]

        await client.hset(
            layout.bucket_key(group, bucket), user, held + b"\x01" + version.to_bytes(7, "big")
        )
        # The entry's value names another number: the bucket is what counts.
        await old_entry("put", claimed + b"\x01" + version.to_bytes(7, "big"))
        await follower.catch_up()
        assert follower.match(held + claimed).user_ids == [user]
        assert follower.match(claimed).user_ids == []

        await client.sadd(layout.blocks_key(user), blocked)
        await old_entry("block", os.urandom(16))
        await follower.catch_up()
        assert follower.blocks(user, blocked) is True

        await client.hdel(layout.bucket_key(group, bucket), user)
        await client.delete(layout.blocks_key(user))
        await old_entry("del", (version + 1).to_bytes(7, "big"))
        await follower.catch_up()
        assert len(follower) == 0
        assert follower.blocks(user, blocked) is None


class FollowerWithARace(FeedFollower):
    """A feed that lets ``race`` run between reading the streams and reading records."""

    race: Callable[[], Awaitable[None]] | None = None

    async def _read_current(self, changes: list[_Change]) -> _Current:
        race, self.race = self.race, None
        if race is not None:
            await race()
        return await super()._read_current(changes)


class ReaderWithARace(RedisRegistry):
    """A registry whose feed is a FollowerWithARace (``race`` reaches it)."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self._feed = self.racing = FollowerWithARace(
            self._state, self.rebuilder, self._writer, self._snapshot
        )


@pytest.mark.parametrize("kind", KINDS)
async def test_an_erasure_behind_a_record_read_ahead_still_drops_the_blocklist(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A follower may read a record newer than the entry it applies: here a user erased and
    registered again before the follower read their record. The erasure's entry, applied
    after that newer record, must still drop the blocklist Redis deleted with it."""
    where = location(kind, request)
    first, second, third, blocked = (os.urandom(16) for _ in range(4))
    client = connect(*where)
    if where[1]:
        await client.initialize()
    reader = ReaderWithARace(client)
    await reader.reload()  # no feed task: each catch_up is one poll
    try:
        async with open_redis_store(*where) as writer:
            await writer.register("gus", first, True)
            await writer.set_blocked("gus", blocked, True)
            await reader.catch_up()
            assert reader.blocks("gus", blocked) is True

            await writer.register("gus", second, True)  # the entry the reader will see

            async def erase_and_register_again() -> None:
                assert await writer.unregister("gus")
                await writer.register("gus", third, True)

            reader.racing.race = erase_and_register_again
            await reader.catch_up()
            assert reader.match(third).user_ids == ["gus"]  # read ahead of the stream
            await reader.catch_up()  # the erasure and the new registration
            assert reader.match(first + second + third).user_ids == ["gus"]
            assert reader.blocks("gus", blocked) is False
            async with open_redis_store(*where) as fresh:
                assert fresh.blocks("gus", blocked) is False
    finally:
        await reader.close()


@asynccontextmanager
async def polled_registries(
    where: tuple[str | None, str | None], count: int
) -> AsyncIterator[list[RedisRegistry]]:
    """``count`` loaded registries, each on its own connection and with no feed task: each
    ``catch_up`` is one poll, when the test says."""
    stores = []
    for _ in range(count):
        client = connect(*where)
        if where[1]:
            await client.initialize()
        stores.append(RedisRegistry(client))
    try:
        for store in stores:
            await store.reload()
        yield stores
    finally:
        for store in stores:
            await store.close()


async def hget_calls(client: RedisClient) -> int:
    """How many HGETs Redis has served since it started (every master of a cluster)."""
    if isinstance(client, RedisCluster):
        per_node = await client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        stats = list(per_node.values())
    else:
        stats = [await client.info("commandstats")]
    return sum(int(node.get("cmdstat_hget", {}).get("calls", 0)) for node in stats)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_writer_does_not_read_back_what_it_registered(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """An imported row costs the process that wrote it one application, not two: its feed
    passes the rows' entries without reading their records back (before, each came back
    with an HGET and was applied again). A process that did not write them reads them."""
    run = secrets.token_hex(4)
    rows = [UserRow(f"row-{run}-{i}", os.urandom(16), i % 3 != 0, b"") for i in range(300)]
    async with polled_registries(location(kind, request), 2) as (writer, reader):
        before = await hget_calls(writer.client)
        await writer.register_many(rows)
        while await writer.catch_up():
            pass
        assert await hget_calls(writer.client) == before
        assert not any(cursor.own_puts for cursor in writer._state.cursors)

        while await reader.catch_up():
            pass
        assert await hget_calls(writer.client) == before + len(rows)  # the count counts
        everything = b"".join(row.fingerprint for row in rows)
        assert reader.match(everything).user_ids == writer.match(everything).user_ids
        assert len(writer.match(everything).user_ids) == 200
        # The writer still applies what others write after its own rows.
        await reader.register(f"late-{run}", rows[0].fingerprint, True)
        await writer.catch_up()
        assert writer.match(rows[0].fingerprint).user_ids == [f"late-{run}"]


def test_an_own_entry_the_feed_already_passed_is_not_remembered() -> None:
    """The feed may read a write's entry before the write's reply comes back (it applies it
    as anyone's). Remembering it then would keep it for ever: the feed never comes back."""
    state = RegistryState(connect("redis://127.0.0.1:1/0", None))  # never connects
    state.cursors[3].last_seq = 10
    assert not state.applied_own_put(3, 10, b"1-10")
    assert not state.applied_own_put(3, 9, b"1-9")
    assert state.cursors[3].own_puts == {}
    assert state.applied_own_put(3, 11, "1-11")
    assert state.cursors[3].own_puts == {11: b"1-11"}


@pytest.mark.parametrize("kind", KINDS)
async def test_an_entry_with_the_id_of_an_own_entry_in_another_group_is_applied(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Entry ids are unique within one group's stream, not across the 16: an import writes
    to many groups in the same millisecond. Another group's entry with the id of one of
    this process's own is someone else's registration, and must be applied."""
    run = secrets.token_hex(4)
    layout = Layout()
    mine = f"mine-{run}"
    theirs = next(
        f"theirs-{run}-{i}"
        for i in range(100)
        if layout.group_of(f"theirs-{run}-{i}")[0] != layout.group_of(mine)[0]
    )
    number = os.urandom(16)
    async with polled_registries(location(kind, request), 1) as (writer,):
        await writer.register(mine, os.urandom(16), True)
        newest = await writer.client.xrevrange(layout.stream_key(layout.group_of(mine)[0]), count=1)
        assert newest
        [(own_id, _)] = newest
        # Another process's registration, whose entry got the same id in its own group.
        group, bucket = layout.group_of(theirs)
        version = (time.time_ns() // 1000).to_bytes(7, "big")
        await writer.client.hset(
            layout.bucket_key(group, bucket), theirs, number + b"\x01" + version
        )
        seq = await writer.client.incr(layout.seq_key(group))
        fields = {"op": "put", "user": theirs, "seq": seq}
        await writer.client.xadd(layout.stream_key(group), fields, id=own_id)  # type: ignore[arg-type]
        while await writer.catch_up():
            pass
        assert writer.match(number).user_ids == [theirs]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_sequence_number_redis_hands_out_again_is_not_taken_for_our_own(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A Redis that loses its last writes (a failover before they reached the replica, a
    restart from an older file) hands their sequence numbers out again. An entry that comes
    with the number of one of this process's own writes, but was written by another, must
    be applied: here the same user, registered again elsewhere with another number."""
    user = f"twice-{secrets.token_hex(4)}"
    lost, kept = os.urandom(16), os.urandom(16)
    layout = Layout()
    group, bucket = layout.group_of(user)
    async with polled_registries(location(kind, request), 2) as (writer, other):
        await writer.register(user, lost, True)
        # Redis loses that write: its record, its stream entry and its sequence number.
        client = writer.client
        newest = await client.xrevrange(layout.stream_key(group), count=1)
        assert newest
        assert newest[0][0] is not None
        await client.xdel(layout.stream_key(group), newest[0][0])
        await client.decr(layout.seq_key(group))
        await client.hdel(layout.bucket_key(group, bucket), user)

        await other.register(user, kept, True)  # the same sequence number, another entry
        while await writer.catch_up():
            pass
        assert writer.match(kept).user_ids == [user]
        assert writer.match(lost).user_ids == []
        assert not any(cursor.own_puts for cursor in writer._state.cursors)


class WriterWhoseNextSettleFails(RedisWriter):
    """A writer whose next removal of a displaced claim fails as if Redis went away."""

    fail_next = True

    async def _drop_stale(
        self, user_id: str, fingerprint: bytes, winning_version: int, winner: str
    ) -> bool:
        if self.fail_next:
            self.fail_next = False
            raise StoreUnavailable("", "the registry store is unavailable")
        return await super()._drop_stale(user_id, fingerprint, winning_version, winner)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_displaced_claim_the_writer_could_not_remove_is_removed_by_its_feed(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The writer removes the claim its registration displaced; when that fails, its own
    feed must not pass the registration's entry as already done, but settle it again."""
    run = secrets.token_hex(4)
    first, second, number = f"first-{run}", f"second-{run}", os.urandom(16)
    async with polled_registries(location(kind, request), 1) as (store,):
        store._writer = WriterWhoseNextSettleFails(store._state, store.rebuilder)
        client = store.client
        await store.register(first, number, True)
        await store.register(second, number, True)  # takes the number; first is displaced
        assert await stored_or_none(client, first) is not None  # the removal failed
        while await store.catch_up():
            pass
        assert await stored_or_none(client, first) is None
        assert store.match(number).user_ids == [second]


async def stored_or_none(client: RedisClient, user_id: str) -> bytes | None:
    """The user's record as Redis holds it now, or None."""
    layout = Layout()
    group, bucket = layout.group_of(user_id)
    value = await client.hget(layout.bucket_key(group, bucket), user_id)
    assert value is None or isinstance(value, bytes)
    return value


@pytest.mark.parametrize("kind", KINDS)
async def test_a_registration_erased_before_its_reply_came_back_stays_erased(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The writer's feed may pass a registration's entry before the write's reply is back,
    and an erasure after it: the reply, applied then, would bring the user back in this
    process (an index keeps no trace of an erasure) until its next load from Redis."""
    run = secrets.token_hex(4)
    user, number = f"gone-{run}", os.urandom(16)
    async with polled_registries(location(kind, request), 2) as (writer, other):
        state = writer._state
        script = state.run

        async def reply_comes_back_late(
            called: Script, keys: list[str], args: list[bytes | str | int]
        ) -> object:
            reply = await script(called, keys, args)
            if called is REGISTER:  # erased elsewhere, and this feed polls, meanwhile
                assert await other.unregister(user)
                while await writer.catch_up():
                    pass
            return reply

        state.run = reply_comes_back_late  # type: ignore[method-assign, assignment]
        await writer.register(user, number, True)
        assert writer.match(number).user_ids == []
        assert writer.index.record(user) is None
