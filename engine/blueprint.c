/*
 * blueprint.c - parse and validate blueprint JSON into the immutable graph of
 * blueprint.h, and derive its canonical JSON and version; check execution
 * inputs against a blueprint's declarations; RFC 3339 times.
 *
 * The one validator: the C builder emits JSON and comes through here too. The
 * format is described in docs/blueprints.md (and docs/blueprint.schema.json);
 * every error message this file can produce is listed there.
 *
 * Parsing runs in passes, so that each pass can assume what the previous ones
 * checked:
 *   1. the JSON text (cJSON), the top-level object and its keys, then the
 *      top-level input declarations;
 *   2. each step on its own (name, keys allowed for its kind, field types,
 *      retry policy, kind-specific fields, the syntax of its diverge rules,
 *      branch entries, conditions, paths and input template), steps[] first
 *      and then timeline[], which is also the order of bp->steps;
 *   3. step names: a sorted index, which finds duplicates and serves lookups;
 *   4. dependencies: names to indexes, timeline links added, sorted, deduped;
 *      then each step's dependents;
 *   5. cycles (an iterative depth-first search, so a long chain cannot blow
 *      the stack);
 *   6. routing: diverge targets (back_to backwards, skip_to forwards), branch
 *      targets (direct dependents), template references (dependencies,
 *      declared inputs);
 *   7. the canonical JSON, printed from the model (never from the input), and
 *      its SHA-256.
 *
 * Unknown keys are errors, not ignored: a misspelt "depend_on" that is silently
 * dropped would run a step before its inputs exist.
 *
 * JSON values a blueprint keeps (diverge patterns, branch conditions, input
 * templates and defaults) are stored as canonical cJSON trees: deep copies
 * with every object's keys sorted, repeated keys and non-finite numbers
 * refused. The canonical JSON prints those trees, and the decider evaluates
 * the very same trees (match.h).
 *
 * Memory: everything a blueprint owns is allocated with cJSON_malloc() and
 * freed with cJSON_free(), the same allocator that produces canonical_json.
 * With cJSON's default hooks that is plain malloc/free; the unit tests install
 * failing hooks to check that every allocation failure returns CBM_ENOMEM and
 * leaks nothing. One limit: cJSON's parser cannot tell an allocation failure
 * from malformed text, so out-of-memory while parsing the text itself reports
 * CBM_EJSON.
 */
#include "engine/blueprint.h"

#include <assert.h>
#include <cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/match.h"

#define NAME_MAX_LEN 128
/* Largest integer a JSON number (a double, in cJSON) holds exactly. */
#define INT_FIELD_MAX INT64_C(9007199254740991)
#define MAX_ATTEMPTS_MAX 1000
/* Diverge rules and branch entries per step (each new rule is compared with
 * the ones before it). */
#define MAX_RULES 1000

#define DEFAULT_QUEUE "local"
#define DEFAULT_MAX_ATTEMPTS 1
#define DEFAULT_INITIAL_MS 1000
#define DEFAULT_MAX_MS 60000
#define DEFAULT_MULTIPLIER 2.0

static const char *const kind_names[] = {
    [BP_TASK] = "task",
    [BP_SLEEP] = "sleep",
    [BP_APPROVAL] = "approval",
    [BP_SIGNAL] = "signal",
    [BP_SUBWORKFLOW] = "subworkflow",
    [BP_DELIBERATION] = "deliberation",
};
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

static const char *const action_names[] = {
    [BP_ACTION_RETRY] = "retry",
    [BP_ACTION_BACK_TO] = "back_to",
    [BP_ACTION_SKIP_TO] = "skip_to",
    [BP_ACTION_FAIL] = "fail",
    [BP_ACTION_CONTINUE] = "continue",
};
#define NACTIONS (sizeof(action_names) / sizeof(action_names[0]))

static const char *const input_type_names[] = {
    [BP_IN_ANY] = NULL,
    [BP_IN_STRING] = "string",
    [BP_IN_NUMBER] = "number",
    [BP_IN_INTEGER] = "integer",
    [BP_IN_BOOLEAN] = "boolean",
    [BP_IN_OBJECT] = "object",
    [BP_IN_ARRAY] = "array",
};
/* "must be <noun>" */
static const char *const input_type_nouns[] = {
    [BP_IN_ANY] = "a value",
    [BP_IN_STRING] = "a string",
    [BP_IN_NUMBER] = "a number",
    [BP_IN_INTEGER] = "an integer",
    [BP_IN_BOOLEAN] = "a boolean",
    [BP_IN_OBJECT] = "an object",
    [BP_IN_ARRAY] = "an array",
};
#define NINPUT_TYPES (sizeof(input_type_names) / sizeof(input_type_names[0]))

/* Allowed keys, NULL-terminated; at most 32 per list (see check_keys). */
static const char *const top_keys[] = {"name", "steps", "timeline", "inputs", "timeout_ms", NULL};
static const char *const retry_keys[] = {"max_attempts", "initial_ms", "max_ms",
                                         "multiplier", "non_retryable", NULL};
static const char *const diverge_keys[] = {"match", "on", "action", "target", "max_iterations",
                                           NULL};
static const char *const branch_keys[] = {"when", "to", "otherwise", NULL};
static const char *const cond_keys[] = {"path", "op", "value", "and", "or", "not", NULL};
static const char *const input_keys[] = {"type", "required", "default", NULL};

/* Step keys and the kinds they belong to. The order is the order in which
 * fields are checked and listed in messages. */
#define KIND_BIT(k) (1u << (k))
#define ALL_KINDS ((1u << NKINDS) - 1)
static const struct step_field {
    const char *key;
    unsigned kinds;
} step_fields[] = {
    {"name", ALL_KINDS},
    {"kind", ALL_KINDS},
    {"handler", ALL_KINDS},
    {"queue", ALL_KINDS},
    {"depends_on", ALL_KINDS},
    {"timeout_ms", ALL_KINDS},
    {"retry", ALL_KINDS},
    {"heartbeat_timeout_ms", KIND_BIT(BP_TASK)},
    {"requires", KIND_BIT(BP_TASK)},
    {"duration_ms", KIND_BIT(BP_SLEEP)},
    {"until", KIND_BIT(BP_SLEEP)},
    {"approval_type", KIND_BIT(BP_APPROVAL)},
    {"signal", KIND_BIT(BP_SIGNAL)},
    {"blueprint", KIND_BIT(BP_SUBWORKFLOW)},
    {"version", KIND_BIT(BP_SUBWORKFLOW)},
    {"inputs", KIND_BIT(BP_SUBWORKFLOW)},
    {"diverge", ALL_KINDS},
    {"branch", ALL_KINDS},
};
#define NSTEP_FIELDS (sizeof(step_fields) / sizeof(step_fields[0]))

/* Where a step was declared, kept while parsing for messages and passes 4
 * and 6. The cJSON pointers are into the input tree, alive until the end. */
typedef struct step_src {
    const char *list;          /* "steps" or "timeline" */
    size_t pos;                /* index in that list */
    const cJSON *depends_on;   /* the validated array, or NULL */
    const cJSON *diverge;      /* the validated array, or NULL */
    const cJSON *branch;       /* the validated array, or NULL */
    bool after_prev;           /* a timeline entry after the first */
} step_src_t;

typedef struct parser {
    cbm_error_t *err;
    bp_blueprint_t *bp;
    step_src_t *src;           /* nsteps entries */
    bp_step_t **by_name;       /* nsteps pointers, sorted by name */
    unsigned *mark;            /* pass 6: per step, the search that saw it */
    unsigned gen;              /* pass 6: the current search */
    size_t *stack;             /* pass 6: nsteps entries */
} parser_t;

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

static void *xcalloc(size_t n, size_t size)
{
    void *p;
    if (n == 0) n = 1;
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    p = cJSON_malloc(n * size);
    if (p != NULL) memset(p, 0, n * size);
    return p;
}

static char *xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = cJSON_malloc(len);
    if (p != NULL) memcpy(p, s, len);
    return p;
}

static void step_finish(bp_step_t *s)
{
    cJSON_free(s->name);
    cJSON_free(s->handler);
    cJSON_free(s->queue);
    cJSON_free(s->deps);
    cJSON_free(s->dependents);
    for (size_t i = 0; i < s->retry.n_non_retryable; i++) cJSON_free(s->retry.non_retryable[i]);
    cJSON_free(s->retry.non_retryable);
    cJSON_free(s->approval_type);
    cJSON_free(s->signal);
    for (size_t i = 0; i < s->nrequires; i++) {
        cJSON_free(s->requires[i].key);
        cJSON_free(s->requires[i].value);
    }
    cJSON_free(s->requires);
    cJSON_free(s->sub_blueprint);
    cJSON_free(s->sub_version);
    cJSON_Delete(s->sub_inputs);
    cJSON_free(s->sub_inputs_json);
    for (size_t i = 0; i < s->ndiverge; i++) cJSON_Delete(s->diverge[i].match);
    cJSON_free(s->diverge);
    for (size_t i = 0; i < s->nbranch; i++) cJSON_Delete(s->branch[i].when);
    cJSON_free(s->branch);
}

