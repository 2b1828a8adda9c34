"""The reads every store answers from process memory: its index and its blocklists.

Lookups never leave the process (they keep working while Redis is away), so every store
answers them alike; a store keeps ``index`` and ``blocklists`` current and inherits these.
Inside a traced call, each batch lookup is a span that counts what was asked and found.
"""

from __future__ import annotations

from onnet.protocol import CONTACT_HASH_SIZE
from onnet_server.core._native import FingerprintKey, LookupJob
from onnet_server.core._resync_native import TokenStep
from onnet_server.core.blocklists import Blocklists
from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.index import RegistryIndex
from onnet_server.core.ports import Matches, ProbeThread
from onnet_server.spans import lookup_span, traced

__all__ = ["IndexReads", "LookedUpBatch"]


class IndexReads:
    """The RegistryStore reads, over ``self.index`` and ``self.blocklists``."""

    index: RegistryIndex
    blocklists: Blocklists
    lookup_thread: ProbeThread | None = None
    """Where Discover's probes run off the event loop (set by the server), if anywhere."""

    def __len__(self) -> int:
        """Registered users, as the index knows them."""
        return len(self.index)

    def match(self, fingerprints: bytes, excluded: frozenset[str] = frozenset()) -> Matches:
        """Positions (ascending) and users of the discoverable holders, less ``excluded``."""
        return self.index.match(fingerprints, excluded)

    def discover_answer(
        self, fingerprints: bytes, excluded: frozenset[str], token: bytes, *, distinct: bool = False
    ) -> tuple[bytes, int]:
        """``match`` as a serialized DiscoverResponse carrying ``token`` (see the port)."""
        if not traced():  # Discover's hot path: no span, no attribute calls
            return self.index.discover_answer(fingerprints, excluded, token, distinct)
        with lookup_span("lookup") as span:
            span.set_attribute("onnet.hashes", len(fingerprints) // FINGERPRINT_SIZE)
            encoded, match_count = self.index.discover_answer(
                fingerprints, excluded, token, distinct
            )
            span.set_attribute("onnet.matches", match_count)
        return encoded, match_count

    async def look_up_batch(
        self,
        hashes: bytes,
        key: FingerprintKey,
        excluded: frozenset[str],
        *,
        step: TokenStep | None = None,
    ) -> LookedUpBatch:
        """Look up packed 32-byte ``hashes`` by their fingerprints under ``key`` (see the port).

        One job makes the fingerprints, the batch's set digest, the probe and the token's
        ``step``, on the lookup thread when there is one, so that the event loop spends
        nothing on the batch but the hand-over and the answer.
        """
        index = self.index
        job = index.lookup_job(hashes, excluded, key, step=step)
        if traced():
            with lookup_span("lookup") as span:
                span.set_attribute("onnet.hashes", len(hashes) // CONTACT_HASH_SIZE)
                job.run_here()
                digest = job.digest()
                span.set_attribute("onnet.matches", job.found)
        else:
            thread = self.lookup_thread
            if thread is None or not await thread.run(job):
                job.run_here()
            digest = job.digest()
        if digest is None:  # the thread could not run it (memory, or its AES context)
            job.run_here()
            digest = job.digest()
            if digest is None:
                raise MemoryError("a lookup could not allocate its scratch")
        return LookedUpBatch(self, index, job, excluded, digest)

    def holders(self, fingerprints: bytes) -> Matches:
        """Every registered holder among ``fingerprints``, hidden ones too."""
        with lookup_span("lookup holders") as span:
            span.set_attribute("onnet.hashes", len(fingerprints) // FINGERPRINT_SIZE)
            found = self.index.holders(fingerprints)
            span.set_attribute("onnet.matches", len(found.user_ids))
        return found

    def blocks(self, user_id: str, fingerprint: bytes) -> bool | None:
        """Whether ``user_id`` blocked ``fingerprint``'s number; None when no such user."""
        if self.index.record(user_id) is None:
            return None
        return self.blocklists.blocks(user_id, fingerprint)

    def blocked_by(self, user_id: str) -> frozenset[str] | None:
        """The users who block the number ``user_id`` holds now; None if not registered."""
        record = self.index.record(user_id)
        return self.blocklists.blockers_of(record.fingerprint) if record else None

    def bucket_entry_count(self) -> int:
        """Private mode: how many entries buckets serve."""
        return self.index.bucket_entry_count()

    def bucket_answer(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> bytes:
        """Private mode: the asked buckets' entries, as a serialized FetchBucketsResponse."""
        with lookup_span("lookup buckets") as span:
            span.set_attribute("onnet.buckets", len(buckets))
            answer = self.index.bucket_answer(buckets, bits, hidden)
            span.set_attribute("onnet.response_bytes", len(answer))
        return answer

    def bucket_entries(
        self, buckets: list[int], bits: int, hidden: frozenset[str] = frozenset()
    ) -> dict[int, list[bytes]]:
        """Private mode: every entry of the asked buckets, but those of ``hidden`` users."""
        return self.index.bucket_entries(buckets, bits, hidden)


class LookedUpBatch:
    """A Discover batch looked up: its fingerprints, the batch as a set, and its answer."""

    def __init__(
        self,
        reads: IndexReads,
        index: RegistryIndex,
        job: LookupJob,
        excluded: frozenset[str],
        digest: tuple[int, int, int],
    ) -> None:
        """What ``job``, made by ``index`` of ``reads``' for a caller ``excluded``, found."""
        self._reads = reads
        self._index = index
        self._job = job
        self._excluded = excluded
        self.fingerprints: bytes = job.fingerprints
        """The batch's fingerprints under the key, 16 bytes each, in order."""
        self.distinct: int = digest[0]
        """How many distinct fingerprints (numbers) the batch holds."""
        self.digest: tuple[int, int] = (digest[1], digest[2])
        """The sums modulo 2^64 of the distinct fingerprints' two 64-bit lanes."""

    def answer(self, token: bytes) -> tuple[bytes, int]:
        """The DiscoverResponse (serialized) carrying ``token``, and its match count.

        The probe's result is used only if the index made no change since the job was
        made (it may have read arrays being written); else the lookup runs again, here.
        """
        reads, index = self._reads, self._index
        answer = self._job.answer(index.edits, token) if reads.index is index else None
        if answer is not None:
            return answer
        distinct = self.distinct * FINGERPRINT_SIZE == len(self.fingerprints)
        return reads.discover_answer(self.fingerprints, self._excluded, token, distinct=distinct)
