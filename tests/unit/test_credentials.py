"""JWT credentials: minted by another JOSE library (jwcrypto), verified by onnet (PyJWT).

Every refusal RFC 8725 asks for is here: wrong issuer or audience, expired, not yet valid,
an algorithm not configured, ``none``, an unknown or missing ``kid``, an HS256 token signed
with the RSA public key as its secret, a header algorithm other than its key's, and claims
that are missing or malformed. No refusal quotes the token or its subject.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwcrypto import jwk
from jwcrypto import jwt as jose

from onnet._credentials import KIND_ACCOUNT, KIND_SERVICE
from onnet_server.api.auth import Authenticator
from onnet_server.api.credentials import (
    Credential,
    CredentialError,
    CredentialPolicy,
    CredentialVerifier,
)
from onnet_server.api.jwks import KeySet
from onnet_server.core.errors import Unauthenticated

# jwcrypto 1.5's JWT class touches a class of its own that it marks deprecated, on every
# token it makes: its warning, not onnet's.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NOW = 1_700_000_000
ISSUER = "https://id.example.com/"
AUDIENCE = "onnet-contacts"
SUBJECT = "alice-7f3a"
LEEWAY = 60


@pytest.fixture(scope="module")
def keys() -> dict[str, jwk.JWK]:
    """One private key of each supported type, made by jwcrypto, named by kid."""
    return {
        "ed": jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed"),
        "ec": jwk.JWK.generate(kty="EC", crv="P-256", kid="ec"),
        "rsa": jwk.JWK.generate(kty="RSA", size=2048, kid="rsa"),
    }


ALGORITHM = {"ed": "EdDSA", "ec": "ES256", "rsa": "RS256"}


def claims(**changes: Any) -> dict[str, Any]:
    """A valid account credential's claims, with ``changes`` (None removes a claim)."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "onnet_kind": KIND_ACCOUNT,
        "iat": NOW - 10,
        "exp": NOW + 600,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def mint(key: jwk.JWK, body: dict[str, Any], **header: Any) -> str:
    """A JWT signed by jwcrypto with ``key`` (the header's alg and kid follow the key)."""
    token = jose.JWT(
        header={"alg": ALGORITHM[key.key_id], "kid": key.key_id, **header}, claims=body
    )
    token.make_signed_token(key)
    return str(token.serialize())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_made(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(body).encode()), b64(signature))
    )


def jwks_file(folder: Path, keys: list[jwk.JWK]) -> Path:
    path = folder / "issuer.jwks"
    path.write_text(json.dumps({"keys": [k.export_public(as_dict=True) for k in keys]}))
    return path


@pytest.fixture
def make_verifier(tmp_path: Path, keys: dict[str, jwk.JWK]) -> Callable[..., CredentialVerifier]:
    def make(
        algorithms: tuple[str, ...] = ("EdDSA", "ES256", "RS256"), **policy: Any
    ) -> CredentialVerifier:
        keyset = KeySet(algorithms, file=jwks_file(tmp_path, list(keys.values())))
        settings = {"issuer": ISSUER, "audience": AUDIENCE, **policy}
        return CredentialVerifier(keyset, CredentialPolicy(**settings), clock=lambda: NOW)

    return make


@pytest.fixture
def verifier(make_verifier: Callable[..., CredentialVerifier]) -> CredentialVerifier:
    return make_verifier()


def refused(verifier: CredentialVerifier, token: str, reason: str) -> None:
    with pytest.raises(CredentialError, match=reason) as info:
        verifier.verify(token)
    assert SUBJECT not in str(info.value)
    assert token not in str(info.value)


@pytest.mark.parametrize("kid", ["ed", "ec", "rsa"])
def test_each_configured_algorithm_verifies_another_librarys_token(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier, kid: str
) -> None:
    token = mint(keys[kid], claims())
    assert verifier.verify(token) == Credential(SUBJECT, KIND_ACCOUNT, NOW + 600)
    service = mint(keys[kid], claims(sub="account-service", onnet_kind=KIND_SERVICE))
    assert verifier.verify(service).kind == KIND_SERVICE


