# The re-sync token's common case (resync_token.h), for the modules that cimport it: a
# lookup job (_native.pyx) renews or issues its call's token on the lookup thread.
from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from "resync_token.h" nogil:
    ctypedef struct EVP_MAC_CTX:
        pass
    ctypedef struct onnet_token_key:
        uint8_t key_id[4]
        uint8_t mac_key[32]
        uint8_t domain[64]
        size_t domain_size
        int64_t ttl
    enum:
        ONNET_KEY_ID_SIZE
        ONNET_MAC_KEY_SIZE
        ONNET_TOKEN_SIZE
        ONNET_MAX_DOMAIN
        ONNET_MAX_ACCOUNT
    void OPENSSL_cleanse(void* data, size_t size)
    EVP_MAC_CTX* onnet_mac_context_new()
    void EVP_MAC_CTX_free(EVP_MAC_CTX* context)
    int onnet_token_issue(EVP_MAC_CTX* context, const onnet_token_key* key,
                          const uint8_t* name, size_t name_size, uint64_t first,
                          uint64_t second, double now, uint8_t* token)
    int onnet_token_renew(EVP_MAC_CTX* context, const onnet_token_key* key,
                          const uint8_t* token, size_t token_size, const uint8_t* name,
                          size_t name_size, uint64_t first, uint64_t second, double now,
                          uint8_t* next)


cdef class CurrentTokens:
    cdef onnet_token_key key
    cdef EVP_MAC_CTX* context  # for callers that hold the GIL


cdef class TokenStep:
    cdef readonly CurrentTokens tokens
    cdef bytes name
    cdef bytes token
    cdef bytes next_token_
    cdef const uint8_t* name_data
    cdef Py_ssize_t name_size
    cdef const uint8_t* token_data
    cdef Py_ssize_t token_size
    cdef uint8_t* next_data
    cdef double now
    cdef int state
    cdef void run(self, EVP_MAC_CTX* context, uint64_t first, uint64_t second) noexcept nogil
