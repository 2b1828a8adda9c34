"""What a hostile client costs everyone else: memory under slow streams, a victim's latency.

Both scenarios are the hostile suite's (tests/hostile), measured at full length here, against
a production-style `onnet serve` process (credentials, a pepper, plaintext on loopback):

- memory: 3 connections x 100 unauthenticated streams, each announcing a 4 MiB Discover
  message and sending all of it but 64 bytes, held for 6 s. RSS of the server before, at
  its peak, and 5 s after the streams close; the time a legitimate GetConfig takes meanwhile.
  Targets: growth under 256 MiB, back within 128 MiB, the legitimate call within 2 s.
- fairness: an account with no quota left floods BlindEvaluate (10,000 valid elements a
  call) and FetchBuckets from 4 threads of another process; the median of another
  account's free re-sync (1,000 hashes) alone, then under the flood. Target: within 4x.

The suite runs both scenarios as tests (tests/hostile); this file only prints the figures,
under `make bench`.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.hostile.conftest import (
    plaintext_client,
    production_env,
    rss_bytes,
    timed_get_config,
)
from tests.hostile.fairness import SETTINGS, measure
from tests.hostile.raw_http2 import SlowStreams
from tests.servers import server_process

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
MIB = 1024 * 1024
pytestmark = pytest.mark.skipif(not FULL, reason="the suite runs these as tests/hostile")


def test_memory_under_slow_streams() -> None:
    with server_process(production_env(), secure=False) as server:
        pid = server.process.pid
        with plaintext_client(server.target) as client:
            client.get_config()
            before = rss_bytes(pid)
            attack = SlowStreams(server.port, "/onnet.v1.Discovery/Discover", 3, 100, 4 * MIB)
            attack.start()
            peak = before
            legit: list[float] = []
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                attack.push(0.5)
                peak = max(peak, rss_bytes(pid))
                legit.append(timed_get_config(server.target))
            sent, refused = attack.bytes_sent, attack.refused()
            attack.close()
            time.sleep(5)
            after = rss_bytes(pid)
    print(
        f"\nslow streams: 300 opened, {refused} ended by the server, {sent / MIB:.1f} MiB sent"
        f"\n  RSS {before / MIB:.0f} MiB before, peak +{(peak - before) / MIB:.1f} MiB, "
        f"+{(after - before) / MIB:.1f} MiB 5 s after they closed"
        f"\n  legitimate GetConfig meanwhile: slowest {max(legit) * 1000:.1f} ms "
        f"of {len(legit)}"
    )


def test_victim_latency_under_a_flood() -> None:
    for _ in range(3):
        with server_process(production_env(**SETTINGS), secure=False) as server:
            result = measure(server, rounds=40, flood_seconds=10.0)
        total = sum(result.flood.values())
        print(
            f"\nfairness: victim re-sync {result.alone_ms:.2f} ms alone, "
            f"{result.flooded_ms:.2f} ms flooded ({result.ratio:.2f}x; target 4x); "
            f"flood: {total} calls, {result.flood}"
        )
