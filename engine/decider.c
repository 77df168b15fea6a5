/* decider.c - see decider.h. */
#include "engine/decider.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cbm_internal.h"
#include "engine/match.h"
#include "engine/route.h"

/* May pending step i start? When all its dependencies are finished
 * (fin[]: completed and routed, or skipped) and at least one of them
 * completed, or it is a skip_to / back_to target, or it has none. A pending
 * step whose dependencies were all skipped was skipped with them (the skip
 * lists of DivergeTaken and BranchTaken include it), so that case does not
 * arise here; were it to, the step runs with null inputs rather than hang. */
static bool ready(const st_exec_t *st, size_t i, const unsigned char *fin)
{
    const bp_step_t *s = &st->bp->steps[i];
    for (size_t d = 0; d < s->ndeps; d++)
        if (!fin[s->deps[d]]) return false;
    return true;
}

/* A step's result as JSON text: null for a skipped step. */
static const char *result_of(const st_exec_t *st, size_t i)
{
    return st->steps[i].result != NULL ? st->steps[i].result : "null";
}

static bool is_sink(const bp_blueprint_t *bp, size_t i)
{
    for (size_t j = 0; j < bp->nsteps; j++)
        for (size_t d = 0; d < bp->steps[j].ndeps; d++)
            if (bp->steps[j].deps[d] == i) return false;
    return true;
}

/* {"<sink>":<result>,...}: the results of the steps nothing depends on; a
 * skipped sink's result is null. */
static char *execution_result(const st_exec_t *st)
{
    size_t cap = 3, len;
    char *out, *p;

    for (size_t i = 0; i < st->bp->nsteps; i++)
        if (is_sink(st->bp, i))
            cap += strlen(st->bp->steps[i].name) + strlen(result_of(st, i)) + 4;
    if ((out = malloc(cap)) == NULL) return NULL;
    p = out;
    *p++ = '{';
    for (size_t i = 0; i < st->bp->nsteps; i++) {
        if (!is_sink(st->bp, i)) continue;
        if (p[-1] != '{') *p++ = ',';
        len = (size_t)sprintf(p, "\"%s\":%s", st->bp->steps[i].name, result_of(st, i));
        p += len;
    }
    *p++ = '}';
    *p = '\0';
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

int64_t dc_backoff_ms(const bp_retry_t *r, int failed_attempt)
{
    double ms = (double)r->initial_ms;
    for (int i = 1; i < failed_attempt && ms < (double)r->max_ms; i++) ms *= r->multiplier;
    return ms > (double)r->max_ms ? r->max_ms : (int64_t)ms;
}

/* The wait the failure asked for (cbm_step_fail_after: its error's
 * retry_after_ms), 0 when none; CBM_ENOMEM (negative) when the state's
 * normalised JSON cannot be parsed, which only running out of memory does. */
static int64_t retry_after_ms(const st_step_t *s)
{
    cJSON *e;
    const cJSON *a;
    int64_t ms = 0;
    if (s->error == NULL) return 0;
    if ((e = cJSON_Parse(s->error)) == NULL) return CBM_ENOMEM;
    a = cJSON_GetObjectItemCaseSensitive(e, "retry_after_ms");
    if (cJSON_IsNumber(a) && a->valuedouble > 0 && a->valuedouble < 1e15)
        ms = (int64_t)a->valuedouble;
    cJSON_Delete(e);
    return ms;
}

/* May the step that failed with error (JSON) be tried again? 1 or 0, or
 * CBM_ENOMEM: the state holds normalised JSON, so a parse that fails ran
 * out of memory (which must not read as "not retryable": that would fail
 * the execution). */
static int retry_allowed(const bp_step_t *b, const st_step_t *s)
{
    cJSON *e;
    const cJSON *k, *r;
    bool ok;
    if (s->attempt - s->base >= b->retry.max_attempts || s->error == NULL) return 0;
    if ((e = cJSON_Parse(s->error)) == NULL) return CBM_ENOMEM;
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
    char *out = NULL;
    if (o != NULL && cJSON_AddStringToObject(o, "kind", kind) != NULL &&
        cJSON_AddStringToObject(o, "message", message) != NULL &&
        cJSON_AddBoolToObject(o, "retryable", retryable) != NULL)
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

#define NEXT(type, step)                                       \
    do {                                                       \
        if ((e = next(out, cap, n, (type), (int)(step))) == NULL) return CBM_ENOMEM; \
    } while (0)
#define NEXT_OR(type, step)                                    \
    do {                                                       \
        if ((e = next(out, cap, n, (type), (int)(step))) == NULL) { \
            rc = CBM_ENOMEM;                                   \
            goto done;                                         \
        }                                                      \
    } while (0)
#define DUP(dst, src)                                          \
    do {                                                       \
        if (((dst) = strdup(src)) == NULL) return CBM_ENOMEM;  \
    } while (0)

static int start_step(const st_exec_t *st, size_t i, int64_t now, eng_event_t *out, size_t cap,
                      size_t *n);

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
        case TK_RETRY: {
            int rc;
            if (s->status != SS_BACKOFF) break;
            /* A sub-workflow's next attempt is a new child. */
            if (bp->steps[i].kind == BP_SUBWORKFLOW) {
                if ((rc = start_step(st, i, 0, out, cap, n)) != 0) return rc;
                break;
            }
            NEXT(EV_STEP_SCHEDULED, i);
            e->attempt = s->attempt + 1;
            break;
        }
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
        case TK_CHILD: /* re-armed by the reducer; the runtime looks */
            break;
        }
    }
    return 0;
}

