"""What the people who run onnet use: metrics, the benchmark ceiling, several workers."""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import onnet
from onnet.v1 import bench_pb2_grpc, discovery_pb2
from onnet_server.pepper import write_pepper_file
from tests.security import (
    DEFAULT_ACCOUNT,
    account_metadata,
    discovery_client,
    register_account,
    registry_client,
    secure_channel,
    security,
)
from tests.servers import ServerProcess, ThreadedServer, free_port, server_process

ALICE, BOB, STRANGER = "+14155550100", "+442079460958", "+33612345678"


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_calls_and_never_carry_personal_data(
    make_server: Callable[..., ThreadedServer],
) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = make_server(metrics_listen=address, quota_new_numbers=5)
    with registry_client(server.target) as registry:
        registry.register("alice", ALICE)
        assert registry.lookup([ALICE, STRANGER]) == ["alice", None]
    with discovery_client(server.target) as client:
        assert [m.user_id for m in client.discover([ALICE, BOB]).matches] == ["alice"]
        with pytest.raises(onnet.InvalidArgumentError):
            client.calls.discover(discovery_pb2.DiscoverRequest(hashes=b"x" * 33))
        with pytest.raises(onnet.QuotaExceededError):
            client.discover([STRANGER, "+819012345678", "+61412345678", "+4930901820", BOB])
    deadline = time.monotonic() + 5
    while True:  # the gauges are refreshed on the server's event loop once a second
        text = scrape(address)
        found = samples(text)
        if found[("onnet_registered_users", ())] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    discover = (("code", "OK"), ("method", "Discovery/Discover"))
    assert found[("onnet_calls_total", discover)] == 1
    bad = (("code", "INVALID_ARGUMENT"), ("method", "Discovery/Discover"))
    assert found[("onnet_calls_total", bad)] == 1
    assert found[("onnet_quota_refusals_total", (("method", "Discovery/Discover"),))] == 1
    assert found[("onnet_calls_total", (("code", "OK"), ("method", "Registry/Lookup")))] == 1
    assert found[("onnet_batch_size_count", (("method", "Discovery/Discover"),))] == 3
    assert found[("onnet_batch_size_sum", (("method", "Registry/Lookup"),))] == 2
    assert found[("onnet_call_seconds_count", (("method", "Discovery/Discover"),))] == 3
    assert found[("onnet_registered_users", ())] == 2  # alice and the discovering account
    assert found[("onnet_bucket_entries", ())] == 1
    assert found[("process_cpu_seconds_total", ())] > 0
    # Labels are method names and status codes only.
    labels = {(key, value) for (_, pairs) in found for key, value in pairs}
    assert {key for key, _ in labels} <= {"method", "code", "le"}
    for key, value in labels:
        pattern = {"method": r"[A-Za-z]+/[A-Za-z]+", "code": r"[A-Z_]+", "le": r"[0-9.]+|\+Inf"}
        assert re.fullmatch(pattern[key], value), (key, value)
    for secret in (ALICE, ALICE[1:], BOB[1:], "alice", DEFAULT_ACCOUNT):
        assert secret not in text
    assert onnet.contact_hash(ALICE).hex()[:12] not in text


def test_the_ceiling_is_served_only_when_asked(
    make_server: Callable[..., ThreadedServer],
) -> None:
    request = discovery_pb2.DiscoverRequest(hashes=bytes(32 * 1000))
    plain = make_server()
    with secure_channel(plain.target) as channel:
        with pytest.raises(grpc.RpcError) as absent:
            bench_pb2_grpc.BenchStub(channel).Ceiling(request, timeout=5)
        assert absent.value.code() == grpc.StatusCode.UNIMPLEMENTED
    bench = make_server(bench_ceiling=True)
    register_account(bench.target)
    with secure_channel(bench.target) as channel:
        answer = bench_pb2_grpc.BenchStub(channel).Ceiling(
            request, timeout=5, metadata=account_metadata()
        )
    assert (list(answer.matched_indexes), len(answer.token)) == ([], 45)


def two_free_ports() -> int:
    """A port P such that P and P + 1 are both free (workers' metrics use P + i)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


def workers_env(redis_url: str, tmp_path: Path, metrics_port: int) -> dict[str, str]:
    pepper = tmp_path / "pepper"
    write_pepper_file(pepper)
    return {
        "ONNET_REDIS_URL": redis_url,
        "ONNET_PEPPER_FILE": str(pepper),
        "ONNET_WORKERS": "2",
        "ONNET_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
    }


def wait_for_workers(server: ServerProcess) -> list[int]:
    deadline = time.monotonic() + 20
    while server.log().count("onnet serving on") < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    pids = [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)", server.log())]
    assert len(pids) == 2
    return pids


def registered_users(metrics_port: int) -> float:
    """The users in the index of the worker whose metrics are on ``metrics_port``."""
    return samples(scrape(f"127.0.0.1:{metrics_port}")).get(("onnet_registered_users", ()), 0)


def gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text().lower()


def test_workers_die_with_a_parent_that_was_killed(redis_url: str, tmp_path: Path) -> None:
    env = workers_env(redis_url, tmp_path, two_free_ports())
    with server_process(env, "--listen", f"127.0.0.1:{free_port()}") as server:
        pids = wait_for_workers(server)
        server.process.kill()  # no chance to stop its workers itself
        server.process.wait(10)
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.05)


@pytest.mark.slow
def test_workers_share_one_port_and_stop_together(redis_url: str, tmp_path: Path) -> None:
    port, metrics_port = free_port(), two_free_ports()
    env = workers_env(redis_url, tmp_path, metrics_port)
    with server_process(env, "--listen", f"127.0.0.1:{port}") as server:
        pids = wait_for_workers(server)
        target = f"127.0.0.1:{port}"
        with registry_client(target) as registry:
            registry.register("alice", ALICE)
        # The other worker learns of alice through Redis's change stream: wait until each
        # worker's gauge (refreshed once a second) counts her.
        deadline = time.monotonic() + 20
        while not all(registered_users(metrics_port + index) == 1 for index in range(2)):
            assert time.monotonic() < deadline, "a worker never learned of alice"
            time.sleep(0.1)
        # Each new connection may land on either worker; every worker knows alice.
        for _ in range(24):
            token = security().token("alice")
            with onnet.Client(target, credentials=security().channel(), token=token) as client:
                found = client.discover([ALICE])
            assert [m.user_id for m in found.matches] == ["alice"]
        served = []
        for index in range(2):
            text = scrape(f"127.0.0.1:{metrics_port + index}")
            calls = samples(text).get(
                ("onnet_calls_total", (("code", "OK"), ("method", "Discovery/Discover"))), 0
            )
            served.append(calls)
        assert sum(served) == 24
        assert all(count > 0 for count in served), served
        assert server.terminate() == 0
    assert all(gone(pid) for pid in pids)  # no worker outlives the parent
