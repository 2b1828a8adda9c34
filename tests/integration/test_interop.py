"""A client built from proto/ and docs/protocol.md alone, without the onnet SDK.

It writes the protobuf wire format by hand and hashes with hashlib, as a developer of a
mobile SDK in another language would, so the contract cannot silently depend on the SDK.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import grpc
import pytest

from tests.security import account_metadata, register_account, secure_channel, service_metadata
from tests.servers import ThreadedServer


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def parse(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message; varints and length-delimited only."""
    i = 0

    def read_varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = message[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(message):
        key = read_varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            yield number, read_varint()
        elif wire_type == 2:
            length = read_varint()
            yield number, message[i : i + length]
            i += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")


def contact_hash(e164: str) -> bytes:
    return hashlib.sha256(b"onnet/contact/v1:" + e164.encode("ascii")).digest()


def call(channel: grpc.Channel, method: str, request: bytes) -> bytes:
    invoke: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
    metadata = service_metadata() if "/onnet.v1.Registry/" in method else account_metadata()
    return invoke(request, timeout=5, metadata=metadata)  # no serializers: raw bytes both ways


def as_bytes(value: int | bytes) -> bytes:
    assert isinstance(value, bytes)
    return value


def test_register_discover_and_errors_over_the_raw_wire(server: ThreadedServer) -> None:
    with secure_channel(server.target) as channel:
        register = field(1, b"alice") + field(2, b"+14155550100") + varint(3 << 3) + varint(1)
        assert call(channel, "/onnet.v1.Registry/Register", register) == b""  # all defaults
        register_account(server.target)  # the discovering account

        config = dict(parse(call(channel, "/onnet.v1.Discovery/GetConfig", b"")))
        assert config[1] == 1  # contact_hash_version
        assert config[2] == server.config.max_batch

        hashes = b"".join(contact_hash(n) for n in ["+442079460958", "+14155550100"])
        answer = list(parse(call(channel, "/onnet.v1.Discovery/Discover", field(1, hashes))))
        # matched_indexes is packed (wire type 2) by proto3 default; user_ids is field 2;
        # the re-sync token is field 3 (45 bytes).
        assert answer[:2] == [(1, varint(1)), (2, b"alice")]
        assert answer[2][0] == 3
        assert len(as_bytes(answer[2][1])) == 45

        with pytest.raises(grpc.RpcError) as caught:
            call(channel, "/onnet.v1.Discovery/Discover", field(1, hashes[:40]))
        error = caught.value
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("hashes: ")
        trailers = dict(error.trailing_metadata() or ())
        status = dict(parse(as_bytes(trailers["grpc-status-details-bin"])))  # google.rpc.Status
        assert status[1] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        detail = dict(parse(as_bytes(status[3])))  # google.protobuf.Any
        assert detail[1] == b"type.googleapis.com/google.rpc.BadRequest"
        bad_request = dict(parse(as_bytes(detail[2])))
        violation = dict(parse(as_bytes(bad_request[1])))  # field_violations[0]
        assert violation[1] == b"hashes"

        health = dict(parse(call(channel, "/grpc.health.v1.Health/Check", b"")))
        assert health[1] == 1  # SERVING


@pytest.mark.parametrize(
    ("method", "request_bytes"),
    [
        ("/onnet.v1.Registry/Register", field(1, b"\xff\xfe") + field(2, b"+14155550100")),
        ("/onnet.v1.Discovery/Discover", b"\x0a\x40" + b"x" * 10),  # truncated field
    ],
)
def test_bytes_that_are_not_the_message_get_invalid_argument(
    server: ThreadedServer, method: str, request_bytes: bytes
) -> None:
    register_account(server.target)
    with secure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            call(channel, method, request_bytes)
        error = caught.value
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "request: malformed request message"
        config = dict(parse(call(channel, "/onnet.v1.Discovery/GetConfig", b"")))
        assert config[1] == 1  # still serving
