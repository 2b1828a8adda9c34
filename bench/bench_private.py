"""Private discovery against the peer a user would pick instead: OpenMined PSI.

For each registry size, one run measures, on the same sets (bench/psi_peer.py makes them):
onnet's private discovery of 1,000 contacts through a real gRPC server (bytes of every
request and response, and wall time from address book to matches), and OpenMined PSI
(ECDH over P-256, GCS setup message, fpr 1e-9) in its own virtualenv `.venv-psi/` (its
protobuf pin conflicts with onnet's). The suite runs onnet's side once at 2,000 users; the
comparison runs with `make bench` (ONNET_BENCH_USERS set), which creates `.venv-psi/`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

import onnet
from bench.psi_peer import items
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.private.keys import OprfKey, private_entry
from onnet_server.stores.memory import MemoryRegistry
from tests.security import account_metadata, discovery_client
from tests.servers import REPO, ThreadedServer, fresh_config

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
SIZES = [100_000, 1_000_000] if FULL else [2_000]
CONTACTS, MATCHES = 1000, 100
PSI_PYTHON = REPO / ".venv-psi" / "bin" / "python"


class ByteCounter(grpc.UnaryUnaryClientInterceptor):
    """Counts the serialized bytes of every request and response."""

    def __init__(self) -> None:
        self.total = 0

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        self.total += request.ByteSize()
        outcome = continuation(details, request)
        self.total += outcome.result().ByteSize()
        return outcome


def onnet_side(users: int) -> dict[str, float]:
    server_items, client_items = items(users, CONTACTS, MATCHES)
    config = fresh_config()
    assert config.pepper_hex is not None
    pepper = bytes.fromhex(config.pepper_hex)
    fingerprinter = Fingerprinter(pepper)
    key = OprfKey.from_pepper(pepper)
    store = MemoryRegistry()
    for i, e164 in enumerate(server_items):
        fingerprint = fingerprinter.fingerprint(onnet.contact_hash(e164))
        store.register_now(f"user-{i}", fingerprint, True, private_entry(key, e164, f"user-{i}"))
    server = ThreadedServer(config, store=store).start()
    try:
        counter = ByteCounter()
        with discovery_client(server.target) as client:
            client.calls = onnet.DiscoveryCalls(
                grpc.intercept_channel(client._channel, counter), metadata=account_metadata()
            )
            started = time.perf_counter()
            result = client.discover(client_items, private=True)
            elapsed = time.perf_counter() - started
    finally:
        server.stop()
    assert len(result.matches) == MATCHES
    return {"bytes": counter.total, "seconds": elapsed}


def peer_side(users: int) -> dict[str, float]:
    if not PSI_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PSI_PYTHON.parent.parent)], check=True)
        subprocess.run(
            [str(PSI_PYTHON), "-m", "pip", "install", "--quiet", "openmined-psi==2.0.6"],
            check=True,
        )
    output = subprocess.run(
        [str(PSI_PYTHON), str(Path(__file__).with_name("psi_peer.py")),
         str(users), str(CONTACTS), str(MATCHES)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    figures: dict[str, float] = json.loads(output)
    assert figures["found"] == MATCHES
    return figures


@pytest.mark.parametrize("users", SIZES)
def test_private_discovery_against_openmined(users: int) -> None:
    ours = onnet_side(users)
    if not FULL:
        return
    peer = peer_side(users)
    peer_bytes = peer["setup_bytes"] + peer["request_bytes"] + peer["response_bytes"]
    print(
        f"\nprivate discovery of {CONTACTS} contacts ({MATCHES} on-net), {users:,} users:"
        f"\n  onnet:     {ours['bytes'] / 1e6:.2f} MB on the wire,"
        f" {ours['seconds']:.2f} s end to end"
        f"\n  OpenMined: {peer_bytes / 1e6:.2f} MB (setup {peer['setup_bytes'] / 1e6:.2f} MB),"
        f" setup {peer['setup_cpu_s']:.1f} s CPU + online {peer['online_s']:.2f} s"
        f"\n  bytes ratio onnet / OpenMined: {ours['bytes'] / peer_bytes:.2f}"
        f"; time ratio (vs setup + online): "
        f"{ours['seconds'] / (peer['setup_cpu_s'] + peer['online_s']):.2f}"
        f", (vs online only): {ours['seconds'] / peer['online_s']:.2f}"
    )
