"""Findings of the hostile review of the gate commit (8512397); each test fails on that code.

Every test plays one attack against a real `onnet serve` process (production settings:
credentials and a pepper, plaintext on loopback, as the rest of tests/hostile) and checks a
promise of DESIGN.md section 6, README "Hostile clients" / "Memory budget" or
docs/threat-model.md. The docstrings give the figures measured on the reviewed code (a
2-vCPU machine, grpcio 1.85.3).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import h2.settings
import pytest

from onnet._credentials import KIND_SERVICE
from tests.hostile.conftest import (
    plaintext_client,
    plaintext_registry,
    production_env,
    rss_bytes,
    timed_get_config,
)
from tests.hostile.raw_http2 import RawConnection, SlowStreams, grpc_frame
from tests.security import DEFAULT_ACCOUNT, SERVICE_NAME, security
from tests.servers import ServerProcess, free_port, server_process

MIB = 1024 * 1024
RESOURCE_EXHAUSTED = 8
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
GET_CONFIG = "/onnet.v1.Discovery/GetConfig"


def _outcome(call: Callable[[], object]) -> str:
    """'OK', or the name of the status code (or exception) the call ended with."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code().name
    except Exception as error:  # the SDK's own errors, a refused connection
        return type(error).__name__
    return "OK"


def _register(target: str, user: str, number: str) -> None:
    with plaintext_registry(target) as registry:
        registry.register(user, number, discoverable=False)


def _send_path(port: int, path: bytes) -> RawConnection:
    """One call whose ``:path`` is the raw bytes ``path``; returns its open connection."""
    connection = RawConnection(port)
    stream = connection.h2.get_next_available_stream_id()
    connection.h2.send_headers(
        stream,
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", f"127.0.0.1:{port}".encode("ascii")),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ],
        end_stream=True,
    )
    connection._flush()
    time.sleep(0.5)
    return connection


# --- 1. One stream kills the port --------------------------------------------------------


def _workers_env(redis_url: str, index_dir: Path, **extra: str) -> dict[str, str]:
    return production_env(
        ONNET_REDIS_URL=redis_url, ONNET_WORKERS="2", ONNET_INDEX_DIR=str(index_dir), **extra
    )


