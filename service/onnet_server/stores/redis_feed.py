"""A Redis registry's change feed: every process's index follows the groups' change streams.

A stream entry names the user who changed, never their number: for each poll the follower
reads those users' current records and blocklists from Redis in one round trip and applies
them in the stream's order. A record read may be newer than its entry; applying it early is
harmless, since the index ignores anything older than what it holds, and an erasure that
comes between still takes the user's blocklist with it (see ``_apply``). A registration this
process wrote itself is already applied (redis_writes.py): its entry only moves the cursor.

A gap in a stream (the feed fell behind a trim), a changed epoch or a sequence number that
went back (Redis lost data) make the follower load a fresh snapshot. While Redis is away it
backs off and says so once; lookups go on from the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from onnet_server.spans import redis_span
from onnet_server.stores.index_files import BaseFile
from onnet_server.stores.index_rebuild import Rebuilder
from onnet_server.stores.redis_connection import STORE_DOWN
from onnet_server.stores.redis_layout import GROUPS, UserRecord
from onnet_server.stores.redis_scripts import RECORDS
from onnet_server.stores.redis_snapshot import SnapshotLoader
from onnet_server.stores.redis_state import RegistryState, entry_id_bytes
from onnet_server.stores.redis_writes import RedisWriter

__all__ = ["FeedFollower"]

_log = logging.getLogger(__name__)
_FEED_BATCH = 1000
# How often the feed looks for a base published by another process of the host.
_ADOPT_INTERVAL = 1.0
_Change = tuple[int, bytes, dict[bytes, bytes]]
"""One stream entry as the feed reads it: (group, entry id, fields)."""


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
    own: set[tuple[int, bytes]] = field(default_factory=set)
    """(group, id) of the poll's entries that this process wrote and applied itself (ids
    are unique within a group's stream, not across them)."""


