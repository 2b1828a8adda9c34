"""Private mode on the server: the OPRF key and BlindEvaluate (RFC 9497, mode OPRF).

The server sees only blinded elements: uniformly random group elements that say nothing
about the numbers behind them. Its one job here is to multiply them by its key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from onnet.protocol import MESSAGE_OVERHEAD_BYTES, buckets, oprf
from onnet_server.core.bucket_size import ENTRIES_PER_BUCKET, prefix_bits_for
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.ports import RegistryStore
from onnet_server.core.validation import check_packed

__all__ = ["BlindEvaluator", "BucketServer", "OprfKey", "private_entry"]


@dataclass(frozen=True)
class OprfKey:
    """The server's OPRF key pair and its public id."""

    key_id: str
    secret: bytes = field(repr=False)
    public: bytes

    @classmethod
    def from_pepper(cls, pepper: bytes) -> OprfKey:
        """Derive the OPRF key from the pepper.

        One secret (and one rotation) then serves both modes; the derivation is one-way, so
        neither key reveals the other.
        """
        seed = hmac.new(pepper, b"onnet/oprf-seed/v1", hashlib.sha256).digest()
        secret, public = oprf.derive_key_pair(seed, b"onnet oprf key", oprf.Mode.OPRF)
        # The id names the key itself (a digest of the public key), so it changes exactly
        # when the key does, whatever id the pepper was given.
        key_id = hashlib.sha256(b"onnet/oprf-key-id:" + public).hexdigest()[:16]
        return cls(key_id, secret, public)


def private_entry(key: OprfKey, e164: str, user_id: str) -> bytes:
    """A user's bucket entry: the 4-byte prefix of T = OPRF(e164), then the sealed user id.

    T comes from RFC 9497's direct Evaluate: at registration the server holds both the key
    and the number.
    """
    output = oprf.evaluate(key.secret, e164.encode("ascii"))
    return output[: buckets.PREFIX_SIZE] + buckets.seal_entry(output, user_id)


class BlindEvaluator:
    """Applies the OPRF key to packed blinded elements."""

    def __init__(self, key: OprfKey, max_batch: int) -> None:
        """Evaluate under ``key``, at most ``max_batch`` elements a call."""
        self.key = key
        self._max_batch = max_batch

    def count(self, blinded_elements: bytes) -> int:
        """How many elements the packed bytes hold, from their length alone (no decoding).

        The cheapest refusal: a request of the wrong size or too many elements is refused
        before the quota is asked or any element is looked at.
        """
        return check_packed(
            "blinded_elements",
            blinded_elements,
            item_size=oprf.ELEMENT_SIZE,
            item="element",
            items="elements",
            max_count=self._max_batch,
            allow_empty=False,
        )

    def check(self, blinded_elements: bytes) -> int:
        """How many elements the packed bytes hold; InvalidArgument names a bad element.

        Cheap next to the evaluation (a decode, not a scalar multiplication), so a request
        is checked whole before it is charged to a quota or costs the server any real work;
        still about 4 us an element, so the server runs it in its work pool.
        """
        size = oprf.ELEMENT_SIZE
        count = self.count(blinded_elements)
        for index in range(count):
            try:
                oprf.check_element(blinded_elements[index * size : (index + 1) * size])
            except oprf.OprfError:
                # Whether an encoding is a valid element is public knowledge: saying which
                # one was wrong reveals nothing.
                raise InvalidArgument(
                    "blinded_elements",
                    f"element {index} is not a canonical, non-identity ristretto255 element",
                ) from None
        return count

    def blind_evaluate(self, blinded_elements: bytes) -> bytes:
        """Packed 32-byte evaluated elements, in order; InvalidArgument names a bad element."""
        self.check(blinded_elements)
        return self.evaluate_checked(blinded_elements)

    def evaluate_checked(self, blinded_elements: bytes) -> bytes:
        """``blind_evaluate`` for elements that ``check`` has already accepted."""
        size = oprf.ELEMENT_SIZE
        secret = self.key.secret
        return b"".join(
            oprf.blind_evaluate_checked(secret, blinded_elements[i : i + size])
            for i in range(0, len(blinded_elements), size)
        )


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
