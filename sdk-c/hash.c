/* hash.c - cbm_hash_str (cbm_internal.h): FNV-1a, 32 bits. */
#include "cbm_internal.h"

uint32_t cbm_hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}
