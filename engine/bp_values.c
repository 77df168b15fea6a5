/*
 * bp_values.c - field checks and the JSON values a blueprint keeps (canonical
 * cJSON trees: keys sorted, repeats and non-finite numbers refused).
 */
#include <assert.h>
#include <cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/blueprint_internal.h"
#include "engine/match.h"

/* ------------------------------------------------------------------------ */
/* Field checks                                                             */
/* ------------------------------------------------------------------------ */

bool bp_name_chars_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/* A blueprint or step name. where: "blueprint", "steps[2]", "timeline[0]". */
int bp_check_name(const cJSON *item, const char *where, cbm_error_t *err)
{
    const char *s;
    if (item == NULL) return cbm_error_set(err, CBM_EBLUEPRINT, "%s: name is missing", where);
    if (!cJSON_IsString(item))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: name must be a string", where);
    s = item->valuestring;
    if (s[0] == '\0') return cbm_error_set(err, CBM_EBLUEPRINT, "%s: name is empty", where);
    if (strlen(s) > NAME_MAX_LEN)
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: name '%.40s...' is longer than %d characters",
                             where, s, NAME_MAX_LEN);
    if (!bp_name_chars_ok(s))
        return cbm_error_set(err, CBM_EBLUEPRINT,
                             "%s: name '%.64s' may only contain letters, digits, '_', '.' and '-'",
                             where, s);
    return 0;
}

/* Every key of obj must be in allowed, and appear once. A bitmask of the keys
 * seen keeps this linear however many keys a hostile input repeats. */
int bp_check_keys(const cJSON *obj, const char *const *allowed, const char *label,
                  cbm_error_t *err)
{
    uint32_t seen = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        size_t k;
        for (k = 0; allowed[k] != NULL; k++)
            if (strcmp(it->string, allowed[k]) == 0) break;
        if (allowed[k] == NULL) {
            char list[256] = "";
            size_t used = 0;
            for (size_t j = 0; allowed[j] != NULL; j++) {
                int n = snprintf(list + used, sizeof(list) - used, "%s%s", j ? ", " : "",
                                 allowed[j]);
                if (n < 0 || (size_t)n >= sizeof(list) - used) break;
                used += (size_t)n;
            }
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: unknown key '%.64s' (allowed: %s)",
                                 label, it->string, list);
        }
        assert(k < 32);
        if (seen & (UINT32_C(1) << k))
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: duplicate key '%s'", label, allowed[k]);
        seen |= UINT32_C(1) << k;
    }
    return 0;
}

/* An integer field in [min, max]. JSON has one number type, so 5000.0 is the
 * integer 5000; 1.5 is not an integer. */
int bp_get_int(const cJSON *item, const char *label, const char *field, int64_t min,
               int64_t max, int64_t *out, cbm_error_t *err)
{
    double v;
    bool ok = cJSON_IsNumber(item);
    if (ok) {
        v = item->valuedouble;
        ok = isfinite(v) && floor(v) == v && v >= (double)min;
        if (ok && v > (double)max) {
            if (max == INT_FIELD_MAX)
                return cbm_error_set(err, CBM_EBLUEPRINT, "%s: %s must be at most %" PRId64,
                                     label, field, max);
            ok = false;
        }
        if (ok) {
            *out = (int64_t)v;
            return 0;
        }
    }
    if (max != INT_FIELD_MAX)
        return cbm_error_set(err, CBM_EBLUEPRINT,
                             "%s: %s must be an integer from %" PRId64 " to %" PRId64, label,
                             field, min, max);
    return cbm_error_set(err, CBM_EBLUEPRINT, "%s: %s must be a %s integer", label, field,
                         min > 0 ? "positive" : "non-negative");
}

/* A duration in milliseconds: an integer from min (0 or 1) to 10 years. */
int bp_get_ms(const cJSON *item, const char *label, const char *field, int64_t min,
              int64_t *out, cbm_error_t *err)
{
    if (cJSON_IsNumber(item) && isfinite(item->valuedouble) &&
        item->valuedouble > (double)BP_MAX_DURATION_MS)
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: %s must be at most %" PRId64 " (10 years)",
                             label, field, BP_MAX_DURATION_MS);
    return bp_get_int(item, label, field, min, INT_FIELD_MAX, out, err);
}

