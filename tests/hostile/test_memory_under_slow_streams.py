"""Finding 1: streams that never finish their message must not grow the server's memory.

An unauthenticated client opens 3 connections of 100 streams each; every stream announces a
4 MiB Discover message and sends all of it but 64 bytes, then holds. Before the fix the
server buffered every byte (RSS +1.2 GB, still +1.0 GB after the streams closed), because a
credential was checked only once a whole message had arrived.
"""

from __future__ import annotations

import time

import pytest

from tests.hostile.conftest import (
    plaintext_client,
    plaintext_registry,
    production_env,
    rss_bytes,
    timed_get_config,
)
from tests.hostile.raw_http2 import SlowStreams
from tests.security import security
from tests.servers import ServerProcess, server_process

MIB = 1024 * 1024
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED = 4, 8


@pytest.mark.slow
def test_slow_unauthenticated_streams_hold_no_memory(plaintext_server: ServerProcess) -> None:
    pid = plaintext_server.process.pid
    with plaintext_client(plaintext_server.target) as client:
        client.get_config()  # warm: the legitimate path has run once
        baseline = rss_bytes(pid)
        attack = SlowStreams(plaintext_server.port, "/onnet.v1.Discovery/Discover", 3, 100, 4 * MIB)
        attack.start()
        try:
            attack.push(6.0)
            peak = rss_bytes(pid)
            answered_in = timed_get_config(plaintext_server.target)  # still served
            attack.push(1.0)
            peak = max(peak, rss_bytes(pid))
        finally:
            attack.close()
        assert peak - baseline < 256 * MIB, f"RSS grew by {(peak - baseline) / MIB:.0f} MiB"
        assert answered_in < 2.0
        deadline = time.monotonic() + 5.0
        while rss_bytes(pid) - baseline > 128 * MIB and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rss_bytes(pid) - baseline <= 128 * MIB


def test_an_accounts_slow_streams_are_few_and_cut_off() -> None:
    """With a valid credential: 8 calls in flight at most, each ended when its message is late."""
    with server_process(production_env(ONNET_RECEIVE_TIMEOUT="2"), secure=False) as server:
        with plaintext_registry(server.target) as registry:
            registry.register("mallory", "+12025550102", discoverable=False)
        with plaintext_client(server.target):  # registers the legitimate account
            pass
        pid = server.process.pid
        baseline = rss_bytes(pid)
        token = security().token("mallory").encode("ascii")
        attack = SlowStreams(
            server.port,
            "/onnet.v1.Discovery/Discover",
            3,
            100,
            4 * MIB,
            headers=[(b"authorization", b"Bearer " + token)],
        )
        attack.start()
        try:
            attack.push(1.0)
            assert attack.refused() >= 300 - 8  # the account's calls in flight
            answered_in = timed_get_config(server.target)  # another account: served
            peak = rss_bytes(pid)
            deadline = time.monotonic() + 10
            while attack.refused() < 300 and time.monotonic() < deadline:
                attack.push(0.2)
            statuses = attack.statuses()
        finally:
            attack.close()
    assert answered_in < 2.0
    assert peak - baseline < 256 * MIB
    assert statuses.count(DEADLINE_EXCEEDED) == 300 - statuses.count(RESOURCE_EXHAUSTED)
    assert 0 < statuses.count(DEADLINE_EXCEEDED) <= 8
