"""Types of the compiled module _native.pyx (see it for the documentation)."""

import numpy as np
import numpy.typing as npt

from onnet_server.core._resync_native import TokenStep

def user_hash(data: bytes, seed: int) -> int: ...
def user_hashes(
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    seed: int,
) -> npt.NDArray[np.uint64]: ...

class BaseView:
    def __init__(
        self,
        hi: npt.NDArray[np.uint64],
        lo: npt.NDArray[np.uint64],
        directory: npt.NDArray[np.uint32],
        claim: npt.NDArray[np.uint64],
        ids: npt.NDArray[np.uint8],
        id_end: npt.NDArray[np.uint16],
        id_block: npt.NDArray[np.uint64],
        block_bits: int,
        users: npt.NDArray[np.uint32],
        seed: int,
    ) -> None: ...
    def user_ids(self, rows: npt.NDArray[np.int64]) -> list[str]: ...
    def user_row(self, user: bytes) -> int: ...

class OverlayView:
    def __init__(
        self,
        slots: npt.NDArray[np.int64],
        mask: int,
        home_mask: int,
        hi: npt.NDArray[np.uint64],
        lo: npt.NDArray[np.uint64],
        discoverable: npt.NDArray[np.uint8],
        arena: bytearray | bytes,
        offsets: npt.NDArray[np.uint32],
        lengths: npt.NDArray[np.uint8],
    ) -> None: ...

def match(
    fingerprints: bytes,
    base: BaseView,
    overridden: npt.NDArray[np.uint8],
    overlay: OverlayView,
    excluded_overlay: npt.NDArray[np.int64],
    excluded_base: npt.NDArray[np.int64],
    discoverable_only: bool,
) -> tuple[npt.NDArray[np.uint32], list[str]]: ...
def discover_answer(
    fingerprints: bytes,
    base: BaseView,
    overridden: npt.NDArray[np.uint8],
    overlay: OverlayView,
    excluded_overlay: npt.NDArray[np.int64],
    excluded_base: npt.NDArray[np.int64],
    token: bytes,
    distinct: bool = False,
) -> tuple[bytes, int]: ...
def arena_user_row(
    slots: npt.NDArray[np.int32],
    mask: int,
    home_mask: int,
    arena: bytearray | bytes,
    offsets: npt.NDArray[np.uint32],
    lengths: npt.NDArray[np.uint8],
    user: bytes,
    user_hash: int,
) -> tuple[int, int]: ...
def split_halves(packed: bytes) -> tuple[bytes, bytes]: ...
def first_halves(packed: bytes) -> bytes: ...
def distinct_sums(blocks: bytes) -> tuple[int, int, int]: ...
def xor_bytes(left: bytes, right: bytes) -> bytes: ...
def lane_sums(values: npt.NDArray[np.uint64]) -> tuple[int, int]: ...
def block_sums(blocks: bytes) -> tuple[int, int]: ...
def first_rows(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]: ...

class _Entries: ...
class _EntryClass(_Entries): ...
class _SortedEntries(_Entries): ...

def sorted_entries(
    prefixes: npt.NDArray[np.uint32],
    rows: npt.NDArray[np.int32],
    data: npt.NDArray[np.uint8],
    size: int,
    lost: npt.NDArray[np.uint8],
    hidden: npt.NDArray[np.int64],
) -> _SortedEntries: ...
def entry_class(
    directory: npt.NDArray[np.uint32],
    low: npt.NDArray[np.uint16],
    data: npt.NDArray[np.uint8],
    size: int,
    first: int,
) -> _EntryClass: ...
def encode_buckets(
    wanted: npt.NDArray[np.int64],
    bits: int,
    classes: list[_Entries],
    left_out: npt.NDArray[np.uint32],
    extra: dict[int, list[bytes]],
) -> bytes: ...

class FingerprintKey:
    def __init__(self, key: bytes) -> None: ...

class LookupJob:
    def __init__(
        self,
        data: bytes,
        base: BaseView,
        overridden: npt.NDArray[np.uint8],
        overlay: OverlayView,
        excluded_overlay: npt.NDArray[np.int64],
        excluded_base: npt.NDArray[np.int64],
        key: FingerprintKey | None = None,
        distinct: bool = False,
        edits: int = 0,
        step: TokenStep | None = None,
    ) -> None: ...
    def run_here(self) -> None: ...
    @property
    def fingerprints(self) -> bytes: ...
    @property
    def found(self) -> int: ...
    def digest(self) -> tuple[int, int, int] | None: ...
    def answer(self, edits: int, token: bytes) -> tuple[bytes, int] | None: ...

class LookupWorker:
    def __init__(self, capacity: int) -> None: ...
    def fileno(self) -> int: ...
    def submit(self, job: LookupJob) -> bool: ...
    def serve(self) -> None: ...
    def finished(self) -> list[LookupJob]: ...
    def cancel(self, job: LookupJob) -> None: ...
    def pending(self) -> tuple[int, int, int]: ...
    def stop(self) -> None: ...
