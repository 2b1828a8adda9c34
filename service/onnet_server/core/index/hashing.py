"""The 64-bit hash of user ids that the index's tables use, on one id or many at once.

FNV-1a from a seed, then mixed, compiled (_native.pyx): one id per change, a whole arena of
ids when a table of millions of users is built. A base file stores its seed, so every
process that maps it finds users where the builder put them. tests/unit/test_native.py
holds the compiled code to a plain-Python statement of the function.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from onnet_server.core import _native

__all__ = ["user_hash", "user_hashes"]


def user_hash(user_id: str, seed: int) -> int:
    """The hash of one user id."""
    return _native.user_hash(user_id.encode("ascii"), seed)


def user_hashes(
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.integer],
    lengths: npt.NDArray[np.integer],
    seed: int,
) -> npt.NDArray[np.uint64]:
    """``user_hash`` of the ids at ``data[starts[i] : starts[i] + lengths[i]]``."""
    return _native.user_hashes(
        np.ascontiguousarray(data, dtype=np.uint8),
        np.ascontiguousarray(starts, dtype=np.int64),
        np.ascontiguousarray(lengths, dtype=np.int64),
        seed,
    )
