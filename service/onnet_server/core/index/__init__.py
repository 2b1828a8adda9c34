"""The in-process registry index: a base (immutable, shareable) and an overlay of changes."""

from onnet_server.core.index.base import BaseIndex
from onnet_server.core.index.combined import Change, RegistryIndex, Snapshot, new_seed
from onnet_server.core.index.overlay import Record, split_fingerprints

__all__ = [
    "BaseIndex",
    "Change",
    "Record",
    "RegistryIndex",
    "Snapshot",
    "new_seed",
    "split_fingerprints",
]
