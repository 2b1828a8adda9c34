"""Single-number Lookup and Screen, as call routing and screening ask them.

Through the real SDK over TLS to a real server (in this process, on the embedded store with
USERS registered users), one call at a time, measured against the framework ceiling in the
same run: Health.Check on the same channel, a unary call that does no work. The server's
own time is measured too: RoutingService called directly.

Smoke size (the test suite): 1,000 users, 50 calls each. Full (`make bench`): 1,000,000
users, 2,000 calls each.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Callable

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import onnet
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.routing import RoutingService
from onnet_server.loadtest.population import registered_number
from onnet_server.stores.memory import MemoryRegistry
from tests.security import registry_client
from tests.servers import ThreadedServer, fresh_config

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
USERS = int(os.environ.get("ONNET_BENCH_USERS", "0")) or 1_000
CALLS = 2_000 if FULL else 50
RESULTS: dict[str, list[float]] = {}


def latencies(call: Callable[[], object]) -> list[float]:
    for _ in range(min(50, CALLS)):
        call()  # warm the channel and the caches
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return sorted(times)


def percentile(times: list[float], q: float) -> float:
    return times[min(len(times) - 1, int(q * len(times)))]


def test_single_number_lookup_and_screen() -> None:
    config = fresh_config()
    assert config.pepper_hex is not None
    fingerprinter = Fingerprinter(bytes.fromhex(config.pepper_hex))
    store = MemoryRegistry()
    hashes = b"".join(onnet.contact_hash(registered_number(i)) for i in range(USERS))
    fingerprints = fingerprinter.fingerprints(hashes)
    for i in range(USERS):
        store.register_now(f"user-{i}", fingerprints[16 * i : 16 * i + 16], i % 2 == 0)
    routing = RoutingService(store, fingerprinter, 10_000)
    server = ThreadedServer(config, store=store).start()
    try:
        with registry_client(server.target) as registry:
            registry.block("user-7", registered_number(8))
            rng = secrets.SystemRandom()
            asked = [registered_number(rng.randrange(USERS)) for _ in range(CALLS)]
            picks = itertools.cycle(asked)
            health = health_pb2_grpc.HealthStub(registry._channel)
            request = health_pb2.HealthCheckRequest()
            RESULTS["ceiling"] = latencies(lambda: health.Check(request, timeout=5))
            RESULTS["lookup"] = latencies(lambda: registry.lookup([next(picks)]))
            RESULTS["screen"] = latencies(lambda: registry.screen(next(picks), "user-7"))
            assert registry.screen(registered_number(8), "user-7") is onnet.Verdict.BLOCKED
            # Hidden users are routed to.
            assert registry.lookup([registered_number(3)]) == ["user-3"]
            server_picks = itertools.cycle(asked)
            RESULTS["lookup_server"] = latencies(lambda: routing.lookup([next(server_picks)], b""))
            RESULTS["screen_server"] = latencies(
                lambda: routing.screen(next(server_picks), "user-7")
            )
    finally:
        server.stop()


def test_report() -> None:
    """Print the figures of this run."""
    if not FULL:
        pytest.skip("benchmarks run small: `make bench` for figures")
    ceiling = RESULTS["ceiling"]

    def line(name: str, times: list[float]) -> str:
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        rate = len(times) / sum(times)
        return (
            f"\n  {name:<28} p50 {p50 * 1e3:6.3f} ms  p99 {p99 * 1e3:6.3f} ms  "
            f"{rate:8,.0f} calls/s  ({rate / (len(ceiling) / sum(ceiling)):.2f} of the ceiling)"
        )

    print(
        f"\nOne number per call, {USERS:,} users, sequential, TLS, client and server on one box:"
        + line("Health.Check (the ceiling)", ceiling)
        + line("Registry.Lookup", RESULTS["lookup"])
        + line("Registry.Screen", RESULTS["screen"])
        + f"\n  server time (RoutingService, in process): lookup p50 "
        f"{percentile(RESULTS['lookup_server'], 0.5) * 1e6:.1f} us, p99 "
        f"{percentile(RESULTS['lookup_server'], 0.99) * 1e6:.1f} us; screen p50 "
        f"{percentile(RESULTS['screen_server'], 0.5) * 1e6:.1f} us, p99 "
        f"{percentile(RESULTS['screen_server'], 0.99) * 1e6:.1f} us"
    )
