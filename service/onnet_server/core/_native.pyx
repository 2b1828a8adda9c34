# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot loops of a Discover, compiled: the index probe, user ids, and the bytes around them.

numpy's per-call overhead, not memory, was what a 1,000-hash lookup cost (a dozen array
operations of a few microseconds each, for work of a few nanoseconds a hash): here each
query costs its own cache misses and little else. Each function does one pass over a batch
that numpy needed several calls (and copies) for. tests/unit/test_native.py holds every
function to a plain-Python statement of what it computes.

Two habits keep the fixed cost of a call near nothing:
- arrays are taken as numpy arrays and read through their data pointer, after a check of
  their type and layout (``_data``), not as typed memoryviews, whose set-up costs about a
  microsecond each (a match reads fourteen arrays);
- the per-request functions keep the GIL: they run for microseconds, and releasing it would
  hand it to gRPC's polling thread and wait to get it back, which costs more than the loop.
"""

cimport numpy as cnp
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.ref cimport PyObject
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy
from posix.fcntl cimport F_SETFD, F_SETFL, FD_CLOEXEC, O_NONBLOCK, fcntl
from posix.unistd cimport close, pipe, read, write

from onnet_server.core._resync_native cimport (
    EVP_MAC_CTX, EVP_MAC_CTX_free, TokenStep, onnet_mac_context_new,
)

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define ONNET_PREFETCH(address) __builtin_prefetch(address)
    #define ONNET_LOWEST_BIT(bits) __builtin_ctz(bits)
    #else
    #define ONNET_PREFETCH(address) ((void)(address))
    static int ONNET_LOWEST_BIT(unsigned int bits) {
        int at = 0;
        while (!(bits & 1u)) { bits >>= 1; at++; }
        return at;
    }
    #endif

    /* Which of a window's 8 tagged slots carry ``tag`` in their top half, and which are
       empty (-1), as two 8-bit masks. A live slot's top half is its tag (below 2**31); an
       empty slot or a tombstone has all ones there, so it never carries a tag. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    /* Four slots' halves gathered: their top halves (lanes 1 and 3 of each pair) and their
       bottom halves (lanes 0 and 2), as 4-bit masks of the slots whose top half is ``tags``
       and of the slots that are all ones (empty). */
    static inline void onnet_four_slots(const int64_t* slots, __m128i tags,
                                        unsigned int* tagged, unsigned int* empty) {
        const __m128 first = _mm_castsi128_ps(_mm_loadu_si128((const __m128i*)slots));
        const __m128 second = _mm_castsi128_ps(_mm_loadu_si128((const __m128i*)(slots + 2)));
        const __m128i top = _mm_castps_si128(_mm_shuffle_ps(first, second, _MM_SHUFFLE(3, 1, 3, 1)));
        const __m128i bottom = _mm_castps_si128(_mm_shuffle_ps(first, second, _MM_SHUFFLE(2, 0, 2, 0)));
        *tagged = (unsigned int)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(top, tags)));
        *empty = (unsigned int)_mm_movemask_ps(_mm_castsi128_ps(
            _mm_cmpeq_epi32(_mm_and_si128(top, bottom), _mm_set1_epi32(-1))));
    }
    static inline void onnet_window_masks(const int64_t* window, uint32_t tag,
                                          unsigned int* tagged, unsigned int* empty) {
        const __m128i tags = _mm_set1_epi32((int)tag);
        unsigned int low_tagged, low_empty, high_tagged, high_empty;
        onnet_four_slots(window, tags, &low_tagged, &low_empty);
        onnet_four_slots(window + 4, tags, &high_tagged, &high_empty);
        *tagged = low_tagged | (high_tagged << 4);
        *empty = low_empty | (high_empty << 4);
    }
    #else
    static inline void onnet_window_masks(const int64_t* window, uint32_t tag,
                                          unsigned int* tagged, unsigned int* empty) {
        unsigned int found_tags = 0, found_empty = 0;
        int slot;
        for (slot = 0; slot < 8; slot++) {
            found_tags |= (unsigned int)((uint64_t)window[slot] >> 32 == tag) << slot;
            found_empty |= (unsigned int)(window[slot] == -1) << slot;
        }
        *tagged = found_tags;
        *empty = found_empty;
    }
    #endif
    """
    void __builtin_prefetch "ONNET_PREFETCH" (const void* address) noexcept nogil
    int _lowest_bit "ONNET_LOWEST_BIT" (unsigned int bits) noexcept nogil  # bits != 0
    void _window_masks "onnet_window_masks" (const int64_t* window, uint32_t tag,
                                             unsigned int* tagged,
                                             unsigned int* empty) noexcept nogil

cdef enum:
    _GROUP = 16  # queries whose memory reads are started together (see ``match``)
    _WINDOW = 8  # tagged slots in one cache line: core/index/row_slots.py's WINDOW

# Stand-ins for empty arrays, whose data may not be read but must be a valid pointer.
cdef cnp.ndarray _ONE_BYTE = np.zeros(1, np.uint8)
cdef cnp.ndarray _ONE_ROW = np.zeros(1, np.int64)
cdef cnp.ndarray _ONE_PAIR = np.zeros((1, 2), np.uint64)

cdef uint64_t _FNV_PRIME = 0x100000001B3
cdef uint64_t _MIX = 0xFF51AFD7ED558CCD
cdef int64_t _EMPTY = -1
cdef int64_t _ROW_BITS = 0xFFFFFFFF


cdef inline uint64_t _finish(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= _MIX
    return h ^ (h >> 33)


cdef inline uint64_t _le64(const uint8_t* p) noexcept nogil:
    """The little-endian 64-bit integer at ``p`` (one load on a little-endian machine)."""
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef const void* _data(cnp.ndarray array, int type_number, str name) except NULL:
    """The data of a C-contiguous ``array`` of numpy type ``type_number``, or ValueError."""
    if cnp.PyArray_TYPE(array) != type_number:
        raise ValueError(f"{name}: dtype mismatch, {array.dtype} is not the one expected")
    if not cnp.PyArray_IS_C_CONTIGUOUS(array):
        raise ValueError(f"{name}: not C-contiguous")
    return cnp.PyArray_DATA(array)


cdef const uint8_t* _bytes_data(object data, Py_ssize_t* size) except NULL:
    """The bytes of a ``bytes`` or ``bytearray`` object (a bytearray's move when resized)."""
    if isinstance(data, bytes):
        size[0] = PyBytes_GET_SIZE(data)
        return <const uint8_t*>PyBytes_AS_STRING(data)
    if isinstance(data, bytearray):
        size[0] = PyByteArray_GET_SIZE(data)
        return <const uint8_t*>PyByteArray_AS_STRING(data)
    raise TypeError("expected bytes or a bytearray")


cdef inline uint64_t _fnv(const uint8_t* data, Py_ssize_t size, uint64_t seed) noexcept nogil:
    cdef uint64_t h = seed
    cdef Py_ssize_t i
    for i in range(size):
        h = (h ^ data[i]) * _FNV_PRIME
    return _finish(h)


def user_hash(bytes data, uint64_t seed):
    """FNV-1a of ``data`` from ``seed``, then mixed (core/index/hashing.py)."""
    return _fnv(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), seed)


def user_hashes(cnp.ndarray data, cnp.ndarray starts, cnp.ndarray lengths, uint64_t seed):
    """``user_hash`` of ``data[starts[i] : starts[i] + lengths[i]]`` for every i."""
    cdef const uint8_t* arena = <const uint8_t*>_data(data, cnp.NPY_UINT8, "data")
    cdef const int64_t* begin = <const int64_t*>_data(starts, cnp.NPY_INT64, "starts")
    cdef const int64_t* size = <const int64_t*>_data(lengths, cnp.NPY_INT64, "lengths")
    cdef Py_ssize_t i, count = starts.shape[0]
    if lengths.shape[0] != count:
        raise ValueError("starts and lengths differ in length")
    result = np.empty(count, dtype=np.uint64)
    cdef uint64_t* out = <uint64_t*>cnp.PyArray_DATA(result)
    with nogil:  # a whole arena at once (a base being built): seconds, worth releasing
        for i in range(count):
            out[i] = _fnv(arena + begin[i], size[i], seed)
    return result


