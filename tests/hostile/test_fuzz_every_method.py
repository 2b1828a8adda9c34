"""Finding 8: fuzzed bytes to every method of every served service get a deliberate answer.

An `onnet serve` process (TLS, real credentials, the bench ceiling served) receives, for
every method of every service it lists through reflection, with a credential of the right
kind and in the method's own call shape (one message, or a stream of several): random
bytes, truncated valid messages, fields of the wrong wire type, huge and overlong varints,
unknown fields, empty messages, and messages over the method's limit and over the
transport's. A deterministic corpus covers each of these once; hypothesis adds generated
messages (built from the method's own descriptor) and mutations of them.

Every answer must be OK or a deliberate refusal, never UNKNOWN, INTERNAL or UNIMPLEMENTED;
an INVALID_ARGUMENT names its field before a colon; the server still answers a normal call
afterwards; and its whole log, read once it has stopped, holds no traceback and no ERROR.
The methods come from the descriptors, so a method added later is fuzzed without anyone
remembering to add it here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnet.v1 import bench_pb2, discovery_pb2, registry_pb2
from onnet_server.server import request_limits
from tests.security import (
    account_metadata,
    register_account,
    secure_channel,
    service_metadata,
)
from tests.servers import ServerProcess, fresh_config, server_process

Metadata = tuple[tuple[str, str], ...]

SERVICES: dict[str, tuple[ServiceDescriptor, Callable[[], Metadata]]] = {
    service.full_name: (service, credential)
    for service, credential in (
        (discovery_pb2.DESCRIPTOR.services_by_name["Discovery"], account_metadata),
        (bench_pb2.DESCRIPTOR.services_by_name["Bench"], account_metadata),
        (registry_pb2.DESCRIPTOR.services_by_name["Registry"], service_metadata),
        (health_pb2.DESCRIPTOR.services_by_name["Health"], lambda: ()),
        (reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"], lambda: ()),
    )
}
"""Every service the server lists, and the credential a caller of it holds."""

METHODS = [method for service, _ in SERVICES.values() for method in service.methods]
IDS = [f"{method.containing_service.name}/{method.name}" for method in METHODS]

MAX_BATCH = 1000
TRANSPORT_LIMIT = 128 * 1024
# A small batch and transport limit keep the oversized messages cheap; a quota that does
# not run out lets fuzzed Discover calls reach the checks behind it.
SERVER_ENV = {
    "ONNET_BENCH_CEILING": "1",
    "ONNET_MAX_BATCH": str(MAX_BATCH),
    "ONNET_MAX_MESSAGE_BYTES": str(TRANSPORT_LIMIT),
    "ONNET_QUOTA_NEW_NUMBERS": str(10**9),
}

DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
}
"""The answers a server gives on purpose. A watch has no end of its own: its deadline is."""

FIELD_AND_REASON = re.compile(r"[A-Za-z_][\w.\[\]]*: \S")
BAD_LOG_LINE = re.compile(r"Traceback|\b(ERROR|CRITICAL)\b|^E\d{4} ")  # the last: gRPC's C core

CALL_TIMEOUT = 10.0
WATCH_TIMEOUT = 2.0
EXAMPLES = 40

RISTRETTO_BASE = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
STRINGS = [
    "",
    "+14155550100",
    "+442079460958",
    "+1",
    "+99912345678",
    "0",
    "fuzz-user",
    "x" * 64,
    "x" * 65,
    "\x00",
    "é",
    "onnet.v1.Discovery",
    "onnet.v1.DiscoverRequest",
    "onnet/v1/discovery.proto",
    "grpc.health.v1.Health",
    "google.protobuf.FileOptions",
]
"""Strings that reach further than random text: numbers, user ids, names the server knows."""

SEEDS: dict[str, Message] = {
    "/onnet.v1.Discovery/Discover": discovery_pb2.DiscoverRequest(hashes=bytes(64)),
    "/onnet.v1.Bench/Ceiling": discovery_pb2.DiscoverRequest(hashes=bytes(64)),
    "/onnet.v1.Discovery/BlindEvaluate": discovery_pb2.BlindEvaluateRequest(
        blinded_elements=RISTRETTO_BASE
    ),
    "/onnet.v1.Discovery/FetchBuckets": discovery_pb2.FetchBucketsRequest(
        prefix_bits=8, buckets=[0, 1]
    ),
    "/onnet.v1.Registry/Register": registry_pb2.RegisterRequest(
        user_id="fuzz-user", e164="+14155550100", discoverable=True
    ),
    "/onnet.v1.Registry/Unregister": registry_pb2.UnregisterRequest(user_id="fuzz-user"),
    "/onnet.v1.Registry/ImportUsers": registry_pb2.ImportBatch(
        rows=[registry_pb2.RegisterRequest(user_id="fuzz-user", e164="+14155550100")]
    ),
    "/onnet.v1.Registry/Block": registry_pb2.BlockRequest(user_id="fuzz-user", e164="+14155550101"),
    "/onnet.v1.Registry/Unblock": registry_pb2.BlockRequest(
        user_id="fuzz-user", e164="+14155550101"
    ),
    "/onnet.v1.Registry/Lookup": registry_pb2.LookupRequest(e164=["+14155550100"]),
    "/onnet.v1.Registry/Screen": registry_pb2.ScreenRequest(
        caller_e164="+14155550101", callee_user_id="fuzz-user"
    ),
    "/grpc.health.v1.Health/Check": health_pb2.HealthCheckRequest(service="onnet.v1.Discovery"),
    "/grpc.health.v1.Health/Watch": health_pb2.HealthCheckRequest(service="onnet.v1.Discovery"),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": (
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="onnet.v1.Discovery")
    ),
}
"""A valid request of each method that does real work: mutations of it reach deep."""

# Wire types (protobuf encoding): varint, 64-bit, length-delimited, group start and end,
# 32-bit; 6 and 7 do not exist.
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_WIRE_OF = {
    FieldDescriptor.TYPE_DOUBLE: I64,
    FieldDescriptor.TYPE_FIXED64: I64,
    FieldDescriptor.TYPE_SFIXED64: I64,
    FieldDescriptor.TYPE_FLOAT: I32,
    FieldDescriptor.TYPE_FIXED32: I32,
    FieldDescriptor.TYPE_SFIXED32: I32,
    FieldDescriptor.TYPE_STRING: LEN,
    FieldDescriptor.TYPE_BYTES: LEN,
    FieldDescriptor.TYPE_MESSAGE: LEN,
}
_INTEGER_RANGES = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
}


def varint(value: int) -> bytes:
    """``value`` (0 to 2**64 - 1) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire: int) -> bytes:
    """The key of field ``number`` with wire type ``wire``."""
    return varint(number << 3 | wire)


