"""Finding 7: every method of every service refuses a caller without the right credential.

The test walks the service descriptors, so a method added later is covered without anyone
remembering to add it here; only the standard health and reflection services are public.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2

from onnet._credentials import KIND_ACCOUNT, KIND_SERVICE
from onnet.v1 import bench_pb2, discovery_pb2, registry_pb2
from tests.security import SERVICE_NAME, register_account, secure_channel, security
from tests.servers import ThreadedServer, fresh_config

SERVICES: dict[str, tuple[ServiceDescriptor, str]] = {
    "Discovery": (discovery_pb2.DESCRIPTOR.services_by_name["Discovery"], KIND_ACCOUNT),
    "Registry": (registry_pb2.DESCRIPTOR.services_by_name["Registry"], KIND_SERVICE),
    "Bench": (bench_pb2.DESCRIPTOR.services_by_name["Bench"], KIND_ACCOUNT),
}
METHODS = [
    (name, method, kind) for name, (service, kind) in SERVICES.items() for method in service.methods
]


def _call(
    channel: Any, method: MethodDescriptor, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    """Call ``method`` with one empty message; the status it ends with."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming and method.server_streaming:
            stream = channel.stream_stream(path)(iter([b""]), metadata=metadata, timeout=10)
            list(stream)
        elif method.server_streaming:
            list(channel.unary_stream(path)(b"", metadata=metadata, timeout=10))
        elif method.client_streaming:
            channel.stream_unary(path)(iter([b""]), metadata=metadata, timeout=10)
        else:
            channel.unary_unary(path)(b"", metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _bearer(subject: str, kind: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {security().token(subject, kind)}"),)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = ThreadedServer(fresh_config(bench_ceiling=True)).start()
    try:
        register_account(server.target)
        with secure_channel(server.target) as opened:
            yield opened
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("service", "method", "kind"), METHODS, ids=[f"{s}/{m.name}" for s, m, _ in METHODS]
)
def test_no_credential_is_unauthenticated(
    channel: grpc.Channel, service: str, method: MethodDescriptor, kind: str
) -> None:
    assert _call(channel, method, ()) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("service", "method", "kind"), METHODS, ids=[f"{s}/{m.name}" for s, m, _ in METHODS]
)
def test_a_forged_credential_is_unauthenticated(
    channel: grpc.Channel, service: str, method: MethodDescriptor, kind: str
) -> None:
    forged = (("authorization", "Bearer v1.0000000000000000.e30.AAAA"),)
    assert _call(channel, method, forged) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("service", "method", "kind"), METHODS, ids=[f"{s}/{m.name}" for s, m, _ in METHODS]
)
def test_the_wrong_kind_is_permission_denied(
    channel: grpc.Channel, service: str, method: MethodDescriptor, kind: str
) -> None:
    wrong = (
        _bearer(SERVICE_NAME, KIND_SERVICE)
        if kind == KIND_ACCOUNT
        else _bearer("tester", KIND_ACCOUNT)
    )
    assert _call(channel, method, wrong) == grpc.StatusCode.PERMISSION_DENIED


VALID_REQUESTS = {
    "GetConfig": discovery_pb2.GetConfigRequest(),
    "Discover": discovery_pb2.DiscoverRequest(hashes=bytes(32)),
    "BlindEvaluate": discovery_pb2.BlindEvaluateRequest(blinded_elements=bytes(32)),
    "FetchBuckets": discovery_pb2.FetchBucketsRequest(buckets=[0]),
}


@pytest.mark.parametrize("name", sorted(VALID_REQUESTS))
def test_discovery_serves_registered_accounts_only(channel: grpc.Channel, name: str) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/onnet.v1.Discovery/{name}"
    )
    with pytest.raises(grpc.RpcError) as refused:
        call(
            VALID_REQUESTS[name].SerializeToString(),
            metadata=_bearer("never-registered", KIND_ACCOUNT),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_health_is_public(channel: grpc.Channel) -> None:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    assert (
        check(health_pb2.HealthCheckRequest(), timeout=10).status
        == health_pb2.HealthCheckResponse.SERVING
    )


async def test_a_method_without_a_rule_is_closed() -> None:
    """A service added to the server without a line in CREDENTIALS answers nobody."""
    from grpc import aio

    from onnet_server.api.auth import Authenticator
    from onnet_server.api.credentials import CredentialVerifier
    from onnet_server.api.gate import CallGate, CallSlots, method_rules
    from onnet_server.api.jwks import KeySet
    from onnet_server.core.call_rate import CallRatePolicy, CallRates
    from onnet_server.server import CREDENTIALS

    async def answer(request: bytes, context: object) -> bytes:
        return b"secret"

    class Forgotten(grpc.GenericRpcHandler):
        def service(
            self, handler_call_details: grpc.HandlerCallDetails
        ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
            if handler_call_details.method == "/onnet.v1.Forgotten/Open":
                return grpc.unary_unary_rpc_method_handler(answer)
            return None

    auth = Authenticator(CredentialVerifier(KeySet(("EdDSA",), file=security().public_keys)))
    slots = CallSlots.shares_of(100, CallRates(CallRatePolicy()))
    rules = method_rules(CREDENTIALS, {}, 4096)
    gate = CallGate(rules, auth, slots, require_account=lambda account: None)
    server = aio.server(interceptors=[gate])
    server.add_generic_rpc_handlers([Forgotten()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/onnet.v1.Forgotten/Open"
            )
            for metadata in (_bearer(SERVICE_NAME, KIND_SERVICE), _bearer("tester", KIND_ACCOUNT)):
                with pytest.raises(aio.AioRpcError) as refused:
                    await call(b"", metadata=metadata, timeout=10)
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "no access rule" in (refused.value.details() or "")
    finally:
        await server.stop(None)


def test_every_rule_names_a_served_method_and_every_served_method_has_one() -> None:
    from onnet_server.server import CREDENTIALS, request_limits
    from tests.servers import fresh_config

    rules = {
        f"/{service.full_name}/{method.name}"
        for service, _ in CREDENTIALS.values()
        for method in service.methods
    }
    assert set(request_limits(fresh_config(), 100)) <= rules
    served = {f"/{s.full_name}/{m.name}" for s, _ in SERVICES.values() for m in s.methods}
    assert served <= rules
