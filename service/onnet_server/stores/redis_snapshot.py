"""A Redis registry's snapshots: the whole registry read into a fresh index, or mapped from a file.

A process loads a snapshot at start, and again whenever its feed finds a gap or Redis lost
data. It reads the feed's position first and the data after, so that changes made in
between are replayed, harmlessly (the index ignores what is older than what it holds). Each
chunk of records becomes numpy columns at once, so that a few thousand records' Python
objects live at a time, not the whole registry's.

With a base directory, the processes of a host share one base: a process whose host has a
current base file of this registry maps it instead (``start_from_file``), and the one that
builds publishes what it loaded for the others.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from onnet_server.core.blocklists import Blocklists
from onnet_server.core.index import RegistryIndex
from onnet_server.core.index.base import Columns
from onnet_server.heap import return_freed_memory
from onnet_server.stores.index_rebuild import Rebuilder
from onnet_server.stores.redis_connection import scan_keys
from onnet_server.stores.redis_layout import GROUPS, parse_records
from onnet_server.stores.redis_scripts import POSITION
from onnet_server.stores.redis_state import Cursor, RegistryState
from onnet_server.stores.redis_writes import RedisWriter

__all__ = ["SnapshotLoader"]

_log = logging.getLogger(__name__)
_SNAPSHOT_CHUNK = 1000
# How long a starting process waits for the builder's first base before loading Redis itself.
_FIRST_BASE_WAIT = 300.0


class SnapshotLoader:
    """Loads the registry whole into ``state`` (from Redis, or from the host's base file)."""

    def __init__(self, state: RegistryState, rebuilder: Rebuilder, writer: RedisWriter) -> None:
        """Load into ``state``; ``writer`` finishes displacements a crash left half-done."""
        self._state = state
        self._rebuilder = rebuilder
        self._writer = writer

    async def read_epoch(self) -> None:
        """Read (or set, on a Redis without one) the mark of this Redis's data set.

        A Redis that comes back empty has none, or a new one: that tells every process to
        reload, even if no change ever arrives.
        """
        state = self._state
        await state.client.set(state.layout.epoch_key(), secrets.token_hex(8), nx=True)
        state.epoch = await state.client.get(state.layout.epoch_key())

    def registry(self) -> dict[str, str]:
        """What a base file must name to be this registry's: its prefix and data set."""
        epoch = self._state.epoch
        text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        return {"prefix": self._state.layout.prefix, "epoch": text}

    def file_meta(self) -> dict[str, Any]:
        """The registry and feed position of a base built now (at its snapshot)."""
        return {
            "registry": self.registry(),
            "positions": [[c.last_id.decode(), c.last_seq] for c in self._state.cursors],
        }

    def file_extra(self) -> dict[str, Any]:
        """What a base file keeps beside the base: the blocklists as of its snapshot."""
        return self._state.blocklists.to_arrays()

    async def start_from_file(self) -> bool:
        """Serve the host's current base file, if it is this registry's; True if it did.

        Only the builder loads Redis whole: another process waits for its first base.
        """
        if self._rebuilder.directory is None:
            return False
        await self.read_epoch()
        deadline = time.monotonic() + _FIRST_BASE_WAIT
        while True:
            file = self._rebuilder.published()
            if file is not None and file.meta.get("registry") == self.registry():
                break
            if self._rebuilder.builds_here or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        started = time.monotonic()
        state = self._state
        state.index = RegistryIndex(file.base)
        self._rebuilder.adopt(file, [seq for _, seq in file.meta["positions"]])
        state.blocklists = Blocklists.from_arrays(file.extra) if file.extra else Blocklists()
        state.cursors = [Cursor(last_id.encode(), seq) for last_id, seq in file.meta["positions"]]
        state.stats.reloads += 1
        _log.info(
            "registry index mapped from its base file: %d users in %.2f s",
            len(state.index),
            time.monotonic() - started,
        )
        return True

    async def load(self, *, publish: bool = True) -> None:
        """Build a fresh index from a snapshot of Redis and swap it in (under the feed lock).

        With ``publish``, the process that builds the host's bases publishes it as a file.
        """
        state = self._state
        started = time.monotonic()
        await self.read_epoch()
        index = RegistryIndex()
        # Positions are read before the data: changes made in between are replayed, harmlessly.
        cursors = [await self.position(group) for group in range(GROUPS)]
        # One pass over the registry's keys finds both the buckets and the blocklists.
        keys = await scan_keys(state.client, state.layout.group_pattern())
        buckets = [key for key in keys if state.layout.is_bucket_key(key)]
        chunks = []
        for start in range(0, len(buckets), _SNAPSHOT_CHUNK):
            pipe = state.client.pipeline(transaction=False)
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
            index, [key for key in keys if state.layout.is_blocks_key(key)]
        )
        state.index, state.blocklists, state.cursors = index, blocklists, cursors
        missing = index.discoverable_without_entry()
        if missing:
            # Records written before private mode: private discovery cannot find these users
            # until they are registered again (or re-imported).
            _log.warning(
                "%d discoverable users have no private-mode entry; re-import them", missing
            )
        await self._repair(index)
        state.stats.reloads += 1
        _log.info(
            "registry index loaded: %d users in %.2f s", len(index), time.monotonic() - started
        )
        if publish and self._rebuilder.directory is not None and self._rebuilder.builds_here:
            await self._rebuilder.publish()  # the host's other processes map it
        return_freed_memory()

    async def position(self, group: int) -> Cursor:
        """Where ``group``'s stream and sequence number stand in Redis now."""
        state = self._state
        keys = [state.layout.stream_key(group), state.layout.seq_key(group)]
        last_id, last_seq = await POSITION(state.client, keys, [])
        return Cursor(last_id if isinstance(last_id, bytes) else last_id.encode(), int(last_seq))

    async def _load_blocklists(self, index: RegistryIndex, keys: list[str]) -> Blocklists:
        """The blocklists at ``keys`` of registered users (lists of users gone are skipped)."""
        state = self._state
        blocklists = Blocklists()
        for start in range(0, len(keys), _SNAPSHOT_CHUNK):
            chunk = keys[start : start + _SNAPSHOT_CHUNK]
            pipe = state.client.pipeline(transaction=False)
            for key in chunk:
                pipe.smembers(key)
            for key, members in zip(chunk, await pipe.execute(), strict=True):
                user_id = state.layout.user_of_blocks_key(key)
                if index.record(user_id) is not None:
                    blocklists.load((user_id, fingerprint) for fingerprint in members)
        return blocklists

    async def _repair(self, index: RegistryIndex) -> None:
        """Finish displacements left half-done (a process died between the two steps)."""
        for fingerprint in {fingerprint for _, fingerprint, _ in index.shadowed_claims()}:
            await self._writer.settle(fingerprint)
