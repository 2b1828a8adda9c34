"""A server whose start fails part-way stops what it had started: no task (the store's change
feed, the metrics' refresh, the key refresher) and no port outlives the failed start (the
step that fails is the last: the metrics endpoint, on a port already taken)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from onnet_server.server import start_server
from tests.servers import free_port, fresh_config


async def test_a_start_that_fails_late_leaves_nothing_running(redis_url: str) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    grpc_port = free_port()
    try:
        config = fresh_config(
            listen=f"127.0.0.1:{grpc_port}",
            redis_url=redis_url,
            metrics_listen=f"127.0.0.1:{taken.getsockname()[1]}",
        )
        with pytest.raises(OSError, match="in use"):
            await start_server(config)
    finally:
        taken.close()
    left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for _ in range(100):  # cancelled tasks finish on the loop's next turns
        if all(task.done() for task in left):
            break
        await asyncio.sleep(0.01)
    assert all(task.done() for task in left), [t.get_name() for t in left if not t.done()]
    # The gRPC port was let go: binding it again works.
    socket.create_server(("127.0.0.1", grpc_port)).close()
