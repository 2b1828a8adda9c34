"""Private discovery without I/O: its steps, and the flow that asks the server for each.

The steps blind, finalize, pick buckets and open entries (``PrivatePlan``); the flow
(``discover_private``) sends what they make and hands them the answers. Both Client and
AsyncClient drive the flow. Finalized OPRF outputs are kept by contact hash (in the sync
state, under the server key that made them), so a re-sync blinds and evaluates only
numbers it has not seen before: only those cost quota.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from onnet._config import ask_config, check_key, check_private
from onnet._plan import DiscoveryPlan, DiscoveryResult
from onnet._resync import SyncState
from onnet._rpc import BLIND_EVALUATE, FETCH_BUCKETS, Flow, ask
from onnet.protocol import buckets, oprf
from onnet.v1 import discovery_pb2

__all__ = ["OutputCache", "PrivatePlan", "discover_private"]

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


def discover_private(plan: DiscoveryPlan, state: SyncState) -> Flow[DiscoveryResult]:
    """Discover ``plan``'s numbers in private mode (RFC 9497), reusing ``state``'s outputs.

    The server sees blinded elements and bucket numbers only; ``state`` keeps the outputs
    of the book's numbers, so that a re-sync evaluates (and pays for) only new ones.
    """
    # Fresh parameters: the bucket size follows the registry's.
    config = yield from ask_config()
    check_private(config)
    outputs = state.private_outputs(config.oprf_key_id)
    private = PrivatePlan(plan.unique_numbers, plan.hashes, outputs)
    for indexes, blinded in private.blinded_batches(config.max_batch):
        evaluate = discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded)
        response = yield from ask(BLIND_EVALUATE, evaluate)
        check_key(config, response.key_id)
        private.take_evaluated(indexes, response.evaluated_elements)
    bits = config.bucket_prefix_bits
    entries: dict[int, list[bytes]] = {}
    for wanted in private.bucket_requests(bits, config.max_buckets):
        fetch = discovery_pb2.FetchBucketsRequest(prefix_bits=bits, buckets=wanted)
        for bucket in (yield from ask(FETCH_BUCKETS, fetch)).buckets:
            entries[bucket.bucket] = list(bucket.entries)
    state.keep_outputs(plan.hashes)
    return plan.result(private.matches(bits, entries), private.evaluated)
