"""Preparing import rows for the store, on every core of the machine.

Each row of an import costs about 50 µs to validate (``phonenumbers``, pure Python) and
110 µs for its private-mode entry (one RFC 9497 evaluation in libsodium, and its sealing)
on the reference machine, against about 80 µs for the server to write it
(bench/README.md). One process does that work on one core at best (the validation holds
the GIL), so ``RowPreparer`` splits each batch over a pool of worker processes, one per
core, each holding the pepper's keys from the moment it starts. Their results come
back in row order, exactly as ``prepare_rows`` in this process would give them.

The pool starts at the first large batch (most servers never import) through the
``forkserver`` method: a process forked from a clean interpreter, never from the server,
whose gRPC and event loop must not be forked. Each worker ends itself when the server's
process ends, however it ends: a server killed before it could close its pool would
otherwise leave its workers (and the fork server, which they keep alive) waiting forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import select
import threading
import time

from onnet import ImportRejection, ImportRow, contact_hash
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import UserRow
from onnet_server.core.private.keys import OprfKey, private_entry
from onnet_server.core.validation import check_e164, check_user_id

__all__ = ["RowPreparer", "prepare_rows"]

_SMALL_BATCH = 256  # fewer rows than this are prepared here: a round trip costs more


def prepare_rows(
    fingerprinter: Fingerprinter, oprf_key: OprfKey, rows: list[ImportRow], first_row: int
) -> tuple[list[UserRow], list[ImportRejection]]:
    """The valid rows as the store writes them, and the others with why (in row order).

    ``first_row`` is the position of ``rows[0]`` in the whole import.
    """
    valid: list[ImportRow] = []
    rejected: list[ImportRejection] = []
    for offset, row in enumerate(rows):
        try:
            check_user_id(row.user_id)
            check_e164(row.e164)
        except InvalidArgument as error:
            rejected.append(ImportRejection(first_row + offset, error.field, error.reason))
            continue
        valid.append(row)
    if not valid:
        return [], rejected
    fingerprints = fingerprinter.fingerprints(b"".join(contact_hash(row.e164) for row in valid))
    prepared = [
        UserRow(
            row.user_id,
            fingerprints[16 * i : 16 * i + 16],
            row.discoverable,
            private_entry(oprf_key, row.e164, row.user_id) if row.discoverable else b"",
        )
        for i, row in enumerate(valid)
    ]
    return prepared, rejected


# A worker process's keys, set once by ``_start_worker``.
_WORKER: tuple[Fingerprinter, OprfKey] | None = None


def _start_worker(pepper: bytes, server_pid: int) -> None:
    global _WORKER  # noqa: PLW0603 - one per process, set before any task
    _WORKER = (Fingerprinter(pepper), OprfKey.from_pepper(pepper))
    threading.Thread(
        target=_exit_with, args=(server_pid,), name="onnet-exit-with-server", daemon=True
    ).start()


def _exit_with(server_pid: int) -> None:
    """End this worker as soon as the process ``server_pid`` has ended."""
    try:
        # Linux: a pid file descriptor becomes readable when its process ends.
        watched = os.pidfd_open(server_pid)
    except (AttributeError, OSError):
        while _alive(server_pid):  # elsewhere: look once a second
            time.sleep(1.0)
    else:
        select.select([watched], [], [])
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's process
    return True


def _prepare_in_worker(
    rows: list[tuple[str, str, bool]], first_row: int
) -> tuple[list[UserRow], list[ImportRejection]]:
    assert _WORKER is not None, "the worker was started without its keys"
    return prepare_rows(*_WORKER, [ImportRow(*row) for row in rows], first_row)


class RowPreparer:
    """``prepare_rows`` for whole batches, split over ``processes`` worker processes."""

    def __init__(self, pepper: bytes, processes: int | None = None) -> None:
        """Prepare under ``pepper``; ``processes`` defaults to the machine's cores."""
        self._pepper = pepper
        self._fingerprinter = Fingerprinter(pepper)
        self._oprf_key = OprfKey.from_pepper(pepper)
        self.processes = processes or os.cpu_count() or 1
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def prepare(
        self, rows: list[ImportRow], first_row: int
    ) -> tuple[list[UserRow], list[ImportRejection]]:
        """``prepare_rows`` of ``rows``, on every worker at once for a large batch."""
        if len(rows) < _SMALL_BATCH or self.processes < 2:
            return await asyncio.to_thread(
                prepare_rows, self._fingerprinter, self._oprf_key, rows, first_row
            )
        pool = self._started()
        loop = asyncio.get_running_loop()
        size = -(-len(rows) // self.processes)
        parts = [
            loop.run_in_executor(
                pool,
                _prepare_in_worker,
                [(row.user_id, row.e164, row.discoverable) for row in rows[start : start + size]],
                first_row + start,
            )
            for start in range(0, len(rows), size)
        ]
        prepared: list[UserRow] = []
        rejected: list[ImportRejection] = []
        for part_prepared, part_rejected in await asyncio.gather(*parts):
            prepared += part_prepared
            rejected += part_rejected
        return prepared, rejected

    def _started(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_start_worker,
                initargs=(self._pepper, os.getpid()),
            )
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (if they were started); waits for them to exit."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
