"""What a re-sync of an unchanged address book costs: bytes on the wire and token work.

Two views, the same command before and after a change to the re-sync (runs on both):

- the wire: the real SDK's second ``discover`` of the same book against a real server over
  TLS (default limits: batches of 10,000, 4 MiB messages), every Discover request and
  answer recorded as it leaves or reaches the client; the figure is the serialized
  messages' bytes (gRPC adds 5 bytes a message, HTTP/2 and TLS their own framing). The
  floor: the book's hashes alone, 32 bytes each;
- the server's token work (``ResyncTokens``, in process, one core) for the same re-sync:
  the old form (``renew``: ``previous_hashes`` and ``hashes`` both the book) and, where the
  code has it, the difference form (``renew_difference``: the book once, nothing added or
  removed; then 5 added and 3 removed). The floor: one raw AES-256-ECB pass over two
  16-byte blocks per hash (the keyed value of each hash, which any form must compute).

Full size (``ONNET_BENCH_USERS`` set): books of 1,000 and 10,000 contacts, 200 rounds.
Smoke size (the test suite): 100 and 1,000 contacts, 3 rounds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import onnet
from onnet_server.core.resync import ResyncTokens
from onnet_server.loadtest.population import registered_number
from tests.security import account_metadata, discovery_client, secure_channel
from tests.servers import ThreadedServer, fresh_config

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
SIZES = (1_000, 10_000) if FULL else (100, 1_000)
ROUNDS = 200 if FULL else 3
DISCOVER = "/onnet.v1.Discovery/Discover"
WIRE: dict[int, dict[str, int]] = {}
WORK: dict[int, dict[str, float]] = {}


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """Sizes of the Discover requests and answers that pass the client."""

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.answers: list[int] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        if details.method == DISCOVER:
            self.requests.append(request.ByteSize())
            self.answers.append(outcome.result().ByteSize())
        return outcome


def book_of(size: int) -> list[str]:
    return [registered_number(i) for i in range(size)]


def test_bytes_of_a_resync() -> None:
    server = ThreadedServer(fresh_config(quota_new_numbers=100_000)).start()
    try:
        for size in SIZES:
            recorder = Recorder()
            with (
                discovery_client(server.target) as client,
                secure_channel(server.target) as channel,
            ):
                client.calls = onnet.DiscoveryCalls(
                    grpc.intercept_channel(channel, recorder), metadata=account_metadata()
                )
                book = book_of(size)
                client.discover(book)  # the first sync, which pays
                recorder.requests.clear()
                recorder.answers.clear()
                client.discover(book)
            WIRE[size] = {
                "requests": len(recorder.requests),
                "sent": sum(recorder.requests),
                "received": sum(recorder.answers),
            }
            assert WIRE[size]["sent"] > 32 * size
    finally:
        server.stop()


def per_call(run: Callable[[], object]) -> float:
    """Median seconds of one call of ``run``."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def test_token_work_of_a_resync() -> None:
    tokens = ResyncTokens.from_peppers(os.urandom(32), ttl_seconds=3600)
    for size in SIZES:
        WORK[size] = token_work(tokens, size)


def token_work(tokens: ResyncTokens, size: int) -> dict[str, float]:
    """Median seconds of each form's token work on a book of ``size``, and of the floor."""
    book = b"".join(onnet.contact_hash(e164) for e164 in book_of(size))
    token = tokens.issue("alice", book)
    aes = Cipher(algorithms.AES(os.urandom(32)), modes.ECB())

    def old_form() -> object:
        cost, renewed = tokens.renew("alice", token, book, book)
        assert cost == 0
        return renewed

    def floor() -> object:
        encryptor = aes.encryptor()
        return encryptor.update(book) + encryptor.finalize()

    figures = {"floor": per_call(floor), "old": per_call(old_form)}
    if not hasattr(tokens, "renew_difference"):
        return figures  # the code before the difference form
    added = b"".join(onnet.contact_hash(e164) for e164 in book_of(size + 5)[size:])
    changed, removed = book[3 * 32 :] + added, book[: 3 * 32]

    def difference() -> object:
        cost, renewed = tokens.renew_difference("alice", token, book, b"", b"")
        assert cost == 0
        return renewed

    def changed_difference() -> object:
        cost, renewed = tokens.renew_difference("alice", token, changed, added, removed)
        assert cost == 5
        return renewed

    figures["difference"] = per_call(difference)
    figures["changed"] = per_call(changed_difference)
    return figures


def test_report() -> None:
    """Print the figures of this run."""
    if not FULL:
        pytest.skip("benchmarks run small: `make bench` for figures")
    print("\nRe-sync of an unchanged book: Discover messages through the SDK (second sync)")
    for size, wire in WIRE.items():
        floor = 32 * size
        print(
            f"  {size:,} contacts: {wire['requests']} requests, {wire['sent']:,} bytes sent "
            f"({wire['sent'] / floor:.3f}x the hashes alone, {floor:,}), "
            f"{wire['received']:,} received"
        )
    print("Server token work per re-sync (median, one core):")
    for size, work in WORK.items():
        line = (
            f"  {size:,} hashes: floor (AES over the book) {work['floor'] * 1e6:,.0f} us; "
            f"old form {work['old'] * 1e6:,.0f} us"
        )
        if "difference" in work:
            line += (
                f"; difference form {work['difference'] * 1e6:,.0f} us "
                f"({work['difference'] / work['old']:.2f} of the old), "
                f"with 5 added and 3 removed {work['changed'] * 1e6:,.0f} us"
            )
        print(line)