cdef class BaseView:
    """A base's arrays (core/index/base.py) as the lookups read them: a base never changes.

    Holds the arrays (so that their memory lives as long as the view) and their data.
    """

    cdef object arrays
    cdef const uint64_t* hi
    cdef const uint64_t* lo
    cdef const uint32_t* directory
    cdef int directory_bits
    cdef const uint64_t* claim
    cdef const uint8_t* ids
    cdef const uint16_t* id_end
    cdef const uint64_t* id_block
    cdef int block_bits
    cdef const uint32_t* users
    cdef Py_ssize_t users_size
    cdef Py_ssize_t rows
    cdef uint64_t seed

    def __init__(self, cnp.ndarray hi, cnp.ndarray lo, cnp.ndarray directory,
                 cnp.ndarray claim, cnp.ndarray ids, cnp.ndarray id_end,
                 cnp.ndarray id_block, int block_bits, cnp.ndarray users, uint64_t seed):
        """The fingerprint halves (sorted), their directory, claims, ids and users table."""
        cdef Py_ssize_t slots = directory.shape[0] - 1
        if slots < 1 or slots & (slots - 1):
            raise ValueError("the directory has a power of two slots, plus one")
        if lo.shape[0] != hi.shape[0] or claim.shape[0] != hi.shape[0]:
            raise ValueError("hi, lo and claim differ in length")
        self.arrays = (hi, lo, directory, claim, ids, id_end, id_block, users)
        self.hi = <const uint64_t*>_data(hi, cnp.NPY_UINT64, "hi")
        self.lo = <const uint64_t*>_data(lo, cnp.NPY_UINT64, "lo")
        self.directory = <const uint32_t*>_data(directory, cnp.NPY_UINT32, "directory")
        self.directory_bits = slots.bit_length() - 1
        self.claim = <const uint64_t*>_data(claim, cnp.NPY_UINT64, "claim")
        # An empty array's data pointer may be anything but NULL-checked: give it one byte.
        self.ids = <const uint8_t*>_data(ids if ids.shape[0] else _ONE_BYTE,
                                         cnp.NPY_UINT8, "ids")
        self.id_end = <const uint16_t*>_data(id_end, cnp.NPY_UINT16, "id_end")
        self.id_block = <const uint64_t*>_data(id_block, cnp.NPY_UINT64, "id_block")
        self.block_bits = block_bits
        self.users = <const uint32_t*>_data(users, cnp.NPY_UINT32, "users")
        self.users_size = users.shape[0]
        self.rows = hi.shape[0]
        self.seed = seed

    cdef inline uint64_t top(self, uint64_t hi) noexcept nogil:
        """The directory slot of a fingerprint's first half."""
        return (hi >> (64 - self.directory_bits)) if self.directory_bits else 0

    cdef inline int64_t row_of(self, uint64_t hi, uint64_t lo) noexcept nogil:
        """The row of a fingerprint, or -1: the directory's run for its top bits, in order."""
        cdef uint64_t top = self.top(hi)
        cdef uint32_t first = self.directory[top]
        cdef uint32_t last = self.directory[top + 1]
        while first < last:
            if self.hi[first] == hi:
                if self.lo[first] == lo:
                    return first
            elif self.hi[first] > hi:
                return -1
            first += 1
        return -1

    cdef inline void id_span(self, int64_t row, uint64_t* start, uint64_t* end) noexcept nogil:
        cdef uint64_t block = self.id_block[row >> self.block_bits]
        cdef int64_t low_mask = (1 << self.block_bits) - 1
        start[0] = block if (row & low_mask) == 0 else block + self.id_end[row - 1]
        end[0] = block + self.id_end[row]

    cdef inline object user_id(self, int64_t row):
        cdef uint64_t start, end
        self.id_span(row, &start, &end)
        return PyUnicode_DecodeASCII(<const char*>(self.ids + start), end - start, NULL)

    def user_ids(self, cnp.ndarray rows):
        """The user ids of ``rows`` (int64, each a row of this base)."""
        cdef const int64_t* wanted = <const int64_t*>_data(rows, cnp.NPY_INT64, "rows")
        cdef Py_ssize_t i, count = rows.shape[0]
        result = [None] * count
        for i in range(count):
            result[i] = self.user_id(wanted[i])
        return result

    def user_row(self, bytes user):
        """The row of the user whose id is ``user`` (ASCII), or -1."""
        cdef const uint8_t* wanted = <const uint8_t*>PyBytes_AS_STRING(user)
        cdef Py_ssize_t length = PyBytes_GET_SIZE(user)
        cdef uint64_t h, start, end
        cdef Py_ssize_t slot
        cdef uint32_t value
        if self.users_size == 0:
            return -1
        h = _fnv(wanted, length, self.seed)
        slot = <Py_ssize_t>(((h >> 32) * <uint64_t>self.users_size) >> 32)
        while True:
            value = self.users[slot]
            if value == 0:
                return -1
            self.id_span(value - 1, &start, &end)
            if <Py_ssize_t>(end - start) == length and memcmp(self.ids + start, wanted, length) == 0:
                return value - 1
            slot += 1
            if slot == self.users_size:
                slot = 0


cdef inline bint _holds(const int64_t* rows, Py_ssize_t count, int64_t row) noexcept nogil:
    """Whether ascending ``rows`` hold ``row`` (>= 0): log2(count) steps for any row.

    ``rows`` is readable at 0 even when empty (``_ascending`` gives a stand-in): one row
    is read whether or not the search ran past the last, so the steps stay the same (P7).
    """
    cdef Py_ssize_t at = _lower_bound(rows, 0, count, <uint64_t>row)
    cdef bint inside = at < count
    return (rows[at * inside] == row) & inside


cdef int64_t* _ascending(cnp.ndarray rows, str name, Py_ssize_t* count) except NULL:
    """The data of ``rows`` (int64, ascending; a stand-in when empty), and their count."""
    count[0] = rows.shape[0]
    cdef const int64_t* data = <const int64_t*>_data(
        rows if rows.shape[0] else _ONE_ROW, cnp.NPY_INT64, name)
    cdef Py_ssize_t i
    for i in range(1, count[0]):
        if data[i - 1] > data[i]:
            raise ValueError(f"{name} must be in ascending order")
    return <int64_t*>data


cdef struct _OverlayProbe:
    int64_t found  # the row holding the number, or -1
    int64_t marks  # the row whose marks are read: the row found, or a stand-in
    uint64_t read  # what a stand-in's halves gave, to be kept by the caller


