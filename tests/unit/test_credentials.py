from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from onnet._credentials import (
    KIND_ACCOUNT,
    KIND_SERVICE,
    METADATA_KEY,
    Credential,
    CredentialError,
    CredentialVerifier,
    KeyFileError,
    bearer,
    issue_token,
    key_id,
    load_public_keys,
    load_signing_key,
    new_signing_key_pem,
    public_key_pem,
)

NOW = 1_700_000_000
TTL = 3600
LEEWAY = 60
SUBJECT = "alice-7f3a"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: Ed25519PrivateKey, claims: object) -> str:
    """A token built by hand from the documented format, with any claims at all."""
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"v1.{key_id(key.public_key())}.{payload}"
    return f"{signed}.{b64(key.sign(signed.encode()))}"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def verifier(key: Ed25519PrivateKey) -> CredentialVerifier:
    return CredentialVerifier([key.public_key()], leeway_seconds=LEEWAY, clock=lambda: NOW)


def refused(verifier: CredentialVerifier, token: str, reason: str) -> None:
    with pytest.raises(CredentialError, match=reason) as info:
        verifier.verify(token)
    assert SUBJECT not in str(info.value)
    if token:
        assert token not in str(info.value)


def test_round_trip(key: Ed25519PrivateKey, verifier: CredentialVerifier) -> None:
    token = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW + 0.9)
    assert verifier.verify(token) == Credential(SUBJECT, KIND_ACCOUNT, NOW + TTL)
    service = issue_token(key, "account-service", KIND_SERVICE, TTL, now=NOW)
    assert verifier.verify(service).kind == KIND_SERVICE


def test_token_follows_the_documented_format(key: Ed25519PrivateKey) -> None:
    token = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW)
    version, kid, payload, signature = token.split(".")
    assert version == "v1"
    assert kid == hashlib.sha256(key.public_key().public_bytes_raw()).digest()[:8].hex()
    assert json.loads(unb64(payload)) == {
        "sub": SUBJECT,
        "kind": KIND_ACCOUNT,
        "iat": NOW,
        "exp": NOW + TTL,
    }
    assert b"=" not in payload.encode() + signature.encode()
    key.public_key().verify(unb64(signature), f"v1.{kid}.{payload}".encode())


def test_default_now_is_the_current_time(key: Ed25519PrivateKey) -> None:
    token = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL)
    assert CredentialVerifier([key.public_key()]).verify(token).subject == SUBJECT


def test_tampered_payload(key: Ed25519PrivateKey, verifier: CredentialVerifier) -> None:
    version, kid, _, signature = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW).split(".")
    claims = {"sub": "mallory", "kind": KIND_SERVICE, "iat": NOW, "exp": NOW + TTL}
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    refused(verifier, f"{version}.{kid}.{payload}.{signature}", "signature is invalid")


def test_tampered_signature(key: Ed25519PrivateKey, verifier: CredentialVerifier) -> None:
    head, signature = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW).rsplit(".", 1)
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    refused(verifier, f"{head}.{b64(bytes(raw))}", "signature is invalid")


def test_non_canonical_base64_is_malformed(
    key: Ed25519PrivateKey, verifier: CredentialVerifier
) -> None:
    # 64 bytes take 86 characters whose last carries 4 unused bits: setting them changes
    # the text but not the bytes, and must not give a second valid spelling of one token.
    head, signature = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW).rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(signature[-1]) | 0b0011]
    assert last != signature[-1]
    refused(verifier, f"{head}.{signature[:-1]}{last}", "malformed")
    refused(verifier, f"{head}.{signature}=", "malformed")


def test_wrong_key(key: Ed25519PrivateKey, verifier: CredentialVerifier) -> None:
    other = Ed25519PrivateKey.generate()
    refused(verifier, issue_token(other, SUBJECT, KIND_ACCOUNT, TTL, now=NOW), "unknown key")
    # Signed by another key under the trusted key's id.
    _, _, payload, signature = issue_token(other, SUBJECT, KIND_ACCOUNT, TTL, now=NOW).split(".")
    forged = f"v1.{key_id(key.public_key())}.{payload}.{signature}"
    refused(verifier, forged, "signature is invalid")


def test_expired(key: Ed25519PrivateKey) -> None:
    token = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW)
    at_edge = CredentialVerifier([key.public_key()], clock=lambda: NOW + TTL + LEEWAY - 1)
    assert at_edge.verify(token).subject == SUBJECT
    after = CredentialVerifier([key.public_key()], clock=lambda: NOW + TTL + LEEWAY)
    refused(after, token, "expired")


