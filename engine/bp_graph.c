/*
 * bp_graph.c - passes 3 to 6: step names, dependencies and dependents,
 * cycles, routing targets and template references.
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
/* Pass 3: names                                                            */
/* ------------------------------------------------------------------------ */

static int cmp_step_name(const void *a, const void *b)
{
    const bp_step_t *x = *(const bp_step_t *const *)a, *y = *(const bp_step_t *const *)b;
    int c = strcmp(x->name, y->name);
    /* Ties by position, so a duplicate is reported as first and second use. */
    return c != 0 ? c : (x < y ? -1 : x > y);
}

int bp_index_names(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    if ((p->by_name = bp_xcalloc(bp->nsteps, sizeof(bp_step_t *))) == NULL) return bp_oom(p);
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

int bp_resolve_deps(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    for (size_t i = 0; i < bp->nsteps; i++) {
        bp_step_t *s = &bp->steps[i];
        const step_src_t *src = &p->src[i];
        const cJSON *d;
        size_t n = src->after_prev ? 1 : 0;

        cJSON_ArrayForEach(d, src->depends_on) n++;
        if ((s->deps = bp_xcalloc(n, sizeof(size_t))) == NULL) return bp_oom(p);
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
int bp_find_dependents(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    for (size_t i = 0; i < bp->nsteps; i++)
        for (size_t k = 0; k < bp->steps[i].ndeps; k++) bp->steps[bp->steps[i].deps[k]].ndependents++;
    for (size_t i = 0; i < bp->nsteps; i++) {
        bp_step_t *s = &bp->steps[i];
        if (s->ndependents == 0) continue;
        /* On failure the counts are left over, but a failed parse is only
         * destroyed, and bp_destroy does not read them. */
        if ((s->dependents = bp_xcalloc(s->ndependents, sizeof(size_t))) == NULL) return bp_oom(p);
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

int bp_check_cycles(parser_t *p)
{
    enum { WHITE = 0, GREY, BLACK };
    const bp_blueprint_t *bp = p->bp;
    size_t n = bp->nsteps, sp = 0;
    unsigned char *color = bp_xcalloc(n, 1);
    size_t *stack = bp_xcalloc(n, sizeof(size_t)); /* the grey steps, root first */
    size_t *next = bp_xcalloc(n, sizeof(size_t));  /* per step: next dep to visit */
    int rc = 0;

    if (color == NULL || stack == NULL || next == NULL) {
        rc = bp_oom(p);
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

const bp_input_t *bp_find_input(const bp_blueprint_t *bp, const char *name, size_t len)
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

/* Every reference of step i's template (under the key field) names a
 * dependency of the step, or a declared input (where the blueprint declares
 * inputs). */
static int check_template_refs(parser_t *p, size_t i, const cJSON *t, const char *field)
{
    const bp_step_t *s = &p->bp->steps[i];
    const cJSON *it;
    int rc;
    if (cJSON_IsString(t) && match_is_reference(t->valuestring)) {
        const char *step = NULL, *input = NULL;
        size_t sl, il;
        long j;
        if (!bp_reference_parts(t->valuestring, &step, &sl, &input, &il)) return 0; /* pass 2 */
        if (sl > 0) {
            if ((j = find_step_n(p, step, sl)) < 0)
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "step '%s': %s: reference '%.64s' names unknown step "
                                     "'%.*s'",
                                     s->name, field, t->valuestring, (int)(sl > 64 ? 64 : sl),
                                     step);
            if (!has_index(s->deps, s->ndeps, (size_t)j))
                return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                     "step '%s': %s: reference '%.64s' names step '%s', which "
                                     "'%s' does not depend on",
                                     s->name, field, t->valuestring, p->bp->steps[j].name,
                                     s->name);
        } else if (il > 0 && p->bp->inputs_declared && bp_find_input(p->bp, input, il) == NULL) {
            return cbm_error_set(p->err, CBM_EBLUEPRINT,
                                 "step '%s': %s: reference '%.64s' names undeclared input "
                                 "'%.*s'",
                                 s->name, field, t->valuestring, (int)(il > 64 ? 64 : il), input);
        }
        return 0;
    }
    cJSON_ArrayForEach(it, t) {
        if ((rc = check_template_refs(p, i, it, field)) != 0) return rc;
    }
    return 0;
}

int bp_check_routing(parser_t *p)
{
    bp_blueprint_t *bp = p->bp;
    int rc;

    if ((p->mark = bp_xcalloc(bp->nsteps, sizeof(unsigned))) == NULL ||
        (p->stack = bp_xcalloc(bp->nsteps, sizeof(size_t))) == NULL)
        return bp_oom(p);
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
        if (s->sub_inputs != NULL &&
            (rc = check_template_refs(p, i, s->sub_inputs, "inputs")) != 0)
            return rc;
        if (s->delib != NULL &&
            ((rc = check_template_refs(p, i, s->delib->task, "task")) != 0 ||
             (rc = check_template_refs(p, i, s->delib->context, "context")) != 0))
            return rc;
    }
    return 0;
}