void bp_destroy(bp_blueprint_t *bp)
{
    if (bp == NULL) return;
    for (size_t i = 0; i < bp->nsteps; i++) step_finish(&bp->steps[i]);
    cJSON_free(bp->steps);
    for (size_t i = 0; i < bp->ninputs; i++) {
        cJSON_free(bp->inputs[i].name);
        cJSON_Delete(bp->inputs[i].default_value);
    }
    cJSON_free(bp->inputs);
    cJSON_free(bp->canonical_json);
    cJSON_free(bp->name);
    cJSON_free(bp);
}

static int oom(parser_t *p)
{
    return cbm_error_set(p->err, CBM_ENOMEM, "out of memory while parsing blueprint");
}

/* ------------------------------------------------------------------------ */
/* Field checks                                                             */
/* ------------------------------------------------------------------------ */

static bool name_chars_ok(const char *s)
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
static int check_name(const cJSON *item, const char *where, cbm_error_t *err)
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
    if (!name_chars_ok(s))
        return cbm_error_set(err, CBM_EBLUEPRINT,
                             "%s: name '%.64s' may only contain letters, digits, '_', '.' and '-'",
                             where, s);
    return 0;
}

/* Every key of obj must be in allowed, and appear once. A bitmask of the keys
 * seen keeps this linear however many keys a hostile input repeats. */
static int check_keys(const cJSON *obj, const char *const *allowed, const char *label,
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
static int get_int(const cJSON *item, const char *label, const char *field, int64_t min,
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
static int get_ms(const cJSON *item, const char *label, const char *field, int64_t min,
                  int64_t *out, cbm_error_t *err)
{
    if (cJSON_IsNumber(item) && isfinite(item->valuedouble) &&
        item->valuedouble > (double)BP_MAX_DURATION_MS)
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: %s must be at most %" PRId64 " (10 years)",
                             label, field, BP_MAX_DURATION_MS);
    return get_int(item, label, field, min, INT_FIELD_MAX, out, err);
}

/* handler: any non-empty text without control characters (it names a
 * registered function); queue: name characters, as it names a task queue. */
static int get_ident(const cJSON *item, const char *label, const char *field, bool name_chars,
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
    if (name_chars && !name_chars_ok(s))
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: %s '%.64s' may only contain letters, digits, '_', '.' and '-'",
                             label, field, s);
    for (const char *c = s; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: %s contains a control character",
                                 label, field);
    *out = xstrdup(s);
    return *out != NULL ? 0 : oom(p);
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
    r->non_retryable = xcalloc(n, sizeof(char *));
    if (r->non_retryable == NULL) return oom(p);
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: retry.non_retryable[%zu] must be a non-empty string", label,
                                 i);
        if (strlen(it->valuestring) > NAME_MAX_LEN)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: retry.non_retryable[%zu] is longer than %d characters",
                                 label, i, NAME_MAX_LEN);
        r->non_retryable[i] = xstrdup(it->valuestring);
        if (r->non_retryable[i] == NULL) return oom(p);
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
static int parse_retry(const cJSON *obj, const char *label, bp_retry_t *r, parser_t *p)
{
    char rlabel[192];
    const cJSON *it;
    int64_t v;
    int rc;

    if (!cJSON_IsObject(obj))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: retry must be an object", label);
    snprintf(rlabel, sizeof(rlabel), "%s: retry", label);
    if ((rc = check_keys(obj, retry_keys, rlabel, p->err)) != 0) return rc;

    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_attempts")) != NULL) {
        rc = get_int(it, label, "retry.max_attempts", 1, MAX_ATTEMPTS_MAX, &v, p->err);
        if (rc != 0) return rc;
        r->max_attempts = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "initial_ms")) != NULL) {
        rc = get_ms(it, label, "retry.initial_ms", 1, &r->initial_ms, p->err);
        if (rc != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_ms")) != NULL) {
        rc = get_ms(it, label, "retry.max_ms", 1, &r->max_ms, p->err);
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

static int cmp_member(const void *a, const void *b)
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
        if ((o = cJSON_CreateObject()) == NULL || (kids = xcalloc(n, sizeof(*kids))) == NULL) {
            rc = CANON_OOM;
            goto fail;
        }
        cJSON_ArrayForEach(it, in) kids[i++] = it;
        if (n > 1) qsort(kids, n, sizeof(*kids), cmp_member);
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
static int canon_field(parser_t *p, const cJSON *in, const char *label, const char *field,
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
        return oom(p);
    }
}

static bool is_integer(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && floor(v->valuedouble) == v->valuedouble &&
           fabs(v->valuedouble) <= (double)INT_FIELD_MAX;
}

static bool type_ok(bp_input_type_t t, const cJSON *v)
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

static const char *json_type_name(const cJSON *v)
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

/* ------------------------------------------------------------------------ */
/* RFC 3339 times                                                           */
/* ------------------------------------------------------------------------ */

#define US_PER_S INT64_C(1000000)
/* 9999-12-31T23:59:59.999999Z, the last time with a four-digit year. */
#define TIME_MAX_US (INT64_C(253402300799) * US_PER_S + 999999)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Exactly n decimal digits at *s; advances *s. */
static bool take_digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return true;
}

static bool take_char(const char **s, char a, char b)
{
    if (**s != a && **s != b) return false;
    (*s)++;
    return true;
}

int bp_parse_time(const char *text, int64_t *us_out, const char **why)
{
    const char *s = text, *reason = NULL;
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    int64_t frac = 0, us;

    if (why != NULL) *why = NULL;
    if (text == NULL || us_out == NULL) {
        reason = "no time given";
        goto bad;
    }
    if (!take_digits(&s, 4, &y) || !take_char(&s, '-', '-') || !take_digits(&s, 2, &mo) ||
        !take_char(&s, '-', '-') || !take_digits(&s, 2, &d) || !take_char(&s, 'T', 't') ||
        !take_digits(&s, 2, &h) || !take_char(&s, ':', ':') || !take_digits(&s, 2, &mi) ||
        !take_char(&s, ':', ':') || !take_digits(&s, 2, &sec))
        goto syntax;
    if (*s == '.') {
        int scale = 100000, n = 0;
        for (s++; *s >= '0' && *s <= '9'; s++, n++) {
            frac += (*s - '0') * scale;
            scale /= 10;
        }
        if (n == 0) goto syntax;
    }
    if (take_char(&s, 'Z', 'z')) {
        sign = 0;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '+' ? 1 : -1;
        if (!take_digits(&s, 2, &oh) || !take_char(&s, ':', ':') || !take_digits(&s, 2, &om))
            goto syntax;
    } else {
        goto syntax;
    }
    if (*s != '\0') goto syntax;

    if (mo < 1 || mo > 12) reason = "month out of range";
    else if (d < 1 || d > days_in_month(y, mo)) reason = "day out of range for the month";
    else if (h > 23) reason = "hour out of range";
    else if (mi > 59) reason = "minute out of range";
    else if (sec > 59) reason = "second out of range (leap seconds are not supported)";
    else if (oh > 23 || om > 59) reason = "offset out of range";
    if (reason != NULL) goto bad;

    us = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
          (int64_t)sign * (oh * 3600 + om * 60)) *
             US_PER_S +
         frac;
    if (us < 0) {
        reason = "before 1970-01-01T00:00:00Z";
        goto bad;
    }
    if (us > TIME_MAX_US) {
        reason = "after 9999-12-31T23:59:59Z";
        goto bad;
    }
    *us_out = us;
    return 0;
syntax:
    reason = "expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or an offset +HH:MM / -HH:MM";
bad:
    if (why != NULL) *why = reason;
    return CBM_EINVAL;
}

void bp_format_time(int64_t us, char buf[32])
{
    int64_t secs = us / US_PER_S, days = secs / 86400, y;
    int64_t rem = secs % 86400, frac = us % US_PER_S;
    int m, d, n;

    if (us < 0) {
        snprintf(buf, 32, "invalid");
        return;
    }
    civil_from_days(days, &y, &m, &d);
    n = snprintf(buf, 32, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d", y, m, d, (int)(rem / 3600),
                 (int)(rem / 60 % 60), (int)(rem % 60));
    if (frac > 0 && n > 0 && n < 24) {
        char f[8];
        int len = 6;
        snprintf(f, sizeof(f), "%06" PRId64, frac);
        while (len > 0 && f[len - 1] == '0') len--;
        n += snprintf(buf + n, (size_t)(32 - n), ".%.*s", len, f);
    }
    if (n > 0 && n < 31) snprintf(buf + n, (size_t)(32 - n), "Z");
}

/* ------------------------------------------------------------------------ */
/* Pass 2: one step                                                         */
/* ------------------------------------------------------------------------ */

/* "a, b and c" of the kinds in mask. */
static void kinds_text(unsigned mask, char *buf, size_t size)
{
    size_t used = 0, n = 0, total = 0;
    for (size_t k = 0; k < NKINDS; k++) total += (mask >> k) & 1u;
    buf[0] = '\0';
    for (size_t k = 0; k < NKINDS; k++) {
        if (!((mask >> k) & 1u)) continue;
        int w = snprintf(buf + used, size - used, "%s%s", n == 0 ? "" : n + 1 == total ? " and " : ", ",
                         kind_names[k]);
        if (w < 0 || (size_t)w >= size - used) return;
        used += (size_t)w;
        n++;
    }
}