def test_issued_in_the_future(key: Ed25519PrivateKey, verifier: CredentialVerifier) -> None:
    assert verifier.verify(issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW + LEEWAY))
    refused(verifier, issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW + LEEWAY + 1), "future")


def test_unknown_kind(key: Ed25519PrivateKey, verifier: CredentialVerifier) -> None:
    claims = {"sub": SUBJECT, "kind": "admin", "iat": NOW, "exp": NOW + TTL}
    refused(verifier, sign(key, claims), "kind is not recognized")
    with pytest.raises(ValueError, match="kind"):
        issue_token(key, SUBJECT, "admin", TTL)


@pytest.mark.parametrize("subject", ["", "x" * 65, "caf\u00e9", "tab\there", "new\nline", 7])
def test_bad_subject(key: Ed25519PrivateKey, verifier: CredentialVerifier, subject: object) -> None:
    claims = {"sub": subject, "kind": KIND_ACCOUNT, "iat": NOW, "exp": NOW + TTL}
    refused(verifier, sign(key, claims), "subject")
    if isinstance(subject, str):
        with pytest.raises(ValueError, match="subject"):
            issue_token(key, subject, KIND_ACCOUNT, TTL)


def test_longest_subject(key: Ed25519PrivateKey, verifier: CredentialVerifier) -> None:
    subject = "~" * 64
    assert verifier.verify(issue_token(key, subject, KIND_ACCOUNT, TTL, now=NOW)).subject == subject


@pytest.mark.parametrize(
    "claims",
    [
        [SUBJECT],
        {"sub": SUBJECT, "kind": KIND_ACCOUNT, "iat": NOW},
        {"sub": SUBJECT, "kind": KIND_ACCOUNT, "iat": NOW, "exp": NOW + TTL, "admin": True},
        {"sub": SUBJECT, "kind": KIND_ACCOUNT, "iat": NOW, "exp": float(NOW + TTL)},
        {"sub": SUBJECT, "kind": KIND_ACCOUNT, "iat": True, "exp": NOW + TTL},
        {"sub": SUBJECT, "kind": KIND_ACCOUNT, "iat": NOW, "exp": NOW},
    ],
)
def test_signed_but_malformed_payload(
    key: Ed25519PrivateKey, verifier: CredentialVerifier, claims: object
) -> None:
    refused(verifier, sign(key, claims), "payload is malformed")


def test_signed_payload_that_is_not_json(
    key: Ed25519PrivateKey, verifier: CredentialVerifier
) -> None:
    signed = f"v1.{key_id(key.public_key())}.{b64(b'not json')}"
    refused(verifier, f"{signed}.{b64(key.sign(signed.encode()))}", "payload is malformed")


@pytest.mark.parametrize("parts", [0, 1, 3, 5, 6])
def test_wrong_number_of_parts(
    key: Ed25519PrivateKey, verifier: CredentialVerifier, parts: int
) -> None:
    pieces = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW).split(".")
    pieces = [*pieces, "AAAA", "AAAA"][:parts]
    refused(verifier, ".".join(pieces), "malformed")


def test_five_parts_with_a_valid_prefix(
    key: Ed25519PrivateKey, verifier: CredentialVerifier
) -> None:
    token = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW)
    refused(verifier, token + ".", "malformed")
    refused(verifier, "." + token, "malformed")


def test_wrong_version_or_key_id_shape(
    key: Ed25519PrivateKey, verifier: CredentialVerifier
) -> None:
    _, kid, payload, signature = issue_token(key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW).split(".")
    refused(verifier, f"v2.{kid}.{payload}.{signature}", "version")
    refused(verifier, f"v1.{kid.upper()}.{payload}.{signature}", "malformed")
    refused(verifier, f"v1.{kid[:-1]}.{payload}.{signature}", "malformed")
    refused(verifier, f"v1.{kid}.{payload}\u00e9.{signature}", "malformed")
    refused(verifier, f"v1.{kid}.{payload}.{signature[:-2]}", "malformed")


def test_huge_token(verifier: CredentialVerifier) -> None:
    refused(verifier, "v1." + "A" * 5000, "longer than 2048")
    refused(verifier, "." * 3000, "longer than 2048")


@given(st.text(max_size=300))
def test_any_text_is_refused_with_a_credential_error(text: str) -> None:
    verifier = CredentialVerifier([Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()])
    with pytest.raises(CredentialError):
        verifier.verify(text)


