/*
 * runtime.c - the loop thread: executions in memory, decisions, dispatch.
 * See runtime.h for the threading rules and the order of effects.
 */
#include "engine/runtime.h"

#include <cJSON.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cbm_internal.h"
#include "engine/committer.h"
#include "engine/decider.h"
#include "engine/event.h"
#include "engine/state.h"

/* What a handler produced; filled on a pool thread, read on the loop. */
struct cbm_step_out {
    int set;        /* 0 nothing yet, 1 ok, 2 failed */
    char *result;   /* normalised JSON (ok) */
    char *error;    /* normalised JSON {"kind","message","retryable"} (failed) */
};

typedef struct rt_exec rt_exec_t;

typedef struct rt_work {
    uv_work_t req;
    rt_t *rt;
    rt_exec_t *ex;
    size_t step;
    int attempt;
    char *input;
    const char *handler_name;
    struct cbm_step_out out;
    eng_event_t ev;            /* the event the result becomes */
    struct rt_work *next;      /* pending list while a commit is in flight */
} rt_work_t;

typedef struct rt_call rt_call_t;

struct rt_exec {
    st_exec_t st;
    rt_exec_t *prev, *next;    /* rt->active */
    int committing;            /* a decision of this execution is in flight */
    int running;               /* handlers running */
    int dead;                  /* terminal or dropped: free when idle */
    rt_work_t *pend_head, *pend_tail;
};

typedef struct rt_decision {
    cm_req_t req;
    rt_exec_t *ex;
    rt_call_t *start;          /* start request to answer, if any */
    size_t *sched;             /* steps to dispatch once committed */
    size_t nsched;
    int terminal;
} rt_decision_t;

typedef struct rt_handler {
    char *name;
    cbm_step_fn fn;
    void *arg;
} rt_handler_t;

/* A request from another thread, run on the loop by fn. */
struct rt_call {
    void (*fn)(rt_t *rt, rt_call_t *c);
    rt_call_t *next;
    int done;                  /* guarded by rt->mu */
    int rc;
    uv_cond_t cv;
    /* start */
    const bp_blueprint_t *bp;
    char *const *inputs;
    char (*ids)[37];
    size_t n, remaining;
    /* debug */
    const char *id;
    char *text;
};

struct rt_waiter {
    char id[37];
    int done;
    uv_cond_t cv;
    rt_waiter_t *next;
};

#define WAIT_BUCKETS 256

struct rt {
    uv_loop_t loop;
    uv_async_t inbox_async;
    uv_thread_t thread;
    uv_mutex_t mu;             /* inbox, blueprints, waiters, call->done */
    rt_call_t *inbox_head, *inbox_tail;
    committer_t *cm;
    cm_stats_t cmstats;
    const cbm_clock_t *clock;
    char *url;
    int max_batch;

    rt_handler_t *handlers;
    size_t nhandlers;
    bp_blueprint_t **bps;      /* all versions ever added; latest = last of a name */
    size_t nbps, capbps;
    rt_waiter_t *waiters[WAIT_BUCKETS];

    /* Loop thread only. */
    rt_exec_t *active;
    size_t running_total;
    int stopping;
    int closed;

    int started;
    _Atomic uint64_t steps_run, resumed, nactive;
};

static void decide_and_commit(rt_t *rt, rt_exec_t *ex, eng_event_t *in, size_t nin,
                              rt_call_t *start);

/* ---------------------------------------------------------------- outcomes */

int cbm_step_ok(cbm_step_out_t *out, const char *result_json)
{
    char *norm;
    if (out == NULL || out->set) return CBM_EINVAL;
    norm = json_normalize(result_json != NULL ? result_json : "null");
    if (norm == NULL) {
        cbm_step_fail(out, "bad_result", "step result is not valid JSON", false);
        return CBM_EJSON;
    }
    out->set = 1;
    out->result = norm;
    return 0;
}

int cbm_step_fail(cbm_step_out_t *out, const char *kind, const char *message, bool retryable)
{
    cJSON *o;
    if (out == NULL || out->set) return CBM_EINVAL;
    o = cJSON_CreateObject();
    if (o == NULL) return CBM_ENOMEM;
    cJSON_AddStringToObject(o, "kind", kind != NULL ? kind : "error");
    cJSON_AddStringToObject(o, "message", message != NULL ? message : "");
    cJSON_AddBoolToObject(o, "retryable", retryable);
    out->error = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out->error == NULL) return CBM_ENOMEM;
    out->set = 2;
    return 0;
}

