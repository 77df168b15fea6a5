/*
 * match.c - diverge patterns, branch conditions, JSON paths and input
 * templates (match.h). Pure functions over cJSON trees.
 *
 * Recursion follows the depth of the trees, which cJSON's parser bounds
 * (CJSON_NESTING_LIMIT, 1000 levels), and patterns and conditions come from
 * parsed blueprints; a path is walked iteratively.
 */
#include "engine/match.h"

#include <stddef.h>
#include <string.h>

#include "cerebelum/error.h"

#define TYPE(j) ((j)->type & 0xFF)

static bool is_wildcard(const cJSON *p)
{
    return cJSON_IsString(p) && p->valuestring != NULL && strcmp(p->valuestring, "_") == 0;
}

/* First member named key (case-sensitive), or NULL. cJSON's own lookup does
 * the same; this one takes a length, for keys inside a path. */
static const cJSON *member(const cJSON *obj, const char *key, size_t len)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (it->string != NULL && strncmp(it->string, key, len) == 0 && it->string[len] == '\0')
            return it;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Equality and patterns                                                    */
/* ------------------------------------------------------------------------ */

bool json_equal(const cJSON *a, const cJSON *b)
{
    const cJSON *x, *y;
    size_t na = 0, nb = 0;

    if (a == NULL || b == NULL || TYPE(a) != TYPE(b)) return false;
    switch (TYPE(a)) {
    case cJSON_False:
    case cJSON_True:
    case cJSON_NULL:
        return true;
    case cJSON_Number:
        return a->valuedouble == b->valuedouble;
    case cJSON_String:
    case cJSON_Raw:
        return a->valuestring != NULL && b->valuestring != NULL &&
               strcmp(a->valuestring, b->valuestring) == 0;
    case cJSON_Array:
        for (x = a->child, y = b->child; x != NULL && y != NULL; x = x->next, y = y->next)
            if (!json_equal(x, y)) return false;
        return x == NULL && y == NULL;
    case cJSON_Object:
        cJSON_ArrayForEach(x, a) na++;
        cJSON_ArrayForEach(y, b) nb++;
        if (na != nb) return false;
        cJSON_ArrayForEach(x, a) {
            if (x->string == NULL) return false;
            if (!json_equal(x, member(b, x->string, strlen(x->string)))) return false;
        }
        return true;
    default:
        return false;
    }
}

bool match_pattern(const cJSON *pattern, const cJSON *value)
{
    const cJSON *p, *v;

    if (pattern == NULL || value == NULL) return false;
    if (is_wildcard(pattern)) return true;
    switch (TYPE(pattern)) {
    case cJSON_Object:
        if (!cJSON_IsObject(value)) return false;
        cJSON_ArrayForEach(p, pattern) {
            if (p->string == NULL) return false;
            if (!match_pattern(p, member(value, p->string, strlen(p->string)))) return false;
        }
        return true;
    case cJSON_Array:
        if (!cJSON_IsArray(value)) return false;
        for (p = pattern->child, v = value->child; p != NULL && v != NULL; p = p->next, v = v->next)
            if (!match_pattern(p, v)) return false;
        return p == NULL && v == NULL;
    default:
        return json_equal(pattern, value);
    }
}

