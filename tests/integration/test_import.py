"""Bulk import through the streaming RPC: the SDK and `onnet import`, on memory and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

import onnet
from onnet.v1 import registry_pb2
from tests.security import (
    SERVICE_NAME,
    async_discovery_client,
    async_registry_client,
    discovery_client,
    registry_client,
    secure_channel,
    security,
    service_metadata,
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


def _batch(rows: list[onnet.ImportRow]) -> bytes:
    """One ImportBatch message, serialized."""
    return registry_pb2.ImportBatch(
        rows=[
            registry_pb2.RegisterRequest(
                user_id=r.user_id, e164=r.e164, discoverable=r.discoverable
            )
            for r in rows
        ]
    ).SerializeToString()


def _import_raw(
    target: str, messages: list[bytes]
) -> tuple[list[registry_pb2.ImportProgress], grpc.StatusCode, str]:
    """Stream ``messages`` as they are to ImportUsers: the answers, and how the call ended."""
    answers: list[registry_pb2.ImportProgress] = []
    with secure_channel(target) as channel:
        call: grpc.StreamStreamMultiCallable[bytes, registry_pb2.ImportProgress]
        call = channel.stream_stream(
            "/onnet.v1.Registry/ImportUsers",
            response_deserializer=registry_pb2.ImportProgress.FromString,
        )
        try:
            for answer in call(iter(messages), metadata=service_metadata(), timeout=30):
                answers.append(answer)
        except grpc.RpcError as error:
            return answers, error.code(), error.details() or ""
    return answers, grpc.StatusCode.OK, ""


def _holders(server: ThreadedServer, rows: list[onnet.ImportRow]) -> list[str | None]:
    """Who holds each row's number now, asked in Lookups of the server's largest batch."""
    step = server.config.max_batch
    with registry_client(server.target) as registry:
        return [
            holder
            for start in range(0, len(rows), step)
            for holder in registry.lookup([row.e164 for row in rows[start : start + step]])
        ]


@pytest.mark.parametrize("position", [1, 2], ids=["second", "third"])
def test_a_malformed_batch_ends_the_import_after_the_batches_before_it(
    server: ThreadedServer, position: int
) -> None:
    """Finding 8: INVALID_ARGUMENT naming the request, never UNKNOWN with parser internals."""
    batches = [ROWS[3 * i : 3 * i + 3] for i in range(4)]
    messages = [_batch(rows) for rows in batches]
    # Cut short inside its last row: a lenient parser would still find the rows before it.
    messages[position] = messages[position][:-2]
    answers, code, details = _import_raw(server.target, messages)
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "request: malformed request message",
    )
    assert [(a.imported, list(a.rejected)) for a in answers] == [(3, [])] * position
    written, not_written = ROWS[: 3 * position], ROWS[3 * position : 12]
    assert _holders(server, written) == [row.user_id for row in written]
    assert _holders(server, not_written) == [None] * len(not_written)


@pytest.mark.parametrize("max_batch", [None, 100], ids=["default", "configured"])
def test_a_batch_over_max_batch_is_refused_before_any_row_is_written(
    make_server: Callable[..., ThreadedServer], max_batch: int | None
) -> None:
    server = make_server() if max_batch is None else make_server(max_batch=max_batch)
    limit = server.config.max_batch
    big = [onnet.ImportRow(f"big-{i}", f"+1415{5560000 + i}") for i in range(limit + 1)]
    answers, code, details = _import_raw(server.target, [_batch(ROWS[:3]), _batch(big)])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == f"rows: batch of {limit + 1} rows exceeds the limit of {limit}"
    assert [a.imported for a in answers] == [3]
    assert _holders(server, ROWS[:3]) == [row.user_id for row in ROWS[:3]]
    assert _holders(server, big) == [None] * len(big)


def test_an_empty_batch_is_answered_with_nothing_imported(server: ThreadedServer) -> None:
    messages = [_batch([]), _batch(ROWS[:1]), b"", _batch([])]
    answers, code, _ = _import_raw(server.target, messages)
    assert code == grpc.StatusCode.OK
    assert [(a.imported, list(a.rejected)) for a in answers] == [(0, []), (1, []), (0, []), (0, [])]
