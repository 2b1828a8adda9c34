"""Discovery: packed contact hashes in, the matching discoverable users out."""

from __future__ import annotations

from dataclasses import dataclass

from onnet import CONTACT_HASH_VERSION
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import Matches, RegistryStore
from onnet_server.core.validation import check_packed_hashes

__all__ = ["DiscoveryLimits", "DiscoveryParameters", "DiscoveryService"]


@dataclass(frozen=True)
class DiscoveryLimits:
    """Bounds on one Discover call."""

    max_batch: int
    """Most hashes in ``hashes``."""
    max_previous: int
    """Most hashes in ``previous_hashes``."""
    max_message_bytes: int
    """The transport's limit on a request, announced to clients."""


@dataclass(frozen=True)
class DiscoveryParameters:
    """What GetConfig announces."""

    contact_hash_version: int
    max_batch: int
    max_message_bytes: int
    quota_remaining: int | None


class DiscoveryService:
    """Matches uploads against the registry. Keeps nothing of what it is sent."""

    def __init__(
        self, store: RegistryStore, fingerprinter: Fingerprinter, limits: DiscoveryLimits
    ) -> None:
        """Serve lookups from ``store`` under the pepper behind ``fingerprinter``."""
        self._store = store
        self._fingerprinter = fingerprinter
        self._limits = limits

    def parameters(self) -> DiscoveryParameters:
        """The parameters a client needs before it uploads."""
        return DiscoveryParameters(
            contact_hash_version=CONTACT_HASH_VERSION,
            max_batch=self._limits.max_batch,
            max_message_bytes=self._limits.max_message_bytes,
            # Quotas on new numbers are not enforced yet (see README, "Privacy promises").
            quota_remaining=None,
        )

    def discover(self, hashes: bytes, previous_hashes: bytes) -> Matches:
        """Match packed 32-byte ``hashes``; ``previous_hashes`` is validated, not yet used."""
        check_packed_hashes("hashes", hashes, max_count=self._limits.max_batch, allow_empty=False)
        check_packed_hashes(
            "previous_hashes",
            previous_hashes,
            max_count=self._limits.max_previous,
            allow_empty=True,
        )
        return self._store.match(self._fingerprinter.fingerprints(hashes))
