"""The client's side of re-sync tokens: what it already paid for, and the proof of it.

A Discover answer carries a token covering a set of contact hashes the account has paid
for. The server keeps no list of an account's contacts; this object is that list, on the
client, as hashes, with the tokens that prove it.

A re-sync sends its book once, in the difference form (docs/protocol.md): the current
hashes, the token, the hashes the token does not cover (``added_hashes``, charged) and the
hashes it covers that the book no longer holds (``removed_hashes``). The answer's token
covers exactly the hashes sent.

Private mode needs no token: a re-sync is free when its numbers' OPRF outputs are known,
since only new numbers are evaluated (and charged). The state keeps those outputs too, by
contact hash and under the server key that made them, pruned to the book of the last
private sync.

A token covers one request, and a request holds at most ``max_batch`` hashes, so a book is
cut into parts by the leading bits of each hash: with ``bits`` bits there are 2^bits parts,
part p holding the hashes whose first ``bits`` bits (most significant bit of byte 0 first)
read p. ``bits`` is chosen so that a part holds at most about half a batch on average
(leaving room to grow) and never more than a batch, and it is never reduced, so a hash
stays in its part from sync to sync. Each part has
its own token and covered set, and is synced by one request. When ``bits`` grows, each new
part starts from its parent's token (the part that held its hashes under fewer bits) and
lists the parent's hashes outside it as removed: a token proves coverage as often as it is
shown; it is not spent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from onnet._contact_hash import CONTACT_HASH_SIZE

__all__ = ["PartSync", "SyncState", "part_of"]

_MAGIC_V1 = b"onnet-sync-v1\n"
_MAGIC_V2 = b"onnet-sync-v2\n"
_MAGIC = b"onnet-sync-v3\n"
_PREFIX_BITS = 64  # parts are named from the first 8 bytes of a hash: plenty to split on


def part_of(contact_hash: bytes, bits: int) -> int:
    """The part of ``contact_hash`` among 2^``bits``: its first ``bits`` bits, big-endian."""
    return int.from_bytes(contact_hash[:8], "big") >> (_PREFIX_BITS - bits)


@dataclass(frozen=True)
class PartSync:
    """One Discover request of a sync: a part of the book, with the proof of its token."""

    part: int
    """The part's number (see ``part_of``)."""
    positions: tuple[int, ...]
    """Where each hash of ``hashes`` is in the book, in order (to place the matches)."""
    hashes: bytes
    """The part's hashes, packed, in book order."""
    token: bytes
    """The token the part starts from, or empty (then the other fields are too)."""
    added_hashes: bytes
    """Hashes of ``hashes`` that ``token`` does not cover: each costs quota."""
    removed_hashes: bytes
    """Hashes that ``token`` covers and ``hashes`` does not hold."""


@dataclass(frozen=True)
class _Part:
    """A token and the set it covers (after a split, the parent's: beyond the part)."""

    token: bytes
    covered: frozenset[bytes]


