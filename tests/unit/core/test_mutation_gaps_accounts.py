"""Accounts' rules that only the gate and a failing store used to exercise (core/accounts.py).

Each test here was seen to fail with a mutant that the unit layer let live (README,
"Testing"): the default that refuses strangers, the blockers an admitted call keeps to its
end, and the one log line a failed catch-up leaves.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

import onnet
from onnet_server.core.accounts import Accounts
from onnet_server.core.errors import StoreUnavailable, UnknownAccount
from onnet_server.stores.memory import MemoryRegistry
from tests.unit.core.wiring import ACCOUNT, ACCOUNT_NUMBER, Core


class RefreshingStore(MemoryRegistry):
    """A registry whose catch-up fails with ``failure``, or succeeds without it."""

    def __init__(self, failure: Exception | None = None) -> None:
        super().__init__()
        self.failure = failure

    async def refresh(self) -> None:
        if self.failure is not None:
            raise self.failure


def test_an_account_the_registry_does_not_know_is_refused_unless_opened_on_purpose() -> None:
    store = MemoryRegistry()
    with pytest.raises(UnknownAccount):
        Accounts(store).blockers("stranger")  # the default is the closed service
    assert Accounts(store, open_accounts=True).blockers("stranger") == frozenset()


async def test_an_admitted_call_keeps_the_blockers_it_was_admitted_with(core: Core) -> None:
    await core.registry.register("alice", "+14155550180", True)
    await core.registry.register("bob", "+14155550181", True)
    await core.registry.set_blocked("alice", ACCOUNT_NUMBER, True)
    accounts = Accounts(core.store)
    own = core.fingerprinter.fingerprint(onnet.contact_hash(ACCOUNT_NUMBER))

    def one_call() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        admitted = accounts.admit(ACCOUNT)
        core.store.blocklists.add("bob", own)  # bob blocks the caller while the call runs
        return admitted, accounts.blockers(ACCOUNT), accounts.blockers("bob")

    # Each call runs in a context of its own, as the gate's calls do.
    admitted, later, bobs = contextvars.copy_context().run(one_call)
    assert admitted == later == frozenset({"alice"})  # one view of the blocks per call
    assert bobs == frozenset()  # another account's blockers are its own, not the admitted's
    assert accounts.blockers(ACCOUNT) == frozenset({"alice", "bob"})  # the next call sees bob's


async def test_a_failed_catch_up_is_logged_once_by_its_kind_and_a_good_one_not_at_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="onnet_server.core.accounts")
    failing = Accounts(RefreshingStore(RuntimeError("details that stay out of the log")))
    refusals = await asyncio.gather(
        *(failing.refreshed() for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(refusal, StoreUnavailable) for refusal in refusals)
    # Five waiting calls shared one catch-up: one line, naming the error's kind only.
    assert [record.getMessage() for record in caplog.records] == [
        "account catch-up failed: RuntimeError"
    ]
    caplog.clear()
    await Accounts(RefreshingStore()).refreshed()
    assert caplog.records == []
