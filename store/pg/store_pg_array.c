/*
 * store_pg_array.c - build PostgreSQL array literals in text form.
 *
 * The group commit passes each column of a batch as one array parameter
 * (unnest($1::uuid[], ...)), so this is the only quoting the store does; the
 * rest travels as out-of-line parameters. The rules (PostgreSQL manual, 8.15.6
 * "Array Input and Output Syntax"): an element in double quotes may contain
 * anything, with " and \ preceded by a backslash; an unquoted NULL is SQL
 * NULL. Quoting every element keeps the builder trivially correct: "NULL" is
 * the text NULL, and braces, commas, spaces and newlines need nothing.
 */
#include "store/pg/store_pg_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_pg_array_init(pg_array_t *a)
{
    memset(a, 0, sizeof(*a));
}

void store_pg_array_free(pg_array_t *a)
{
    free(a->buf);
    store_pg_array_init(a);
}

/* Room for extra more bytes plus the closing "}\0". */
static bool reserve(pg_array_t *a, size_t extra)
{
    size_t need = a->len + extra + 2, cap;
    char *nb;

    if (a->oom) return false;
    if (need <= a->cap) return true;
    cap = a->cap != 0 ? a->cap : 256;
    while (cap < need) cap *= 2;
    nb = realloc(a->buf, cap);
    if (nb == NULL) {
        a->oom = true;
        return false;
    }
    a->buf = nb;
    a->cap = cap;
    return true;
}

/* Also the first use of a fresh array. A failure sticks until the next
 * explicit reset (the later adds do not retry it), so finish() reports it. */
void store_pg_array_reset(pg_array_t *a)
{
    a->len = 0;
    a->count = 0;
    a->oom = false;
    if (reserve(a, 1)) a->buf[a->len++] = '{';
}

/* The separator before an element; reset() must have run. */
static void separator(pg_array_t *a)
{
    if (a->count++ > 0) a->buf[a->len++] = ',';
}

void store_pg_array_add_text(pg_array_t *a, const char *s)
{
    size_t n, extra = 0;
    char *p;

    if (a->len == 0 && !a->oom) store_pg_array_reset(a);
    if (s == NULL) {
        if (!reserve(a, 5)) return;
        separator(a);
        memcpy(a->buf + a->len, "NULL", 4);
        a->len += 4;
        return;
    }
    n = strlen(s);
    for (const char *q = s; *q != '\0'; q++)
        if (*q == '"' || *q == '\\') extra++;
    if (!reserve(a, n + extra + 3)) return;
    separator(a);
    p = a->buf + a->len;
    *p++ = '"';
    if (extra == 0) {
        memcpy(p, s, n);
        p += n;
    } else {
        for (const char *q = s; *q != '\0'; q++) {
            if (*q == '"' || *q == '\\') *p++ = '\\';
            *p++ = *q;
        }
    }
    *p++ = '"';
    a->len = (size_t)(p - a->buf);
}

void store_pg_array_add_int(pg_array_t *a, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

    if (a->len == 0 && !a->oom) store_pg_array_reset(a);
    if (!reserve(a, (size_t)n + 1)) return;
    separator(a);
    memcpy(a->buf + a->len, tmp, (size_t)n);
    a->len += (size_t)n;
}

const char *store_pg_array_finish(pg_array_t *a)
{
    if (a->len == 0 && !a->oom) store_pg_array_reset(a);
    if (a->oom) return NULL;
    /* reserve() always kept room for these two. */
    a->buf[a->len] = '}';
    a->buf[a->len + 1] = '\0';
    return a->buf;
}
