"""Discover under a C load generator (h2load) against a no-op grpc.aio server (issue 12, item 1).

The load comes from h2load (nghttp2's, written in C), installed by this benchmark from
Debian's nghttp2-client when missing (as root with apt; otherwise the test skips and says
what to run), so the figures do not depend on a Python client's speed. It POSTs one
pre-framed gRPC request (the 5-byte prefix and the serialized message, from a file) over
h2c with prior knowledge, on 4 connections with 16 streams in flight on each, to:

- onnet: ``onnet serve --dev --bench-ceiling --metrics-listen ...`` (the embedded store,
  USERS registered users, no per-account call limits, a quota that never runs out);
- the no-op: ``bench/noop_server.py``, a bare grpc.aio server (same grpcio, one event loop,
  same transport settings, no interceptors) whose generic handler parses nothing and sends
  back onnet's own answer to the same request, byte for byte;
- (full run only) onnet's ``onnet.v1.Bench/Ceiling`` on the same onnet process: the same
  request through onnet's interceptors (metrics, the gate) and parsed, with no work and a
  smaller answer, which tells the framework's part of onnet's cost from Discover's own.

The request: a book of BATCH contact hashes, 5% of them registered users', sent as a free
re-sync, exactly as the SDK sends it: ``onnet.Client.discover`` runs twice on the book and
the request of its second call (the re-sync) is recorded and replayed. With
ONNET_H2LOAD_FORM=first, the request of its first call is replayed instead: a first sync,
with no token, whose every hash is charged (the server's quota never runs out).

Success is checked, not assumed: h2load counts HTTP 2xx, but a failed gRPC call is an HTTP
200 with a grpc-status trailer. So before the timed rounds one real gRPC call sends the very
bytes of the file to each server and checks the answer, and around every round onnet's
Prometheus counter ``onnet_calls_total{method, code}`` must grow by exactly h2load's
successful requests, with code OK only.

Each round runs h2load against onnet, then the no-op (then the Ceiling), for about
ROUND_SECONDS each, and the next round in the opposite order: on a shared machine whose
speed drifts over seconds, two rounds then give onnet and the Ceiling the same mean
position, and the drift cancels out of their ratio. The server's CPU (user and system,
/proc/PID/stat) is read around each h2load run, so the CPU per request covers the run's
whole window.

Smoke size (the test suite): 200 users, 100 hashes a call, 200 requests a server, one round;
only checks that the harness works. Full (`make bench`, i.e. ONNET_BENCH_USERS set): 20,000
users, 1,000 hashes a call, ROUNDS rounds (ONNET_H2LOAD_ROUNDS, default 3) of
ROUND_SECONDS (ONNET_H2LOAD_SECONDS, default 10) per server. ONNET_H2LOAD_USERS overrides
the population. The figures are printed (run with -s); nothing about speed is asserted.
"""

from __future__ import annotations

import datetime
import os
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

import onnet
from bench.grpc_frames import frame, unframe
from bench.h2load_runner import (
    H2loadMissing,
    H2loadResult,
    ensure_h2load,
    h2load_command,
    h2load_version,
    run_h2load,
)
from onnet.v1 import discovery_pb2
from onnet_server.loadtest.population import registered_number, unregistered_number
from onnet_server.loadtest.registration import register_population
from onnet_server.loadtest.server_cpu import ProcessCpu
from tests.servers import REPO, free_port, server_process

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
USERS = int(os.environ.get("ONNET_H2LOAD_USERS", "0")) or (20_000 if FULL else 200)
BATCH = 1_000 if FULL else 100
MATCH_SHARE = 0.05
ROUNDS = int(os.environ.get("ONNET_H2LOAD_ROUNDS", "3")) if FULL else 1
ROUND_SECONDS = float(os.environ.get("ONNET_H2LOAD_SECONDS", "10"))
FORM = os.environ.get("ONNET_H2LOAD_FORM", "resync")
if FORM not in ("resync", "first"):
    raise ValueError(f"ONNET_H2LOAD_FORM must be resync or first, not {FORM!r}")
