"""Which discovering accounts are served, and whom each may not see.

Blocks are matched against the caller's own registered number, so an account the registry
does not know (never registered, or erased while its credential lives on) would escape
every block: it is refused. Development mode serves any account, blocking none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar

from onnet_server.core.errors import StoreUnavailable, UnknownAccount
from onnet_server.core.ports import RegistryStore

__all__ = ["Accounts"]

_log = logging.getLogger(__name__)

_REFRESH_GAP = 0.01
"""Seconds between the starts of two catch-ups at the least: calls of unknown accounts, one
after another, cannot make the store work more often than this."""

_REFRESH_WAIT = 0.25
"""Seconds a call waits for a catch-up at the most; then its account is refused as unknown."""

# What the gate learnt of the caller when it admitted the call: every call runs in a context
# of its own, so this is the call's caller, read once per call.
_ADMITTED: ContextVar[tuple[str, frozenset[str]] | None] = ContextVar("admitted", default=None)


class Accounts:
    """The one rule Discover, BlindEvaluate and FetchBuckets apply to their caller."""

    def __init__(self, store: RegistryStore, *, open_accounts: bool = False) -> None:
        """Answer from ``store``; ``open_accounts`` (development mode) serves anyone."""
        self._store = store
        self._open = open_accounts
        self._refreshing: asyncio.Future[None] | None = None
        self._refresh_started = -_REFRESH_GAP

    async def refreshed(self) -> None:
        """Bring the store up to the changes other processes made, before a refusal.

        An account registered through another process a moment ago may not have reached
        this one's index yet (the feed follows a few milliseconds behind): it is looked up
        again after this, not refused. This returns once a catch-up that started after the
        call came has ended. Calls share catch-ups, which start at most every _REFRESH_GAP
        seconds, so unknown accounts cannot make the store work harder than that. Raises
        StoreUnavailable when the catch-up fails or does not end within _REFRESH_WAIT.
        """
        arrived = time.monotonic()
        try:
            async with asyncio.timeout(_REFRESH_WAIT):
                while True:
                    if self._refreshing is None:
                        await asyncio.sleep(self._refresh_started + _REFRESH_GAP - time.monotonic())
                    if self._refreshing is None:
                        self._refresh_started = time.monotonic()
                        self._refreshing = asyncio.ensure_future(self._store.refresh())
                        self._refreshing.add_done_callback(self._refreshed)
                    started = self._refresh_started
                    await asyncio.shield(self._refreshing)
                    if started >= arrived:
                        return
        except StoreUnavailable:
            raise
        except Exception:  # a slow or failed catch-up (logged once, by _refreshed)
            raise StoreUnavailable("", "the registry store is unavailable") from None

    def _refreshed(self, done: asyncio.Future[None]) -> None:
        self._refreshing = None
        # Said once per catch-up, not once per waiting call: a store that is down must not
        # turn every call of an unknown account into a log line.
        error = None if done.cancelled() else done.exception()
        if error is not None:
            _log.warning("account catch-up failed: %s", type(error).__name__)

    def admit(self, account: str) -> frozenset[str]:
        """``blockers``, remembered for the rest of the call (the gate admits with this)."""
        blockers = self._blockers(account)
        _ADMITTED.set((account, blockers))
        return blockers

    def blockers(self, account: str) -> frozenset[str]:
        """The users who blocked the number ``account`` holds; refuses an unknown account."""
        admitted = _ADMITTED.get()
        if admitted is not None and admitted[0] == account:
            return admitted[1]
        return self._blockers(account)

    def _blockers(self, account: str) -> frozenset[str]:
        blockers = self._store.blocked_by(account)
        if blockers is not None:
            return blockers
        if self._open:
            return frozenset()
        raise UnknownAccount("authorization", "the calling account is not registered")
