/* minieng.c - see minieng.h. */
#include "tests/fault/minieng.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/decision.h"
#include "engine/event.h"
#include "engine/state.h"
#include "tests/harness/faultalloc.h"

#define MAXQ 64
#define MAXTIMERS 64
#define MAXDECISIONS 500

/* An answer the loop owes the execution. */
typedef struct job {
    bool child;           /* a ChildStarted to run; else a task attempt's outcome */
    int step;
    int attempt;
    char *child_id;       /* child: from the ChildStarted payload */
    char *child_bp;
    char *child_inputs;
} job_t;

typedef struct run {
    const me_case_t *c;
    const bp_blueprint_t *bp;
    bool top;
    st_exec_t st;
    int64_t now;
    job_t q[MAXQ];
    size_t qn;
    size_t next_input;
    struct {
        char key[160];
        int64_t due;
    } timers[MAXTIMERS];
    size_t ntimers;
    store_event_t *hist;
    size_t nhist, caphist;
} run_t;

static int run_one(const me_case_t *c, const bp_blueprint_t *bp, const char *id,
                   const char *inputs, const char *parent, const char *pstep, int pattempt,
                   bool top, me_result_t *out);

/* Test-side copies: outside FA, they never fail. */
static char *xstrdup(const char *s)
{
    char *p = s != NULL ? strdup(s) : NULL;
    if (s != NULL && p == NULL) abort();
    return p;
}

static void job_finish(job_t *j)
{
    free(j->child_id);
    free(j->child_bp);
    free(j->child_inputs);
    memset(j, 0, sizeof(*j));
}

static int push_job(run_t *r, job_t j)
{
    if (r->qn == MAXQ) return fa_wrong("more than %d answers pending", MAXQ);
    r->q[r->qn++] = j;
    return 0;
}

static void hist_add(run_t *r, const store_event_t *e)
{
    if (r->nhist == r->caphist) {
        r->caphist = r->caphist ? r->caphist * 2 : 16;
        r->hist = realloc(r->hist, r->caphist * sizeof(*r->hist));
        if (r->hist == NULL) abort();
    }
    r->hist[r->nhist] = *e;
    r->hist[r->nhist].type = xstrdup(e->type);
    r->hist[r->nhist].payload = xstrdup(e->payload);
    r->nhist++;
}

static void timer_clear(run_t *r, const char *key)
{
    for (size_t i = 0; i < r->ntimers; i++)
        if (strcmp(r->timers[i].key, key) == 0) {
            r->timers[i] = r->timers[--r->ntimers];
            return;
        }
}

static int timer_set(run_t *r, const char *key, int64_t due)
{
    timer_clear(r, key);
    if (r->ntimers == MAXTIMERS) return fa_wrong("more than %d timers", MAXTIMERS);
    snprintf(r->timers[r->ntimers].key, sizeof(r->timers[0].key), "%s", key);
    r->timers[r->ntimers++].due = due;
    return 0;
}

/* A ChildStarted payload: the child to run once the decision is "stored". */
static int child_job(run_t *r, const char *payload)
{
    cJSON *p = cJSON_Parse(payload);
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(p, "step");
    const cJSON *att = cJSON_GetObjectItemCaseSensitive(p, "attempt");
    const cJSON *child = cJSON_GetObjectItemCaseSensitive(p, "child");
    const cJSON *bp = cJSON_GetObjectItemCaseSensitive(p, "blueprint");
    char *inputs = p != NULL ? cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(p, "inputs"))
                             : NULL;
    job_t j = {.child = true};
    int rc;

    if (!cJSON_IsString(step) || !cJSON_IsNumber(att) || !cJSON_IsString(child) ||
        !cJSON_IsString(bp) || inputs == NULL) {
        free(inputs);
        cJSON_Delete(p);
        return fa_wrong("ChildStarted payload %s", payload);
    }
    j.step = bp_step_index(r->bp, step->valuestring);
    j.attempt = att->valueint;
    j.child_id = xstrdup(child->valuestring);
    j.child_bp = xstrdup(bp->valuestring);
    j.child_inputs = inputs;
    cJSON_Delete(p);
    if ((rc = push_job(r, j)) != 0) job_finish(&j);
    return rc;
}

/* What a committed decision leaves for the loop: its events in the
 * history, its timers, the answers it asks for. */
