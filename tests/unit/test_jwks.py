"""JWKS documents: which keys are used, each pinned to the one algorithm its type verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk

from onnet._credentials import (
    issue_token,
    key_id,
    load_signing_key,
    new_signing_key_pem,
    public_jwks,
)
from onnet_server.api.credentials import CredentialVerifier
from onnet_server.api.jwks import JwksError, KeySet, keys_of_jwks
from onnet_server.config import ConfigError
from onnet_server.server import authenticator
from tests.security import security
from tests.servers import fresh_config

ALL = ("EdDSA", "ES256", "RS256")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jwcrypto's own


def document(*keys: object) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def public(kty: str, kid: str, **extra: Any) -> dict[str, Any]:
    made = {
        "OKP": lambda: jwk.JWK.generate(kty="OKP", crv="Ed25519"),
        "EC": lambda: jwk.JWK.generate(kty="EC", crv="P-256"),
        "EC384": lambda: jwk.JWK.generate(kty="EC", crv="P-384"),
        "RSA": lambda: jwk.JWK.generate(kty="RSA", size=2048),
        "oct": lambda: jwk.JWK.generate(kty="oct", size=256),
    }[kty]()
    exported: dict[str, Any] = (
        made.export(as_dict=True) if kty == "oct" else made.export_public(as_dict=True)
    )
    return {**exported, "kid": kid, **extra}


def test_each_key_type_gets_its_one_algorithm() -> None:
    keys = keys_of_jwks(
        document(public("OKP", "a"), public("EC", "b"), public("RSA", "c")), ALL, "test"
    )
    assert {name: key.algorithm for name, key in keys.items()} == {
        ("a", "EdDSA"): "EdDSA",
        ("b", "ES256"): "ES256",
        ("c", "RS256"): "RS256",
    }


def test_keys_onnet_cannot_or_may_not_use_are_skipped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One odd key does not make the whole set unusable: it is skipped, and counted."""
    small_rsa = jwk.JWK.generate(kty="RSA", size=1024).export_public(as_dict=True)
    keys = keys_of_jwks(
        document(
            public("OKP", "kept"),
            public("RSA", "for-encryption", use="enc"),
            public("OKP", "for-wrapping", key_ops=["wrapKey"]),
            public("EC384", "other-curve"),
            {k: v for k, v in public("OKP", "x").items() if k != "kid"},
            public("RSA", "announced-for-another", alg="PS256"),
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "malformed"},
            {**small_rsa, "kid": "too-small"},
            public("OKP", "twice"),
            public("OKP", "twice"),
            "not an object",
        ),
        ALL,
        "test",
    )
    assert set(keys) == {("kept", "EdDSA")}
    assert "test: 10 key(s) skipped" in caplog.text


def test_a_kid_may_name_keys_of_different_types() -> None:
    """RFC 7517 section 4.5: the kid and the algorithm together name a key."""
    keys = keys_of_jwks(document(public("RSA", "same"), public("EC", "same")), ALL, "test")
    assert set(keys) == {("same", "RS256"), ("same", "ES256")}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{", "not JSON"),
        (b"[]", "not a JWKS"),
        (b'{"keys": {}}', "not a JWKS"),
        (b'{"keys": [1]}', "no key usable"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (document(public("RSA", "r", alg="HS256")), "no key usable"),
        (document({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k"}), "no key usable"),
        (document(public("oct", "only-secret")), "private or secret key"),
        (document(), "no key usable"),
    ],
)
def test_unusable_documents_are_refused_naming_the_source(content: bytes, reason: str) -> None:
    with pytest.raises(JwksError, match=reason) as refused:
        keys_of_jwks(content, ALL, "issuer.jwks")
    assert str(refused.value).startswith("issuer.jwks")


def test_a_private_key_in_a_verifiers_jwks_is_refused() -> None:
    private = jwk.JWK.generate(kty="OKP", crv="Ed25519").export(as_dict=True)
    with pytest.raises(JwksError, match="'oops' is a private or secret key"):
        keys_of_jwks(document({**private, "kid": "oops"}), ALL, "issuer.jwks")
    # The endpoint chooses the kid; the logged message shows it short and escaped.
    with pytest.raises(JwksError) as refused:
        keys_of_jwks(document({**private, "kid": "\n" + "x" * 100_000}), ALL, "issuer.jwks")
    assert len(str(refused.value)) < 200
    assert "\n" not in str(refused.value)


def test_a_key_set_needs_a_source_and_known_algorithms(tmp_path: Path) -> None:
    with pytest.raises(JwksError, match="give a JWKS file or a JWKS URL"):
        KeySet(ALL)
    with pytest.raises(JwksError, match="not HS256"):
        KeySet(("HS256",), file=tmp_path / "x")
    with pytest.raises(JwksError, match="https://"):
        KeySet(ALL, url="file:///etc/passwd")
    for url, reason in (("https://issuer:abc/jwks", "port"), ("https:///jwks", "no host")):
        with pytest.raises(JwksError, match=reason):
            KeySet(ALL, url=url)
    with pytest.raises(JwksError, match=r"missing\.jwks"):
        KeySet(ALL, file=tmp_path / "missing.jwks")


def test_the_development_issuer_writes_standard_jwks_and_jwts(tmp_path: Path) -> None:
    """What `onnet signing-key` and `onnet token` make reads as standard JOSE elsewhere."""
    key_file = tmp_path / "signing.key"
    key_file.write_bytes(new_signing_key_pem())
    signing_key = load_signing_key(key_file)
    published = public_jwks(signing_key.public_key())
    # jwcrypto reads the JWKS and agrees on the RFC 7638 thumbprint that is its kid.
    foreign = jwk.JWKSet.from_json(json.dumps(published))
    (only,) = foreign["keys"]
    assert only.thumbprint() == only.key_id == key_id(signing_key.public_key())
    jwks = tmp_path / "signing.key.jwks"
    jwks.write_text(json.dumps(published))
    token = issue_token(signing_key, "alice", "account", 60)
    credential = CredentialVerifier(KeySet(("EdDSA",), file=jwks)).verify(token)
    assert (credential.subject, credential.kind) == ("alice", "account")


@pytest.mark.parametrize(
    ("broken", "setting", "reason"),
    [
        ("file", "ONNET_AUTH_JWKS: ", "No such file"),
        ("url", "ONNET_AUTH_JWKS_URL: ", "must be https://"),
    ],
)
async def test_a_jwks_error_names_the_setting_at_fault_when_both_are_set(
    tmp_path: Path, broken: str, setting: str, reason: str
) -> None:
    good_file = security().server_settings()["auth_jwks"]
    config = fresh_config(
        auth_jwks=tmp_path / "missing.jwks" if broken == "file" else good_file,
        auth_jwks_url="ftp://127.0.0.1/jwks" if broken == "url" else "http://127.0.0.1:1/jwks",
    )
    with pytest.raises(ConfigError) as refused:
        await authenticator(config)
    assert str(refused.value).startswith(setting)
    assert reason in str(refused.value)