/* ------------------------------------------------------------- blueprints */

void rt_add_blueprint(rt_t *rt, bp_blueprint_t **bpp, int latest)
{
    bp_blueprint_t *bp = *bpp;
    *bpp = NULL;
    uv_mutex_lock(&rt->mu);
    for (size_t i = 0; i < rt->nbps; i++) {
        if (strcmp(rt->bps[i]->name, bp->name) == 0 &&
            strcmp(rt->bps[i]->version, bp->version) == 0) {
            /* Known: make it the latest by moving it to the end. */
            bp_blueprint_t *known = rt->bps[i];
            if (latest) {
                memmove(&rt->bps[i], &rt->bps[i + 1], (rt->nbps - i - 1) * sizeof(*rt->bps));
                rt->bps[rt->nbps - 1] = known;
            }
            uv_mutex_unlock(&rt->mu);
            bp_destroy(bp);
            return;
        }
    }
    if (rt->nbps == rt->capbps) {
        size_t cap = rt->capbps ? rt->capbps * 2 : 16;
        bp_blueprint_t **n = realloc(rt->bps, cap * sizeof(*n));
        if (n == NULL) {
            uv_mutex_unlock(&rt->mu);
            bp_destroy(bp);
            return;
        }
        rt->bps = n;
        rt->capbps = cap;
    }
    if (latest) {
        rt->bps[rt->nbps++] = bp;
    } else {
        /* Searches go from the end, so the front is "oldest". */
        memmove(&rt->bps[1], &rt->bps[0], rt->nbps * sizeof(*rt->bps));
        rt->bps[0] = bp;
        rt->nbps++;
    }
    uv_mutex_unlock(&rt->mu);
}

const bp_blueprint_t *rt_find_blueprint(rt_t *rt, const char *name, const char *version)
{
    const bp_blueprint_t *found = NULL;
    uv_mutex_lock(&rt->mu);
    for (size_t i = rt->nbps; i-- > 0;) {
        if (strcmp(rt->bps[i]->name, name) == 0 &&
            (version == NULL || strcmp(rt->bps[i]->version, version) == 0)) {
            found = rt->bps[i];
            break;
        }
    }
    uv_mutex_unlock(&rt->mu);
    return found;
}

static const rt_handler_t *find_handler(rt_t *rt, const char *name)
{
    for (size_t i = 0; i < rt->nhandlers; i++)
        if (strcmp(rt->handlers[i].name, name) == 0) return &rt->handlers[i];
    return NULL;
}

int rt_check_handlers(rt_t *rt, const bp_blueprint_t *bp, cbm_error_t *err)
{
    for (size_t i = 0; i < bp->nsteps; i++) {
        const bp_step_t *s = &bp->steps[i];
        if (s->kind == BP_TASK && strcmp(s->queue, "local") == 0 &&
            find_handler(rt, s->handler) == NULL)
            return cbm_error_set(err, CBM_EHANDLER,
                                 "blueprint '%s', step '%s': no handler registered as '%s'",
                                 bp->name, s->name, s->handler);
    }
    return 0;
}

int rt_register_handler(rt_t *rt, const char *name, cbm_step_fn fn, void *arg)
{
    rt_handler_t *n;
    if (rt->started) return CBM_ESTATE;
    if (find_handler(rt, name) != NULL) return CBM_EEXIST;
    n = realloc(rt->handlers, (rt->nhandlers + 1) * sizeof(*n));
    if (n == NULL) return CBM_ENOMEM;
    rt->handlers = n;
    n[rt->nhandlers].name = strdup(name);
    if (n[rt->nhandlers].name == NULL) return CBM_ENOMEM;
    n[rt->nhandlers].fn = fn;
    n[rt->nhandlers].arg = arg;
    rt->nhandlers++;
    return 0;
}

/* ---------------------------------------------------------------- waiters */

static unsigned hash_id(const char *id)
{
    unsigned h = 2166136261u;
    while (*id) h = (h ^ (unsigned char)*id++) * 16777619u;
    return h % WAIT_BUCKETS;
}

