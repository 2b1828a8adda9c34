"""A server whose start fails part-way stops what it had started: no task (the store's change
feed, the metrics' refresh, the key refresher), no thread and no port outlives the failed
start (the step that fails is the last: the metrics endpoint, on a port already taken). A
server stopped after a start stops its threads too."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
import redis.exceptions

from onnet_server.pepper import load_pepper
from onnet_server.server import open_store, start_server
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.redis_snapshot import SnapshotLoader
from onnet_server.stores.redis_store import RedisRegistry
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
    assert not lookup_threads()
    # The gRPC port was let go: binding it again works.
    socket.create_server(("127.0.0.1", grpc_port)).close()


def lookup_threads() -> list[threading.Thread]:
    """The threads of Discover's probes that are still alive."""
    return [thread for thread in threading.enumerate() if thread.name == "onnet-lookups"]


async def test_a_stopped_server_stops_its_lookup_thread_and_its_store_probes_in_line() -> None:
    store = MemoryRegistry()
    running = await start_server(fresh_config(listen=f"127.0.0.1:{free_port()}"), store=store)
    assert store.lookup_thread is not None
    assert lookup_threads()
    await running.stop()
    assert store.lookup_thread is None
    assert not lookup_threads()


async def test_a_store_that_fails_to_start_lets_go_of_the_builder_lock(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis vanishing during the first load is retried with a new store; the failed one must
    let go of the host's builder lock, or the new one never builds a base in its life."""
    failures = [redis.exceptions.ConnectionError("Redis went away mid-load")]
    start_from_file = SnapshotLoader.start_from_file

    async def flaky(loader: SnapshotLoader) -> bool:
        started = await start_from_file(loader)  # the builder election: takes the lock
        if failures:
            raise failures.pop()
        return started

    monkeypatch.setattr(SnapshotLoader, "start_from_file", flaky)
    config = fresh_config(redis_url=redis_url, index_dir=tmp_path / "index")
    store = await asyncio.wait_for(open_store(config, load_pepper(config)), 60)
    try:
        assert not failures  # the first start did fail
        assert isinstance(store, RedisRegistry)
        assert store.rebuilder.builds_here
    finally:
        await store.close()
