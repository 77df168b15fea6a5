/*
 * route.c - see route.h. Diverge rules and branches are evaluated here, with
 * the pattern and condition evaluators of match.c, on the step's result or
 * error parsed from the state. The graph walks (descendants, the steps
 * between two steps, the closure of skips) use the blueprint's dependency
 * lists; blueprints have at most a few hundred steps, so plain arrays of
 * flags are enough.
 */
#include "engine/route.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/match.h"

char *route_execution_error(const st_exec_t *st, size_t i)
{
    cJSON *se = cJSON_Parse(st->steps[i].error), *o = cJSON_CreateObject();
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(se, "kind");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(se, "message");
    char *out = NULL;

    /* The state holds normalised JSON: a parse that fails ran out of
     * memory, and must not give a generic error in the history. */
    if (o != NULL && (se != NULL || st->steps[i].error == NULL) &&
        cJSON_AddStringToObject(o, "step", st->bp->steps[i].name) != NULL &&
        cJSON_AddStringToObject(o, "kind", cJSON_IsString(k) ? k->valuestring : "error") != NULL &&
        cJSON_AddStringToObject(o, "message", cJSON_IsString(m) ? m->valuestring : "") != NULL)
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    cJSON_Delete(se);
    return out;
}

/* {"step":..,"kind":..,"message":..} with a message of our own. */
static char *own_error(const st_exec_t *st, size_t i, const char *kind, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;
    if (o != NULL && cJSON_AddStringToObject(o, "step", st->bp->steps[i].name) != NULL &&
        cJSON_AddStringToObject(o, "kind", kind) != NULL &&
        cJSON_AddStringToObject(o, "message", message) != NULL)
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

static eng_event_t *next(eng_event_t *out, size_t cap, size_t *n, ev_type_t type, int step)
{
    eng_event_t *e;
    if (*n >= cap) return NULL;
    e = &out[(*n)++];
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->step = step;
    e->target = -1;
    e->rule = -1;
    return e;
}

/* mark[j] = 1 for every step that depends on i, directly or not. */
static void descendants(const bp_blueprint_t *bp, size_t i, unsigned char *mark)
{
    for (size_t k = 0; k < bp->steps[i].ndependents; k++) {
        size_t j = bp->steps[i].dependents[k];
        if (mark[j]) continue;
        mark[j] = 1;
        descendants(bp, j, mark);
    }
}

/* mark[j] = 1 for every step that i depends on, directly or not. */
static void ancestors(const bp_blueprint_t *bp, size_t i, unsigned char *mark)
{
    for (size_t k = 0; k < bp->steps[i].ndeps; k++) {
        size_t j = bp->steps[i].deps[k];
        if (mark[j]) continue;
        mark[j] = 1;
        ancestors(bp, j, mark);
    }
}

/* Grow the skip set by the rule "a step whose dependencies are all skipped
 * is skipped", until it holds; `keep` (a skip_to target, or -1) runs anyway,
 * and so does a pending step marked forced. Only pending steps can join. */
static void skip_closure(const st_exec_t *st, unsigned char *skip, int keep)
{
    const bp_blueprint_t *bp = st->bp;
    bool changed = true;
    while (changed) {
        changed = false;
        for (size_t j = 0; j < bp->nsteps; j++) {
            const bp_step_t *b = &bp->steps[j];
            bool all = b->ndeps > 0;
            if (skip[j] || (int)j == keep || st->steps[j].status != SS_PENDING ||
                st->steps[j].forced)
                continue;
            for (size_t d = 0; all && d < b->ndeps; d++)
                all = skip[b->deps[d]] || st->steps[b->deps[d]].status == SS_SKIPPED;
            if (all) {
                skip[j] = 1;
                changed = true;
            }
        }
    }
}

/* e->set = the marked steps, in step order. */
static int set_from(eng_event_t *e, const unsigned char *mark, size_t nsteps)
{
    size_t n = 0;
    for (size_t j = 0; j < nsteps; j++) n += mark[j] != 0;
    if (n == 0) return 0;
    if ((e->set = calloc(n, sizeof(*e->set))) == NULL) return CBM_ENOMEM;
    for (size_t j = 0; j < nsteps; j++)
        if (mark[j]) e->set[e->nset++] = (int)j;
    return 0;
}

/* Take rule r of step i (which matched). */
static int take_rule(const st_exec_t *st, size_t i, size_t r, eng_event_t *out, size_t cap,
                     size_t *n)
{
    const bp_blueprint_t *bp = st->bp;
    const bp_diverge_t *rule = &bp->steps[i].diverge[r];
    unsigned char *mark = NULL;
    eng_event_t *e;
    char msg[400];
    int rc = 0;

    if ((rule->action == BP_ACTION_RETRY || rule->action == BP_ACTION_BACK_TO) &&
        st->steps[i].iters[r] >= rule->max_iterations) {
        /* The loop is bounded: one match too many fails the execution. */
        snprintf(msg, sizeof(msg), "diverge[%zu] (%s to '%s') matched again after %d iterations, "
                 "its max_iterations", r, bp_action_name(rule->action),
                 bp->steps[rule->action == BP_ACTION_RETRY ? i : (size_t)rule->target].name,
                 rule->max_iterations);
        if ((e = next(out, cap, n, EV_EXECUTION_FAILED, -1)) == NULL) return CBM_ENOMEM;
        return (e->json = own_error(st, i, "loop_limit", msg)) != NULL ? 0 : CBM_ENOMEM;
    }
    if ((e = next(out, cap, n, EV_DIVERGE_TAKEN, (int)i)) == NULL) return CBM_ENOMEM;
    e->rule = (int)r;
    e->action = (int)rule->action;
    switch (rule->action) {
    case BP_ACTION_RETRY:
    case BP_ACTION_BACK_TO:
        /* Re-open the target and everything downstream of it (this step
         * included: the target is one of its ancestors, or itself). */
        e->target = rule->action == BP_ACTION_RETRY ? (int)i : rule->target;
        e->iteration = st->steps[i].iters[r] + 1;
        if ((mark = calloc(bp->nsteps, 1)) == NULL) return CBM_ENOMEM;
        mark[e->target] = 1;
        descendants(bp, (size_t)e->target, mark);
        rc = set_from(e, mark, bp->nsteps);
        break;
    case BP_ACTION_SKIP_TO: {
        unsigned char *before;
        e->target = rule->target;
        mark = calloc(bp->nsteps, 1);
        before = calloc(bp->nsteps, 1);
        if (mark == NULL || before == NULL) {
            free(mark);
            free(before);
            return CBM_ENOMEM;
        }
        /* Between: downstream of this step and upstream of the target. */
        descendants(bp, i, mark);
        ancestors(bp, (size_t)rule->target, before);
        for (size_t j = 0; j < bp->nsteps; j++)
            mark[j] = mark[j] && before[j] && st->steps[j].status == SS_PENDING;
        free(before);
        skip_closure(st, mark, rule->target);
        rc = set_from(e, mark, bp->nsteps);
        break;
    }
    case BP_ACTION_FAIL:
        if ((e = next(out, cap, n, EV_EXECUTION_FAILED, -1)) == NULL) return CBM_ENOMEM;
        if (rule->on == BP_ON_ERROR) {
            e->json = route_execution_error(st, i);
        } else {
            snprintf(msg, sizeof(msg), "diverge[%zu] matched the result and fails the execution",
                     r);
            e->json = own_error(st, i, "diverge_fail", msg);
        }
        rc = e->json != NULL ? 0 : CBM_ENOMEM;
        break;
    case BP_ACTION_CONTINUE:
        break;
    }
    free(mark);
    return rc;
}

/* The first rule on `on` whose pattern matches value, or -1. */
static int first_match(const bp_step_t *b, bp_match_on_t on, const cJSON *value)
{
    for (size_t r = 0; r < b->ndiverge; r++)
        if (b->diverge[r].on == on && match_pattern(b->diverge[r].match, value)) return (int)r;
    return -1;
}

int route_failed(const st_exec_t *st, size_t i, eng_event_t *out, size_t cap, size_t *n)
{
    const bp_step_t *b = &st->bp->steps[i];
    eng_event_t *e;
    int r = -1;
    if (b->ndiverge > 0) {
        cJSON *err = cJSON_Parse(st->steps[i].error);
        if (err == NULL) return CBM_ENOMEM; /* the state holds normalised JSON */
        r = first_match(b, BP_ON_ERROR, err);
        cJSON_Delete(err);
    }
    if (r >= 0) return take_rule(st, i, (size_t)r, out, cap, n);
    if ((e = next(out, cap, n, EV_EXECUTION_FAILED, -1)) == NULL) return CBM_ENOMEM;
    return (e->json = route_execution_error(st, i)) != NULL ? 0 : CBM_ENOMEM;
}

/* The branch of step i on its result value: BranchTaken. */
static int take_branch(const st_exec_t *st, size_t i, const cJSON *value, eng_event_t *out,
                       size_t cap, size_t *n)
{
    const bp_blueprint_t *bp = st->bp;
    const bp_step_t *b = &bp->steps[i];
    unsigned char *mark;
    eng_event_t *e;
    int rc;

    if ((e = next(out, cap, n, EV_BRANCH_TAKEN, (int)i)) == NULL) return CBM_ENOMEM;
    for (size_t k = 0; k < b->nbranch && e->rule < 0; k++) {
        bool holds = b->branch[k].when == NULL;
        /* Conditions were validated with the blueprint; an error here is a
         * condition that does not hold. */
        if (!holds && cond_eval(b->branch[k].when, value, &holds) != 0) holds = false;
        if (holds) {
            e->rule = (int)k;
            e->target = b->branch[k].to;
        }
    }
    if ((mark = calloc(bp->nsteps, 1)) == NULL) return CBM_ENOMEM;
    for (size_t k = 0; k < b->nbranch; k++) {
        int to = b->branch[k].to;
        if (to != e->target && st->steps[to].status == SS_PENDING) mark[to] = 1;
    }
    skip_closure(st, mark, -1);
    rc = set_from(e, mark, bp->nsteps);
    free(mark);
    return rc;
}

int route_completed(const st_exec_t *st, size_t i, eng_event_t *out, size_t cap, size_t *n,
                    bool *open)
{
    const bp_step_t *b = &st->bp->steps[i];
    const st_step_t *s = &st->steps[i];
    cJSON *value;
    int rc = 0;

    *open = false;
    if (s->route == SR_DONE || (b->ndiverge == 0 && b->nbranch == 0)) {
        *open = true;
        return 0;
    }
    if ((value = cJSON_Parse(s->result != NULL ? s->result : "null")) == NULL) return CBM_ENOMEM;
    if (s->route == SR_DIVERGE) {
        int r = first_match(b, BP_ON_RESULT, value);
        if (r >= 0) {
            /* A continue goes on to the branch in the next layer. */
            rc = take_rule(st, i, (size_t)r, out, cap, n);
            goto done;
        }
    }
    /* No rule taken (nothing recorded for that: it is a function of the
     * result, evaluated again as long as it is asked), or continue. */
    if (b->nbranch > 0) rc = take_branch(st, i, value, out, cap, n);
    else *open = true;
done:
    cJSON_Delete(value);
    return rc;
}
