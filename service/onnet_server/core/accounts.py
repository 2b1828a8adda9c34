"""Which discovering accounts are served, and whom each may not see.

Blocks are matched against the caller's own registered number, so an account the registry
does not know (never registered, or erased while its credential lives on) would escape
every block: it is refused. Development mode serves any account, blocking none.
"""

from __future__ import annotations

from onnet_server.core.errors import PermissionDenied
from onnet_server.core.ports import RegistryStore

__all__ = ["Accounts"]


class Accounts:
    """The one rule Discover, BlindEvaluate and FetchBuckets apply to their caller."""

    def __init__(self, store: RegistryStore, *, open_accounts: bool = False) -> None:
        """Answer from ``store``; ``open_accounts`` (development mode) serves anyone."""
        self._store = store
        self._open = open_accounts

    def blockers(self, account: str) -> frozenset[str]:
        """The users who blocked the number ``account`` holds; refuses an unknown account."""
        blockers = self._store.blocked_by(account)
        if blockers is not None:
            return blockers
        if self._open:
            return frozenset()
        raise PermissionDenied("authorization", "the calling account is not registered")
