"""When and how a store builds its index's next base, off the event loop.

Changes pile up in the overlay (core/index/combined.py); past a share of the base, or when
the base is old and changes are waiting (an erased user's record stays in the base until the
next one), a new base is built from a snapshot, in a worker thread (numpy releases the GIL
for its sorts and copies), and swapped in on the event loop with the changes that arrived
meanwhile replayed onto it.

With a base directory (stores/index_files.py), the process that holds the host's builder
lock writes each base it builds to a file, maps it, and publishes it; the host's other
processes adopt each newly published base (``adopt``), keeping only the changes after the
file's feed position. A process without the lock builds nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from onnet_server.core.index import BaseIndex, RegistryIndex
from onnet_server.heap import return_freed_memory
from onnet_server.stores.index_files import (
    BaseFile,
    BuilderLock,
    current_base,
    publish_base,
    read_base,
    write_base,
)

__all__ = ["BasePolicy", "Rebuilder"]

_log = logging.getLogger(__name__)


class HoldsIndex(Protocol):
    """A store whose ``index`` the rebuilder may replace."""

    index: RegistryIndex


@dataclass(frozen=True)
class BasePolicy:
    """When to build a new base."""

    min_changes: int = 50_000
    """Overlay records that always justify a build."""
    share: float = 1 / 16
    """Or this share of the base's rows, if more: the overlay stays small next to the base."""
    max_age: float = 600.0
    """Seconds after which waiting changes (an erasure, say) get a new base anyway."""

    def due(self, index: RegistryIndex, age: float) -> bool:
        """Whether ``index``, whose base is ``age`` seconds old, should get a new base."""
        waiting = index.overlay_size
        if waiting > max(self.min_changes, int(len(index.base) * self.share)):
            return True
        return bool(index.changes) and age > self.max_age


@dataclass
class Rebuilder:
    """Builds (and, with a directory, publishes) the next base of ``store.index``."""

    store: HoldsIndex
    policy: BasePolicy = field(default_factory=BasePolicy)
    directory: Path | None = None
    """Where the host's base files are; None keeps bases in this process's memory."""
    meta: Callable[[], Mapping[str, Any]] = dict
    """What a published file says of the registry and the feed position, at snapshot time."""
    extra: Callable[[], Mapping[str, Any]] = dict
    """Arrays a published file keeps beside the base (the blocklists), at snapshot time."""
    _building: asyncio.Task[None] | None = None
    _based_at: float = field(default_factory=time.monotonic)
    _lock: BuilderLock | None = None
    _adopted: Path | None = None
    builds: int = 0
    """Bases built by this process."""

    def __post_init__(self) -> None:
        """Take part in the host's builder election, if there is a directory."""
        if self.directory is not None:
            self._lock = BuilderLock(self.directory)

    @property
    def builds_here(self) -> bool:
        """Whether this process builds bases (always without a directory; else the lock's)."""
        return self._lock is None or self._lock.try_take()

    def note_change(self) -> None:
        """A change was applied: start a build in the background if one is due."""
        index = self.store.index
        if self._building is not None or not self.policy.due(index, self._age()):
            return
        if not self.builds_here:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a bulk load, a benchmark): build right here
            self._finish(index, index.snapshot().build(index.base.seed))
            return
        self._building = loop.create_task(self.rebuild(), name="onnet-index-build")

    async def rebuild(self) -> None:
        """Build a base from the index as it is now and swap it in (and publish it)."""
        index = self.store.index
        snapshot = index.snapshot()
        meta = dict(self.meta())
        meta["built_at"] = time.time()
        extra = dict(self.extra()) if self.directory is not None else {}
        try:
            started = time.monotonic()
            base = await asyncio.to_thread(snapshot.build, index.base.seed)
            if self.directory is not None and self.builds_here:
                path = await asyncio.to_thread(write_base, self.directory, base, meta, extra)
                mapped = await asyncio.to_thread(read_base, path)
                base = mapped.base
                publish_base(self.directory, path)
                self._adopted = path
            if self.store.index is index and index.is_current(snapshot):
                index.rebase(base, index.changes_after(snapshot))
                self._based_at = time.monotonic()
                self.builds += 1
                return_freed_memory()
                _log.info(
                    "index: new base of %d users in %.2f s", len(base), time.monotonic() - started
                )
        finally:
            self._building = None

    async def publish(self, *, for_the_builder: bool = False) -> None:
        """Write the index's current base as the host's base file, and serve it mapped.

        For a base just loaded from Redis: writing it needs no new build. Only the builder
        publishes, or a process that loads for it (``for_the_builder``: the index loader
        child, stores/index_loader.py).
        """
        index = self.store.index
        if self.directory is None or not (for_the_builder or self.builds_here):
            return
        base = index.base
        meta = dict(self.meta())
        meta["built_at"] = time.time()
        extra = dict(self.extra())
        path = await asyncio.to_thread(write_base, self.directory, base, meta, extra)
        mapped = await asyncio.to_thread(read_base, path)
        publish_base(self.directory, path)
        self._adopted = path
        if self.store.index is index and index.base is base:
            index.rebase(mapped.base, index.changes)  # the same records, now the file's pages
            self._based_at = time.monotonic()
        return_freed_memory()

    def _finish(self, index: RegistryIndex, base: BaseIndex) -> None:
        index.rebase(base, [])
        self._based_at = time.monotonic()
        self.builds += 1

    def published(self) -> BaseFile | None:
        """The host's current base file, if it is newer than the one this process serves."""
        if self.directory is None:
            return None
        path = current_base(self.directory)
        if path is None or path == self._adopted:
            return None
        try:
            return read_base(path)
        except (OSError, ValueError):  # removed or replaced while being read: next time
            return None

    def adopt(self, file: BaseFile, positions: list[int]) -> None:
        """Serve ``file``'s base, keeping the changes after its feed ``positions``."""
        index = self.store.index
        index.rebase(file.base, index.changes_since(positions))
        self._adopted = file.path
        self._based_at = time.monotonic()

    def _age(self) -> float:
        return time.monotonic() - self._based_at

    async def close(self) -> None:
        """Let a build in progress finish; give up the builder lock."""
        if self._building is not None:
            await asyncio.gather(self._building, return_exceptions=True)
        if self._lock is not None:
            self._lock.release()