def test_an_audience_list_holding_ours_is_accepted(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier
) -> None:
    token = mint(keys["ed"], claims(aud=["billing", AUDIENCE]))
    assert verifier.verify(token).subject == SUBJECT


def test_wrong_issuer_or_audience(keys: dict[str, jwk.JWK], verifier: CredentialVerifier) -> None:
    refused(verifier, mint(keys["ed"], claims(iss="https://evil.example/")), "issuer")
    refused(verifier, mint(keys["ed"], claims(aud="billing")), "audience")
    refused(verifier, mint(keys["ed"], claims(aud=["billing"])), "audience")


def test_expired_and_not_yet_valid(keys: dict[str, jwk.JWK], verifier: CredentialVerifier) -> None:
    ended = claims(iat=NOW - 1000, exp=NOW - LEEWAY)
    refused(verifier, mint(keys["ed"], ended), "expired")
    within_leeway = claims(iat=NOW - 1000, exp=NOW - LEEWAY + 1)
    assert verifier.verify(mint(keys["ed"], within_leeway))
    refused(verifier, mint(keys["ed"], claims(nbf=NOW + LEEWAY + 1)), "not valid yet")
    assert verifier.verify(mint(keys["ed"], claims(nbf=NOW + LEEWAY)))
    refused(verifier, mint(keys["ed"], claims(iat=NOW + LEEWAY + 1, exp=NOW + 900)), "future")


def test_an_algorithm_not_configured_is_refused(
    keys: dict[str, jwk.JWK], make_verifier: Callable[..., CredentialVerifier]
) -> None:
    only_eddsa = make_verifier(("EdDSA",))
    assert only_eddsa.verify(mint(keys["ed"], claims()))
    for kid in ("ec", "rsa"):
        refused(only_eddsa, mint(keys[kid], claims()), "algorithm is not one of the configured")


def test_none_is_refused(verifier: CredentialVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        token = hand_made({"alg": alg, "kid": "ed", "typ": "JWT"}, claims())
        refused(verifier, token, "algorithm is not one of the configured")


def test_hs256_signed_with_the_public_key_as_its_secret_is_refused(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier
) -> None:
    """The classic confusion: the RSA key's public PEM (which anyone has) as an HMAC secret."""
    public_pem = keys["rsa"].export_to_pem(private_key=False, password=None)
    secret = jwk.JWK(kty="oct", k=b64(public_pem))
    forged = jose.JWT(header={"alg": "HS256", "kid": "rsa"}, claims=claims())
    forged.make_signed_token(secret)
    refused(verifier, str(forged.serialize()), "algorithm is not one of the configured")


def test_a_header_algorithm_other_than_its_keys_is_refused(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier
) -> None:
    """An ES256 token that names the RSA key: the key decides the algorithm."""
    confused = jose.JWT(header={"alg": "ES256", "kid": "rsa"}, claims=claims())
    confused.make_signed_token(keys["ec"])
    refused(verifier, str(confused.serialize()), "does not match its key")


def test_unknown_or_missing_kid(keys: dict[str, jwk.JWK], verifier: CredentialVerifier) -> None:
    stranger = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed")
    refused(verifier, mint(stranger, claims()), "signature is invalid")
    other = jose.JWT(header={"alg": "EdDSA", "kid": "someone-else"}, claims=claims())
    other.make_signed_token(stranger)
    refused(verifier, str(other.serialize()), "unknown key")
    anonymous = jose.JWT(header={"alg": "EdDSA"}, claims=claims())
    anonymous.make_signed_token(keys["ed"])
    refused(verifier, str(anonymous.serialize()), "names no key")


def test_tampered_payload_or_signature(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier
) -> None:
    header, _, signature = mint(keys["ed"], claims()).split(".")
    other_payload = b64(json.dumps(claims(sub="mallory")).encode())
    refused(verifier, f"{header}.{other_payload}.{signature}", "signature is invalid")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    refused(verifier, f"{header}.{mint(keys['ed'], claims()).split('.')[1]}.{flipped}", "invalid")


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "onnet_kind"])
def test_every_required_claim(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier, claim: str
) -> None:
    refused(verifier, mint(keys["ed"], claims(**{claim: None})), claim)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"onnet_kind": "admin"}, "onnet_kind must be"),
        ({"sub": ""}, "subject"),
        ({"sub": "x" * 65}, "subject"),
        ({"sub": "al\nice"}, "subject"),
        ({"sub": 7}, "malformed"),
        ({"iat": float(NOW), "exp": NOW + 600}, "times"),
        ({"iat": True}, "times"),
        ({"exp": NOW - 20}, "times"),
        ({"nbf": "soon"}, "malformed"),
    ],
)
def test_malformed_claims(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier, changes: dict[str, Any], reason: str
) -> None:
    refused(verifier, mint(keys["ed"], claims(**changes)), reason)