cdef class OverlayView:
    """An overlay's arrays (core/index/overlay.py) as one lookup reads them.

    Valid until the overlay's next change (which may replace its arrays as it grows, or
    move its id arena, a bytearray): the overlay keeps one until then (``Overlay.view``).
    It holds the arrays, so their data stays while it is read.
    """

    cdef object arrays
    cdef const int64_t* table
    cdef uint64_t mask
    cdef uint64_t home_mask
    cdef const uint64_t* hi
    cdef const uint64_t* lo
    cdef const uint8_t* shown
    cdef const uint8_t* names
    cdef const uint32_t* name_at
    cdef const uint8_t* name_length
    cdef int64_t rows

    def __init__(self, cnp.ndarray slots, uint64_t mask, uint64_t home_mask,
                 cnp.ndarray hi, cnp.ndarray lo, cnp.ndarray discoverable,
                 object arena, cnp.ndarray offsets, cnp.ndarray lengths):
        """The holders table (tagged RowSlots), the rows' halves, flags and ids."""
        cdef Py_ssize_t arena_size
        if slots.shape[0] != <Py_ssize_t>(mask + 1) or home_mask & ~mask:
            raise ValueError("slots, mask and home_mask disagree")
        if (mask + 1) % _WINDOW or home_mask % _WINDOW:  # a probe reads whole windows
            raise ValueError("slots come in whole windows, and chains start at one")
        self.arrays = (slots, hi, lo, discoverable, arena, offsets, lengths)
        self.table = <const int64_t*>_data(slots, cnp.NPY_INT64, "slots")
        self.mask = mask
        self.home_mask = home_mask
        self.hi = <const uint64_t*>_data(hi, cnp.NPY_UINT64, "overlay_hi")
        self.lo = <const uint64_t*>_data(lo, cnp.NPY_UINT64, "overlay_lo")
        self.shown = <const uint8_t*>_data(
            discoverable if discoverable.shape[0] else _ONE_BYTE, cnp.NPY_UINT8,
            "overlay_discoverable")
        self.names = _bytes_data(arena, &arena_size)
        self.name_at = <const uint32_t*>_data(offsets, cnp.NPY_UINT32, "offsets")
        self.name_length = <const uint8_t*>_data(lengths, cnp.NPY_UINT8, "lengths")
        if lo.shape[0] != hi.shape[0] or discoverable.shape[0] < hi.shape[0]:
            raise ValueError("overlay_hi, overlay_lo and overlay_discoverable differ in length")
        self.rows = hi.shape[0]

    cdef inline _OverlayProbe row_of(self, uint64_t hi, uint64_t lo) noexcept nogil:
        """The row holding a fingerprint (``found``, or -1), from its probe chain to the
        first empty slot, and the row whose marks the caller reads (``marks``).

        A slot holds the row and the top 31 bits of the fingerprint's first half
        (core/index/row_slots.py); a tombstone is negative but not empty. A row beyond this
        view's arrays (a probe on another thread, while the overlay grows) is never read.

        The same instructions whether the number is here or not (P7; bench/README.md,
        issue 12, eighth round). The chain is read a window (one cache line) at a time, its
        eight slots compared at once, to the window that holds the chain's end (at the
        tagged table's load a second window is rare, for held and unknown numbers alike:
        core/index/row_slots.py). Each window reads one row's halves: its first slot that
        carries the tag, or else a stand-in row picked from the keyed second half mixed
        with the window's first word (so that its read waits for the window, as a held
        row's does). Which row is read and whether it holds the number are decided with
        arithmetic, not branches: the branches a held number took on its own (the loop over
        its tagged slot, the choice of the row to report) cost it about 23 instructions and
        5 branches more than an unknown number, and 8 to 15% more time. Only a second slot
        of one window with the same tag (one chance in 2**31 a slot) takes a loop of its
        own. ``marks`` is the row found, or the home window's stand-in (see below);
        ``read`` what the rows' halves gave, for the caller to keep. The answer is returned by
        value, not through pointers, which the compiler would have to assume could point
        into the arrays the probe reads.
        """
        cdef _OverlayProbe probe
        cdef uint64_t slot = hi & self.home_mask
        cdef uint64_t windows = (self.mask + 1) // _WINDOW
        cdef uint64_t rows = <uint64_t>self.rows
        cdef uint64_t scatter = lo >> 32
        cdef const int64_t* window
        cdef int64_t found = -1, candidate, marks = -1, row
        cdef uint64_t word, stand_in, first_half, second_half, read = 0, is_real, is_hit
        cdef unsigned int tagged, empty
        if rows == 0:  # an overlay that never held anyone: nothing to read, for anyone
            probe.found, probe.marks, probe.read = -1, 0, 0
            return probe
        while windows:
            window = self.table + slot
            _window_masks(window, <uint32_t>(hi >> 33), &tagged, &empty)
            tagged &= (empty & (~empty + 1)) - 1  # the chain ends at its first empty slot
            word = <uint64_t>window[_lowest_bit(tagged | (1u << _WINDOW)) % _WINDOW]
            word &= <uint64_t>_ROW_BITS
            stand_in = ((scatter ^ word) * rows) >> 32
            # All ones when the first tagged slot names a row of this view, else zero.
            is_real = <uint64_t>0 - <uint64_t>((tagged != 0) & (word < rows))
            candidate = <int64_t>((word & is_real) | (stand_in & ~is_real))
            if marks < 0:  # the home window's: the stand-in whose marks an unknown number reads
                marks = candidate
            first_half = self.hi[candidate]
            second_half = self.lo[candidate]
            read ^= first_half ^ second_half
            is_hit = is_real & (<uint64_t>0 - <uint64_t>((first_half == hi) & (second_half == lo)))
            found = <int64_t>((<uint64_t>candidate & is_hit) | (<uint64_t>found & ~is_hit))
            tagged &= tagged - 1
            while tagged:  # another slot of this window with the same tag: almost never
                row = window[_lowest_bit(tagged)] & _ROW_BITS
                if row < self.rows and (self.hi[row] == hi) & (self.lo[row] == lo):
                    found = row
                tagged &= tagged - 1
            if empty:
                break
            slot = (slot + _WINDOW) & self.mask
            windows -= 1
        # The marks read are the home window's row, held or stand-in: known before its halves
        # are compared, so that their read waits for the same steps for a held number as for
        # an unknown one. Chosen with arithmetic after the comparison, they made the probe no
        # slower but its P7 spread larger (1.6% against 0.4% at the median, bench/README.md).
        # A number held beyond its home window, or in a second slot with its tag (about one
        # held number in a hundred at the table's load), is put right by one branch, which
        # is not taken for any other number, held or not. One test: written as two
        # (``found >= 0 and ...``), gcc branched on ``found >= 0`` first, which a batch
        # mixing held and unknown numbers mispredicts for half of them (such a batch took
        # 12 to 19% longer than one of unknown numbers). ``found >> 63`` is all ones for -1.
        if <uint64_t>(found ^ marks) & ~<uint64_t>(found >> 63):
            marks = found
        probe.found = found
        probe.marks = marks
        probe.read = read
        return probe


cdef uint64_t _sink = 0
"""Where a probe's stand-in reads go, so that the compiler keeps them (see ``_holders``)."""

cdef enum:
    _LEFT_OUT = -1  # a number whose holder is not kept (or who has none)


cdef inline const uint8_t* _id_of(BaseView base, OverlayView overlay, int64_t row,
                                  Py_ssize_t* length) noexcept nogil:
    """The id bytes of a kept row: a base row (>= 0), or overlay row r as -2 - r."""
    cdef uint64_t start, end
    if row >= 0:
        base.id_span(row, &start, &end)
        length[0] = <Py_ssize_t>(end - start)
        return base.ids + start
    row = -2 - row
    length[0] = overlay.name_length[row]
    return overlay.names + overlay.name_at[row]


cdef struct _Lookup:
    # One lookup's inputs as raw pointers (their objects are held by the caller) and its
    # outputs: what the probe reads and writes, with no Python object, so that it can run
    # without the GIL (``LookupJob``).
    const uint8_t* packed
    Py_ssize_t count
    const uint8_t* skip
    const uint64_t* claim
    uint64_t no_claim
    const int64_t* not_mine
    Py_ssize_t excluded_mine
    const int64_t* not_theirs
    Py_ssize_t excluded_theirs
    bint discoverable_only
    bint distinct
    uint32_t* positions
    int64_t* rows
    Py_ssize_t found
    # The batch as a set, for the re-sync token (core/resync.py): how many distinct
    # fingerprints, and the sums modulo 2^64 of their two 64-bit lanes.
    Py_ssize_t numbers
    uint64_t sum_first
    uint64_t sum_second


