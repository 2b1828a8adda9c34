"""What a Discovery server announces in GetConfig, and whether this SDK can use it."""

from __future__ import annotations

from dataclasses import dataclass

from onnet._contact_hash import CONTACT_HASH_SIZE, CONTACT_HASH_VERSION
from onnet._errors import ProtocolError
from onnet._rpc import GET_CONFIG, Flow, ask
from onnet.protocol import MESSAGE_OVERHEAD_BYTES, oprf
from onnet.v1 import discovery_pb2

__all__ = ["ServerConfig", "ask_config", "check_key", "check_private", "check_server"]


@dataclass(frozen=True)
class ServerConfig:
    """What a Discovery server announces in GetConfig."""

    contact_hash_version: int
    """The contact-hash formula the server expects (this SDK speaks version 1)."""
    max_batch: int
    """The largest number of hashes in one Discover call; the clients split above it."""
    max_message_bytes: int
    """The largest request message the server accepts."""
    quota_remaining: int | None
    """New numbers the account may still test, or None when no quota is enforced."""
    oprf_suite: str = ""
    """The RFC 9497 suite of BlindEvaluate ("ristretto255-SHA512"), or empty."""
    oprf_key_id: str = ""
    """The id of the server's OPRF key, or empty."""
    bucket_prefix_bits: int = 0
    """Bits of an OPRF output that name its bucket in FetchBuckets."""
    max_buckets: int = 0
    """The most buckets one FetchBuckets may ask for (bounds the response's size)."""
    max_previous: int = 0
    """The most hashes in a request's ``previous_hashes`` or ``removed_hashes``: what fits
    beside a full batch (a request carries at most ``max_batch + max_previous`` in all).
    0 when the server does not announce it (an older server): see ``previous_limit``."""

    @property
    def previous_limit(self) -> int:
        """``max_previous``, or what fits beside a full batch, for an older server.

        A server that does not announce it (0) limits ``previous_hashes`` to what fits in
        ``max_message_bytes`` beside a full batch: the SDK derives that, as it once did.
        """
        if self.max_previous:
            return self.max_previous
        fits = (self.max_message_bytes - MESSAGE_OVERHEAD_BYTES) // CONTACT_HASH_SIZE
        return max(0, fits - self.max_batch)

    @classmethod
    def from_proto(cls, message: discovery_pb2.DiscoveryConfig) -> ServerConfig:
        """Read the GetConfig answer."""
        quota = message.quota_remaining if message.HasField("quota_remaining") else None
        return cls(
            message.contact_hash_version,
            message.max_batch,
            message.max_message_bytes,
            quota,
            message.oprf_suite,
            message.oprf_key_id,
            message.bucket_prefix_bits,
            message.max_buckets,
            message.max_previous,
        )


def ask_config() -> Flow[ServerConfig]:
    """GetConfig, read but not checked (each use checks what it needs)."""
    message = yield from ask(GET_CONFIG, discovery_pb2.GetConfigRequest())
    return ServerConfig.from_proto(message)


def check_server(config: ServerConfig) -> None:
    """Refuse a server whose contact hashes or batches this SDK cannot use."""
    if config.contact_hash_version != CONTACT_HASH_VERSION:
        raise ProtocolError(
            f"the server expects contact-hash version {config.contact_hash_version}; "
            f"this SDK speaks version {CONTACT_HASH_VERSION}"
        )
    if config.max_batch < 1:
        raise ProtocolError("the server announced max_batch 0")


def check_private(config: ServerConfig) -> None:
    """Refuse to run private mode against parameters this SDK cannot use."""
    check_server(config)
    if config.oprf_suite != oprf.SUITE or not config.oprf_key_id:
        raise ProtocolError(f"the server offers no {oprf.SUITE} private mode")
    if not 0 <= config.bucket_prefix_bits <= 32 or config.max_buckets < 1:
        raise ProtocolError("the server announced unusable bucket parameters")


def check_key(config: ServerConfig, key_id: str) -> None:
    """Refuse an evaluation made under another OPRF key than ``config`` announced."""
    # A key that changed between GetConfig and BlindEvaluate (a rotation, or servers that
    # disagree) would put wrong outputs in the cache: stop, so the next call starts afresh.
    if key_id != config.oprf_key_id:
        raise ProtocolError("the server's OPRF key changed during discovery; retry")