/* The step's keys: each known, allowed for the step's kind, given once. */
static int check_step_keys(const cJSON *obj, bp_step_kind_t kind, const char *label,
                           cbm_error_t *err)
{
    uint32_t seen = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        size_t k;
        for (k = 0; k < NSTEP_FIELDS; k++)
            if (strcmp(it->string, step_fields[k].key) == 0) break;
        if (k == NSTEP_FIELDS) {
            char list[400] = "";
            size_t used = 0;
            for (size_t j = 0; j < NSTEP_FIELDS; j++) {
                if (!(step_fields[j].kinds & KIND_BIT(kind))) continue;
                int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
                                 step_fields[j].key);
                if (n < 0 || (size_t)n >= sizeof(list) - used) break;
                used += (size_t)n;
            }
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: unknown key '%.64s' (allowed: %s)",
                                 label, it->string, list);
        }
        if (!(step_fields[k].kinds & KIND_BIT(kind))) {
            char kinds[128];
            kinds_text(step_fields[k].kinds, kinds, sizeof(kinds));
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: %s is only for kind%s %s", label,
                                 step_fields[k].key,
                                 (step_fields[k].kinds & (step_fields[k].kinds - 1)) ? "s" : "",
                                 kinds);
        }
        if (seen & (UINT32_C(1) << k))
            return cbm_error_set(err, CBM_EBLUEPRINT, "%s: duplicate key '%s'", label,
                                 step_fields[k].key);
        seen |= UINT32_C(1) << k;
    }
    return 0;
}

static int cmp_capability(const void *a, const void *b)
{
    return strcmp(((const bp_capability_t *)a)->key, ((const bp_capability_t *)b)->key);
}

/* requires: {"name": "value", ...}, stored sorted by name. */
static int parse_requires(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s)
{
    const cJSON *it;
    size_t n = 0;

    if (!cJSON_IsObject(obj))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires must be an object of strings",
                             label);
    cJSON_ArrayForEach(it, obj) n++;
    if (n == 0) return 0;
    if ((s->requires = xcalloc(n, sizeof(bp_capability_t))) == NULL) return oom(p);
    cJSON_ArrayForEach(it, obj) {
        const char *k = it->string;
        if (k[0] == '\0')
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires: capability name is empty",
                                 label);
        if (strlen(k) > NAME_MAX_LEN || !name_chars_ok(k))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: requires: capability name '%.64s' must be 1 to 128 letters, "
                                 "digits, '_', '.' or '-'",
                                 label, k);
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires.%s must be a string", label,
                                 k);
        if (strlen(it->valuestring) > NAME_MAX_LEN)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: requires.%s is longer than %d characters", label, k,
                                 NAME_MAX_LEN);
        for (const char *c = it->valuestring; *c != '\0'; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: requires.%s contains a control character", label, k);
        bp_capability_t *cap = &s->requires[s->nrequires];
        if ((cap->key = xstrdup(k)) == NULL) return oom(p);
        s->nrequires++;
        if ((cap->value = xstrdup(it->valuestring)) == NULL) return oom(p);
    }
    qsort(s->requires, s->nrequires, sizeof(bp_capability_t), cmp_capability);
    for (size_t i = 1; i < s->nrequires; i++)
        if (strcmp(s->requires[i - 1].key, s->requires[i].key) == 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: requires: duplicate capability '%s'",
                                 label, s->requires[i].key);
    return 0;
}

/* A template reference "$.inputs[.path]" or "$.deps.<step>[path]"; on
 * success step and step_len name the step of a deps reference (length 0 for
 * an inputs reference), and input and input_len the first key after inputs
 * (length 0 for "$.inputs" itself). */
static bool reference_parts(const char *ref, const char **step, size_t *step_len,
                            const char **input, size_t *input_len)
{
    const char *r = ref + 2;
    *step_len = *input_len = 0;
    if (!json_path_valid(r) || strlen(r) > MATCH_PATH_MAX) return false;
    if (strncmp(r, "inputs", 6) == 0 && (r[6] == '\0' || r[6] == '.')) {
        if (r[6] == '.') {
            *input = r + 7;
            while ((*input)[*input_len] != '\0' && (*input)[*input_len] != '.' &&
                   (*input)[*input_len] != '[')
                (*input_len)++;
        }
        return true;
    }
    if (strncmp(r, "deps.", 5) == 0) {
        *step = r + 5;
        while ((*step)[*step_len] != '\0' && (*step)[*step_len] != '.' &&
               (*step)[*step_len] != '[')
            (*step_len)++;
        return *step_len > 0;
    }
    return false;
}

/* Every reference in the template: syntax only (pass 2). */
static int check_template_syntax(parser_t *p, const cJSON *t, const char *label)
{
    const cJSON *it;
    int rc;
    if (cJSON_IsString(t) && match_is_reference(t->valuestring)) {
        const char *a, *b;
        size_t la, lb;
        if (!reference_parts(t->valuestring, &a, &la, &b, &lb))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: inputs: malformed reference '%.64s' (expected $.inputs or "
                                 "$.deps.<step>, then an optional path)",
                                 label, t->valuestring);
        return 0;
    }
    cJSON_ArrayForEach(it, t) {
        if ((rc = check_template_syntax(p, it, label)) != 0) return rc;
    }
    return 0;
}

static int parse_template(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s)
{
    int rc;
    if (!cJSON_IsObject(obj))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: inputs must be an object", label);
    if (obj->child == NULL) return 0; /* {} is what a child gets without a template */
    if ((rc = canon_field(p, obj, label, "inputs", &s->sub_inputs)) != 0) return rc;
    if ((rc = check_template_syntax(p, s->sub_inputs, label)) != 0) return rc;
    if ((s->sub_inputs_json = cJSON_PrintUnformatted(s->sub_inputs)) == NULL) return oom(p);
    return 0;
}

static int parse_diverge(parser_t *p, const cJSON *arr, const char *label, bp_step_t *s)
{
    const cJSON *r;
    size_t n = 0;
    int rc;

    if (!cJSON_IsArray(arr))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: diverge must be an array of rules",
                             label);
    cJSON_ArrayForEach(r, arr) n++;
    if (n == 0) return 0;
    if (n > MAX_RULES)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: diverge has more than %d rules", label,
                             MAX_RULES);
    if ((s->diverge = xcalloc(n, sizeof(bp_diverge_t))) == NULL) return oom(p);
    cJSON_ArrayForEach(r, arr) {
        char rl[NAME_MAX_LEN + 48];
        size_t i = s->ndiverge;
        bp_diverge_t *d = &s->diverge[i];
        const cJSON *it, *target, *maxit;
        int64_t v;

        snprintf(rl, sizeof(rl), "%s: diverge[%zu]", label, i);
        s->ndiverge++;
        d->target = -1;
        if (!cJSON_IsObject(r))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be an object", rl);
        if ((rc = check_keys(r, diverge_keys, rl, p->err)) != 0) return rc;

        if ((it = cJSON_GetObjectItemCaseSensitive(r, "match")) == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: match is missing", rl);
        if ((rc = canon_field(p, it, rl, "match", &d->match)) != 0) return rc;
        if ((it = cJSON_GetObjectItemCaseSensitive(r, "on")) != NULL) {
            if (cJSON_IsString(it) && strcmp(it->valuestring, "result") == 0) d->on = BP_ON_RESULT;
            else if (cJSON_IsString(it) && strcmp(it->valuestring, "error") == 0) d->on = BP_ON_ERROR;
            else
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: on must be 'result' or 'error'",
                                     rl);
        }
        if ((it = cJSON_GetObjectItemCaseSensitive(r, "action")) == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: action is missing", rl);
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: action must be a string", rl);
        size_t a;
        for (a = 0; a < NACTIONS; a++)
            if (strcmp(it->valuestring, action_names[a]) == 0) break;
        if (a == NACTIONS)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: unknown action '%.64s' (expected retry, back_to, skip_to, "
                                 "fail or continue)",
                                 rl, it->valuestring);
        d->action = (bp_action_t)a;

        bool jumps = d->action == BP_ACTION_BACK_TO || d->action == BP_ACTION_SKIP_TO;
        bool loops = d->action == BP_ACTION_BACK_TO || d->action == BP_ACTION_RETRY;
        target = cJSON_GetObjectItemCaseSensitive(r, "target");
        if (jumps && target == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: target is required for action %s",
                                 rl, action_names[a]);
        if (!jumps && target != NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: target is only for actions back_to and skip_to", rl);
        if (target != NULL && !cJSON_IsString(target))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: target must be a step name", rl);
        maxit = cJSON_GetObjectItemCaseSensitive(r, "max_iterations");
        if (loops && maxit == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: max_iterations is required for action %s", rl,
                                 action_names[a]);
        if (!loops && maxit != NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: max_iterations is only for actions retry and back_to", rl);
        if (maxit != NULL) {
            rc = get_int(maxit, rl, "max_iterations", 1, BP_MAX_ITERATIONS, &v, p->err);
            if (rc != 0) return rc;
            d->max_iterations = (int)v;
        }
        /* A rule that an earlier rule always pre-empts is a mistake. */
        for (size_t k = 0; k < i; k++)
            if (s->diverge[k].on == d->on && match_subsumes(s->diverge[k].match, d->match))
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: diverge[%zu] is unreachable: diverge[%zu] matches every "
                                     "%s it matches",
                                     label, i, k, d->on == BP_ON_ERROR ? "error" : "result");
    }
    return 0;
}

static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">=", "in", "exists", NULL};