class SyncState:
    """The re-sync tokens of an account and the distinct contact hashes each covers.

    Keep one per account (and server); ``to_bytes``/``from_bytes`` store it across runs. It
    holds hashes of the address book and, after a private sync, their OPRF outputs, so
    store it as privately as the address book itself.
    A client's ``discover`` takes the whole address book: parts of a state that a sync
    does not send again are forgotten, and pay again if they come back.
    """

    def __init__(self, token: bytes = b"", covered: bytes = b"") -> None:
        """A state of one part, with ``token`` covering the packed 32-byte hashes ``covered``."""
        if len(covered) % CONTACT_HASH_SIZE:
            raise ValueError("covered hashes must be 32 bytes each")
        if covered and not token:
            raise ValueError("covered hashes need the token that covers them")
        self._bits = 0
        self._parts: dict[int, _Part] = {}
        self._output_key = ""
        self._outputs: dict[bytes, bytes] = {}
        if token:
            self._parts[0] = _Part(token, frozenset(_split(covered)))

    @property
    def bits(self) -> int:
        """Parts are named by this many leading bits of a hash (2^bits parts; 0 at first)."""
        return self._bits

    @property
    def token(self) -> bytes:
        """The token of a state of one part (empty before the first sync).

        A state of several parts has a token a part (``tokens``): ValueError.
        """
        if self._bits:
            raise ValueError("a state of several parts has a token a part: see tokens()")
        part = self._parts.get(0)
        return part.token if part else b""

    def tokens(self) -> dict[int, bytes]:
        """The token of each part that has one, by part number."""
        return {number: part.token for number, part in sorted(self._parts.items())}

    def __len__(self) -> int:
        """How many distinct hashes the tokens cover."""
        return len(frozenset().union(*(part.covered for part in self._parts.values())))

    def previous_hashes(self) -> bytes:
        """Every covered hash, packed and sorted: for one part, the old form's field."""
        return b"".join(sorted(frozenset().union(*(p.covered for p in self._parts.values()))))

    def advance(self, token: bytes, batch: bytes) -> None:
        """The old form, one part only: take the answer to ``batch`` sent with this state.

        In the old form the answer's token covers what this state covered plus ``batch``.
        An answer without a token (a server that issues none) leaves nothing to carry.
        """
        if self._bits:
            raise ValueError("the old form has one token: a state of several parts cannot")
        if not token:
            self.clear()
            return
        part = self._parts.get(0)
        before = part.covered if part else frozenset()
        self._parts[0] = _Part(token, before | frozenset(_split(batch)))

    def syncs(self, book: bytes, max_batch: int, max_hashes: int) -> list[PartSync]:
        """The requests of a sync of ``book`` (packed distinct hashes), one a part.

        Raises ``bits`` when a part would hold more than half of ``max_batch`` on average or
        more than ``max_batch`` at all, and forgets the parts the book no longer touches. A
        part whose request would carry more than ``max_hashes`` hashes in all, or more than
        ``max_hashes - max_batch`` removed ones, is sent without its token (it pays again
        for its hashes). An empty book changes nothing.
        Send each request, then ``settle`` it with its answer's token.
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        hashes = _split(book)
        if not hashes:
            return []
        prefixes = [part_of(h, _PREFIX_BITS) for h in hashes]
        bits = self._bits_for(prefixes, max_batch)
        positions: dict[int, list[int]] = {}
        for position, prefix in enumerate(prefixes):
            positions.setdefault(prefix >> (_PREFIX_BITS - bits), []).append(position)
        # A new part starts from its parent's token: the part that held its hashes before.
        grown = bits - self._bits
        self._parts = {
            number: self._parts[number >> grown]
            for number in positions
            if number >> grown in self._parts
        }
        self._bits = bits
        return [
            self._sync_of(number, tuple(at), [hashes[i] for i in at], max_batch, max_hashes)
            for number, at in sorted(positions.items())
        ]

    def settle(self, sync: PartSync, token: bytes) -> None:
        """Take the token of the answer to ``sync``: its part now covers exactly its hashes.

        An answer without a token (a server that issues none) leaves the part nothing.
        """
        if token:
            self._parts[sync.part] = _Part(token, frozenset(_split(sync.hashes)))
        else:
            self._parts.pop(sync.part, None)

    def forget(self, sync: PartSync) -> PartSync:
        """Forget the token the server refused for ``sync``'s part; the request without it."""
        self._parts.pop(sync.part, None)
        return replace(sync, token=b"", added_hashes=b"", removed_hashes=b"")

    def clear(self) -> None:
        """Forget every token and its hashes (``bits`` stays)."""
        self._parts.clear()

    def private_outputs(self, key_id: str) -> dict[bytes, bytes]:
        """Private mode's finalized OPRF outputs under server key ``key_id``, by contact hash.

        The mapping itself: a private sync reads and adds to it. Outputs of another key
        are forgotten (they open nothing under this one).
        """
        if key_id != self._output_key:
            self._output_key, self._outputs = key_id, {}
        return self._outputs

    def keep_outputs(self, book: bytes) -> None:
        """Forget the outputs of every hash that ``book`` (packed hashes) does not hold."""
        kept = frozenset(_split(book))
        self._outputs = {h: out for h, out in self._outputs.items() if h in kept}

    def to_bytes(self) -> bytes:
        """A serialization for ``from_bytes``.

        Format 3: format 2's parts (one token and its hashes each), then the private
        outputs' key id and each output with its contact hash.
        """
        out = [_MAGIC, bytes([self._bits]), len(self._parts).to_bytes(4, "big")]
        for number, part in sorted(self._parts.items()):
            out += [
                number.to_bytes(8, "big"),
                len(part.token).to_bytes(2, "big"),
                part.token,
                len(part.covered).to_bytes(4, "big"),
                *sorted(part.covered),
            ]
        key_id = self._output_key.encode()
        out += [len(key_id).to_bytes(2, "big"), key_id, len(self._outputs).to_bytes(4, "big")]
        for contact_hash, output in sorted(self._outputs.items()):
            out += [contact_hash, len(output).to_bytes(1, "big"), output]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> SyncState:
        """Read what ``to_bytes`` wrote (formats 1 to 3); else ValueError."""
        if data.startswith(_MAGIC_V1) and len(data) >= len(_MAGIC_V1) + 2:
            start = len(_MAGIC_V1) + 2
            length = int.from_bytes(data[len(_MAGIC_V1) : start], "big")
            return cls(data[start : start + length], data[start + length :])
        if not data.startswith((_MAGIC, _MAGIC_V2)):
            raise ValueError("not an onnet sync state")
        reader = _Reader(data, len(_MAGIC))  # both magics are as long
        state = cls()
        state._bits = reader.number(1)
        if state._bits > _PREFIX_BITS:
            raise ValueError("not an onnet sync state: too many bits")
        for _ in range(reader.number(4)):
            number = reader.number(8)
            token = reader.take(reader.number(2))
            covered = reader.take(reader.number(4) * CONTACT_HASH_SIZE)
            if not token or number >> state._bits or number in state._parts:
                raise ValueError("not an onnet sync state: a malformed part")
            state._parts[number] = _Part(token, frozenset(_split(covered)))
        if data.startswith(_MAGIC):
            try:
                state._output_key = reader.take(reader.number(2)).decode()
            except UnicodeDecodeError:
                raise ValueError("not an onnet sync state: a malformed key id") from None
            for _ in range(reader.number(4)):
                contact_hash = reader.take(CONTACT_HASH_SIZE)
                state._outputs[contact_hash] = reader.take(reader.number(1))
        reader.end()
        return state

    def _bits_for(self, prefixes: list[int], max_batch: int) -> int:
        """The fewest bits, no fewer than now, that leave every part small enough."""
        bits = self._bits
        # About half a batch a part on average: the room parts grow into between syncs.
        while bits < _PREFIX_BITS and 2 * len(prefixes) > max_batch << bits:
            bits += 1
        while bits < _PREFIX_BITS:
            largest = max(Counter(p >> (_PREFIX_BITS - bits) for p in prefixes).values())
            if largest <= max_batch:
                break
            bits += 1
        return bits

    def _sync_of(
        self,
        number: int,
        positions: tuple[int, ...],
        hashes: list[bytes],
        max_batch: int,
        max_hashes: int,
    ) -> PartSync:
        sync = PartSync(number, positions, b"".join(hashes), b"", b"", b"")
        part = self._parts.get(number)
        if part is None:
            return sync
        added = [h for h in hashes if h not in part.covered]
        removed = part.covered.difference(hashes)
        # The server takes at most max_hashes in all, of which at most max_hashes - max_batch
        # removed (it must leave room for a whole batch).
        too_many_removed = len(removed) > max_hashes - max_batch
        if too_many_removed or len(hashes) + len(added) + len(removed) > max_hashes:
            return sync  # the proof does not fit: pay for the part again
        return replace(
            sync,
            token=part.token,
            added_hashes=b"".join(added),
            removed_hashes=b"".join(sorted(removed)),
        )


class _Reader:
    """Reads a serialized state from the front; ValueError when it ends too soon or late."""

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self._offset = offset

    def take(self, size: int) -> bytes:
        if self._offset + size > len(self._data):
            raise ValueError("not an onnet sync state: truncated")
        self._offset += size
        return self._data[self._offset - size : self._offset]

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def end(self) -> None:
        if self._offset != len(self._data):
            raise ValueError("not an onnet sync state: bytes after the end")


def _split(packed: bytes) -> list[bytes]:
    return [packed[i : i + CONTACT_HASH_SIZE] for i in range(0, len(packed), CONTACT_HASH_SIZE)]
