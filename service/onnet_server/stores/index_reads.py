"""The reads every store answers from process memory: its index and its blocklists.

Lookups never leave the process (they keep working while Redis is away), so every store
answers them alike; a store keeps ``index`` and ``blocklists`` current and inherits these.
Inside a traced call, each batch lookup is a span that counts what was asked and found.
"""

from __future__ import annotations

from onnet_server.core.blocklists import Blocklists
from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.index import RegistryIndex
from onnet_server.core.ports import Matches, ProbeThread
from onnet_server.spans import lookup_span, traced

__all__ = ["IndexReads"]


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

    async def discover_answer_off_loop(
        self, fingerprints: bytes, excluded: frozenset[str], token: bytes, *, distinct: bool = False
    ) -> tuple[bytes, int]:
        """``discover_answer``, its probe on the lookup thread when there is one.

        The probe's result is used only if the index made no change while it ran (the
        probe may have read arrays being written); else the lookup runs again, here.
        """
        thread = self.lookup_thread
        if thread is not None and not traced():
            index = self.index
            job = index.lookup_job(fingerprints, excluded, token, distinct)
            if not await thread.run(job):
                job.run_here()
            # None when the index changed while the probe ran: the job itself knows.
            answer = job.answer(index.edits) if self.index is index else None
            if answer is not None:
                return answer
        return self.discover_answer(fingerprints, excluded, token, distinct=distinct)

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