/* A branch condition, recursively; the messages say only which entry. */
static int check_cond(parser_t *p, const cJSON *c, const char *label)
{
    const cJSON *it, *path, *op, *value;
    size_t nkeys = 0, k;
    int rc;

    if (!cJSON_IsObject(c))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: condition must be an object", label);
    char cl[NAME_MAX_LEN + 64];
    snprintf(cl, sizeof(cl), "%s: condition", label);
    if ((rc = check_keys(c, cond_keys, cl, p->err)) != 0) return rc;
    cJSON_ArrayForEach(it, c) nkeys++;

    static const char *const combinators[] = {"and", "or", "not"};
    for (k = 0; k < 3; k++) {
        const char *name = combinators[k];
        if ((it = cJSON_GetObjectItemCaseSensitive(c, name)) == NULL) continue;
        if (nkeys != 1)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: a condition with '%s' has no other keys", label, name);
        if (k == 2) return check_cond(p, it, label);
        if (!cJSON_IsArray(it) || it->child == NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: %s must be a non-empty array of conditions", label, name);
        const cJSON *sub;
        cJSON_ArrayForEach(sub, it) {
            if ((rc = check_cond(p, sub, label)) != 0) return rc;
        }
        return 0;
    }

    path = cJSON_GetObjectItemCaseSensitive(c, "path");
    op = cJSON_GetObjectItemCaseSensitive(c, "op");
    value = cJSON_GetObjectItemCaseSensitive(c, "value");
    if (path == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: path is missing", label);
    if (!cJSON_IsString(path))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: path must be a string", label);
    if (strlen(path->valuestring) > MATCH_PATH_MAX)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: path is longer than %d characters",
                             label, MATCH_PATH_MAX);
    if (!json_path_valid(path->valuestring))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: malformed path '%.64s'", label,
                             path->valuestring);
    if (op == NULL) return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op is missing", label);
    if (!cJSON_IsString(op))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op must be a string", label);
    for (k = 0; ops[k] != NULL; k++)
        if (strcmp(op->valuestring, ops[k]) == 0) break;
    if (ops[k] == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT,
                             "%s: unknown op '%.16s' (expected ==, !=, <, <=, >, >=, in or "
                             "exists)",
                             label, op->valuestring);
    if (strcmp(ops[k], "exists") == 0) {
        if (value != NULL)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op 'exists' takes no value", label);
        return 0;
    }
    if (value == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op '%s' needs a value", label, ops[k]);
    if (strcmp(ops[k], "in") == 0 && !cJSON_IsArray(value))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: op 'in' needs an array value", label);
    if (ops[k][0] == '<' || ops[k][0] == '>') {
        if (!cJSON_IsNumber(value) && !cJSON_IsString(value))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: op '%s' needs a number or a string value", label, ops[k]);
    }
    return 0;
}

static int parse_branch(parser_t *p, const cJSON *arr, const char *label, bp_step_t *s)
{
    const cJSON *e;
    size_t n = 0;
    int rc;

    if (!cJSON_IsArray(arr))
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: branch must be an array of entries",
                             label);
    cJSON_ArrayForEach(e, arr) n++;
    if (n == 0) return 0;
    if (n > MAX_RULES)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: branch has more than %d entries", label,
                             MAX_RULES);
    /* Diverge runs first: a rule that takes every result and does not
     * continue leaves the branch nothing to decide. */
    for (size_t k = 0; k < s->ndiverge; k++) {
        const bp_diverge_t *d = &s->diverge[k];
        if (d->on == BP_ON_RESULT && d->action != BP_ACTION_CONTINUE && cJSON_IsString(d->match) &&
            strcmp(d->match->valuestring, "_") == 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: branch is unreachable: diverge[%zu] takes every result", label,
                                 k);
    }
    if ((s->branch = xcalloc(n, sizeof(bp_branch_t))) == NULL) return oom(p);
    cJSON_ArrayForEach(e, arr) {
        char el[NAME_MAX_LEN + 48];
        size_t i = s->nbranch;
        bp_branch_t *b = &s->branch[i];
        const cJSON *when, *to, *otherwise;

        snprintf(el, sizeof(el), "%s: branch[%zu]", label, i);
        s->nbranch++;
        b->to = -1;
        if (!cJSON_IsObject(e))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be an object", el);
        if ((rc = check_keys(e, branch_keys, el, p->err)) != 0) return rc;
        when = cJSON_GetObjectItemCaseSensitive(e, "when");
        to = cJSON_GetObjectItemCaseSensitive(e, "to");
        otherwise = cJSON_GetObjectItemCaseSensitive(e, "otherwise");
        if (otherwise != NULL) {
            if (when != NULL || to != NULL)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: otherwise cannot be combined with when or to", el);
            if (!cJSON_IsString(otherwise))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: otherwise must be a step name",
                                     el);
            if (i + 1 != n)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: otherwise must be the last entry", el);
            continue;
        }
        if (when == NULL) return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: when is missing", el);
        if (to == NULL) return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: to is missing", el);
        if (!cJSON_IsString(to))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: to must be a step name", el);
        if ((rc = check_cond(p, when, el)) != 0) return rc;
        if ((rc = canon_field(p, when, el, "when", &b->when)) != 0) return rc;
        for (size_t k = 0; k < i; k++)
            if (json_equal(s->branch[k].when, b->when))
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s is unreachable: branch[%zu] has the same condition", el, k);
    }
    return 0;
}

static int parse_step_fields(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s,
                             step_src_t *src)
{
    const cJSON *it;
    int rc;

    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "kind")) != NULL) {
        size_t k;
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: kind must be a string", label);
        for (k = 0; k < NKINDS; k++)
            if (strcmp(it->valuestring, kind_names[k]) == 0) break;
        if (k == NKINDS)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: unknown kind '%.64s' (expected task, sleep, approval, "
                                 "signal, subworkflow or deliberation)",
                                 label, it->valuestring);
        s->kind = (bp_step_kind_t)k;
    }
    if ((rc = check_step_keys(obj, s->kind, label, p->err)) != 0) return rc;

    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "handler")) != NULL) {
        if ((rc = get_ident(it, label, "handler", false, &s->handler, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "queue")) != NULL) {
        if ((rc = get_ident(it, label, "queue", true, &s->queue, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "depends_on")) != NULL) {
        const cJSON *d;
        size_t i = 0;
        if (!cJSON_IsArray(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: depends_on must be an array of step names", label);
        cJSON_ArrayForEach(d, it) {
            if (!cJSON_IsString(d))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: depends_on[%zu] must be a string",
                                     label, i);
            i++;
        }
        src->depends_on = it;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "timeout_ms")) != NULL) {
        if ((rc = get_ms(it, label, "timeout_ms", 0, &s->timeout_ms, p->err)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "retry")) != NULL) {
        if ((rc = parse_retry(it, label, &s->retry, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "heartbeat_timeout_ms")) != NULL) {
        rc = get_ms(it, label, "heartbeat_timeout_ms", 0, &s->heartbeat_timeout_ms, p->err);
        if (rc != 0) return rc;
        if (s->timeout_ms > 0 && s->heartbeat_timeout_ms > s->timeout_ms)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: heartbeat_timeout_ms (%" PRId64
                                 ") must be at most timeout_ms (%" PRId64 ")",
                                 label, s->heartbeat_timeout_ms, s->timeout_ms);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "requires")) != NULL) {
        if ((rc = parse_requires(p, it, label, s)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "duration_ms")) != NULL) {
        if ((rc = get_ms(it, label, "duration_ms", 0, &s->sleep_ms, p->err)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "until")) != NULL) {
        const char *why = NULL;
        if (!cJSON_IsString(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: until must be a string (an RFC 3339 time)", label);
        if (bp_parse_time(it->valuestring, &s->sleep_until_us, &why) != 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: until '%.64s' is not a valid RFC 3339 time: %s", label,
                                 it->valuestring, why);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "approval_type")) != NULL) {
        if ((rc = get_ident(it, label, "approval_type", true, &s->approval_type, p)) != 0)
            return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "signal")) != NULL) {
        if ((rc = get_ident(it, label, "signal", true, &s->signal, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "blueprint")) != NULL) {
        if ((rc = get_ident(it, label, "blueprint", true, &s->sub_blueprint, p)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "version")) != NULL) {
        bool ok = cJSON_IsString(it) && strlen(it->valuestring) == 64;
        for (size_t i = 0; ok && i < 64; i++) {
            char c = it->valuestring[i];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        }
        if (!ok)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: version must be a blueprint version (64 lowercase hex "
                                 "digits)",
                                 label);
        if ((s->sub_version = xstrdup(it->valuestring)) == NULL) return oom(p);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "inputs")) != NULL) {
        if ((rc = parse_template(p, it, label, s)) != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "diverge")) != NULL) {
        if ((rc = parse_diverge(p, it, label, s)) != 0) return rc;
        src->diverge = it;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "branch")) != NULL) {
        if ((rc = parse_branch(p, it, label, s)) != 0) return rc;
        src->branch = it;
    }
    return 0;
}

