"""Registration: a trusted service tells onnet which user holds which number."""

from __future__ import annotations

from onnet import contact_hash
from onnet_server.core.errors import NotFound
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import Registration, RegistryStore
from onnet_server.core.validation import check_e164, check_user_id

__all__ = ["RegistryService"]


class RegistryService:
    """Adds, moves and erases users. The number itself is dropped once fingerprinted."""

    def __init__(self, store: RegistryStore, fingerprinter: Fingerprinter) -> None:
        """Write to ``store`` under the pepper behind ``fingerprinter``."""
        self._store = store
        self._fingerprinter = fingerprinter

    async def register(self, user_id: str, e164: str, discoverable: bool) -> Registration:
        """Register ``user_id`` at ``e164``, moving them if they held another number."""
        check_user_id(user_id)
        check_e164(e164)
        fingerprint = self._fingerprinter.fingerprint(contact_hash(e164))
        return await self._store.register(user_id, fingerprint, discoverable)

    async def unregister(self, user_id: str) -> None:
        """Erase every trace of ``user_id``."""
        check_user_id(user_id)
        if not await self._store.unregister(user_id):
            raise NotFound("user_id", "no such user is registered")
