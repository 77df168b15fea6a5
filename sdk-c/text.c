/*
 * text.c - the one check of text that enters the engine (cbm_internal.h).
 *
 * PostgreSQL stores text and JSON in UTF-8 and refuses anything else (SQLSTATE
 * 22021), and its jsonb cannot hold the escape \u0000 (22P05). Bytes that it
 * refuses must never reach a group commit, where they would fail every other
 * decision of the batch, so every string that can reach the store or a
 * handler is checked where it enters (gRPC requests, the SDK, handler and
 * worker results) with these functions, and refused with a message naming
 * the field.
 *
 * The choice for NUL: refused, everywhere. A C string cannot carry one (it
 * would be cut, silently), jsonb cannot store one, and no workflow needs one;
 * binary data travels base64-encoded in JSON like everywhere else.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

/* Length of the valid UTF-8 sequence at s[i] (1-4), or 0 when the bytes
 * there are not one (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF, no truncated sequence). */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t len)
{
    unsigned c = s[i];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;

    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (len - i < n) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
    return n;
}

long cbm_text_problem(const char *s, size_t len, const char **why)
{
    const unsigned char *u = (const unsigned char *)s;

    for (size_t i = 0; i < len;) {
        size_t n;
        if (u[i] == 0) {
            if (why != NULL) *why = "holds a NUL byte";
            return (long)i;
        }
        if ((n = utf8_seq(u, i, len)) == 0) {
            if (why != NULL) *why = "is not valid UTF-8";
            return (long)i;
        }
        i += n;
    }
    return -1;
}

int cbm_text_check(const char *s, size_t len, const char *field, cbm_error_t *err)
{
    const char *why = NULL;
    long at;

    if (s == NULL) return 0;
    if ((at = cbm_text_problem(s, len, &why)) >= 0)
        return cbm_error_set(err, CBM_EINVAL, "%s %s (byte %ld)", field, why, at);
    return 0;
}

int cbm_str_check(const char *s, const char *field, cbm_error_t *err)
{
    return s == NULL ? 0 : cbm_text_check(s, strlen(s), field, err);
}

int cbm_json_check(const char *s, size_t len, const char *field, cbm_error_t *err)
{
    bool in_string = false;
    int rc;

    if (s == NULL) return 0;
    if ((rc = cbm_text_check(s, len, field, err)) != 0) return rc;
    /* \u0000 inside a string (outside one it is a syntax error anyway). */
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') {
            in_string = !in_string;
        } else if (in_string && s[i] == '\\' && i + 1 < len) {
            if (s[i + 1] == 'u' && len - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
                return cbm_error_set(err, CBM_EINVAL,
                                     "%s holds \\u0000 (a NUL character, which is not stored; "
                                     "encode binary data, e.g. in base64) at byte %zu",
                                     field, i);
            i++; /* the escaped character, a quote or a backslash included */
        }
    }
    return 0;
}

char *cbm_text_sanitize(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len, j = 0;
    char *out;

    if (s == NULL) return NULL;
    len = strlen(s);
    /* Each bad byte becomes U+FFFD (3 bytes). */
    if ((out = malloc(len * 3 + 1)) == NULL) return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(u, i, len);
        if (n == 0) {
            memcpy(out + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        } else {
            memcpy(out + j, s + i, n);
            j += n;
            i += n;
        }
    }
    out[j] = '\0';
    return out;
}

void cbm_text_fix_inplace(char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);

    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(u, i, len);
        if (n == 0) {
            /* A sequence cut at the end (a truncated message) is dropped;
             * any other bad byte becomes '?'. */
            bool tail = len - i < 4 && u[i] >= 0xC2 && u[i] <= 0xF4;
            for (size_t k = i + 1; tail && k < len; k++) tail = u[k] >= 0x80 && u[k] <= 0xBF;
            if (tail) {
                s[i] = '\0';
                return;
            }
            s[i++] = '?';
        } else {
            i += n;
        }
    }
}
