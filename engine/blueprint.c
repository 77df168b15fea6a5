/*
 * blueprint.c - parse and validate blueprint JSON into the immutable graph of
 * blueprint.h, and derive its canonical JSON and version.
 *
 * The one validator: the C builder emits JSON and comes through here too. The
 * format is described in docs/blueprints.md (and docs/blueprint.schema.json);
 * every error message this file can produce is listed there.
 *
 * Parsing runs in passes, so that each pass can assume what the previous ones
 * checked:
 *   1. the JSON text (cJSON), the top-level object and its keys;
 *   2. each step on its own (name, keys, field types, retry policy), steps[]
 *      first and then timeline[], which is also the order of bp->steps;
 *   3. step names: a sorted index, which finds duplicates and serves lookups;
 *   4. dependencies: names to indexes, timeline links added, sorted, deduped;
 *   5. cycles (an iterative depth-first search, so a long chain cannot blow
 *      the stack);
 *   6. the canonical JSON, printed from the model (never from the input), and
 *      its SHA-256.
 *
 * Unknown keys are errors, not ignored: a misspelt "depend_on" that is silently
 * dropped would run a step before its inputs exist.
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

#define NAME_MAX_LEN 128
/* Largest integer a JSON number (a double, in cJSON) holds exactly. */
#define INT_FIELD_MAX INT64_C(9007199254740991)
#define MAX_ATTEMPTS_MAX 1000

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

/* Allowed keys, NULL-terminated; at most 32 per list (see check_keys). */
static const char *const top_keys[] = {"name", "steps", "timeline", NULL};
static const char *const step_keys[] = {"name", "kind", "handler", "queue", "depends_on",
                                        "timeout_ms", "retry", NULL};
static const char *const retry_keys[] = {"max_attempts", "initial_ms", "max_ms",
                                         "multiplier", "non_retryable", NULL};

/* Where a step was declared, kept while parsing for messages and pass 4. */
typedef struct step_src {
    const char *list;          /* "steps" or "timeline" */
    size_t pos;                /* index in that list */
    const cJSON *depends_on;   /* the validated array, or NULL */
    bool after_prev;           /* a timeline entry after the first */
} step_src_t;

typedef struct parser {
    cbm_error_t *err;
    bp_blueprint_t *bp;
    step_src_t *src;           /* nsteps entries */
    bp_step_t **by_name;       /* nsteps pointers, sorted by name */
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
    for (size_t i = 0; i < s->retry.n_non_retryable; i++) cJSON_free(s->retry.non_retryable[i]);
    cJSON_free(s->retry.non_retryable);
}