def test_a_lifetime_above_the_maximum_is_refused(
    keys: dict[str, jwk.JWK], make_verifier: Callable[..., CredentialVerifier]
) -> None:
    short = make_verifier(max_lifetime=600)
    assert short.verify(mint(keys["ed"], claims(iat=NOW, exp=NOW + 600)))
    refused(short, mint(keys["ed"], claims(iat=NOW, exp=NOW + 601)), "lifetime exceeds")
    default = make_verifier()
    refused(default, mint(keys["ed"], claims(iat=NOW, exp=NOW + 3601)), "maximum of 3600 s")


def test_the_kind_claim_can_be_named_by_the_operator(
    keys: dict[str, jwk.JWK], make_verifier: Callable[..., CredentialVerifier]
) -> None:
    namespaced = make_verifier(kind_claim="https://onnet.example/kind")
    body = claims(onnet_kind=None, **{"https://onnet.example/kind": KIND_SERVICE})
    assert namespaced.verify(mint(keys["ed"], body)).kind == KIND_SERVICE
    refused(namespaced, mint(keys["ed"], claims()), "https://onnet.example/kind must be")


def test_a_huge_token_is_refused_unparsed(verifier: CredentialVerifier) -> None:
    refused(verifier, "a" * 5000, "longer than 4096")


@functools.cache
def some_verifier() -> CredentialVerifier:
    folder = Path(tempfile.mkdtemp(prefix="onnet-test-jwks-"))
    keyset = KeySet(
        ("EdDSA",), file=jwks_file(folder, [jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="k")])
    )
    shutil.rmtree(folder)
    return CredentialVerifier(keyset)


@given(st.text(max_size=300))
def test_any_text_is_refused_with_a_credential_error(text: str) -> None:
    with pytest.raises(CredentialError):
        some_verifier().verify(text)


def test_headers_no_check_foresaw_are_refused_as_credentials(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier
) -> None:
    """A crit extension, a kid that is no string: refused, not an internal error."""
    critical = hand_made({"alg": "EdDSA", "kid": "ed", "crit": ["zzz"], "zzz": 1}, claims())
    refused(verifier, critical, "header")
    refused(verifier, hand_made({"alg": "EdDSA", "kid": 7}, claims()), "header")


def test_a_kind_claim_of_another_type_is_refused(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier
) -> None:
    for kind in (["account"], {"account": True}, 1):
        refused(verifier, mint(keys["ed"], claims(onnet_kind=kind)), "onnet_kind must be")


def test_whatever_a_verifier_raises_is_unauthenticated(
    keys: dict[str, jwk.JWK], verifier: CredentialVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last guard: an exception no check foresaw still answers UNAUTHENTICATED."""
    auth = Authenticator(verifier)

    def broken(token: str) -> Credential:
        raise TypeError("a check nobody wrote")

    monkeypatch.setattr(verifier, "verify", broken)
    with pytest.raises(Unauthenticated, match="credential refused: token is malformed"):
        auth.check([("authorization", "Bearer " + mint(keys["ed"], claims()))], KIND_ACCOUNT)
