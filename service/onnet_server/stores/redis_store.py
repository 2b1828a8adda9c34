"""The registry in Redis or Redis Cluster, answered from an in-process index that follows it.

Redis is the source of truth; writes go there first, in one atomic script per change (see
redis_scripts). Each server process loads a snapshot into a RegistryIndex at start and then
follows the groups' change streams, so lookups never leave the process and keep working
while Redis is away. A process that finds a gap in a stream (it fell behind a trim, or Redis
lost its data) loads a fresh snapshot and swaps it in.

A stream entry names the user who changed, never their number: for each poll the follower
reads those users' current records and blocklists from Redis in one round trip and applies
them in the stream's order. A record read may be newer than its entry; applying it early is
harmless, since the index ignores anything older than what it holds, and an erasure that
comes between still takes the user's blocklist with it (see ``_apply``).

With a base directory (``index_dir``), the processes of a host share one index base: the one
holding the host's builder lock builds each new base and publishes it as a file that all of
them map (stores/index_rebuild.py, index_files.py); each process still follows the streams
into its own small overlay. A process starting on a host whose current base file belongs to
this registry maps it and catches up from its feed position instead of loading Redis whole,
so it serves within a second or so whatever the registry's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from onnet_server.core.blocklists import MAX_BLOCKED, Blocklists, blocklist_full
from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.index import RegistryIndex
from onnet_server.core.index.base import Columns
from onnet_server.core.ports import FeedState, QuotaStore, Registration, UserRow
from onnet_server.core.quota import QuotaPolicy
from onnet_server.heap import return_freed_memory
from onnet_server.spans import redis_span
from onnet_server.stores.index_files import BaseFile
from onnet_server.stores.index_reads import IndexReads
from onnet_server.stores.index_rebuild import BasePolicy, Rebuilder
from onnet_server.stores.redis_connection import STORE_DOWN, RedisClient, scan_keys
from onnet_server.stores.redis_layout import (
    GROUPS,
    STREAM_MAXLEN,
    Layout,
    UserRecord,
    flags_byte,
    parse_records,
)
from onnet_server.stores.redis_quota import RedisQuota
from onnet_server.stores.redis_scripts import (
    BLOCK,
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
# How often the feed looks for a base published by another process of the host, and how
# long a starting process waits for the builder's first base before loading Redis itself.
_ADOPT_INTERVAL = 1.0
_FIRST_BASE_WAIT = 300.0
_Change = tuple[int, bytes, dict[bytes, bytes]]
"""One stream entry as the feed reads it: (group, entry id, fields)."""


@dataclass
class _Cursor:
    """How far the index has read one group's stream."""

    last_id: bytes = b"0-0"
    last_seq: int = 0


@dataclass
class FeedStats:
    """What the change feed has done."""

    reloads: int = 0
    """Snapshots loaded, the first one included."""
    applied_lag: float = 0.0
    """Age (by Redis's clock in the stream id) of the newest change the last poll applied."""
    polled_at: float = field(default_factory=time.monotonic)
    """When the feed last read the streams successfully (monotonic seconds)."""

    @property
    def lag_seconds(self) -> float:
        """How far behind Redis this process may be.

        The newest applied change's age or, when polls stop succeeding (Redis away), the
        time since the last one.
        """
        return max(self.applied_lag, time.monotonic() - self.polled_at)


class _Gap(Exception):
    """A stream skipped sequence numbers: the index must reload."""


@dataclass
class _Current:
    """What Redis holds now for the users named by one poll's changes."""

    records: dict[str, bytes | None]
    """The record of each user with a 'put' in the poll; None for one gone since."""
    blocklists: dict[str, set[bytes]]
    """Each user who blocked or unblocked: their whole blocklist."""
    last_block: dict[str, bytes]
    """Each such user's last block or unblock entry of the poll (where the list applies)."""


