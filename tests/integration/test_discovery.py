"""The SDK against a real grpc.aio server on an ephemeral port."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import onnet
from onnet.protocol import oprf
from onnet.v1 import discovery_pb2
from tests.security import (
    account_metadata,
    async_discovery_client,
    async_registry_client,
    discovery_client,
    register_account,
    registry_client,
    secure_channel,
    security,
)
from tests.servers import ThreadedServer, free_port, server_starting_late

BOOK = ["(415) 555-0100", "+44 20 7946 0958", "030 901820", "+49 30 901820", "nonsense"]


def register(server: ThreadedServer, *users: tuple[str, str, bool]) -> None:
    with registry_client(server.target) as registry:
        for user_id, e164, discoverable in users:
            registry.register(user_id, e164, discoverable=discoverable)


def found(server: ThreadedServer, numbers: list[str], region: str = "US") -> dict[str, str]:
    with discovery_client(server.target) as client:
        return {m.e164: m.user_id for m in client.discover(numbers, default_region=region).matches}


def test_register_and_discover(server: ThreadedServer) -> None:
    register(server, ("alice", "+14155550100", True), ("emmy", "+4930901820", True))
    with discovery_client(server.target) as client:
        result = client.discover(BOOK, default_region="US")
    assert [(m.raw, m.e164, m.user_id) for m in result.matches] == [
        ("(415) 555-0100", "+14155550100", "alice"),
        ("+49 30 901820", "+4930901820", "emmy"),
    ]
    assert [r.raw for r in result.rejected] == ["030 901820", "nonsense"]
    assert result.uploaded == 3


def test_move_unregister_and_non_discoverable(server: ThreadedServer) -> None:
    register(server, ("alice", "+14155550100", True), ("carol", "+442079460958", False))
    assert found(server, BOOK) == {"+14155550100": "alice"}
    with registry_client(server.target) as registry:
        assert registry.register("alice", "+4930901820").updated is True
        assert found(server, BOOK) == {"+4930901820": "alice"}
        registry.register("carol", "+442079460958", discoverable=True)
        assert found(server, BOOK) == {"+4930901820": "alice", "+442079460958": "carol"}
        registry.unregister("alice")
        assert found(server, BOOK) == {"+442079460958": "carol"}
        with pytest.raises(onnet.NotFoundError) as caught:
            registry.unregister("alice")
    assert caught.value.field == "user_id"


def test_a_recycled_number_moves_to_its_new_holder(server: ThreadedServer) -> None:
    register(server, ("alice", "+14155550100", True))
    with registry_client(server.target) as registry:
        outcome = registry.register("bob", "+14155550100")
    assert outcome.displaced_user_id == "alice"
    assert found(server, BOOK) == {"+14155550100": "bob"}


def test_duplicates_are_uploaded_once_and_all_reported(server: ThreadedServer) -> None:
    register(server, ("alice", "+14155550100", True))
    with discovery_client(server.target) as client:
        result = client.discover(["(415) 555-0100", "+1 415-555-0100", "4155550100"], "US")
    assert result.uploaded == 1
    assert [m.raw for m in result.matches] == ["(415) 555-0100", "+1 415-555-0100", "4155550100"]


def test_batches_larger_than_the_server_limit_are_split(
    make_server: Callable[..., ThreadedServer],
) -> None:
    server = make_server(max_batch=3)
    numbers = [f"+1415555{n:04d}" for n in range(100, 110)]
    register(server, ("u1", numbers[1], True), ("u5", numbers[5], True), ("u9", numbers[9], True))
    with discovery_client(server.target) as client:
        assert client.get_config().max_batch == 3
        result = client.discover(numbers)
    assert [(m.e164, m.user_id) for m in result.matches] == [
        (numbers[1], "u1"), (numbers[5], "u5"), (numbers[9], "u9"),
    ]  # fmt: skip


async def test_async_clients(server: ThreadedServer) -> None:
    async with async_registry_client(server.target) as registry:
        await registry.register("alice", "+14155550100")
        await registry.register("bob", "+442079460958")
        await registry.unregister("bob")
    async with async_discovery_client(server.target) as client:
        result = await client.discover(BOOK, default_region="US")
        config = await client.get_config()  # cached from before the sync
        fresh = await client.calls.get_config(discovery_pb2.GetConfigRequest())
    assert [(m.e164, m.user_id) for m in result.matches] == [("+14155550100", "alice")]
    assert config.contact_hash_version == 1
    assert config.quota_remaining == 20_000
    assert fresh.quota_remaining == 20_000 - result.uploaded  # each new number costs one


# RFC 9496's encoding of ristretto255's generator G: evaluating it gives the key's public
# element k*G, whatever the server's code says its key is.
RISTRETTO255_GENERATOR = bytes.fromhex(
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"
)


def oprf_public_key_of_pepper(pepper: bytes) -> bytes:
    """The public element of the OPRF key derived from ``pepper`` (docs/protocol.md says the
    key derives from the pepper; these labels are core/private.py's)."""
    seed = hmac.new(pepper, b"onnet/oprf-seed/v1", hashlib.sha256).digest()
    return oprf.derive_key_pair(seed, b"onnet oprf key", oprf.Mode.OPRF)[1]


def fullest_answer_bytes(buckets: int) -> int:
    """The size of a FetchBuckets answer of ``buckets`` buckets as full as the protocol allows.

    docs/protocol.md: a bucket holds at most 31 entries, asked with one bit fewer twice that;
    user ids have up to 64 characters; bucket numbers up to 32 bits.
    """
    # tag(8) || nonce(12) || sealed padded id: 1 + 64 bytes padded to 80, and a 16-byte tag
    entry = bytes(8 + 12 + 80 + 16)
    answer = discovery_pb2.FetchBucketsResponse(
        buckets=[
            discovery_pb2.Bucket(bucket=2**32 - 1 - n, entries=[entry] * (2 * 31))
            for n in range(buckets)
        ]
    )
    return answer.ByteSize()


def test_get_config(server: ThreadedServer) -> None:
    with discovery_client(server.target) as client:
        config = client.get_config()
        evaluated = client.calls.blind_evaluate(
            discovery_pb2.BlindEvaluateRequest(blinded_elements=RISTRETTO255_GENERATOR)
        )
    public = evaluated.evaluated_elements
    assert server.config.pepper_hex is not None
    assert public == oprf_public_key_of_pepper(bytes.fromhex(server.config.pepper_hex))
    # docs/protocol.md: the key id is a digest of the public key in use (SHA-256, labelled).
    key_id = hashlib.sha256(b"onnet/oprf-key-id:" + public).hexdigest()[:16]
    assert evaluated.key_id == key_id
    announced = dataclasses.asdict(config)
    # max_buckets has a test of its own, below; max_previous is what fits beside a batch.
    assert announced.pop("max_buckets") >= 1
    max_previous = announced.pop("max_previous")
    assert max_previous >= config.max_batch  # a token may cover more than one batch
    fullest = discovery_pb2.DiscoverRequest(
        hashes=bytes(32 * config.max_batch),
        previous_hashes=bytes(32 * max_previous),
        token=bytes(45),
    )
    assert fullest.ByteSize() <= config.max_message_bytes
    assert announced == {
        "contact_hash_version": 1,
        "max_batch": 10_000,  # ONNET_MAX_BATCH's default
        "max_message_bytes": 4 * 1024 * 1024,  # ONNET_MAX_MESSAGE_BYTES's default
        "quota_remaining": 20_000,
        "oprf_suite": "ristretto255-SHA512",
        "oprf_key_id": key_id,
        "bucket_prefix_bits": 0,
    }
    # Not wastefully small: twice as many full buckets would not fit.
    assert fullest_answer_bytes(2 * config.max_buckets) > config.max_message_bytes


def test_max_buckets_full_buckets_fit_in_one_message(server: ThreadedServer) -> None:
    """docs/protocol.md: FetchBucketsResponse stays under max_message_bytes thanks to it."""
    with discovery_client(server.target) as client:
        config = client.get_config()
    assert fullest_answer_bytes(config.max_buckets) <= config.max_message_bytes


def test_health_and_reflection(server: ThreadedServer) -> None:
    with secure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "onnet.v1.Discovery", "onnet.v1.Registry"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(reflect.ServerReflectionInfo(iter([request]), timeout=5)))
        names = {s.name for s in response.list_services_response.service}
    assert {"onnet.v1.Discovery", "onnet.v1.Registry", "grpc.health.v1.Health"} <= names


