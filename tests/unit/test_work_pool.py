"""The bounded pool of heavy work: its two bounds, and places given back when work ends."""

from __future__ import annotations

import asyncio
import threading

import pytest

from onnet_server.core.call_rate import RateLimited
from onnet_server.core.errors import ServiceBusy
from onnet_server.work_pool import WorkPool


async def test_an_account_holds_at_most_its_share() -> None:
    pool = WorkPool(2, places=4, per_account=1)
    release = threading.Event()
    try:
        first = asyncio.ensure_future(pool.run("alice", release.wait, 10))
        await asyncio.sleep(0)
        with pytest.raises(RateLimited, match="already has 1 heavy calls"):
            await pool.run("alice", lambda: 1)
        assert await pool.run("bob", lambda: 2) == 2  # others are still served
        release.set()
        assert await first is True
        assert await pool.run("alice", lambda: 3) == 3
    finally:
        pool.close()


async def test_a_full_pool_refuses_at_once() -> None:
    pool = WorkPool(1, places=2, per_account=2)
    release = threading.Event()
    try:
        held = [asyncio.ensure_future(pool.run(f"user{i}", release.wait, 10)) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(ServiceBusy, match="busy"):
            await pool.run("carol", lambda: 1)
        release.set()
        await asyncio.gather(*held)
        assert pool.in_use() == 0
    finally:
        pool.close()


async def test_a_place_comes_back_when_the_work_ends_not_when_the_caller_leaves() -> None:
    pool = WorkPool(1, places=1, per_account=1)
    release = threading.Event()
    try:
        waiting = asyncio.ensure_future(pool.run("alice", release.wait, 10))
        await asyncio.sleep(0)
        waiting.cancel()  # the caller went away; the job still runs on its thread
        await asyncio.sleep(0.05)
        with pytest.raises(ServiceBusy):
            await pool.run("bob", lambda: 1)
        release.set()
        for _ in range(200):  # the job ends on its thread, then its place is given back
            if pool.in_use() == 0:
                break
            await asyncio.sleep(0.01)
        assert await pool.run("bob", lambda: 1) == 1
    finally:
        pool.close()
