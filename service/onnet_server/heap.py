"""Giving freed memory back to the operating system after a large load or a new base.

Loading millions of records and swapping in a new base free gigabytes at once, but the C
allocator keeps freed pages for reuse, so the process would go on holding them (measured:
about 500 bytes per user after a load from Redis). ``malloc_trim`` hands them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

__all__ = ["keep_out_of_collections", "return_freed_memory"]

_log = logging.getLogger(__name__)
_LIBC = ctypes.util.find_library("c")


def return_freed_memory() -> None:
    """Collect garbage, then ask the C allocator to return free pages (glibc; else no-op)."""
    gc.collect()
    if _LIBC is None:
        return
    try:
        trim = ctypes.CDLL(_LIBC).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to ask
        return
    trim(0)


def keep_out_of_collections() -> None:
    """Move every object alive now (modules, gRPC's and the store's) out of the collector.

    Called once serving has started: those objects live as long as the process, and
    without this every full collection walks all of them again, on the event loop.
    """
    gc.collect()
    gc.freeze()
