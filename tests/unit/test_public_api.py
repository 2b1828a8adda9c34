"""The SDK's public surface is exact, and every RPC has a typed wrapper in each layer."""

from __future__ import annotations

import inspect
import re

import pytest

import onnet
from onnet.v1 import discovery_pb2, registry_pb2

EXPECTED = {
    "CONTACT_HASH_SIZE", "CONTACT_HASH_VERSION", "AddressBookError", "AsyncClient",
    "AsyncDiscoveryCalls", "AsyncRegistryCalls", "AsyncRegistryClient", "AuthenticationError",
    "Client", "DeadlineExceededError", "DiscoveryCalls", "DiscoveryResult",
    "ImportRejection", "ImportResult", "ImportRow",
    "InternalServiceError", "InvalidArgumentError", "InvalidNumberError", "Match",
    "KeyFileError", "NotFoundError", "OnnetError", "OprfError", "PermissionDeniedError",
    "ProtocolError", "QuotaExceededError",
    "RegisterResult", "RegistryCalls", "RegistryClient", "InvalidEntry", "RetryPolicy",
    "ServerConfig", "ServiceError", "SyncState", "UnavailableError", "Verdict",
    "channel_credentials",
    "contact_hash", "is_supported_region", "issue_token", "load_signing_key",
    "normalize", "read_address_book", "read_csv", "read_vcard",
}  # fmt: skip


def test_exported_members_are_pinned() -> None:
    assert set(onnet.__all__) == EXPECTED
    for name in onnet.__all__:
        member = getattr(onnet, name)
        assert not name.startswith("_")
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__doc__, f"{name} has no docstring"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize(
    ("descriptor", "layers"),
    [
        (discovery_pb2.DESCRIPTOR.services_by_name["Discovery"],
         (onnet.DiscoveryCalls, onnet.AsyncDiscoveryCalls)),
        (registry_pb2.DESCRIPTOR.services_by_name["Registry"],
         (onnet.RegistryCalls, onnet.AsyncRegistryCalls)),
    ],
)  # fmt: skip
def test_every_rpc_has_a_wrapper(descriptor: object, layers: tuple[type, ...]) -> None:
    methods = [m.name for m in descriptor.methods]  # type: ignore[attr-defined]
    assert methods
    for layer in layers:
        for method in methods:
            wrapper = getattr(layer, snake(method), None)
            assert wrapper is not None, f"{layer.__name__} lacks {snake(method)} for {method}"
            assert method in (wrapper.__doc__ or "")


PROTOCOL = {
    "CERTIFICATE", "CONTACT_HASH_SIZE", "CONTACT_HASH_VERSION", "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER", "DEFAULT_MAX_LIFETIME", "ELEMENT_SIZE", "JWT_ALGORITHMS", "KIND_ACCOUNT",
    "KIND_CLAIM",
    "KIND_SERVICE", "KeyFileError", "MAX_SUBJECT_LENGTH", "MAX_TOKEN_LENGTH",
    "MESSAGE_OVERHEAD_BYTES", "METADATA_KEY", "PREFIX_SIZE", "PRIVATE_KEY", "bearer", "buckets",
    "issue_token", "load_signing_key", "new_signing_key_pem", "oprf", "public_jwks", "read_pem",
}  # fmt: skip
OPRF = {
    "ELEMENT_SIZE", "OUTPUT_SIZE", "SCALAR_SIZE", "SUITE", "Mode", "OprfError", "blind",
    "blind_evaluate", "blind_evaluate_checked", "check_element", "context_string",
    "derive_key_pair", "evaluate", "finalize", "generate_proof", "public_key", "verify_proof",
}  # fmt: skip
BUCKETS = {"PREFIX_SIZE", "bucket_of", "open_entry", "prefix_of", "seal_entry"}


def test_the_protocol_layer_is_pinned() -> None:
    """What the SDK and the server share is one public module; changing it is deliberate."""
    from onnet import protocol

    assert set(protocol.__all__) == PROTOCOL
    assert set(protocol.oprf.__all__) == OPRF
    assert set(protocol.buckets.__all__) == BUCKETS
    assert protocol.CONTACT_HASH_SIZE == onnet.CONTACT_HASH_SIZE == 32
    assert protocol.ELEMENT_SIZE == 32
    assert protocol.__doc__


def test_the_server_imports_no_private_module_of_the_sdk() -> None:
    """The server reaches the SDK only through ``onnet`` and ``onnet.protocol``."""
    from pathlib import Path

    service = Path(__file__).resolve().parents[2] / "service"
    private = re.compile(r"^\s*(?:from onnet\._\w+|from onnet import _\w+|import onnet\._)", re.M)
    offenders = [
        str(path.relative_to(service))
        for path in service.rglob("*.py")
        if private.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
