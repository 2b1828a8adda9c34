"""Turning an address book into uploads, and answers back into matches (no I/O here).

Both Client and AsyncClient use this, so that deduplication, batching and the mapping from
matched indexes back to the raw entries are written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from onnet._contact_hash import CONTACT_HASH_SIZE, contact_hash
from onnet._phone import InvalidNumberError, normalize

__all__ = ["DiscoveryPlan", "DiscoveryResult", "InvalidEntry", "Match"]


@dataclass(frozen=True)
class Match:
    """An address-book entry whose number belongs to an on-network user."""

    raw: str
    """The entry as it was written in the address book."""
    e164: str
    """Its normalized number."""
    user_id: str
    """The on-network user who holds that number."""


@dataclass(frozen=True)
class InvalidEntry:
    """An address-book entry that was not uploaded because its number is not valid."""

    raw: str
    """The entry as it was written."""
    reason: str
    """Why it has no certain E.164 form (e.g. "too short")."""


@dataclass(frozen=True)
class DiscoveryResult:
    """The outcome of one discovery over a whole address book."""

    matches: tuple[Match, ...]
    """Every entry that is on the network, in address-book order."""
    rejected: tuple[InvalidEntry, ...]
    """Every entry that could not be normalized, in address-book order."""
    uploaded: int
    """How many distinct numbers were checked (sent as contact hashes or OPRF elements)."""
    charged: int = 0
    """How many of them cost quota: those the sync state had not paid for before."""


class DiscoveryPlan:
    """The distinct numbers of an address book, their hashes, and where they came from."""

    def __init__(self, numbers: Iterable[str], default_region: str | None) -> None:
        """Normalize every entry of ``numbers``; invalid entries are set aside with a reason."""
        self._entries: list[tuple[str, str]] = []
        self._rejected: list[InvalidEntry] = []
        index_of: dict[str, int] = {}
        for raw in numbers:
            try:
                e164 = normalize(raw, default_region)
            except InvalidNumberError as exc:
                self._rejected.append(InvalidEntry(raw, exc.reason))
                continue
            index_of.setdefault(e164, len(index_of))
            self._entries.append((raw, e164))
        self.unique_numbers: tuple[str, ...] = tuple(index_of)
        """Each distinct E.164 number once, in first-seen order: the upload order."""
        self.hashes = b"".join(contact_hash(e164) for e164 in self.unique_numbers)
        """The packed contact hashes of ``unique_numbers``."""

    def batches(self, max_batch: int) -> Iterator[tuple[int, bytes]]:
        """Yield ``(first_index, packed_hashes)`` slices of at most ``max_batch`` hashes."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        step = max_batch * CONTACT_HASH_SIZE
        for start in range(0, len(self.hashes), step):
            yield start // CONTACT_HASH_SIZE, self.hashes[start : start + step]

    def result(self, user_by_index: Mapping[int, str], charged: int) -> DiscoveryResult:
        """Map matched indexes into ``unique_numbers`` back onto every raw entry.

        ``charged`` is how many numbers cost quota.
        """
        user_by_number = {self.unique_numbers[i]: user for i, user in user_by_index.items()}
        matches = tuple(
            Match(raw, e164, user_by_number[e164])
            for raw, e164 in self._entries
            if e164 in user_by_number
        )
        return DiscoveryResult(matches, tuple(self._rejected), len(self.unique_numbers), charged)
