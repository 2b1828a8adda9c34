"""Private mode's buckets on the server: FetchBuckets answered from the in-process index.

An entry opens only with the OPRF output of its own number (onnet.protocol.buckets), so the
server may hand every entry of a bucket to whoever asks; it bounds how many buckets a call
asks for, so that full buckets still fit in one response.
"""

from __future__ import annotations

from onnet.protocol import MESSAGE_OVERHEAD_BYTES
from onnet_server.core.bucket_size import ENTRIES_PER_BUCKET, prefix_bits_for
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.ports import RegistryStore

__all__ = ["BucketServer"]

_BITS_SLACK = 1  # a client may ask with one bit fewer, if the registry grew meanwhile
# The largest entry: 8-byte tag, 12-byte nonce, the sealed id (a length byte and up to 64
# characters, padded to a multiple of 16: 80 bytes), 16-byte AEAD tag, and protobuf
# framing; a bucket asked with one bit fewer holds up to twice the usual 31.
_MAX_SEALED_ID = -(-(1 + 64) // 16) * 16
_MAX_ENTRY_BYTES = 8 + 12 + _MAX_SEALED_ID + 16 + 3
_MAX_BUCKET_ENTRIES = 2 * (2 * ENTRIES_PER_BUCKET - 1)


class BucketServer:
    """FetchBuckets: entries of the asked buckets, from the store's in-process index."""

    def __init__(self, store: RegistryStore, max_message_bytes: int) -> None:
        """Serve ``store``'s entries in responses below ``max_message_bytes``."""
        self._store = store
        self._max_bytes = max_message_bytes - MESSAGE_OVERHEAD_BYTES
        self.max_buckets = max(1, self._max_bytes // (_MAX_BUCKET_ENTRIES * _MAX_ENTRY_BYTES))
        """The most buckets one call may ask for: full buckets still fit in a response."""

    def prefix_bits(self) -> int:
        """The bucket prefix length that GetConfig announces now (from the served entries)."""
        return prefix_bits_for(self._store.bucket_entry_count())

    def fetch(
        self, prefix_bits: int, buckets: list[int], hidden: frozenset[str] = frozenset()
    ) -> bytes:
        """The serialized FetchBucketsResponse of the distinct ``buckets``, ascending.

        None of ``hidden`` users' entries are in it.
        """
        current = self.prefix_bits()
        lowest = max(0, current - _BITS_SLACK)
        if not lowest <= prefix_bits <= current:
            # The registry may have grown since the client's GetConfig: one bit less is fine.
            also = f" or {lowest}" if lowest < current else ""
            raise InvalidArgument(
                "prefix_bits",
                f"must be {current}{also}, as GetConfig says now; ask it again",
            )
        if not buckets:
            raise InvalidArgument("buckets", "must name at least one bucket")
        if len(buckets) > self.max_buckets:
            raise InvalidArgument(
                "buckets", f"{len(buckets)} buckets exceed the limit of {self.max_buckets}"
            )
        if max(buckets) >> prefix_bits:
            raise InvalidArgument("buckets", f"a bucket number is not below 2^{prefix_bits}")
        answer = self._store.bucket_answer(buckets, prefix_bits, hidden)
        if len(answer) > self._max_bytes:  # only a registry far off its bucket size gets here
            raise InvalidArgument("buckets", "the response would be too large; ask for fewer")
        return answer