SMOKE_REQUESTS = 200
WARMUP_SECONDS = 2.0
CLIENTS = 4
STREAMS = 16
DISCOVER = "/onnet.v1.Discovery/Discover"
CEILING = "/onnet.v1.Bench/Ceiling"

ONNET_ENV = {
    "ONNET_QUOTA_NEW_NUMBERS": str(10**9),
    "ONNET_ACCOUNT_CALLS": "0",
    "ONNET_ACCOUNT_CONCURRENT_CALLS": "0",
}


@dataclass
class Target:
    """One server under load: where, which method, whose CPU, and how to check its calls."""

    name: str
    port: int
    pid: int
    path: str
    body: Path
    calls: Callable[[], dict[str, float]] | None
    """Reads the server's answered calls of ``path`` by status code; None: no metrics."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@dataclass
class Measured:
    """One h2load run against one server."""

    h2load: H2loadResult
    server_cpu: float
    h2load_cpu: float
    loop_cpu: float
    """CPU seconds of the server's main thread, its event loop: the bound of a server whose
    loop is busy all the time, and, unlike requests/s, blind to the time a shared machine's
    other guests take."""

    @property
    def cpu_per_request(self) -> float:
        return self.server_cpu / max(self.h2load.succeeded, 1)

    @property
    def loop_cpu_per_request(self) -> float:
        return self.loop_cpu / max(self.h2load.succeeded, 1)


# Each round is three servers' runs of ROUND_SECONDS, plus warm-ups and set-up.
@pytest.mark.timeout(max(120.0, 180 + 4 * ROUNDS * ROUND_SECONDS) if FULL else 120.0)
def test_discover_under_h2load(tmp_path: Path) -> None:
    try:
        h2load = ensure_h2load()
    except H2loadMissing as exc:
        pytest.skip(str(exc))
    metrics_port = free_port()
    args = ("--dev", "--bench-ceiling", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    with server_process(ONNET_ENV, *args, secure=False) as onnet_server:
        registered = register_population(onnet_server.target, USERS)
        assert registered.imported == USERS, registered
        (form, request), expected = sdk_request(onnet_server.target)
        body = tmp_path / "request.bin"
        body.write_bytes(frame(request))
        answer = checked_call(onnet_server.port, DISCOVER, body, expected)
        response = tmp_path / "response.bin"
        response.write_bytes(answer)
        checked_call(onnet_server.port, CEILING, body, None)

        def calls_of(path: str) -> Callable[[], dict[str, float]]:
            return lambda: scrape_calls(metrics_port, path)

        targets = [
            Target(
                "onnet", onnet_server.port, onnet_server.process.pid, DISCOVER, body,
                calls_of(DISCOVER),
            ),
        ]  # fmt: skip
        with noop_server(response) as (noop_port, noop_pid):
            replayed = checked_call(noop_port, DISCOVER, body, expected)
            assert replayed == answer
            targets.append(Target("no-op", noop_port, noop_pid, DISCOVER, body, None))
            if FULL:
                targets.append(
                    Target(
                        "onnet Bench/Ceiling", onnet_server.port, onnet_server.process.pid,
                        CEILING, body, calls_of(CEILING),
                    )
                )  # fmt: skip
            print_header(h2load, form, request, answer, targets[0])
            results = measure_rounds(h2load, targets, tmp_path)
        assert "Traceback" not in onnet_server.log(), onnet_server.log()[-3000:]
    print_summary(results)


def sdk_request(address: str) -> tuple[tuple[str, bytes], int]:
    """The request the SDK sends for the book in FORM: its re-sync, or its first sync.

    Returns a description of its form (the fields it sets) and the message, and how many of
    the book's numbers are registered (the matches every answer must hold).
    """
    rng = random.Random("onnet-bench-h2load")
    registered = round(BATCH * MATCH_SHARE)
    numbers = [registered_number(i) for i in rng.sample(range(USERS), registered)]
    numbers += [unregistered_number(i) for i in rng.sample(range(10_000_000), BATCH - registered)]
    rng.shuffle(numbers)
    sent: list[discovery_pb2.DiscoverRequest] = []
    with onnet.Client(address) as client:
        original = client.calls.discover

        def recording(
            request: discovery_pb2.DiscoverRequest, *, timeout: float | None = None
        ) -> discovery_pb2.DiscoverResponse:
            sent.append(request)
            return original(request, timeout=timeout)

        client.calls.discover = recording  # type: ignore[method-assign]
        first = client.discover(numbers)
        assert len(first.matches) == registered, "the first (paying) sync"
        token = client.sync_state.token
        if FORM == "first":
            assert len(sent) == 1, "the SDK's first sync is one call"
            assert not sent[0].token, "a first sync has no token"
            return _described("the SDK's first sync (charged)", sent[0]), registered
        sent.clear()
        again = client.discover(numbers)
        assert len(again.matches) == registered, "the re-sync"
    if len(sent) == 1 and sent[0].token:
        request, form = sent[0], "the SDK's re-sync (onnet.Client.discover's 2nd call)"
    else:
        # The SDK re-synced some other way (not one Discover with a token): the form the
        # load harness sends instead, the book with the token and the book as its previous.
        assert token, "the first sync's answer carries no re-sync token"
        hashes = b"".join(onnet.contact_hash(number) for number in numbers)
        request = discovery_pb2.DiscoverRequest(hashes=hashes, token=token, previous_hashes=hashes)
        form = (
            f"hashes + token + previous_hashes, built here (the SDK's re-sync made {len(sent)} "
            "Discover calls, or one without a token)"
        )
    return _described(form, request), registered


def _described(form: str, request: discovery_pb2.DiscoverRequest) -> tuple[str, bytes]:
    """``form`` followed by the fields ``request`` sets, and the serialized request."""
    fields = ", ".join(
        f"{field.name} {len(value) if isinstance(value, bytes | str) else value!r}"
        f"{' B' if isinstance(value, bytes | str) else ''}"
        for field, value in request.ListFields()
    )
    return f"{form}: {fields}", request.SerializeToString()


def checked_call(port: int, path: str, body: Path, matches: int | None) -> bytes:
    """One real gRPC call sending the message framed in ``body``; its answer's bytes.

    The answer must parse as a DiscoverResponse, with ``matches`` matches unless None.
    """
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)  # bytes
        answer: bytes = call(unframe(body.read_bytes()), timeout=10)
    parsed = discovery_pb2.DiscoverResponse.FromString(answer)
    if matches is not None:
        assert len(parsed.matched_indexes) == matches == len(parsed.user_ids)
        assert parsed.token, "a re-sync's answer carries the next token"
    return answer


@contextmanager
def noop_server(response: Path) -> Iterator[tuple[int, int]]:
    """bench/noop_server.py as a child process answering ``response``: (port, pid)."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.noop_server"),
            *("--listen", "127.0.0.1:0", "--response", str(response)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"noop serving on 127\.0\.0\.1:(\d+)", line)
        if match is None:
            raise RuntimeError(f"the no-op server did not start: {line!r}")
        yield int(match.group(1)), process.pid
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