class FeedFollower:
    """Applies the change streams to ``state``'s index, in the background or on demand."""

    def __init__(
        self,
        state: RegistryState,
        rebuilder: Rebuilder,
        writer: RedisWriter,
        snapshot: SnapshotLoader,
        *,
        poll_interval: float = 0.05,
        position_check_interval: float = 5.0,
    ) -> None:
        """Follow into ``state``; ``snapshot`` reloads, ``writer`` settles claimed numbers."""
        self._state = state
        self._rebuilder = rebuilder
        self._writer = writer
        self._snapshot = snapshot
        self._poll_interval = poll_interval
        self._position_check_interval = position_check_interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Follow the streams in the background until ``stop``."""
        self._task = asyncio.create_task(self._follow(), name="onnet-change-feed")

    async def stop(self) -> None:
        """Stop following (waits at most 5 s)."""
        # The cluster client can absorb a cancellation inside a pipeline and carry on, so the
        # loop also checks a flag, and the wait is bounded.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5)

    async def catch_up(self) -> int:
        """Apply every change that has arrived; reload instead when a stream has a gap.

        Returns how many changes were applied (0 after a reload). Raises what Redis raises
        when it cannot be reached.
        """
        async with self._state.feed_lock:
            try:
                return await self._poll_once()
            except _Gap:
                _log.warning("change feed: gap in a stream (trimmed or lost); reloading the index")
                await self._snapshot.load()
                return 0

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
                    self._rebuilder.note_change()
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

    async def _adopt_published(self) -> None:
        """Serve a base another process of the host published, if there is a new one."""
        file: BaseFile | None = await asyncio.to_thread(self._rebuilder.published)
        if file is None or file.meta.get("registry") != self._snapshot.registry():
            return
        async with self._state.feed_lock:
            self._rebuilder.adopt(file, [seq for _, seq in file.meta["positions"]])

    async def _check_positions(self) -> None:
        """Reload when Redis lost data: its epoch changed, or a group's sequence went back.

        A Redis that restarted empty may not show it through any new change for a long time.
        """
        state = self._state
        async with state.feed_lock:
            lost = await state.client.get(state.layout.epoch_key()) != state.epoch
            for group, cursor in enumerate(state.cursors):
                if lost:
                    break
                lost = (await self._snapshot.position(group)).last_seq < cursor.last_seq
            if lost:
                _log.warning("change feed: Redis lost changes; reloading the index")
                await self._snapshot.load()

    async def _poll_once(self) -> int:
        state = self._state
        pipe = state.client.pipeline(transaction=False)
        for group, cursor in enumerate(state.cursors):
            pipe.xread({state.layout.stream_key(group): cursor.last_id}, count=_FEED_BATCH)
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
        state.stats.applied_lag = max(0.0, time.time() - newest_ms / 1000) if newest_ms else 0.0
        state.stats.polled_at = time.monotonic()
        for fingerprint in claimed:
            await self._writer.settle(fingerprint)
        return len(changes)

    async def _read_current(self, changes: list[_Change]) -> _Current:
        """The current records and blocklists of the users the changes name: one round trip.

        Each command reads one key, so a cluster pipeline sends each to its slot's master.
        """
        state = self._state
        current = _Current({}, {}, {})
        putting: dict[int, list[str]] = {}  # by group: one script reads a group's records
        blocking: list[str] = []
        for group, entry_id, entry in changes:
            if self._is_own_put(group, entry_id, entry):
                current.own.add((group, entry_id))
                continue
            user_id = entry[b"user"].decode()
            if entry[b"op"] == b"put" and user_id not in current.records:
                current.records[user_id] = None
                putting.setdefault(group, []).append(user_id)
            elif entry[b"op"] in (b"block", b"unblock"):
                if user_id not in current.last_block:
                    blocking.append(user_id)
                current.last_block[user_id] = entry_id
        if not (putting or blocking):
            return current
        layout = state.layout
        pipe = state.client.pipeline(transaction=False)
        for group, user_ids in putting.items():
            keys = [layout.bucket_key(group, layout.group_of(user)[1]) for user in user_ids]
            pipe.eval(RECORDS.source, len(keys), *keys, *user_ids)
        for user_id in blocking:
            pipe.smembers(layout.blocks_key(user_id))
        with redis_span("read_current", commands=len(putting) + len(blocking)):
            replies = await pipe.execute()
        for user_ids, records in zip(putting.values(), replies[: len(putting)], strict=True):
            current.records.update(
                (user, record or None) for user, record in zip(user_ids, records, strict=True)
            )
        current.blocklists.update(zip(blocking, replies[len(putting) :], strict=True))
        return current

    def _is_own_put(self, group: int, entry_id: bytes, entry: dict[bytes, bytes]) -> bool:
        """Whether ``entry`` is a registration this process wrote and applied itself."""
        own = self._state.cursors[group].own_puts
        if not own or entry[b"op"] != b"put":
            return False
        return own.get(int(entry[b"seq"])) == entry_id_bytes(entry_id)

    def _apply(
        self, group: int, entry_id: bytes, entry: dict[bytes, bytes], current: _Current
    ) -> bytes | None:
        """Apply one change; return the number it claimed, if it was a registration.

        Entries written before entries stopped carrying numbers (by a process of an older
        release, during an upgrade) also have a "value" field: the record, or the blocked
        fingerprint. It is ignored; only an old erasure's version is read from it.
        """
        state = self._state
        cursor = state.cursors[group]
        seq = int(entry[b"seq"])
        if seq != cursor.last_seq + 1:
            raise _Gap
        user_id = entry[b"user"].decode()
        claimed = None
        op = entry[b"op"]
        cursor.own_puts.pop(seq, None)  # passed, whoever wrote it
        if (group, entry_id) in current.own:
            pass  # written and applied here (redis_writes.py)
        elif op == b"put":
            value = current.records[user_id]
            # A record gone by the time of reading is skipped: its 'del' follows in the stream.
            if value is not None:
                record = UserRecord.unpack(value)
                state.index.put(
                    user_id, record.fingerprint, record.version, record.discoverable,
                    record.private_entry, position=(group, seq),
                )  # fmt: skip
                claimed = record.fingerprint
        elif op in (b"block", b"unblock"):
            # The list read is the state after this poll's changes, so it applies once, at
            # the user's last change of it; and only to a user still registered here (a
            # replayed change of a user gone by the snapshot: Redis dropped the list since).
            registered = state.index.record(user_id) is not None
            if registered and current.last_block[user_id] == entry_id:
                state.blocklists.replace(user_id, current.blocklists[user_id])
        else:
            # An erasure written before entries named their fields has its version in "value".
            named = entry.get(b"version")
            version = int(named) if named is not None else int.from_bytes(entry[b"value"], "big")
            state.index.delete(user_id, version, position=(group, seq))
            # Unlike a local erasure, always: a record read ahead of the stream may be newer
            # than this erasure, but the blocklist went with it, and any block made since has
            # an entry further on that reads the list again.
            state.blocklists.drop_user(user_id)
        cursor.last_id, cursor.last_seq = entry_id, seq
        return claimed


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
