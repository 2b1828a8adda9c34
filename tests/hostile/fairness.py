"""Finding 3's scenario, shared by its test and its benchmark: a victim's re-syncs while a
spent account floods BlindEvaluate and FetchBuckets from four threads of another process."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc

import onnet
from onnet.v1 import discovery_pb2
from tests.hostile.conftest import plaintext_registry
from tests.security import security
from tests.servers import REPO, ServerProcess

QUOTA = 1_000
BOOK = 1_000
ACCOUNT_CALLS = 120  # the victim's own calls fit; the flood's do not
SETTINGS = {"ONNET_QUOTA_NEW_NUMBERS": str(QUOTA), "ONNET_ACCOUNT_CALLS": str(ACCOUNT_CALLS)}


@dataclass(frozen=True)
class Fairness:
    """Medians of the victim's re-sync, alone and under the flood, and how the flood ended."""

    alone_ms: float
    flooded_ms: float
    flood: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.flooded_ms / self.alone_ms


def _numbers(start: int, count: int) -> list[str]:
    """Distinct valid US numbers (exchanges 200 and up)."""
    return [
        f"+1650{200 + (start + i) // 10_000:03d}{(start + i) % 10_000:04d}" for i in range(count)
    ]


def _resync_median(
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes], request: bytes, token: str, rounds: int
) -> float:
    metadata = (("authorization", f"Bearer {token}"),)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call(request, metadata=metadata, timeout=30)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(server: ServerProcess, rounds: int = 30, flood_seconds: float = 8.0) -> Fairness:
    """Run the scenario against ``server`` (started with SETTINGS)."""
    with plaintext_registry(server.target) as registry:
        registry.import_users(
            onnet.ImportRow(f"user{i}", number) for i, number in enumerate(_numbers(0, 5_000))
        )
        registry.register("victim", "+12025550101", discoverable=False)
        registry.register("mallory", "+12025550102", discoverable=False)
    victim_token, mallory_token = security().token("victim"), security().token("mallory")
    with onnet.Client(server.target, token=mallory_token) as mallory:
        mallory.discover(_numbers(100_000, QUOTA))  # spends the whole quota
    with onnet.Client(server.target, token=mallory_token) as mallory:
        assert mallory.get_config().quota_remaining == 0
    hashes = b"".join(onnet.contact_hash(n) for n in _numbers(2_500, BOOK))
    with grpc.insecure_channel(server.target) as channel:
        discover: grpc.UnaryUnaryMultiCallable[bytes, discovery_pb2.DiscoverResponse] = (
            channel.unary_unary(
                "/onnet.v1.Discovery/Discover",
                response_deserializer=discovery_pb2.DiscoverResponse.FromString,
            )
        )
        metadata = (("authorization", f"Bearer {victim_token}"),)
        first = discover(
            discovery_pb2.DiscoverRequest(hashes=hashes).SerializeToString(), metadata=metadata
        )
        resync = discovery_pb2.DiscoverRequest(
            hashes=hashes, token=first.token, previous_hashes=hashes
        ).SerializeToString()
        raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/onnet.v1.Discovery/Discover"
        )
        alone = _resync_median(raw, resync, victim_token, rounds)
        attacker = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.flood", server.target, str(flood_seconds)],
            cwd=REPO,
            env={**os.environ, "ONNET_TOKEN": mallory_token},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert attacker.stdout is not None
            assert attacker.stdout.readline().strip() == "flooding"
            time.sleep(0.5)  # let the flood reach its pace
            flooded = _resync_median(raw, resync, victim_token, rounds)
            outcome = attacker.stdout.readline()
            attacker.wait(flood_seconds + 30)
        finally:
            if attacker.poll() is None:
                attacker.kill()
                attacker.wait()
    return Fairness(alone, flooded, json.loads(outcome))


__all__ = ["SETTINGS", "Fairness", "measure"]
