"""onnet.protocol: the wire protocol's own pieces, shared by the SDK and the server.

This is the layer below ``onnet.Client``, as pyca/cryptography's ``hazmat`` is below its
recipes: for whoever implements a server, another SDK, or a tool that speaks the wire
contract (docs/protocol.md). An application uses ``onnet.Client`` and never needs it.
What it exports is public and pinned (tests/unit/test_public_api.py): changing it is a
change of the protocol, made on both sides at once.

- sizes and limits: ``CONTACT_HASH_SIZE``, ``ELEMENT_SIZE`` (an OPRF element),
  ``PREFIX_SIZE`` (a bucket entry's prefix), ``MESSAGE_OVERHEAD_BYTES`` (what a request's
  framing and small fields may take beside its packed hashes);
- ``oprf``: RFC 9497's OPRF (ristretto255-SHA512), both roles, as private mode uses it;
- ``buckets``: private mode's bucket numbers and sealed entries;
- credentials: the metadata key and the names both sides agree on (``bearer``,
  ``KIND_ACCOUNT``, ``KIND_SERVICE``, ``KIND_CLAIM``, ``MAX_TOKEN_LENGTH``, ...), and a
  development issuer (``new_signing_key_pem``, ``public_jwks``, ``issue_token``);
- ``read_pem``: the PEM check both sides' TLS set-up makes.
"""

from __future__ import annotations

from onnet._contact_hash import CONTACT_HASH_SIZE, CONTACT_HASH_VERSION
from onnet._credentials import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_MAX_LIFETIME,
    JWT_ALGORITHMS,
    KIND_ACCOUNT,
    KIND_CLAIM,
    KIND_SERVICE,
    MAX_SUBJECT_LENGTH,
    MAX_TOKEN_LENGTH,
    METADATA_KEY,
    KeyFileError,
    bearer,
    issue_token,
    load_signing_key,
    new_signing_key_pem,
    public_jwks,
)
from onnet._tls import CERTIFICATE, PRIVATE_KEY, read_pem
from onnet.protocol import buckets, oprf
from onnet.protocol.buckets import PREFIX_SIZE
from onnet.protocol.oprf import ELEMENT_SIZE

__all__ = [
    "CERTIFICATE",
    "CONTACT_HASH_SIZE",
    "CONTACT_HASH_VERSION",
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "DEFAULT_MAX_LIFETIME",
    "ELEMENT_SIZE",
    "JWT_ALGORITHMS",
    "KIND_ACCOUNT",
    "KIND_CLAIM",
    "KIND_SERVICE",
    "MAX_SUBJECT_LENGTH",
    "MAX_TOKEN_LENGTH",
    "MESSAGE_OVERHEAD_BYTES",
    "METADATA_KEY",
    "PREFIX_SIZE",
    "PRIVATE_KEY",
    "KeyFileError",
    "bearer",
    "buckets",
    "issue_token",
    "load_signing_key",
    "new_signing_key_pem",
    "oprf",
    "public_jwks",
    "read_pem",
]

MESSAGE_OVERHEAD_BYTES = 1024
"""Bytes of a request message that are not packed hashes or elements: protobuf's framing,
a re-sync token, small fields, with room to spare. A server sizes its limits with it, and
announces what follows from them (``DiscoveryConfig.max_previous``, ``max_buckets``)."""
