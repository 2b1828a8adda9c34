"""How calls are paced: back to back (closed loop), or on a fixed timetable (open loop)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import grpc

from onnet_server.loadtest.schedule import Timetable
from onnet_server.loadtest.settings import Settings
from onnet_server.loadtest.stats import Samples

__all__ = ["Call", "closed_loop", "open_loop"]

Call = Callable[[int], Awaitable[tuple[grpc.StatusCode, int, int]]]
"""Make call number ``n`` (by virtual client ``n`` modulo the clients): its status code, the
hashes it carried, and the matches it found."""


async def closed_loop(
    call: Call, clients: int, settings: Settings, samples: Samples, start: float
) -> None:
    """Each client calls again as soon as it has its answer.

    From ``start`` (a perf_counter reading) through the warm-up and the measured window.
    """
    clock = time.perf_counter
    window_start = start + settings.warmup
    stop_at = window_start + settings.duration if settings.duration is not None else math.inf
    left = [settings.requests] if settings.requests is not None else None

    async def client_loop(client: int) -> None:
        while True:
            began = clock()
            measured = began >= window_start
            if measured:
                if began >= stop_at:
                    return
                if left is not None:
                    if left[0] == 0:
                        return
                    left[0] -= 1
            code, hashes, matches = await call(client)
            if measured:
                samples.add(began - window_start, clock() - began, code, hashes, matches)
            else:
                samples.warmup_calls += 1

    await asyncio.gather(*(client_loop(client) for client in range(clients)))


async def open_loop(
    call: Call, table: Timetable, settings: Settings, samples: Samples
) -> tuple[int, float]:
    """Calls due on ``table``, whatever the answers; latency counts from when each was due.

    At most ``settings.max_in_flight`` calls are in flight: beyond, the next call waits
    (late, and its wait counts in its latency). Returns the measured calls never sent (the
    window closed while every slot was taken) and the longest a measured call went late.
    """
    clock = time.perf_counter
    slots = asyncio.Semaphore(settings.max_in_flight)
    in_flight: set[asyncio.Task[None]] = set()
    missed, max_late = 0, 0.0

    async def send(number: int, due: float) -> None:
        try:
            code, hashes, matches = await call(number)
        finally:
            slots.release()
        if table.is_measured(number):
            samples.add(due - table.window_start, clock() - due, code, hashes, matches)
        else:
            samples.warmup_calls += 1

    number = 0
    try:
        while number < table.total:
            due = table.due(number)
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            sent = clock()
            if number < table.warmup_calls and sent >= table.window_start:
                # The warm-up ended while the calls in flight held every slot: its backlog
                # would only eat into the window, so the rest of it is skipped.
                slots.release()
                number = table.warmup_calls
                continue
            if settings.duration is not None and sent >= table.window_end:
                # The window closed while the calls in flight held every slot: the rest of
                # the timetable is never sent, and the report says so.
                slots.release()
                missed = table.total - number
                for late in range(number, table.total):
                    if table.is_measured(late):
                        samples.add_unsent(max(0.0, table.window_end - table.due(late)))
                break
            if table.is_measured(number):
                max_late = max(max_late, sent - due)
            task = asyncio.get_running_loop().create_task(send(number, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            number += 1
        await asyncio.gather(*in_flight)
    finally:
        pending = list(in_flight)
        for task in pending:
            task.cancel()
        # Let the cancelled calls finish before the caller closes their channels.
        await asyncio.gather(*pending, return_exceptions=True)
    return missed, max_late
