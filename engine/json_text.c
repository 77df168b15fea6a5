/*
 * json_text.c - see json_text.h. The checker is a recursive descent over
 * the grammar of RFC 8259, bounded in depth, allocating nothing.
 */
#include "engine/json_text.h"

#include <string.h>

#include "cerebelum/error.h"

typedef struct cursor {
    const unsigned char *p, *end;
    int depth;
} cursor_t;

static bool value(cursor_t *c);

static void skip_ws(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool literal(cursor_t *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

static int hex4(cursor_t *c)
{
    int v = 0;
    if (c->end - c->p < 4) return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char h = *c->p++;
        v <<= 4;
        if (h >= '0' && h <= '9') v |= h - '0';
        else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
        else return -1;
    }
    return v;
}

/* After "\u": a code unit, and a low surrogate after a high one (cJSON
 * refuses lone surrogates). */
static bool unicode_escape(cursor_t *c)
{
    int u = hex4(c), low;
    if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;
    if (u < 0xD800 || u > 0xDBFF) return true;
    if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') return false;
    c->p += 2;
    low = hex4(c);
    return low >= 0xDC00 && low <= 0xDFFF;
}

static bool string(cursor_t *c)
{
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        unsigned char ch = *c->p++;
        if (ch == '"') return true;
        if (ch < 0x20) return false;
        if (ch != '\\') continue;
        if (c->p >= c->end) return false;
        ch = *c->p++;
        if (ch == 'u') {
            if (!unicode_escape(c)) return false;
        } else if (strchr("\"\\/bfnrt", ch) == NULL || ch == '\0') {
            return false;
        }
    }
    return false;
}

static bool digits(cursor_t *c)
{
    const unsigned char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > start;
}

static bool number(cursor_t *c)
{
    const unsigned char *start = c->p;
    if (*c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0') c->p++;
    else if (!digits(c)) return false;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!digits(c)) return false;
    }
    /* Older cJSON reads at most 63 characters of a number. */
    return c->p - start <= 63;
}

/* '[' or '{' at c->p. */
static bool container(cursor_t *c)
{
    unsigned char close = *c->p == '[' ? ']' : '}';
    bool first = true;

    if (++c->depth > JSON_TEXT_MAX_DEPTH) return false;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return true;
    }
    for (;;) {
        if (!first) {
            skip_ws(c);
            if (c->p >= c->end) return false;
            if (*c->p == close) {
                c->p++;
                c->depth--;
                return true;
            }
            if (*c->p++ != ',') return false;
            skip_ws(c);
        }
        first = false;
        if (close == '}') {
            if (c->p >= c->end || *c->p != '"' || !string(c)) return false;
            skip_ws(c);
            if (c->p >= c->end || *c->p++ != ':') return false;
            skip_ws(c);
        }
        if (!value(c)) return false;
    }
}

static bool value(cursor_t *c)
{
    if (c->p >= c->end) return false;
    switch (*c->p) {
    case '{':
    case '[': return container(c);
    case '"': return string(c);
    case 't': return literal(c, "true");
    case 'f': return literal(c, "false");
    case 'n': return literal(c, "null");
    default: return (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && number(c);
    }
}

bool json_text_well_formed(const char *text, size_t len)
{
    cursor_t c = {(const unsigned char *)text, (const unsigned char *)text + len, 0};

    if (text == NULL) return false;
    skip_ws(&c);
    return value(&c);
}

cJSON *json_text_parse(const char *text, int *rc)
{
    cJSON *j = text != NULL ? cJSON_Parse(text) : NULL;

    *rc = 0;
    if (j == NULL) *rc = json_text_well_formed(text, text != NULL ? strlen(text) : 0) ? CBM_ENOMEM
                                                                                      : CBM_EJSON;
    return j;
}

int json_text_normalize(const char *text, char **out)
{
    int rc;
    cJSON *j = json_text_parse(text, &rc);

    *out = NULL;
    if (j == NULL) return rc;
    *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return *out != NULL ? 0 : CBM_ENOMEM;
}
