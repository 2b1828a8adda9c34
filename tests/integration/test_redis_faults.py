"""Real redis-server processes that the tests kill and restart under a serving onnet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import onnet
from tests.redis_servers import RedisProcess, redis_cluster, redis_server
from tests.security import discovery_client, registry_client
from tests.servers import ThreadedServer, free_port, fresh_config, server_process

# What keeps acknowledged writes across a Redis restart: the append-only file, synced on
# every write (README: "Running with Redis").
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")

BOOK = ["+14155550100", "+442079460958", "+4930901820", "+33612345678"]


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with redis_server(tmp_path / "redis", *DURABLE) as server:
        yield server


def discovered(target: str) -> dict[str, str]:
    with discovery_client(target, timeout=5) as client:
        return {m.e164: m.user_id for m in client.discover(BOOK).matches}


def matches_of(client: onnet.Client) -> dict[str, str]:
    return {m.e164: m.user_id for m in client.discover(BOOK).matches}


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def sharing_redis(redis: RedisProcess) -> tuple[ThreadedServer, ThreadedServer]:
    """Two started servers, as two processes of one deployment: one Redis, one pepper."""
    server = ThreadedServer(fresh_config(redis_url=redis.url)).start()
    other = ThreadedServer(fresh_config(redis_url=redis.url, pepper_hex=server.config.pepper_hex))
    try:
        return server, other.start()
    except BaseException:
        server.stop()
        raise


def test_redis_gone_while_serving(durable_redis: RedisProcess) -> None:
    server, other = sharing_redis(durable_redis)
    try:
        with registry_client(server.target, timeout=5) as registry:
            registry.register("alice", BOOK[0])
            registry.register("bob", BOOK[1])
        with (
            discovery_client(server.target, timeout=5) as on_server,
            discovery_client(other.target, timeout=5) as on_other,
        ):
            wait_for(lambda: matches_of(on_other) == {BOOK[0]: "alice", BOOK[1]: "bob"})
            assert matches_of(on_server) == {BOOK[0]: "alice", BOOK[1]: "bob"}

            durable_redis.stop()
            # Re-syncs keep answering from the in-process index: their token makes them
            # free, so they need no quota store.
            assert matches_of(on_server) == {BOOK[0]: "alice", BOOK[1]: "bob"}
            assert matches_of(on_other) == {BOOK[0]: "alice", BOOK[1]: "bob"}
            # New numbers must be charged to a quota that lives in Redis: refused, never
            # let through unmetered.
            with pytest.raises(onnet.UnavailableError) as refused:
                on_server.discover(["+16502530000"])
            assert "quota store is unavailable" in refused.value.reason
        # Writes fail fast with UNAVAILABLE, and leave nothing behind. Fast: within a
        # second or so (Redis refuses the connection at once), far from the call's 30 s
        # deadline; the bound leaves a busy machine room.
        started = time.monotonic()
        with registry_client(server.target, timeout=30) as registry:
            with pytest.raises(onnet.UnavailableError) as caught:
                registry.register("carol", BOOK[2])
            assert time.monotonic() - started < 10
            assert "store is unavailable" in caught.value.reason

        durable_redis.start()  # same port, same folder: the append-only file is replayed
        with registry_client(server.target, timeout=5) as registry:
            wait_for(lambda: _try_register(registry, "dave", BOOK[3]))
            registry.unregister("bob")
        # The other process catches up: no lost change, no duplicate, no carol.
        wait_for(lambda: _discovered_once_up(other.target) == {BOOK[0]: "alice", BOOK[3]: "dave"})
        assert other.store is not None
        assert len(other.store) == 3  # alice, dave, and the discovering account
    finally:
        server.stop()
        other.stop()
    # Every acknowledged write is in Redis, and only those: a fresh process loads them.
    fresh = ThreadedServer(
        fresh_config(redis_url=durable_redis.url, pepper_hex=server.config.pepper_hex)
    ).start()
    try:
        assert discovered(fresh.target) == {BOOK[0]: "alice", BOOK[3]: "dave"}
    finally:
        fresh.stop()


def _discovered_once_up(target: str) -> dict[str, str] | None:
    """``discovered``, or None while the process's own Redis connections still fail.

    ``discovered`` registers its account first: a write, which a process whose connections
    Redis dropped refuses fast with UNAVAILABLE until it has connected again.
    """
    try:
        return discovered(target)
    except onnet.UnavailableError:
        return None


def _try_register(registry: onnet.RegistryClient, user_id: str, e164: str) -> bool:
    try:
        registry.register(user_id, e164)
    except onnet.UnavailableError:
        return False
    return True


def test_redis_gone_at_start_is_retried_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    env = {"ONNET_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    late = RedisProcess(port, tmp_path / "late")
    try:
        with server_process(env, wait=False) as server:
            wait_for(lambda: server.log().count("cannot reach Redis at 127.0.0.1") >= 2)
            assert "retrying in" in server.log()
            late.start()
            server.wait_until_serving(timeout=20)
            with registry_client(server.target) as registry:
                registry.register("alice", BOOK[0])
            assert discovered(server.target) == {BOOK[0]: "alice"}
            assert server.terminate() == 0
        assert "Traceback" not in server.log()
    finally:
        late.stop()


def test_discovery_end_to_end_on_a_cluster(cluster_seeds: str) -> None:
    pepper = fresh_config().pepper_hex
    first = ThreadedServer(fresh_config(redis_cluster=cluster_seeds, pepper_hex=pepper)).start()
    second = ThreadedServer(fresh_config(redis_cluster=cluster_seeds, pepper_hex=pepper)).start()
    try:
        with registry_client(first.target) as registry:
            for i, number in enumerate(BOOK):
                registry.register(f"user-{i}", number, discoverable=i != 2)
        expected = {BOOK[0]: "user-0", BOOK[1]: "user-1", BOOK[3]: "user-3"}
        assert discovered(first.target) == expected
        wait_for(lambda: discovered(second.target) == expected)
    finally:
        first.stop()
        second.stop()


def test_sigterm_while_waiting_for_redis_stops_cleanly() -> None:
    env = {"ONNET_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with server_process(env, wait=False) as server:
        wait_for(lambda: "cannot reach Redis" in server.log())
        assert server.terminate() == 0
    assert "stopped before serving" in server.log()
    assert "Traceback" not in server.log()


@pytest.mark.slow
def test_a_cluster_master_going_away(tmp_path: Path) -> None:
    """Writes whose slot group lives on a dead master fail with UNAVAILABLE; lookups and the
    other masters' writes go on; when the master returns, its writes work again."""
    with redis_cluster(tmp_path / "cluster") as cluster:
        server = ThreadedServer(fresh_config(redis_cluster=cluster.seeds)).start()
        try:
            with registry_client(server.target, timeout=10) as registry:
                registry.register("alice", BOOK[0])
                victim = cluster.nodes[0]
                victim.stop()
                outcomes = {}
                for i in range(40):  # users spread over all 16 groups, so over all masters
                    try:
                        registry.register(f"user-{i}", f"+1212555{i:04d}")
                        outcomes[i] = "ok"
                    except onnet.UnavailableError:
                        outcomes[i] = "unavailable"
                assert set(outcomes.values()) == {"ok", "unavailable"}
                assert discovered(server.target) == {BOOK[0]: "alice"}  # from the index
                victim.start()  # same port and cluster config: it rejoins
                failed = [i for i, outcome in outcomes.items() if outcome == "unavailable"]
                wait_for(
                    lambda: _try_register(
                        registry, f"user-{failed[0]}", f"+1212555{failed[0]:04d}"
                    ),
                    timeout=30,
                )
        finally:
            server.stop()


