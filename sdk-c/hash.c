/* hash.c - cbm_hash_str (FNV-1a, 32 bits) and cbm_sha256_hex (cbm_internal.h). */
#include <openssl/evp.h>
#include <stdio.h>

#include "cbm_internal.h"

uint32_t cbm_hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

int cbm_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) return CBM_ENOMEM;
    for (unsigned int i = 0; i < mdlen; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}
