"""Registration: a trusted service tells onnet which user holds which number."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from onnet import ImportRejection, ImportRow, contact_hash
from onnet_server.core.errors import InvalidArgument, NotFound
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import Registration, RegistryStore
from onnet_server.core.private.keys import OprfKey, private_entry
from onnet_server.core.row_preparer import RowPreparer, prepare_rows
from onnet_server.core.validation import check_e164, check_user_id

__all__ = ["ImportOutcome", "RegistryService"]


@dataclass(frozen=True)
class ImportOutcome:
    """What one batch of an import did."""

    imported: int
    rejected: list[ImportRejection]


class RegistryService:
    """Adds, moves and erases users. The number itself is dropped once fingerprinted."""

    def __init__(
        self,
        store: RegistryStore,
        fingerprinter: Fingerprinter,
        oprf_key: OprfKey,
        *,
        max_batch: int = 10_000,
        preparer: RowPreparer | None = None,
    ) -> None:
        """Write to ``store`` under the pepper behind ``fingerprinter`` and ``oprf_key``.

        An import batch holds at most ``max_batch`` rows: the server passes its
        ONNET_MAX_BATCH; the default is that setting's default. ``preparer`` prepares
        import batches on every core (under the same pepper); without one, a thread here
        does.
        """
        self._preparer = preparer
        self._store = store
        self._fingerprinter = fingerprinter
        self._oprf_key = oprf_key
        self._max_batch = max_batch

    def _private_entry(self, user_id: str, e164: str, discoverable: bool) -> bytes:
        """The user's bucket entry for private mode; none for a user who hides."""
        if not discoverable:
            return b""
        return private_entry(self._oprf_key, e164, user_id)

    async def register(self, user_id: str, e164: str, discoverable: bool) -> Registration:
        """Register ``user_id`` at ``e164``, moving them if they held another number."""
        check_user_id(user_id)
        check_e164(e164)
        fingerprint = self._fingerprinter.fingerprint(contact_hash(e164))
        entry = self._private_entry(user_id, e164, discoverable)
        return await self._store.register(user_id, fingerprint, discoverable, entry)

    def check_batch_size(self, count: int) -> None:
        """Refuse a batch of ``count`` rows if it is over the limit (before it is expanded)."""
        if count > self._max_batch:
            raise InvalidArgument(
                "rows", f"batch of {count} rows exceeds the limit of {self._max_batch}"
            )

    async def import_batch(self, rows: list[ImportRow], first_row: int) -> ImportOutcome:
        """Register every valid row; skip the others with their position and reason.

        ``first_row`` is the position of ``rows[0]`` in the whole import. Checking the rows,
        fingerprinting them (one call) and computing their private-mode entries (one OPRF
        evaluation each) run off the event loop, on every core with a ``preparer``
        (core/row_preparer.py), so a large batch does not stall other calls; the valid rows
        are then written in one store round trip. A batch of more
        than ``max_batch`` rows is refused whole, before any of that work.
        """
        self.check_batch_size(len(rows))
        if self._preparer is not None:
            prepared, rejected = await self._preparer.prepare(rows, first_row)
        else:
            prepared, rejected = await asyncio.to_thread(
                prepare_rows, self._fingerprinter, self._oprf_key, rows, first_row
            )
        if prepared:
            await self._store.register_many(prepared)
        return ImportOutcome(len(prepared), rejected)

    async def set_blocked(self, user_id: str, e164: str, blocked: bool) -> bool:
        """Block (or unblock) ``e164`` for ``user_id``; True when the blocklist changed.

        The list keeps the number's fingerprint, never the number.
        """
        check_user_id(user_id)
        check_e164(e164)
        fingerprint = self._fingerprinter.fingerprint(contact_hash(e164))
        changed = await self._store.set_blocked(user_id, fingerprint, blocked)
        if changed is None:
            raise NotFound("user_id", "no such user is registered")
        return changed

    async def unregister(self, user_id: str) -> None:
        """Erase every trace of ``user_id``."""
        check_user_id(user_id)
        if not await self._store.unregister(user_id):
            raise NotFound("user_id", "no such user is registered")