/* handler: any non-empty text without control characters (it names a
 * registered function); queue: name characters, as it names a task queue. */
int bp_get_ident(const cJSON *item, const char *label, const char *field, bool name_chars,
                 char **out, parser_t *p)
{
    const char *s;
    if (!cJSON_IsString(item) || item->valuestring[0] == '\0')
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s must be a non-empty string", label,
                             field);
    s = item->valuestring;
    if (strlen(s) > NAME_MAX_LEN)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s is longer than %d characters", label,
                             field, NAME_MAX_LEN);
    if (name_chars && !bp_name_chars_ok(s))
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: %s '%.64s' may only contain letters, digits, '_', '.' and '-'",
                             label, field, s);
    for (const char *c = s; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s contains a control character",
                                 label, field);
    *out = bp_xstrdup(s);
    return *out != NULL ? 0 : bp_oom(p);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* retry.non_retryable is a set: stored (and printed) sorted, without repeats. */
static int parse_non_retryable(const cJSON *arr, const char *label, bp_retry_t *r, parser_t *p)
{
    const cJSON *it;
    size_t n = 0, i = 0;
    if (!cJSON_IsArray(arr))
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: retry.non_retryable must be an array of error kinds", label);
    cJSON_ArrayForEach(it, arr) n++;
    r->non_retryable = bp_xcalloc(n, sizeof(char *));
    if (r->non_retryable == NULL) return bp_oom(p);
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: retry.non_retryable[%zu] must be a non-empty string", label,
                                 i);
        if (strlen(it->valuestring) > NAME_MAX_LEN)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: retry.non_retryable[%zu] is longer than %d characters",
                                 label, i, NAME_MAX_LEN);
        r->non_retryable[i] = bp_xstrdup(it->valuestring);
        if (r->non_retryable[i] == NULL) return bp_oom(p);
        r->n_non_retryable = ++i;
    }
    if (n > 1) qsort(r->non_retryable, n, sizeof(char *), cmp_str);
    for (i = 0, r->n_non_retryable = 0; i < n; i++) {
        if (r->n_non_retryable > 0 &&
            strcmp(r->non_retryable[r->n_non_retryable - 1], r->non_retryable[i]) == 0) {
            cJSON_free(r->non_retryable[i]);
            continue;
        }
        r->non_retryable[r->n_non_retryable++] = r->non_retryable[i];
    }
    return 0;
}

/* The retry object; absent fields keep the defaults already in *r. The
 * relation max_ms >= initial_ms is checked on the merged policy. */
int bp_parse_retry(const cJSON *obj, const char *label, bp_retry_t *r, parser_t *p)
{
    char rlabel[192];
    const cJSON *it;
    int64_t v;
    int rc;

    if (!cJSON_IsObject(obj))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: retry must be an object", label);
    snprintf(rlabel, sizeof(rlabel), "%s: retry", label);
    if ((rc = bp_check_keys(obj, bp_retry_keys, rlabel, p->err)) != 0) return rc;

    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_attempts")) != NULL) {
        rc = bp_get_int(it, label, "retry.max_attempts", 1, MAX_ATTEMPTS_MAX, &v, p->err);
        if (rc != 0) return rc;
        r->max_attempts = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "initial_ms")) != NULL) {
        rc = bp_get_ms(it, label, "retry.initial_ms", 1, &r->initial_ms, p->err);
        if (rc != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_ms")) != NULL) {
        rc = bp_get_ms(it, label, "retry.max_ms", 1, &r->max_ms, p->err);
        if (rc != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "multiplier")) != NULL) {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 1.0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: retry.multiplier must be a number >= 1", label);
        r->multiplier = it->valuedouble;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "non_retryable")) != NULL) {
        if ((rc = parse_non_retryable(it, label, r, p)) != 0) return rc;
    }
    if (r->max_ms < r->initial_ms)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: retry.max_ms (%" PRId64 ") must be >= retry.initial_ms (%" PRId64
                             ")",
                             label, r->max_ms, r->initial_ms);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON values kept by the blueprint                                        */
/* ------------------------------------------------------------------------ */

enum { CANON_OK = 0, CANON_OOM, CANON_DUP, CANON_RANGE };

