/*
 * crypto.h - the few primitives hooks need (signed tokens and cookies):
 * HMAC-SHA256, SHA-256, base64url, constant-time comparison and random
 * bytes, over OpenSSL's libcrypto.
 */
#ifndef AB_CRYPTO_H
#define AB_CRYPTO_H

#include <stddef.h>

#define AB_SHA256_LEN 32

/* Returns 0, or -1 if libcrypto failed. */
int ab_hmac_sha256(const void *key, size_t key_len, const void *data,
                   size_t data_len, unsigned char out[AB_SHA256_LEN]);
int ab_sha256(const void *data, size_t len, unsigned char out[AB_SHA256_LEN]);

/* Non-zero if the two byte strings are equal; the time taken depends
 * on the lengths only. */
int ab_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Unpadded base64url.  `out` needs ab_base64url_encoded_len(len) + 1
 * bytes; returns the length written (NUL-terminated). */
size_t ab_base64url_encoded_len(size_t len);
size_t ab_base64url_encode(const unsigned char *in, size_t len, char *out);

/* Decodes base64url, padding optional; `out` needs len * 3 / 4 + 3
 * bytes.  Returns 0 and sets *out_len, or -1 on a bad character or
 * length. */
int ab_base64url_decode(const char *in, size_t len, unsigned char *out,
                        size_t *out_len);

/* Fills `buf` with `len` random bytes; 0, or -1 on failure. */
int ab_random_bytes(unsigned char *buf, size_t len);

#endif