def test_unavailable_is_retried_until_the_server_comes_up() -> None:
    port = free_port()
    started = time.monotonic()
    with server_starting_late(port, 0.5):
        token = security().token("late")
        # The server's own answer (the account is not registered there) proves the call
        # reached it: UNAVAILABLE was retried until it started. The deadline is generous:
        # a busy machine may take seconds to start the server.
        with (
            onnet.Client(  # the default retry policy
                f"127.0.0.1:{port}", timeout=30, credentials=security().channel(), token=token
            ) as client,
            pytest.raises(onnet.PermissionDeniedError),
        ):
            client.get_config()
        assert time.monotonic() - started >= 0.4


def test_unreachable_server_gives_unavailable_after_bounded_retries() -> None:
    port = free_port()  # nothing listens there
    retry = onnet.RetryPolicy(attempts=3, initial_backoff=0.05, max_backoff=0.1)
    started = time.monotonic()
    with (
        onnet.Client(
            f"127.0.0.1:{port}", retry=retry, timeout=1, credentials=security().channel()
        ) as client,
        pytest.raises(onnet.UnavailableError),
    ):
        client.discover(["+14155550100"])
    assert time.monotonic() - started < 5


def raw_discover(server: ThreadedServer, request: discovery_pb2.DiscoverRequest) -> object:
    register_account(server.target)
    with grpc.secure_channel(
        server.target,
        security().channel(),
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
    ) as channel:
        calls = onnet.DiscoveryCalls(
            channel, retry=onnet.RetryPolicy(attempts=1), metadata=account_metadata()
        )
        return calls.discover(request)


H = onnet.contact_hash("+14155550100")


