"""onnet: private contact discovery. The client SDK.

Normalize address-book numbers to E.164, hash them, and ask an onnet server which of them
belong to on-network users; only contact hashes cross the wire.
"""

from onnet._addressbook import AddressBookError, read_address_book, read_csv, read_vcard
from onnet._calls import AsyncDiscoveryCalls, AsyncRegistryCalls, DiscoveryCalls, RegistryCalls
from onnet._client import AsyncClient, AsyncRegistryClient, Client, RegistryClient
from onnet._config import ServerConfig
from onnet._contact_hash import CONTACT_HASH_SIZE, CONTACT_HASH_VERSION, contact_hash
from onnet._credentials import KeyFileError, issue_token, load_signing_key
from onnet._errors import (
    AuthenticationError,
    DeadlineExceededError,
    InternalServiceError,
    InvalidArgumentError,
    NotFoundError,
    OnnetError,
    PermissionDeniedError,
    ProtocolError,
    QuotaExceededError,
    ServiceError,
    UnavailableError,
)
from onnet._importing import ImportRejection, ImportResult, ImportRow
from onnet._phone import InvalidNumberError, is_supported_region, normalize
from onnet._plan import DiscoveryResult, InvalidEntry, Match
from onnet._registry import RegisterResult, Verdict
from onnet._resync import SyncState
from onnet._retry import RetryPolicy
from onnet._tls import channel_credentials
from onnet.protocol.oprf import OprfError

__all__ = [
    "CONTACT_HASH_SIZE",
    "CONTACT_HASH_VERSION",
    "AddressBookError",
    "AsyncClient",
    "AsyncDiscoveryCalls",
    "AsyncRegistryCalls",
    "AsyncRegistryClient",
    "AuthenticationError",
    "Client",
    "DeadlineExceededError",
    "DiscoveryCalls",
    "DiscoveryResult",
    "ImportRejection",
    "ImportResult",
    "ImportRow",
    "InternalServiceError",
    "InvalidArgumentError",
    "InvalidEntry",
    "InvalidNumberError",
    "KeyFileError",
    "Match",
    "NotFoundError",
    "OnnetError",
    "OprfError",
    "PermissionDeniedError",
    "ProtocolError",
    "QuotaExceededError",
    "RegisterResult",
    "RegistryCalls",
    "RegistryClient",
    "RetryPolicy",
    "ServerConfig",
    "ServiceError",
    "SyncState",
    "UnavailableError",
    "Verdict",
    "channel_credentials",
    "contact_hash",
    "is_supported_region",
    "issue_token",
    "load_signing_key",
    "normalize",
    "read_address_book",
    "read_csv",
    "read_vcard",
]
