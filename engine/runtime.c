/*
 * runtime.c - the loop thread: executions in memory, decisions, dispatch,
 * timers, hibernation. See runtime.h for the threading rules and the order
 * of effects.
 *
 * An execution is in memory while something is running or about to happen
 * to it. Once a committed decision leaves it only waiting (a sleep, an
 * approval, a signal, a back-off) it is evicted; a timer firing, a wake-up
 * row written by an outside decision, or a refresh from this process loads it
 * back from the store (a job on the committer thread) and the pending inputs
 * are applied to the loaded state.
 */
#include "engine/runtime.h"

#include <assert.h>
#include <cJSON.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cbm_internal.h"
#include "engine/committer.h"
#include "engine/decider.h"
#include "engine/decision.h"
#include "engine/event.h"
#include "engine/state.h"
#include "scheduler/sched.h"
#include "engine/runtime_internal.h"

/* ------------------------------------------------------------- executions */

rt_exec_t *rt_map_get(rt_t *rt, const char *id)
{
    rt_exec_t *ex;
    if (rt->mapsize == 0) return NULL;
    for (ex = rt->map[rt_hash_id(id) % rt->mapsize]; ex != NULL; ex = ex->hnext)
        if (strcmp(ex->id, id) == 0) return ex;
    return NULL;
}

static int map_put(rt_t *rt, rt_exec_t *ex)
{
    if (rt->nmap >= rt->mapsize) {
        size_t ns = rt->mapsize ? rt->mapsize * 2 : 1024;
        rt_exec_t **nm = calloc(ns, sizeof(*nm));
        if (nm == NULL) return CBM_ENOMEM;
        for (size_t i = 0; i < rt->mapsize; i++) {
            rt_exec_t *e = rt->map[i];
            while (e != NULL) {
                rt_exec_t *next = e->hnext;
                unsigned b = rt_hash_id(e->id) % ns;
                e->hnext = nm[b];
                nm[b] = e;
                e = next;
            }
        }
        free(rt->map);
        rt->map = nm;
        rt->mapsize = ns;
    }
    {
        unsigned b = rt_hash_id(ex->id) % rt->mapsize;
        ex->hnext = rt->map[b];
        rt->map[b] = ex;
        rt->nmap++;
    }
    return 0;
}

static void map_del(rt_t *rt, rt_exec_t *ex)
{
    rt_exec_t **pp;
    if (rt->mapsize == 0) return;
    for (pp = &rt->map[rt_hash_id(ex->id) % rt->mapsize]; *pp != NULL; pp = &(*pp)->hnext) {
        if (*pp == ex) {
            *pp = ex->hnext;
            rt->nmap--;
            return;
        }
    }
}

/* A new in-memory execution, without state yet (see exec_set_bp). */
rt_exec_t *rt_exec_new(rt_t *rt, const char *id)
{
    rt_exec_t *ex = calloc(1, sizeof(*ex));
    if (ex == NULL) return NULL;
    snprintf(ex->id, sizeof(ex->id), "%s", id);
    ex->shard = rt_shard_of(rt, id);
    ex->token = rt_token_of(rt, id);
    if (map_put(rt, ex) != 0) {
        free(ex);
        return NULL;
    }
    ex->next = rt->active;
    if (rt->active != NULL) rt->active->prev = ex;
    rt->active = ex;
    atomic_fetch_add(&rt->nactive, 1);
    return ex;
}

/* Give the execution a fresh, empty state of blueprint bp. */
int rt_exec_set_bp(rt_exec_t *ex, const bp_blueprint_t *bp)
{
    if (ex->bp != NULL) st_finish(&ex->st);
    ex->bp = NULL;
    if (st_init(&ex->st, ex->id, bp) != 0) return CBM_ENOMEM;
    if (ex->dispatched == NULL) {
        ex->dispatched = calloc(bp->nsteps ? bp->nsteps : 1, sizeof(*ex->dispatched));
        if (ex->dispatched == NULL) {
            st_finish(&ex->st);
            return CBM_ENOMEM;
        }
    }
    ex->bp = bp;
    return 0;
}

