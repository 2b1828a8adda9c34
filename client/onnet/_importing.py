"""Bulk registration: rows in, batches out, with a bounded number of batches in flight.

The server answers each batch in order, so the client may send a few ahead (pipelining)
without ever holding more than ``window`` unanswered batches in memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from onnet.v1 import registry_pb2

__all__ = ["ImportProgressCallback", "ImportRejection", "ImportResult", "ImportRow"]


@dataclass(frozen=True)
class ImportRow:
    """A user to register in bulk."""

    user_id: str
    e164: str
    discoverable: bool = True


@dataclass(frozen=True)
class ImportRejection:
    """A row the server skipped: its 0-based position among the rows sent, field, reason."""

    row: int
    field: str
    reason: str


@dataclass
class ImportResult:
    """What an import did."""

    imported: int = 0
    """Rows registered."""
    rejected: list[ImportRejection] = field(default_factory=list)
    """Rows skipped, in order."""

    def add(self, progress: registry_pb2.ImportProgress) -> None:
        """Count one batch's answer."""
        self.imported += progress.imported
        self.rejected += [ImportRejection(r.row, r.field, r.reason) for r in progress.rejected]


ImportProgressCallback = Callable[[ImportResult, int], None]
"""Called after each batch with the result so far and the rows sent so far."""


def _batches(rows: Iterable[ImportRow], batch_size: int) -> Iterator[registry_pb2.ImportBatch]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batch: list[registry_pb2.RegisterRequest] = []
    for row in rows:
        batch.append(
            registry_pb2.RegisterRequest(
                user_id=row.user_id, e164=row.e164, discoverable=row.discoverable
            )
        )
        if len(batch) == batch_size:
            yield registry_pb2.ImportBatch(rows=batch)
            batch = []
    if batch:
        yield registry_pb2.ImportBatch(rows=batch)


class _Window:
    """Batches with at most ``window`` of them unanswered at a time, and the answers counted.

    Each I/O half below hands the batches out in its own way.
    """

    _slots: threading.Semaphore | asyncio.Semaphore
    _semaphore: ClassVar[type[threading.Semaphore] | type[asyncio.Semaphore]]

    def __init__(
        self,
        rows: Iterable[ImportRow],
        batch_size: int,
        window: int,
        progress: ImportProgressCallback | None,
    ) -> None:
        """Cut ``rows`` into batches of ``batch_size``; ``progress`` hears of each answer."""
        self._batches = _batches(rows, batch_size)
        self._slots = self._semaphore(window)
        self._progress = progress
        self.rows_sent = 0
        """Rows handed to gRPC so far."""
        self.result = ImportResult()
        """What the answers so far say."""

    def answered(self, answer: registry_pb2.ImportProgress) -> None:
        """One batch was answered: another may go; count it, and tell ``progress``."""
        self._slots.release()
        self.result.add(answer)
        if self._progress is not None:
            self._progress(self.result, self.rows_sent)


class WindowedBatches(_Window):
    """Batches for a blocking stream."""

    _slots: threading.Semaphore
    _semaphore = threading.Semaphore

    def __iter__(self) -> Iterator[registry_pb2.ImportBatch]:
        """Yield batches as the window allows."""
        for batch in self._batches:
            self._slots.acquire()
            self.rows_sent += len(batch.rows)
            yield batch


class AsyncWindowedBatches(_Window):
    """Batches for a grpc.aio stream."""

    _slots: asyncio.Semaphore
    _semaphore = asyncio.Semaphore

    async def __aiter__(self) -> AsyncIterator[registry_pb2.ImportBatch]:
        """Yield batches as the window allows."""
        for batch in self._batches:
            await self._slots.acquire()
            self.rows_sent += len(batch.rows)
            yield batch
