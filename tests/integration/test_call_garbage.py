"""What a call leaves behind for Python's garbage collector, through a real server.

Every call the gate admits is served with a streaming request (api/gate.py), and gRPC's
request stream is an async generator in a reference cycle. Left open, only a collection
frees it, and asyncio then runs a task to close it: about 21 objects, a task and a wake-up
of the loop for every call, which cost a busy server 9% of its calls a second
(bench/README.md, issue 12). A unary call closes it once its message is read, and it is
freed with its call.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.security import discovery_client, registry_client
from tests.servers import ThreadedServer


@contextmanager
def collector_off() -> Iterator[None]:
    """No collection while the block runs: what it leaves alive is what only one frees."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def open_streams() -> int:
    """Async generators alive now (gRPC's request streams among them)."""
    return sum(type(item).__name__ == "async_generator" for item in gc.get_objects())


def test_unary_calls_free_their_request_streams_without_the_collector(
    server: ThreadedServer,
) -> None:
    """Discover (an account's call) and Register (a service's), 20 of each."""
    with discovery_client(server.target) as client, registry_client(server.target) as registry:
        client.discover(["+14155550100"])  # the clients' own set-up, before counting
        registry.register("garbage-0", "+14155550199")
        with collector_off():
            before = open_streams()
            for n in range(20):
                client.discover(["+14155550100", "+442079460958"])
                registry.register(f"garbage-{n}", "+14155550199")
            # Each call's stream is freed as its call ends, a moment after its answer.
            deadline = time.monotonic() + 5
            while (left := open_streams() - before) > 0 and time.monotonic() < deadline:
                time.sleep(0.01)
    assert left <= 0, f"{left} request streams of 40 calls wait for the garbage collector"