void bp_destroy(bp_blueprint_t *bp)
{
    if (bp == NULL) return;
    for (size_t i = 0; i < bp->nsteps; i++) step_finish(&bp->steps[i]);
    cJSON_free(bp->steps);
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
        rc = get_int(it, label, "retry.initial_ms", 1, INT_FIELD_MAX, &r->initial_ms, p->err);
        if (rc != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "max_ms")) != NULL) {
        rc = get_int(it, label, "retry.max_ms", 1, INT_FIELD_MAX, &r->max_ms, p->err);
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
/* Pass 2: one step                                                         */
/* ------------------------------------------------------------------------ */

static int parse_step_fields(parser_t *p, const cJSON *obj, const char *label, bp_step_t *s,
                             step_src_t *src)
{
    const cJSON *it;
    int rc;

    if ((rc = check_keys(obj, step_keys, label, p->err)) != 0) return rc;

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
        rc = get_int(it, label, "timeout_ms", 0, INT_FIELD_MAX, &s->timeout_ms, p->err);
        if (rc != 0) return rc;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "retry")) != NULL) {
        if ((rc = parse_retry(it, label, &s->retry, p)) != 0) return rc;
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
/* Pass 4: dependencies                                                     */
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
/* Pass 6: canonical JSON and version                                       */
/* ------------------------------------------------------------------------ */

/* Integers are printed by us, not as cJSON doubles: "%1.15g" would turn
 * 1000000000000000 into 1e+15. */
static bool add_int(cJSON *obj, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return cJSON_AddRawToObject(obj, key, buf) != NULL;
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
    for (size_t k = 0; k < s->ndeps; k++) {
        cJSON *d = cJSON_CreateString(bp->steps[s->deps[k]].name);
        if (d == NULL) goto fail;
        if (!cJSON_AddItemToArray(deps, d)) {
            cJSON_Delete(d);
            goto fail;
        }
    }
    if (!add_int(o, "timeout_ms", s->timeout_ms) ||
        (retry = cJSON_AddObjectToObject(o, "retry")) == NULL ||
        !add_int(retry, "max_attempts", s->retry.max_attempts) ||
        !add_int(retry, "initial_ms", s->retry.initial_ms) ||
        !add_int(retry, "max_ms", s->retry.max_ms) ||
        !cJSON_AddNumberToObject(retry, "multiplier", s->retry.multiplier))
        goto fail;
    if ((nr = cJSON_AddArrayToObject(retry, "non_retryable")) == NULL) goto fail;
    for (size_t k = 0; k < s->retry.n_non_retryable; k++) {
        cJSON *e = cJSON_CreateString(s->retry.non_retryable[k]);
        if (e == NULL) goto fail;
        if (!cJSON_AddItemToArray(nr, e)) {
            cJSON_Delete(e);
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static int make_canonical(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    cJSON *root = cJSON_CreateObject(), *steps;

    if (root == NULL || !cJSON_AddStringToObject(root, "name", bp->name) ||
        (steps = cJSON_AddArrayToObject(root, "steps")) == NULL)
        goto fail;
    for (size_t i = 0; i < bp->nsteps; i++) {
        cJSON *o = canonical_step(bp, &bp->steps[i]);
        if (o == NULL) goto fail;
        if (!cJSON_AddItemToArray(steps, o)) {
            cJSON_Delete(o);
            goto fail;
        }
    }
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

static cJSON *parse_text(const char *json, size_t len, cbm_error_t *err, int *rc)
{
    const char *end = NULL;
    size_t off, line, col;
    cJSON *root;

    if (len == 0) {
        *rc = cbm_error_set(err, CBM_EJSON, "malformed JSON: empty input");
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    off = end != NULL && end >= json && (size_t)(end - json) <= len ? (size_t)(end - json) : 0;
    if (root == NULL) {
        text_position(json, off, &line, &col);
        *rc = cbm_error_set(err, CBM_EJSON, "malformed JSON at line %zu, column %zu (byte %zu)",
                            line, col, off);
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
                            "malformed JSON: unexpected text after the blueprint at line %zu, "
                            "column %zu (byte %zu)",
                            line, col, off);
        return NULL;
    }
    return root;
}

/* Pass 1: the top-level object. Fills *name, *steps and *timeline (either
 * list may be NULL) and *n, the total number of steps. */
static int parse_top(const cJSON *root, const char **bp_name, const cJSON **steps,
                     const cJSON **timeline, size_t *n, cbm_error_t *err)
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
    if (*steps != NULL && !cJSON_IsArray(*steps))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: steps must be an array", label);
    if (*timeline != NULL && !cJSON_IsArray(*timeline))
        return cbm_error_set(err, CBM_EBLUEPRINT, "%s: timeline must be an array", label);
    *n = 0;
    cJSON_ArrayForEach(it, *steps) (*n)++;
    cJSON_ArrayForEach(it, *timeline) (*n)++;
    if (*n == 0) return cbm_error_set(err, CBM_EBLUEPRINT, "%s has no steps", label);
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
    const cJSON *steps = NULL, *timeline = NULL;
    const char *name = NULL;
    cJSON *root;
    size_t n = 0, i = 0;
    int rc;

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_parse_json: out is NULL");
    *out = NULL;
    if (json == NULL) return cbm_error_set(err, CBM_EINVAL, "bp_parse_json: json is NULL");

    if ((root = parse_text(json, len, err, &rc)) == NULL) return rc;
    if ((rc = parse_top(root, &name, &steps, &timeline, &n, err)) != 0) goto out;

    p.bp = xcalloc(1, sizeof(*p.bp));
    if (p.bp == NULL || (p.bp->name = xstrdup(name)) == NULL ||
        (p.bp->steps = xcalloc(n, sizeof(bp_step_t))) == NULL ||
        (p.src = xcalloc(n, sizeof(step_src_t))) == NULL) {
        rc = oom(&p);
        goto out;
    }
    p.bp->nsteps = n; /* the steps are zeroed, so bp_destroy copes with a partial parse */

    if ((rc = parse_steps(&p, steps, "steps", &i)) != 0 ||
        (rc = parse_steps(&p, timeline, "timeline", &i)) != 0 || (rc = index_names(&p)) != 0 ||
        (rc = resolve_deps(&p)) != 0 || (rc = check_cycles(&p)) != 0 ||
        (rc = make_canonical(&p)) != 0)
        goto out;
    assert(i == n);
    *out = p.bp;
    p.bp = NULL;
out:
    bp_destroy(p.bp);
    cJSON_free(p.src);
    cJSON_free(p.by_name);
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
