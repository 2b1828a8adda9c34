"""Private mode on the server: the OPRF key and BlindEvaluate (RFC 9497, mode OPRF).

The server sees only blinded elements: uniformly random group elements that say nothing
about the numbers behind them. Its one job here is to multiply them by its key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from onnet.protocol import buckets, oprf
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.validation import check_packed

__all__ = ["BlindEvaluator", "OprfKey", "private_entry"]


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

    def evaluate_checked(self, blinded_elements: bytes) -> bytes:
        """``blind_evaluate`` for elements that ``check`` has already accepted."""
        size = oprf.ELEMENT_SIZE
        secret = self.key.secret
        return b"".join(
            oprf.blind_evaluate_checked(secret, blinded_elements[i : i + size])
            for i in range(0, len(blinded_elements), size)
        )