bool match_subsumes(const cJSON *general, const cJSON *specific)
{
    const cJSON *g, *s;

    if (general == NULL || specific == NULL) return false;
    if (is_wildcard(general)) return true;
    if (is_wildcard(specific)) return false;
    switch (TYPE(general)) {
    case cJSON_Object:
        if (!cJSON_IsObject(specific)) return false;
        cJSON_ArrayForEach(g, general) {
            if (g->string == NULL) return false;
            if (!match_subsumes(g, member(specific, g->string, strlen(g->string)))) return false;
        }
        return true;
    case cJSON_Array:
        if (!cJSON_IsArray(specific)) return false;
        for (g = general->child, s = specific->child; g != NULL && s != NULL;
             g = g->next, s = s->next)
            if (!match_subsumes(g, s)) return false;
        return g == NULL && s == NULL;
    default:
        return json_equal(general, specific);
    }
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                    */
/* ------------------------------------------------------------------------ */

static bool key_char(char c)
{
    return c != '.' && c != '[' && c != ']' && (unsigned char)c >= 0x20 && c != 0x7f;
}

/* Walk path over root; with root NULL only check the syntax. Returns false on
 * malformed syntax; *found is the value (NULL when missing). */
static bool walk(const cJSON *root, const char *path, const cJSON **found)
{
    const cJSON *cur = root;
    const char *p = path;
    bool first = true;

    while (*p != '\0') {
        if (*p == '[') {
            size_t idx = 0, digits = 0;
            for (p++; *p >= '0' && *p <= '9'; p++, digits++)
                if (digits < 9) idx = idx * 10 + (size_t)(*p - '0');
            if (digits == 0 || digits > 9 || *p != ']') return false;
            p++;
            if (cur != NULL) {
                const cJSON *it = cJSON_IsArray(cur) ? cur->child : NULL;
                for (; it != NULL && idx > 0; idx--) it = it->next;
                cur = it;
            }
        } else {
            size_t len = 0;
            if (!first) {
                if (*p != '.') return false;
                p++;
            }
            while (key_char(p[len])) len++;
            if (len == 0) return false;
            if (cur != NULL) cur = cJSON_IsObject(cur) ? member(cur, p, len) : NULL;
            p += len;
        }
        first = false;
    }
    *found = cur;
    return true;
}

bool json_path_valid(const char *path)
{
    const cJSON *ignored;
    return path != NULL && walk(NULL, path, &ignored);
}

const cJSON *json_path_get(const cJSON *root, const char *path)
{
    const cJSON *found = NULL;
    if (root == NULL || path == NULL) return NULL;
    return walk(root, path, &found) ? found : NULL;
}

/* ------------------------------------------------------------------------ */
/* Conditions                                                               */
/* ------------------------------------------------------------------------ */

static int compare(const char *op, const cJSON *x, const cJSON *v, bool *out)
{
    double c;

    if (strcmp(op, "exists") == 0) {
        *out = x != NULL;
        return 0;
    }
    if (v == NULL) return CBM_EINVAL;
    if (strcmp(op, "==") == 0) {
        *out = json_equal(x, v);
    } else if (strcmp(op, "!=") == 0) {
        *out = x != NULL && !json_equal(x, v);
    } else if (strcmp(op, "in") == 0) {
        const cJSON *e;
        if (!cJSON_IsArray(v)) return CBM_EINVAL;
        *out = false;
        cJSON_ArrayForEach(e, v) {
            if (json_equal(x, e)) {
                *out = true;
                break;
            }
        }
    } else {
        bool lt = strcmp(op, "<") == 0, le = strcmp(op, "<=") == 0;
        bool gt = strcmp(op, ">") == 0, ge = strcmp(op, ">=") == 0;
        if (!(lt || le || gt || ge)) return CBM_EINVAL;
        if (!cJSON_IsNumber(v) && !cJSON_IsString(v)) return CBM_EINVAL;
        *out = false;
        if (x == NULL || TYPE(x) != TYPE(v)) return 0;
        if (cJSON_IsNumber(v)) {
            /* NaN compares false either way, which is what a missing order is. */
            if (x->valuedouble < v->valuedouble) c = -1;
            else if (x->valuedouble > v->valuedouble) c = 1;
            else if (x->valuedouble == v->valuedouble) c = 0;
            else return 0;
        } else {
            if (x->valuestring == NULL || v->valuestring == NULL) return 0;
            c = strcmp(x->valuestring, v->valuestring);
        }
        *out = lt ? c < 0 : le ? c <= 0 : gt ? c > 0 : c >= 0;
    }
    return 0;
}

int cond_eval(const cJSON *cond, const cJSON *value, bool *out)
{
    const cJSON *k, *c;
    bool b;
    int rc;

    if (out == NULL || !cJSON_IsObject(cond)) return CBM_EINVAL;
    if ((k = cJSON_GetObjectItemCaseSensitive(cond, "and")) != NULL ||
        (k = cJSON_GetObjectItemCaseSensitive(cond, "or")) != NULL) {
        bool is_and = strcmp(k->string, "and") == 0;
        if (!cJSON_IsArray(k) || k->child == NULL) return CBM_EINVAL;
        cJSON_ArrayForEach(c, k) {
            if ((rc = cond_eval(c, value, &b)) != 0) return rc;
            if (b != is_and) {
                *out = b;
                return 0;
            }
        }
        *out = is_and;
        return 0;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(cond, "not")) != NULL) {
        if ((rc = cond_eval(k, value, &b)) != 0) return rc;
        *out = !b;
        return 0;
    }
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(cond, "path");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(cond, "op");
    if (!cJSON_IsString(path) || !cJSON_IsString(op) || !json_path_valid(path->valuestring))
        return CBM_EINVAL;
    return compare(op->valuestring, json_path_get(value, path->valuestring),
                   cJSON_GetObjectItemCaseSensitive(cond, "value"), out);
}

/* ------------------------------------------------------------------------ */
/* Templates                                                                */
/* ------------------------------------------------------------------------ */

bool match_is_reference(const char *s)
{
    return s != NULL && s[0] == '$' && s[1] == '.';
}

static cJSON *build(const cJSON *t, const cJSON *data)
{
    cJSON *o, *c;
    const cJSON *it;

    if (cJSON_IsString(t) && match_is_reference(t->valuestring)) {
        const cJSON *v = json_path_get(data, t->valuestring + 2);
        return v != NULL ? cJSON_Duplicate(v, true) : cJSON_CreateNull();
    }
    if (!cJSON_IsObject(t) && !cJSON_IsArray(t)) return cJSON_Duplicate(t, false);
    o = cJSON_IsObject(t) ? cJSON_CreateObject() : cJSON_CreateArray();
    if (o == NULL) return NULL;
    cJSON_ArrayForEach(it, t) {
        if ((c = build(it, data)) == NULL) goto fail;
        if (cJSON_IsObject(t) ? !cJSON_AddItemToObject(o, it->string, c)
                              : !cJSON_AddItemToArray(o, c)) {
            cJSON_Delete(c);
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

int match_template(const cJSON *tmpl, const cJSON *data, cJSON **out)
{
    if (out == NULL) return CBM_EINVAL;
    *out = tmpl != NULL ? build(tmpl, data) : cJSON_CreateObject();
    return *out != NULL ? 0 : CBM_ENOMEM;
}