/* entry: a step object, or (in the timeline) a string naming a task step. */
static int parse_step(parser_t *p, const cJSON *entry, bp_step_t *s, step_src_t *src)
{
    char where[48], label[NAME_MAX_LEN + 16];
    const cJSON *name = entry;
    bool timeline = strcmp(src->list, "timeline") == 0;
    int rc;

    snprintf(where, sizeof(where), "%s[%zu]", src->list, src->pos);
    s->kind = BP_TASK;
    s->retry.max_attempts = DEFAULT_MAX_ATTEMPTS;
    s->retry.initial_ms = DEFAULT_INITIAL_MS;
    s->retry.max_ms = DEFAULT_MAX_MS;
    s->retry.multiplier = DEFAULT_MULTIPLIER;
    s->sleep_ms = -1;
    s->sleep_until_us = -1;

    if (cJSON_IsObject(entry)) {
        name = cJSON_GetObjectItemCaseSensitive(entry, "name");
    } else if (!(timeline && cJSON_IsString(entry))) {
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be %s", where,
                             timeline ? "a step name or a step object" : "an object");
    }
    if ((rc = check_name(name, where, p->err)) != 0) return rc;
    if ((s->name = xstrdup(name->valuestring)) == NULL) return oom(p);
    snprintf(label, sizeof(label), "step '%s'", s->name);

    if (cJSON_IsObject(entry) && (rc = parse_step_fields(p, entry, label, s, src)) != 0) return rc;

    /* What each kind needs, and its defaults. */
    if (s->kind == BP_SLEEP) {
        if (s->sleep_ms >= 0 && s->sleep_until_us >= 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "%s: sleep takes duration_ms or until, not both", label);
        if (s->sleep_ms < 0 && s->sleep_until_us < 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: sleep needs duration_ms or until",
                                 label);
    }
    if (s->kind == BP_SUBWORKFLOW && s->sub_blueprint == NULL)
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: subworkflow needs blueprint", label);
    if (s->kind == BP_APPROVAL && s->approval_type == NULL &&
        (s->approval_type = xstrdup(s->name)) == NULL)
        return oom(p);
    if (s->kind == BP_SIGNAL && s->signal == NULL && (s->signal = xstrdup(s->name)) == NULL)
        return oom(p);
    if (s->handler == NULL && (s->handler = xstrdup(s->name)) == NULL) return oom(p);
    if (s->queue == NULL && (s->queue = xstrdup(DEFAULT_QUEUE)) == NULL) return oom(p);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pass 3: names                                                            */
/* ------------------------------------------------------------------------ */

static int cmp_step_name(const void *a, const void *b)
{
    const bp_step_t *x = *(const bp_step_t *const *)a, *y = *(const bp_step_t *const *)b;
    int c = strcmp(x->name, y->name);
    /* Ties by position, so a duplicate is reported as first and second use. */
    return c != 0 ? c : (x < y ? -1 : x > y);
}

static int index_names(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    if ((p->by_name = xcalloc(bp->nsteps, sizeof(bp_step_t *))) == NULL) return oom(p);
    for (size_t i = 0; i < bp->nsteps; i++) p->by_name[i] = &bp->steps[i];
    qsort(p->by_name, bp->nsteps, sizeof(bp_step_t *), cmp_step_name);

    /* Report the duplicate declared first, whatever its name sorts as. */
    size_t best = SIZE_MAX, first = 0;
    for (size_t i = 1; i < bp->nsteps; i++) {
        if (strcmp(p->by_name[i - 1]->name, p->by_name[i]->name) != 0) continue;
        size_t a = (size_t)(p->by_name[i - 1] - bp->steps), b = (size_t)(p->by_name[i] - bp->steps);
        if (best == SIZE_MAX || b < best) {
            best = b;
            first = a;
        }
    }
    if (best != SIZE_MAX) {
        const step_src_t *x = &p->src[first], *y = &p->src[best];
        return cbm_error_set(p->err, CBM_EBLUEPRINT, "duplicate step name '%s' (%s[%zu] and %s[%zu])",
                             bp->steps[best].name, x->list, x->pos, y->list, y->pos);
    }
    return 0;
}

static long find_step(bp_step_t *const *by_name, const bp_step_t *steps, size_t n,
                      const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, by_name[mid]->name);
        if (c == 0) return (long)(by_name[mid] - steps);
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Pass 4: dependencies and dependents                                      */
/* ------------------------------------------------------------------------ */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static int resolve_deps(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    for (size_t i = 0; i < bp->nsteps; i++) {
        bp_step_t *s = &bp->steps[i];
        const step_src_t *src = &p->src[i];
        const cJSON *d;
        size_t n = src->after_prev ? 1 : 0;

        cJSON_ArrayForEach(d, src->depends_on) n++;
        if ((s->deps = xcalloc(n, sizeof(size_t))) == NULL) return oom(p);
        cJSON_ArrayForEach(d, src->depends_on) {
            long j = find_step(p->by_name, bp->steps, bp->nsteps, d->valuestring);
            if (j < 0)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "step '%s': depends_on names unknown step '%.64s'", s->name,
                                     d->valuestring);
            if ((size_t)j == i)
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "step '%s' depends on itself",
                                     s->name);
            s->deps[s->ndeps++] = (size_t)j;
        }
        if (src->after_prev) s->deps[s->ndeps++] = i - 1;
        if (s->ndeps > 1) qsort(s->deps, s->ndeps, sizeof(size_t), cmp_size);
        n = s->ndeps;
        s->ndeps = 0;
        for (size_t k = 0; k < n; k++)
            if (s->ndeps == 0 || s->deps[s->ndeps - 1] != s->deps[k])
                s->deps[s->ndeps++] = s->deps[k];
    }
    return 0;
}

