"""The registry in Redis or Redis Cluster, answered from an in-process index that follows it.

Redis is the source of truth; writes go there first, in one atomic script per change (see
redis_scripts). Each server process loads a snapshot into a RegistryIndex at start and then
follows the groups' change streams, so lookups never leave the process and keep working
while Redis is away. A process that finds a gap in a stream (it fell behind a trim, or Redis
lost its data) loads a fresh snapshot and swaps it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.index import RegistryIndex
from onnet_server.core.ports import Matches, Registration
from onnet_server.stores.redis_connection import STORE_DOWN, RedisClient
from onnet_server.stores.redis_layout import (
    GROUPS,
    STREAM_MAXLEN,
    Layout,
    UserRecord,
    flags_byte,
    parse_records,
)
from onnet_server.stores.redis_scripts import (
    DROP_IF_STALE,
    IMPORT,
    POSITION,
    REGISTER,
    UNREGISTER,
    Script,
)

__all__ = ["RedisRegistry"]

_log = logging.getLogger(__name__)
_SNAPSHOT_CHUNK = 1000
_FEED_BATCH = 1000


@dataclass
class _Cursor:
    """How far the index has read one group's stream."""

    last_id: bytes = b"0-0"
    last_seq: int = 0


@dataclass
class FeedStats:
    """What the change feed has done, for logs and metrics."""

    applied: int = 0
    reloads: int = 0
    last_applied_at: float = field(default_factory=time.monotonic)


class _Gap(Exception):
    """A stream skipped sequence numbers: the index must reload."""


