# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The re-sync token's common case, compiled: a current token renewed, a token issued.

Under load, every Python step of a Discover costs several times its warm figure (its code
and data were evicted by gRPC's work since the last request): timed inside the serving
process, the token's check and renewal took 17 us a request against 5 us in a warm loop,
most of it in the interpreter (taking the token apart, building the MAC's message, looking
up keys). Here the same steps are C, and the MAC is CPython's keyed BLAKE2b, resumed from
its state after the key block (``copy`` of a prototype keyed once).

Only the success of the commonest call is here: a version-2 token under the current key,
not expired, whose set digest is the given one (an unchanged book re-synced, its digest
made by the lookup job, core/resync.py). Anything else answers None and is decided by
``ResyncTokens`` in Python, refusals and their messages included, so that the two cannot
disagree on what is refused (tests/unit/resync/test_native_tokens.py holds them together).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsASCIIString
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

cdef enum:
    _VERSION = 2
    _KEY_ID_SIZE = 4
    _EXPIRY_SIZE = 8
    _HEADER_SIZE = 1 + _KEY_ID_SIZE + _EXPIRY_SIZE
    _MAC_SIZE = 32
    _TOKEN_SIZE = _HEADER_SIZE + _MAC_SIZE
    _DIGEST_SIZE = 16
    _MAX_ACCOUNT = 255
    _MAX_DOMAIN = 64
    _MAX_MESSAGE = _MAX_DOMAIN + _KEY_ID_SIZE + _EXPIRY_SIZE + 1 + _MAX_ACCOUNT + _DIGEST_SIZE


cdef class CurrentTokens:
    """Version-2 tokens under the current key: renewed when the rows prove them, or issued.

    ``mac_prototype`` is ``hashlib.blake2b(key=..., digest_size=32)`` under the tokens'
    BLAKE2b key, never updated: each MAC is a copy of it. ``domain`` is version 2's domain
    string, ``ttl`` a new token's lifetime in seconds.
    """

    cdef bytes key_id
    cdef object mac_prototype
    cdef bytes domain
    cdef int64_t ttl

    def __init__(self, bytes key_id, object mac_prototype, bytes domain, int64_t ttl):
        if len(key_id) != _KEY_ID_SIZE:
            raise ValueError(f"a key id is {_KEY_ID_SIZE} bytes")
        if len(domain) > _MAX_DOMAIN:
            raise ValueError("domain string too long")
        if ttl <= 0:
            raise ValueError("a token's lifetime must be positive")
        self.key_id = key_id
        self.mac_prototype = mac_prototype
        self.domain = domain
        self.ttl = ttl

    cdef bytes _mac(self, const uint8_t* header, bytes name, uint64_t first, uint64_t second):
        """The MAC of a token that starts with ``header`` and covers the digest (first, second)."""
        cdef uint8_t message[_MAX_MESSAGE]
        cdef Py_ssize_t size = PyBytes_GET_SIZE(self.domain)
        cdef Py_ssize_t length = PyBytes_GET_SIZE(name)
        memcpy(message, PyBytes_AS_STRING(self.domain), size)
        # The version byte is implied by the domain string; the rest of the header is bound.
        memcpy(message + size, header + 1, _HEADER_SIZE - 1)
        size += _HEADER_SIZE - 1
        message[size] = <uint8_t>length
        memcpy(message + size + 1, PyBytes_AS_STRING(name), length)
        size += 1 + length
        memcpy(message + size, &first, 8)  # the digest's lanes, little-endian
        memcpy(message + size + 8, &second, 8)
        size += _DIGEST_SIZE
        mac = self.mac_prototype.copy()
        mac.update(PyBytes_FromStringAndSize(<char*>message, size))
        return mac.digest()

    cdef bytes _issue(self, bytes name, uint64_t first, uint64_t second, double now):
        cdef uint8_t header[_HEADER_SIZE]
        cdef int64_t expiry = <int64_t>now + self.ttl
        cdef int i
        header[0] = _VERSION
        memcpy(header + 1, PyBytes_AS_STRING(self.key_id), _KEY_ID_SIZE)
        for i in range(_EXPIRY_SIZE):  # big-endian
            header[1 + _KEY_ID_SIZE + i] = <uint8_t>(expiry >> (8 * (_EXPIRY_SIZE - 1 - i)))
        token = PyBytes_FromStringAndSize(NULL, _TOKEN_SIZE)
        cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(token)
        memcpy(out, header, _HEADER_SIZE)
        mac = self._mac(header, name, first, second)
        memcpy(out + _HEADER_SIZE, PyBytes_AS_STRING(mac), _MAC_SIZE)
        return token

    def issue(self, str account, uint64_t first, uint64_t second, double now):
        """A token issued at unix time ``now`` to ``account`` for the set digest (first, second)."""
        return self._issue(_account_name(account), first, second, now)

    def renew(self, str account, bytes token, uint64_t first, uint64_t second, double now):
        """The next token, if ``token`` covers exactly the set with digest (first, second).

        The digest is the sums of the lanes of a batch's distinct fingerprints under the
        current pepper (a lookup job's, core/_native.pyx). None means: not proved here
        (another key or version, expired, malformed, or a digest that does not verify);
        ``ResyncTokens`` decides.
        """
        cdef Py_ssize_t i
        if PyBytes_GET_SIZE(token) != _TOKEN_SIZE:
            return None
        cdef const uint8_t* given = <const uint8_t*>PyBytes_AS_STRING(token)
        if given[0] != _VERSION:
            return None
        cdef const uint8_t* key_id = <const uint8_t*>PyBytes_AS_STRING(self.key_id)
        for i in range(_KEY_ID_SIZE):
            if given[1 + i] != key_id[i]:
                return None
        cdef uint64_t expiry = 0
        for i in range(_EXPIRY_SIZE):
            expiry = (expiry << 8) | given[1 + _KEY_ID_SIZE + i]
        if now >= <double>expiry:
            return None
        name = _account_name(account)
        expected = self._mac(given, name, first, second)
        if not _equal(<const uint8_t*>PyBytes_AS_STRING(expected), given + _HEADER_SIZE):
            return None
        return self._issue(name, first, second, now)


cdef bytes _account_name(str account):
    name = PyUnicode_AsASCIIString(account)
    if PyBytes_GET_SIZE(name) > _MAX_ACCOUNT:
        raise ValueError(f"account id longer than {_MAX_ACCOUNT} characters")
    return name


cdef bint _equal(const uint8_t* left, const uint8_t* right) noexcept:
    """Whether two MACs are equal, in time that does not depend on where they differ."""
    cdef uint8_t difference = 0
    cdef int i
    for i in range(_MAC_SIZE):
        difference |= left[i] ^ right[i]
    return difference == 0