int bp_cmp_member(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* A deep copy of in with every object's keys sorted by byte. Repeated keys
 * (CANON_DUP, *dup names the key) and numbers that are not finite
 * (CANON_RANGE: JSON text like 1e999, which cJSON would print as null) are
 * refused. */
static int canon_copy(const cJSON *in, cJSON **out, const char **dup)
{
    const cJSON *it;
    const cJSON **kids = NULL;
    cJSON *o = NULL, *c;
    size_t n = 0, i = 0;
    int rc;

    *out = NULL;
    switch (in->type & 0xFF) {
    case cJSON_Number:
        if (!isfinite(in->valuedouble)) return CANON_RANGE;
        o = cJSON_CreateNumber(in->valuedouble);
        break;
    case cJSON_String:
        o = cJSON_CreateString(in->valuestring);
        break;
    case cJSON_True:
        o = cJSON_CreateTrue();
        break;
    case cJSON_False:
        o = cJSON_CreateFalse();
        break;
    case cJSON_NULL:
        o = cJSON_CreateNull();
        break;
    case cJSON_Array:
        if ((o = cJSON_CreateArray()) == NULL) return CANON_OOM;
        cJSON_ArrayForEach(it, in) {
            if ((rc = canon_copy(it, &c, dup)) != CANON_OK) goto fail;
            if (!cJSON_AddItemToArray(o, c)) {
                cJSON_Delete(c);
                rc = CANON_OOM;
                goto fail;
            }
        }
        break;
    case cJSON_Object:
        cJSON_ArrayForEach(it, in) n++;
        if ((o = cJSON_CreateObject()) == NULL || (kids = bp_xcalloc(n, sizeof(*kids))) == NULL) {
            rc = CANON_OOM;
            goto fail;
        }
        cJSON_ArrayForEach(it, in) kids[i++] = it;
        if (n > 1) qsort(kids, n, sizeof(*kids), bp_cmp_member);
        for (i = 0; i < n; i++) {
            if (i > 0 && strcmp(kids[i - 1]->string, kids[i]->string) == 0) {
                *dup = kids[i]->string;
                rc = CANON_DUP;
                goto fail;
            }
            if ((rc = canon_copy(kids[i], &c, dup)) != CANON_OK) goto fail;
            if (!cJSON_AddItemToObject(o, kids[i]->string, c)) {
                cJSON_Delete(c);
                rc = CANON_OOM;
                goto fail;
            }
        }
        cJSON_free(kids);
        break;
    default:
        return CANON_RANGE; /* raw or invalid: not produced by the parser */
    }
    if (o == NULL) return CANON_OOM;
    *out = o;
    return CANON_OK;
fail:
    cJSON_free(kids);
    cJSON_Delete(o);
    return rc;
}

/* canon_copy with the blueprint's messages: "<label>: <field> has ...". */
int bp_canon_field(parser_t *p, const cJSON *in, const char *label, const char *field,
                   cJSON **out)
{
    const char *dup = NULL;
    switch (canon_copy(in, out, &dup)) {
    case CANON_OK:
        return 0;
    case CANON_DUP:
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s has a duplicate key '%.64s'", label,
                             field, dup);
    case CANON_RANGE:
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s has a number out of range", label,
                             field);
    default:
        return bp_oom(p);
    }
}

static bool is_integer(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && floor(v->valuedouble) == v->valuedouble &&
           fabs(v->valuedouble) <= (double)INT_FIELD_MAX;
}

bool bp_type_ok(bp_input_type_t t, const cJSON *v)
{
    switch (t) {
    case BP_IN_ANY: return true;
    case BP_IN_STRING: return cJSON_IsString(v);
    case BP_IN_NUMBER: return cJSON_IsNumber(v) && isfinite(v->valuedouble);
    case BP_IN_INTEGER: return is_integer(v);
    case BP_IN_BOOLEAN: return cJSON_IsBool(v);
    case BP_IN_OBJECT: return cJSON_IsObject(v);
    case BP_IN_ARRAY: return cJSON_IsArray(v);
    }
    return false;
}

const char *bp_json_type_name(const cJSON *v)
{
    switch (v->type & 0xFF) {
    case cJSON_String: return "string";
    case cJSON_Number: return is_integer(v) ? "integer" : "number";
    case cJSON_True:
    case cJSON_False: return "boolean";
    case cJSON_NULL: return "null";
    case cJSON_Object: return "object";
    case cJSON_Array: return "array";
    default: return "invalid";
    }
}