_CALLS = re.compile(r"^onnet_calls_total\{([^}]*)\} ([0-9.e+]+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape_calls(metrics_port: int, path: str) -> dict[str, float]:
    """onnet's answered calls of ``path`` (``/onnet.v1.Discovery/Discover``) by status code."""
    service, method = path.lstrip("/").split("/")
    label = f"{service.rsplit('.', 1)[-1]}/{method}"
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for labels, value in _CALLS.findall(text):
        found = dict(_LABEL.findall(labels))
        if found.get("method") == label:
            counts[found["code"]] = counts.get(found["code"], 0.0) + float(value)
    return counts


def measure(h2load: str, target: Target, requests: int, log: Path) -> Measured:
    """One h2load run of ``requests`` against ``target``; every call must have succeeded."""
    before_calls = target.calls() if target.calls else {}
    cpu, loop = ProcessCpu(target.pid), ProcessCpu(target.pid, thread=target.pid)
    before_cpu, before_loop, before_h2load = cpu.seconds(), loop.seconds(), children_cpu()
    result = run_h2load(
        h2load, target.url, target.body, requests=requests, clients=CLIENTS, streams=STREAMS,
        log_file=log, timeout=max(120.0, 10 * ROUND_SECONDS),
    )  # fmt: skip
    server_cpu, h2load_cpu = cpu.seconds() - before_cpu, children_cpu() - before_h2load
    loop_cpu = loop.seconds() - before_loop
    assert result.all_succeeded, f"{target.name}: not every request got HTTP 2xx: {result}"
    assert len(result.latencies) == result.succeeded, "h2load's log misses requests"
    if target.calls is not None:
        after = target.calls()
        grown = {code: after.get(code, 0.0) - before_calls.get(code, 0.0) for code in after}
        failed = {code: n for code, n in grown.items() if code != "OK" and n}
        assert not failed, f"{target.name}: calls failed under load: {failed}"
        assert grown.get("OK", 0.0) == result.succeeded, (
            f"{target.name}: the server answered {grown.get('OK', 0.0):.0f} calls OK, "
            f"h2load counted {result.succeeded}"
        )
    return Measured(result, server_cpu, h2load_cpu, loop_cpu)


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (h2load, once it has exited)."""
    usage = os.times()
    return usage.children_user + usage.children_system


def measure_rounds(h2load: str, targets: list[Target], tmp: Path) -> dict[str, list[Measured]]:
    """A warm-up per server (which sizes the rounds), then ROUNDS alternating rounds."""
    sizes = {}
    for target in targets:
        warm = measure(h2load, target, 500 if FULL else 50, tmp / "warm.log")
        if FULL:  # a longer warm-up (caches, allocator, connection windows), which sizes the
            # rounds better than the first, short one
            rate = warm.h2load.requests_per_second
            longer = max(500, round(rate * WARMUP_SECONDS))
            warm = measure(h2load, target, longer, tmp / "warm.log")
        rate = warm.h2load.requests_per_second
        sizes[target.name] = max(1_000, round(rate * ROUND_SECONDS)) if FULL else SMOKE_REQUESTS
    results: dict[str, list[Measured]] = {target.name: [] for target in targets}
    for number in range(1, ROUNDS + 1):
        for target in targets if number % 2 else targets[::-1]:
            done = measure(h2load, target, sizes[target.name], tmp / "round.log")
            results[target.name].append(done)
            print_round(number, target.name, done)
        onnet_rate = results["onnet"][-1].h2load.requests_per_second
        noop_rate = results["no-op"][-1].h2load.requests_per_second
        print(f"  round {number}: onnet/no-op {onnet_rate / noop_rate:.2f}")
    return results


def print_header(h2load: str, form: str, request: bytes, answer: bytes, onnet: Target) -> None:
    command = h2load_command(
        "h2load", onnet.url, Path("request.bin"), requests=0, clients=CLIENTS,
        streams=STREAMS, log_file=Path("requests.log"),
    )  # fmt: skip
    command[2] = "N"
    print(
        f"\nbench_h2load: {datetime.date.today()}, {cpu_model()}, {os.cpu_count()} CPUs, "
        f"{h2load_version(h2load)}, grpcio {grpc.__version__}, Python "
        f"{sys.version.split()[0]}"
        f"\n  {USERS:,} users, {BATCH:,} hashes a call ({MATCH_SHARE:.0%} registered), "
        f"h2load -c {CLIENTS} -m {STREAMS} -t 1, {ROUNDS} round(s)"
        f"\n  request: {len(request):,} B + 5 B prefix, {form}"
        f"\n  answer: {len(answer):,} B (the no-op sends these bytes)"
        f"\n  each run: {shlex.join(command)}"
    )


def print_round(number: int, name: str, done: Measured) -> None:
    result = done.h2load
    print(
        f"  round {number} {name:>19}: {result.requests_per_second:8,.0f} req/s "
        f"({result.succeeded:,} in {result.seconds:.2f} s), p50 {result.median * 1000:6.2f} ms, "
        f"p99 {result.p99 * 1000:6.2f} ms, server CPU {done.cpu_per_request * 1000:.3f} ms/req "
        f"({done.server_cpu / result.seconds:.2f} cores; its loop "
        f"{done.loop_cpu_per_request * 1000:.3f}), h2load "
        f"{done.h2load_cpu / result.seconds:.2f} cores"
    )


def compared(runs: list[Measured], against: list[Measured]) -> tuple[list[float], list[float]]:
    """Round by round: requests/s of ``runs`` as a share of ``against``'s, and the server
    CPU seconds per request above ``against``'s."""
    pairs = list(zip(runs, against, strict=True))
    return (
        [a.h2load.requests_per_second / b.h2load.requests_per_second for a, b in pairs],
        [a.cpu_per_request - b.cpu_per_request for a, b in pairs],
    )


def print_summary(results: dict[str, list[Measured]]) -> None:
    def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
        low, mid, high = min(values), statistics.median(values), max(values)
        return (
            f"{mid * scale:,.{digits}f} ({low * scale:,.{digits}f} to {high * scale:,.{digits}f})"
        )

    print("\nsummary (median of rounds, range in parentheses):")
    for name, runs in results.items():
        rates = [run.h2load.requests_per_second for run in runs]
        cpu = [run.cpu_per_request for run in runs]
        p50 = [run.h2load.median for run in runs]
        p99 = [run.h2load.p99 for run in runs]
        print(
            f"  {name:>19}: {spread(rates)} req/s, server CPU {spread(cpu, 1000, 3)} ms/req, "
            f"p50 {spread(p50, 1000, 2)} ms, p99 {spread(p99, 1000, 2)} ms"
        )
    onnet, noop = results["onnet"], results["no-op"]
    ratios, extra = compared(onnet, noop)
    print(
        f"  onnet/no-op requests/s: {spread(ratios, 1, 2)} (target: at least 0.85)"
        f"\n  onnet's server CPU per request above the no-op's: {spread(extra, 1000, 3)} ms "
        "(target: at most 0.1 ms)"
    )
    ceiling = results.get("onnet Bench/Ceiling")
    if ceiling:
        framework, above = compared(ceiling, noop)
        print(
            f"  onnet's Bench/Ceiling (no work, onnet's interceptors and parsing) over the no-op: "
            f"{spread(framework, 1, 2)} of its requests/s, {spread(above, 1000, 3)} ms more "
            "server CPU per request"
        )
        # Issue 12's own target: Discover against onnet's Ceiling, round by round.
        of_ceiling, over = compared(onnet, ceiling)
        print(
            f"  Discover/Ceiling requests/s: {spread(of_ceiling, 1, 2)} (target: at least 0.85);"
            f" Discover's server CPU per request above the Ceiling's: {spread(over, 1000, 3)} ms"
            " (target: at most 0.1 ms)"
        )
        # The loop is the bound: the requests/s its CPU allows, blind to other guests' time.
        loop_share = [
            b.loop_cpu_per_request / a.loop_cpu_per_request
            for a, b in zip(onnet, ceiling, strict=True)
        ]
        loop_over = [
            a.loop_cpu_per_request - b.loop_cpu_per_request
            for a, b in zip(onnet, ceiling, strict=True)
        ]
        print(
            f"  the event loop's CPU per request, the Ceiling's over Discover's: "
            f"{spread(loop_share, 1, 2)}; Discover's above the Ceiling's: "
            f"{spread(loop_over, 1000, 3)} ms"
        )


def cpu_model() -> str:
    """The CPU's model name (what lscpu prints as "Model name")."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown CPU"