rt_waiter_t *rt_wait_begin(rt_t *rt, const char *id)
{
    rt_waiter_t *w = calloc(1, sizeof(*w));
    unsigned b;
    if (w == NULL) return NULL;
    snprintf(w->id, sizeof(w->id), "%s", id);
    uv_cond_init(&w->cv);
    b = hash_id(w->id);
    uv_mutex_lock(&rt->mu);
    w->next = rt->waiters[b];
    rt->waiters[b] = w;
    uv_mutex_unlock(&rt->mu);
    return w;
}

int rt_wait_until(rt_t *rt, rt_waiter_t *w, int64_t deadline)
{
    int rc = 0;
    uv_mutex_lock(&rt->mu);
    while (!w->done) {
        if (deadline < 0) {
            uv_cond_wait(&w->cv, &rt->mu);
        } else {
            int64_t left = deadline - clock_mono_us();
            if (left <= 0) {
                rc = CBM_ETIMEDOUT;
                break;
            }
            uv_cond_timedwait(&w->cv, &rt->mu, (uint64_t)left * 1000);
        }
    }
    uv_mutex_unlock(&rt->mu);
    return rc;
}

void rt_wait_end(rt_t *rt, rt_waiter_t *w)
{
    rt_waiter_t **pp;
    if (w == NULL) return;
    uv_mutex_lock(&rt->mu);
    for (pp = &rt->waiters[hash_id(w->id)]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    uv_mutex_unlock(&rt->mu);
    uv_cond_destroy(&w->cv);
    free(w);
}

static void notify_terminal(rt_t *rt, const char *id)
{
    uv_mutex_lock(&rt->mu);
    for (rt_waiter_t *w = rt->waiters[hash_id(id)]; w != NULL; w = w->next) {
        if (strcmp(w->id, id) == 0) {
            w->done = 1;
            uv_cond_signal(&w->cv);
        }
    }
    uv_mutex_unlock(&rt->mu);
}

/* ------------------------------------------------------------- executions */

static rt_exec_t *exec_new(rt_t *rt, const char *id, const bp_blueprint_t *bp)
{
    rt_exec_t *ex = calloc(1, sizeof(*ex));
    if (ex == NULL) return NULL;
    if (st_init(&ex->st, id, bp) != 0) {
        free(ex);
        return NULL;
    }
    ex->next = rt->active;
    if (rt->active != NULL) rt->active->prev = ex;
    rt->active = ex;
    atomic_fetch_add(&rt->nactive, 1);
    return ex;
}

static void work_free(rt_work_t *w)
{
    free(w->input);
    free(w->out.result);
    free(w->out.error);
    ev_finish(&w->ev);
    free(w);
}

static void exec_free(rt_t *rt, rt_exec_t *ex)
{
    if (ex->prev != NULL) ex->prev->next = ex->next;
    else rt->active = ex->next;
    if (ex->next != NULL) ex->next->prev = ex->prev;
    while (ex->pend_head != NULL) {
        rt_work_t *w = ex->pend_head;
        ex->pend_head = w->next;
        work_free(w);
    }
    st_finish(&ex->st);
    free(ex);
    atomic_fetch_sub(&rt->nactive, 1);
}

static void maybe_free(rt_t *rt, rt_exec_t *ex)
{
    if (ex->dead && ex->running == 0 && !ex->committing) exec_free(rt, ex);
}

static void call_complete(rt_t *rt, rt_call_t *c)
{
    uv_mutex_lock(&rt->mu);
    c->done = 1;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&rt->mu);
}

static void close_all(rt_t *rt);

static void maybe_quiesce(rt_t *rt)
{
    if (rt->stopping && !rt->closed && rt->running_total == 0 && cm_idle(rt->cm)) close_all(rt);
}

/* ----------------------------------------------------------------- steps */

static void work_cb(uv_work_t *req)
{
    rt_work_t *w = req->data;
    const rt_handler_t *h = find_handler(w->rt, w->handler_name);
    cbm_step_call_t call = {w->ex->st.id, w->ex->st.bp->steps[w->step].name, w->attempt,
                            w->input};

    if (h == NULL) cbm_step_fail(&w->out, "no_handler", "no handler registered", false);
    else h->fn(&call, &w->out, h->arg);
    if (!w->out.set) cbm_step_fail(&w->out, "no_result", "handler returned no outcome", false);
    atomic_fetch_add(&w->rt->steps_run, 1);
}

