"""A bounded pool of threads for heavy work, off the event loop.

One event loop answers every call. Work whose cost the caller chooses (checking and
evaluating up to a batch of OPRF elements: tens of milliseconds) would stall every other
caller there, so it runs on a few threads instead; libsodium releases the GIL, so they also
use the other cores. The pool is bounded twice, so that a flood cannot grow it:

- at most ``places`` jobs are queued or running; past that a call is refused at once
  (UNAVAILABLE: the server is busy, retry shortly);
- one account holds at most ``per_account`` of those places; past that its call is refused
  (RESOURCE_EXHAUSTED: its own calls are in the way), so one account's flood waits behind
  its own jobs and never takes every place.

A place is given back when its job has finished on its thread, not when the caller stops
waiting: a caller that cancels cannot leave jobs queued behind the bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from onnet_server.core.call_rate import RateLimited
from onnet_server.core.errors import ServiceBusy

__all__ = ["WorkPool"]

_Result = TypeVar("_Result")


class WorkPool:
    """Threads for heavy work, with a bounded number of places shared fairly by accounts."""

    def __init__(
        self, threads: int | None = None, *, places: int | None = None, per_account: int = 2
    ) -> None:
        """``threads`` default to the machine's cores; ``places`` to four per thread."""
        self.threads = threads or os.cpu_count() or 1
        self.places = places or 4 * self.threads
        self.per_account = per_account
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.threads, thread_name_prefix="onnet-work"
        )
        self._used = 0
        self._by_account: Counter[str] = Counter()

    async def run(self, account: str, work: Callable[..., _Result], *args: object) -> _Result:
        """Run ``work(*args)`` on a pool thread for ``account``; refused when the pool is full."""
        if self._by_account[account] >= self.per_account:
            raise RateLimited(
                "",
                f"this account already has {self.per_account} heavy calls running; "
                "wait for them to finish",
                1.0,
            )
        if self._used >= self.places:
            raise ServiceBusy("", "the server is busy; retry shortly")
        loop = asyncio.get_running_loop()
        self._used += 1
        self._by_account[account] += 1
        try:
            job = self._executor.submit(work, *args)
        except RuntimeError:  # the pool was shut down: the server is stopping
            self._give_back(account)
            raise ServiceBusy("", "the server is stopping") from None

        def finished(_: concurrent.futures.Future[_Result]) -> None:
            # On the pool's thread; a loop already closed (the server stopped) needs nothing.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._give_back, account)

        job.add_done_callback(finished)
        return await asyncio.wrap_future(job)

    def in_use(self) -> int:
        """Places taken now (queued or running jobs)."""
        return self._used

    def _give_back(self, account: str) -> None:
        self._used -= 1
        self._by_account[account] -= 1
        if self._by_account[account] <= 0:
            del self._by_account[account]  # idle accounts take no memory

    def close(self) -> None:
        """Stop taking work; jobs not started yet are dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)