static void pend_clear(rt_t *rt, rt_exec_t *ex)
{
    for (size_t i = 0; i < ex->npend; i++) {
        /* A remote result that will not be decided here: its sender tries
         * again (and finds the execution loaded, or finished). */
        if (ex->pend[i].origin != NULL) rt_answer_result(rt, ex->pend[i].origin, CBM_EUNAVAIL);
        ev_finish(&ex->pend[i]);
    }
    ex->npend = 0;
}

/* Queue an input for the next decision; takes ev's contents. */
int rt_pend_push(rt_exec_t *ex, eng_event_t *ev)
{
    /* The same timer twice (a refill raced its commit) is one input; so is
     * one child's end heard twice (from its engine and from the parent's
     * own look at it): the second would no longer apply once the first
     * did, and both are judged against the state before either. */
    if (ev->type == EV_TIMER_FIRED || ev->type == EV_CHILD_COMPLETED) {
        for (size_t i = 0; i < ex->npend; i++) {
            if (ex->pend[i].type == ev->type && ex->pend[i].name != NULL && ev->name != NULL &&
                strcmp(ex->pend[i].name, ev->name) == 0) {
                ev_finish(ev);
                return 0;
            }
        }
    }
    if (ex->npend == ex->cappend) {
        size_t cap = ex->cappend ? ex->cappend * 2 : 4;
        eng_event_t *n = realloc(ex->pend, cap * sizeof(*n));
        if (n == NULL) {
            ev_finish(ev);
            return CBM_ENOMEM;
        }
        ex->pend = n;
        ex->cappend = cap;
    }
    ex->pend[ex->npend++] = *ev;
    memset(ev, 0, sizeof(*ev));
    return 0;
}

static void exec_free(rt_t *rt, rt_exec_t *ex)
{
    rt_note_gone(rt, ex->id);
    /* Results waiting for a load that will not come (a stop): their senders
     * try again. */
    while (ex->rwait != NULL) {
        rt_call_t *c = ex->rwait;
        ex->rwait = c->rnext;
        rt_answer_result(rt, c, CBM_EUNAVAIL);
    }
    if (ex->prev != NULL) ex->prev->next = ex->next;
    else rt->active = ex->next;
    if (ex->next != NULL) ex->next->prev = ex->prev;
    map_del(rt, ex);
    pend_clear(rt, ex);
    free(ex->pend);
    if (ex->bp != NULL) st_finish(&ex->st);
    free(ex->dispatched);
    free(ex);
    atomic_fetch_sub(&rt->nactive, 1);
}

void rt_answer_start(rt_t *rt, rt_call_t *c, int rc)
{
    if (c == NULL) return;
    if (rc != 0) c->rc = rc;
    if (--c->remaining == 0) rt_call_complete(rt, c);
}

void rt_maybe_free(rt_t *rt, rt_exec_t *ex)
{
    if (ex->dead && ex->running == 0 && !ex->committing && !ex->loading) {
        rt_answer_start(rt, ex->start, CBM_ESHUTDOWN);
        ex->start = NULL;
        exec_free(rt, ex);
    }
}

void rt_call_complete(rt_t *rt, rt_call_t *c)
{
    /* Read before done is set: a waited call lives on its caller's stack
     * and is gone as soon as the caller sees done. */
    int waited = c->waited;
    if (!waited && c->on_done != NULL) {
        c->on_done(c->done_arg, c->rc, c->accepted, c->accepted ? "" : c->reason);
        rt_call_free(c);
        return;
    }
    uv_mutex_lock(&rt->mu);
    c->done = 1;
    if (waited) uv_cond_signal(&c->cv);
    uv_mutex_unlock(&rt->mu);
    if (!waited) free(c);
}

static void close_all(rt_t *rt);

void rt_maybe_quiesce(rt_t *rt)
{
    if (rt->stopping && !rt->closed && rt->running_total == 0 && cm_idle(rt->cm) &&
        cm_idle(rt->rd))
        close_all(rt);
}

/* ----------------------------------------------------------------- steps */

