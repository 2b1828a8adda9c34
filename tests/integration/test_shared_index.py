"""One index base per host: built by one process, published as a file, mapped by all.

Against a real Redis (and, for the last test, real `onnet serve --workers 2` processes): the
builder publishes; the others adopt its file and keep following the streams; a process that
starts maps the newest file and catches up instead of loading Redis; a file of another
registry is never used; and when the builder dies, the others keep serving and one of them
takes over the building.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal
import time
from pathlib import Path

import pytest

import onnet
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.pepper import write_pepper_file
from onnet_server.stores.index_files import current_base
from onnet_server.stores.index_loader import ChildLoader
from onnet_server.stores.index_rebuild import BasePolicy
from onnet_server.stores.redis_connection import connect
from onnet_server.stores.redis_layout import Layout
from onnet_server.stores.redis_store import RedisRegistry
from tests.security import registry_client, security
from tests.servers import free_port, server_process

FINGERPRINTER = Fingerprinter(secrets.token_bytes(32))
SMALL = BasePolicy(min_changes=10, share=0.0, max_age=3600)


def number(i: int) -> str:
    return f"+1650{200 + i // 10_000:03d}{i % 10_000:04d}"


def fingerprint(i: int) -> bytes:
    return FINGERPRINTER.fingerprint(onnet.contact_hash(number(i)))


async def registry(redis_url: str, directory: Path, prefix: str = "onnet") -> RedisRegistry:
    store = RedisRegistry(
        connect(redis_url, None),
        layout=Layout(prefix),
        index_dir=directory,
        base_policy=SMALL,
        poll_interval=0.02,
    )
    await store.start()
    return store


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def holders(store: RedisRegistry, count: int) -> list[str]:
    return store.match(b"".join(fingerprint(i) for i in range(count))).user_ids


async def test_the_host_builds_one_base_and_every_process_maps_it(
    redis_url: str, tmp_path: Path
) -> None:
    builder = await registry(redis_url, tmp_path)
    follower = await registry(redis_url, tmp_path)
    try:
        assert builder.rebuilder.builds_here
        assert not follower.rebuilder.builds_here
        for i in range(40):
            await builder.register(f"user{i}", fingerprint(i), True)
        await until(lambda: builder.rebuilder.builds >= 1 and len(builder.index.base) >= 10)
        assert current_base(tmp_path) is not None
        await until(lambda: follower.index.base is not None and len(follower.index.base) >= 10)
        # The follower serves the builder's file: its arrays are that file's pages.
        assert follower.rebuilder.builds == 0
        await until(lambda: holders(follower, 40) == [f"user{i}" for i in range(40)])
        assert holders(builder, 40) == holders(follower, 40)
        published = current_base(tmp_path)
        assert published is not None
        assert oct(os.stat(published).st_mode & 0o777) == "0o600"
        assert len(list(tmp_path.glob("*.base"))) == 1  # replaced bases are removed
    finally:
        await follower.close()
        await builder.close()


async def test_a_starting_process_maps_the_file_and_catches_up(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    builder = await registry(redis_url, tmp_path)
    try:
        for i in range(30):
            await builder.register(f"user{i}", fingerprint(i), True)
        await until(lambda: builder.rebuilder.builds >= 1)
        await asyncio.sleep(0.2)  # let any build started by the last registrations end
        for i in range(30, 35):  # after the file: the newcomer reads them from the streams
            await builder.register(f"user{i}", fingerprint(i), True)
        await builder.unregister("user0")
        with caplog.at_level(logging.INFO, logger="onnet_server.stores.redis_snapshot"):
            newcomer = await registry(redis_url, tmp_path)
        try:
            assert "mapped from its base file" in caplog.text
            await until(lambda: len(newcomer) == 34)
            expected = ["user" + str(i) for i in range(1, 35)]
            assert holders(newcomer, 35) == expected
        finally:
            await newcomer.close()
    finally:
        await builder.close()


async def test_a_base_file_of_another_registry_is_never_served(
    redis_url: str, tmp_path: Path
) -> None:
    other = await registry(redis_url, tmp_path, prefix="other")
    try:
        for i in range(20):
            await other.register(f"other{i}", fingerprint(i), True)
        await until(lambda: other.rebuilder.builds >= 1)
    finally:
        await other.close()
    mine = await registry(redis_url, tmp_path)  # the directory's file is "other"'s
    try:
        assert len(mine) == 0
        assert holders(mine, 20) == []
    finally:
        await mine.close()


async def test_when_the_builder_stops_another_process_takes_over(
    redis_url: str, tmp_path: Path
) -> None:
    builder = await registry(redis_url, tmp_path)
    follower = await registry(redis_url, tmp_path)
    try:
        for i in range(20):
            await builder.register(f"user{i}", fingerprint(i), True)
        await until(lambda: builder.rebuilder.builds >= 1)
        first = current_base(tmp_path)
    finally:
        await builder.close()  # its lock goes with it, as it would with its process
    try:
        await until(lambda: holders(follower, 20) == [f"user{i}" for i in range(20)])
        for i in range(20, 40):
            await follower.register(f"user{i}", fingerprint(i), True)
        await until(lambda: follower.rebuilder.builds >= 1)
        assert current_base(tmp_path) not in (None, first)
        assert holders(follower, 40) == [f"user{i}" for i in range(40)]
    finally:
        await follower.close()


def _lock_holder(directory: Path) -> int | None:
    """The pid holding the builder lock of ``directory`` (from /proc/locks)."""
    inode = os.stat(directory / "builder.lock").st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and fields[-3].split(":")[-1] == str(inode):
            return int(fields[4])
    return None


def test_a_killed_builder_worker_leaves_the_host_serving(redis_url: str, tmp_path: Path) -> None:
    pepper, port = tmp_path / "pepper", free_port()
    write_pepper_file(pepper)
    directory = tmp_path / "index"
    env = {
        "ONNET_REDIS_URL": redis_url,
        "ONNET_PEPPER_FILE": str(pepper),
        "ONNET_WORKERS": "2",
        "ONNET_INDEX_DIR": str(directory),
        "ONNET_INDEX_REBUILD_CHANGES": "5",
    }
    target = f"127.0.0.1:{port}"
    with server_process(env, "--listen", target) as server:
        deadline = time.monotonic() + 30
        while server.log().count("onnet serving on") < 2:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        with registry_client(target) as registry_:
            for i in range(10):
                registry_.register(f"user{i}", number(i))
        deadline = time.monotonic() + 20
        while current_base(directory) is None or _lock_holder(directory) is None:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        first, builder = current_base(directory), _lock_holder(directory)
        assert builder is not None
        os.kill(builder, signal.SIGKILL)
        # The other worker answers every connection meanwhile, and the parent restarts the
        # dead one; one of them takes the lock and publishes the next base.
        token = security().token("user1")
        for _ in range(10):
            with onnet.Client(target, credentials=security().channel(), token=token) as client:
                try:
                    found = client.discover([number(2)]).matches
                except onnet.PermissionDeniedError:
                    raise AssertionError(server.log()) from None
                assert [m.user_id for m in found] == ["user2"]
        with registry_client(target) as registry_:
            for i in range(10, 20):
                registry_.register(f"user{i}", number(i))
        deadline = time.monotonic() + 30
        while current_base(directory) == first:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        restarted = r"worker \d \(pid \d+\) exited with -9; restarting it"
        deadline = time.monotonic() + 10
        while not re.search(restarted, server.log()):  # the parent looks every 0.2 s
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        assert server.terminate() == 0


async def test_the_first_base_is_loaded_by_a_child_and_mapped_here(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A registry in Redis, and no base file yet: the builder's first base comes from the
    # index loader child (its garbage dies with it); this process maps what it published.
    writer = await registry(redis_url, tmp_path / "elsewhere", prefix="loaded")
    for i in range(30):
        await writer.register(f"user{i}", fingerprint(i), True)
    await writer.close()
    loads: list[Path] = []

    async def child(directory: Path) -> bool:
        loads.append(directory)
        return await ChildLoader(redis_url, None, "loaded")(directory)

    store = RedisRegistry(
        connect(redis_url, None),
        layout=Layout("loaded"),
        index_dir=tmp_path / "host",
        base_policy=SMALL,
        poll_interval=0.02,
        loader=child,
    )
    with caplog.at_level(logging.INFO, logger="onnet_server"):
        await store.start()
    try:
        assert loads == [tmp_path / "host"]
        assert current_base(tmp_path / "host") is not None
        # This process mapped the child's file; it never loaded Redis itself.
        said = [record.getMessage() for record in caplog.records]
        assert any("mapped from its base file: 30 users" in line for line in said), said
        assert not any("registry index loaded" in line for line in said), said
        assert sorted(holders(store, 30)) == sorted(f"user{i}" for i in range(30))
        assert store.stats.reloads == 1
    finally:
        await store.close()


async def test_a_failed_child_load_falls_back_to_loading_here(
    redis_url: str, tmp_path: Path
) -> None:
    writer = await registry(redis_url, tmp_path / "elsewhere", prefix="fallback")
    for i in range(5):
        await writer.register(f"user{i}", fingerprint(i), True)
    await writer.close()

    async def failing(directory: Path) -> bool:
        return False

    store = RedisRegistry(
        connect(redis_url, None),
        layout=Layout("fallback"),
        index_dir=tmp_path / "host",
        base_policy=SMALL,
        loader=failing,
    )
    await store.start()
    try:
        assert sorted(holders(store, 5)) == sorted(f"user{i}" for i in range(5))
        assert current_base(tmp_path / "host") is not None  # published by this process
    finally:
        await store.close()
