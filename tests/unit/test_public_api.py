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
    "RegisterResult", "RegistryCalls", "RegistryClient", "Rejected", "RetryPolicy",
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