static void work_cb(uv_work_t *req)
{
    rt_work_t *w = req->data;
    const rt_handler_t *h = rt_find_handler(w->rt, w->handler_name);
    cbm_step_call_t call = {w->exec_id, w->step_name, w->attempt, w->input};

    /* Queued before, started now: if the leases went stale meanwhile (the
     * process was paused), another engine may run this step; do not. */
    if (w->rt->nshards > 0 && clock_mono_us() > atomic_load(&w->rt->lease_until_us)) {
        w->skipped = 1;
        return;
    }
    if (h == NULL) cbm_step_fail(&w->out, "no_handler", "no handler registered", false);
    else h->fn(&call, &w->out, h->arg);
    if (w->out.kind == CBM_OUT_NONE) cbm_step_fail(&w->out, "no_result", "handler returned no outcome", false);
    atomic_fetch_add(&w->rt->steps_run, 1);
}

static void work_free(rt_work_t *w)
{
    free(w->input);
    free(w->out.result);
    free(w->out.error);
    free(w->out.type);
    free(w);
}

/* The event a handler's outcome becomes (takes out's strings). */
void rt_outcome_event(rt_t *rt, int step, int attempt, struct cbm_step_out *out,
                          eng_event_t *ev)
{
    int64_t now = clock_now_us(rt->clock);
    memset(ev, 0, sizeof(*ev));
    ev->step = step;
    ev->attempt = attempt;
    switch (out->kind) {
    case CBM_OUT_OK:
        ev->type = EV_STEP_COMPLETED;
        ev->json = out->result;
        out->result = NULL;
        break;
    case CBM_OUT_SLEEP:
        ev->type = EV_SLEEP_STARTED;
        ev->json = out->result;
        ev->due_us = now + out->ms * 1000;
        out->result = NULL;
        break;
    case CBM_OUT_APPROVAL:
        ev->type = EV_APPROVAL_REQUESTED;
        ev->json = out->result;
        ev->name = out->type;
        ev->timeout_ms = out->ms;
        ev->due_us = out->ms > 0 ? now + out->ms * 1000 : 0;
        out->result = NULL;
        out->type = NULL;
        break;
    default:
        ev->type = EV_STEP_FAILED;
        ev->json = out->error;
        out->error = NULL;
        break;
    }
}

static void after_work(uv_work_t *req, int status)
{
    rt_work_t *w = req->data;
    rt_t *rt = w->rt;
    rt_exec_t *ex = w->ex;
    eng_event_t ev;

    (void)status;
    ex->running--;
    rt->running_total--;
    /* dispatched[step] keeps the attempt: its outcome may wait for the commit
     * in flight, and the step must not be dispatched again meanwhile. */
    if (ex->dead) {
        work_free(w);
        rt_maybe_free(rt, ex);
        rt_maybe_quiesce(rt);
        return;
    }
    if (w->skipped) {
        /* Dispatched again once the leases are renewed (rt_shards_set). */
        ex->dispatched[w->step] = 0;
        atomic_store(&rt->held_back, 1);
        work_free(w);
        rt_maybe_free(rt, ex);
        rt_maybe_quiesce(rt);
        return;
    }
    rt_outcome_event(rt, (int)w->step, w->attempt, &w->out, &ev);
    work_free(w);
    if (rt_pend_push(ex, &ev) != 0) ex->dead = 1;
    if (!ex->committing && !ex->loading) rt_process(rt, ex, 0);
    rt_maybe_free(rt, ex);
    rt_maybe_quiesce(rt);
}

void rt_dispatch(rt_t *rt, rt_exec_t *ex, size_t step)
{
    rt_work_t *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->input = dc_step_input(&ex->st, step)) == NULL) {
        /* Out of memory: drop the execution from memory; it resumes (and
         * re-runs this step) on the next start. */
        cbm_log_error("execution %s: out of memory dispatching a step", ex->id);
        free(w);
        ex->dead = 1;
        return;
    }
    w->req.data = w;
    w->rt = rt;
    w->ex = ex;
    w->step = step;
    w->attempt = ex->st.steps[step].attempt;
    memcpy(w->exec_id, ex->id, sizeof(w->exec_id));
    w->step_name = ex->bp->steps[step].name;
    w->handler_name = ex->bp->steps[step].handler;
    ex->dispatched[step] = w->attempt;
    ex->running++;
    rt->running_total++;
    if (uv_queue_work(&rt->loop, &w->req, work_cb, after_work) != 0) {
        ex->running--;
        rt->running_total--;
        ex->dispatched[step] = 0;
        work_free(w);
        ex->dead = 1;
    }
}