int dc_child_id(const char *parent, const char *step, int attempt, char out[37])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char text[256];
    int len = snprintf(text, sizeof(text), "%s/%s/%d", parent, step, attempt);
    /* EVP_Digest allocates (a context, a fetched method): it fails when
     * memory does. */
    if (!EVP_Digest(text, (size_t)len, md, &mdlen, EVP_sha256(), NULL) || mdlen < 16)
        return CBM_ENOMEM;
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80); /* version 8 */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* variant 10 */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", md[0], md[1],
             md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11], md[12],
             md[13], md[14], md[15]);
    return 0;
}

/* The child's inputs: the step's template filled from its input document. */
static char *child_inputs(const st_exec_t *st, size_t i)
{
    char *doc = dc_step_input(st, i), *out = NULL;
    cJSON *data = doc != NULL ? cJSON_Parse(doc) : NULL, *in = NULL;
    if (data != NULL && match_template(st->bp->steps[i].sub_inputs, data, &in) == 0)
        out = cJSON_PrintUnformatted(in);
    cJSON_Delete(in);
    cJSON_Delete(data);
    free(doc);
    return out;
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
    case BP_SUBWORKFLOW: {
        char id[37];
        NEXT(EV_CHILD_STARTED, i);
        e->attempt = attempt;
        if (dc_child_id(st->id, b->name, attempt, id) != 0) return CBM_ENOMEM;
        DUP(e->name, id);
        DUP(e->blueprint, b->sub_blueprint);
        if (b->sub_version != NULL) DUP(e->version, b->sub_version);
        if ((e->json = child_inputs(st, i)) == NULL) return CBM_ENOMEM;
        return 0;
    }
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

static int decide(const st_exec_t *st, int64_t now_us, eng_event_t *out, size_t cap, size_t *n)
{
    const bp_blueprint_t *bp = st->bp;
    bool all_done = true;
    unsigned char *fin = NULL;
    eng_event_t *e;
    int rc = 0;

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

    /* A failure the retry policy gave up on: routed on its error (which
     * fails the execution when no rule takes it). One at a time, since a
     * rule may re-open other failed steps. */
    for (size_t i = 0; i < bp->nsteps; i++) {
        if (st->steps[i].status != SS_FAILED) continue;
        if ((rc = retry_allowed(&bp->steps[i], &st->steps[i])) < 0) return rc;
        if (rc == 0) return route_failed(st, i, out, cap, n);
    }
    rc = 0;
    for (size_t i = 0; i < bp->nsteps; i++) {
        const st_step_t *s = &st->steps[i];
        int64_t wait_ms, after_ms;
        if (s->status != SS_FAILED) continue;
        if ((after_ms = retry_after_ms(s)) < 0) return (int)after_ms;
        wait_ms = dc_backoff_ms(&bp->steps[i].retry, s->attempt - s->base);
        NEXT(EV_STEP_RETRY_SCHEDULED, i);
        e->attempt = s->attempt + 1;
        e->due_us = now_us + (after_ms > wait_ms ? after_ms : wait_ms) * 1000;
    }
    if (*n > 0) return 0;

    /* Completed steps not yet routed: one routing decision per layer, as
     * it may re-open or skip other steps. */
    if ((fin = calloc(bp->nsteps ? bp->nsteps : 1, 1)) == NULL) return CBM_ENOMEM;
    for (size_t i = 0; i < bp->nsteps; i++) {
        const st_step_t *s = &st->steps[i];
        bool open = s->status == SS_SKIPPED;
        if (s->status == SS_COMPLETED) {
            if ((rc = route_completed(st, i, out, cap, n, &open)) != 0 || *n > 0) goto done;
        }
        fin[i] = open;
        if (!open) all_done = false;
    }
    if (all_done) {
        NEXT_OR(EV_EXECUTION_COMPLETED, -1);
        if ((e->json = execution_result(st)) == NULL) rc = CBM_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < bp->nsteps; i++) {
        if (st->steps[i].status != SS_PENDING || !ready(st, i, fin)) continue;
        if ((rc = start_step(st, i, now_us, out, cap, n)) != 0) goto done;
    }
done:
    free(fin);
    return rc;
}

int dc_decide(const st_exec_t *st, int64_t now_us, eng_event_t *out, size_t cap, size_t *n)
{
    int rc = decide(st, now_us, out, cap, n);

    /* A layer that failed half-way: what it made so far is not returned. */
    if (rc != 0) {
        for (size_t i = 0; i < *n; i++) ev_finish(&out[i]);
        *n = 0;
    }
    return rc;
}

char *dc_step_input(const st_exec_t *st, size_t step)
{
    const bp_step_t *s = &st->bp->steps[step];
    size_t cap = strlen(st->inputs) + 32, len;
    char *out, *p;

    for (size_t d = 0; d < s->ndeps; d++)
        cap += strlen(st->bp->steps[s->deps[d]].name) + strlen(result_of(st, s->deps[d])) + 4;
    if (s->args_json != NULL) cap += strlen(s->args_json) + 8;
    if ((out = malloc(cap)) == NULL) return NULL;
    len = (size_t)sprintf(out, "{\"inputs\":%s,\"deps\":{", st->inputs);
    p = out + len;
    for (size_t d = 0; d < s->ndeps; d++) {
        size_t j = s->deps[d];
        if (d > 0) *p++ = ',';
        p += sprintf(p, "\"%s\":%s", st->bp->steps[j].name, result_of(st, j));
    }
    /* A step without args keeps the input it always had. */
    if (s->args_json != NULL) p += sprintf(p, "},\"args\":%s", s->args_json);
    else *p++ = '}';
    strcpy(p, "}");
    return out;
}
