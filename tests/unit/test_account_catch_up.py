"""An account the index does not know is looked up again after a catch-up with the store,
under rules that hold against a stream of unknown accounts (core/accounts.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from onnet_server.core import accounts as accounts_module
from onnet_server.core.accounts import Accounts
from onnet_server.core.errors import StoreUnavailable
from onnet_server.stores.memory import MemoryRegistry


class CountingStore(MemoryRegistry):
    """A registry whose catch-ups are counted, take ``seconds`` each, and may fail."""

    def __init__(self, seconds: float = 0.0, failure: Exception | None = None) -> None:
        super().__init__()
        self.seconds = seconds
        self.failure = failure
        self.started: list[float] = []
        self.ended: list[float] = []

    async def refresh(self) -> None:
        self.started.append(time.monotonic())
        await asyncio.sleep(self.seconds)
        self.ended.append(time.monotonic())
        if self.failure is not None:
            raise self.failure


async def test_a_catch_up_that_started_before_the_call_came_is_not_enough() -> None:
    store = CountingStore(seconds=0.02)
    accounts = Accounts(store)
    early = asyncio.ensure_future(accounts.refreshed())
    await asyncio.sleep(0.005)  # the first catch-up is under way when the second call comes
    arrived = time.monotonic()
    await accounts.refreshed()
    await early
    assert len(store.started) == 2
    assert store.started[1] >= arrived


async def test_calls_at_once_share_one_catch_up() -> None:
    store = CountingStore(seconds=0.01)
    accounts = Accounts(store)
    await asyncio.gather(*(accounts.refreshed() for _ in range(50)))
    assert len(store.started) == 1


async def test_calls_one_after_another_start_catch_ups_no_closer_than_the_gap() -> None:
    store = CountingStore()
    accounts = Accounts(store)
    for _ in range(5):
        await accounts.refreshed()
    gaps = [b - a for a, b in zip(store.started, store.started[1:], strict=False)]
    assert len(store.started) == 5
    assert min(gaps) >= 0.009  # _REFRESH_GAP, 10 ms


@pytest.mark.parametrize(
    ("store", "within"),
    [
        (CountingStore(failure=RuntimeError("boom")), 0.1),
        (CountingStore(failure=StoreUnavailable("", "down")), 0.1),
        (CountingStore(seconds=1.0), accounts_module._REFRESH_WAIT + 0.2),
    ],
    ids=["fails", "store down", "hangs"],
)
async def test_a_catch_up_that_fails_or_hangs_refuses_in_time(
    store: CountingStore, within: float
) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        await Accounts(store).refreshed()
    assert time.monotonic() - started < within
    assert "boom" not in str(refused.value)