/* ------------------------------------------------------------------ inbox */

static void post(rt_t *rt, rt_call_t *c)
{
    cbm_mailbox_post(&rt->inbox, &c->mail);
}

void rt_post_and_wait(rt_t *rt, rt_call_t *c)
{
    c->waited = 1;
    uv_cond_init(&c->cv);
    post(rt, c);
    uv_mutex_lock(&rt->mu);
    while (!c->done) uv_cond_wait(&c->cv, &rt->mu);
    uv_mutex_unlock(&rt->mu);
    uv_cond_destroy(&c->cv);
}

static void on_inbox(cbm_mailbox_t *mb, cbm_mail_t *m)
{
    rt_t *rt = mb->data;
    while (m != NULL) {
        cbm_mail_t *next = m->next;
        rt_call_t *c = CBM_MAIL_OWNER(m, rt_call_t, mail);
        c->fn(rt, c);
        m = next;
    }
    rt_maybe_quiesce(rt);
}

static void do_start(rt_t *rt, rt_call_t *c)
{
    if (rt->stopping) {
        c->rc = CBM_ESHUTDOWN;
        rt_call_complete(rt, c);
        return;
    }
    c->remaining = c->n;
    for (size_t i = 0; i < c->n; i++) {
        rt_exec_t *ex = rt_exec_new(rt, c->ids[i]);
        eng_event_t ev = {0};
        if (ex == NULL || rt_exec_set_bp(ex, c->bp) != 0) {
            if (ex != NULL) {
                ex->dead = 1;
                rt_maybe_free(rt, ex);
            }
            rt_answer_start(rt, c, CBM_ENOMEM);
            continue;
        }
        ev.type = EV_EXECUTION_STARTED;
        ev.step = -1;
        ev.blueprint = strdup(c->bp->name);
        ev.version = strdup(c->bp->version);
        ev.json = strdup(c->inputs[i]);
        ex->start = c;
        ex->start_i = i;
        if (c->codes != NULL) c->codes[i] = 0;
        if (ev.blueprint == NULL || ev.version == NULL || ev.json == NULL ||
            rt_pend_push(ex, &ev) != 0) {
            ev_finish(&ev);
            ex->dead = 1;
        } else {
            rt_process(rt, ex, 0);
        }
        rt_maybe_free(rt, ex);
    }
}

int rt_start_executions(rt_t *rt, const bp_blueprint_t *bp, char *const *inputs,
                        const char *const *keys, size_t n, char (*ids)[37], int *codes,
                        cbm_error_t *err)
{
    rt_call_t c = {0};
    if (n == 0) return 0;
    c.fn = do_start;
    c.bp = bp;
    c.inputs = inputs;
    c.keys = keys;
    c.codes = codes;
    c.ids = ids;
    c.n = n;
    rt_post_and_wait(rt, &c);
    if (c.rc != 0)
        return cbm_error_set(err, c.rc, "starting %zu execution(s) of '%s': %s", n, bp->name,
                             cbm_strerror(c.rc));
    return 0;
}

/* ----------------------------------------------------------- remote tasks */

static void do_debug(rt_t *rt, rt_call_t *c)
{
    rt_exec_t *ex = rt_map_get(rt, c->id);
    if (ex != NULL && !ex->dead && !ex->loading && ex->bp != NULL) c->text = st_to_json(&ex->st);
    rt_call_complete(rt, c);
}

char *rt_debug_state_json(rt_t *rt, const char *id)
{
    rt_call_t c = {0};
    c.fn = do_debug;
    snprintf(c.id, sizeof(c.id), "%s", id);
    rt_post_and_wait(rt, &c);
    return c.text;
}