class RedisRegistry(IndexReads):
    """A RegistryStore over Redis with an in-process index kept current from change streams."""

    def __init__(
        self,
        client: RedisClient,
        *,
        layout: Layout | None = None,
        poll_interval: float = 0.05,
        stream_maxlen: int = STREAM_MAXLEN,
        position_check_interval: float = 5.0,
        index_dir: Path | None = None,
        base_policy: BasePolicy | None = None,
        loader: Callable[[Path], Awaitable[bool]] | None = None,
    ) -> None:
        """Use ``client``; call ``start()`` to load the snapshot and follow the streams.

        ``index_dir`` is the host's base directory (None: this process keeps its own bases
        in memory); ``base_policy`` says when a new base is built. ``loader``, if given,
        loads the host's first base into ``index_dir`` in another process (True when it
        did: stores/index_loader.py), so that this one only maps it.
        """
        self._loader = loader
        self._client = client
        self._layout = layout or Layout()
        self._poll_interval = poll_interval
        self._stream_maxlen = stream_maxlen
        self._position_check_interval = position_check_interval
        self.index = RegistryIndex()
        """The index that answers lookups (replaced whole on reload)."""
        self.blocklists = Blocklists()
        """Each user's blocked fingerprints (replaced whole on reload, with the index)."""
        self._cursors = [_Cursor() for _ in range(GROUPS)]
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False
        # The feed and reloads move the cursors; one at a time.
        self._feed_lock = asyncio.Lock()
        self._epoch: bytes | str | None = None
        self.stats = FeedStats()
        """Counters of the change feed."""
        self.rebuilder = Rebuilder(
            self,
            base_policy or BasePolicy(),
            index_dir,
            meta=self._file_meta,
            extra=self.file_extra,
        )
        """Builds (or adopts) the index's next base."""
        self._extra_of_build: dict[str, Any] = {}

    @property
    def client(self) -> RedisClient:
        """The Redis connection (the quota store shares it)."""
        return self._client

    async def start(self) -> None:
        """Load the index (from the host's base file, or Redis), then follow the streams."""
        async with self._feed_lock:
            from_file = await self._start_from_file()
            directory = self.rebuilder.directory
            if not from_file and directory is not None and self._loader is not None:
                # The builder's first base: loaded by a child, whose garbage dies with it.
                from_file = await self._loader(directory) and await self._start_from_file()
            if not from_file:
                await self._reload()
        if from_file:
            # Serve nothing older than the streams: apply what came after the file first.
            while await self.catch_up():
                pass
        self._follower = asyncio.create_task(self._follow(), name="onnet-change-feed")

    async def _start_from_file(self) -> bool:
        """Serve the host's current base file, if it is this registry's; True if it did.

        Only the builder loads Redis whole: another process waits for its first base.
        """
        if self.rebuilder.directory is None:
            return False
        await self._read_epoch()
        deadline = time.monotonic() + _FIRST_BASE_WAIT
        while True:
            file = self.rebuilder.published()
            if file is not None and file.meta.get("registry") == self._registry():
                break
            if self.rebuilder.builds_here or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        started = time.monotonic()
        self.index = RegistryIndex(file.base)
        self.rebuilder.adopt(file, [seq for _, seq in file.meta["positions"]])
        self.blocklists = Blocklists.from_arrays(file.extra) if file.extra else Blocklists()
        self._cursors = [_Cursor(last_id.encode(), seq) for last_id, seq in file.meta["positions"]]
        self.stats.reloads += 1
        _log.info(
            "registry index mapped from its base file: %d users in %.2f s",
            len(self.index),
            time.monotonic() - started,
        )
        return True

    async def _read_epoch(self) -> None:
        # The epoch marks this Redis's data: a Redis that comes back empty has none (or a
        # new one), which tells every process to reload even if no change ever arrives.
        await self._client.set(self._layout.epoch_key(), secrets.token_hex(8), nx=True)
        self._epoch = await self._client.get(self._layout.epoch_key())

    def _registry(self) -> dict[str, str]:
        """What a base file must name to be this registry's: its prefix and data set."""
        epoch = self._epoch.decode() if isinstance(self._epoch, bytes) else str(self._epoch)
        return {"prefix": self._layout.prefix, "epoch": epoch}

    def _file_meta(self) -> dict[str, Any]:
        """The registry and feed position of a base built now (at its snapshot)."""
        return {
            "registry": self._registry(),
            "positions": [[c.last_id.decode(), c.last_seq] for c in self._cursors],
        }

    def file_extra(self) -> dict[str, Any]:
        """What a base file keeps beside the base: the blocklists as of its snapshot."""
        return self.blocklists.to_arrays()

    def feed_state(self) -> FeedState:
        """How far behind Redis this process's index may be, and its snapshot loads."""
        return FeedState(lag_seconds=self.stats.lag_seconds, reloads=self.stats.reloads)

    def quota_store(self, policy: QuotaPolicy) -> QuotaStore:
        """The quota in the same Redis (its keys outside the registry's prefix)."""
        return RedisQuota(self._client, policy)

    async def close(self) -> None:
        """Stop following and close the connection."""
        # The cluster client can absorb a cancellation inside a pipeline and carry on, so the
        # loop also checks a flag, and the wait is bounded.
        self._stopping = True
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._follower, 5)
        await self.rebuilder.close()
        await self._client.aclose()

    async def set_blocked(self, user_id: str, fingerprint: bytes, blocked: bool) -> bool | None:
        """Block or unblock in Redis first, then in this process's blocklists.

        Blocks carry no version, so the two steps hold the feed's lock: the feed cannot
        apply a later change to the same list between them and then be undone by this one.
        """
        keys = self._layout.user_keys(user_id)
        args: list[bytes | str | int] = [
            user_id, fingerprint, self._stream_maxlen, int(blocked), MAX_BLOCKED,
        ]  # fmt: skip
        async with self._feed_lock:
            outcome = int(await self._run(BLOCK, keys, args))
            if outcome == -1:
                return None
            if outcome == -2:
                raise blocklist_full()
            if blocked:
                self.blocklists.add(user_id, fingerprint)
            else:
                self.blocklists.remove(user_id, fingerprint)
        return outcome == 1

    async def register(
        self, user_id: str, fingerprint: bytes, discoverable: bool, private_entry: bytes = b""
    ) -> Registration:
        """Write the registration to Redis, then to this process's index."""
        if len(fingerprint) != FINGERPRINT_SIZE:
            raise ValueError("a fingerprint is 16 bytes")
        keys = self._layout.user_keys(user_id)
        previous = self.index.holder_claim(fingerprint)
        args: list[bytes | str | int] = [
            user_id, fingerprint, flags_byte(discoverable), self._stream_maxlen,
            _floor(previous), private_entry,
        ]  # fmt: skip
        old, version_text = await self._run(REGISTER, keys, args)
        self.index.put(user_id, fingerprint, int(version_text), discoverable, private_entry)
        self.rebuilder.note_change()
        await self._settle(fingerprint)
        return Registration(updated=bool(old), displaced_user_id=_displaced(previous, user_id))

    async def register_many(self, users: list[UserRow]) -> list[Registration]:
        """Write a batch: one IMPORT script per group, all groups in one pipelined round trip.

        Rows that share a user or a number with another row of the batch are written after
        the others, one by one in batch order, so that they take effect in that order.
        """
        if any(len(row[1]) != FINGERPRINT_SIZE for row in users):
            raise ValueError("a fingerprint is 16 bytes")
        user_count = Counter(row[0] for row in users)
        number_count = Counter(row[1] for row in users)
        independent = [
            position
            for position, row in enumerate(users)
            if user_count[row[0]] == 1 and number_count[row[1]] == 1
        ]
        outcome: dict[int, Registration] = {}
        if independent:
            outcome.update(await self._write_independent(users, independent))
        for position, row in enumerate(users):
            if position not in outcome:
                outcome[position] = await self.register(*row)
        return [outcome[position] for position in range(len(users))]

    async def _write_independent(
        self, users: list[UserRow], positions: list[int]
    ) -> dict[int, Registration]:
        previous = {position: self.index.holder_claim(users[position][1]) for position in positions}
        by_group: dict[int, list[tuple[int, str]]] = {}
        for position in positions:
            group, bucket = self._layout.group_of(users[position][0])
            by_group.setdefault(group, []).append(
                (position, self._layout.bucket_key(group, bucket))
            )
        pipe = self._client.pipeline(transaction=False)
        for group, members in by_group.items():
            args: list[bytes | str | int] = [self._stream_maxlen]
            for position, _ in members:
                user_id, fp, discoverable, entry = users[position]
                args += [user_id, fp, flags_byte(discoverable), _floor(previous[position]), entry]
            keys = self._layout.group_keys(group) + [bucket for _, bucket in members]
            pipe.eval(IMPORT.source, len(keys), *keys, *args)
        try:
            with redis_span("import", commands=len(by_group)) as span:
                span.set_attribute("onnet.rows", len(positions))
                replies = await pipe.execute()
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error
        written: dict[int, bool] = {}
        for (_group, members), (versions, updated) in zip(by_group.items(), replies, strict=True):
            for (position, _), version, was_there in zip(members, versions, updated, strict=True):
                user_id, fp, discoverable, entry = users[position]
                self.index.put(user_id, fp, int(version), discoverable, entry)
                self.rebuilder.note_change()
                written[position] = bool(was_there)
        outcome = {}
        for position, was_there in written.items():
            user_id, fp = users[position][:2]
            await self._settle(fp)
            outcome[position] = Registration(was_there, _displaced(previous[position], user_id))
        return outcome

    async def _settle(self, fingerprint: bytes) -> None:
        """Remove from Redis every claim on ``fingerprint`` that lost it to a newer one.

        Any process may do this, as often as it likes: the script removes a claim only if it
        still names this number with an older version than the winner's. A failure is left
        for the next change of that number, or the next snapshot load, to finish.
        """
        for user_id, winning_version, winner in self.index.shadowed_of(fingerprint):
            try:
                await self._drop_stale(user_id, fingerprint, winning_version, winner)
            except (StoreUnavailable, RedisError) as error:
                _log.warning("a displaced claim stays until later: %s", type(error).__name__)
                return

    async def unregister(self, user_id: str) -> bool:
        """Erase the user in Redis (the change reaches every index through the stream)."""
        keys = self._layout.user_keys(user_id)
        version = await self._run(UNREGISTER, keys, [user_id, self._stream_maxlen])
        if not version:
            return False
        self._erase(user_id, int(version))
        return True

    def _erase(self, user_id: str, version: int) -> None:
        """Apply this process's own erasure (or displacement) to its index and blocklists.

        The blocklist goes unless a newer registration of the user already reached the
        index through the feed, whose blocklist the feed keeps as Redis has it.
        """
        self.index.delete(user_id, version)
        self.rebuilder.note_change()
        if self.index.record(user_id) is None:
            self.blocklists.drop_user(user_id)

    async def _drop_stale(
        self, user_id: str, fingerprint: bytes, winning_version: int, winner: str
    ) -> bool:
        """Remove a user whose number went to a newer claim; True if removed.

        Newer by (version, user id), as the index decides: at equal versions the greater
        id holds the number. The script compares versions; the ids are compared here, in
        Python's order (Redis's Lua compares strings by the server's locale).
        """
        keys = self._layout.user_keys(user_id)
        lost_a_tie = "1" if user_id < winner else "0"
        args: list[bytes | str | int] = [
            user_id, fingerprint, winning_version, self._stream_maxlen, lost_a_tie,
        ]  # fmt: skip
        version = await self._run(DROP_IF_STALE, keys, args)
        if not version:
            return False
        self._erase(user_id, int(version))
        return True

    async def _run(self, script: Script, keys: list[str], args: list[bytes | str | int]) -> Any:  # noqa: ANN401 - Lua replies are untyped
        try:
            return await script(self._client, keys, args)
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error

    async def load_for_host(self) -> None:
        """Load the registry from Redis and publish it as the host's base file.

        The index loader child's whole job; the server that started it then maps the file.
        """
        async with self._feed_lock:
            await self._reload(publish=False)
            await self.rebuilder.publish(for_the_builder=True)

    async def reload(self) -> None:
        """Build a fresh index from a snapshot of Redis and swap it in."""
        async with self._feed_lock:
            await self._reload()

    async def _reload(self, *, publish: bool = True) -> None:
        started = time.monotonic()
        await self._read_epoch()
        index = RegistryIndex()
        # Positions are read before the data: changes made in between are replayed, harmlessly.
        cursors = [await self._position(group) for group in range(GROUPS)]
        # One pass over the registry's keys finds both the buckets and the blocklists.
        keys = await scan_keys(self._client, self._layout.group_pattern())
        buckets = [key for key in keys if self._layout.is_bucket_key(key)]
        # Each chunk becomes columns at once: a few thousand records' Python objects live at
        # a time, not the whole registry's, so little is left behind (bench/README.md).
        chunks = []
        for start in range(0, len(buckets), _SNAPSHOT_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for key in buckets[start : start + _SNAPSHOT_CHUNK]:
                pipe.hgetall(key)
            users: list[str] = []
            values: list[bytes] = []
            for bucket_records in await pipe.execute():
                users.extend(user.decode() for user in bucket_records)
                values.extend(bucket_records.values())
            chunks.append(Columns.of_records(users, *parse_records(values)))
        index.load_columns(Columns.concatenate(chunks) if chunks else Columns.empty())
        del chunks
        blocklists = await self._load_blocklists(
            index, [key for key in keys if self._layout.is_blocks_key(key)]
        )
        self.index, self.blocklists, self._cursors = index, blocklists, cursors
        missing = index.discoverable_without_entry()
        if missing:
            # Records written before private mode: private discovery cannot find these users
            # until they are registered again (or re-imported).
            _log.warning(
                "%d discoverable users have no private-mode entry; re-import them", missing
            )
        await self._repair(index)
        self.stats.reloads += 1
        _log.info(
            "registry index loaded: %d users in %.2f s", len(index), time.monotonic() - started
        )
        if publish and self.rebuilder.directory is not None and self.rebuilder.builds_here:
            await self.rebuilder.publish()  # the host's other processes map it
        return_freed_memory()

    async def _load_blocklists(self, index: RegistryIndex, keys: list[str]) -> Blocklists:
        """The blocklists at ``keys`` of registered users (lists of users gone are skipped)."""
        blocklists = Blocklists()
        for start in range(0, len(keys), _SNAPSHOT_CHUNK):
            chunk = keys[start : start + _SNAPSHOT_CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for key in chunk:
                pipe.smembers(key)
            for key, members in zip(chunk, await pipe.execute(), strict=True):
                user_id = self._layout.user_of_blocks_key(key)
                if index.record(user_id) is not None:
                    blocklists.load((user_id, fingerprint) for fingerprint in members)
        return blocklists

    async def _position(self, group: int) -> _Cursor:
        keys = [self._layout.stream_key(group), self._layout.seq_key(group)]
        last_id, last_seq = await POSITION(self._client, keys, [])
        return _Cursor(last_id if isinstance(last_id, bytes) else last_id.encode(), int(last_seq))

    async def _repair(self, index: RegistryIndex) -> None:
        """Finish displacements left half-done (a process died between the two steps)."""
        for fingerprint in {fingerprint for _, fingerprint, _ in index.shadowed_claims()}:
            await self._settle(fingerprint)

    async def _follow(self) -> None:
        """The feed loop: poll, apply, settle; survive anything, and say what happened."""
        backoff = self._poll_interval
        down_since: float | None = None
        checked_at = adopted_at = time.monotonic()
        while not self._stopping:
            try:
                if time.monotonic() - checked_at > self._position_check_interval:
                    checked_at = time.monotonic()
                    await self._check_positions()
                if time.monotonic() - adopted_at > _ADOPT_INTERVAL:
                    adopted_at = time.monotonic()
                    await self._adopt_published()
                applied = await self.catch_up()
                if applied:
                    self.rebuilder.note_change()
            except STORE_DOWN:
                if down_since is None:
                    down_since = time.monotonic()
                    _log.warning("change feed: Redis unreachable; lookups continue from the index")
                backoff = min(2.0, backoff * 2)
                await asyncio.sleep(backoff)
                continue
            except Exception as error:  # the feed must outlive any one failure
                _log.error("change feed: %s; retrying", type(error).__name__)
                backoff = min(2.0, backoff * 2)
                await asyncio.sleep(backoff)
                continue
            if down_since is not None:
                _log.info("change feed: Redis back after %.1f s", time.monotonic() - down_since)
                down_since = None
            backoff = self._poll_interval
            if not applied:
                await asyncio.sleep(self._poll_interval)

    async def refresh(self) -> None:
        """Apply what the streams hold now (see RegistryStore.refresh)."""
        try:
            await self.catch_up()
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error

    async def catch_up(self) -> int:
        """Apply every change that has arrived; reload instead when a stream has a gap.

        Returns how many changes were applied (0 after a reload). Raises what Redis raises
        when it cannot be reached.
        """
        async with self._feed_lock:
            try:
                return await self._poll_once()
            except _Gap:
                _log.warning("change feed: gap in a stream (trimmed or lost); reloading the index")
                await self._reload()
                return 0

    async def _adopt_published(self) -> None:
        """Serve a base another process of the host published, if there is a new one."""
        file: BaseFile | None = await asyncio.to_thread(self.rebuilder.published)
        if file is None or file.meta.get("registry") != self._registry():
            return
        async with self._feed_lock:
            self.rebuilder.adopt(file, [seq for _, seq in file.meta["positions"]])

    async def _check_positions(self) -> None:
        """Reload when Redis lost data: its epoch changed, or a group's sequence went back.

        A Redis that restarted empty may not show it through any new change for a long time.
        """
        async with self._feed_lock:
            lost = await self._client.get(self._layout.epoch_key()) != self._epoch
            for group, cursor in enumerate(self._cursors):
                if lost:
                    break
                lost = (await self._position(group)).last_seq < cursor.last_seq
            if lost:
                _log.warning("change feed: Redis lost changes; reloading the index")
                await self._reload()

    async def _poll_once(self) -> int:
        pipe = self._client.pipeline(transaction=False)
        for group, cursor in enumerate(self._cursors):
            pipe.xread({self._layout.stream_key(group): cursor.last_id}, count=_FEED_BATCH)
        with redis_span("read_changes", commands=GROUPS) as span:
            replies = await pipe.execute()
            changes = [
                (group, entry_id, entry)
                for group, reply in enumerate(replies)
                for _stream, entries in _entries_of(reply)
                for entry_id, entry in entries
            ]
            span.set_attribute("onnet.changes", len(changes))
        current = await self._read_current(changes)
        newest_ms = 0
        claimed: set[bytes] = set()
        for group, entry_id, entry in changes:
            newest_ms = max(newest_ms, int(_text(entry_id).split("-")[0]))
            fingerprint = self._apply(group, entry_id, entry, current)
            if fingerprint is not None:
                claimed.add(fingerprint)
        # A stream id starts with Redis's clock in milliseconds when the change was made.
        self.stats.applied_lag = max(0.0, time.time() - newest_ms / 1000) if newest_ms else 0.0
        self.stats.polled_at = time.monotonic()
        for fingerprint in claimed:
            await self._settle(fingerprint)
        return len(changes)

    async def _read_current(self, changes: list[_Change]) -> _Current:
        """The current records and blocklists of the users the changes name: one round trip.

        Each command reads one key, so a cluster pipeline sends each to its slot's master.
        """
        current = _Current({}, {}, {})
        putting: list[str] = []
        blocking: list[str] = []
        for _group, entry_id, entry in changes:
            user_id = entry[b"user"].decode()
            if entry[b"op"] == b"put" and user_id not in current.records:
                current.records[user_id] = None
                putting.append(user_id)
            elif entry[b"op"] in (b"block", b"unblock"):
                if user_id not in current.last_block:
                    blocking.append(user_id)
                current.last_block[user_id] = entry_id
        if not (putting or blocking):
            return current
        pipe = self._client.pipeline(transaction=False)
        for user_id in putting:
            group, bucket = self._layout.group_of(user_id)
            pipe.hget(self._layout.bucket_key(group, bucket), user_id)
        for user_id in blocking:
            pipe.smembers(self._layout.blocks_key(user_id))
        with redis_span("read_current", commands=len(putting) + len(blocking)):
            replies = await pipe.execute()
        current.records.update(zip(putting, replies[: len(putting)], strict=True))
        current.blocklists.update(zip(blocking, replies[len(putting) :], strict=True))
        return current

    def _apply(
        self, group: int, entry_id: bytes, entry: dict[bytes, bytes], current: _Current
    ) -> bytes | None:
        """Apply one change; return the number it claimed, if it was a registration.

        Entries written before entries stopped carrying numbers (by a process of an older
        release, during an upgrade) also have a "value" field: the record, or the blocked
        fingerprint. It is ignored; only an old erasure's version is read from it.
        """
        cursor = self._cursors[group]
        seq = int(entry[b"seq"])
        if seq != cursor.last_seq + 1:
            raise _Gap
        user_id = entry[b"user"].decode()
        claimed = None
        op = entry[b"op"]
        if op == b"put":
            value = current.records[user_id]
            # A record gone by the time of reading is skipped: its 'del' follows in the stream.
            if value is not None:
                record = UserRecord.unpack(value)
                self.index.put(
                    user_id, record.fingerprint, record.version, record.discoverable,
                    record.private_entry, position=(group, seq),
                )  # fmt: skip
                claimed = record.fingerprint
        elif op in (b"block", b"unblock"):
            # The list read is the state after this poll's changes, so it applies once, at
            # the user's last change of it; and only to a user still registered here (a
            # replayed change of a user gone by the snapshot: Redis dropped the list since).
            registered = self.index.record(user_id) is not None
            if registered and current.last_block[user_id] == entry_id:
                self.blocklists.replace(user_id, current.blocklists[user_id])
        else:
            # An erasure written before entries named their fields has its version in "value".
            named = entry.get(b"version")
            version = int(named) if named is not None else int.from_bytes(entry[b"value"], "big")
            self.index.delete(user_id, version, position=(group, seq))
            # Unlike a local erasure, always: a record read ahead of the stream may be newer
            # than this erasure, but the blocklist went with it, and any block made since has
            # an entry further on that reads the list again.
            self.blocklists.drop_user(user_id)
        cursor.last_id, cursor.last_seq = entry_id, seq
        return claimed


def _floor(previous: tuple[str, int] | None) -> int:
    """The least version that beats the number's holder, as this process knows it."""
    return previous[1] + 1 if previous is not None else 0


def _displaced(previous: tuple[str, int] | None, user_id: str) -> str | None:
    """Who a registration took the number from: the holder this process saw before writing.

    Any process may be the one that removes the loser from Redis, so the answer comes from
    the writer's own view, not from who ran the removal.
    """
    return previous[0] if previous is not None and previous[0] != user_id else None


def _entries_of(reply: object) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD replies come as a list (RESP2) or a dict (RESP3); make them one shape."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(stream, entries[0] if entries and isinstance(entries[0], list) else entries)
                for stream, entries in reply.items()]  # fmt: skip
    return list(reply)  # type: ignore[call-overload, no-any-return]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