static void after_work(uv_work_t *req, int status)
{
    rt_work_t *w = req->data;
    rt_t *rt = w->rt;
    rt_exec_t *ex = w->ex;

    (void)status;
    ex->running--;
    rt->running_total--;
    if (ex->dead) {
        work_free(w);
        maybe_free(rt, ex);
        maybe_quiesce(rt);
        return;
    }
    w->ev.step = (int)w->step;
    w->ev.attempt = w->attempt;
    if (w->out.set == 1) {
        w->ev.type = EV_STEP_COMPLETED;
        w->ev.json = w->out.result;
        w->out.result = NULL;
    } else {
        w->ev.type = EV_STEP_FAILED;
        w->ev.json = w->out.error;
        w->out.error = NULL;
    }
    if (ex->committing) {
        /* Fold it into the next decision, after the one in flight commits. */
        w->next = NULL;
        if (ex->pend_tail != NULL) ex->pend_tail->next = w;
        else ex->pend_head = w;
        ex->pend_tail = w;
        return;
    }
    decide_and_commit(rt, ex, &w->ev, 1, NULL);
    work_free(w);
    maybe_quiesce(rt);
}

static void dispatch(rt_t *rt, rt_exec_t *ex, size_t step)
{
    rt_work_t *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->input = dc_step_input(&ex->st, step)) == NULL) {
        /* Out of memory: drop the execution from memory; it resumes (and
         * re-runs this step) on the next start. */
        cbm_log_error("execution %s: out of memory dispatching a step", ex->st.id);
        free(w);
        ex->dead = 1;
        return;
    }
    w->req.data = w;
    w->rt = rt;
    w->ex = ex;
    w->step = step;
    w->attempt = ex->st.steps[step].attempt;
    w->handler_name = ex->st.bp->steps[step].handler;
    w->ev.step = -1;
    ex->running++;
    rt->running_total++;
    if (uv_queue_work(&rt->loop, &w->req, work_cb, after_work) != 0) {
        ex->running--;
        rt->running_total--;
        work_free(w);
        ex->dead = 1;
    }
}

/* --------------------------------------------------------------- decisions */

static void decision_free(rt_decision_t *d)
{
    for (size_t i = 0; i < d->req.d.nevents; i++) {
        free(d->req.d.events[i].type);
        free(d->req.d.events[i].payload);
    }
    free(d->req.d.events);
    free((char *)d->req.d.inputs);
    free((char *)d->req.d.result);
    free((char *)d->req.d.error);
    free(d->sched);
    free(d);
}

/* Append ev to the decision: encode, apply, record. Takes ev's strings. */
static int add_event(rt_t *rt, rt_exec_t *ex, rt_decision_t *d, eng_event_t *ev)
{
    store_event_t *se = &d->req.d.events[d->req.d.nevents];
    int rc;

    ev->seq = ex->st.seq + 1;
    ev->at_us = clock_now_us(rt->clock);
    memcpy(se->execution_id, ex->st.id, sizeof(se->execution_id));
    se->seq = ev->seq;
    se->recorded_at_us = ev->at_us;
    se->type = strdup(ev_type_name(ev->type));
    se->payload = ev_encode(ev, ex->st.bp);
    if (se->type == NULL || se->payload == NULL) {
        free(se->type);
        free(se->payload);
        return CBM_ENOMEM;
    }
    if ((rc = st_apply(&ex->st, ev)) != 0) {
        free(se->type);
        free(se->payload);
        return rc;
    }
    d->req.d.nevents++;
    if (ev->type == EV_STEP_SCHEDULED) d->sched[d->nsched++] = (size_t)ev->step;
    return 0;
}

/*
 * One decision: the incoming events (a start, step results), then whatever
 * the decider derives from the new state, applied to the live state and
 * committed as one unit. A failure here is a bug or out-of-memory: the
 * execution is dropped from memory (never half-committed) and resumes from
 * the store on the next start.
 */