static int take_decision(run_t *r, const store_decision_t *d, const size_t *sched, size_t nsched)
{
    int rc = 0;

    for (size_t i = 0; i < d->nevents && rc == 0; i++) {
        hist_add(r, &d->events[i]);
        if (strcmp(d->events[i].type, "ChildStarted") == 0) rc = child_job(r, d->events[i].payload);
    }
    for (size_t i = 0; i < d->ntimers_cleared; i++) timer_clear(r, d->timers_cleared[i]);
    for (size_t i = 0; i < d->ntimers_set && rc == 0; i++)
        rc = timer_set(r, d->timers_set[i].key, d->timers_set[i].due_at_us);
    for (size_t i = 0; i < nsched && rc == 0; i++)
        rc = push_job(r, (job_t){.step = (int)sched[i], .attempt = r->st.steps[sched[i]].attempt});
    for (size_t i = 0; i < d->ntasks && rc == 0; i++)
        rc = push_job(r, (job_t){.step = bp_step_index(r->bp, d->tasks[i].step),
                                 .attempt = d->tasks[i].attempt});
    return rc;
}

static char *error_object(const char *kind, const char *message, bool retryable)
{
    cJSON *o = cJSON_CreateObject();
    char *out;

    cJSON_AddStringToObject(o, "kind", kind);
    cJSON_AddStringToObject(o, "message", message);
    cJSON_AddBoolToObject(o, "retryable", retryable);
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out == NULL) abort();
    return out;
}

/* A task attempt's outcome, as the runtime makes it from a handler's. */
static int outcome_event(run_t *r, const job_t *j, eng_event_t *ev)
{
    const char *name = r->bp->steps[j->step].name;
    scn_outcome_t o = {0};

    memset(ev, 0, sizeof(*ev));
    ev->step = j->step;
    ev->attempt = j->attempt;
    if (scn_outcome(r->c->scn, name, j->attempt, &o) != 0)
        return fa_wrong("script of %s: %s", name, o.message ? o.message : "?");
    if (o.ok) {
        ev->type = EV_STEP_COMPLETED;
        ev->json = json_normalize(o.json);
    } else {
        ev->type = EV_STEP_FAILED;
        ev->json = error_object(o.kind, o.message, o.retryable);
    }
    scn_outcome_finish(&o);
    if (ev->json == NULL) abort();
    return 0;
}

static const bp_blueprint_t *child_blueprint(const run_t *r, const char *name)
{
    for (size_t i = 0; i < r->c->nchildren; i++)
        if (strcmp(r->c->children[i]->name, name) == 0) return r->c->children[i];
    return NULL;
}

/* Run a child to its end: ChildCompleted (or the runtime's StepFailed for
 * an unknown blueprint). */
static int child_event(run_t *r, const job_t *j, eng_event_t *ev)
{
    const bp_blueprint_t *cbp = child_blueprint(r, j->child_bp);
    me_result_t res = {0};
    char msg[256];
    int rc;

    memset(ev, 0, sizeof(*ev));
    ev->step = j->step;
    ev->attempt = j->attempt;
    if (cbp == NULL) {
        snprintf(msg, sizeof(msg), "no blueprint named '%s'", j->child_bp);
        ev->type = EV_STEP_FAILED;
        ev->json = error_object("child_blueprint_unknown", msg, false);
        return 0;
    }
    rc = run_one(r->c, cbp, j->child_id, j->child_inputs, r->st.id, r->bp->steps[j->step].name,
                 j->attempt, false, &res);
    if (rc != 0) return rc;
    ev->type = EV_CHILD_COMPLETED;
    ev->name = xstrdup(j->child_id);
    ev->text = xstrdup(res.status);
    if (strcmp(res.status, "completed") == 0) ev->json = xstrdup(res.result ? res.result : "null");
    else if (strcmp(res.status, "failed") == 0) ev->json = xstrdup(res.error ? res.error : "null");
    else ev->json = xstrdup("{\"reason\":\"\"}");
    me_result_finish(&res);
    return 0;
}

static int outside_event(run_t *r, const me_input_t *in, eng_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = ev_type_from_name(in->type);
    ev->step = in->step != NULL ? bp_step_index(r->bp, in->step) : -1;
    if (ev->type == EV_UNKNOWN || (in->step != NULL && ev->step < 0))
        return fa_wrong("outside input %s %s", in->type, in->step ? in->step : "");
    ev->attempt = in->attempt;
    ev->json = xstrdup(in->json);
    ev->name = xstrdup(in->name);
    ev->text = xstrdup(in->text);
    ev->who = xstrdup(in->who);
    return 0;
}

static bool happened(const run_t *r, const char *type)
{
    if (type == NULL) return true;
    for (size_t i = 0; i < r->nhist; i++)
        if (strcmp(r->hist[i].type, type) == 0) return true;
    return false;
}

/* A script entry {"hang": true}: the attempt never answers (its time-out
 * fires instead). */
static bool hangs(const run_t *r, const job_t *j)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r->c->scn->script,
                                                         r->bp->steps[j->step].name);
    int n = cJSON_GetArraySize(list);
    const cJSON *it = n > 0 ? cJSON_GetArrayItem(list, j->attempt <= n ? j->attempt - 1 : n - 1)
                            : NULL;
    return !j->child && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "hang"));
}

