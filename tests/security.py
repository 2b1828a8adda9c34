"""Per-run TLS certificates and signing keys, and clients that use them.

Every test server serves TLS with certificates made for this run by `onnet dev-certs`'s own
code, and verifies credentials signed by a key made for this run: nothing secret is
committed, and the integration tests exercise the same transport and checks as production.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import onnet
from onnet._credentials import KIND_ACCOUNT, KIND_SERVICE, public_jwks
from onnet_server.api.credentials import CredentialPolicy, CredentialVerifier
from onnet_server.api.jwks import KeySet
from onnet_server.commands.dev_certs import DevCerts, make_dev_certs

DEFAULT_ACCOUNT = "tester"
"""The account a test client discovers as, unless it asks for another."""
DEFAULT_ACCOUNT_NUMBER = "+12025551811"
"""The default account's own number (Discovery serves registered accounts only)."""
SERVICE_NAME = "account-service"


@dataclass(frozen=True)
class Security:
    """One run's certificates and credential keys."""

    folder: Path
    certs: DevCerts
    signing_key: Ed25519PrivateKey
    public_keys: Path

    def token(self, subject: str, kind: str = KIND_ACCOUNT, ttl: int = 3600) -> str:
        return onnet.issue_token(self.signing_key, subject, kind, ttl)

    def channel(self, *, client_cert: bool = False) -> grpc.ChannelCredentials:
        if client_cert:
            return onnet.channel_credentials(
                self.certs.ca_cert, self.certs.service_cert, self.certs.service_key
            )
        return onnet.channel_credentials(self.certs.ca_cert)

    def server_settings(self) -> dict[str, Any]:
        """ServeSettings fields: TLS and the credential keys."""
        return {
            "tls_cert": self.certs.server_cert,
            "tls_key": self.certs.server_key,
            "auth_jwks": self.public_keys,
        }

    def server_env(self) -> dict[str, str]:
        """The same, as ONNET_* variables for an `onnet serve` process."""
        return {
            "ONNET_TLS_CERT": str(self.certs.server_cert),
            "ONNET_TLS_KEY": str(self.certs.server_key),
            "ONNET_AUTH_JWKS": str(self.public_keys),
        }

    def client_env(
        self, subject: str = DEFAULT_ACCOUNT, kind: str = KIND_ACCOUNT
    ) -> dict[str, str]:
        """ONNET_* variables for an `onnet` client command."""
        return {"ONNET_TLS_CA": str(self.certs.ca_cert), "ONNET_TOKEN": self.token(subject, kind)}


def verifier_trusting(folder: Path, *keys: Ed25519PublicKey, **policy: Any) -> CredentialVerifier:
    """A verifier of EdDSA credentials signed by ``keys`` (their JWKS written to ``folder``)."""
    jwks = folder / "trusted.jwks"
    jwks.write_text(json.dumps(public_jwks(*keys)))
    return CredentialVerifier(KeySet(("EdDSA",), file=jwks), CredentialPolicy(**policy))


@functools.cache
def security() -> Security:
    """This run's material, made on first use and removed when the run ends."""
    folder = Path(tempfile.mkdtemp(prefix="onnet-test-security-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    certs = make_dev_certs(folder / "certs")
    signing_key = Ed25519PrivateKey.generate()
    public_keys = folder / "signing.jwks"
    public_keys.write_text(json.dumps(public_jwks(signing_key.public_key())))
    return Security(folder, certs, signing_key, public_keys)


def register_account(target: str, account: str = DEFAULT_ACCOUNT) -> None:
    """Register ``account`` (the default one at its own number): Discovery needs it."""
    with registry_client(target) as registry:
        registry.register(account, DEFAULT_ACCOUNT_NUMBER, discoverable=False)


def discovery_client(
    target: str, *, account: str = DEFAULT_ACCOUNT, **options: Any
) -> onnet.Client:
    """A Discovery client over TLS with an account credential.

    The default account is registered first (hidden, at its own number); a test that
    names another account registers it itself.
    """
    if account == DEFAULT_ACCOUNT:
        register_account(target)
    return onnet.Client(
        target, credentials=security().channel(), token=security().token(account), **options
    )


def async_discovery_client(
    target: str, *, account: str = DEFAULT_ACCOUNT, **options: Any
) -> onnet.AsyncClient:
    """An asyncio Discovery client over TLS with an account credential (see discovery_client)."""
    if account == DEFAULT_ACCOUNT:
        register_account(target)
    return onnet.AsyncClient(
        target, credentials=security().channel(), token=security().token(account), **options
    )


def registry_client(target: str, **options: Any) -> onnet.RegistryClient:
    """A Registry client over TLS with a service credential."""
    token = security().token(SERVICE_NAME, KIND_SERVICE)
    return onnet.RegistryClient(target, credentials=security().channel(), token=token, **options)


def async_registry_client(target: str, **options: Any) -> onnet.AsyncRegistryClient:
    """An asyncio Registry client over TLS with a service credential."""
    token = security().token(SERVICE_NAME, KIND_SERVICE)
    return onnet.AsyncRegistryClient(
        target, credentials=security().channel(), token=token, **options
    )


def secure_channel(target: str) -> grpc.Channel:
    """A raw blocking channel over TLS (for tests that send hand-made bytes)."""
    return grpc.secure_channel(target, security().channel())


def account_metadata(account: str = DEFAULT_ACCOUNT) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying an account credential."""
    return (("authorization", f"Bearer {security().token(account)}"),)


def service_metadata() -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a service credential."""
    return (("authorization", f"Bearer {security().token(SERVICE_NAME, KIND_SERVICE)}"),)
