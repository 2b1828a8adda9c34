"""What the three parts of a Redis registry share: the connection, the index, the feed's place.

The writer (redis_writes.py), the snapshot loader (redis_snapshot.py) and the feed follower
(redis_feed.py) of one RedisRegistry each hold this one object: the index and blocklists
that answer lookups (replaced whole by a snapshot load), how far each group's change
stream has been read, and the lock under which the feed, a reload and a block move them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from onnet_server.core.blocklists import Blocklists
from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.index import RegistryIndex
from onnet_server.stores.redis_connection import STORE_DOWN, RedisClient
from onnet_server.stores.redis_layout import GROUPS, STREAM_MAXLEN, Layout
from onnet_server.stores.redis_scripts import Script

__all__ = ["Cursor", "FeedStats", "RegistryState", "entry_id_bytes"]


def entry_id_bytes(entry_id: bytes | str) -> bytes:
    """A stream entry's id as bytes, however the reply carried it."""
    return entry_id.encode() if isinstance(entry_id, str) else entry_id


@dataclass
class Cursor:
    """How far the index has read one group's stream."""

    last_id: bytes = b"0-0"
    last_seq: int = 0
    own_puts: dict[int, bytes] = field(default_factory=dict)
    """This group's 'put' entries that this process wrote and applied itself, ahead of the
    feed (sequence number: entry id): the feed passes them without reading the records
    back. The id, not the number alone: a Redis that lost writes (a failover, say) hands
    their numbers out again, to entries this process did not write."""


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


@dataclass
class RegistryState:
    """One Redis registry's connection, index and feed position."""

    client: RedisClient
    layout: Layout = field(default_factory=Layout)
    stream_maxlen: int = STREAM_MAXLEN
    index: RegistryIndex = field(default_factory=RegistryIndex)
    """The index that answers lookups (replaced whole on reload)."""
    blocklists: Blocklists = field(default_factory=Blocklists)
    """Each user's blocked fingerprints (replaced whole on reload, with the index)."""
    cursors: list[Cursor] = field(default_factory=lambda: [Cursor() for _ in range(GROUPS)])
    feed_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """The feed, a reload and a block move the cursors or the lists: one at a time."""
    epoch: bytes | str | None = None
    """The mark of this Redis's data set (a Redis that came back empty has another)."""
    stats: FeedStats = field(default_factory=FeedStats)

    def applied_own_put(self, group: int, seq: int, entry_id: bytes | str) -> bool:
        """Note that this process wrote the 'put' entry ``seq`` of ``group``, to apply it.

        False, and nothing noted, when the feed has passed the entry already (it read it
        before the write's reply came back, and applied what Redis held by then): the
        writer must then leave it at that, and the notes hold only entries still ahead.
        """
        cursor = self.cursors[group]
        if seq <= cursor.last_seq:
            return False
        cursor.own_puts[seq] = entry_id_bytes(entry_id)
        return True

    def forget_own_put(self, group: int, seq: int) -> None:
        """Let the feed apply the entry ``seq`` of ``group`` as anyone's after all."""
        self.cursors[group].own_puts.pop(seq, None)

    async def run(self, script: Script, keys: list[str], args: list[bytes | str | int]) -> object:
        """``script`` on the registry's connection; StoreUnavailable when Redis is away."""
        try:
            return await script(self.client, keys, args)
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error
