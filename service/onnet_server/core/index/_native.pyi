"""Types of the compiled module _native.pyx (see it for the documentation)."""

import numpy as np
import numpy.typing as npt

def user_hash(data: bytes, seed: int) -> int: ...
def user_hashes(
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    seed: int,
) -> npt.NDArray[np.uint64]: ...
def lookup(
    query_hi: npt.NDArray[np.uint64],
    query_lo: npt.NDArray[np.uint64],
    base_hi: npt.NDArray[np.uint64],
    base_lo: npt.NDArray[np.uint64],
    base_directory: npt.NDArray[np.uint32],
    directory_bits: int,
    overridden: npt.NDArray[np.uint8],
    base_claim: npt.NDArray[np.uint64],
    slots: npt.NDArray[np.int64],
    mask: int,
    home_mask: int,
    overlay_hi: npt.NDArray[np.uint64],
    overlay_lo: npt.NDArray[np.uint64],
    overlay_discoverable: npt.NDArray[np.uint8],
    discoverable_only: bool,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], npt.NDArray[np.bool_]]: ...