def payload(wire: int) -> bytes:
    """A well-formed value of wire type ``wire``, after its key."""
    return {
        VARINT: varint(2**64 - 1),
        I64: bytes(8),
        LEN: varint(3) + b"xyz",
        I32: bytes(4),
    }[wire]


def padded(message: bytes, size: int) -> bytes:
    """``message`` grown to exactly ``size`` bytes with an unknown bytes field (number 15)."""
    room = size - len(message) - 1  # after the field's one-byte key
    body = next(room - n for n in range(1, 11) if len(varint(room - n)) == n)
    return message + key(15, LEN) + varint(body) + bytes(body)


def _wire_type(field: FieldDescriptor) -> int:
    return _WIRE_OF.get(field.type, VARINT)


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


# ---- strategies built from a method's descriptor ----


def _scalars(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if field.message_type is not None:
        return messages_of(field.message_type, depth + 1)
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(STRINGS), st.text(max_size=70))
    if kind == FieldDescriptor.TYPE_BYTES:
        elements = st.one_of(
            st.just(RISTRETTO_BASE), st.just(bytes(32)), st.binary(min_size=32, max_size=32)
        )
        packed = st.lists(elements, min_size=1, max_size=8).map(b"".join)
        return st.one_of(packed, st.binary(max_size=100))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    low, high = _INTEGER_RANGES[kind]  # a type with no strategy fails here, on purpose
    return st.one_of(st.integers(max(low, 0), min(high, 40)), st.integers(low, high))


