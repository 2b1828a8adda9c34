/* The re-sync token's common case in C (core/resync.py has the format and the rules):
   a current token issued, or renewed when it covers the given set digest.

   The MAC is keyed BLAKE2b with a 32-byte digest (RFC 7693), from the machine's libcrypto
   (OpenSSL 3's BLAKE2BMAC, the same function as CPython's hashlib.blake2b(key=...,
   digest_size=32), which core/resync.py's Python paths use). Nothing here touches a Python
   object, so a lookup job may run it on a thread without the GIL. Included by
   _resync_native.pyx (through its .pxd) and so by every module that cimports it. */
#ifndef ONNET_RESYNC_TOKEN_H
#define ONNET_RESYNC_TOKEN_H

#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define ONNET_TOKEN_VERSION 2
#define ONNET_KEY_ID_SIZE 4
#define ONNET_EXPIRY_SIZE 8
#define ONNET_HEADER_SIZE (1 + ONNET_KEY_ID_SIZE + ONNET_EXPIRY_SIZE)
#define ONNET_MAC_KEY_SIZE 32
#define ONNET_MAC_SIZE 32
#define ONNET_TOKEN_SIZE (ONNET_HEADER_SIZE + ONNET_MAC_SIZE)
#define ONNET_MAX_DOMAIN 64
#define ONNET_MAX_ACCOUNT 255

/* What the tokens issued now need: their key's id, its BLAKE2b key, the version's domain
   string and a new token's lifetime in seconds. */
typedef struct {
    uint8_t key_id[ONNET_KEY_ID_SIZE];
    uint8_t mac_key[ONNET_MAC_KEY_SIZE];
    uint8_t domain[ONNET_MAX_DOMAIN];
    size_t domain_size;
    int64_t ttl;
} onnet_token_key;

/* A MAC context for one thread at a time; NULL if libcrypto has no BLAKE2BMAC. */
static EVP_MAC_CTX* onnet_mac_context_new(void) {
    EVP_MAC* mac = EVP_MAC_fetch(NULL, "BLAKE2BMAC", NULL);
    EVP_MAC_CTX* context;
    if (mac == NULL) {
        return NULL;
    }
    context = EVP_MAC_CTX_new(mac); /* holds its own reference to mac */
    EVP_MAC_free(mac);
    return context;
}

/* The MAC of a token that starts with ``header`` and covers the digest (first, second)
   for the account ``name``: over domain || header without its version byte (implied by
   the domain) || len(name) || name || the digest's two lanes, little-endian. 1 on
   success, 0 if libcrypto failed or the name is too long. */
static int onnet_token_mac(EVP_MAC_CTX* context, const onnet_token_key* key,
                           const uint8_t* header, const uint8_t* name, size_t name_size,
                           uint64_t first, uint64_t second, uint8_t* out) {
    uint8_t message[ONNET_MAX_DOMAIN + ONNET_HEADER_SIZE + ONNET_MAX_ACCOUNT + 16];
    size_t size = key->domain_size, written = 0, digest_size = ONNET_MAC_SIZE;
    OSSL_PARAM parameters[2];
    if (context == NULL || name_size > ONNET_MAX_ACCOUNT || size > ONNET_MAX_DOMAIN) {
        return 0;
    }
    memcpy(message, key->domain, size);
    memcpy(message + size, header + 1, ONNET_HEADER_SIZE - 1);
    size += ONNET_HEADER_SIZE - 1;
    message[size++] = (uint8_t)name_size;
    memcpy(message + size, name, name_size);
    size += name_size;
    memcpy(message + size, &first, 8); /* little-endian machines only, as the index */
    memcpy(message + size + 8, &second, 8);
    size += 16;
    parameters[0] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &digest_size);
    parameters[1] = OSSL_PARAM_construct_end();
    /* Each init sets the key afresh: the context carries nothing from one MAC to the next. */
    return EVP_MAC_init(context, key->mac_key, ONNET_MAC_KEY_SIZE, parameters) == 1
           && EVP_MAC_update(context, message, size) == 1
           && EVP_MAC_final(context, out, &written, ONNET_MAC_SIZE) == 1
           && written == ONNET_MAC_SIZE;
}

/* Write to ``token`` (ONNET_TOKEN_SIZE bytes) a token issued at unix time ``now`` to
   ``name`` for the digest (first, second). 1 on success, 0 if the MAC failed. */
static int onnet_token_issue(EVP_MAC_CTX* context, const onnet_token_key* key,
                             const uint8_t* name, size_t name_size, uint64_t first,
                             uint64_t second, double now, uint8_t* token) {
    int64_t expiry = (int64_t)now + key->ttl;
    int i;
    token[0] = ONNET_TOKEN_VERSION;
    memcpy(token + 1, key->key_id, ONNET_KEY_ID_SIZE);
    for (i = 0; i < ONNET_EXPIRY_SIZE; i++) { /* big-endian */
        token[1 + ONNET_KEY_ID_SIZE + i] = (uint8_t)(expiry >> (8 * (ONNET_EXPIRY_SIZE - 1 - i)));
    }
    return onnet_token_mac(context, key, token, name, name_size, first, second,
                           token + ONNET_HEADER_SIZE);
}

/* If ``token`` is a current token of ``name``, not expired at ``now``, that covers exactly
   the set with digest (first, second), write its renewal to ``next`` and return 1. 0: not
   proved here (another key or version, expired, malformed, or another set: the caller's
   Python decides, refusals included); -1: libcrypto failed. */
static int onnet_token_renew(EVP_MAC_CTX* context, const onnet_token_key* key,
                             const uint8_t* token, size_t token_size, const uint8_t* name,
                             size_t name_size, uint64_t first, uint64_t second, double now,
                             uint8_t* next) {
    uint8_t expected[ONNET_MAC_SIZE];
    uint64_t expiry = 0;
    int i;
    if (token_size != ONNET_TOKEN_SIZE || token[0] != ONNET_TOKEN_VERSION
        || memcmp(token + 1, key->key_id, ONNET_KEY_ID_SIZE) != 0) {
        return 0;
    }
    for (i = 0; i < ONNET_EXPIRY_SIZE; i++) {
        expiry = (expiry << 8) | token[1 + ONNET_KEY_ID_SIZE + i];
    }
    if (now >= (double)expiry) {
        return 0;
    }
    if (!onnet_token_mac(context, key, token, name, name_size, first, second, expected)) {
        return -1;
    }
    /* In time that does not depend on where the two differ. */
    if (CRYPTO_memcmp(expected, token + ONNET_HEADER_SIZE, ONNET_MAC_SIZE) != 0) {
        return 0;
    }
    return onnet_token_issue(context, key, name, name_size, first, second, now, next) ? 1 : -1;
}

#endif
