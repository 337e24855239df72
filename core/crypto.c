/*
 * crypto.c - HMAC, hashing and base64url over libcrypto.
 */
#include "crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
ab_hmac_sha256(const void *key, size_t key_len, const void *data,
               size_t data_len, unsigned char out[AB_SHA256_LEN])
{
    unsigned int len = AB_SHA256_LEN;

    if (HMAC(EVP_sha256(), key, (int)key_len, data, data_len, out, &len) ==
        NULL) {
        return -1;
    }
    return 0;
}

int
ab_sha256(const void *data, size_t len, unsigned char out[AB_SHA256_LEN])
{
    unsigned int olen = AB_SHA256_LEN;

    return EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL) ? 0 : -1;
}

int
ab_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen) {
        return 0;
    }
    return alen == 0 || CRYPTO_memcmp(a, b, alen) == 0;
}

size_t
ab_base64url_encoded_len(size_t len)
{
    return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

size_t
ab_base64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 2 < len; i += 3) {
        unsigned v =
            (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
        out[o++] = b64url[v >> 6 & 63];
        out[o++] = b64url[v & 63];
    }
    if (len - i == 1) {
        out[o++] = b64url[in[i] >> 2];
        out[o++] = b64url[(in[i] & 3) << 4];
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 8 | in[i + 1];
        out[o++] = b64url[v >> 10 & 63];
        out[o++] = b64url[v >> 4 & 63];
        out[o++] = b64url[(v & 15) << 2];
    }
    out[o] = '\0';
    return o;
}

/* The 6-bit value of a base64url (or standard base64) character, or -1. */
static int
sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

int
ab_base64url_decode(const char *in, size_t len, unsigned char *out,
                    size_t *out_len)
{
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;

    while (len > 0 && in[len - 1] == '=') {
        len--;
    }
    if (len % 4 == 1) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        int v = sextet((unsigned char)in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    *out_len = o;
    return 0;
}

int
ab_random_bytes(unsigned char *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}
