# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The re-sync token's common case, compiled: a current token renewed, a token issued.

Under load, every Python step of a Discover costs several times its warm figure (its code
and data were evicted by gRPC's work since the last request). Here the token's steps are C
(resync_token.h), with the MAC from the machine's libcrypto, so that a lookup job can take
them to the lookup thread (``TokenStep``): the event loop then spends nothing on the token
of an unchanged book re-synced, or of a first sync.

Only the success of the commonest calls is here: a first sync's token issued, or a
version-2 token under the current key, not expired, whose set digest is the given one (an
unchanged book re-synced, core/resync.py) renewed. Anything else answers None and is
decided by ``ResyncTokens`` in Python, refusals and their messages included, so that the
two cannot disagree on what is refused (tests/unit/resync/test_compiled_renewal.py holds
them together).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsASCIIString
from libc.string cimport memcpy


cdef class CurrentTokens:
    """Version-2 tokens under the current key: issued here, or renewed by a lookup job's step.

    ``mac_key`` is the tokens' BLAKE2b key (32 bytes), ``domain`` version 2's domain
    string, ``ttl`` a new token's lifetime in seconds.
    """

    def __cinit__(self, bytes key_id, bytes mac_key, bytes domain, int64_t ttl):
        if PyBytes_GET_SIZE(key_id) != ONNET_KEY_ID_SIZE:
            raise ValueError(f"a key id is {ONNET_KEY_ID_SIZE} bytes")
        if PyBytes_GET_SIZE(mac_key) != ONNET_MAC_KEY_SIZE:
            raise ValueError(f"a MAC key is {ONNET_MAC_KEY_SIZE} bytes")
        if PyBytes_GET_SIZE(domain) > ONNET_MAX_DOMAIN:
            raise ValueError("domain string too long")
        if ttl <= 0:
            raise ValueError("a token's lifetime must be positive")
        memcpy(self.key.key_id, PyBytes_AS_STRING(key_id), ONNET_KEY_ID_SIZE)
        memcpy(self.key.mac_key, PyBytes_AS_STRING(mac_key), ONNET_MAC_KEY_SIZE)
        memcpy(self.key.domain, PyBytes_AS_STRING(domain), PyBytes_GET_SIZE(domain))
        self.key.domain_size = PyBytes_GET_SIZE(domain)
        self.key.ttl = ttl
        self.context = onnet_mac_context_new()
        if self.context == NULL:
            raise ImportError("the machine's libcrypto has no BLAKE2BMAC")

    def __dealloc__(self):
        EVP_MAC_CTX_free(self.context)
        OPENSSL_cleanse(&self.key, sizeof(onnet_token_key))

    def issue(self, str account, uint64_t first, uint64_t second, double now):
        """A token issued at unix time ``now`` to ``account`` for the set digest (first, second)."""
        name = _account_name(account)
        token = PyBytes_FromStringAndSize(NULL, ONNET_TOKEN_SIZE)
        if not onnet_token_issue(self.context, &self.key,
                                 <const uint8_t*>PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                                 first, second, now, <uint8_t*>PyBytes_AS_STRING(token)):
            raise MemoryError("libcrypto could not make a MAC")
        return token

    def step(self, str account, bytes token, double now):
        """The token step of a call by ``account`` with ``token`` (empty: a first sync) at ``now``.

        A lookup job runs it once it has the batch's digest (``TokenStep``).
        """
        return TokenStep(self, account, token, now)


cdef class TokenStep:
    """One call's token, issued or renewed from its batch's digest where no GIL is held.

    Made on the event loop (which takes the account's name apart and sets aside the next
    token's bytes), run by a lookup job once it has the digest, read back on the loop:
    ``next_token`` is the token to answer with, or None for ``ResyncTokens`` to decide.
    """

    def __cinit__(self, CurrentTokens tokens, str account, bytes token, double now):
        self.tokens = tokens
        self.name = _account_name(account)
        self.name_data = <const uint8_t*>PyBytes_AS_STRING(self.name)
        self.name_size = PyBytes_GET_SIZE(self.name)
        self.token = token
        self.token_data = <const uint8_t*>PyBytes_AS_STRING(token)
        self.token_size = PyBytes_GET_SIZE(token)
        # Written by ``run``, before anything reads it: nobody else holds it until then.
        self.next_token_ = PyBytes_FromStringAndSize(NULL, ONNET_TOKEN_SIZE)
        self.next_data = <uint8_t*>PyBytes_AS_STRING(self.next_token_)
        self.now = now

    cdef void run(self, EVP_MAC_CTX* context, uint64_t first, uint64_t second) noexcept nogil:
        """Issue (no token) or renew the token for the digest (first, second).

        ``context`` is the running thread's own MAC context.
        """
        cdef int done
        if self.token_size == 0:
            done = onnet_token_issue(context, &self.tokens.key, self.name_data,
                                     self.name_size, first, second, self.now, self.next_data)
        else:
            done = onnet_token_renew(context, &self.tokens.key, self.token_data,
                                     self.token_size, self.name_data, self.name_size, first,
                                     second, self.now, self.next_data)
        self.state = 1 if done == 1 else -1

    def next_token(self):
        """The token issued or renewed; None if the step did not run, or proved nothing."""
        return self.next_token_ if self.state == 1 else None


cdef bytes _account_name(str account):
    name = PyUnicode_AsASCIIString(account)
    if PyBytes_GET_SIZE(name) > ONNET_MAX_ACCOUNT:
        raise ValueError(f"account id longer than {ONNET_MAX_ACCOUNT} characters")
    return name