static void decide_and_commit(rt_t *rt, rt_exec_t *ex, eng_event_t *in, size_t nin,
                              rt_call_t *start)
{
    size_t cap = nin + ex->st.bp->nsteps + 1, ndec = 0;
    eng_event_t *dec = calloc(ex->st.bp->nsteps + 1, sizeof(*dec));
    rt_decision_t *d = calloc(1, sizeof(*d));
    int64_t expected = ex->st.seq;
    int is_new = ex->st.seq == 0;
    int rc = CBM_ENOMEM;

    if (d == NULL || dec == NULL) goto fail;
    d->req.d.events = calloc(cap, sizeof(store_event_t));
    d->sched = calloc(cap, sizeof(size_t));
    if (d->req.d.events == NULL || d->sched == NULL) goto fail;
    d->ex = ex;
    d->start = start;
    d->req.owner = d;

    for (size_t i = 0; i < nin; i++)
        if ((rc = add_event(rt, ex, d, &in[i])) != 0) goto fail;
    if ((rc = dc_decide(&ex->st, dec, ex->st.bp->nsteps + 1, &ndec)) != 0) goto fail;
    for (size_t i = 0; i < ndec; i++)
        if ((rc = add_event(rt, ex, d, &dec[i])) != 0) goto fail;
    for (size_t i = 0; i < ndec; i++) ev_finish(&dec[i]);
    free(dec);
    dec = NULL;

    if (d->req.d.nevents == 0) {
        decision_free(d);
        return;
    }
    memcpy(d->req.d.execution_id, ex->st.id, sizeof(d->req.d.execution_id));
    d->req.d.expected_seq = expected;
    d->req.d.status = st_status_name(ex->st.status);
    d->terminal = st_terminal(&ex->st);
    if (is_new) {
        d->req.d.is_new = true;
        d->req.d.blueprint = ex->st.bp->name;
        d->req.d.version = ex->st.bp->version;
        d->req.d.inputs = cbm_strdup(ex->st.inputs);
    }
    d->req.d.result = cbm_strdup(ex->st.result);
    d->req.d.error = cbm_strdup(ex->st.error);
    ex->committing = 1;
    cm_submit(rt->cm, &d->req);
    return;

fail:
    cbm_log_error("execution %s: decision failed (%s); dropped from memory until restart",
                  ex->st.id, cbm_strerror(rc));
    if (dec != NULL) {
        for (size_t i = 0; i < ndec; i++) ev_finish(&dec[i]);
        free(dec);
    }
    if (d != NULL) decision_free(d);
    ex->dead = 1;
    if (start != NULL) {
        start->rc = rc;
        if (--start->remaining == 0) call_complete(rt, start);
    }
}

static void on_commit(cm_req_t *req, void *ctx)
{
    rt_t *rt = ctx;
    rt_decision_t *d = req->owner;
    rt_exec_t *ex = d->ex;
    int rc = req->d.result_code;

    ex->committing = 0;
    if (rc != 0) {
        /* Memory is ahead of the store: drop it; the store is the truth and
         * the execution resumes from it on the next start. */
        if (rc != CBM_ESHUTDOWN)
            cbm_log_error("execution %s: commit failed: %s", ex->st.id, cbm_strerror(rc));
        ex->dead = 1;
    } else {
        if (!ex->dead && !rt->stopping)
            for (size_t i = 0; i < d->nsched; i++) dispatch(rt, ex, d->sched[i]);
        if (d->terminal) {
            ex->dead = 1;
            notify_terminal(rt, ex->st.id);
        }
    }
    if (d->start != NULL) {
        if (rc != 0) d->start->rc = rc;
        if (--d->start->remaining == 0) call_complete(rt, d->start);
    }
    decision_free(d);

    if (!ex->dead && ex->pend_head != NULL) {
        size_t n = 0;
        eng_event_t *evs;
        rt_work_t *w;
        for (w = ex->pend_head; w != NULL; w = w->next) n++;
        evs = calloc(n, sizeof(*evs));
        if (evs == NULL) {
            ex->dead = 1;
        } else {
            n = 0;
            for (w = ex->pend_head; w != NULL; w = w->next) {
                evs[n++] = w->ev;
                memset(&w->ev, 0, sizeof(w->ev));
            }
            decide_and_commit(rt, ex, evs, n, NULL);
            for (size_t i = 0; i < n; i++) ev_finish(&evs[i]);
            free(evs);
        }
        while (ex->pend_head != NULL) {
            w = ex->pend_head;
            ex->pend_head = w->next;
            work_free(w);
        }
        ex->pend_tail = NULL;
    }
    maybe_free(rt, ex);
    maybe_quiesce(rt);
}

/* ------------------------------------------------------------------ inbox */

static void post(rt_t *rt, rt_call_t *c)
{
    uv_mutex_lock(&rt->mu);
    c->next = NULL;
    if (rt->inbox_tail != NULL) rt->inbox_tail->next = c;
    else rt->inbox_head = c;
    rt->inbox_tail = c;
    uv_mutex_unlock(&rt->mu);
    uv_async_send(&rt->inbox_async);
}