@pytest.mark.parametrize(
    ("request_fields", "field", "message"),
    [
        ({"hashes": b""}, "hashes", "at least one"),
        ({"hashes": H[:31]}, "hashes", "length 31 is not a multiple of 32"),
        ({"hashes": H + b"x"}, "hashes", "length 33 is not a multiple of 32"),
        ({"hashes": H * 10_001}, "hashes", "batch of 10001 hashes exceeds the limit of 10000"),
        ({"hashes": H, "previous_hashes": b"x" * 40}, "previous_hashes", "not a multiple of 32"),
    ],
)
def test_bad_discover_requests(
    server: ThreadedServer, request_fields: dict[str, bytes], field: str, message: str
) -> None:
    with pytest.raises(onnet.InvalidArgumentError) as caught:
        raw_discover(server, discovery_pb2.DiscoverRequest(**request_fields))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field == field
    assert message in caught.value.reason
    assert caught.value.reason.startswith(f"{field}: ")
    register(server, ("alice", "+14155550100", True))
    assert found(server, ["+14155550100"]) == {"+14155550100": "alice"}  # still serving


def test_a_message_over_the_transport_limit_is_refused(server: ThreadedServer) -> None:
    too_big = os.urandom(server.config.max_message_bytes + 1024)
    with pytest.raises(onnet.QuotaExceededError) as caught:
        raw_discover(server, discovery_pb2.DiscoverRequest(hashes=too_big))
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert found(server, ["+14155550100"]) == {}  # still serving


@pytest.mark.parametrize(
    ("user_id", "e164", "field", "message"),
    [
        ("", "+14155550100", "user_id", "must not be empty"),
        ("u" * 65, "+14155550100", "user_id", "longer than 64"),
        ("bad\nid", "+14155550100", "user_id", "printable ASCII"),
        ("alice", "", "e164", "must not be empty"),
        ("alice", "+1 415 555 0100", "e164", "not in E.164 form"),
        ("alice", "4155550100", "e164", "not a valid phone number"),
        ("alice", "+1415555", "e164", "not a valid phone number"),
    ],
)
def test_bad_registrations_write_nothing(
    server: ThreadedServer, user_id: str, e164: str, field: str, message: str
) -> None:
    with registry_client(server.target) as registry:
        with pytest.raises(onnet.InvalidArgumentError) as caught:
            registry.register(user_id, e164)
        assert caught.value.field == field
        assert message in caught.value.reason
        assert server.store is not None
        assert len(server.store) == 0
        registry.register("alice", "+14155550100")
    assert found(server, ["+14155550100"]) == {"+14155550100": "alice"}


def test_unregister_with_a_bad_user_id(server: ThreadedServer) -> None:
    with (
        registry_client(server.target) as registry,
        pytest.raises(onnet.InvalidArgumentError) as caught,
    ):
        registry.unregister("")
    assert caught.value.field == "user_id"


async def test_async_clients_map_errors_like_the_sync_ones(server: ThreadedServer) -> None:
    async with async_registry_client(server.target) as registry:
        with pytest.raises(onnet.NotFoundError) as not_found:
            await registry.unregister("nobody")
        with pytest.raises(onnet.InvalidArgumentError) as invalid:
            await registry.register("", "+14155550100")
    assert not_found.value.field == "user_id"
    assert invalid.value.field == "user_id"


async def test_async_client_retries_unavailable() -> None:
    port = free_port()
    with server_starting_late(port, 0.3):
        token = security().token("late")
        async with onnet.AsyncClient(  # a generous deadline, as above
            f"127.0.0.1:{port}", timeout=30, credentials=security().channel(), token=token
        ) as client:
            with pytest.raises(onnet.PermissionDeniedError):  # the server's own answer
                await client.get_config()


def test_registry_writes_are_not_retried_blindly() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with (
        registry_client(f"127.0.0.1:{port}", timeout=30) as registry,
        pytest.raises(onnet.UnavailableError),
    ):
        registry.register("alice", "+14155550100")
    # One attempt, failed at once. A retry waits for the server to come up, here until the
    # 30 s deadline; the bound leaves a busy machine room.
    assert time.monotonic() - started < 10


def test_the_announced_max_previous_is_the_servers_own_limit(server: ThreadedServer) -> None:
    """Clients compute no limit: the server's refusal starts right above what it announced."""
    with discovery_client(server.target) as client:
        config = client.get_config()
        book = onnet.contact_hash("+14155550100")
        token = client.calls.discover(discovery_pb2.DiscoverRequest(hashes=book)).token
        at_limit = discovery_pb2.DiscoverRequest(
            hashes=book, token=token, removed_hashes=bytes(32 * config.max_previous)
        )
        over = discovery_pb2.DiscoverRequest(
            hashes=book, token=token, removed_hashes=bytes(32 * (config.max_previous + 1))
        )
        # At the limit the size passes, and the next check speaks (the zeros repeat).
        for request, refused_for in ((at_limit, "more than once"), (over, "exceeds the limit")):
            with pytest.raises(onnet.InvalidArgumentError) as refused:
                client.calls.discover(request)
            assert refused.value.field == "removed_hashes"
            assert refused_for in refused.value.reason
