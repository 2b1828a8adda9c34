"""Promises of the README to the people who run onnet, each proved against real processes:

- `onnet move-blocklists` may be run again (after late imports): it only adds (README
  "Rotating the pepper", step 3; the command's own description);
- `onnet_change_feed_lag_seconds` and `onnet_change_feed_reloads` move when the change feed
  falls behind Redis and when the index reloads (README "Metrics");
- `onnet serve --workers N`: a worker that dies is started again while the others serve, a
  worker with a configuration error stops them all, and SIGINT to the parent stops every
  worker (README "Several processes on one host");
- `--help` of `lookup`, `screen`, `import`, `move-blocklists` and `drop-registry` exits 0 and
  shows the options the README's command table gives each (README "The command line").
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import onnet
from onnet_server.pepper import write_pepper_file
from onnet_server.stores.redis_layout import Layout
from tests.integration.test_cli import onnet_cli
from tests.redis_servers import RedisProcess, redis_server
from tests.security import registry_client
from tests.servers import (
    REPO,
    ServerProcess,
    ThreadedServer,
    free_port,
    fresh_config,
    server_process,
)
from tests.waiting import wait_until

ALICE, BOB, CAROL, DAVE = "+14155550100", "+442079460958", "+4930901820", "+33612345678"
BLOCKED = onnet.Verdict.BLOCKED
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
"""A Redis that keeps every acknowledged write across a restart (README "Persistence")."""


# -- move-blocklists, run again --------------------------------------------------------------


def move_blocklists(redis_url: str, old: Path, new: Path) -> str:
    """Run the rotation's step 3 as the README writes it; its report."""
    moved = subprocess.run(
        [sys.executable, "-m", "onnet_server", "move-blocklists", "--redis", redis_url,
         "--from-prefix", "onnet", "--to-prefix", "onnet2"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={**os.environ, "ONNET_PEPPER_FILE": str(new), "ONNET_PREVIOUS_PEPPER_FILE": str(old)},
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    return moved.stdout.strip()


def blocklists_under(redis_url: str, prefix: str) -> dict[str, set[bytes | str]]:
    """Every blocklist of the registry under ``prefix``, as Redis holds it."""
    client = redis.Redis.from_url(redis_url)
    try:
        layout = Layout(prefix)
        keys = [key.decode() for key in client.scan_iter(match=layout.group_pattern())]
        return {
            layout.user_of_blocks_key(key): set(client.smembers(key))
            for key in keys
            if layout.is_blocks_key(key)
        }
    finally:
        client.close()


def report(*, blocks: int, users: int, missing: int) -> str:
    """What move-blocklists prints."""
    return (
        f"moved {blocks} blocks of {users} users to prefix onnet2; "
        f"{missing} users not registered there yet"
    )


def blocks_seen_by(registry: onnet.RegistryClient) -> dict[tuple[str, str], onnet.Verdict]:
    """Who blocks whom, as a server answers call screening."""
    users = {"alice": ALICE, "bob": BOB, "carol": CAROL}
    return {
        (callee, caller): registry.screen(number, callee)
        for callee in users
        for caller, number in {**users, "dave": DAVE}.items()
        if caller != callee
    }


def test_move_blocklists_run_again_only_adds(redis_url: str, tmp_path: Path) -> None:
    old_pepper, new_pepper = tmp_path / "pepper.1", tmp_path / "pepper.2"
    write_pepper_file(old_pepper)
    write_pepper_file(new_pepper)
    old = ThreadedServer(
        fresh_config(redis_url=redis_url, pepper_hex=None, pepper_file=old_pepper)
    ).start()
    new = ThreadedServer(
        fresh_config(
            redis_url=redis_url, pepper_hex=None, pepper_file=new_pepper,
            previous_pepper_file=old_pepper, redis_prefix="onnet2",
        )
    )  # fmt: skip
    try:
        with registry_client(old.target) as registry:
            for user_id, e164 in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
                registry.register(user_id, e164)
            registry.block("bob", ALICE)
            registry.block("alice", CAROL)
            registry.block("carol", BOB)
        new.start()
        with registry_client(new.target) as registry:
            # Alice is imported late; meanwhile the account service sends its changes to
            # both fleets, so carol's latest block reached the new one directly.
            registry.import_users([onnet.ImportRow("bob", BOB, True),
                                   onnet.ImportRow("carol", CAROL, True)])  # fmt: skip
            registry.block("carol", DAVE)

            first = move_blocklists(redis_url, old_pepper, new_pepper)
            assert first == report(blocks=2, users=2, missing=1)
            moved_once = blocklists_under(redis_url, "onnet2")
            assert {user: len(fps) for user, fps in moved_once.items()} == {"bob": 1, "carol": 2}

            again = move_blocklists(redis_url, old_pepper, new_pepper)  # nothing new: no change
            assert again == first
            assert blocklists_under(redis_url, "onnet2") == moved_once

            registry.import_users([onnet.ImportRow("alice", ALICE, True)])
            late = move_blocklists(redis_url, old_pepper, new_pepper)
            assert late == report(blocks=3, users=3, missing=0)
            moved_twice = blocklists_under(redis_url, "onnet2")
            assert {user: fps for user, fps in moved_twice.items() if user != "alice"} == moved_once
            assert len(moved_twice["alice"]) == 1

            # The new fleet sees every block of the old one, and the one made on it alone.
            with registry_client(old.target) as on_old:
                expected = blocks_seen_by(on_old)
            expected[("carol", "dave")] = BLOCKED
            wait_until(lambda: blocks_seen_by(registry) == expected)
            blocked = [pair for pair, verdict in expected.items() if verdict is BLOCKED]
            assert sorted(blocked) == [
                ("alice", "carol"), ("bob", "alice"), ("carol", "bob"), ("carol", "dave"),
            ]  # fmt: skip
    finally:
        old.stop()
        new.stop()


# -- the change feed's metrics ---------------------------------------------------------------


def feed_metrics(address: str) -> tuple[float, float]:
    """(onnet_change_feed_lag_seconds, onnet_change_feed_reloads) as scraped now."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return found["onnet_change_feed_lag_seconds"], found["onnet_change_feed_reloads"]


@pytest.fixture
def killable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, kept on disk, that it kills and starts (by pid)."""
    with redis_server(tmp_path / "redis", *DURABLE) as server:
        yield server


def test_feed_lag_grows_while_redis_is_away_and_falls_when_it_returns(
    make_server: Callable[..., ThreadedServer], killable_redis: RedisProcess
) -> None:
    address = f"127.0.0.1:{free_port()}"
    make_server(redis_url=killable_redis.url, metrics_listen=address)
    wait_until(lambda: feed_metrics(address)[1] == 1)  # loaded, and refreshed since
    wait_until(lambda: feed_metrics(address)[0] < 0.5)

    killable_redis.stop()
    wait_until(lambda: feed_metrics(address)[0] > 1.0)  # refreshed once a second
    killable_redis.start()
    wait_until(lambda: feed_metrics(address)[0] < 0.5)
    assert feed_metrics(address)[1] == 1  # it caught up from the streams: no reload


def same_group_users(count: int) -> list[str]:
    """``count`` user ids of one slot group (whose changes share one stream)."""
    layout = Layout()
    candidates = [f"user-{n}" for n in range(200)]
    group = layout.group_of(candidates[0])[0]
    return [user for user in candidates if layout.group_of(user)[0] == group][:count]


def test_reloads_count_each_snapshot_the_index_loads(
    make_server: Callable[..., ThreadedServer], redis_url: str
) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = make_server(redis_url=redis_url, metrics_listen=address)
    wait_until(lambda: feed_metrics(address)[1] == 1)  # the first load counts
    first, second = same_group_users(2)
    group = Layout().group_of(first)[0]
    with registry_client(server.target) as registry:
        registry.register(first, ALICE)
        # A change the stream lost (its sequence number is skipped, as for a process that
        # fell behind a trim): the feed finds the gap at the next change and reloads.
        client = redis.Redis.from_url(redis_url)
        try:
            client.incr(Layout().seq_key(group))
        finally:
            client.close()
        registry.register(second, BOB)
        wait_until(lambda: feed_metrics(address)[1] == 2)
        assert registry.lookup([ALICE, BOB]) == [first, second]  # the reloaded index is whole


# -- several workers -------------------------------------------------------------------------


def workers_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Settings of `onnet serve --workers 2` on ``redis_url``, where alice is registered."""
    pepper = tmp_path / "pepper"
    write_pepper_file(pepper)
    # Registered before the workers start, so that every worker knows her from its first
    # load, whichever worker a connection lands on.
    registrar = ThreadedServer(
        fresh_config(redis_url=redis_url, pepper_hex=None, pepper_file=pepper)
    ).start()
    try:
        with registry_client(registrar.target) as registry:
            registry.register("alice", ALICE)
    finally:
        registrar.stop()
    return {
        "ONNET_REDIS_URL": redis_url,
        "ONNET_PEPPER_FILE": str(pepper),
        "ONNET_WORKERS": "2",
        **extra,
    }


def worker_pids(server: ServerProcess) -> list[int]:
    """Every worker pid the supervisor has started so far, in order."""
    return [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)", server.log())]


def gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text().lower()


def test_a_worker_with_a_configuration_error_stops_them_all(redis_url: str, tmp_path: Path) -> None:
    """Worker 1's metrics port (P + 1) is taken: it cannot serve, exits with code 2, and no
    restart could cure that, so the parent stops worker 0 too and exits non-zero."""
    metrics_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", metrics_port + 1))
        taken.listen()
        env = workers_env(redis_url, tmp_path, ONNET_METRICS_LISTEN=f"127.0.0.1:{metrics_port}")
        with server_process(env, "--listen", f"127.0.0.1:{free_port()}", wait=False) as server:
            assert server.process.wait(30) == 1, server.log()
            wait_until(lambda: "workers stopped" in server.log())
    assert "worker 1 has a configuration error; stopping" in server.log()
    assert "restarting it" not in server.log()
    pids = worker_pids(server)
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids)


def serves(target: str) -> bool:
    """A new connection to ``target`` is answered (it may land on any worker)."""
    with registry_client(target, timeout=5) as registry:
        return registry.lookup([ALICE]) == ["alice"]


@pytest.mark.slow
def test_a_dead_worker_is_restarted_and_sigint_stops_every_worker(
    redis_url: str, tmp_path: Path
) -> None:
    target = f"127.0.0.1:{free_port()}"
    with server_process(workers_env(redis_url, tmp_path), "--listen", target) as server:
        wait_until(lambda: server.log().count("onnet serving on") == 2, timeout=30)
        first, other = worker_pids(server)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: gone(first))
        assert all(serves(target) for _ in range(5))  # the other worker serves meanwhile
        wait_until(lambda: len(worker_pids(server)) == 3, timeout=20)
        wait_until(lambda: server.log().count("onnet serving on") == 3, timeout=30)
        assert re.search(rf"worker 0 \(pid {first}\) exited with -9; restarting it", server.log())
        replacement = worker_pids(server)[2]
        assert not gone(other)
        assert not gone(replacement)
        assert all(serves(target) for _ in range(5))

        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(30) == 0  # asked to stop, and every worker stopped
        wait_until(lambda: "workers stopped" in server.log())
    assert all(gone(pid) for pid in (first, other, replacement))
    assert "workers stopped (exit codes [0, 0])" in server.log()


# -- --help ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("lookup", ["NUMBER", "--region"]),
        ("screen", ["CALLER", "CALLEE_USER_ID", "--region"]),
        ("import", ["FILE", "--batch", "--progress {auto,always,never}"]),
        ("move-blocklists", ["--from-prefix", "--to-prefix", "--redis"]),
        ("drop-registry", ["--prefix", "--yes", "--redis"]),
    ],
)
def test_help_shows_each_commands_own_options(command: str, shown: list[str]) -> None:
    """The options are those of the README's table of commands ("The command line")."""
    result = onnet_cli(command, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    usage = result.stdout.split("\n\n", 1)[0]
    assert usage.startswith(f"usage: onnet {command} ")
    for option in shown:
        assert option in usage, option