/* Each step's dependents: appended in step order, so sorted. */
static int find_dependents(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    for (size_t i = 0; i < bp->nsteps; i++)
        for (size_t k = 0; k < bp->steps[i].ndeps; k++) bp->steps[bp->steps[i].deps[k]].ndependents++;
    for (size_t i = 0; i < bp->nsteps; i++) {
        bp_step_t *s = &bp->steps[i];
        if (s->ndependents == 0) continue;
        /* On failure the counts are left over, but a failed parse is only
         * destroyed, and bp_destroy does not read them. */
        if ((s->dependents = xcalloc(s->ndependents, sizeof(size_t))) == NULL) return oom(p);
        s->ndependents = 0;
    }
    for (size_t i = 0; i < bp->nsteps; i++)
        for (size_t k = 0; k < bp->steps[i].ndeps; k++) {
            bp_step_t *d = &bp->steps[bp->steps[i].deps[k]];
            d->dependents[d->ndependents++] = i;
        }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pass 5: cycles                                                           */
/* ------------------------------------------------------------------------ */

/* "a -> b -> a", where x -> y reads "x depends on y"; cut short with "..."
 * if it would not fit the error message. */
static int report_cycle(parser_t *p, const size_t *path, size_t n, size_t back_to)
{
    char buf[400];
    size_t used = 0;
    bool cut = false;
    for (size_t k = 0; k <= n && !cut; k++) {
        const char *name = p->bp->steps[k < n ? path[k] : back_to].name;
        int w = snprintf(buf + used, sizeof(buf) - used, "%s%s", k ? " -> " : "", name);
        if (w < 0 || (size_t)w >= sizeof(buf) - used - 8) cut = true;
        else used += (size_t)w;
    }
    if (cut) snprintf(buf + used, sizeof(buf) - used, " -> ...");
    return cbm_error_set(p->err, CBM_EBLUEPRINT, "dependency cycle: %s", buf);
}

static int check_cycles(parser_t *p)
{
    enum { WHITE = 0, GREY, BLACK };
    const bp_blueprint_t *bp = p->bp;
    size_t n = bp->nsteps, sp = 0;
    unsigned char *color = xcalloc(n, 1);
    size_t *stack = xcalloc(n, sizeof(size_t)); /* the grey steps, root first */
    size_t *next = xcalloc(n, sizeof(size_t));  /* per step: next dep to visit */
    int rc = 0;

    if (color == NULL || stack == NULL || next == NULL) {
        rc = oom(p);
        goto out;
    }
    for (size_t root = 0; root < n && rc == 0; root++) {
        if (color[root] != WHITE) continue;
        color[root] = GREY;
        stack[sp++] = root;
        while (sp > 0 && rc == 0) {
            size_t u = stack[sp - 1];
            if (next[u] == bp->steps[u].ndeps) {
                color[u] = BLACK;
                sp--;
                continue;
            }
            size_t v = bp->steps[u].deps[next[u]++];
            if (color[v] == WHITE) {
                color[v] = GREY;
                stack[sp++] = v;
            } else if (color[v] == GREY) {
                size_t k = 0;
                while (stack[k] != v) k++;
                rc = report_cycle(p, stack + k, sp - k, v);
            }
        }
    }
out:
    cJSON_free(color);
    cJSON_free(stack);
    cJSON_free(next);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Pass 6: routing                                                          */
/* ------------------------------------------------------------------------ */

/* Does step `from` depend on step `anc`, directly or not? An iterative search
 * over deps; marks carry a generation number, so nothing is cleared between
 * searches. */
static bool depends_on(parser_t *p, size_t from, size_t anc)
{
    const bp_blueprint_t *bp = p->bp;
    size_t sp = 0;
    if (++p->gen == 0) { /* wrapped: start the marks again */
        memset(p->mark, 0, bp->nsteps * sizeof(unsigned));
        p->gen = 1;
    }
    p->stack[sp++] = from;
    p->mark[from] = p->gen;
    while (sp > 0) {
        const bp_step_t *s = &bp->steps[p->stack[--sp]];
        for (size_t k = 0; k < s->ndeps; k++) {
            size_t d = s->deps[k];
            if (d == anc) return true;
            if (p->mark[d] == p->gen) continue;
            p->mark[d] = p->gen;
            p->stack[sp++] = d;
        }
    }
    return false;
}

static bool has_index(const size_t *v, size_t n, size_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] == x) return true;
        if (v[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

static long find_step_n(parser_t *p, const char *name, size_t len)
{
    char buf[NAME_MAX_LEN + 1];
    if (len > NAME_MAX_LEN) return -1;
    memcpy(buf, name, len);
    buf[len] = '\0';
    return find_step(p->by_name, p->bp->steps, p->bp->nsteps, buf);
}

static const bp_input_t *find_input(const bp_blueprint_t *bp, const char *name, size_t len)
{
    size_t lo = 0, hi = bp->ninputs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(name, bp->inputs[mid].name, len);
        if (c == 0 && bp->inputs[mid].name[len] != '\0') c = -1;
        if (c == 0) return &bp->inputs[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

/* Every reference of step i's template names a dependency of the step, or a
 * declared input (where the blueprint declares inputs). */
static int check_template_refs(parser_t *p, size_t i, const cJSON *t)
{
    const bp_step_t *s = &p->bp->steps[i];
    const cJSON *it;
    int rc;
    if (cJSON_IsString(t) && match_is_reference(t->valuestring)) {
        const char *step = NULL, *input = NULL;
        size_t sl, il;
        long j;
        if (!reference_parts(t->valuestring, &step, &sl, &input, &il)) return 0; /* pass 2 */
        if (sl > 0) {
            if ((j = find_step_n(p, step, sl)) < 0)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "step '%s': inputs: reference '%.64s' names unknown step "
                                     "'%.*s'",
                                     s->name, t->valuestring, (int)(sl > 64 ? 64 : sl), step);
            if (!has_index(s->deps, s->ndeps, (size_t)j))
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "step '%s': inputs: reference '%.64s' names step '%s', which "
                                     "'%s' does not depend on",
                                     s->name, t->valuestring, p->bp->steps[j].name, s->name);
        } else if (il > 0 && p->bp->inputs_declared && find_input(p->bp, input, il) == NULL) {
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "step '%s': inputs: reference '%.64s' names undeclared input "
                                 "'%.*s'",
                                 s->name, t->valuestring, (int)(il > 64 ? 64 : il), input);
        }
        return 0;
    }
    cJSON_ArrayForEach(it, t) {
        if ((rc = check_template_refs(p, i, it)) != 0) return rc;
    }
    return 0;
}

static int check_routing(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    int rc;

    if ((p->mark = xcalloc(bp->nsteps, sizeof(unsigned))) == NULL ||
        (p->stack = xcalloc(bp->nsteps, sizeof(size_t))) == NULL)
        return oom(p);
    for (size_t i = 0; i < bp->nsteps; i++) {
        bp_step_t *s = &bp->steps[i];
        const step_src_t *src = &p->src[i];
        const cJSON *e;
        size_t k = 0;

        cJSON_ArrayForEach(e, src->diverge) {
            bp_diverge_t *d = &s->diverge[k];
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "target");
            long j;
            if (t != NULL) {
                if ((j = find_step(p->by_name, bp->steps, bp->nsteps, t->valuestring)) < 0)
                    return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                         "step '%s': diverge[%zu]: target names unknown step "
                                         "'%.64s'",
                                         s->name, k, t->valuestring);
                if (d->action == BP_ACTION_BACK_TO && !depends_on(p, i, (size_t)j))
                    return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                         "step '%s': diverge[%zu]: back_to target '%s' must be a "
                                         "step that '%s' depends on, directly or not",
                                         s->name, k, bp->steps[j].name, s->name);
                if (d->action == BP_ACTION_SKIP_TO && !depends_on(p, (size_t)j, i))
                    return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                         "step '%s': diverge[%zu]: skip_to target '%s' must be a "
                                         "step that depends on '%s', directly or not",
                                         s->name, k, bp->steps[j].name, s->name);
                d->target = (int)j;
            }
            k++;
        }
        k = 0;
        cJSON_ArrayForEach(e, src->branch) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "to");
            const char *field = "to";
            long j;
            if (t == NULL) {
                t = cJSON_GetObjectItemCaseSensitive(e, "otherwise");
                field = "otherwise";
            }
            if ((j = find_step(p->by_name, bp->steps, bp->nsteps, t->valuestring)) < 0)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "step '%s': branch[%zu]: %s names unknown step '%.64s'",
                                     s->name, k, field, t->valuestring);
            if (!has_index(s->dependents, s->ndependents, (size_t)j))
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "step '%s': branch[%zu]: '%s' does not depend on '%s' (a "
                                     "branch picks among the steps that depend on it)",
                                     s->name, k, bp->steps[j].name, s->name);
            s->branch[k].to = (int)j;
            k++;
        }
        if (s->sub_inputs != NULL && (rc = check_template_refs(p, i, s->sub_inputs)) != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pass 7: canonical JSON and version                                       */
/* ------------------------------------------------------------------------ */

/* Integers are printed by us, not as cJSON doubles: "%1.15g" would turn
 * 1000000000000000 into 1e+15. */
static bool add_int(cJSON *obj, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

/* Add a copy of a (canonical) tree the blueprint owns. */
static bool add_copy(cJSON *obj, const char *key, const cJSON *v)
{
    cJSON *c = cJSON_Duplicate(v, true);
    if (c == NULL) return false;
    if (!cJSON_AddItemToObject(obj, key, c)) {
        cJSON_Delete(c);
        return false;
    }
    return true;
}

static bool add_to_array(cJSON *arr, cJSON *item)
{
    if (item == NULL) return false;
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* The fields added after the first release: printed only when a blueprint
 * uses them (or differs from their default), so that every blueprint that
 * does not keeps its canonical JSON and version. */
static bool canonical_extras(const bp_blueprint_t *bp, const bp_step_t *s, cJSON *o)
{
    cJSON *arr, *obj;
    if (s->heartbeat_timeout_ms > 0 && !add_int(o, "heartbeat_timeout_ms", s->heartbeat_timeout_ms))
        return false;
    if (s->nrequires > 0) {
        if ((obj = cJSON_AddObjectToObject(o, "requires")) == NULL) return false;
        for (size_t k = 0; k < s->nrequires; k++)
            if (!cJSON_AddStringToObject(obj, s->requires[k].key, s->requires[k].value))
                return false;
    }
    if (s->sleep_ms >= 0 && !add_int(o, "duration_ms", s->sleep_ms)) return false;
    if (s->sleep_until_us >= 0) {
        char t[32];
        bp_format_time(s->sleep_until_us, t);
        if (!cJSON_AddStringToObject(o, "until", t)) return false;
    }
    if (s->approval_type != NULL && strcmp(s->approval_type, s->name) != 0 &&
        !cJSON_AddStringToObject(o, "approval_type", s->approval_type))
        return false;
    if (s->signal != NULL && strcmp(s->signal, s->name) != 0 &&
        !cJSON_AddStringToObject(o, "signal", s->signal))
        return false;
    if (s->sub_blueprint != NULL && !cJSON_AddStringToObject(o, "blueprint", s->sub_blueprint))
        return false;
    if (s->sub_version != NULL && !cJSON_AddStringToObject(o, "version", s->sub_version))
        return false;
    if (s->sub_inputs != NULL && !add_copy(o, "inputs", s->sub_inputs)) return false;
    if (s->ndiverge > 0) {
        if ((arr = cJSON_AddArrayToObject(o, "diverge")) == NULL) return false;
        for (size_t k = 0; k < s->ndiverge; k++) {
            const bp_diverge_t *d = &s->diverge[k];
            if (!add_to_array(arr, obj = cJSON_CreateObject()) || !add_copy(obj, "match", d->match) ||
                !cJSON_AddStringToObject(obj, "on", d->on == BP_ON_ERROR ? "error" : "result") ||
                !cJSON_AddStringToObject(obj, "action", action_names[d->action]))
                return false;
            if (d->target >= 0 &&
                !cJSON_AddStringToObject(obj, "target", bp->steps[d->target].name))
                return false;
            if (d->max_iterations > 0 && !add_int(obj, "max_iterations", d->max_iterations))
                return false;
        }
    }
    if (s->nbranch > 0) {
        if ((arr = cJSON_AddArrayToObject(o, "branch")) == NULL) return false;
        for (size_t k = 0; k < s->nbranch; k++) {
            const bp_branch_t *b = &s->branch[k];
            if (!add_to_array(arr, obj = cJSON_CreateObject())) return false;
            if (b->when == NULL) {
                if (!cJSON_AddStringToObject(obj, "otherwise", bp->steps[b->to].name)) return false;
            } else if (!add_copy(obj, "when", b->when) ||
                       !cJSON_AddStringToObject(obj, "to", bp->steps[b->to].name)) {
                return false;
            }
        }
    }
    return true;
}

static cJSON *canonical_step(const bp_blueprint_t *bp, const bp_step_t *s)
{
    cJSON *o = cJSON_CreateObject(), *deps, *retry, *nr;
    if (o == NULL) return NULL;
    if (!cJSON_AddStringToObject(o, "name", s->name) ||
        !cJSON_AddStringToObject(o, "kind", kind_names[s->kind]) ||
        !cJSON_AddStringToObject(o, "handler", s->handler) ||
        !cJSON_AddStringToObject(o, "queue", s->queue) ||
        (deps = cJSON_AddArrayToObject(o, "depends_on")) == NULL)
        goto fail;
    for (size_t k = 0; k < s->ndeps; k++)
        if (!add_to_array(deps, cJSON_CreateString(bp->steps[s->deps[k]].name))) goto fail;
    if (!add_int(o, "timeout_ms", s->timeout_ms) ||
        (retry = cJSON_AddObjectToObject(o, "retry")) == NULL ||
        !add_int(retry, "max_attempts", s->retry.max_attempts) ||
        !add_int(retry, "initial_ms", s->retry.initial_ms) ||
        !add_int(retry, "max_ms", s->retry.max_ms) ||
        !cJSON_AddNumberToObject(retry, "multiplier", s->retry.multiplier))
        goto fail;
    if ((nr = cJSON_AddArrayToObject(retry, "non_retryable")) == NULL) goto fail;
    for (size_t k = 0; k < s->retry.n_non_retryable; k++)
        if (!add_to_array(nr, cJSON_CreateString(s->retry.non_retryable[k]))) goto fail;
    if (!canonical_extras(bp, s, o)) goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* "inputs": {"<name>": {"type"?, "required", "default"?}, ...} in name order. */
static bool canonical_inputs(const bp_blueprint_t *bp, cJSON *root)
{
    cJSON *ins = cJSON_AddObjectToObject(root, "inputs"), *o;
    if (ins == NULL) return false;
    for (size_t i = 0; i < bp->ninputs; i++) {
        const bp_input_t *in = &bp->inputs[i];
        if ((o = cJSON_AddObjectToObject(ins, in->name)) == NULL) return false;
        if (in->type != BP_IN_ANY &&
            !cJSON_AddStringToObject(o, "type", input_type_names[in->type]))
            return false;
        if (!cJSON_AddBoolToObject(o, "required", in->required)) return false;
        if (in->default_value != NULL && !add_copy(o, "default", in->default_value)) return false;
    }
    return true;
}

static int make_canonical(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    cJSON *root = cJSON_CreateObject(), *steps;

    if (root == NULL || !cJSON_AddStringToObject(root, "name", bp->name) ||
        (bp->inputs_declared && !canonical_inputs(bp, root)) ||
        (bp->timeout_ms > 0 && !cJSON_AddNumberToObject(root, "timeout_ms", (double)bp->timeout_ms)) ||
        (steps = cJSON_AddArrayToObject(root, "steps")) == NULL)
        goto fail;
    for (size_t i = 0; i < bp->nsteps; i++)
        if (!add_to_array(steps, canonical_step(bp, &bp->steps[i]))) goto fail;
    bp->canonical_json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    root = NULL;
    if (bp->canonical_json == NULL) goto fail;

    if (!EVP_Digest(bp->canonical_json, strlen(bp->canonical_json), md, &mdlen, EVP_sha256(),
                    NULL) ||
        mdlen != 32)
        goto fail;
    for (unsigned int i = 0; i < mdlen; i++) snprintf(bp->version + 2 * i, 3, "%02x", md[i]);
    return 0;
fail:
    cJSON_Delete(root);
    return oom(p);
}

/* ------------------------------------------------------------------------ */
/* Pass 1 and the whole                                                     */
/* ------------------------------------------------------------------------ */

static void text_position(const char *json, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (json[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* what: "blueprint" or "inputs"; the messages of inputs start "inputs: ". */
static cJSON *parse_text(const char *json, size_t len, const char *what, cbm_error_t *err,
                         int *rc)
{
    const char *end = NULL;
    const char *prefix = strcmp(what, "inputs") == 0 ? "inputs: " : "";
    size_t off, line, col;
    cJSON *root;

    if (len == 0) {
        *rc = cbm_error_set(err, CBM_EJSON, "%smalformed JSON: empty input", prefix);
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    off = end != NULL && end >= json && (size_t)(end - json) <= len ? (size_t)(end - json) : 0;
    if (root == NULL) {
        text_position(json, off, &line, &col);
        *rc = cbm_error_set(err, CBM_EJSON, "%smalformed JSON at line %zu, column %zu (byte %zu)",
                            prefix, line, col, off);
        return NULL;
    }
    /* cJSON stops after the first value; anything but white space after it
     * (up to a NUL, which ends a C string) is an error, not ignored. */
    while (off < len && (json[off] == ' ' || json[off] == '\t' || json[off] == '\n' ||
                         json[off] == '\r'))
        off++;
    if (off < len && json[off] != '\0') {
        cJSON_Delete(root);
        text_position(json, off, &line, &col);
        *rc = cbm_error_set(err, CBM_EJSON,
                            "%smalformed JSON: unexpected text after the %s at line %zu, "
                            "column %zu (byte %zu)",
                            prefix, what, line, col, off);
        return NULL;
    }
    return root;
}

/* Pass 1: the top-level object. Fills *name, *steps, *timeline and *inputs
 * (each may be NULL) and *n, the total number of steps. */
static int parse_top(const cJSON *root, const char **bp_name, const cJSON **steps,
                     const cJSON **timeline, const cJSON **inputs, size_t *n, cbm_error_t *err)
{
    char label[NAME_MAX_LEN + 16];
    const cJSON *name, *it;
    int rc;

    if (!cJSON_IsObject(root))
        return cbm_error_set(err, CBM_EBLUEPRINT, "blueprint must be a JSON object");
    name = cJSON_GetObjectItemCaseSensitive(root, "name");
    if ((rc = check_name(name, "blueprint", err)) != 0) return rc;
    snprintf(label, sizeof(label), "blueprint '%s'", name->valuestring);
    if ((rc = check_keys(root, top_keys, label, err)) != 0) return rc;

    *bp_name = name->valuestring;
    *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    *timeline = cJSON_GetObjectItemCaseSensitive(root, "timeline");
    *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (*steps != NULL && !cJSON_IsArray(*steps))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: steps must be an array", label);
    if (*timeline != NULL && !cJSON_IsArray(*timeline))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: timeline must be an array", label);
    if (*inputs != NULL && !cJSON_IsObject(*inputs))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: inputs must be an object", label);
    *n = 0;
    cJSON_ArrayForEach(it, *steps) (*n)++;
    cJSON_ArrayForEach(it, *timeline) (*n)++;
    if (*n == 0) return cbm_error_set(err, CBM_EBLUEPRINT, "%s has no steps", label);
    return 0;
}

static bool input_name_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int cmp_input(const void *a, const void *b)
{
    return strcmp(((const bp_input_t *)a)->name, ((const bp_input_t *)b)->name);
}

/* Pass 1, continued: the input declarations, stored sorted by name. */
static int parse_inputs(parser_t *p, const cJSON *obj)
{
    bp_blueprint_t *bp = p->bp;
    const cJSON *it;
    size_t n = 0;
    int rc;

    bp->inputs_declared = true;
    cJSON_ArrayForEach(it, obj) n++;
    if (n == 0) return 0;
    if ((bp->inputs = xcalloc(n, sizeof(bp_input_t))) == NULL) return oom(p);
    cJSON_ArrayForEach(it, obj) {
        const char *name = it->string;
        char label[NAME_MAX_LEN + 16];
        const cJSON *f;

        if (name[0] == '\0')
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "blueprint '%s': input name is empty",
                                 bp->name);
        if (strlen(name) > NAME_MAX_LEN)
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "blueprint '%s': input name '%.40s...' is longer than %d "
                                 "characters",
                                 bp->name, name, NAME_MAX_LEN);
        if (!input_name_ok(name))
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "blueprint '%s': input name '%.64s' may only contain letters, "
                                 "digits, '_' and '-'",
                                 bp->name, name);
        bp_input_t *in = &bp->inputs[bp->ninputs];
        if ((in->name = xstrdup(name)) == NULL) return oom(p);
        bp->ninputs++;
        snprintf(label, sizeof(label), "input '%s'", name);
        if (!cJSON_IsObject(it))
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s must be an object", label);
        if ((rc = check_keys(it, input_keys, label, p->err)) != 0) return rc;
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "type")) != NULL) {
            size_t t;
            for (t = 1; t < NINPUT_TYPES; t++)
                if (cJSON_IsString(f) && strcmp(f->valuestring, input_type_names[t]) == 0) break;
            if (t == NINPUT_TYPES)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: type must be one of string, number, integer, boolean, "
                                     "object, array",
                                     label);
            in->type = (bp_input_type_t)t;
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "required")) != NULL) {
            if (!cJSON_IsBool(f))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: required must be true or false",
                                     label);
            in->required = cJSON_IsTrue(f);
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "default")) != NULL) {
            if (in->required)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "%s: a required input cannot have a default", label);
            if (!type_ok(in->type, f))
                return cbm_error_set(p->err, CBM_EBLUEPRINT, "%s: default must be %s", label,
                                     input_type_nouns[in->type]);
            if ((rc = canon_field(p, f, label, "default", &in->default_value)) != 0) return rc;
        }
    }
    qsort(bp->inputs, bp->ninputs, sizeof(bp_input_t), cmp_input);
    for (size_t i = 1; i < bp->ninputs; i++)
        if (strcmp(bp->inputs[i - 1].name, bp->inputs[i].name) == 0)
            return cbm_error_set(p->err, CBM_EBLUEPRINT, "blueprint '%s': duplicate input '%s'",
                                 bp->name, bp->inputs[i].name);
    return 0;
}

