"""Private mode on the server: the OPRF key and BlindEvaluate (RFC 9497, mode OPRF).

The server sees only blinded elements: uniformly random group elements that say nothing
about the numbers behind them. Its one job here is to multiply them by its key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from onnet import _buckets as buckets
from onnet import _oprf as oprf
from onnet_server.core.errors import InvalidArgument

__all__ = ["BlindEvaluator", "OprfKey", "private_entry"]


@dataclass(frozen=True)
class OprfKey:
    """The server's OPRF key pair and its public id."""

    key_id: str
    secret: bytes = field(repr=False)
    public: bytes

    @classmethod
    def from_pepper(cls, pepper: bytes, key_id: str) -> OprfKey:
        """Derive the OPRF key from the pepper.

        One secret (and one rotation) then serves both modes; the derivation is one-way, so
        neither key reveals the other.
        """
        seed = hmac.new(pepper, b"onnet/oprf-seed/v1", hashlib.sha256).digest()
        secret, public = oprf.derive_key_pair(seed, b"onnet oprf key", oprf.Mode.OPRF)
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

    def blind_evaluate(self, blinded_elements: bytes) -> bytes:
        """Packed 32-byte evaluated elements, in order; InvalidArgument names a bad element."""
        size = oprf.ELEMENT_SIZE
        if len(blinded_elements) % size:
            raise InvalidArgument(
                "blinded_elements",
                f"length {len(blinded_elements)} is not a multiple of {size} bytes",
            )
        count = len(blinded_elements) // size
        if count == 0:
            raise InvalidArgument("blinded_elements", "must hold at least one element")
        if count > self._max_batch:
            raise InvalidArgument(
                "blinded_elements",
                f"batch of {count} elements exceeds the limit of {self._max_batch}",
            )
        evaluated = []
        for index in range(count):
            element = blinded_elements[index * size : (index + 1) * size]
            try:
                evaluated.append(oprf.blind_evaluate(self.key.secret, element))
            except oprf.OprfError:
                # Whether an encoding is a valid element is public knowledge: saying which
                # one was wrong reveals nothing.
                raise InvalidArgument(
                    "blinded_elements",
                    f"element {index} is not a canonical, non-identity ristretto255 element",
                ) from None
        return b"".join(evaluated)