class RedisRegistry:
    """A RegistryStore over Redis with an in-process index kept current from change streams."""

    def __init__(
        self,
        client: RedisClient,
        *,
        layout: Layout | None = None,
        poll_interval: float = 0.05,
        stream_maxlen: int = STREAM_MAXLEN,
    ) -> None:
        """Use ``client``; call ``start()`` to load the snapshot and follow the streams."""
        self._client = client
        self._layout = layout or Layout()
        self._poll_interval = poll_interval
        self._stream_maxlen = stream_maxlen
        self.index = RegistryIndex()
        """The index that answers lookups (replaced whole on reload)."""
        self._cursors = [_Cursor() for _ in range(GROUPS)]
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False
        self.stats = FeedStats()
        """Counters of the change feed."""

    def __len__(self) -> int:
        """Registered users, as the index knows them."""
        return len(self.index)

    async def start(self) -> None:
        """Load the snapshot, then follow the change streams in the background."""
        await self.reload()
        self._follower = asyncio.create_task(self._follow(), name="onnet-change-feed")

    async def close(self) -> None:
        """Stop following and close the connection."""
        # The cluster client can absorb a cancellation inside a pipeline and carry on, so the
        # loop also checks a flag, and the wait is bounded.
        self._stopping = True
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._follower, 5)
        await self._client.aclose()

    def match(self, fingerprints: bytes) -> Matches:
        """Answer from the in-process index; never waits on Redis."""
        return self.index.match(fingerprints)

    async def register(self, user_id: str, fingerprint: bytes, discoverable: bool) -> Registration:
        """Write the registration to Redis, then to this process's index."""
        if len(fingerprint) != FINGERPRINT_SIZE:
            raise ValueError("a fingerprint is 16 bytes")
        keys = self._layout.user_keys(user_id)
        args: list[bytes | str | int] = [
            user_id, fingerprint, flags_byte(discoverable), self._stream_maxlen,
        ]  # fmt: skip
        holder = self.index.holder(fingerprint)
        old, version_text = await self._run(REGISTER, keys, args)
        version = int(version_text)
        self.index.put(user_id, fingerprint, version, discoverable)
        displaced = None
        # The script checks again, atomically, that the holder still claims this number with
        # an older version; only then is the holder removed.
        if holder not in (None, user_id) and await self._drop_stale(holder, fingerprint, version):
            displaced = holder
        return Registration(updated=bool(old), displaced_user_id=displaced)

    async def register_many(self, users: list[tuple[str, bytes, bool]]) -> list[Registration]:
        """Write a batch: one IMPORT script per group, all groups in one pipelined round trip."""
        if any(len(fp) != FINGERPRINT_SIZE for _, fp, _ in users):
            raise ValueError("a fingerprint is 16 bytes")
        # A user named twice in one batch: the last row wins, as sequential calls would.
        last_row = {user_id: i for i, (user_id, _, _) in enumerate(users)}
        rows = [row for i, row in enumerate(users) if last_row[row[0]] == i]
        holders = self.index.holders(b"".join(fp for _, fp, _ in rows))
        by_group: dict[int, list[tuple[int, str]]] = {}
        for position, (user_id, _, _) in enumerate(rows):
            group, bucket = self._layout.group_of(user_id)
            by_group.setdefault(group, []).append(
                (position, self._layout.bucket_key(group, bucket))
            )
        pipe = self._client.pipeline(transaction=False)
        for group, members in by_group.items():
            args: list[bytes | str | int] = [self._stream_maxlen]
            for position, _ in members:
                user_id, fp, discoverable = rows[position]
                args += [user_id, fp, flags_byte(discoverable)]
            keys = self._layout.group_keys(group) + [bucket for _, bucket in members]
            pipe.eval(IMPORT.source, len(keys), *keys, *args)
        try:
            replies = await pipe.execute()
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error
        outcome: dict[int, Registration] = {}
        for (_group, members), (versions, updated) in zip(by_group.items(), replies, strict=True):
            for (position, _), version, was_there in zip(members, versions, updated, strict=True):
                user_id, fp, discoverable = rows[position]
                self.index.put(user_id, fp, int(version), discoverable)
                holder = holders[position]
                displaced = None
                if holder not in (None, user_id) and await self._drop_stale(
                    holder, fp, int(version)
                ):
                    displaced = holder
                outcome[position] = Registration(bool(was_there), displaced)
        by_user = {rows[p][0]: registration for p, registration in outcome.items()}
        return [by_user[user_id] for user_id, _, _ in users]

    async def unregister(self, user_id: str) -> bool:
        """Erase the user in Redis (the change reaches every index through the stream)."""
        keys = self._layout.user_keys(user_id)
        version = await self._run(UNREGISTER, keys, [user_id, self._stream_maxlen])
        if not version:
            return False
        self.index.delete(user_id, int(version))
        return True

    async def _drop_stale(self, user_id: str, fingerprint: bytes, winning_version: int) -> bool:
        """Remove a user whose number went to a newer registration; True if removed."""
        keys = self._layout.user_keys(user_id)
        args: list[bytes | str | int] = [
            user_id, fingerprint, winning_version, self._stream_maxlen,
        ]  # fmt: skip
        version = await self._run(DROP_IF_STALE, keys, args)
        if not version:
            return False
        self.index.delete(user_id, int(version))
        return True

    async def _run(self, script: Script, keys: list[str], args: list[bytes | str | int]) -> Any:  # noqa: ANN401 - Lua replies are untyped
        try:
            return await script(self._client, keys, args)
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error

    async def reload(self) -> None:
        """Build a fresh index from a snapshot of Redis and swap it in."""
        started = time.monotonic()
        index = RegistryIndex()
        # Positions are read before the data: changes made in between are replayed, harmlessly.
        cursors = [await self._position(group) for group in range(GROUPS)]
        keys = [
            key
            async for key in self._client.scan_iter(
                match=self._layout.bucket_pattern(), count=10_000
            )
        ]
        users: list[bytes] = []
        values: list[bytes] = []
        for start in range(0, len(keys), _SNAPSHOT_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for key in keys[start : start + _SNAPSHOT_CHUNK]:
                pipe.hgetall(key)
            for bucket_records in await pipe.execute():
                users.extend(bucket_records.keys())
                values.extend(bucket_records.values())
        index.load([user.decode() for user in users], *parse_records(values))
        self.index, self._cursors = index, cursors
        await self._repair(index)
        self.stats.reloads += 1
        _log.info(
            "registry index loaded: %d users in %.2f s", len(index), time.monotonic() - started
        )

    async def _position(self, group: int) -> _Cursor:
        keys = [self._layout.stream_key(group), self._layout.seq_key(group)]
        last_id, last_seq = await POSITION(self._client, keys, [])
        return _Cursor(last_id if isinstance(last_id, bytes) else last_id.encode(), int(last_seq))

    async def _repair(self, index: RegistryIndex) -> None:
        """Finish displacements that a process died in the middle of (see DROP_IF_STALE)."""
        for user_id, fingerprint, winning_version in index.shadowed_claims():
            with contextlib.suppress(StoreUnavailable):
                await self._drop_stale(user_id, fingerprint, winning_version)

    async def _follow(self) -> None:
        backoff = self._poll_interval
        down_since: float | None = None
        while not self._stopping:
            try:
                applied = await self.poll_once()
            except STORE_DOWN:
                if down_since is None:
                    down_since = time.monotonic()
                    _log.warning("change feed: Redis unreachable; lookups continue from the index")
                backoff = min(2.0, backoff * 2)
                await asyncio.sleep(backoff)
                continue
            except _Gap:
                _log.warning("change feed: gap in a stream (trimmed or lost); reloading the index")
                await self._reload_until_done()
                continue
            except RedisError as error:
                _log.error("change feed: unexpected Redis error %s", type(error).__name__)
                await asyncio.sleep(1.0)
                continue
            if down_since is not None:
                _log.info("change feed: Redis back after %.1f s", time.monotonic() - down_since)
                down_since = None
            backoff = self._poll_interval
            if not applied:
                await asyncio.sleep(self._poll_interval)

    async def _reload_until_done(self) -> None:
        while True:
            try:
                await self.reload()
            except STORE_DOWN:
                await asyncio.sleep(1.0)
            else:
                return

    async def catch_up(self) -> int:
        """Apply every change that has arrived; reload instead when a stream has a gap.

        Returns how many changes were applied (0 after a reload). Raises what Redis raises
        when it cannot be reached.
        """
        try:
            return await self.poll_once()
        except _Gap:
            await self.reload()
            return 0

    async def poll_once(self) -> int:
        """Apply the changes that arrived since the last poll; return how many."""
        pipe = self._client.pipeline(transaction=False)
        for group, cursor in enumerate(self._cursors):
            pipe.xread({self._layout.stream_key(group): cursor.last_id}, count=_FEED_BATCH)
        replies = await pipe.execute()
        applied = 0
        for group, reply in enumerate(replies):
            for _stream, entries in _entries_of(reply):
                for entry_id, entry in entries:
                    self._apply(group, entry_id, entry)
                    applied += 1
        if applied:
            self.stats.applied += applied
            self.stats.last_applied_at = time.monotonic()
        return applied

    def _apply(self, group: int, entry_id: bytes, entry: dict[bytes, bytes]) -> None:
        cursor = self._cursors[group]
        seq = int(entry[b"seq"])
        if seq != cursor.last_seq + 1:
            raise _Gap
        user_id = entry[b"user"].decode()
        if entry[b"op"] == b"put":
            record = UserRecord.unpack(entry[b"value"])
            self.index.put(user_id, record.fingerprint, record.version, record.discoverable)
        else:
            self.index.delete(user_id, int.from_bytes(entry[b"value"], "big"))
        cursor.last_id, cursor.last_seq = entry_id, seq


def _entries_of(reply: object) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD replies come as a list (RESP2) or a dict (RESP3); make them one shape."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(stream, entries[0] if entries and isinstance(entries[0], list) else entries)
                for stream, entries in reply.items()]  # fmt: skip
    return list(reply)  # type: ignore[call-overload, no-any-return]


def is_cluster(client: RedisClient) -> bool:
    """True for a Redis Cluster client."""
    return isinstance(client, RedisCluster)
