# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The index's hot loops, compiled: the probe of a batch of fingerprints, and user-id hashes.

numpy's per-call overhead, not memory, was what a 1,000-hash lookup cost (a dozen array
operations of a few microseconds each, for work of a few nanoseconds a hash): here each
query costs its own cache misses and little else. The semantics are those of the numpy
reference in tests/unit/test_native.py, which the tests hold this module to.
"""

from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t, uint64_t

import numpy as np

cdef uint64_t _FNV_PRIME = 0x100000001B3
cdef uint64_t _MIX = 0xFF51AFD7ED558CCD
cdef int64_t _EMPTY = -1
cdef int64_t _ROW_BITS = 0xFFFFFFFF

cdef inline uint64_t _finish(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= _MIX
    return h ^ (h >> 33)


def user_hash(bytes data, uint64_t seed):
    """FNV-1a of ``data`` from ``seed``, then mixed (core/index/hashing.py)."""
    cdef uint64_t h = seed
    cdef const unsigned char[:] view = data
    cdef Py_ssize_t i
    for i in range(view.shape[0]):
        h = (h ^ view[i]) * _FNV_PRIME
    return _finish(h)


def user_hashes(const uint8_t[:] data, const int64_t[:] starts, const int64_t[:] lengths,
                uint64_t seed):
    """``user_hash`` of ``data[starts[i] : starts[i] + lengths[i]]`` for every i."""
    cdef Py_ssize_t count = starts.shape[0]
    result = np.empty(count, dtype=np.uint64)
    cdef uint64_t[:] out = result
    cdef Py_ssize_t i, j
    cdef uint64_t h
    with nogil:
        for i in range(count):
            h = seed
            for j in range(starts[i], starts[i] + lengths[i]):
                h = (h ^ data[j]) * _FNV_PRIME
            out[i] = _finish(h)
    return result


def lookup(const uint64_t[:] query_hi, const uint64_t[:] query_lo,
           const uint64_t[:] base_hi, const uint64_t[:] base_lo,
           const uint32_t[:] base_directory, int directory_bits,
           const uint8_t[:] overridden, const uint64_t[:] base_claim,
           const int64_t[:] slots, uint64_t mask, uint64_t home_mask,
           const uint64_t[:] overlay_hi, const uint64_t[:] overlay_lo,
           const uint8_t[:] overlay_discoverable, bint discoverable_only):
    """The holders of the queried fingerprints: (positions, rows, in_overlay), compacted.

    ``positions`` (uint32, ascending) are the queries that found a holder (a discoverable
    one if ``discoverable_only``); ``rows`` its row, in the overlay where ``in_overlay``,
    else in the base.

    The overlay is asked first: a number with a claim there has its base row overridden.
    Its table is tagged open addressing (core/index/row_slots.py): a slot holds the row and
    the top 31 bits of the fingerprint's first half; a probe chain ends at an empty slot.
    The base's rows are sorted by fingerprint; ``base_directory[top bits]`` is where the
    rows with those top bits start. A holder that is hidden costs the same reads as one
    that is not; only the kept ones are ever read further (their ids, by the caller).
    """
    cdef Py_ssize_t count = query_hi.shape[0]
    positions_out = np.empty(count, dtype=np.uint32)
    rows_out = np.empty(count, dtype=np.int64)
    in_overlay_out = np.empty(count, dtype=np.bool_)
    cdef uint32_t[:] positions = positions_out
    cdef int64_t[:] rows = rows_out
    cdef uint8_t[:] in_overlay = in_overlay_out.view(np.uint8)
    cdef Py_ssize_t i, found = 0
    cdef uint64_t hi, lo, slot, tag, top
    cdef int64_t value, row
    cdef uint32_t first, last
    cdef int shift = 64 - directory_bits
    cdef bint kept
    with nogil:
        for i in range(count):
            hi = query_hi[i]
            lo = query_lo[i]
            row = -1
            tag = hi >> 33
            slot = hi & home_mask
            while True:
                value = slots[slot]
                if value == _EMPTY:
                    break
                if value >= 0 and <uint64_t>(value >> 32) == tag:
                    if overlay_hi[value & _ROW_BITS] == hi and overlay_lo[value & _ROW_BITS] == lo:
                        row = value & _ROW_BITS
                        break
                slot = (slot + 1) & mask
            if row >= 0:
                kept = overlay_discoverable[row] or not discoverable_only
                if kept:
                    positions[found] = <uint32_t>i
                    rows[found] = row
                    in_overlay[found] = 1
                    found += 1
                continue
            top = (hi >> shift) if directory_bits else 0
            first = base_directory[top]
            last = base_directory[top + 1]
            while first < last:
                if base_hi[first] == hi:
                    if base_lo[first] == lo:
                        kept = not overridden[first] and (
                            not discoverable_only or (base_claim[first] >> 63) != 0)
                        if kept:
                            positions[found] = <uint32_t>i
                            rows[found] = first
                            in_overlay[found] = 0
                            found += 1
                        break
                elif base_hi[first] > hi:
                    break
                first += 1
    return positions_out[:found], rows_out[:found], in_overlay_out[:found]
