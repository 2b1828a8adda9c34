"""Error details' conformance vectors (tests/vectors/errors_v1.json), from a real server.

Each case is a request that a server refuses and the exact `grpc-status-details-bin`
trailer it answers: a `google.rpc.Status` whose `BadRequest` detail names the field, as
docs/protocol.md's "Errors" says. The test sends each request to a real server and holds its
trailer to the file byte for byte, and decodes it with the googleapis protos.
`python -m tests.integration.test_error_vectors` writes the file again (it starts a server).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

import onnet
from onnet.v1 import discovery_pb2, discovery_pb2_grpc
from tests.security import (
    account_metadata,
    discovery_client,
    register_account,
    secure_channel,
)
from tests.servers import ThreadedServer, fresh_config
from tests.vectors import VECTORS, load

_NOT_AN_ELEMENT = bytes([0xFF]) * 32  # not a canonical ristretto255 encoding
_GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")

REQUESTS: list[tuple[str, str, Any]] = [
    ("a hash of 33 bytes", "Discover", discovery_pb2.DiscoverRequest(hashes=bytes(33))),
    ("no hashes at all", "Discover", discovery_pb2.DiscoverRequest(hashes=b"")),
    (
        "the second of two blinded elements is not a group element",
        "BlindEvaluate",
        discovery_pb2.BlindEvaluateRequest(blinded_elements=_GENERATOR + _NOT_AN_ELEMENT),
    ),
    (
        "buckets named by the wrong number of bits",
        "FetchBuckets",
        discovery_pb2.FetchBucketsRequest(prefix_bits=20, buckets=[1]),
    ),
]


def refusals(target: str) -> list[dict[str, Any]]:
    """What the server at ``target`` answers to each of REQUESTS."""
    stub = discovery_pb2_grpc.DiscoveryStub(secure_channel(target))
    found: list[dict[str, Any]] = []
    for name, method, request in REQUESTS:
        try:
            getattr(stub, method)(request, metadata=account_metadata(), timeout=10)
        except grpc.RpcError as error:
            if not isinstance(error, grpc.Call):  # a failed blocking call is both
                raise
            call = error
            details = next(
                value
                for key, value in call.trailing_metadata() or ()
                if key == "grpc-status-details-bin" and isinstance(value, bytes)
            )
            status = status_pb2.Status.FromString(details)
            bad = error_details_pb2.BadRequest()
            assert status.details[0].Unpack(bad)
            found.append({
                "name": name,
                "method": f"onnet.v1.Discovery/{method}",
                "request": request.SerializeToString().hex(),
                "code": call.code().name,
                "status_details_bin": details.hex(),
                "message": status.message,
                "field": bad.field_violations[0].field,
                "description": bad.field_violations[0].description,
            })  # fmt: skip
        else:
            raise AssertionError(f"{name}: the server accepted it")
    return found


def vectors(target: str) -> dict[str, Any]:
    return {
        "source": (
            "tests/integration/test_error_vectors.py: each request sent to a real onnet "
            "server; its grpc-status-details-bin trailer (a google.rpc.Status with a "
            "google.rpc.BadRequest detail) as it arrived"
        ),
        "cases": refusals(target),
    }


def test_the_sdk_reads_field_and_reason_from_the_details(server: ThreadedServer) -> None:
    register_account(server.target)
    methods = {
        "Discover": "discover",
        "BlindEvaluate": "blind_evaluate",
        "FetchBuckets": "fetch_buckets",
    }
    published = {case["name"]: case for case in load("errors_v1.json")["cases"]}
    with discovery_client(server.target) as client:
        for name, method, request in REQUESTS:
            with pytest.raises(onnet.InvalidArgumentError) as refused:
                getattr(client.calls, methods[method])(request)
            case = published[name]
            assert (refused.value.field, refused.value.reason) == (case["field"], case["message"])


def test_refusals_carry_the_published_details(server: ThreadedServer) -> None:
    register_account(server.target)
    published = load("errors_v1.json")
    assert vectors(server.target) == published
    for case in published["cases"]:
        status = status_pb2.Status.FromString(bytes.fromhex(case["status_details_bin"]))
        assert status.code == grpc.StatusCode[case["code"]].value[0]
        assert status.message == f"{case['field']}: {case['description']}"


if __name__ == "__main__":
    running = ThreadedServer(fresh_config()).start()
    try:
        register_account(running.target)
        text = json.dumps(vectors(running.target), indent=1) + "\n"
        (VECTORS / "errors_v1.json").write_text(text)
    finally:
        running.stop()