cdef int _open(_Lookup* lookup, bytes fingerprints, BaseView base, cnp.ndarray overridden,
               cnp.ndarray excluded_overlay, cnp.ndarray excluded_base,
               bint discoverable_only, bint distinct, uint32_t* positions,
               int64_t* rows) except -1:
    """Check a lookup's inputs and take their pointers (``positions`` and ``rows``, room for
    one per fingerprint, may be given later: before ``_run``)."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(fingerprints)
    if size % 16:
        raise ValueError("fingerprints are 16 bytes each")
    if overridden.shape[0] != base.rows:
        raise ValueError("overridden has one byte per base row")
    lookup.packed = <const uint8_t*>PyBytes_AS_STRING(fingerprints)
    lookup.count = size // 16
    lookup.skip = <const uint8_t*>_data(
        overridden if base.rows else _ONE_BYTE, cnp.NPY_UINT8, "overridden")
    lookup.no_claim = 0
    lookup.claim = base.claim if base.rows else &lookup.no_claim
    lookup.not_mine = _ascending(excluded_overlay, "excluded_overlay", &lookup.excluded_mine)
    lookup.not_theirs = _ascending(excluded_base, "excluded_base", &lookup.excluded_theirs)
    lookup.discoverable_only = discoverable_only
    lookup.distinct = distinct
    lookup.positions = positions
    lookup.rows = rows
    lookup.found = 0
    lookup.numbers = 0
    lookup.sum_first = lookup.sum_second = 0
    return 0


cdef bint _run(_Lookup* lookup, BaseView base, OverlayView overlay) noexcept nogil:
    """Fill ``positions`` and ``rows`` with the holders kept; ``found`` says how many.

    False (nothing found) when its scratch could not be allocated. The scratch is the
    probe's own, allocated and freed here, on whichever thread runs it: a job waiting in a
    queue holds none.

    Duplicates collapse first (a number asked 10,000 times is looked up once, and costs
    what any other number costs), on the fingerprints' keyed first halves, which no client
    can steer into one slot of the table that groups them; unless the caller knows the
    fingerprints are ``distinct`` (a re-sync token proved it), when the grouping is skipped.
    The answer does not depend on it: a repeated number would be looked up once per
    position, with the same result each time. Each distinct number is then looked up with
    the same steps whatever it finds (P7): both probes, the marks of the row found or of a
    stand-in row its fingerprint picks (keyed, so as scattered as found rows are), and a
    binary search of each exclusion list. Every position of a kept number is reported,
    ascending; a base row as itself, overlay row r as -2 - r.
    """
    cdef Py_ssize_t count = lookup.count
    lookup.found = 0
    if count == 0:
        return True
    cdef const uint8_t* packed = lookup.packed
    cdef const uint8_t* skip = lookup.skip
    cdef const uint64_t* claim = lookup.claim
    cdef bint discoverable_only = lookup.discoverable_only
    cdef Py_ssize_t table_size = 0 if lookup.distinct else _table_size(count)
    # One allocation: each number's kept row, each position's number, each number's first
    # position, and the grouping table.
    cdef char* scratch = <char*>malloc(
        1 + count * (sizeof(int64_t) + sizeof(Py_ssize_t) + sizeof(int32_t))
        + table_size * sizeof(int32_t))
    if scratch == NULL:
        return False
    cdef int64_t* kept_row = <int64_t*>scratch
    cdef Py_ssize_t* of_position = <Py_ssize_t*>(kept_row + count)
    cdef int32_t* first_of = <int32_t*>(of_position + count)
    cdef int32_t* table = first_of + count
    cdef Py_ssize_t i, d, group, last, found = 0
    cdef Py_ssize_t numbers
    if lookup.distinct:
        numbers = count
        for i in range(count):
            first_of[i] = <int32_t>i
            of_position[i] = i
    else:
        numbers = _group(packed, count, table, table_size, of_position, first_of)
    cdef uint64_t sum_first = 0, sum_second = 0
    for d in range(numbers):
        sum_first += _le64(packed + 16 * first_of[d])
        sum_second += _le64(packed + 16 * first_of[d] + 8)
    lookup.numbers = numbers
    lookup.sum_first = sum_first
    lookup.sum_second = sum_second
    cdef const uint8_t* block
    cdef uint64_t hi, lo, claimed, touched = 0
    cdef int64_t row, mine, at, mine_at
    cdef _OverlayProbe mine_probe
    cdef bint kept, skipped, out_mine, out_theirs, mine_shown, kept_mine, kept_theirs
    cdef uint64_t in_mine, keep
    group = 0
    while group < numbers:
        # A group's reads are started before any is used: the directory words, then the
        # first rows they name, so that a group's cache misses overlap instead of
        # following one another (the base's arrays are tens of megabytes).
        last = min(group + _GROUP, numbers)
        for d in range(group, last):
            hi = _le64(packed + 16 * first_of[d])
            __builtin_prefetch(&overlay.table[hi & overlay.home_mask])
            __builtin_prefetch(&base.directory[base.top(hi)])
        for d in range(group, last):
            hi = _le64(packed + 16 * first_of[d])
            __builtin_prefetch(&base.hi[base.directory[base.top(hi)]])
        for d in range(group, last):
            block = packed + 16 * first_of[d]
            hi = _le64(block)
            lo = _le64(block + 8)
            mine_probe = overlay.row_of(hi, lo)
            mine = mine_probe.found
            mine_at = mine_probe.marks
            touched ^= mine_probe.read
            # The same reads for every number, found or not, here or in the base: a number
            # not found reads the marks of a row its fingerprint picks, then is left out.
            row = base.row_of(hi, lo) if base.rows else -1
            at = row if row >= 0 else (<int64_t>(lo % <uint64_t>base.rows) if base.rows else 0)
            skipped = skip[at] != 0
            claimed = claim[at] >> 63
            touched ^= base.lo[at] if base.rows else 0  # as a found row's lo was read
            out_theirs = _holds(lookup.not_theirs, lookup.excluded_theirs, at)
            mine_shown = overlay.shown[mine_at] != 0
            out_mine = _holds(lookup.not_mine, lookup.excluded_mine, mine_at)
            # Both verdicts, then one picked with arithmetic. With a branch on where the
            # number was found, an unknown number's verdict did not wait for the reads a
            # held number's waits for (its marks, its search of the exclusions), and came
            # out about 4% faster than a held one. The arithmetic costs every number about
            # 15% of the probe's time (bench/README.md, issue 12, eighth round).
            kept_mine = (mine_shown | (not discoverable_only)) & (not out_mine)
            kept_theirs = ((row >= 0) & (not skipped) & (not out_theirs)
                           & ((claimed != 0) | (not discoverable_only)))
            in_mine = <uint64_t>0 - <uint64_t>(mine >= 0)
            kept = (kept_mine & <bint>(in_mine & 1)) | (kept_theirs & <bint>(~in_mine & 1))
            # An overlay row is told apart by its sign: -2 - mine.
            row = <int64_t>((<uint64_t>(-2 - mine) & in_mine) | (<uint64_t>row & ~in_mine))
            keep = <uint64_t>0 - <uint64_t>kept
            kept_row[d] = <int64_t>((<uint64_t>row & keep) | (<uint64_t>_LEFT_OUT & ~keep))
        group = last
    global _sink
    _sink ^= touched
    for i in range(count):
        row = kept_row[of_position[i]]
        if row != _LEFT_OUT:
            lookup.positions[found] = <uint32_t>i
            lookup.rows[found] = row
            found += 1
    free(scratch)
    lookup.found = found
    return True


cdef Py_ssize_t _holders(bytes fingerprints, BaseView base, cnp.ndarray overridden,
                         OverlayView overlay, cnp.ndarray excluded_overlay,
                         cnp.ndarray excluded_base, bint discoverable_only,
                         uint32_t* positions, int64_t* rows, bint distinct=False) except -1:
    """Fill ``positions`` and ``rows`` (room for one per fingerprint) with the holders
    kept, here and now (see ``_run``); return how many."""
    cdef _Lookup lookup
    _open(&lookup, fingerprints, base, overridden, excluded_overlay, excluded_base,
          discoverable_only, distinct, positions, rows)
    if not _run(&lookup, base, overlay):
        raise MemoryError()
    return lookup.found


def match(bytes fingerprints, BaseView base, cnp.ndarray overridden, OverlayView overlay,
          cnp.ndarray excluded_overlay, cnp.ndarray excluded_base, bint discoverable_only):
    """The holders of packed 16-byte ``fingerprints``: (positions, user ids).

    ``positions`` (uint32, ascending) are the fingerprints that found a holder (a
    discoverable one if ``discoverable_only``) who is not excluded; ``user ids`` theirs.
    The overlay is asked first: a number with a claim there has its base row overridden
    (``overridden``, one byte a base row). ``excluded_*`` are rows (a caller's blockers),
    ascending. See ``_holders`` for the steps, the same for every number.
    """
    cdef Py_ssize_t count = PyBytes_GET_SIZE(fingerprints) // 16
    positions_out = np.empty(count, dtype=np.uint32)
    cdef int64_t* rows = <int64_t*>malloc((count + 1) * sizeof(int64_t))
    if rows == NULL:
        raise MemoryError()
    cdef Py_ssize_t i, found, length
    cdef const uint8_t* name
    try:
        found = _holders(fingerprints, base, overridden, overlay, excluded_overlay,
                         excluded_base, discoverable_only,
                         <uint32_t*>cnp.PyArray_DATA(positions_out), rows)
        user_ids = [None] * found
        for i in range(found):
            name = _id_of(base, overlay, rows[i], &length)
            user_ids[i] = PyUnicode_DecodeASCII(<const char*>name, length, NULL)
        return positions_out[:found], user_ids
    finally:
        free(rows)


def discover_answer(bytes fingerprints, BaseView base, cnp.ndarray overridden,
                    OverlayView overlay, cnp.ndarray excluded_overlay,
                    cnp.ndarray excluded_base, bytes token, bint distinct=False):
    """``match``'s discoverable holders as a serialized DiscoverResponse carrying ``token``.

    Returns the answer's bytes and how many matches they hold. ``distinct``: the caller
    knows no fingerprint comes twice, so duplicates need no collapsing (see ``_run``).
    A ``LookupJob`` run here and now.
    """
    cdef LookupJob job = LookupJob(fingerprints, base, overridden, overlay, excluded_overlay,
                                   excluded_base, None, distinct)
    job.run(NULL, NULL)
    answer = job.answer(job.edits, token)
    if answer is None:
        raise MemoryError()
    return answer


cdef bytes _answer(BaseView base, OverlayView overlay, const uint32_t* positions,
                   const int64_t* rows, Py_ssize_t found, bytes token):
    """The DiscoverResponse of ``found`` kept rows, carrying ``token``.

    Fields (discovery.proto): 1 ``matched_indexes``, packed varints; 2 ``user_ids``, one
    length-delimited string each; 3 ``token``. Written straight from the index's rows, with
    no Python object per match.
    """
    cdef Py_ssize_t i, length, packed_size = 0, total
    cdef Py_ssize_t token_size = PyBytes_GET_SIZE(token)
    cdef const uint8_t* name
    cdef uint8_t* out
    for i in range(found):
        packed_size += _varint_size(positions[i])
    total = (1 + _varint_size(packed_size) + packed_size) if found else 0
    for i in range(found):
        _id_of(base, overlay, rows[i], &length)
        total += 1 + _varint_size(length) + length
    if token_size:
        total += 1 + _varint_size(token_size) + token_size
    answer = PyBytes_FromStringAndSize(NULL, total)
    out = <uint8_t*>PyBytes_AS_STRING(answer)
    if found:
        out[0] = 0x0A  # field 1, length-delimited (packed)
        out = _put_varint(out + 1, packed_size)
        for i in range(found):
            out = _put_varint(out, positions[i])
    for i in range(found):
        name = _id_of(base, overlay, rows[i], &length)
        out[0] = 0x12  # field 2, length-delimited
        out = _put_varint(out + 1, length)
        memcpy(out, name, length)
        out += length
    if token_size:
        out[0] = 0x1A  # field 3, length-delimited
        out = _put_varint(out + 1, token_size)
        memcpy(out, PyBytes_AS_STRING(token), token_size)
    return answer


def arena_user_row(cnp.ndarray slots, uint64_t mask, uint64_t home_mask, object arena,
                   cnp.ndarray offsets, cnp.ndarray lengths, bytes user, uint64_t user_hash):
    """(slot, row) of ``user`` in an overlay's users table (untagged RowSlots), or (-1, -1)."""
    cdef const int32_t* table = <const int32_t*>_data(slots, cnp.NPY_INT32, "slots")
    cdef Py_ssize_t arena_size
    cdef const uint8_t* names = _bytes_data(arena, &arena_size)
    cdef const uint32_t* name_at = <const uint32_t*>_data(offsets, cnp.NPY_UINT32, "offsets")
    cdef const uint8_t* name_length = <const uint8_t*>_data(lengths, cnp.NPY_UINT8, "lengths")
    cdef const uint8_t* wanted = <const uint8_t*>PyBytes_AS_STRING(user)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(user)
    cdef uint64_t slot = user_hash & home_mask
    cdef int32_t row
    if slots.shape[0] != <Py_ssize_t>(mask + 1) or home_mask & ~mask:
        raise ValueError("slots, mask and home_mask disagree")
    while True:
        row = table[slot]
        if row == -1:
            return -1, -1
        if row >= 0 and name_length[row] == length and memcmp(
                names + name_at[row], wanted, length) == 0:
            return <int64_t>slot, row
        slot = (slot + 1) & mask


cdef bytes _halves(bytes packed, Py_ssize_t offset):
    """The 16 bytes at ``offset`` (0 or 16) of each packed 32-byte hash, packed."""
    cdef const char* source = PyBytes_AS_STRING(packed)
    cdef Py_ssize_t i, size = PyBytes_GET_SIZE(packed)
    if size % 32:
        raise ValueError("whole 32-byte hashes only")
    cdef Py_ssize_t count = size // 32
    halves = PyBytes_FromStringAndSize(NULL, count * 16)
    cdef char* out = PyBytes_AS_STRING(halves)
    for i in range(count):
        memcpy(out + 16 * i, source + 32 * i + offset, 16)
    return halves


def split_halves(bytes packed):
    """(first halves, second halves) of packed 32-byte hashes, each packed 16 bytes a hash."""
    return _halves(packed, 0), _halves(packed, 16)


def first_halves(bytes packed):
    """The first half of each packed 32-byte hash, packed 16 bytes a hash (a lookup needs
    no second halves)."""
    return _halves(packed, 0)


def xor_bytes(bytes left, bytes right):
    """``left`` XOR ``right``, byte by byte (equal lengths)."""
    cdef Py_ssize_t i, size = PyBytes_GET_SIZE(left)
    if PyBytes_GET_SIZE(right) != size:
        raise ValueError("xor_bytes needs two operands of one length")
    result = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(result)
    cdef const uint8_t* a = <const uint8_t*>PyBytes_AS_STRING(left)
    cdef const uint8_t* b = <const uint8_t*>PyBytes_AS_STRING(right)
    for i in range(size):  # plain pointers: the compiler vectorizes the loop
        out[i] = a[i] ^ b[i]
    return result


cdef const uint64_t* _lanes_of(cnp.ndarray values) except NULL:
    """The data of an array of rows of two uint64 lanes."""
    if cnp.PyArray_NDIM(values) != 2 or (values.shape[0] and values.shape[1] != 2):
        raise ValueError("values are rows of two lanes")
    return <const uint64_t*>_data(values if values.shape[0] else _ONE_PAIR,
                                  cnp.NPY_UINT64, "values")


def lane_sums(cnp.ndarray values):
    """The sums, modulo 2^64, of each of the two columns of ``values``."""
    cdef const uint64_t* lanes = _lanes_of(values)
    cdef Py_ssize_t i, count = values.shape[0]
    cdef uint64_t first = 0, second = 0
    for i in range(count):
        first += lanes[2 * i]
        second += lanes[2 * i + 1]
    return first, second


def block_sums(bytes blocks):
    """The sums, modulo 2^64, of the two 64-bit lanes of each 16-byte block of ``blocks``.

    What ``lane_sums`` gives for the same bytes viewed as rows of two lanes, without the
    array (making one costs more than the sum).
    """
    cdef Py_ssize_t i, size = PyBytes_GET_SIZE(blocks), count = size // 16
    cdef uint64_t first = 0, second = 0, lane
    cdef const char* data = PyBytes_AS_STRING(blocks)
    if size % 16:
        raise ValueError("whole 16-byte blocks only")
    for i in range(count):
        memcpy(&lane, data + 16 * i, 8)
        first += lane
        memcpy(&lane, data + 16 * i + 8, 8)
        second += lane
    return first, second


cdef Py_ssize_t _group(const uint8_t* blocks, Py_ssize_t count, int32_t* table,
                       Py_ssize_t size, Py_ssize_t* of_position,
                       int32_t* first_of) noexcept nogil:
    """Number the distinct 16-byte blocks in order of first sight; return how many.

    ``of_position[i]`` is block i's number, ``first_of[n]`` where block n was first seen.
    ``table`` (``size`` slots, a power of two of at least twice ``count``) is keyed by a
    block's first 8 bytes, which must not be steerable by whoever chose the blocks (keyed
    values: a pseudorandom function of what a client sent), so that probe chains stay short
    whatever was sent.
    """
    cdef Py_ssize_t i, j, distinct = 0
    cdef uint64_t mask = size - 1
    cdef uint64_t slot
    cdef int32_t held
    for j in range(size):
        table[j] = -1
    for i in range(count):
        slot = _le64(blocks + 16 * i) & mask
        while True:
            held = table[slot]
            if held < 0:
                table[slot] = <int32_t>distinct
                first_of[distinct] = <int32_t>i
                of_position[i] = distinct
                distinct += 1
                break
            if memcmp(blocks + 16 * first_of[held], blocks + 16 * i, 16) == 0:
                of_position[i] = held
                break
            slot = (slot + 1) & mask
    return distinct


def distinct_sums(bytes blocks):
    """(distinct 16-byte blocks, the sums modulo 2^64 of their two lanes), in one pass.

    A first sync's charge and set digest: each distinct value counted and summed once
    (``first_rows`` then ``lane_sums`` over those rows, without the arrays). The blocks are
    keyed values (fingerprints), which no client can steer into one slot of the table.
    """
    cdef Py_ssize_t size = PyBytes_GET_SIZE(blocks), count = size // 16, j, distinct
    if size % 16:
        raise ValueError("whole 16-byte blocks only")
    if count == 0:
        return 0, 0, 0
    cdef const uint8_t* data = <const uint8_t*>PyBytes_AS_STRING(blocks)
    cdef Py_ssize_t table_size = _table_size(count)
    cdef char* scratch = <char*>malloc(
        table_size * sizeof(int32_t) + count * (sizeof(Py_ssize_t) + sizeof(int32_t)))
    if scratch == NULL:
        raise MemoryError()
    cdef Py_ssize_t* of_position = <Py_ssize_t*>scratch
    cdef int32_t* first_of = <int32_t*>(of_position + count)
    cdef int32_t* table = first_of + count
    cdef uint64_t first = 0, second = 0
    distinct = _group(data, count, table, table_size, of_position, first_of)
    for j in range(distinct):
        first += _le64(data + 16 * first_of[j])
        second += _le64(data + 16 * first_of[j] + 8)
    free(scratch)
    return distinct, first, second


cdef Py_ssize_t _table_size(Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t size = 1
    while size < 2 * count:
        size <<= 1
    return size


def first_rows(cnp.ndarray values):
    """The row where each distinct row of ``values`` (two lanes, keyed) is first seen."""
    cdef const uint64_t* lanes = _lanes_of(values)
    cdef Py_ssize_t count = values.shape[0], j, distinct
    if count < 2:
        return np.arange(count, dtype=np.intp)
    cdef Py_ssize_t size = _table_size(count)
    cdef int32_t* table = <int32_t*>malloc(size * sizeof(int32_t))
    cdef int32_t* first_of = <int32_t*>malloc(count * sizeof(int32_t))
    cdef Py_ssize_t* of_position = <Py_ssize_t*>malloc(count * sizeof(Py_ssize_t))
    cdef Py_ssize_t* rows
    if table == NULL or first_of == NULL or of_position == NULL:
        free(table)
        free(first_of)
        free(of_position)
        raise MemoryError()
    try:
        distinct = _group(<const uint8_t*>lanes, count, table, size, of_position, first_of)
        result = np.empty(distinct, dtype=np.intp)
        rows = <Py_ssize_t*>cnp.PyArray_DATA(result)
        for j in range(distinct):
            rows[j] = first_of[j]
        return result
    finally:
        free(table)
        free(first_of)
        free(of_position)


cdef inline Py_ssize_t _varint_size(uint64_t value) noexcept nogil:
    cdef Py_ssize_t size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


cdef inline uint8_t* _put_varint(uint8_t* out, uint64_t value) noexcept nogil:
    while value >= 0x80:
        out[0] = <uint8_t>(value & 0x7F) | 0x80
        value >>= 7
        out += 1
    out[0] = <uint8_t>value
    return out + 1


ctypedef fused _Key:
    uint16_t
    uint32_t
    int64_t  # rows, never negative


cdef inline Py_ssize_t _lower_bound(const _Key* values, Py_ssize_t low, Py_ssize_t high,
                                    uint64_t wanted) noexcept nogil:
    """The first index in [low, high) whose value is at least ``wanted`` (``high`` if none).

    The same steps for any ``wanted`` (P7): as many halvings as the range's length asks,
    each a conditional move rather than a branch. A branch is foreseen for searches that go
    the same way each time and mispredicted for scattered ones: unknown numbers, which all
    searched for row 0 before the overlay's probe picked them stand-ins, were answered
    faster than held ones (bench/README.md, issue 12, sixth round).
    """
    cdef Py_ssize_t count = high - low, half
    cdef const _Key* first = values + low
    if count <= 0:
        return low
    while count > 1:
        half = count >> 1
        first += (first[half - 1] < wanted) * half  # arithmetic, so a conditional move
        count -= half
    return (first - values) + (first[0] < wanted)


cdef class _Entries:
    """Entries of one size, sorted by prefix, that ``encode_buckets`` serves by bucket."""

    cdef object arrays
    cdef const uint8_t* data
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef bint filtered  # whether ``kept`` decides each entry (else the base's left_out)
    cdef uint64_t first

    cdef void run(self, uint64_t bucket, int bucket_bits, Py_ssize_t* start,
                  Py_ssize_t* end) noexcept:
        start[0] = end[0] = 0

    cdef bint kept(self, Py_ssize_t position) noexcept:
        return True


cdef class _EntryClass(_Entries):
    """One size class of a base's entries (core/index/base.py): sorted by prefix, found by
    the directory of their top ``bits`` bits and the next 16 bits each keeps (``low``)."""

    cdef const uint32_t* directory
    cdef int bits
    cdef const uint16_t* low

    def __init__(self, cnp.ndarray directory, cnp.ndarray low, cnp.ndarray data,
                 Py_ssize_t size, uint64_t first):
        cdef Py_ssize_t slots = directory.shape[0] - 1
        if slots < 1 or slots & (slots - 1):
            raise ValueError("the directory has a power of two slots, plus one")
        if data.shape[0] != low.shape[0] or (low.shape[0] and data.nbytes
                                             != low.shape[0] * size):
            raise ValueError("an entry class has one row of its size per entry")
        self.arrays = (directory, low, data)
        self.directory = <const uint32_t*>_data(directory, cnp.NPY_UINT32, "directory")
        self.bits = slots.bit_length() - 1
        if self.bits + 16 < 24:
            raise ValueError("the directory and the kept bits must cover 24 bits")
        if directory[slots] != low.shape[0]:
            raise ValueError("the directory does not end at the last entry")
        self.low = <const uint16_t*>_data(
            low if low.shape[0] else np.zeros(1, np.uint16), cnp.NPY_UINT16, "low")
        self.data = <const uint8_t*>_data(data if data.shape[0] else _ONE_BYTE, cnp.NPY_UINT8,
                                          "entries")
        self.count = low.shape[0]
        self.size = size
        self.first = first
        self.filtered = False

    cdef void run(self, uint64_t bucket, int bucket_bits, Py_ssize_t* start,
                  Py_ssize_t* end) noexcept:
        """The entries of ``bucket`` (of ``bucket_bits`` bits, at most ``bits + 16``)."""
        cdef int finer = bucket_bits - self.bits
        cdef uint64_t slot
        cdef uint32_t low, high
        if finer <= 0:  # a range of whole slots
            start[0] = self.directory[bucket << (-finer)]
            end[0] = self.directory[(bucket + 1) << (-finer)]
            return
        # Finer than the directory: a run of one slot, by the kept bits that follow.
        slot = bucket >> finer
        low = <uint32_t>(bucket & ((1 << finer) - 1)) << (16 - finer)
        high = low + (<uint32_t>1 << (16 - finer))
        start[0] = _lower_bound(self.low, self.directory[slot], self.directory[slot + 1], low)
        end[0] = _lower_bound(self.low, start[0], self.directory[slot + 1], high)


def entry_class(cnp.ndarray directory, cnp.ndarray low, cnp.ndarray data, Py_ssize_t size,
                uint64_t first):
    """A base's size class as ``encode_buckets`` reads it (see ``_EntryClass``)."""
    return _EntryClass(directory, low, data, size, first)


cdef class _SortedEntries(_Entries):
    """An overlay's entries of one size (core/index/overlay.py): whole 32-bit prefixes,
    sorted; each entry's row, -1 once removed; a row is served unless its claim is lost or
    its user is among the few ``hidden``."""

    cdef const uint32_t* prefixes
    cdef const int32_t* rows
    cdef const uint8_t* lost
    cdef Py_ssize_t lost_count
    cdef const int64_t* hidden
    cdef Py_ssize_t hidden_count

    def __init__(self, cnp.ndarray prefixes, cnp.ndarray rows, cnp.ndarray data,
                 Py_ssize_t size, cnp.ndarray lost, cnp.ndarray hidden):
        if rows.shape[0] != prefixes.shape[0] or data.shape[0] != prefixes.shape[0] or (
                prefixes.shape[0] and data.nbytes != prefixes.shape[0] * size):
            raise ValueError("an entry class has one row and one entry per prefix")
        self.arrays = (prefixes, rows, data, lost, hidden)
        self.prefixes = <const uint32_t*>_data(
            prefixes if prefixes.shape[0] else np.zeros(1, np.uint32), cnp.NPY_UINT32,
            "prefixes")
        self.rows = <const int32_t*>_data(
            rows if rows.shape[0] else np.zeros(1, np.int32), cnp.NPY_INT32, "rows")
        self.data = <const uint8_t*>_data(data if data.shape[0] else _ONE_BYTE, cnp.NPY_UINT8,
                                          "entries")
        self.lost = <const uint8_t*>_data(lost if lost.shape[0] else _ONE_BYTE, cnp.NPY_UINT8,
                                          "lost")
        self.lost_count = lost.shape[0]
        self.hidden = <const int64_t*>_data(hidden if hidden.shape[0] else _ONE_ROW,
                                            cnp.NPY_INT64, "hidden")
        self.hidden_count = hidden.shape[0]
        self.count = prefixes.shape[0]
        self.size = size
        self.first = 0
        self.filtered = True

    cdef void run(self, uint64_t bucket, int bucket_bits, Py_ssize_t* start,
                  Py_ssize_t* end) noexcept:
        cdef int shift = 32 - bucket_bits
        start[0] = _lower_bound(self.prefixes, 0, self.count, bucket << shift)
        end[0] = _lower_bound(self.prefixes, 0, self.count, (bucket + 1) << shift)

    cdef bint kept(self, Py_ssize_t position) noexcept:
        cdef int32_t row = self.rows[position]
        cdef Py_ssize_t j
        if row < 0 or row >= self.lost_count or self.lost[row]:
            return False
        for j in range(self.hidden_count):
            if self.hidden[j] == row:
                return False
        return True


def sorted_entries(cnp.ndarray prefixes, cnp.ndarray rows, cnp.ndarray data, Py_ssize_t size,
                   cnp.ndarray lost, cnp.ndarray hidden):
    """An overlay's sorted entries as ``encode_buckets`` reads them (see ``_SortedEntries``)."""
    return _SortedEntries(prefixes, rows, data, size, lost, hidden)


def encode_buckets(cnp.ndarray wanted, int bits, list classes, cnp.ndarray left_out,
                   dict extra):
    """A FetchBucketsResponse in its wire form: one Bucket per ``wanted`` bucket, in order.

    ``wanted`` (int64) are distinct, ascending bucket numbers of ``bits`` bits (at most 24).
    A bucket's entries are those of each class whose prefix starts with the bucket's bits:
    of a base's (``entry_class``), all but those at the global positions ``left_out``
    (uint32, sorted; a class's entries are numbered from its ``first``); of an overlay's
    (``sorted_entries``), those it keeps. Then ``extra``'s entries for that bucket (a dict
    of lists of bytes: the overlay's newest). Written in two passes (sizes, then bytes),
    with no Python object per entry.
    """
    cdef const int64_t* buckets = <const int64_t*>_data(
        wanted if wanted.shape[0] else _ONE_ROW, cnp.NPY_INT64, "wanted")
    cdef Py_ssize_t count = wanted.shape[0]
    cdef const uint32_t* skip = <const uint32_t*>_data(
        left_out if left_out.shape[0] else np.zeros(1, np.uint32), cnp.NPY_UINT32, "left_out")
    cdef Py_ssize_t skipped = left_out.shape[0]
    if not 0 <= bits <= 24:
        raise ValueError("bits must be between 0 and 24")
    cdef Py_ssize_t kinds = len(classes), i, k, p, s, total = 0, length, message
    cdef _Entries kind
    cdef uint64_t bucket
    cdef Py_ssize_t* starts = <Py_ssize_t*>malloc((count * kinds + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* ends = <Py_ssize_t*>malloc((count * kinds + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc((count + 1) * sizeof(Py_ssize_t))
    cdef uint8_t* out
    cdef bytes entry
    if starts == NULL or ends == NULL or sizes == NULL:
        free(starts)
        free(ends)
        free(sizes)
        raise MemoryError()
    try:
        # Pass 1: each bucket's runs, and its message's size.
        for i in range(count):
            bucket = <uint64_t>buckets[i]
            if bucket >> bits:
                raise ValueError("a bucket number has more bits than asked")
            message = _varint_size(bucket) + 1 if bucket else 0
            for k in range(kinds):
                kind = <_Entries>classes[k]
                kind.run(bucket, bits, &starts[i * kinds + k], &ends[i * kinds + k])
                if kind.filtered:
                    length = 0
                    for p in range(starts[i * kinds + k], ends[i * kinds + k]):
                        length += kind.kept(p)
                else:
                    length = ends[i * kinds + k] - starts[i * kinds + k]
                    # Entries left out of this run: a run of the sorted left_out positions.
                    length -= (_lower_bound(skip, 0, skipped, ends[i * kinds + k] + kind.first)
                               - _lower_bound(skip, 0, skipped, starts[i * kinds + k] + kind.first))
                message += length * (1 + _varint_size(kind.size) + kind.size)
            if extra:
                for entry in extra.get(buckets[i], ()):
                    message += 1 + _varint_size(len(entry)) + len(entry)
            sizes[i] = message
            total += 1 + _varint_size(message) + message
        # Pass 2: the bytes.
        result = PyBytes_FromStringAndSize(NULL, total)
        out = <uint8_t*>PyBytes_AS_STRING(result)
        for i in range(count):
            bucket = <uint64_t>buckets[i]
            out[0] = 0x0A  # field 1 (buckets), length-delimited
            out = _put_varint(out + 1, sizes[i])
            if bucket:
                out[0] = 0x08  # field 1 (bucket), varint
                out = _put_varint(out + 1, bucket)
            for k in range(kinds):
                kind = <_Entries>classes[k]
                s = _lower_bound(skip, 0, skipped, starts[i * kinds + k] + kind.first)
                for p in range(starts[i * kinds + k], ends[i * kinds + k]):
                    if kind.filtered:
                        if not kind.kept(p):
                            continue
                    elif s < skipped and skip[s] == p + kind.first:
                        s += 1
                        continue
                    out[0] = 0x12  # field 2 (entries), length-delimited
                    out = _put_varint(out + 1, kind.size)
                    memcpy(out, kind.data + p * kind.size, kind.size)
                    out += kind.size
            if extra:
                for entry in extra.get(buckets[i], ()):
                    out[0] = 0x12
                    out = _put_varint(out + 1, len(entry))
                    memcpy(out, PyBytes_AS_STRING(entry), len(entry))
                    out += len(entry)
        return result
    finally:
        free(starts)
        free(ends)
        free(sizes)


# -- Lookups off the event loop's thread ---------------------------------------------------

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* mutex, const void* attributes)
    int pthread_mutex_destroy(pthread_mutex_t* mutex)
    int pthread_mutex_lock(pthread_mutex_t* mutex)
    int pthread_mutex_unlock(pthread_mutex_t* mutex)
    int pthread_cond_init(pthread_cond_t* condition, const void* attributes)
    int pthread_cond_destroy(pthread_cond_t* condition)
    int pthread_cond_wait(pthread_cond_t* condition, pthread_mutex_t* mutex)
    int pthread_cond_signal(pthread_cond_t* condition)
    int pthread_cond_broadcast(pthread_cond_t* condition)


cdef extern from "<openssl/evp.h>" nogil:
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_CIPHER_CTX:
        pass
    EVP_CIPHER* EVP_CIPHER_fetch(void* library, const char* algorithm, const char* properties)
    EVP_CIPHER_CTX* EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX* context)
    int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX* context, int padding)
    int EVP_EncryptInit_ex2(EVP_CIPHER_CTX* context, const EVP_CIPHER* cipher,
                            const uint8_t* key, const uint8_t* iv, const void* parameters)
    int EVP_EncryptUpdate(EVP_CIPHER_CTX* context, uint8_t* out, int* written,
                          const uint8_t* data, int size)

cdef extern from "<openssl/crypto.h>" nogil:
    void OPENSSL_cleanse(void* data, size_t size)

# Fetched once: an implicit fetch by name would cost every job's set-up a lookup.
cdef const EVP_CIPHER* _AES_256_ECB = EVP_CIPHER_fetch(NULL, b"AES-256-ECB", NULL)
if _AES_256_ECB == NULL:
    raise ImportError("the machine's libcrypto has no AES-256-ECB")


cdef EVP_CIPHER_CTX* _new_cipher_context() noexcept nogil:
    """An AES-256-ECB encryption context with no key yet (NULL if none could be made).

    A context is one thread's at a time: the lookup thread has its own (``LookupWorker``),
    and jobs run with the GIL held share ``_gil_context``.
    """
    cdef EVP_CIPHER_CTX* context = EVP_CIPHER_CTX_new()
    if context == NULL:
        return NULL
    if (EVP_EncryptInit_ex2(context, _AES_256_ECB, NULL, NULL, NULL) != 1
            or EVP_CIPHER_CTX_set_padding(context, 0) != 1):
        EVP_CIPHER_CTX_free(context)
        return NULL
    return context


cdef EVP_CIPHER_CTX* _gil_context = NULL  # read and written with the GIL held only


cdef class FingerprintKey:
    """The pepper as AES-256's key, for fingerprints made where no Python object may be touched.

    A ``LookupJob`` given one makes its batch's fingerprints itself, on whichever thread
    runs it: AES-256 of each hash's first 16 bytes (core/fingerprint.py), with the
    machine's libcrypto (the OpenSSL that ``cryptography`` wraps) called directly, because
    the lookup thread holds no GIL. tests/unit/test_native.py holds it to ``Fingerprinter``.
    """

    cdef uint8_t key[32]

    def __cinit__(self, bytes key):
        if PyBytes_GET_SIZE(key) != 32:
            raise ValueError("a fingerprint key is 32 bytes")
        memcpy(self.key, PyBytes_AS_STRING(key), 32)

    def __dealloc__(self):
        OPENSSL_cleanse(self.key, 32)


cdef EVP_CIPHER_CTX* _held_gil_context():
    """The context of code that holds the GIL (made on first use; NULL if it cannot be)."""
    global _gil_context
    if _gil_context == NULL:
        _gil_context = _new_cipher_context()
    return _gil_context


cdef bint _fingerprint(EVP_CIPHER_CTX* context, const uint8_t* key, const uint8_t* hashes,
                       Py_ssize_t count, uint8_t* out) noexcept nogil:
    """Write the fingerprints of ``count`` packed hashes to ``out``; False if libcrypto failed."""
    cdef Py_ssize_t i
    cdef int written = 0
    if context == NULL or count > 0x7FFFFFF:
        return False
    for i in range(count):  # the first halves, then encrypted where they lie
        memcpy(out + 16 * i, hashes + 32 * i, 16)
    if count == 0:
        return True
    if EVP_EncryptInit_ex2(context, NULL, key, NULL, NULL) != 1:
        return False
    if EVP_EncryptUpdate(context, out, &written, out, <int>(16 * count)) != 1:
        return False
    return written == 16 * count


cdef class LookupJob:
    """One Discover lookup, ready to run on any thread: its inputs held, its outputs kept.

    Made on the event loop's thread (which checks the inputs and takes their pointers),
    ``run`` may then go on another thread without the GIL; ``answer`` (back on the loop,
    with the GIL) writes the DiscoverResponse. The caller must check that the index did not
    change between the job's making and its answer (else it looks up again): a change may
    write the arrays the probe reads, and reuse rows. The job holds every array it reads,
    so that none is freed while it runs.

    ``data`` is the batch's fingerprints (16 bytes each), or with a ``key`` its contact
    hashes (32 bytes each), whose fingerprints the run makes first. Either way the run also
    gives the batch as a set (``digest``), which the re-sync token needs; given a ``step``,
    the run also issues or renews the call's token from it. So the event loop spends
    nothing on the batch or its token but the hand-over and the answer.
    """

    cdef bytes fingerprints_
    cdef bytes hashes
    cdef FingerprintKey key
    cdef const uint8_t* hash_data  # the held objects' bytes, for a run without the GIL
    cdef uint8_t* fingerprint_data
    cdef BaseView base
    cdef OverlayView overlay
    cdef object held
    cdef _Lookup lookup
    cdef char* outputs
    cdef bint fingerprinted  # the fingerprints are made (or were given)
    cdef bint failed  # its outputs or scratch could not be allocated, or libcrypto failed
    cdef int64_t edits
    cdef bint cancelled  # read and written under its worker's mutex
    cdef TokenStep step
    cdef bint has_step

    def __cinit__(self, bytes data, BaseView base, cnp.ndarray overridden,
                  OverlayView overlay, cnp.ndarray excluded_overlay,
                  cnp.ndarray excluded_base, FingerprintKey key=None, bint distinct=False,
                  int64_t edits=0, TokenStep step=None):
        if key is None:
            self.fingerprints_ = data
            self.fingerprinted = True
        else:
            if PyBytes_GET_SIZE(data) % 32:
                raise ValueError("hashes are 32 bytes each")
            # Written by the run, before anything reads it: nobody else holds it until then.
            self.fingerprints_ = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(data) // 2)
            self.hashes = data
            self.key = key
            self.hash_data = <const uint8_t*>PyBytes_AS_STRING(data)
            self.fingerprint_data = <uint8_t*>PyBytes_AS_STRING(self.fingerprints_)
        # Nothing is allocated until the probe runs: a job waiting in a queue (or given up
        # on) holds no memory of its own.
        _open(&self.lookup, self.fingerprints_, base, overridden, excluded_overlay,
              excluded_base, True, distinct, NULL, NULL)
        self.base = base
        self.overlay = overlay
        self.held = (overridden, excluded_overlay, excluded_base)
        self.edits = edits
        self.step = step
        self.has_step = step is not None

    def __dealloc__(self):
        free(self.outputs)

    cdef void run(self, EVP_CIPHER_CTX* context, EVP_MAC_CTX* mac_context) noexcept nogil:
        """The fingerprints if not given, the probe, then the token: no Python object.

        ``context`` and ``mac_context`` are the running thread's own AES and MAC contexts
        (needed only with a key, and with a step).
        """
        cdef Py_ssize_t count = self.lookup.count
        if not self.fingerprinted:
            if not _fingerprint(context, self.key.key, self.hash_data, count,
                                self.fingerprint_data):
                self.failed = True
                return
            self.fingerprinted = True
        free(self.outputs)  # run once, in practice
        self.outputs = <char*>malloc(count * sizeof(uint32_t) + (count + 1) * sizeof(int64_t))
        if self.outputs == NULL:
            self.failed = True
            return
        self.lookup.rows = <int64_t*>self.outputs
        self.lookup.positions = <uint32_t*>(self.lookup.rows + count + 1)
        cdef uint64_t first = 0, second = 0
        cdef Py_ssize_t i
        if self.has_step and self.step.token_size and not self.lookup.distinct:
            # A re-sync: its token tried first on the sum over the rows as they come. If it
            # verifies, no hash comes twice (core/resync.py), and the probe need not group
            # the batch's numbers.
            for i in range(count):
                first += _le64(self.lookup.packed + 16 * i)
                second += _le64(self.lookup.packed + 16 * i + 8)
            self.step.run(mac_context, first, second)
            self.lookup.distinct = self.step.state == 1
        self.failed = not _run(&self.lookup, self.base, self.overlay)
        if self.has_step and not self.failed and self.step.state != 1:
            # A first sync, or a re-sync whose rows repeat a hash (or that its token does
            # not cover): the token of the batch as a set.
            self.step.run(mac_context, self.lookup.sum_first, self.lookup.sum_second)

    def run_here(self):
        """Run the job on this thread (with the GIL held, as a lookup in line does)."""
        self.run(_held_gil_context(), self.step.tokens.context if self.has_step else NULL)

    @property
    def fingerprints(self):
        """The batch's fingerprints (16 bytes each, in order), once ``digest`` is not None."""
        return self.fingerprints_

    @property
    def found(self):
        """How many matches the probe kept (0 before it ran)."""
        return self.lookup.found

    def digest(self):
        """(distinct fingerprints, the sums modulo 2^64 of their two lanes), or None.

        The batch as a set, for the re-sync token; None unless the job ran and succeeded.
        """
        if self.failed or self.outputs == NULL:
            return None
        return self.lookup.numbers, self.lookup.sum_first, self.lookup.sum_second

    def answer(self, int64_t edits, bytes token):
        """(the DiscoverResponse's bytes, its match count) from the probe's outputs, or None.

        The answer carries ``token``. ``edits`` is the index's count of changes now: unless
        it is the count the job was made at, the probe's rows may name other users and the
        ids' arena may have moved, so there is no answer (None: look up again).
        """
        if edits != self.edits or self.failed or self.outputs == NULL:
            return None
        return (_answer(self.base, self.overlay, self.lookup.positions, self.lookup.rows,
                        self.lookup.found, token), self.lookup.found)


cdef class LookupWorker:
    """A thread that runs ``LookupJob``s without the GIL, and a pipe that says some are done.

    ``submit`` queues a job (the caller keeps it alive until it is done); the thread that
    calls ``serve`` runs them in order, with the GIL released for as long as it serves; a
    byte on ``fileno()`` (written once until ``finished`` is called) tells the event loop to
    collect the finished ones with ``finished``. ``stop`` ends ``serve`` once the jobs
    queued before it ran.
    """

    cdef pthread_mutex_t mutex
    cdef pthread_cond_t wake
    cdef PyObject** queued
    cdef PyObject** done
    cdef Py_ssize_t capacity, first, waiting, running, finished_count
    cdef int read_end, write_end
    cdef bint stopping, signalled

    def __cinit__(self, Py_ssize_t capacity):
        cdef int ends[2]
        pthread_mutex_init(&self.mutex, NULL)
        pthread_cond_init(&self.wake, NULL)
        self.read_end = self.write_end = -1
        if capacity < 1:
            raise ValueError("a worker queues at least one job")
        self.queued = <PyObject**>malloc(capacity * sizeof(PyObject*))
        self.done = <PyObject**>malloc(capacity * sizeof(PyObject*))
        if self.queued == NULL or self.done == NULL:
            raise MemoryError()
        if pipe(ends) != 0:
            raise OSError("no pipe for the lookup worker")
        self.read_end, self.write_end = ends[0], ends[1]
        fcntl(self.read_end, F_SETFL, O_NONBLOCK)
        fcntl(self.read_end, F_SETFD, FD_CLOEXEC)
        fcntl(self.write_end, F_SETFD, FD_CLOEXEC)
        self.capacity = capacity

    def __dealloc__(self):
        if self.read_end >= 0:
            close(self.read_end)
            close(self.write_end)
        pthread_mutex_destroy(&self.mutex)
        pthread_cond_destroy(&self.wake)
        free(self.queued)
        free(self.done)

    def fileno(self):
        """The pipe's end the event loop watches: readable once some jobs are done."""
        return self.read_end

    def submit(self, LookupJob job):
        """Queue ``job``; False (nothing queued) when the queue is full or stopping.

        Full counts every job not yet collected by ``finished``: queued, running or done.
        """
        cdef bint queued = False
        pthread_mutex_lock(&self.mutex)
        if (not self.stopping
                and self.waiting + self.running + self.finished_count < self.capacity):
            self.queued[(self.first + self.waiting) % self.capacity] = <PyObject*>job
            self.waiting += 1
            queued = True
            pthread_cond_signal(&self.wake)
        pthread_mutex_unlock(&self.mutex)
        return queued

    def serve(self):
        """Run queued jobs until ``stop``: call it on the worker's own thread."""
        cdef PyObject* job
        cdef bint signal, skip
        cdef char byte = 1
        # This thread's own AES context: a job with a key fails without one (and is then
        # looked up again on the loop).
        cdef EVP_CIPHER_CTX* context = _new_cipher_context()
        cdef EVP_MAC_CTX* mac_context = onnet_mac_context_new()
        with nogil:
            while True:
                pthread_mutex_lock(&self.mutex)
                while self.waiting == 0 and not self.stopping:
                    pthread_cond_wait(&self.wake, &self.mutex)
                if self.waiting == 0:
                    pthread_mutex_unlock(&self.mutex)
                    break
                job = self.queued[self.first]
                self.first = (self.first + 1) % self.capacity
                self.waiting -= 1
                self.running = 1
                skip = (<LookupJob>job).cancelled
                pthread_mutex_unlock(&self.mutex)
                if not skip:  # a cancelled call's probe is not run (it finds nothing)
                    (<LookupJob>job).run(context, mac_context)
                pthread_mutex_lock(&self.mutex)
                self.running = 0
                self.done[self.finished_count] = job
                self.finished_count += 1
                signal = not self.signalled
                self.signalled = True
                pthread_mutex_unlock(&self.mutex)
                if signal:
                    write(self.write_end, &byte, 1)
        EVP_CIPHER_CTX_free(context)
        EVP_MAC_CTX_free(mac_context)

    def finished(self):
        """The jobs done since the last call (in order); empties the pipe."""
        cdef char bytes_read[64]
        cdef Py_ssize_t i
        while read(self.read_end, bytes_read, 64) == 64:
            pass
        pthread_mutex_lock(&self.mutex)
        jobs = [None] * self.finished_count
        for i in range(self.finished_count):
            jobs[i] = <object>self.done[i]
        self.finished_count = 0
        self.signalled = False
        pthread_mutex_unlock(&self.mutex)
        return jobs

    def cancel(self, LookupJob job):
        """Let a queued ``job`` go without its probe: its caller is gone (it stays queued)."""
        pthread_mutex_lock(&self.mutex)
        job.cancelled = True
        pthread_mutex_unlock(&self.mutex)

    def pending(self):
        """(queued, running, done and not yet collected): the jobs that take room now."""
        pthread_mutex_lock(&self.mutex)
        counts = (self.waiting, self.running, self.finished_count)
        pthread_mutex_unlock(&self.mutex)
        return counts

    def stop(self):
        """Let ``serve`` return once the queued jobs have run; refuse new ones."""
        pthread_mutex_lock(&self.mutex)
        self.stopping = True
        pthread_cond_broadcast(&self.wake)
        pthread_mutex_unlock(&self.mutex)