static void post_and_wait(rt_t *rt, rt_call_t *c)
{
    uv_cond_init(&c->cv);
    post(rt, c);
    uv_mutex_lock(&rt->mu);
    while (!c->done) uv_cond_wait(&c->cv, &rt->mu);
    uv_mutex_unlock(&rt->mu);
    uv_cond_destroy(&c->cv);
}

static void on_inbox(uv_async_t *h)
{
    rt_t *rt = h->data;
    rt_call_t *c;
    uv_mutex_lock(&rt->mu);
    c = rt->inbox_head;
    rt->inbox_head = rt->inbox_tail = NULL;
    uv_mutex_unlock(&rt->mu);
    while (c != NULL) {
        rt_call_t *next = c->next;
        c->fn(rt, c);
        c = next;
    }
}

static void do_start(rt_t *rt, rt_call_t *c)
{
    if (rt->stopping) {
        c->rc = CBM_ESHUTDOWN;
        call_complete(rt, c);
        return;
    }
    c->remaining = c->n;
    for (size_t i = 0; i < c->n; i++) {
        rt_exec_t *ex = exec_new(rt, c->ids[i], c->bp);
        eng_event_t ev = {0};
        if (ex == NULL) {
            c->rc = CBM_ENOMEM;
            if (--c->remaining == 0) call_complete(rt, c);
            continue;
        }
        ev.type = EV_EXECUTION_STARTED;
        ev.step = -1;
        ev.blueprint = strdup(c->bp->name);
        ev.version = strdup(c->bp->version);
        ev.json = strdup(c->inputs[i]);
        if (ev.blueprint == NULL || ev.version == NULL || ev.json == NULL) {
            ev_finish(&ev);
            ex->dead = 1;
            maybe_free(rt, ex);
            c->rc = CBM_ENOMEM;
            if (--c->remaining == 0) call_complete(rt, c);
            continue;
        }
        decide_and_commit(rt, ex, &ev, 1, c);
        ev_finish(&ev);
        maybe_free(rt, ex);
    }
}

int rt_start_executions(rt_t *rt, const bp_blueprint_t *bp, char *const *inputs, size_t n,
                        char (*ids)[37], cbm_error_t *err)
{
    rt_call_t c = {0};
    if (n == 0) return 0;
    c.fn = do_start;
    c.bp = bp;
    c.inputs = inputs;
    c.ids = ids;
    c.n = n;
    post_and_wait(rt, &c);
    if (c.rc != 0)
        return cbm_error_set(err, c.rc, "starting %zu execution(s) of '%s': %s", n, bp->name,
                             cbm_strerror(c.rc));
    return 0;
}

static void do_debug(rt_t *rt, rt_call_t *c)
{
    for (rt_exec_t *ex = rt->active; ex != NULL; ex = ex->next) {
        if (strcmp(ex->st.id, c->id) == 0 && !ex->dead) {
            c->text = st_to_json(&ex->st);
            break;
        }
    }
    call_complete(rt, c);
}

char *rt_debug_state_json(rt_t *rt, const char *id)
{
    rt_call_t c = {0};
    c.fn = do_debug;
    c.id = id;
    post_and_wait(rt, &c);
    return c.text;
}

/* The first thing the loop does: carry on with every resumed execution. */
static void do_resume(rt_t *rt, rt_call_t *c)
{
    rt_exec_t *ex = rt->active, *next;
    for (; ex != NULL; ex = next) {
        next = ex->next;
        for (size_t i = 0; i < ex->st.bp->nsteps; i++)
            if (ex->st.steps[i].status == SS_SCHEDULED) dispatch(rt, ex, i);
        /* A decision is atomic, so the rebuilt state normally has nothing
         * left to decide; deciding again is cheap and makes sure of it. */
        if (!ex->dead) decide_and_commit(rt, ex, NULL, 0, NULL);
        maybe_free(rt, ex);
    }
    call_complete(rt, c);
}

/* ------------------------------------------------------------- lifecycle */

int rt_create(rt_t **out, const rt_opts_t *o)
{
    rt_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) return CBM_ENOMEM;
    rt->clock = o->clock != NULL ? o->clock : &clock_system;
    rt->url = cbm_strdup(o->database_url);
    rt->max_batch = o->max_batch > 0 ? o->max_batch : 512;
    uv_mutex_init(&rt->mu);
    if (uv_loop_init(&rt->loop) != 0) {
        uv_mutex_destroy(&rt->mu);
        free(rt->url);
        free(rt);
        return CBM_ENOMEM;
    }
    *out = rt;
    return 0;
}

