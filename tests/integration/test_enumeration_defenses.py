"""What an enumerating client meets: quotas, re-sync tokens, credentials and users' blocks.

Every test talks to a real server over TLS through the real SDK (or raw stubs where the
SDK would refuse to send what an attacker sends).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc

import onnet
from onnet.protocol import oprf
from onnet.v1 import discovery_pb2, registry_pb2
from tests.security import (
    SERVICE_NAME,
    account_metadata,
    discovery_client,
    registry_client,
    secure_channel,
    security,
)
from tests.servers import ThreadedServer

QUOTA = 100
PERIOD = 864_000.0  # ten days, the default
BOOK = [f"+1415555{n:04d}" for n in range(100, 160)]  # 60 valid numbers


ACCOUNTS = {"mallory": "+12025552150", "alice": "+12025557801"}
"""Discovering accounts, registered (hidden) at numbers outside BOOK."""


@pytest.fixture
def guarded(make_server: Callable[..., ThreadedServer]) -> ThreadedServer:
    """A server whose accounts may look up QUOTA new numbers per ten days."""
    server = make_server(quota_new_numbers=QUOTA)
    with registry_client(server.target) as registry:
        for account, e164 in ACCOUNTS.items():
            registry.register(account, e164, discoverable=False)
    return server


def random_hashes(count: int) -> bytes:
    return os.urandom(32 * count)


def ask(client: onnet.Client, hashes: bytes, **fields: bytes) -> discovery_pb2.DiscoverResponse:
    return client.calls.discover(discovery_pb2.DiscoverRequest(hashes=hashes, **fields))


def quota_left(client: onnet.Client) -> int:
    config = client.calls.get_config(discovery_pb2.GetConfigRequest())
    assert config.HasField("quota_remaining")
    return config.quota_remaining


class CallCounter(grpc.UnaryUnaryClientInterceptor):
    """Counts the calls that actually leave the client."""

    def __init__(self) -> None:
        self.calls = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls += 1
        return continuation(details, request)


def test_a_sweeping_account_is_cut_off_exactly_at_its_quota(guarded: ThreadedServer) -> None:
    with discovery_client(guarded.target, account="mallory") as mallory:
        for _ in range(14):
            ask(mallory, random_hashes(7))  # 98 new numbers
        with pytest.raises(onnet.QuotaExceededError) as refused:
            ask(mallory, random_hashes(7))  # 105 would be 5 too many
        assert refused.value.field == "hashes"
        # The wait is what 5 units take to leak at 100 per ten days, and is in the details.
        assert refused.value.retry_after == pytest.approx(5 * PERIOD / QUOTA, rel=1e-3)
        ask(mallory, random_hashes(2))  # exactly 100: allowed
        with pytest.raises(onnet.QuotaExceededError):
            ask(mallory, random_hashes(1))
        assert quota_left(mallory) == 0
    with discovery_client(guarded.target, account="alice") as alice:  # others are untouched
        assert quota_left(alice) == QUOTA
        ask(alice, random_hashes(QUOTA))


def test_a_refusal_is_never_retried_by_the_sdk(guarded: ThreadedServer) -> None:
    counter = CallCounter()
    with secure_channel(guarded.target) as plain:
        channel = grpc.intercept_channel(plain, counter)
        calls = onnet.DiscoveryCalls(
            channel, metadata=account_metadata("mallory"), retry=onnet.RetryPolicy(attempts=5)
        )
        calls.discover(discovery_pb2.DiscoverRequest(hashes=random_hashes(QUOTA)))
        assert counter.calls == 1
        started = time.monotonic()
        with pytest.raises(onnet.QuotaExceededError):
            calls.discover(discovery_pb2.DiscoverRequest(hashes=random_hashes(1)))
    assert counter.calls == 2  # the refusal was not retried
    # Nor waited on: the refusal names a wait of hours (a unit leaks in 8,640 s), and the
    # call took well under a second; the bound leaves a busy machine room.
    assert time.monotonic() - started < 10


def test_a_batch_larger_than_the_whole_quota_says_waiting_will_not_help(
    guarded: ThreadedServer,
) -> None:
    with discovery_client(guarded.target) as client, pytest.raises(onnet.QuotaExceededError) as e:
        ask(client, random_hashes(QUOTA + 1))
    assert e.value.retry_after is None
    assert "exceed the whole quota" in e.value.reason


def test_a_second_sync_costs_nothing_and_still_finds_newcomers(guarded: ThreadedServer) -> None:
    with registry_client(guarded.target) as registry:
        registry.register("u5", BOOK[5])
        with discovery_client(guarded.target, account="alice") as alice:
            assert [m.user_id for m in alice.discover(BOOK).matches] == ["u5"]
            assert quota_left(alice) == QUOTA - len(BOOK)
            registry.register("u7", BOOK[7])  # joins after alice's first sync
            assert [m.user_id for m in alice.discover(BOOK).matches] == ["u5", "u7"]
            assert quota_left(alice) == QUOTA - len(BOOK)  # the re-sync was free
            ask(alice, random_hashes(quota_left(alice)))  # spend the rest
            assert [m.user_id for m in alice.discover(BOOK).matches] == ["u5", "u7"]
            saved = alice.sync_state.to_bytes()
    # The app restarts: its saved state keeps the re-sync free, on a fresh connection.
    state = onnet.SyncState.from_bytes(saved)
    with discovery_client(guarded.target, account="alice", sync_state=state) as again:
        assert [m.user_id for m in again.discover(BOOK).matches] == ["u5", "u7"]
        assert quota_left(again) == 0


def test_a_forged_or_borrowed_token_gains_nothing(guarded: ThreadedServer) -> None:
    paid, others, wanted = random_hashes(30), random_hashes(30), random_hashes(30)
    with (
        discovery_client(guarded.target, account="mallory") as mallory,
        discovery_client(guarded.target, account="alice") as alice,
    ):
        token = ask(mallory, paid).token
        alices_token = ask(alice, others).token
        before = quota_left(mallory)
        flipped = bytes([token[0], token[1] ^ 1, *token[2:]])
        last_bit = token[:-1] + bytes([token[-1] ^ 0x80])
        attempts = [
            {"token": alices_token, "previous_hashes": others},  # another account's token
            {"token": token, "previous_hashes": paid + wanted},  # claims more than it paid
            {"token": token, "previous_hashes": paid[:-32]},  # not exactly what it covers
            {"token": flipped, "previous_hashes": paid},  # altered
            {"token": last_bit, "previous_hashes": paid},  # altered MAC
            {"token": token[:-1], "previous_hashes": paid},  # truncated
            {"token": token, "previous_hashes": b""},  # covers more than nothing
        ]
        for fields in attempts:
            with pytest.raises(onnet.InvalidArgumentError) as refused:
                ask(mallory, wanted, **fields)
            assert refused.value.field == "token"
            assert "wanted" not in refused.value.reason
        with pytest.raises(onnet.InvalidArgumentError) as untokened:
            ask(mallory, wanted, previous_hashes=paid)
        assert untokened.value.field == "previous_hashes"
        assert quota_left(mallory) == before  # a refused call is not charged
        # The genuine token still works: what was paid for is free, and only that.
        answer = ask(mallory, paid + wanted, token=token, previous_hashes=paid)
        assert quota_left(mallory) == before - 30
        ask(mallory, paid + wanted, token=answer.token, previous_hashes=wanted + paid)
        assert quota_left(mallory) == before - 30


def test_blind_evaluate_is_charged_and_refuses_before_any_work(guarded: ThreadedServer) -> None:
    def blinded(count: int) -> bytes:
        return b"".join(oprf.blind(os.urandom(8))[1] for _ in range(count))

    with discovery_client(guarded.target) as client:
        evaluate = client.calls.blind_evaluate
        evaluate(discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded(60)))
        assert quota_left(client) == QUOTA - 60
        bad = blinded(10) + bytes(32)  # the identity element at the end
        with pytest.raises(onnet.InvalidArgumentError):
            evaluate(discovery_pb2.BlindEvaluateRequest(blinded_elements=bad))
        assert quota_left(client) == QUOTA - 60  # a refused batch costs nothing
        with pytest.raises(onnet.QuotaExceededError) as refused:
            evaluate(discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded(41)))
        assert refused.value.field == "blinded_elements"
        evaluate(discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded(40)))
        assert quota_left(client) == 0


def test_a_private_resync_evaluates_only_new_contacts(guarded: ThreadedServer) -> None:
    with registry_client(guarded.target) as registry:
        registry.register("u5", BOOK[5])
    with discovery_client(guarded.target) as client:
        assert [m.user_id for m in client.discover(BOOK, private=True).matches] == ["u5"]
        assert quota_left(client) == QUOTA - len(BOOK)
        assert [m.user_id for m in client.discover(BOOK, private=True).matches] == ["u5"]
        assert quota_left(client) == QUOTA - len(BOOK)


# -- credentials -------------------------------------------------------------------------


def _discover_with(target: str, metadata: tuple[tuple[str, str], ...]) -> None:
    with secure_channel(target) as channel:
        calls = onnet.DiscoveryCalls(channel, metadata=metadata)
        calls.discover(discovery_pb2.DiscoverRequest(hashes=random_hashes(1)))


def _register_with(target: str, metadata: tuple[tuple[str, str], ...]) -> None:
    with secure_channel(target) as channel:
        calls = onnet.RegistryCalls(channel, metadata=metadata)
        calls.register(registry_pb2.RegisterRequest(user_id="x", e164=BOOK[0]))


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


STRANGER_KEY = Ed25519PrivateKey.generate()


@pytest.mark.parametrize("call", [_discover_with, _register_with])
@pytest.mark.parametrize(
    ("metadata", "code", "words"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED, "needs a credential"),
        ((("authorization", "Basic YWxpY2U6"),), grpc.StatusCode.UNAUTHENTICATED, "Bearer"),
        (_bearer("not-a-token"), grpc.StatusCode.UNAUTHENTICATED, "credential refused"),
        (
            _bearer(onnet.issue_token(STRANGER_KEY, "alice", "account", 60)),
            grpc.StatusCode.UNAUTHENTICATED,
            "credential refused",
        ),
        (
            _bearer(onnet.issue_token(STRANGER_KEY, SERVICE_NAME, "service", 60)),
            grpc.StatusCode.UNAUTHENTICATED,
            "credential refused",
        ),
    ],
)
def test_missing_or_bad_credentials_are_unauthenticated(
    server: ThreadedServer,
    call: Callable[[str, tuple[tuple[str, str], ...]], None],
    metadata: tuple[tuple[str, str], ...],
    code: grpc.StatusCode,
    words: str,
) -> None:
    with pytest.raises(onnet.AuthenticationError) as refused:
        call(server.target, metadata)
    assert refused.value.code == code
    assert refused.value.field == "authorization"
    assert words in refused.value.reason


@pytest.mark.parametrize("call", [_discover_with, _register_with])
def test_an_expired_credential_is_unauthenticated(
    server: ThreadedServer, call: Callable[[str, tuple[tuple[str, str], ...]], None]
) -> None:
    key = security().signing_key
    kind = "account" if call is _discover_with else "service"
    expired = onnet.issue_token(key, "alice", kind, 60, now=time.time() - 3600)
    with pytest.raises(onnet.AuthenticationError, match="expired"):
        call(server.target, _bearer(expired))


def test_the_wrong_kind_of_credential_is_permission_denied(server: ThreadedServer) -> None:
    service = _bearer(security().token(SERVICE_NAME, "service"))
    with pytest.raises(onnet.PermissionDeniedError, match="service credential may not"):
        _discover_with(server.target, service)
    with pytest.raises(onnet.PermissionDeniedError, match="account credential may not"):
        _register_with(server.target, account_metadata())


def test_health_needs_no_credential(server: ThreadedServer) -> None:
    with secure_channel(server.target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_mutual_tls_and_trusted_service_certificates(
    make_server: Callable[..., ThreadedServer],
) -> None:
    certs = security().certs
    server = make_server(tls_client_ca=certs.ca_cert, service_cert_names=("onnet-dev-service",))
    with_service_cert = onnet.channel_credentials(
        certs.ca_cert, certs.service_cert, certs.service_key
    )
    with_client_cert = onnet.channel_credentials(certs.ca_cert, certs.client_cert, certs.client_key)
    # The service's certificate is its credential on the Registry: no token needed.
    with onnet.RegistryClient(server.target, credentials=with_service_cert) as registry:
        registry.register("alice", BOOK[0])
        registry.register("bob", BOOK[1])
    # A certificate not on the list is no service credential.
    with (
        onnet.RegistryClient(server.target, credentials=with_client_cert) as stranger,
        pytest.raises(onnet.AuthenticationError),
    ):
        stranger.register("mallory", BOOK[1])
    # Apps present a certificate too, and their account credential.
    token = security().token("bob")
    with onnet.Client(server.target, credentials=with_client_cert, token=token) as app:
        assert [m.user_id for m in app.discover(BOOK[:1]).matches] == ["alice"]
    # Without a certificate the handshake fails.
    retry = onnet.RetryPolicy(attempts=1)
    with (
        onnet.Client(
            server.target, credentials=security().channel(), token=token, retry=retry
        ) as no_cert,
        pytest.raises(onnet.UnavailableError),
    ):
        no_cert.discover(BOOK[:1])


def test_development_mode_lets_calls_without_credentials_through(
    make_server: Callable[..., ThreadedServer],
) -> None:
    server = make_server(dev_mode=True, tls_cert=None, tls_key=None, auth_jwks=None)
    with onnet.RegistryClient(server.target) as registry:
        registry.register("alice", BOOK[0])
    with onnet.Client(server.target) as client:
        assert [m.user_id for m in client.discover(BOOK[:3]).matches] == ["alice"]
        assert quota_left(client) == 20_000 - 3  # quotas still apply


# -- users' controls -----------------------------------------------------------------------


def test_a_block_hides_the_blocker_from_the_blocked_number_only(server: ThreadedServer) -> None:
    alice, bob, carol, unknown = BOOK[0], BOOK[1], BOOK[2], BOOK[3]
    with registry_client(server.target) as registry:
        registry.register("alice", alice)
        registry.register("bob", bob)
        registry.register("carol", carol)
        assert registry.block("bob", alice) is True
        assert registry.block("bob", alice) is False
        with discovery_client(server.target, account="alice") as as_alice:
            for private in (False, True):
                found = as_alice.discover([bob, carol], private=private)
                assert [m.user_id for m in found.matches] == ["carol"]
            # A blocking user looks exactly like a number nobody registered.
            blocked = ask(as_alice, onnet.contact_hash(bob))
            absent = ask(as_alice, onnet.contact_hash(unknown))
            assert (list(blocked.matched_indexes), list(blocked.user_ids)) == ([], [])
            assert (list(absent.matched_indexes), list(absent.user_ids)) == ([], [])
            assert len(blocked.token) == len(absent.token)
        with discovery_client(server.target, account="carol") as as_carol:
            assert [m.user_id for m in as_carol.discover([bob]).matches] == ["bob"]
        registry.register("alice", BOOK[4])  # alice moves: the block stays with the number
        with discovery_client(server.target, account="alice") as as_alice:
            assert [m.user_id for m in as_alice.discover([bob]).matches] == ["bob"]
        registry.register("alice", alice)
        assert registry.unblock("bob", alice) is True
        assert registry.unblock("bob", alice) is False
        with discovery_client(server.target, account="alice") as as_alice:
            assert [m.user_id for m in as_alice.discover([bob], private=True).matches] == ["bob"]


def test_an_account_the_registry_does_not_know_is_refused(server: ThreadedServer) -> None:
    """Blocks are matched against the caller's own number: an account without one (never
    registered, or erased while its credential lives on) must not slip past them."""
    with registry_client(server.target) as registry:
        registry.register("alice", BOOK[0])
        registry.register("bob", BOOK[1])
        registry.block("bob", BOOK[0])
        registry.unregister("alice")
    with discovery_client(server.target, account="alice") as erased:
        for private in (False, True):
            with pytest.raises(onnet.PermissionDeniedError) as refused:
                erased.discover([BOOK[1]], private=private)
            assert refused.value.field == "authorization"
            assert "not registered" in refused.value.reason
        with pytest.raises(onnet.PermissionDeniedError):
            erased.get_config()  # not even the limits
    with registry_client(server.target) as registry:
        registry.register("alice", BOOK[2])
    with discovery_client(server.target, account="alice") as back:
        assert back.get_config().quota_remaining == 20_000  # nothing was charged


def test_discoverability_is_switched_by_registering_again(server: ThreadedServer) -> None:
    with registry_client(server.target) as registry:
        registry.register("alice", BOOK[0], discoverable=False)
        with discovery_client(server.target) as client:
            assert not client.discover(BOOK[:1]).matches
            assert not client.discover(BOOK[:1], private=True).matches
            registry.register("alice", BOOK[0], discoverable=True)
            assert [m.user_id for m in client.discover(BOOK[:1]).matches] == ["alice"]
            assert [m.user_id for m in client.discover(BOOK[:1], private=True).matches] == ["alice"]
            registry.register("alice", BOOK[0], discoverable=False)
            assert not client.discover(BOOK[:1]).matches


@pytest.mark.parametrize(
    ("user_id", "e164", "error", "field"),
    [
        ("ghost", BOOK[0], onnet.NotFoundError, "user_id"),
        ("", BOOK[0], onnet.InvalidArgumentError, "user_id"),
        ("alice", "+1 415 555 0100", onnet.InvalidArgumentError, "e164"),
        ("alice", "", onnet.InvalidArgumentError, "e164"),
    ],
)
def test_bad_block_requests_name_the_field(
    server: ThreadedServer, user_id: str, e164: str, error: type[onnet.ServiceError], field: str
) -> None:
    with registry_client(server.target) as registry:
        registry.register("alice", BOOK[1])
        with pytest.raises(error) as refused:
            registry.block(user_id, e164)
    assert refused.value.field == field