/* Something outside the loop committed a decision for this execution: read
 * it again now (if held) or load it (if hibernated), so its new work starts
 * without waiting for the wake-up timer. */
static void do_refresh(rt_t *rt, rt_call_t *c)
{
    rt_exec_t *ex = rt_map_get(rt, c->id);
    if (!rt->stopping) {
        if (ex == NULL && rt->nshards > 0 && rt_token_of(rt, c->id) == 0) {
            /* Another engine runs it; the decision's "wake" row calls it. */
        } else if (ex == NULL) {
            if ((ex = rt_exec_new(rt, c->id)) != NULL) rt_start_load(rt, ex);
        } else if (!ex->dead) {
            if (ex->committing || ex->loading) ex->reload = 1;
            else rt_start_load(rt, ex);
        }
        if (ex != NULL) rt_maybe_free(rt, ex);
    }
    rt_call_complete(rt, c);
}

void rt_refresh(rt_t *rt, const char *id)
{
    rt_call_t *c;
    if (!rt->started || rt->client_only || (c = calloc(1, sizeof(*c))) == NULL) return;
    c->fn = do_refresh;
    snprintf(c->id, sizeof(c->id), "%s", id);
    post(rt, c); /* not waited for: freed when done */
}

/* The first thing the loop does: carry on with every resumed execution. */
static void do_resume(rt_t *rt, rt_call_t *c)
{
    rt_exec_t *ex = rt->active, *next;
    for (; ex != NULL; ex = next) {
        next = ex->next;
        rt_parent_check(rt, ex);
        rt_process(rt, ex, 1);
        rt_maybe_free(rt, ex);
    }
    if (!rt->client_only) {
        rt_refill(rt);
        /* $CEREBELUM_REFILL_MS: a test's knob, to show that wake-ups do
         * not wait for the refill (test_shards). */
        const char *env = getenv("CEREBELUM_REFILL_MS");
        uint64_t every = env != NULL && atoll(env) > 0 ? (uint64_t)atoll(env) : REFILL_MS;
        uv_timer_start(&rt->refill_timer, rt_on_refill_timer, every, every);
        rt_orphans_walk(rt, NULL);
    }
    rt_call_complete(rt, c);
}

/* ------------------------------------------------------------- lifecycle */

int rt_create(rt_t **out, const rt_opts_t *o)
{
    rt_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) return CBM_ENOMEM;
    rt->clock = o->clock != NULL ? o->clock : &clock_system;
    rt->url = cbm_strdup(o->database_url);
    rt->max_batch = o->max_batch > 0 ? o->max_batch : 512;
    rt->client_only = o->client_only;
    rt->sched = sched_create();
    rt->ready = sched_create();
    uv_mutex_init(&rt->mu);
    if (rt->sched == NULL || rt->ready == NULL || uv_loop_init(&rt->loop) != 0) {
        sched_destroy(rt->sched);
        sched_destroy(rt->ready);
        uv_mutex_destroy(&rt->mu);
        free(rt->url);
        free(rt);
        return CBM_ENOMEM;
    }
    if (rt_register_builtins(rt) != 0) {
        rt_destroy(rt);
        return CBM_ENOMEM;
    }
    *out = rt;
    return 0;
}

void rt_set_clock(rt_t *rt, const cbm_clock_t *clock)
{
    assert(!rt->started);
    rt->clock = clock != NULL ? clock : &clock_system;
}

void rt_set_life(rt_t *rt, store_t **life, const char *engine_id, int64_t lock_key)
{
    rt->life = *life;
    *life = NULL;
    snprintf(rt->engine_id, sizeof(rt->engine_id), "%s", engine_id);
    rt->lock_key = lock_key;
}

static void loop_main(void *arg)
{
    rt_t *rt = arg;
    uv_run(&rt->loop, UV_RUN_DEFAULT);
}