def _values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.is_repeated:
        return st.lists(_scalars(field, depth), max_size=6)
    return _scalars(field, depth)


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        if field.is_repeated and field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                getattr(message, name).add().CopyFrom(item)
        elif field.is_repeated:
            getattr(message, name).extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def messages_of(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Valid messages of ``descriptor``'s type, any subset of their fields set."""
    if depth > 2:
        return st.just(message_factory.GetMessageClass(descriptor)())
    fields = {field.name: _values(field, depth) for field in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields).map(functools.partial(_build, descriptor))


def _truncations(raw: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, max(len(raw) - 1, 0)).map(lambda end: raw[:end])


def _corruptions(raw: bytes) -> st.SearchStrategy[bytes]:
    """``raw`` with a few bytes replaced or inserted somewhere."""
    spot = st.integers(0, len(raw))
    return st.tuples(spot, st.binary(min_size=1, max_size=4), st.booleans()).map(
        lambda t: raw[: t[0]] + t[1] + raw[t[0] + (len(t[1]) if t[2] else 0) :]
    )


def _odd_fields(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Unknown fields, known fields of the wrong wire type, huge and broken varints."""
    numbers = [field.number for field in descriptor.fields] or [1]
    wrong_types = [
        key(field.number, wire) + payload(wire)
        for field in descriptor.fields
        for wire in (VARINT, I64, LEN, I32)
        if wire != _wire_type(field)
    ]
    known = st.sampled_from(numbers)
    unknown = st.integers(1, 2**29 - 1)
    return st.one_of(
        st.sampled_from(wrong_types) if wrong_types else st.just(b""),
        st.tuples(unknown, st.sampled_from([VARINT, I64, LEN, I32])).map(
            lambda t: key(*t) + payload(t[1])
        ),
        st.tuples(unknown | known, st.integers(0, 2**64 - 1)).map(
            lambda t: key(t[0], VARINT) + varint(t[1])
        ),
        known.map(lambda n: key(n, VARINT) + b"\xff" * 10 + b"\x01"),  # 11 bytes: overlong
        st.tuples(known, st.integers(2**20, 2**64 - 1)).map(
            lambda t: key(t[0], LEN) + varint(t[1]) + b"xy"  # a length past the end
        ),
        st.tuples(known | unknown, st.sampled_from([SGROUP, EGROUP, 6, 7])).map(lambda t: key(*t)),
        st.sampled_from([b"\x00", varint(2**29 << 3)]),  # field numbers 0 and 2**29
    )


@functools.cache
def fuzzed_messages(method: MethodDescriptor) -> st.SearchStrategy[bytes]:
    """One request message of ``method``: valid, mutated, or random bytes."""
    descriptor = method.input_type
    seed = SEEDS.get(_path(method), message_factory.GetMessageClass(descriptor)())
    valid = st.one_of(st.just(seed), messages_of(descriptor)).map(
        lambda message: message.SerializeToString()
    )
    return st.one_of(
        valid,
        st.binary(max_size=300),
        valid.flatmap(_truncations),
        valid.flatmap(_corruptions),
        st.tuples(valid, _odd_fields(descriptor)).map(b"".join),
        st.tuples(_odd_fields(descriptor), valid).map(b"".join),
    )


def fuzzed_calls(method: MethodDescriptor) -> st.SearchStrategy[list[bytes]]:
    """The messages of one call of ``method``: one, or a stream of several."""
    if method.client_streaming:
        return st.lists(fuzzed_messages(method), min_size=1, max_size=5)
    return fuzzed_messages(method).map(lambda raw: [raw])


def corpus(method: MethodDescriptor) -> dict[str, bytes]:
    """One message of each hostile kind for ``method``, by name (oversized ones aside)."""
    seed = SEEDS.get(_path(method), message_factory.GetMessageClass(method.input_type)())
    raw = seed.SerializeToString()
    cases = {
        "empty": b"",
        "a zero byte": b"\x00",
        "every byte value": bytes(range(256)),
        "all ones": b"\xff" * 64,
        "the seed": raw,
        "the seed cut short": raw[:-1],
        "the seed cut in half": raw[: len(raw) // 2],
        "an overlong varint": key(1, VARINT) + b"\xff" * 10 + b"\x01",
        "the largest varint": key(1, VARINT) + varint(2**64 - 1),
        "a length of 2**32": key(1, LEN) + varint(2**32) + b"x",
        "a length of 2**64 - 1": key(1, LEN) + varint(2**64 - 1) + b"x",
        "a length past the end": key(1, LEN) + varint(10) + b"abc",
        "a stray group end": raw + key(1, EGROUP),
        "an unclosed group": raw + key(1, SGROUP),
        "wire type 6": raw + key(1, 6),
        "wire type 7": raw + key(1, 7),
        "field number 2**29": raw + varint(2**29 << 3) + b"\x00",
        "unknown fields of every wire type": raw
        + b"".join(key(900 + wire, wire) + payload(wire) for wire in (VARINT, I64, LEN, I32))
        + key(905, SGROUP)
        + key(905, EGROUP),
    }
    for field in method.input_type.fields:
        for wire in (VARINT, I64, LEN, I32):
            if wire != _wire_type(field):
                cases[f"{field.name} as wire type {wire}"] = (
                    raw + key(field.number, wire) + payload(wire)
                )
    return cases


# ---- calling a method with raw bytes ----


@dataclass(frozen=True)
class Answer:
    """How one call ended."""

    code: grpc.StatusCode
    details: str


def call(
    channel: grpc.Channel, method: MethodDescriptor, messages: Sequence[bytes], metadata: Metadata
) -> Answer:
    """Call ``method`` with ``messages`` as they are, in its own shape; how it ended.

    A server-streaming call counts as answered at its first message (a health watch never
    ends by itself), and is then cancelled.
    """
    path = _path(method)
    try:
        if method.client_streaming and method.server_streaming:
            stream: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
            list(stream(iter(messages), metadata=metadata, timeout=CALL_TIMEOUT))
        elif method.client_streaming:
            upload: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(path)
            upload(iter(messages), metadata=metadata, timeout=CALL_TIMEOUT)
        elif method.server_streaming:
            (request,) = messages
            watch: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            answers = watch(request, metadata=metadata, timeout=WATCH_TIMEOUT)
            for _ in answers:
                answers.cancel()
                break
        else:
            (request,) = messages
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            unary(request, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.CANCELLED and method.server_streaming:
            return Answer(grpc.StatusCode.OK, "")  # cancelled by us, after its first answer
        return Answer(error.code(), error.details() or "")
    return Answer(grpc.StatusCode.OK, "")


def check(method: MethodDescriptor, what: str, answer: Answer) -> None:
    """``answer`` is deliberate, and an INVALID_ARGUMENT names the field it is about."""
    allowed = DELIBERATE | (
        {grpc.StatusCode.DEADLINE_EXCEEDED} if method.server_streaming else set()
    )
    assert answer.code in allowed, f"{_path(method)}, {what}: {answer}"
    if answer.code == grpc.StatusCode.INVALID_ARGUMENT:
        assert FIELD_AND_REASON.match(answer.details), f"{_path(method)}, {what}: {answer}"


@dataclass
class FuzzTarget:
    """The fuzzed `onnet serve` process, a channel to it, and what has been sent so far."""

    server: ServerProcess
    channel: grpc.Channel
    limits: dict[str, int]
    fuzzed: set[str] = dataclass_field(default_factory=set)

    def send(self, method: MethodDescriptor, messages: Sequence[bytes]) -> Answer:
        """One call of ``method`` with the credential its service needs."""
        _, credential = SERVICES[method.containing_service.full_name]
        return call(self.channel, method, messages, credential())

    def send_corpus(self, method: MethodDescriptor) -> None:
        """Every corpus case, and the oversized messages, each checked.

        A client stream carries the case between two valid messages, as the finding's
        malformed ImportUsers stream did.
        """
        self.fuzzed.add(_path(method))
        seed = SEEDS.get(_path(method), message_factory.GetMessageClass(method.input_type)())
        raw = seed.SerializeToString()
        for what, case in corpus(method).items():
            messages = [raw, case, raw] if method.client_streaming else [case]
            check(method, what, self.send(method, messages))
        over_transport = self.send(method, [padded(raw, TRANSPORT_LIMIT + 1)])
        assert over_transport.code == grpc.StatusCode.RESOURCE_EXHAUSTED, over_transport
        limit = self.limits.get(_path(method))
        at_transport = self.send(method, [padded(raw, TRANSPORT_LIMIT)])
        check(method, "a message of the transport's size", at_transport)
        if limit is None or limit < TRANSPORT_LIMIT:
            # A method's own limit below the transport's refuses at the gate, naming it.
            assert at_transport.code == grpc.StatusCode.INVALID_ARGUMENT, at_transport
            assert at_transport.details.startswith("request: "), at_transport
        if limit is not None and limit < TRANSPORT_LIMIT:
            oversized = padded(raw, limit + 1)
            over_limit = self.send(
                method, [raw, oversized] if method.client_streaming else [oversized]
            )
            assert over_limit.code == grpc.StatusCode.INVALID_ARGUMENT, over_limit
            assert over_limit.details.startswith("request: "), over_limit

    def assert_serving(self) -> discovery_pb2.DiscoveryConfig:
        """A normal call of each credential kind is still answered; the account's config.

        The account is registered again first: a fuzzed Register or Unregister may have
        moved or erased it, and Discovery serves registered accounts only.
        """
        register_account(self.server.target)
        get_config = self.channel.unary_unary(
            "/onnet.v1.Discovery/GetConfig",
            request_serializer=discovery_pb2.GetConfigRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryConfig.FromString,
        )
        config = get_config(
            discovery_pb2.GetConfigRequest(), metadata=account_metadata(), timeout=CALL_TIMEOUT
        )
        assert config.max_batch == MAX_BATCH
        return config


@pytest.fixture(scope="module")
def target() -> Iterator[FuzzTarget]:
    """One `onnet serve` process for the module, its default account registered."""
    with server_process(SERVER_ENV) as server, secure_channel(server.target) as channel:
        fuzz = FuzzTarget(server, channel, {})
        config = fuzz.assert_serving()
        server_config = fresh_config(max_batch=MAX_BATCH, max_message_bytes=TRANSPORT_LIMIT)
        fuzz.limits = request_limits(server_config, config.max_buckets)
        yield fuzz


def test_every_served_service_is_fuzzed(target: FuzzTarget) -> None:
    info = target.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (answer,) = info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    served = {service.name for service in answer.list_services_response.service}
    assert served == set(SERVICES)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_fuzzed_requests_get_deliberate_answers(
    target: FuzzTarget, method: MethodDescriptor
) -> None:
    target.send_corpus(method)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(fuzzed_calls(method))
    def fuzz(messages: list[bytes]) -> None:
        check(method, "a generated call", target.send(method, messages))

    fuzz()
    target.assert_serving()


def test_the_log_holds_no_traceback_and_no_error(target: FuzzTarget) -> None:
    for method in METHODS:  # those the tests above have not, when this one runs alone
        if _path(method) not in target.fuzzed:
            target.send_corpus(method)
    target.assert_serving()
    assert target.server.terminate() == 0
    log = target.server.log()
    assert "onnet serving on" in log
    assert [line for line in log.splitlines() if BAD_LOG_LINE.search(line)] == []