static int rebuild(rt_t *rt, const store_execution_t *x, const store_event_t *evs, size_t n,
                   cbm_error_t *err)
{
    const bp_blueprint_t *bp = rt_find_blueprint(rt, x->blueprint, x->version);
    rt_exec_t *ex;

    if (bp == NULL)
        return cbm_error_set(err, CBM_ENOTFOUND, "execution %s: blueprint %s version %s missing",
                             x->id, x->blueprint, x->version);
    if ((ex = exec_new(rt, x->id, bp)) == NULL) return CBM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        eng_event_t ev;
        int rc = ev_decode(evs[i].type, evs[i].payload, evs[i].seq, evs[i].recorded_at_us, bp,
                           &ev, err);
        if (rc == 0 && (rc = st_apply(&ex->st, &ev)) != 0)
            cbm_error_set(err, rc, "execution %s: event %lld (%s) does not follow its history",
                          x->id, (long long)evs[i].seq, evs[i].type);
        ev_finish(&ev);
        if (rc != 0) {
            exec_free(rt, ex);
            return rc;
        }
    }
    if (st_terminal(&ex->st)) exec_free(rt, ex); /* projection lagged; nothing to do */
    else atomic_fetch_add(&rt->resumed, 1);
    return 0;
}

static void loop_main(void *arg)
{
    rt_t *rt = arg;
    uv_run(&rt->loop, UV_RUN_DEFAULT);
}

int rt_start(rt_t *rt, store_t **store, const store_unfinished_t *u, cbm_error_t *err)
{
    rt_call_t resume = {0};
    int rc;

    for (size_t i = 0; u != NULL && i < u->nexecs; i++) {
        cbm_error_t e2;
        if (rebuild(rt, &u->execs[i], u->events + u->first[i], u->count[i], &e2) != 0)
            cbm_log_error("not resuming: %s", e2.message); /* left in the store as is */
    }
    rc = cm_create(&rt->cm, &rt->loop, store, rt->url, rt->max_batch, on_commit, rt,
                   &rt->cmstats);
    if (rc != 0) return cbm_error_set(err, rc, "cannot start the committer");
    uv_async_init(&rt->loop, &rt->inbox_async, on_inbox);
    rt->inbox_async.data = rt;
    rt->started = 1;
    if (uv_thread_create(&rt->thread, loop_main, rt) != 0)
        return cbm_error_set(err, CBM_ENOMEM, "cannot start the loop thread");
    resume.fn = do_resume;
    post_and_wait(rt, &resume);
    return 0;
}

static void close_all(rt_t *rt)
{
    rt->closed = 1;
    cm_close(rt->cm);
    uv_close((uv_handle_t *)&rt->inbox_async, NULL);
}

static void do_stop(rt_t *rt, rt_call_t *c)
{
    rt->stopping = 1;
    cm_stop(rt->cm);
    call_complete(rt, c);
    maybe_quiesce(rt);
}

void rt_get_stats(rt_t *rt, cbm_engine_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->commits = atomic_load(&rt->cmstats.commits);
    out->decisions = atomic_load(&rt->cmstats.decisions);
    out->events = atomic_load(&rt->cmstats.events);
    out->store_errors = atomic_load(&rt->cmstats.errors);
    out->steps_run = atomic_load(&rt->steps_run);
    out->resumed = atomic_load(&rt->resumed);
    out->active = atomic_load(&rt->nactive);
}

void rt_destroy(rt_t *rt)
{
    if (rt == NULL) return;
    if (rt->started) {
        rt_call_t stop = {0};
        stop.fn = do_stop;
        post_and_wait(rt, &stop);
        uv_thread_join(&rt->thread);
    }
    while (rt->active != NULL) exec_free(rt, rt->active);
    if (uv_loop_close(&rt->loop) != 0) cbm_log_error("engine loop closed with live handles");
    for (size_t i = 0; i < rt->nbps; i++) bp_destroy(rt->bps[i]);
    free(rt->bps);
    for (size_t i = 0; i < rt->nhandlers; i++) free(rt->handlers[i].name);
    free(rt->handlers);
    uv_mutex_destroy(&rt->mu);
    free(rt->url);
    free(rt);
}
