/* decider.c - see decider.h. */
#include "engine/decider.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

static bool deps_completed(const st_exec_t *st, const bp_step_t *s)
{
    for (size_t d = 0; d < s->ndeps; d++)
        if (st->steps[s->deps[d]].status != SS_COMPLETED) return false;
    return true;
}

static bool is_sink(const bp_blueprint_t *bp, size_t i)
{
    for (size_t j = 0; j < bp->nsteps; j++)
        for (size_t d = 0; d < bp->steps[j].ndeps; d++)
            if (bp->steps[j].deps[d] == i) return false;
    return true;
}

/* {"<sink>":<result>,...}: the results of the steps nothing depends on. */
static char *execution_result(const st_exec_t *st)
{
    size_t cap = 3, len;
    char *out, *p;

    for (size_t i = 0; i < st->bp->nsteps; i++)
        if (is_sink(st->bp, i))
            cap += strlen(st->bp->steps[i].name) + strlen(st->steps[i].result) + 4;
    if ((out = malloc(cap)) == NULL) return NULL;
    p = out;
    *p++ = '{';
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        if (!is_sink(st->bp, i)) continue;
        if (p[-1] != '{') *p++ = ',';
        len = (size_t)sprintf(p, "\"%s\":%s", st->bp->steps[i].name, st->steps[i].result);
        p += len;
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* {"step":..,"kind":..,"message":..} from the failed step's error object. */
static char *execution_error(const st_exec_t *st, size_t i)
{
    cJSON *se = cJSON_Parse(st->steps[i].error), *o = cJSON_CreateObject();
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(se, "kind");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(se, "message");
    char *out = NULL;

    if (o != NULL && cJSON_AddStringToObject(o, "step", st->bp->steps[i].name) != NULL &&
        cJSON_AddStringToObject(o, "kind", cJSON_IsString(k) ? k->valuestring : "error") != NULL &&
        cJSON_AddStringToObject(o, "message", cJSON_IsString(m) ? m->valuestring : "") != NULL)
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    cJSON_Delete(se);
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
    return e;
}

int64_t dc_backoff_ms(const bp_retry_t *r, int failed_attempt)
{
    double ms = (double)r->initial_ms;
    for (int i = 1; i < failed_attempt && ms < (double)r->max_ms; i++) ms *= r->multiplier;
    return ms > (double)r->max_ms ? r->max_ms : (int64_t)ms;
}

/* May the step that failed with error (JSON) be tried again? */
static bool retry_allowed(const bp_step_t *b, const st_step_t *s)
{
    cJSON *e;
    const cJSON *k, *r;
    bool ok;
    if (s->attempt >= b->retry.max_attempts) return false;
    e = cJSON_Parse(s->error);
    k = cJSON_GetObjectItemCaseSensitive(e, "kind");
    r = cJSON_GetObjectItemCaseSensitive(e, "retryable");
    ok = cJSON_IsTrue(r);
    for (size_t i = 0; ok && cJSON_IsString(k) && i < b->retry.n_non_retryable; i++)
        if (strcmp(b->retry.non_retryable[i], k->valuestring) == 0) ok = false;
    cJSON_Delete(e);
    return ok;
}

static char *error_json(const char *kind, const char *message, bool retryable)
{
    cJSON *o = cJSON_CreateObject();
    char *out;
    if (o == NULL) return NULL;
    cJSON_AddStringToObject(o, "kind", kind);
    cJSON_AddStringToObject(o, "message", message);
    cJSON_AddBoolToObject(o, "retryable", retryable);
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

#define NEXT(type, step)                                       \
    do {                                                       \
        if ((e = next(out, cap, n, (type), (int)(step))) == NULL) return CBM_ENOMEM; \
    } while (0)
#define DUP(dst, src)                                          \
    do {                                                       \
        if (((dst) = strdup(src)) == NULL) return CBM_ENOMEM;  \
    } while (0)

/* Timers that fired: what each one means for its step. */
static int resolve_fired(const st_exec_t *st, eng_event_t *out, size_t cap, size_t *n)
{
    const bp_blueprint_t *bp = st->bp;
    eng_event_t *e;
    for (size_t i = 0; i < bp->nsteps; i++) {
        const st_step_t *s = &st->steps[i];
        if (s->fired == 0) continue;
        switch ((st_timer_kind_t)(s->fired - 1)) {
        case TK_SLEEP:
            if (s->status != SS_WAITING || s->wait != SW_SLEEP) break;
            NEXT(EV_STEP_COMPLETED, i);
            e->attempt = s->attempt;
            DUP(e->json, s->pending != NULL ? s->pending : "null");
            break;
        case TK_RETRY:
            if (s->status != SS_BACKOFF) break;
            NEXT(EV_STEP_SCHEDULED, i);
            e->attempt = s->attempt + 1;
            break;
        case TK_TIMEOUT:
            if (s->status != SS_SCHEDULED) break;
            NEXT(EV_STEP_FAILED, i);
            e->attempt = s->attempt;
            if ((e->json = error_json("timeout", "the attempt ran past its timeout_ms",
                                      true)) == NULL)
                return CBM_ENOMEM;
            break;
        case TK_APPROVAL:
            if (s->status != SS_WAITING || s->wait != SW_APPROVAL) break;
            NEXT(EV_APPROVAL_TIMED_OUT, i);
            break;
        case TK_SIGNAL:
            if (s->status != SS_SCHEDULED || s->wait != SW_SIGNAL) break;
            NEXT(EV_STEP_FAILED, i);
            e->attempt = s->attempt;
            if ((e->json = error_json("signal_timeout", "the signal did not arrive in time",
                                      false)) == NULL)
                return CBM_ENOMEM;
            break;
        case TK_WAKE:
        case TK_DEADLINE:
            break;
        }
    }
    return 0;
}

/* Start a pending step whose dependencies are done, by its kind. */
static int start_step(const st_exec_t *st, size_t i, int64_t now, eng_event_t *out, size_t cap,
                      size_t *n)
{
    const bp_step_t *b = &st->bp->steps[i];
    int attempt = st->steps[i].attempt + 1;
    eng_event_t *e;

    switch (b->kind) {
    case BP_SLEEP:
        NEXT(EV_SLEEP_STARTED, i);
        e->attempt = attempt;
        e->due_us = b->sleep_until_us >= 0 ? b->sleep_until_us : now + b->sleep_ms * 1000;
        DUP(e->json, "null");
        return 0;
    case BP_APPROVAL:
        NEXT(EV_APPROVAL_REQUESTED, i);
        e->attempt = attempt;
        DUP(e->name, b->approval_type);
        if ((e->json = dc_step_input(st, i)) == NULL) return CBM_ENOMEM;
        e->timeout_ms = b->timeout_ms;
        e->due_us = b->timeout_ms > 0 ? now + b->timeout_ms * 1000 : 0;
        return 0;
    case BP_SIGNAL:
        NEXT(EV_STEP_SCHEDULED, i);
        e->attempt = attempt;
        for (size_t k = 0; k < st->nsignals; k++) {
            if (strcmp(st->signals[k].name, b->signal) == 0) {
                /* It arrived before the wait: consume it at once. */
                NEXT(EV_STEP_COMPLETED, i);
                e->attempt = attempt;
                DUP(e->json, st->signals[k].payload);
                break;
            }
        }
        return 0;
    default:
        NEXT(EV_STEP_SCHEDULED, i);
        e->attempt = attempt;
        return 0;
    }
}

int dc_decide(const st_exec_t *st, int64_t now_us, eng_event_t *out, size_t cap, size_t *n)
{
    const bp_blueprint_t *bp = st->bp;
    bool all_done = true;
    eng_event_t *e;
    int rc;

    *n = 0;
    if (st_terminal(st)) return 0;
    if (st->cancel_requested) {
        NEXT(EV_EXECUTION_CANCELLED, -1);
        DUP(e->text, st->cancel_reason != NULL ? st->cancel_reason : "");
        return 0;
    }
    if (st->deadline_fired) {
        /* The execution-wide time-out: it fails, whatever still runs. */
        NEXT(EV_EXECUTION_FAILED, -1);
        if ((e->json = strdup("{\"step\":\"\",\"kind\":\"execution_timeout\",\"message\":"
                              "\"the execution ran past its timeout_ms\"}")) == NULL)
            return CBM_ENOMEM;
        return 0;
    }
    if ((rc = resolve_fired(st, out, cap, n)) != 0) return rc;
    if (*n > 0) return 0;

    for (size_t i = 0; i < bp->nsteps; i++) {
        if (st->steps[i].status == SS_FAILED && !retry_allowed(&bp->steps[i], &st->steps[i])) {
            NEXT(EV_EXECUTION_FAILED, -1);
            if ((e->json = execution_error(st, i)) == NULL) return CBM_ENOMEM;
            return 0;
        }
    }
    for (size_t i = 0; i < bp->nsteps; i++) {
        if (st->steps[i].status != SS_FAILED) continue;
        NEXT(EV_STEP_RETRY_SCHEDULED, i);
        e->attempt = st->steps[i].attempt + 1;
        e->due_us = now_us + dc_backoff_ms(&bp->steps[i].retry, st->steps[i].attempt) * 1000;
    }
    if (*n > 0) return 0;

    for (size_t i = 0; i < bp->nsteps; i++)
        if (st->steps[i].status != SS_COMPLETED) all_done = false;
    if (all_done) {
        NEXT(EV_EXECUTION_COMPLETED, -1);
        if ((e->json = execution_result(st)) == NULL) return CBM_ENOMEM;
        return 0;
    }
    for (size_t i = 0; i < bp->nsteps; i++) {
        if (st->steps[i].status != SS_PENDING || !deps_completed(st, &bp->steps[i])) continue;
        if ((rc = start_step(st, i, now_us, out, cap, n)) != 0) return rc;
    }
    return 0;
}

char *dc_step_input(const st_exec_t *st, size_t step)
{
    const bp_step_t *s = &st->bp->steps[step];
    size_t cap = strlen(st->inputs) + 32, len;
    char *out, *p;

    for (size_t d = 0; d < s->ndeps; d++)
        cap += strlen(st->bp->steps[s->deps[d]].name) + strlen(st->steps[s->deps[d]].result) + 4;
    if ((out = malloc(cap)) == NULL) return NULL;
    len = (size_t)sprintf(out, "{\"inputs\":%s,\"deps\":{", st->inputs);
    p = out + len;
    for (size_t d = 0; d < s->ndeps; d++) {
        size_t j = s->deps[d];
        if (d > 0) *p++ = ',';
        p += sprintf(p, "\"%s\":%s", st->bp->steps[j].name, st->steps[j].result);
    }
    strcpy(p, "}}");
    return out;
}
