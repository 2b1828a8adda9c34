"""The per-call credential check, without a server: metadata in, caller or refusal out."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import onnet
from onnet.protocol import KIND_ACCOUNT, KIND_SERVICE
from onnet_server.api.auth import DEV_SUBJECT, Authenticator, Caller
from onnet_server.core.errors import PermissionDenied, Unauthenticated
from tests.security import verifier_trusting

KEY = Ed25519PrivateKey.generate()


def bearer(token: str) -> list[tuple[str, str]]:
    return [("user-agent", "test"), ("authorization", f"Bearer {token}")]


@pytest.fixture
def auth(tmp_path: Path) -> Authenticator:
    verifier = verifier_trusting(tmp_path, KEY.public_key())
    return Authenticator(verifier, service_names=["router"])


def test_a_valid_credential_names_its_caller(auth: Authenticator) -> None:
    token = onnet.issue_token(KEY, "alice", "account", 60)
    assert auth.check(bearer(token), KIND_ACCOUNT) == Caller(KIND_ACCOUNT, "alice")
    assert auth.check(bearer(token), KIND_ACCOUNT) == Caller(KIND_ACCOUNT, "alice")  # cached
    service = onnet.issue_token(KEY, "accounts", "service", 60)
    assert auth.check(bearer(service), KIND_SERVICE) == Caller(KIND_SERVICE, "accounts")


def test_a_cached_credential_does_not_vouch_for_an_altered_one(auth: Authenticator) -> None:
    token = onnet.issue_token(KEY, "alice", "account", 60)
    auth.check(bearer(token), KIND_ACCOUNT)
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(Unauthenticated):
        auth.check(bearer(altered), KIND_ACCOUNT)


def test_refusals(auth: Authenticator) -> None:
    with pytest.raises(Unauthenticated, match="needs a credential") as missing:
        auth.check([], KIND_ACCOUNT)
    assert missing.value.field == "authorization"
    with pytest.raises(Unauthenticated, match="Bearer"):
        auth.check([("authorization", "Basic abc")], KIND_ACCOUNT)
    with pytest.raises(PermissionDenied) as wrong_kind:
        auth.check(bearer(onnet.issue_token(KEY, "alice", "account", 60)), KIND_SERVICE)
    assert wrong_kind.value.reason == (
        "an account credential may not call this service (it needs a service credential)"
    )
    with pytest.raises(PermissionDenied) as other_kind:
        auth.check(bearer(onnet.issue_token(KEY, "router", "service", 60)), KIND_ACCOUNT)
    assert other_kind.value.reason == (
        "a service credential may not call this service (it needs an account credential)"
    )
    other = Ed25519PrivateKey.generate()
    with pytest.raises(Unauthenticated, match="credential refused"):
        auth.check(bearer(onnet.issue_token(other, "alice", "account", 60)), KIND_ACCOUNT)


def test_a_listed_client_certificate_is_a_service_credential(auth: Authenticator) -> None:
    assert auth.check([], KIND_SERVICE, peer_name="router") == Caller(KIND_SERVICE, "router")
    with pytest.raises(Unauthenticated):
        auth.check([], KIND_SERVICE, peer_name="someone-else")
    with pytest.raises(Unauthenticated):  # a certificate is never an account credential
        auth.check([], KIND_ACCOUNT, peer_name="router")


def test_development_mode() -> None:
    dev = Authenticator(None, dev_mode=True)
    assert dev.check([], KIND_ACCOUNT) == Caller(KIND_ACCOUNT, DEV_SUBJECT)
    assert dev.check([], KIND_SERVICE) == Caller(KIND_SERVICE, DEV_SUBJECT)
    with pytest.raises(ValueError, match="only development mode"):
        Authenticator(None)


@pytest.mark.parametrize(
    "value",
    [
        "bearer {t}",
        "BEARER {t}",
        "Bearer  {t}",
        "Bearer {t} ",
        "Bearer\t{t}",
        "Bearer {t}\x85",  # what gRPC makes of invalid UTF-8 (Latin-1): str.strip() ate it
        "Bearer {t}\xa0",
        "Bearer \x85{t}",
        "Bearer {t}é",
        "Bearer ",
        "{t}",
    ],
)
def test_only_exactly_bearer_and_an_ascii_token_is_read(auth: Authenticator, value: str) -> None:
    token = onnet.issue_token(KEY, "alice", "account", 60)
    with pytest.raises(Unauthenticated, match="exactly 'Bearer '") as refused:
        auth.check([("authorization", value.format(t=token))], KIND_ACCOUNT)
    assert refused.value.field == "authorization"


def test_two_credentials_are_refused(auth: Authenticator) -> None:
    token = onnet.issue_token(KEY, "alice", "account", 60)
    with pytest.raises(Unauthenticated):
        auth.check(bearer(token) + bearer(token), KIND_ACCOUNT)


def test_binary_metadata_is_not_a_credential(auth: Authenticator) -> None:
    token = onnet.issue_token(KEY, "alice", "account", 60)
    with pytest.raises(Unauthenticated):
        auth.check([("authorization", f"Bearer {token}".encode())], KIND_ACCOUNT)
