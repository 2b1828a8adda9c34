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

__all__ = ["return_freed_memory"]

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