def test_verifier_needs_keys_and_a_sane_leeway(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="public key"):
        CredentialVerifier([])
    with pytest.raises(ValueError, match="leeway"):
        CredentialVerifier([key.public_key()], leeway_seconds=-1)
    with pytest.raises(ValueError, match="ttl"):
        issue_token(key, SUBJECT, KIND_ACCOUNT, 0)


def test_key_id_and_bearer(key: Ed25519PrivateKey) -> None:
    kid = key_id(key.public_key())
    assert len(kid) == 16
    assert kid == kid.lower()
    assert key_id(Ed25519PrivateKey.generate().public_key()) != kid
    assert bearer("tok") == ((METADATA_KEY, "Bearer tok"),)
    assert METADATA_KEY == "authorization"


def test_key_files_round_trip(tmp_path: Path) -> None:
    private_file = tmp_path / "signing.pem"
    private_file.write_bytes(new_signing_key_pem())
    signing_key = load_signing_key(private_file)
    public_file = tmp_path / "public.pem"
    public_file.write_bytes(public_key_pem(signing_key))
    (public,) = load_public_keys(str(public_file))
    token = issue_token(signing_key, SUBJECT, KIND_ACCOUNT, TTL, now=NOW)
    assert CredentialVerifier([public], clock=lambda: NOW).verify(token).subject == SUBJECT


def test_several_public_keys_in_one_file(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public_file = tmp_path / "public.pem"
    public_file.write_bytes(
        b"# retiring 2025-01\n" + public_key_pem(old) + b"\n# current\n" + public_key_pem(new)
    )
    keys = load_public_keys(public_file)
    assert [key_id(k) for k in keys] == [key_id(old.public_key()), key_id(new.public_key())]
    verifier = CredentialVerifier(keys, clock=lambda: NOW)
    for signer in (old, new):
        token = issue_token(signer, SUBJECT, KIND_ACCOUNT, TTL, now=NOW)
        assert verifier.verify(token).subject == SUBJECT


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_public_key_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "public.pem"
    signing_pem = new_signing_key_pem()
    ed_public = public_key_pem(Ed25519PrivateKey.from_private_bytes(bytes(32)))
    ec_public = (
        ec_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    garbled = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    cases = [
        (b"", "no PEM public key"),
        (b"just some text\n", "no PEM public key"),
        (signing_pem, "PEM block 1 is a 'PRIVATE KEY'"),
        (ed_public + signing_pem, "PEM block 2 is a 'PRIVATE KEY'"),
        (ec_public, "PEM block 1 holds another type of key, not Ed25519"),
        (garbled, "PEM block 1 is not a valid public key"),
        (ed_public[:-30], "no matching END line"),
    ]
    for content, message in cases:
        path.write_bytes(content)
        with pytest.raises(KeyFileError, match=message) as info:
            load_public_keys(path)
        assert str(path) in str(info.value)
        assert isinstance(info.value, ValueError)
    with pytest.raises(FileNotFoundError):
        load_public_keys(tmp_path / "missing.pem")


def test_signing_key_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    signing_pem = new_signing_key_pem()
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    ec_private = ec_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ec_traditional = ec_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = public_key_pem(Ed25519PrivateKey.generate())
    cases = [
        (b"", "exactly one PKCS8 'PRIVATE KEY' PEM block, found 0"),
        (public, "found 0"),
        (signing_pem + signing_pem, "found 2"),
        (encrypted, "encrypted"),
        (ec_traditional, "found 0"),
        (ec_private, "holds a private key of another type, not Ed25519"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a valid private key",
        ),
    ]
    for content, message in cases:
        path.write_bytes(content)
        with pytest.raises(KeyFileError, match=message) as info:
            load_signing_key(path)
        assert str(path) in str(info.value)


def test_a_lifetime_above_the_maximum_is_refused(key: Ed25519PrivateKey) -> None:
    verifier = CredentialVerifier([key.public_key()], max_lifetime_seconds=600, clock=lambda: NOW)
    assert verifier.verify(issue_token(key, SUBJECT, KIND_ACCOUNT, 600, now=NOW))
    refused(verifier, issue_token(key, SUBJECT, KIND_ACCOUNT, 601, now=NOW), "lifetime exceeds")
    refused(verifier, issue_token(key, SUBJECT, KIND_ACCOUNT, 10**30, now=NOW), "lifetime exceeds")
    default = CredentialVerifier([key.public_key()], clock=lambda: NOW)
    refused(default, issue_token(key, SUBJECT, KIND_ACCOUNT, 3601, now=NOW), "maximum of 3600 s")
    with pytest.raises(ValueError, match="max_lifetime_seconds"):
        CredentialVerifier([key.public_key()], max_lifetime_seconds=0)
