"""Bulk import through the streaming RPC: the SDK and `onnet import`, on memory and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import onnet
from tests.security import (
    SERVICE_NAME,
    async_discovery_client,
    async_registry_client,
    discovery_client,
    registry_client,
    security,
)
from tests.servers import ThreadedServer

ROWS = [
    onnet.ImportRow(f"user-{i}", f"+1415555{i:04d}", discoverable=i % 4 != 0) for i in range(2500)
]
BAD = [
    onnet.ImportRow("", "+14155559999"),
    onnet.ImportRow("fine", "+1 415 555 9998"),
    onnet.ImportRow("also fine", "12345"),
]


@pytest.fixture(params=["memory", "redis"])
def import_server(
    request: pytest.FixtureRequest, make_server: Callable[..., ThreadedServer]
) -> ThreadedServer:
    if request.param == "memory":
        return make_server()
    return make_server(redis_url=request.getfixturevalue("redis_url"))


def test_import_registers_rows_and_reports_bad_ones(import_server: ThreadedServer) -> None:
    rows = ROWS[:1000] + BAD + ROWS[1000:]
    progress_calls: list[int] = []
    with registry_client(import_server.target) as registry:
        result = registry.import_users(
            rows, batch_size=300, window=3, progress=lambda r, sent: progress_calls.append(sent)
        )
    assert result.imported == len(ROWS)
    assert [(r.row, r.field) for r in result.rejected] == [
        (1000, "user_id"), (1001, "e164"), (1002, "e164"),
    ]  # fmt: skip
    assert len(progress_calls) == -(-len(rows) // 300)
    assert progress_calls[-1] == len(rows)
    with discovery_client(import_server.target) as client:
        found = client.discover([row.e164 for row in ROWS])
    assert {m.user_id for m in found.matches} == {r.user_id for r in ROWS if r.discoverable}


async def test_async_import_and_repeated_users(import_server: ThreadedServer) -> None:
    rows = [
        onnet.ImportRow("alice", "+14155550100"),
        onnet.ImportRow("alice", "+14155550101"),  # later in the same batch: moves her
        onnet.ImportRow("bob", "+14155550102"),
    ]
    async with async_registry_client(import_server.target) as registry:
        result = await registry.import_users(rows, batch_size=2)
    assert result.imported == 3
    async with async_discovery_client(import_server.target) as client:
        found = await client.discover(["+14155550100", "+14155550101", "+14155550102"])
    assert [(m.e164, m.user_id) for m in found.matches] == [
        ("+14155550101", "alice"), ("+14155550102", "bob"),
    ]  # fmt: skip


def test_onnet_import_command(server: ThreadedServer, tmp_path: Path) -> None:
    file = tmp_path / "users.csv"
    file.write_text(
        "user_id,e164,discoverable\n"
        "alice,+14155550100,true\n"
        "bob,+442079460958,no\n"
        "carol,+4930901820\n"
        "dave,020 7946 0958,yes\n"
        "eve\n"
        "frank,+33612345678,maybe\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "onnet_server", "import", str(file), "--target", server.target,
         "--progress", "always", "--batch", "2"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **security().client_env(SERVICE_NAME, "service")},
    )  # fmt: skip
    assert result.returncode == 1  # some lines were skipped
    assert "imported 3 users" in result.stdout
    assert "skipped 3 lines" in result.stdout
    assert f"{file}:5: skipped: e164: not a valid phone number" in result.stderr
    assert f"{file}:6: skipped: expected 2 or 3 columns" in result.stderr
    assert f"{file}:7: skipped: discoverable must be" in result.stderr
    assert "rows 100%" in result.stderr  # the progress bar reached the end
    with discovery_client(server.target) as client:
        found = client.discover(["+14155550100", "+442079460958", "+4930901820"])
    assert [m.user_id for m in found.matches] == ["alice", "carol"]


def test_rows_sharing_a_number_apply_in_batch_order(import_server: ThreadedServer) -> None:
    rows = [
        onnet.ImportRow("filler-1", "+14155550150"),
        onnet.ImportRow("alice", "+14155550100"),
        onnet.ImportRow("bob", "+14155550100"),  # the number goes to bob, the later row
        onnet.ImportRow("carol", "+14155550101"),
        onnet.ImportRow("carol", "+14155550102"),  # carol ends on her last number
    ]
    with registry_client(import_server.target) as registry:
        assert registry.import_users(rows).imported == 5
        with pytest.raises(onnet.NotFoundError):
            registry.unregister("alice")  # displaced by bob: gone
    with discovery_client(import_server.target) as client:
        found = client.discover(["+14155550100", "+14155550101", "+14155550102"])
    assert [(m.e164, m.user_id) for m in found.matches] == [
        ("+14155550100", "bob"), ("+14155550102", "carol"),
    ]  # fmt: skip


def test_import_with_the_store_gone_is_unavailable(tmp_path: Path) -> None:
    from tests.redis_servers import redis_server
    from tests.servers import fresh_config

    with redis_server(tmp_path / "redis") as redis:
        server = ThreadedServer(fresh_config(redis_url=redis.url)).start()
        try:
            redis.stop()
            with (
                registry_client(server.target) as registry,
                pytest.raises(onnet.UnavailableError) as caught,
            ):
                registry.import_users(ROWS[:10])
            assert "store is unavailable" in caught.value.reason
        finally:
            server.stop()
