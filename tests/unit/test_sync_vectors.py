"""Re-sync token handling's conformance vectors (tests/vectors/sync_parts_v1.json).

Each case is a client's state before a sync (its part bits, and each part's token and
covered hashes), an address book, the server's limits, and the requests the sync must send:
each part's hashes in book order, the token it shows, and its added and removed hashes.
`reference` below is docs/protocol.md's "Books larger than one request", step by step; the
file is its output, and the SDK's SyncState is held to the file.
`python -m tests.unit.test_sync_vectors` writes the file again.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import onnet
from tests.vectors import VECTORS, load

Case = dict[str, Any]


def h(label: str) -> str:
    """A contact hash for the vectors (any 32 bytes do; these are reproducible)."""
    return hashlib.sha256(f"onnet sync vector {label}".encode()).hexdigest()


def prefix(contact_hash: str) -> int:
    return int(contact_hash[:16], 16)


def reference(case: Case) -> dict[str, Any]:
    """The requests docs/protocol.md's steps 1 to 4 give for ``case``."""
    book, max_batch, max_hashes = case["book"], case["max_batch"], case["max_hashes"]
    bits = case["state"]["bits"]
    parts = {p["part"]: p for p in case["state"]["parts"]}
    start = bits
    while bits < 64 and 2 * len(book) > max_batch << bits:  # step 2: half a batch a part
        bits += 1
    while bits < 64 and max(Counter(prefix(x) >> (64 - bits) for x in book).values()) > max_batch:
        bits += 1  # step 2: no part over a batch
    requests = []
    for number in sorted({prefix(x) >> (64 - bits) for x in book}):
        hashes = [x for x in book if prefix(x) >> (64 - bits) == number]
        parent = parts.get(number >> (bits - start))  # step 3: a new part starts from its parent
        request = {"part": number, "hashes": hashes, "token": "", "added": [], "removed": []}
        if parent is not None:
            covered = set(parent["covered"])
            added = [x for x in hashes if x not in covered]
            removed = sorted(covered - set(hashes))
            fits = len(hashes) + len(added) + len(removed) <= max_hashes
            if fits and len(removed) <= max_hashes - max_batch:  # step 4: else pay again
                request.update(token=parent["token"], added=added, removed=removed)
        requests.append(request)
    return {"bits": bits, "requests": requests}


def cases() -> list[Case]:
    first = [h(f"a{i}") for i in range(10)]
    six = [h(f"b{i}") for i in range(6)]
    many = [h(f"c{i}") for i in range(10)]
    return [
        {
            "name": "a first sync: no token, parts of about half a batch",
            "max_batch": 8, "max_hashes": 1000, "state": {"bits": 0, "parts": []},
            "book": first,
        },
        {
            "name": "one part: two contacts added, two removed",
            "max_batch": 100, "max_hashes": 1000,
            "state": {"bits": 0, "parts": [{"part": 0, "token": "token-0", "covered": six}]},
            "book": [*six[:4], h("new-1"), h("new-2")],
        },
        {
            "name": "the book outgrew one part: each new part starts from its parent's token",
            "max_batch": 8, "max_hashes": 1000,
            "state": {"bits": 0, "parts": [{"part": 0, "token": "token-0", "covered": six}]},
            "book": [*six, *(h(f"d{i}") for i in range(4))],
        },
        {
            "name": "too many removed hashes to prove: the part is sent without its token",
            "max_batch": 4, "max_hashes": 10,
            "state": {"bits": 0, "parts": [{"part": 0, "token": "token-0", "covered": many}]},
            "book": many[:1],
        },
    ]  # fmt: skip


def vectors() -> dict[str, Any]:
    return {
        "source": (
            "tests/unit/test_sync_vectors.py: docs/protocol.md, 'Books larger than one "
            "request', steps 1 to 4, written out; tokens are opaque ASCII stand-ins"
        ),
        "cases": [{**case, "expected": reference(case)} for case in cases()],
    }


def state_of(case: Case) -> onnet.SyncState:
    """The SDK's state for ``case``, through its own serialization (format 3)."""
    parts = case["state"]["parts"]
    out = [b"onnet-sync-v3\n", bytes([case["state"]["bits"]]), len(parts).to_bytes(4, "big")]
    for part in parts:
        token = part["token"].encode("ascii")
        out += [part["part"].to_bytes(8, "big"), len(token).to_bytes(2, "big"), token]
        out += [len(part["covered"]).to_bytes(4, "big")]
        out += [bytes.fromhex(x) for x in sorted(part["covered"])]
    out += [bytes(2), bytes(4)]  # no private-mode outputs
    return onnet.SyncState.from_bytes(b"".join(out))


def test_the_published_vectors_follow_the_protocol() -> None:
    assert load("sync_parts_v1.json") == vectors()


def test_the_sdk_sends_what_each_vector_says() -> None:
    for case in load("sync_parts_v1.json")["cases"]:
        state = state_of(case)
        book = b"".join(bytes.fromhex(x) for x in case["book"])
        sent = state.syncs(book, case["max_batch"], case["max_hashes"])
        found = [
            {
                "part": sync.part,
                "hashes": hexes(sync.hashes),
                "token": sync.token.decode("ascii"),
                "added": hexes(sync.added_hashes),
                "removed": hexes(sync.removed_hashes),
            }
            for sync in sent
        ]
        assert {"bits": state.bits, "requests": found} == case["expected"], case["name"]


def hexes(packed: bytes) -> list[str]:
    return [packed[i : i + 32].hex() for i in range(0, len(packed), 32)]


if __name__ == "__main__":
    (VECTORS / "sync_parts_v1.json").write_text(json.dumps(vectors(), indent=1) + "\n")
