"""Call routing and screening for trusted services: one number at a time, from memory.

Routing must reach every registered user, discoverable or not, so these answers are for
the Registry's trusted callers only; screening reveals only whether one caller may ring one
callee, never anything else of the callee's blocklist.
"""

from __future__ import annotations

from collections.abc import Sequence

from onnet import contact_hash
from onnet_server.core.errors import InvalidArgument, NotFound
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import RegistryStore
from onnet_server.core.validation import check_e164, check_packed_hashes, check_user_id

__all__ = ["RoutingService"]


class RoutingService:
    """Lookup (who holds these numbers) and Screen (may this caller ring this user)."""

    def __init__(self, store: RegistryStore, fingerprinter: Fingerprinter, max_batch: int) -> None:
        """Answer from ``store``'s index under the pepper behind ``fingerprinter``."""
        self._store = store
        self._fingerprinter = fingerprinter
        self._max_batch = max_batch

    def lookup(self, numbers: Sequence[str], hashes: bytes) -> list[str]:
        """The holder of each number (E.164 ``numbers``, or packed contact ``hashes``).

        Parallel to the request; "" where nobody holds the number.
        """
        if numbers and hashes:
            raise InvalidArgument("hashes", "set e164 or hashes, not both")
        if numbers:
            if len(numbers) > self._max_batch:
                raise InvalidArgument(
                    "e164",
                    f"batch of {len(numbers)} numbers exceeds the limit of {self._max_batch}",
                )
            for position, e164 in enumerate(numbers):
                try:
                    check_e164(e164)
                except InvalidArgument as error:
                    raise InvalidArgument("e164", f"entry {position}: {error.reason}") from None
            hashes = b"".join(contact_hash(e164) for e164 in numbers)
        elif not hashes:
            raise InvalidArgument("e164", "set e164 or hashes: the request holds no number")
        count = check_packed_hashes("hashes", hashes, max_count=self._max_batch, allow_empty=False)
        found = self._store.holders(self._fingerprinter.fingerprints(hashes))
        holders = [""] * count
        for position, user_id in zip(found.indexes.tolist(), found.user_ids, strict=True):
            holders[position] = user_id
        return holders

    def screen(self, caller_e164: str, callee_user_id: str) -> bool:
        """Whether ``callee_user_id`` blocked ``caller_e164`` (True: do not ring)."""
        check_e164(caller_e164, "caller_e164")
        check_user_id(callee_user_id, "callee_user_id")
        caller = self._fingerprinter.fingerprint(contact_hash(caller_e164))
        blocked = self._store.blocks(callee_user_id, caller)
        if blocked is None:
            raise NotFound("callee_user_id", "no such user is registered")
        return blocked