def _wait_serving(server: ServerProcess, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.log().count("onnet serving on") < count:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


def test_a_path_that_is_not_utf8_does_not_stop_the_service() -> None:
    """CRITICAL. One HTTP/2 stream, no credential, `:path` = b"/onnet.v1.Discovery/GetConfig\\xff".

    grpc.aio decodes the path of an unregistered method in its accept loop
    (`_server_main_loop`: `rpc_state.method().decode()`), outside any handler; the
    UnicodeDecodeError ends the loop and gRPC shuts the server down (measured: the port is
    closed within 0.3 s). It is gRPC's (grpcio 1.85.3); onnet notices within 0.2 s and serves
    the port again from a new gRPC server, keeping its index, store and limits.
    """
    with server_process(production_env(), secure=False) as server:
        with plaintext_client(server.target) as client:
            client.get_config()
        gaps = []
        for _ in range(3):
            _send_path(server.port, b"/onnet.v1.Discovery/GetConfig\xff").close()
            started = time.monotonic()
            while _outcome(lambda: timed_get_config(server.target)) != "OK":
                assert time.monotonic() - started < 5, server.log()
                time.sleep(0.02)
            gaps.append(time.monotonic() - started)
        answers = [_outcome(lambda: timed_get_config(server.target)) for _ in range(20)]
        assert server.process.poll() is None
    assert answers.count("OK") == 20
    assert "serving again" in server.log()
    assert max(gaps) < 2.0, gaps


def test_onnet_serve_never_lives_on_without_serving() -> None:
    """MEDIUM. After the crash above `onnet serve` lived on without serving, then exited 0.

    gRPC's shutdown waits for the attacker's call, which no handler ever took, so while the
    attacker keeps its connection open `server.wait_for_termination()` in `serve()` does not
    return: measured, the process was alive and its port closed for as long as the
    connection stayed open (5 s here, indefinitely in general). Once the connection closes,
    `serve()` logs an ordinary "shutting down: finishing in-flight calls" and "stopped" and
    exits with code 0, so neither a supervisor that watches the process nor
    Restart=on-failure brings the service back. Either it keeps serving (the finding above
    fixed) or it must exit at once with a non-zero code: it now exits with 70.
    """
    with server_process(production_env(), secure=False) as server:
        _register(server.target, DEFAULT_ACCOUNT, "+12025551811")
        attacker = _send_path(server.port, b"/\xff")
        try:
            deadline = time.monotonic() + 5
            serving = False
            while time.monotonic() < deadline and server.process.poll() is None:
                serving = _outcome(lambda: timed_get_config(server.target)) == "OK"
                if serving:
                    break
                time.sleep(0.2)
            exit_code = server.process.poll()
        finally:
            attacker.close()
    assert serving or exit_code == 70


# --- 2. Answers nobody reads hold gRPC's calls, not onnet's slots -----------------------


def _unread_calls(
    port: int, path: str, count: int, headers: list[tuple[bytes, bytes]]
) -> RawConnection:
    """``count`` whole calls on one connection that announces a flow-control window of 0.

    The server can never send a byte of any answer's message: each call stays in gRPC
    until the connection closes.
    """
    connection = RawConnection(port)
    connection.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    connection._flush()
    connection.pump(0.1)
    for _ in range(count):
        stream = connection.open_stream(path, headers)
        connection.send(stream, grpc_frame(b""), end=True)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # let the server take every call
        connection.pump(0.05)
    return connection


def test_answers_a_client_never_reads_do_not_lock_out_other_callers() -> None:
    """HIGH. One unauthenticated connection locks every caller out, for as long as it likes.

    The attacker sets SETTINGS_INITIAL_WINDOW_SIZE = 0 and sends 100 complete Health/Check
    calls. Each handler returns at once, so the gate gives its public slot back
    (`_single_answer`'s `finally: release()`), but gRPC cannot send the answer and keeps the
    call, which counts against `maximum_concurrent_rpcs` (ONNET_MAX_CONCURRENT_CALLS, 100)
    with no deadline. Measured: a registered account's GetConfig, a service's Register and a
    health check all get RESOURCE_EXHAUSTED "Concurrent RPC limit exceeded!" until the
    attacker closes the connection. The public share (10 slots) is meant to bound exactly
    this (README "Hostile clients", threat model section 2).
    """
    with server_process(production_env(), secure=False) as server:
        with plaintext_client(server.target):  # registers the legitimate account
            pass
        attacker = _unread_calls(server.port, HEALTH_CHECK, 100, [])
        try:
            account = _outcome(lambda: timed_get_config(server.target))
            service = _outcome(lambda: _register(server.target, "carol", "+12025550103"))
        finally:
            attacker.close()
    assert account == "OK"
    assert service == "OK"


def test_an_accounts_unread_answers_count_against_its_calls_in_flight() -> None:
    """MEDIUM. One account holds 20 calls at once although ONNET_ACCOUNT_CONCURRENT_CALLS is 8.

    Same trick with an account credential: 20 GetConfig calls on a connection with a window
    of 0. The account's in-flight count drops when each handler returns, while gRPC keeps
    every call (and its answer) until the connection closes. Measured: 0 of the 20 refused
    (12 expected: RESOURCE_EXHAUSTED "already has 8 calls in flight"); with 100 such calls
    (two accounts at the default 60-call burst) the whole server is locked as above.
    """
    env = production_env(ONNET_ACCOUNT_CALLS="60")
    with server_process(env, secure=False) as server:
        with plaintext_client(server.target):  # registers the account
            pass
        token = security().token(DEFAULT_ACCOUNT).encode("ascii")
        attacker = _unread_calls(
            server.port, GET_CONFIG, 20, [(b"authorization", b"Bearer " + token)]
        )
        try:
            attacker.pump_until(lambda: len(attacker.statuses()) >= 12, 3.0)
            refused = attacker.statuses().count(RESOURCE_EXHAUSTED)
        finally:
            attacker.close()
    assert refused >= 20 - 8


# --- 3. Memory and the event loop --------------------------------------------------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _header_block_of_static_references(references: int) -> bytes:
    """HPACK for a Health/Check call, then ``references`` one-byte references to entry 16.

    Entry 16 of HPACK's static table is "accept-encoding: gzip, deflate": each byte stands
    for a header of about 60 bytes, so the block far exceeds gRPC's 16 KiB metadata limit.
    """
    return (
        b"\x83\x86"  # :method POST, :scheme http
        + b"\x04\x1c/grpc.health.v1.Health/Check"  # :path, literal value
        + b"\x01\x01x"  # :authority x
        + b"\x0f\x10\x10application/grpc"  # content-type
        + b"\x00\x02te\x08trailers"
        + b"\x90" * references
    )


def _headers_frames(stream: int, block: bytes) -> bytes:
    """``block`` as HEADERS (END_STREAM) and CONTINUATION frames of 16,000 bytes."""
    chunks = [block[i : i + 16_000] for i in range(0, len(block), 16_000)]
    last = len(chunks) - 1
    frames = _frame(1, 0x1 | (0x4 if last == 0 else 0), stream, chunks[0])
    for index, chunk in enumerate(chunks[1:], start=1):
        frames += _frame(9, 0x4 if index == last else 0, stream, chunk)
    return frames


@pytest.mark.slow
def test_hpack_references_are_bounded_by_the_memory_limit(redis_url: str, tmp_path: Path) -> None:
    """HIGH. 4.5 MB of header blocks, no credential, grow RSS by hundreds of MiB, and it stays.

    3 connections x 100 streams, each a header block of 15,000 one-byte references to
    HPACK's static table (1.5 KB on the wire each, about 900 KB of decoded headers). gRPC's
    C core refuses each call (RESOURCE_EXHAUSTED, metadata over 16 KiB) before onnet sees
    it, but measured: RSS +211 to +661 MiB while connected (most runs near +600), +595 MiB
    still held after the connections closed; five such rounds on a bare grpc.aio server
    (no onnet code) reach +1.9 GiB and never come back, and malloc_trim gives back only
    part. Neither grpc.max_metadata_size / grpc.absolute_max_metadata_size nor a decoder
    table of 0 changes it. It is gRPC's (grpcio 1.85.3): onnet's bound is ONNET_MEMORY_LIMIT,
    past which a worker exits (code 70) for its supervisor to start it again. Memory stays
    bounded; availability does not: when every worker passes the limit at once, the port
    has no listener until they are back (about a second). Only a proxy in front that limits
    header blocks, or a fixed gRPC, closes that (docs/threat-model.md).
    """
    port = free_port()
    env = _workers_env(redis_url, tmp_path / "index", ONNET_MEMORY_LIMIT="300")
    target = f"127.0.0.1:{port}"
    with server_process(env, "--listen", target, secure=False) as server:
        _wait_serving(server, 2)
        _register(target, DEFAULT_ACCOUNT, "+12025551811")
        block = _header_block_of_static_references(15_000)
        attack = (
            _PREFACE
            + _frame(4, 0, 0, b"")
            + b"".join(_headers_frames(stream, block) for stream in range(1, 200, 2))
        )
        highest = 0
        for _ in range(4):  # rounds: a worker that passes the limit is replaced
            sockets = []
            for _ in range(3):
                try:
                    sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                except ConnectionRefusedError:  # every worker was restarting at that moment
                    continue
                sockets[-1].sendall(attack)
            time.sleep(1.5)
            for sock in sockets:
                sock.close()
            pids = _worker_pids(server.process.pid)
            highest = max(highest, 0, *(_anonymous(pid) for pid in pids))
        deadline = time.monotonic() + 30  # the restarted workers are back
        while _outcome(lambda: timed_get_config(target)) != "OK":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        answers = [_outcome(lambda: timed_get_config(target)) for _ in range(10)]
        assert server.terminate() == 0
    assert "over ONNET_MEMORY_LIMIT" in server.log()
    assert answers.count("OK") == 10
    assert highest < 300 * MIB + 700 * MIB  # the limit plus at most one round's growth


def _worker_pids(parent: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _anonymous(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return 0
    return 0


def test_an_import_batch_of_empty_rows_is_refused_before_it_is_expanded() -> None:
    """MEDIUM (needs a service credential). A 2 MB ImportUsers batch: RSS +180 MiB, loop stalled.

    The batch holds 1,000,000 empty rows (2 bytes each; the method's limit is 4 MiB, and
    gzip would shrink it to 2 KB on the wire). The gate parses it, then the servicer builds
    an ImportRow per row on the event loop, and only then does `import_batch` refuse it for
    having more than ONNET_MAX_BATCH (10,000) rows. Measured: RSS +180 MiB (kept after the
    call) and another account's GetConfig waited 1.9 to 2.9 s. With the full 4 MB (2,000,000
    rows): +360 MiB and a 4.4 s stall; 10 such calls at once: +931 MiB and every call past
    its 30 s deadline. README "Memory budget" says an admitted ImportUsers batch costs 4 MiB.
    """
    with server_process(production_env(), secure=False) as server:
        pid = server.process.pid
        with plaintext_client(server.target) as client:
            client.get_config()
        metadata = (("authorization", "Bearer " + security().token(SERVICE_NAME, KIND_SERVICE)),)
        batch = b"\x0a\x00" * 1_000_000  # ImportBatch: 1,000,000 empty RegisterRequest rows
        baseline = rss_bytes(pid)
        peak = [baseline]
        done = threading.Event()
        outcome: list[str] = []

        def importer() -> None:
            with grpc.insecure_channel(server.target) as channel:
                call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
                    "/onnet.v1.Registry/ImportUsers"
                )
                outcome.append(
                    _outcome(lambda: list(call(iter([batch]), metadata=metadata, timeout=30)))
                )
            done.set()

        def watch_memory() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(pid))
                time.sleep(0.01)

        threads = [threading.Thread(target=importer), threading.Thread(target=watch_memory)]
        for thread in threads:
            thread.start()
        slowest = 0.0
        time.sleep(0.2)
        while not done.is_set():
            started = time.perf_counter()
            _outcome(lambda: timed_get_config(server.target))  # a timeout counts as its 10 s
            slowest = max(slowest, time.perf_counter() - started)
        for thread in threads:
            thread.join()
    grew = (peak[0] - baseline) / MIB
    assert outcome == ["INVALID_ARGUMENT"]
    figures = f"RSS +{grew:.0f} MiB; another caller waited {slowest:.1f} s"
    assert grew < 64, figures
    assert slowest < 1.0, figures


@pytest.mark.slow
def test_anonymous_calls_hold_no_more_than_the_budget() -> None:
    """LOW. Anonymous callers held 10 x 4 MiB of request bytes, not README's 10 x 4 KiB.

    Ten Health/Check streams (the public share) each announce a 4 MiB message and send all
    of it but 64 bytes. The per-method limit (4 KiB) is checked only once the whole message
    has arrived; until then gRPC buffers up to the transport's ONNET_MAX_MESSAGE_BYTES, for
    ONNET_RECEIVE_TIMEOUT (30 s). Measured: RSS +40 MiB (reflection streams: +40.5 MiB),
    against "anonymous callers 10 x 4 KiB" in README "Memory budget". The README now says
    what is true: 10 x the transport limit (4 MiB), 40 MiB.
    """
    with server_process(production_env(), secure=False) as server:
        pid = server.process.pid
        with plaintext_client(server.target) as client:
            client.get_config()
        baseline = rss_bytes(pid)
        attack = SlowStreams(server.port, HEALTH_CHECK, 1, 10, 4 * MIB)
        attack.start()
        try:
            attack.push(3.0)
            peak = rss_bytes(pid)
        finally:
            attack.close()
    assert peak - baseline < 48 * MIB, f"RSS grew by {(peak - baseline) / MIB:.0f} MiB"


@pytest.mark.slow
def test_unread_answers_hold_their_slots_only_until_the_connection_ages_out() -> None:
    """Calls whose answers are never read hold the public share only until their connection
    is closed for its age (ONNET_MAX_CONNECTION_AGE, plus ONNET_RECEIVE_TIMEOUT of grace):
    health checks are refused while the share is full, then served again."""
    env = production_env(ONNET_MAX_CONNECTION_AGE="2", ONNET_RECEIVE_TIMEOUT="1")
    with server_process(env, secure=False) as server:
        attacker = _unread_calls(server.port, HEALTH_CHECK, 30, [])
        try:
            while_held = _outcome(lambda: _health_check(server.target))
            deadline = time.monotonic() + 15
            while _outcome(lambda: _health_check(server.target)) != "OK":
                assert time.monotonic() < deadline, "the public share was never given back"
                time.sleep(0.1)
            freed_after = time.monotonic() - (deadline - 15)
        finally:
            attacker.close()
    assert while_held == "UNAVAILABLE"  # the public share is full
    assert freed_after < 15


def _health_check(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        check: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HEALTH_CHECK)
        check(b"", timeout=5)