def test_an_account_registered_through_another_process_is_served_at_once(
    durable_redis: RedisProcess,
) -> None:
    """Each process follows the others' registrations a few milliseconds behind; an account
    registered through one process and discovering through another at once is not refused
    for that: the second catches up before it answers "not registered"."""
    server, other = sharing_redis(durable_redis)
    try:
        with registry_client(server.target, timeout=5) as registry:
            for attempt in range(20):
                account = f"newcomer-{attempt}"
                registry.register(account, f"+1415555{attempt:04d}")
                with discovery_client(other.target, account=account, timeout=5) as client:
                    assert client.discover([BOOK[0]]).uploaded == 1
            with (
                discovery_client(other.target, account="never-registered") as stranger,
                pytest.raises(onnet.PermissionDeniedError),
            ):
                stranger.discover([BOOK[0]])
    finally:
        other.stop()
        server.stop()


def test_an_unknown_account_is_held_to_its_call_rate(durable_redis: RedisProcess) -> None:
    """Each call of an account the index does not know may start a catch-up with Redis:
    such calls count against the account's call rate like any other, before that."""
    server = ThreadedServer(
        fresh_config(redis_url=durable_redis.url, account_calls=3, account_calls_period=60.0)
    ).start()
    try:
        with discovery_client(server.target, account="never-registered") as stranger:
            for _ in range(3):
                with pytest.raises(onnet.PermissionDeniedError):
                    stranger.discover([BOOK[0]])
            with pytest.raises(onnet.QuotaExceededError) as limited:
                stranger.discover([BOOK[0]])
            assert "too many calls" in str(limited.value)
    finally:
        server.stop()
