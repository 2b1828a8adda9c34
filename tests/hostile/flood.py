"""A flooding account, as its own process: ``python -m tests.hostile.flood TARGET SECONDS``.

Its threads call BlindEvaluate (10,000 valid elements a call) and FetchBuckets back to back
with the account credential in ONNET_TOKEN, over plaintext, and print how each call ended.
It runs in a process of its own so that its threads compete with the server for the
machine, as a real attacker's would, and not with the victim's client for one GIL.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import sys
import threading
import time
from typing import TypeAlias

import grpc

from onnet.protocol import oprf
from onnet.v1 import discovery_pb2

ELEMENTS = 10_000
Call: TypeAlias = "grpc.UnaryUnaryMultiCallable[bytes, bytes]"


def valid_elements(count: int) -> bytes:
    """``count`` distinct canonical, non-identity ristretto255 elements."""
    return b"".join(oprf.blind(secrets.token_bytes(16))[1] for _ in range(count))


def flood(target: str, token: str, seconds: float, threads: int) -> dict[str, int]:
    """Call from ``threads`` threads for ``seconds``; count the outcomes by status name."""
    metadata = (("authorization", f"Bearer {token}"),)
    channel = grpc.insecure_channel(target)
    evaluate: Call = channel.unary_unary("/onnet.v1.Discovery/BlindEvaluate")
    fetch: Call = channel.unary_unary("/onnet.v1.Discovery/FetchBuckets")
    config_call: grpc.UnaryUnaryMultiCallable[bytes, discovery_pb2.DiscoveryConfig] = (
        channel.unary_unary(
            "/onnet.v1.Discovery/GetConfig",
            response_deserializer=discovery_pb2.DiscoveryConfig.FromString,
        )
    )
    config = config_call(b"", metadata=metadata, timeout=10)
    bits = config.bucket_prefix_bits
    count = min(config.max_buckets, 1 << bits)
    fetch_request = discovery_pb2.FetchBucketsRequest(
        prefix_bits=bits, buckets=list(range(count))
    ).SerializeToString()
    evaluate_request = discovery_pb2.BlindEvaluateRequest(
        blinded_elements=valid_elements(ELEMENTS)
    ).SerializeToString()
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(call: Call, request: bytes) -> None:
        while time.monotonic() < deadline:
            try:
                call(request, metadata=metadata, timeout=10)
                name = "OK"
            except grpc.RpcError as error:
                name = error.code().name
            with lock:
                outcomes[name] += 1

    workers = [
        threading.Thread(
            target=run, args=(evaluate, evaluate_request) if i % 2 else (fetch, fetch_request)
        )
        for i in range(threads)
    ]
    print("flooding", flush=True)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    channel.close()
    return dict(outcomes)


if __name__ == "__main__":
    result = flood(sys.argv[1], os.environ["ONNET_TOKEN"], float(sys.argv[2]), 4)
    print(json.dumps(result), flush=True)
