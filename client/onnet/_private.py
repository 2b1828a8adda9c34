"""Private discovery's client steps, without I/O: blind, finalize, pick buckets, open entries.

Both Client and AsyncClient drive this. Finalized OPRF outputs are kept by contact hash
(in the sync state, under the server key that made them), so a re-sync blinds and evaluates
only numbers it has not seen before: only those cost quota.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from onnet.protocol import buckets, oprf

__all__ = ["OutputCache", "PrivatePlan"]

OutputCache = MutableMapping[bytes, bytes]
"""Contact hash -> finalized OPRF output, all under one server key."""


class PrivatePlan:
    """The private-mode steps for the distinct numbers of an address book."""

    def __init__(self, numbers: tuple[str, ...], hashes: bytes, cache: OutputCache) -> None:
        """Plan for ``numbers`` (E.164), reusing the outputs ``cache`` holds.

        ``hashes`` are the numbers' packed contact hashes, which key ``cache`` (the outputs
        of the server's current key).
        """
        self._numbers = numbers
        self._hashes = [hashes[32 * i : 32 * i + 32] for i in range(len(numbers))]
        self._cache = cache
        self.outputs: dict[int, bytes] = {
            i: cache[contact_hash]
            for i, contact_hash in enumerate(self._hashes)
            if contact_hash in cache
        }
        """Finalized output of each number (by index), once known."""
        self.evaluated = 0
        """How many numbers were sent for evaluation: each costs one unit of quota."""
        self._blinds: dict[int, bytes] = {}

    def blinded_batches(self, max_batch: int) -> Iterator[tuple[list[int], bytes]]:
        """(indexes, packed blinded elements) for the numbers with no output yet."""
        pending = [i for i in range(len(self._numbers)) if i not in self.outputs]
        for start in range(0, len(pending), max_batch):
            indexes = pending[start : start + max_batch]
            blinded = []
            for i in indexes:
                self._blinds[i], element = oprf.blind(self._numbers[i].encode("ascii"))
                blinded.append(element)
            self.evaluated += len(indexes)
            yield indexes, b"".join(blinded)

    def take_evaluated(self, indexes: list[int], evaluated: bytes) -> None:
        """Finalize one batch's evaluated elements into outputs (and the cache)."""
        size = oprf.ELEMENT_SIZE
        if len(evaluated) != size * len(indexes):
            raise oprf.OprfError
        for position, i in enumerate(indexes):
            number = self._numbers[i].encode("ascii")
            element = evaluated[position * size : (position + 1) * size]
            output = oprf.finalize(number, self._blinds.pop(i), element)
            self.outputs[i] = output
            self._cache[self._hashes[i]] = output

    def bucket_requests(self, bits: int, max_batch: int) -> list[list[int]]:
        """The distinct buckets to fetch, in requests of at most ``max_batch``."""
        wanted = sorted({buckets.bucket_of(output, bits) for output in self.outputs.values()})
        return [wanted[i : i + max_batch] for i in range(0, len(wanted), max_batch)]

    def matches(self, bits: int, entries: dict[int, list[bytes]]) -> dict[int, str]:
        """Index -> user id for every number whose entry is in its bucket."""
        found = {}
        for i, output in self.outputs.items():
            for entry in entries.get(buckets.bucket_of(output, bits), []):
                user_id = buckets.open_entry(output, entry)
                if user_id is not None:
                    found[i] = user_id
                    break
        return found
