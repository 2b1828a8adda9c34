"""The registry in Redis or Redis Cluster, answered from an in-process index that follows it.

Redis is the source of truth. The store is three parts over one shared state
(redis_state.py): the writer (redis_writes.py) writes each change to Redis first, in one
atomic script, then to the index; the snapshot loader (redis_snapshot.py) loads the whole
registry into a fresh index at start, or maps the host's base file; the feed follower
(redis_feed.py) applies the change streams, so lookups never leave the process and keep
working while Redis is away. This module wires them and answers the RegistryStore port.

With a base directory (``index_dir``), the processes of a host share one index base: the one
holding the host's builder lock builds each new base and publishes it as a file that all of
them map (stores/index_rebuild.py, index_files.py); each process still follows the streams
into its own small overlay. A process starting on a host whose current base file belongs to
this registry maps it and catches up from its feed position instead of loading Redis whole,
so it serves within a second or so whatever the registry's size.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from onnet_server.core.blocklists import Blocklists
from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.index import RegistryIndex
from onnet_server.core.ports import FeedState, QuotaStore, Registration, UserRow
from onnet_server.core.quota import QuotaPolicy
from onnet_server.stores.index_reads import IndexReads
from onnet_server.stores.index_rebuild import BasePolicy, Rebuilder
from onnet_server.stores.redis_connection import STORE_DOWN, RedisClient
from onnet_server.stores.redis_feed import FeedFollower
from onnet_server.stores.redis_layout import STREAM_MAXLEN, Layout
from onnet_server.stores.redis_quota import RedisQuota
from onnet_server.stores.redis_snapshot import SnapshotLoader
from onnet_server.stores.redis_state import FeedStats, RegistryState
from onnet_server.stores.redis_writes import RedisWriter

__all__ = ["RedisRegistry"]


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
        self._state = RegistryState(client, layout or Layout(), stream_maxlen)
        self.rebuilder = Rebuilder(self._state, base_policy or BasePolicy(), index_dir)
        """Builds (or adopts) the index's next base."""
        self._writer = RedisWriter(self._state, self.rebuilder)
        self._snapshot = SnapshotLoader(self._state, self.rebuilder, self._writer)
        # What a published base file records comes from the snapshot loader, which itself
        # needs the rebuilder: told after both exist.
        self.rebuilder.meta = self._snapshot.file_meta
        self.rebuilder.extra = self._snapshot.file_extra
        self._feed = FeedFollower(
            self._state,
            self.rebuilder,
            self._writer,
            self._snapshot,
            poll_interval=poll_interval,
            position_check_interval=position_check_interval,
        )

    # IndexReads declares these as attributes (the memory store sets them); here they are the
    # shared state's, which a snapshot load replaces.
    @property
    def index(self) -> RegistryIndex:  # type: ignore[override]
        """The index that answers lookups (replaced whole on reload)."""
        return self._state.index

    @property
    def blocklists(self) -> Blocklists:  # type: ignore[override]
        """Each user's blocked fingerprints (replaced whole on reload, with the index)."""
        return self._state.blocklists

    @property
    def stats(self) -> FeedStats:
        """Counters of the change feed."""
        return self._state.stats

    @property
    def client(self) -> RedisClient:
        """The Redis connection (the quota store shares it)."""
        return self._state.client

    async def start(self) -> None:
        """Load the index (from the host's base file, or Redis), then follow the streams.

        A start that fails lets go of what it took (the host's builder lock above all), so
        that a new store can start in this process; the connection stays its owner's.
        """
        try:
            await self._start()
        except BaseException:
            await self._feed.stop()
            await self.rebuilder.close()
            raise

    async def _start(self) -> None:
        async with self._state.feed_lock:
            from_file = await self._snapshot.start_from_file()
            directory = self.rebuilder.directory
            if not from_file and directory is not None and self._loader is not None:
                # The builder's first base: loaded by a child, whose garbage dies with it.
                from_file = await self._loader(directory) and await self._snapshot.start_from_file()
            if not from_file:
                await self._snapshot.load()
        if from_file:
            # Serve nothing older than the streams: apply what came after the file first.
            while await self.catch_up():
                pass
        self._feed.start()

    def feed_state(self) -> FeedState:
        """How far behind Redis this process's index may be, and its snapshot loads."""
        return FeedState(lag_seconds=self.stats.lag_seconds, reloads=self.stats.reloads)

    def quota_store(self, policy: QuotaPolicy) -> QuotaStore:
        """The quota in the same Redis (its keys outside the registry's prefix)."""
        return RedisQuota(self.client, policy)

    async def close(self) -> None:
        """Stop following and close the connection."""
        await self._feed.stop()
        await self.rebuilder.close()
        await self.client.aclose()

    async def register(
        self, user_id: str, fingerprint: bytes, discoverable: bool, private_entry: bytes = b""
    ) -> Registration:
        """Write the registration to Redis, then to this process's index."""
        return await self._writer.register(user_id, fingerprint, discoverable, private_entry)

    async def register_many(self, users: list[UserRow]) -> list[Registration]:
        """Write a batch (see RedisWriter.register_many)."""
        return await self._writer.register_many(users)

    async def unregister(self, user_id: str) -> bool:
        """Erase the user in Redis (the change reaches every index through the stream)."""
        return await self._writer.unregister(user_id)

    async def set_blocked(self, user_id: str, fingerprint: bytes, blocked: bool) -> bool | None:
        """Block or unblock in Redis first, then in this process's blocklists."""
        return await self._writer.set_blocked(user_id, fingerprint, blocked)

    async def refresh(self) -> None:
        """Apply what the streams hold now (see RegistryStore.refresh)."""
        try:
            await self.catch_up()
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error

    async def catch_up(self) -> int:
        """Apply every change that has arrived (see FeedFollower.catch_up)."""
        return await self._feed.catch_up()

    async def reload(self) -> None:
        """Build a fresh index from a snapshot of Redis and swap it in."""
        async with self._state.feed_lock:
            await self._snapshot.load()

    async def load_for_host(self) -> None:
        """Load the registry from Redis and publish it as the host's base file.

        The index loader child's whole job; the server that started it then maps the file.
        """
        async with self._state.feed_lock:
            await self._snapshot.load(publish=False)
            await self.rebuilder.publish(for_the_builder=True)