int rt_start(rt_t *rt, store_t **store, store_t **reads, const store_unfinished_t *u,
             cbm_error_t *err)
{
    rt_call_t resume = {0};
    int rc;

    for (size_t i = 0; u != NULL && i < u->nexecs; i++) {
        const store_execution_t *x = &u->execs[i];
        const bp_blueprint_t *bp = rt_find_blueprint(rt, x->blueprint, x->version);
        rt_exec_t *ex;
        cbm_error_t e2 = {0};
        if (bp == NULL) {
            cbm_log_error("not resuming %s: blueprint %s version %s missing", x->id, x->blueprint,
                          x->version);
            continue;
        }
        if ((ex = rt_exec_new(rt, x->id)) == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
        if (rt_fold(ex, bp, x->snapshot, u->events + u->first[i], u->count[i], &e2) != 0) {
            cbm_log_error("not resuming: %s", e2.message); /* left in the store as is */
            exec_free(rt, ex);
            continue;
        }
        if (st_terminal(&ex->st)) exec_free(rt, ex); /* projection lagged; nothing to do */
        else atomic_fetch_add(&rt->resumed, 1);
    }
    rc = cm_create(&rt->cm, &rt->loop, store, rt->url, rt->max_batch, rt_on_commit, rt,
                   &rt->cmstats);
    if (rc != 0) return cbm_error_set(err, rc, "cannot start the committer");
    if (rt->life != NULL) cm_set_life(rt->cm, &rt->life, rt->engine_id, rt->lock_key);
    /* Reads get their own connection and thread, so a large batch of
     * wake-up loads never holds up commits, nor commits the loads. */
    rc = cm_create(&rt->rd, &rt->loop, reads, rt->url, rt->max_batch, rt_on_commit, rt,
                   &rt->rdstats);
    if (rc != 0) return cbm_error_set(err, rc, "cannot start the reader");
    if (cbm_mailbox_init(&rt->inbox, &rt->loop, on_inbox, rt) != 0)
        return cbm_error_set(err, CBM_ENOMEM, "cannot create the engine's inbox");
    uv_timer_init(&rt->loop, &rt->fire_timer);
    rt->fire_timer.data = rt;
    uv_timer_init(&rt->loop, &rt->refill_timer);
    rt->refill_timer.data = rt;
    rt->started = 1;
    if (uv_thread_create(&rt->thread, loop_main, rt) != 0)
        return cbm_error_set(err, CBM_ENOMEM, "cannot start the loop thread");
    resume.fn = do_resume;
    rt_post_and_wait(rt, &resume);
    return 0;
}

static void close_all(rt_t *rt)
{
    rt->closed = 1;
    cm_close(rt->cm);
    cm_close(rt->rd);
    cbm_mailbox_close(&rt->inbox, NULL);
    uv_close((uv_handle_t *)&rt->fire_timer, NULL);
    uv_close((uv_handle_t *)&rt->refill_timer, NULL);
}

static void do_stop(rt_t *rt, rt_call_t *c)
{
    rt->stopping = 1;
    uv_timer_stop(&rt->fire_timer);
    uv_timer_stop(&rt->refill_timer);
    cm_stop(rt->cm);
    cm_stop(rt->rd);
    rt_call_complete(rt, c);
    rt_maybe_quiesce(rt);
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
    out->hibernated = atomic_load(&rt->hibernated);
    out->woken = atomic_load(&rt->woken);
    out->timers_fired = atomic_load(&rt->timers_fired);
    out->shard_refusals = atomic_load(&rt->shard_refusals);
    for (int i = 0; i < rt->nshards; i++)
        if (atomic_load_explicit(&rt->otok[i], memory_order_relaxed) > 0) out->shards_held++;
}

void rt_get_metrics(rt_t *rt, cbm_metrics_snap_t *out)
{
    memset(out, 0, sizeof(*out));
    cbm_hist_snap(&rt->cmstats.m.batch, &out->batch);
    cbm_hist_snap(&rt->cmstats.m.duration_us, &out->commit_us);
    cbm_hist_snap(&rt->lateness, &out->lateness_us);
    for (size_t i = 0; i < CBM_EV_TYPES; i++)
        out->events[i] = atomic_load_explicit(&rt->cmstats.m.events[i], memory_order_relaxed);
    out->timers_fired = atomic_load(&rt->timers_fired);
    out->llm_calls = atomic_load(&rt->cmstats.m.llm_calls);
    out->llm_prompt_tokens = atomic_load(&rt->cmstats.m.llm_prompt_tokens);
    out->llm_completion_tokens = atomic_load(&rt->cmstats.m.llm_completion_tokens);
    out->llm_cached_tokens = atomic_load(&rt->cmstats.m.llm_cached_tokens);
}

/* A ping: the call (freed by call_complete, as it is not waited) and a box
 * the loop and the caller share, freed by whichever lets go last. */
typedef struct ping_box {
    uv_mutex_t mu;
    uv_cond_t cv;
    int done;
    int refs;
} ping_box_t;

typedef struct ping_call {
    rt_call_t c; /* first: call_complete frees it */
    ping_box_t *box;
} ping_call_t;

static void ping_release(ping_box_t *b)
{
    int left;
    uv_mutex_lock(&b->mu);
    left = --b->refs;
    uv_mutex_unlock(&b->mu);
    if (left > 0) return;
    uv_cond_destroy(&b->cv);
    uv_mutex_destroy(&b->mu);
    free(b);
}

static void do_ping(rt_t *rt, rt_call_t *c)
{
    ping_box_t *b = ((ping_call_t *)c)->box;
    uv_mutex_lock(&b->mu);
    b->done = 1;
    uv_cond_signal(&b->cv);
    uv_mutex_unlock(&b->mu);
    ping_release(b);
    rt_call_complete(rt, c);
}

int rt_ping(rt_t *rt, int timeout_ms)
{
    ping_call_t *p;
    ping_box_t *b;
    uint64_t deadline;
    int rc = 0;

    if (!rt->started) return CBM_ESTATE;
    if ((p = calloc(1, sizeof(*p))) == NULL || (b = calloc(1, sizeof(*b))) == NULL) {
        free(p);
        return CBM_ENOMEM;
    }
    uv_mutex_init(&b->mu);
    uv_cond_init(&b->cv);
    b->refs = 2;
    p->box = b;
    p->c.fn = do_ping;
    post(rt, &p->c);
    deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
    uv_mutex_lock(&b->mu);
    while (!b->done) {
        uint64_t now = uv_hrtime();
        if (now >= deadline || uv_cond_timedwait(&b->cv, &b->mu, deadline - now) != 0) {
            if (!b->done) rc = CBM_ETIMEDOUT;
            break;
        }
    }
    uv_mutex_unlock(&b->mu);
    ping_release(b);
    return rc;
}

void rt_destroy(rt_t *rt)
{
    if (rt == NULL) return;
    if (rt->started) {
        rt_call_t stop = {0};
        stop.fn = do_stop;
        rt_post_and_wait(rt, &stop);
        uv_thread_join(&rt->thread);
    }
    while (rt->active != NULL) exec_free(rt, rt->active);
    if (rt->started) {
        /* Calls posted after the stop (refreshes) were never run. */
        cbm_mail_t *m = cbm_mailbox_take(&rt->inbox);
        while (m != NULL) {
            rt_call_t *c = CBM_MAIL_OWNER(m, rt_call_t, mail);
            m = m->next;
            if (c->fn == do_ping) ping_release(((ping_call_t *)c)->box);
            if (c->on_done != NULL) {
                c->on_done(c->done_arg, CBM_ESHUTDOWN, 0, "");
                rt_call_free(c);
            } else if (!c->waited) {
                free(c);
            }
        }
    }
    if (uv_loop_close(&rt->loop) != 0) cbm_log_error("engine loop closed with live handles");
    if (rt->started) cbm_mailbox_finish(&rt->inbox);
    sched_destroy(rt->sched);
    sched_destroy(rt->ready);
    rt_timers_finish(rt);
    free(rt->map);
    for (size_t i = 0; i < rt->nbps; i++) bp_destroy(rt->bps[i]);
    free(rt->bps);
    for (size_t i = 0; i < rt->nhandlers; i++) free(rt->handlers[i].name);
    free(rt->handlers);
    store_close(rt->life); /* rt_start never ran */
    free(rt->tok);
    free((void *)rt->otok);
    uv_mutex_destroy(&rt->mu);
    free(rt->url);
    free(rt);
}
