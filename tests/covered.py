"""What a SyncState's tokens prove: the tests read it from the state's own covered hashes."""

from __future__ import annotations

import onnet


def covers(state: onnet.SyncState, contact_hash: bytes) -> bool:
    """Whether ``state``'s tokens cover ``contact_hash`` (it is among what they prove)."""
    packed = state.previous_hashes()
    return contact_hash in {packed[i : i + 32] for i in range(0, len(packed), 32)}