static int parse_steps(parser_t *p, const cJSON *list, const char *list_name, size_t *i)
{
    const cJSON *it;
    size_t pos = 0;
    int rc;
    cJSON_ArrayForEach(it, list) {
        step_src_t *src = &p->src[*i];
        src->list = list_name;
        src->pos = pos;
        src->after_prev = strcmp(list_name, "timeline") == 0 && pos > 0;
        if ((rc = parse_step(p, it, &p->bp->steps[*i], src)) != 0) return rc;
        (*i)++;
        pos++;
    }
    return 0;
}

int bp_parse_json(const char *json, size_t len, bp_blueprint_t **out, cbm_error_t *err)
{
    parser_t p = {.err = err};
    const cJSON *steps = NULL, *timeline = NULL, *inputs = NULL;
    const char *name = NULL;
    cJSON *root;
    size_t n = 0, i = 0;
    int rc;

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_parse_json: out is NULL");
    *out = NULL;
    if (json == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_parse_json: json is NULL");

    if ((root = parse_text(json, len, "blueprint", err, &rc)) == NULL) return rc;
    if ((rc = parse_top(root, &name, &steps, &timeline, &inputs, &n, err)) != 0) goto out;

    p.bp = xcalloc(1, sizeof(*p.bp));
    if (p.bp == NULL || (p.bp->name = xstrdup(name)) == NULL ||
        (p.bp->steps = xcalloc(n, sizeof(bp_step_t))) == NULL ||
        (p.src = xcalloc(n, sizeof(step_src_t))) == NULL) {
        rc = oom(&p);
        goto out;
    }
    p.bp->nsteps = n; /* the steps are zeroed, so bp_destroy copes with a partial parse */

    {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(root, "timeout_ms");
        char label[NAME_MAX_LEN + 16];
        snprintf(label, sizeof(label), "blueprint '%s'", name);
        if (to != NULL && (rc = get_ms(to, label, "timeout_ms", 1, &p.bp->timeout_ms, err)) != 0)
            goto out;
    }
    if ((inputs != NULL && (rc = parse_inputs(&p, inputs)) != 0) ||
        (rc = parse_steps(&p, steps, "steps", &i)) != 0 ||
        (rc = parse_steps(&p, timeline, "timeline", &i)) != 0 || (rc = index_names(&p)) != 0 ||
        (rc = resolve_deps(&p)) != 0 || (rc = find_dependents(&p)) != 0 ||
        (rc = check_cycles(&p)) != 0 || (rc = check_routing(&p)) != 0 ||
        (rc = make_canonical(&p)) != 0)
        goto out;
    assert(i == n);
    *out = p.bp;
    p.bp = NULL;
out:
    bp_destroy(p.bp);
    cJSON_free(p.src);
    cJSON_free(p.by_name);
    cJSON_free(p.mark);
    cJSON_free(p.stack);
    cJSON_Delete(root);
    return rc;
}

/* A linear scan: blueprints are tens of steps, and callers that look names up
 * in a hot path can keep their own index. */
int bp_step_index(const bp_blueprint_t *bp, const char *name)
{
    if (bp == NULL || name == NULL) return -1;
    for (size_t i = 0; i < bp->nsteps && i <= (size_t)INT_MAX; i++)
        if (strcmp(bp->steps[i].name, name) == 0) return (int)i;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Execution inputs                                                         */
/* ------------------------------------------------------------------------ */

static const bp_input_t *input_decl(const bp_blueprint_t *bp, const char *name)
{
    return find_input(bp, name, strlen(name));
}

int bp_check_inputs(const bp_blueprint_t *bp, const char *inputs_json, char **normalized_out,
                    cbm_error_t *err)
{
    const char *text = inputs_json != NULL && inputs_json[0] != '\0' ? inputs_json : "{}";
    const cJSON **keys = NULL;
    cJSON *root;
    const cJSON *it;
    size_t n = 0, i = 0;
    int rc = 0;

    if (normalized_out != NULL) *normalized_out = NULL;
    if (bp == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_check_inputs: bp is NULL");
    if ((root = parse_text(text, strlen(text), "inputs", err, &rc)) == NULL) return rc;
    if (!cJSON_IsObject(root)) {
        rc = cbm_error_set(err, CBM_EINVAL, "inputs must be a JSON object");
        goto out;
    }

    /* Repeated keys, found by sorting (inputs may be large). */
    cJSON_ArrayForEach(it, root) n++;
    if ((keys = xcalloc(n, sizeof(*keys))) == NULL) goto nomem;
    cJSON_ArrayForEach(it, root) keys[i++] = it;
    if (n > 1) qsort(keys, n, sizeof(*keys), cmp_member);
    for (i = 1; i < n; i++)
        if (strcmp(keys[i - 1]->string, keys[i]->string) == 0) {
            rc = cbm_error_set(err, CBM_EINVAL, "input '%.64s' is given twice", keys[i]->string);
            goto out;
        }

    if (bp->inputs_declared) {
        cJSON_ArrayForEach(it, root) {
            const bp_input_t *in = input_decl(bp, it->string);
            if (in == NULL) {
                char list[256] = "";
                size_t used = 0;
                for (size_t k = 0; k < bp->ninputs; k++) {
                    int w = snprintf(list + used, sizeof(list) - used, "%s%s", k ? ", " : "",
                                     bp->inputs[k].name);
                    if (w < 0 || (size_t)w >= sizeof(list) - used) break;
                    used += (size_t)w;
                }
                if (bp->ninputs == 0)
                    rc = cbm_error_set(err, CBM_EINVAL,
                                       "unknown input '%.64s' (blueprint '%s' declares no inputs)",
                                       it->string, bp->name);
                else
                    rc = cbm_error_set(err, CBM_EINVAL, "unknown input '%.64s' (declared: %s)",
                                       it->string, list);
                goto out;
            }
            if (!type_ok(in->type, it)) {
                rc = cbm_error_set(err, CBM_EINVAL, "input '%s' must be %s (got %s)", in->name,
                                   input_type_nouns[in->type], json_type_name(it));
                goto out;
            }
        }
        for (size_t k = 0; k < bp->ninputs; k++) {
            const bp_input_t *in = &bp->inputs[k];
            cJSON *c;
            if (cJSON_GetObjectItemCaseSensitive(root, in->name) != NULL) continue;
            if (in->required) {
                rc = cbm_error_set(err, CBM_EINVAL, "input '%s' is required", in->name);
                goto out;
            }
            if (in->default_value == NULL) continue;
            if ((c = cJSON_Duplicate(in->default_value, true)) == NULL) goto nomem;
            if (!cJSON_AddItemToObject(root, in->name, c)) {
                cJSON_Delete(c);
                goto nomem;
            }
        }
    }
    if (normalized_out != NULL && (*normalized_out = cJSON_PrintUnformatted(root)) == NULL)
        goto nomem;
    goto out;
nomem:
    rc = cbm_error_set(err, CBM_ENOMEM, "out of memory while checking inputs");
out:
    cJSON_free(keys);
    cJSON_Delete(root);
    return rc;
}