/* The next input: an answer, an outside input, or the earliest timer. */
static int next_input(run_t *r, eng_event_t *ev)
{
    while (r->qn > 0) {
        job_t j = r->q[0];
        int rc;
        memmove(r->q, r->q + 1, (r->qn - 1) * sizeof(*r->q));
        r->qn--;
        if (hangs(r, &j)) {
            job_finish(&j);
            continue;
        }
        rc = j.child ? child_event(r, &j, ev) : outcome_event(r, &j, ev);
        job_finish(&j);
        return rc;
    }
    if (r->top && r->next_input < r->c->ninputs && happened(r, r->c->inputs[r->next_input].after))
        return outside_event(r, &r->c->inputs[r->next_input++], ev);
    {
        size_t best = r->ntimers;
        for (size_t i = 0; i < r->ntimers; i++) {
            if (strncmp(r->timers[i].key, "child:", 6) == 0) continue;
            if (best == r->ntimers || r->timers[i].due < r->timers[best].due) best = i;
        }
        if (best == r->ntimers) return fa_wrong("execution %s is stuck", r->st.id);
        if (r->timers[best].due > r->now) r->now = r->timers[best].due;
        memset(ev, 0, sizeof(*ev));
        ev->type = EV_TIMER_FIRED;
        ev->step = -1;
        ev->due_us = r->timers[best].due;
        ev->name = xstrdup(r->timers[best].key);
    }
    return 0;
}

static int run_one(const me_case_t *c, const bp_blueprint_t *bp, const char *id,
                   const char *inputs, const char *parent, const char *pstep, int pattempt,
                   bool top, me_result_t *out)
{
    run_t *r = calloc(1, sizeof(*r));
    cbm_error_t err = {0};
    eng_event_t ev = {0};
    char *norm = NULL;
    bool inited = false;
    int rc, n;

    if (r == NULL) abort();
    memset(out, 0, sizeof(*out));
    r->c = c;
    r->bp = bp;
    r->top = top;
    r->now = 1700000000000000;
    FA(rc = bp_check_inputs(bp, inputs, &norm, &err));
    if (rc != 0) goto done;
    FA(rc = st_init(&r->st, id, bp));
    if (rc != 0) {
        cJSON_free(norm);
        goto done;
    }
    inited = true;
    ev.type = EV_EXECUTION_STARTED;
    ev.step = -1;
    ev.blueprint = xstrdup(bp->name);
    ev.version = xstrdup(bp->version);
    ev.json = xstrdup(norm);
    cJSON_free(norm);
    if (parent != NULL) {
        ev.name = xstrdup(parent);
        ev.text = xstrdup(pstep);
        ev.attempt = pattempt;
    }
    for (n = 0;; n++) {
        store_decision_t d;
        size_t *sched = NULL, nsched = 0;

        if (n == MAXDECISIONS) {
            rc = fa_wrong("execution %s: %d decisions", id, n);
            break;
        }
        memset(&d, 0, sizeof(d));
        FA(rc = dec_build(&r->st, &ev, 1, r->now, &d, &sched, &nsched));
        ev_finish(&ev);
        if (rc != 0) break;
        rc = take_decision(r, &d, sched, nsched);
        free(sched);
        dec_release(&d);
        if (rc != 0 || st_terminal(&r->st)) break;
        if ((rc = next_input(r, &ev)) != 0) break;
    }
    ev_finish(&ev);
    if (rc == 0) {
        out->status = xstrdup(st_projection_status(&r->st));
        out->result = xstrdup(r->st.result);
        out->error = xstrdup(r->st.error);
        FA(out->state = st_to_json(&r->st));
        if (out->state == NULL) rc = CBM_ENOMEM;
        out->events = r->hist;
        out->nevents = r->nhist;
        r->hist = NULL;
        r->nhist = 0;
    }
done:
    if (inited) st_finish(&r->st);
    for (size_t i = 0; i < r->qn; i++) job_finish(&r->q[i]);
    store_events_free(r->hist, r->nhist);
    free(r);
    if (rc != 0) me_result_finish(out);
    return rc;
}

int me_run(const me_case_t *c, const bp_blueprint_t *bp, const char *inputs, me_result_t *out)
{
    return run_one(c, bp, "00000000-0000-4000-8000-000000000001", inputs, NULL, NULL, 0, true,
                   out);
}

void me_result_finish(me_result_t *r)
{
    free(r->status);
    free(r->result);
    free(r->error);
    store_events_free(r->events, r->nevents);
    free(r->state);
    memset(r, 0, sizeof(*r));
}
