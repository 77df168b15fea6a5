/*
 * wake.c - how executions come back: loads from the store (batched, on the
 * reader thread) and the timers that call them (the heap, prefetch, the
 * periodic refill from cbm_timers). See docs/architecture.md, "Time, people
 * and hibernation".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/decision.h"
#include "engine/runtime_internal.h"

/* ------------------------------------------------------------------ loads */

/* The blueprint of x: this engine's copy, or the store's, parsed. */
const bp_blueprint_t *rt_load_blueprint(store_t *s, rt_t *rt, const store_execution_t *x,
                                        cbm_error_t *err)
{
    const bp_blueprint_t *bp = rt_find_blueprint(rt, x->blueprint, x->version);
    char *v = NULL, *json = NULL;
    bp_blueprint_t *parsed = NULL;

    if (bp != NULL) return bp;
    if (store_get_blueprint(s, x->blueprint, x->version, &v, &json, err) == 0 &&
        bp_parse_json(json, strlen(json), &parsed, err) == 0) {
        rt_add_blueprint(rt, &parsed, 0);
        bp = rt_find_blueprint(rt, x->blueprint, x->version);
    }
    free(v);
    free(json);
    return bp;
}

/*
 * On the reader thread: the executions' projections and histories (two
 * queries for the batch), the blueprint versions this engine has not seen,
 * and each state folded from its snapshot and events. Folding here (it is
 * pure: the blueprint is immutable, the state new) keeps the loop free to
 * fire timers while a batch is decoded; the loop only takes the states.
 */
/* Reader thread: fold execution j of u (its events and snapshot) into g,
 * with its blueprint (*bp caches the last one: executions come in runs of
 * one blueprint). g->rc and g->why say why not. */
void rt_fold_loaded(store_t *s, rt_t *rt, const store_unfinished_t *u, size_t j,
                    const bp_blueprint_t **bp, rt_loaded_t *g)
{
    const store_execution_t *x = &u->execs[j];
    cbm_error_t err = {0};

    if (*bp == NULL || strcmp((*bp)->name, x->blueprint) != 0 ||
        strcmp((*bp)->version, x->version) != 0)
        *bp = rt_load_blueprint(s, rt, x, &err);
    if (*bp == NULL) {
        char why[200];
        snprintf(why, sizeof(why), "blueprint %.64s %.64s missing", x->blueprint, x->version);
        g->rc = CBM_ENOTFOUND;
        g->why = cbm_strdup(why);
        return;
    }
    g->rc = dec_fold(&g->st, x->id, *bp, x->snapshot, u->events + u->first[j], u->count[j], &err);
    if (g->rc != 0) {
        st_finish(&g->st);
        g->why = cbm_strdup(err.message);
    } else {
        g->bp = *bp;
    }
}

void rt_job_load(store_t *s, cm_req_t *r)
{
    rt_load_t *l = (rt_load_t *)r;
    store_unfinished_t u;
    const bp_blueprint_t *bp = NULL;
    size_t j = 0;
    int rc = store_load_executions(s, l->idp, l->n, &u, &l->err);

    if (rc == 0 && (l->got = calloc(l->n, sizeof(*l->got))) == NULL) {
        store_unfinished_free(&u);
        rc = cbm_error_set(&l->err, CBM_ENOMEM, "out of memory");
    }
    /* Both are in id order (UUID text order is their byte order): one walk
     * pairs them. */
    for (size_t i = 0; rc == 0 && i < l->n; i++) {
        rt_loaded_t *g = &l->got[i];

        while (j < u.nexecs && strcmp(u.execs[j].id, l->ids[i]) < 0) j++;
        if (j == u.nexecs || strcmp(u.execs[j].id, l->ids[i]) != 0) {
            g->rc = CBM_ENOTFOUND;
            continue;
        }
        rt_fold_loaded(s, l->rt, &u, j, &bp, g);
    }
    if (rc == 0) store_unfinished_free(&u);
    r->d.result_code = rc;
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Send what waits in the load queue as one batch, unless one is in flight:
 * while it is, wake-ups gather for the next, so many loads cost a few
 * queries. The ids go in sorted, the order the store answers in, so the
 * answer is paired with them in one walk. */
static void rt_flush_loads(rt_t *rt)
{
    rt_load_t *l;
    size_t n = 0;
    if (rt->loads_in_flight > 0 || rt->loadq == NULL || rt->hold_loads) return;
    if ((l = calloc(1, sizeof(*l))) == NULL) return;
    l->ids = calloc(LOAD_BATCH, sizeof(*l->ids));
    l->idp = calloc(LOAD_BATCH, sizeof(*l->idp));
    if (l->ids == NULL || l->idp == NULL) {
        free(l->ids);
        free(l->idp);
        free(l);
        return;
    }
    while (rt->loadq != NULL && n < LOAD_BATCH) {
        rt_exec_t *ex = rt->loadq;
        rt->loadq = ex->lnext;
        ex->lnext = NULL;
        memcpy(l->ids[n], ex->id, sizeof(l->ids[n]));
        l->idp[n] = l->ids[n];
        n++;
    }
    qsort(l->ids, n, sizeof(*l->ids), id_cmp);
    l->n = n;
    l->rt = rt;
    l->req.owner = l;
    l->req.job = rt_job_load;
    rt->loads_in_flight++;
    cm_submit(rt->rd, &l->req);
}

void rt_start_load(rt_t *rt, rt_exec_t *ex)
{
    if (ex->bp != NULL) st_finish(&ex->st);
    ex->bp = NULL;
    ex->loading = 1;
    ex->lnext = rt->loadq;
    rt->loadq = ex;
    rt_flush_loads(rt);
}

int rt_fold(rt_exec_t *ex, const bp_blueprint_t *bp, const char *snapshot,
                const store_event_t *evs, size_t n, cbm_error_t *err)
{
    int rc;
    if (ex->bp != NULL) st_finish(&ex->st);
    ex->bp = NULL;
    if (ex->dispatched == NULL &&
        (ex->dispatched = calloc(bp->nsteps ? bp->nsteps : 1, sizeof(*ex->dispatched))) == NULL)
        return CBM_ENOMEM;
    rc = dec_fold(&ex->st, ex->id, bp, snapshot, evs, n, err);
    if (rc != 0) {
        st_finish(&ex->st);
        return rc;
    }
    ex->bp = bp;
    return 0;
}

/* One execution of a load batch: g its folded state, or NULL when the
 * batch could not be read (rc and err say why). */
void rt_loaded_one(rt_t *rt, rt_exec_t *ex, rt_loaded_t *g, int rc, const char *why)
{
    ex->loading = 0;
    if (ex->dead) {
        /* Dropped while it loaded (its shard was lost): the state is not
         * taken (the caller frees it); results that waited are answered. */
        rt_results_resume(rt, ex);
        rt_maybe_free(rt, ex);
        return;
    }
    if (ex->bp != NULL) st_finish(&ex->st);
    ex->bp = NULL;
    if (g != NULL && (rc = g->rc) != 0) why = g->why;
    if (rc == 0 && ex->dispatched == NULL &&
        (ex->dispatched = calloc(g->bp->nsteps ? g->bp->nsteps : 1, sizeof(*ex->dispatched))) == NULL)
        rc = CBM_ENOMEM;
    if (rc == 0) {
        ex->st = g->st; /* taken */
        ex->bp = g->bp;
        g->bp = NULL;
        atomic_fetch_add(&rt->woken, 1);
        if (st_terminal(&ex->st)) {
            /* Ended by a decision made elsewhere (an approval, a cancel from
             * outside): its parent and children learn it now, not at the
             * parent's next child timer. Repeats are dropped there. */
            ex->dead = 1;
            rt_child_ended(rt, ex, 0);
        } else {
            /* A committed state has nothing left to decide until an input
             * comes; one loaded only to be ready for its timer (prefetched,
             * nothing pending) just settles. Any other load decides once
             * more, as a resumed execution does. */
            /* Results that waited for this load go into this decision;
             * otherwise a state with nothing to do would hibernate again
             * before they are heard. */
            rt_results_resume(rt, ex);
            rt_process(rt, ex, ex->pins == 0 || ex->npend > 0);
        }
    } else {
        /* Unknown or unreadable: drop it from memory. Its timers stay in the
         * store and fire again on a later rt_refill, so a store outage delays a
         * wake-up and loses none. */
        if (rc != CBM_ENOTFOUND || why != NULL)
            cbm_log_warn("execution %s: cannot load: %s", ex->id,
                         why != NULL ? why : cbm_strerror(rc));
        ex->dead = 1;
    }
    /* Results that waited for this load: decided now (a dead execution
     * answers them as ended or gone). */
    rt_results_resume(rt, ex);
    rt_maybe_free(rt, ex);
}

void rt_on_loaded(rt_t *rt, rt_load_t *l)
{
    int rc = l->req.d.result_code;

    rt->loads_in_flight--;
    for (size_t i = 0; i < l->n; i++) {
        rt_exec_t *ex = rt_map_get(rt, l->ids[i]);
        rt_loaded_t *g = rc == 0 ? &l->got[i] : NULL;
        if (ex != NULL && ex->loading) rt_loaded_one(rt, ex, g, rc, rc != 0 ? l->err.message : NULL);
        if (g != NULL) {
            if (g->bp != NULL) st_finish(&g->st); /* not taken */
            free(g->why);
        }
    }
    free(l->got);
    free(l->ids);
    free(l->idp);
    free(l);
    rt_flush_loads(rt);
}

/* ----------------------------------------------------------------- timers */

static void fire(rt_t *rt, const sched_entry_t *e)
{
    rt_exec_t *ex = rt_map_get(rt, e->id);
    eng_event_t ev = {0};

    if (ex != NULL && ex->dead) return; /* finished or dropped meanwhile */
    if (ex == NULL && rt->nshards > 0 && rt_token_of(rt, e->id) == 0) return; /* not ours */
    atomic_fetch_add(&rt->timers_fired, 1);
    cbm_hist_observe(&rt->lateness, cbm_lateness_bounds_us, cbm_lateness_nbounds,
                     clock_now_us(rt->clock) - e->due_us);
    ev.type = EV_TIMER_FIRED;
    ev.step = -1;
    ev.due_us = e->due_us;
    if ((ev.name = strdup(e->key)) == NULL) return;
    if (ex == NULL) {
        if ((ex = rt_exec_new(rt, e->id)) == NULL) {
            ev_finish(&ev);
            return;
        }
        rt_pend_push(ex, &ev);
        rt_start_load(rt, ex);
        return;
    }
    rt_pend_push(ex, &ev);
    if (!ex->committing && !ex->loading) rt_process(rt, ex, 0);
}

/*
 * The fire timer: first every timer whose time has come fires (the late
 * ones first, in due order), then a slice of those due within PREFETCH_US
 * is prefetched: their executions are loaded now and kept in memory
 * (pinned), so that each is decided the moment its timer comes due. The
 * prefetch goes a slice at a time (the timer is re-armed at once while
 * more are due soon), so a burst of thousands of timers entering the
 * prefetch window never holds the loop for long, and the loads of a slice
 * go out as one batch.
 */
static void on_fire(uv_timer_t *t)
{
    rt_t *rt = t->data;
    int64_t now = clock_now_us(rt->clock);
    const sched_entry_t *top;
    sched_entry_t e;
    size_t n = 0;

    if (rt->stopping) return;
    while ((top = sched_peek(rt->ready)) != NULL && top->due_us <= now) {
        rt_exec_t *ex;
        if (sched_pop(rt->ready, &e) != 0) break;
        if ((ex = rt_map_get(rt, e.id)) != NULL && ex->pins > 0) ex->pins--;
        fire(rt, &e);
        free(e.key);
        if (ex != NULL && rt_map_get(rt, e.id) == ex) {
            rt_settle(rt, ex);
            rt_maybe_free(rt, ex);
        }
    }
    rt->hold_loads = 1;
    while (n++ < PREFETCH_SLICE && (top = sched_peek(rt->sched)) != NULL &&
           top->due_us - PREFETCH_US <= now) {
        rt_exec_t *ex;
        if (sched_pop(rt->sched, &e) != 0) break;
        ex = rt_map_get(rt, e.id);
        if (ex == NULL && rt->nshards > 0 && rt_token_of(rt, e.id) == 0) {
            free(e.key); /* a shard this engine no longer holds */
            continue;
        }
        if (ex == NULL && (ex = rt_exec_new(rt, e.id)) != NULL) rt_start_load(rt, ex);
        if (ex != NULL) ex->pins++;
        sched_push(rt->ready, e.id, e.key, e.due_us);
        free(e.key);
    }
    rt->hold_loads = 0;
    rt_flush_loads(rt);
    rt_arm_fire(rt);
}

void rt_arm_fire(rt_t *rt)
{
    const sched_entry_t *top = sched_peek(rt->sched), *rd = sched_peek(rt->ready);
    int64_t at, delay;
    if (rt->stopping || rt->closed) return;
    if (top == NULL && rd == NULL) {
        uv_timer_stop(&rt->fire_timer);
        return;
    }
    at = top != NULL ? top->due_us - PREFETCH_US : INT64_MAX;
    if (rd != NULL && rd->due_us < at) at = rd->due_us;
    delay = (at - clock_now_us(rt->clock) + 999) / 1000;
    uv_timer_start(&rt->fire_timer, on_fire, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* Copy a row into a cursor (its key owned by the cursor). */
static int cursor_set(store_timer_t *c, const store_timer_t *row)
{
    char *key = NULL;
    if (row != NULL && row->key != NULL && (key = strdup(row->key)) == NULL) return CBM_ENOMEM;
    free(c->key);
    memset(c, 0, sizeof(*c));
    if (row != NULL) {
        memcpy(c->execution_id, row->execution_id, sizeof(c->execution_id));
        c->due_at_us = row->due_at_us;
    }
    c->key = key;
    return 0;
}

void rt_timers_finish(rt_t *rt)
{
    cursor_set(&rt->win, NULL);
    cursor_set(&rt->near, NULL);
    free(rt->gone);
    rt->gone = NULL;
    rt->ngone = rt->capgone = 0;
}

/* A refill in flight may have read this execution's rows before its last
 * decision committed: remember it until the refill is back. */
void rt_note_gone(rt_t *rt, const char *id)
{
    if (!rt->refilling) return;
    if (rt->ngone == rt->capgone) {
        size_t cap = rt->capgone ? rt->capgone * 2 : 256;
        char (*g)[37] = realloc(rt->gone, cap * sizeof(*g));
        if (g == NULL) return; /* a stale row then costs a load, no more */
        rt->gone = g;
        rt->capgone = cap;
    }
    snprintf(rt->gone[rt->ngone++], 37, "%s", id);
}

void rt_job_refill(store_t *s, cm_req_t *r)
{
    rt_refill_t *f = (rt_refill_t *)r;
    int rc = store_set_shards(s, f->shards, f->nshards);

    if (rc == 0 && f->near_us > INT64_MIN)
        rc = store_timers_page(s, f->near_from ? &f->near_after : NULL, f->near_us, NEAR_LIMIT,
                               &f->near, &f->nnear, NULL);
    if (rc == 0)
        rc = store_timers_page(s, f->win_from ? &f->win_after : NULL, f->until_us, REFILL_LIMIT,
                               &f->timers, &f->n, NULL);
    r->d.result_code = rc;
    if (rc == 0 && f->sweep &&
        store_stranded(s, SWEEP_AGE_US, SWEEP_LIMIT, &f->stranded, &f->nstranded, NULL) != 0) {
        f->stranded = NULL;
        f->nstranded = 0;
    }
}

/*
 * A row of cbm_timers read back: into the heap, unless this engine knows
 * better. Held already (in the heap, or prefetched): nothing. Its
 * execution in memory with a state: only if that state still has the timer
 * at that time ("wake" is no state timer: always), since a row whose
 * TimerFired is decided and not yet committed is still in the store, and
 * firing it again would only be refused. Freed while the refill was in
 * flight: its last decision may have committed after the row was read (a
 * decision that set a timer pushed it already). Not in memory, or still
 * loading: into the heap; if it no longer holds, the decision after the
 * load drops it.
 */
static void note_timer(rt_t *rt, const store_timer_t *t)
{
    const rt_exec_t *ex;
    if (sched_contains(rt->ready, t->execution_id, t->key, t->due_at_us) ||
        sched_contains(rt->sched, t->execution_id, t->key, t->due_at_us))
        return;
    ex = rt_map_get(rt, t->execution_id);
    if (ex == NULL && rt->nshards > 0 && rt_token_of(rt, t->execution_id) == 0) return;
    if (ex == NULL && rt->ngone > 0 &&
        bsearch(t->execution_id, rt->gone, rt->ngone, sizeof(*rt->gone), id_cmp) != NULL)
        return;
    if (ex != NULL && !ex->loading && ex->bp != NULL && strcmp(t->key, "wake") != 0) {
        const st_timer_t *held = st_timer_find(&ex->st, t->key);
        if (held == NULL || held->due_us != t->due_at_us) return;
    }
    sched_push(rt->sched, t->execution_id, t->key, t->due_at_us);
}

static void refill_free(rt_refill_t *f)
{
    free(f->near_after.key);
    free(f->win_after.key);
    free(f->stranded);
    free(f->shards);
    store_timers_free(f->near, f->nnear);
    store_timers_free(f->timers, f->n);
    free(f);
}

void rt_on_refilled(rt_t *rt, rt_refill_t *f)
{
    int again = 0;

    if (f->req.d.result_code == 0) {
        if (rt->ngone > 1) qsort(rt->gone, rt->ngone, sizeof(*rt->gone), id_cmp);
        for (size_t i = 0; i < f->nnear; i++) note_timer(rt, &f->near[i]);
        for (size_t i = 0; i < f->n; i++) note_timer(rt, &f->timers[i]);
        /* The near query starts over each time unless it filled a page:
         * then the next one goes on after it (no hurry: what it finds was
         * mostly held already). */
        if (f->near_us > INT64_MIN) {
            rt->near_paging = f->nnear == NEAR_LIMIT &&
                              cursor_set(&rt->near, &f->near[f->nnear - 1]) == 0;
        }
        /* The window goes on after its last row while pages come back
         * full (a start with a backlog: page after page at once), else
         * every row due up to until_us has been read. */
        if (f->gen != rt->win_gen) {
            /* Shards were taken while it was in flight: their rows may lie
             * behind this cursor. Read the window again from its start. */
            rt->win_read = 0;
            rt->near_paging = 0;
            again = 1;
        } else if (f->n == REFILL_LIMIT) {
            again = cursor_set(&rt->win, &f->timers[f->n - 1]) == 0;
            rt->win_read = 1;
        } else {
            store_timer_t upto = {{0}, NULL, NULL, f->until_us};
            cursor_set(&rt->win, &upto);
            rt->win_read = 1;
        }
        rt_arm_fire(rt);
    }
    rt->refilling = 0;
    rt->ngone = 0;
    /* Unfinished, not in memory, nothing to wake them: load them, and the
     * load carries on with whatever they were doing. */
    for (size_t i = 0; i < f->nstranded && !rt->stopping; i++) {
        rt_exec_t *ex;
        if (rt_map_get(rt, f->stranded[i]) != NULL) continue;
        cbm_log_warn("execution %s: unfinished with nothing scheduled; loading it",
                     f->stranded[i]);
        atomic_fetch_add(&rt->swept, 1);
        if ((ex = rt_exec_new(rt, f->stranded[i])) != NULL) rt_start_load(rt, ex);
    }
    refill_free(f);
    if (again) rt_refill(rt);
}

/*
 * Read the store's timers into the heap, on the reader thread: the next
 * page of the window (WINDOW_US ahead), after the cursor where the last one
 * ended, so a row is read once as time brings it into the window; and the
 * near query, what is due within NEAR_US again, for rows that other
 * processes (an approval, a signal, a "wake" row) wrote behind the cursor,
 * and rows whose load failed. The first refill of a start reads the window
 * from its first row: overdue timers fire at once, in due order.
 */
void rt_refill(rt_t *rt)
{
    rt_refill_t *f;
    int64_t now;
    if (rt->refilling || rt->stopping) return;
    if ((f = calloc(1, sizeof(*f))) == NULL) return;
    now = clock_now_us(rt->clock);
    f->rt = rt;
    f->until_us = now + WINDOW_US;
    f->near_us = rt->win_read ? now + NEAR_US : INT64_MIN;
    f->win_from = rt->win_read;
    f->near_from = rt->near_paging;
    if ((f->win_from && cursor_set(&f->win_after, &rt->win) != 0) ||
        (f->near_from && cursor_set(&f->near_after, &rt->near) != 0)) {
        refill_free(f);
        return;
    }
    f->sweep = !rt->client_only && ++rt->refills % SWEEP_EVERY == 0;
    f->gen = rt->win_gen;
    {
        int oom = 0;
        f->shards = rt_owned_list(rt, &f->nshards, &oom);
        if (oom) {
            refill_free(f);
            return;
        }
    }
    f->req.owner = f;
    f->req.job = rt_job_refill;
    rt->refilling = 1;
    cm_submit(rt->rd, &f->req);
}

void rt_on_refill_timer(uv_timer_t *t)
{
    rt_refill(t->data);
}

/* ---------------------------------------------------- wake-ups by NOTIFY */

static void do_wake(rt_t *rt, rt_call_t *c)
{
    sched_entry_t e;
    rt_exec_t *ex;

    memset(&e, 0, sizeof(e));
    memcpy(e.id, c->id, sizeof(e.id));
    e.key = (char *)"wake";
    e.due_us = clock_now_us(rt->clock);
    if (!rt->stopping) {
        /* As if its "wake" row had come due: TimerFired(wake), whose
         * decision clears the row (a refill that reads it meanwhile only
         * repeats a wake-up). */
        fire(rt, &e);
        if ((ex = rt_map_get(rt, c->id)) != NULL) rt_maybe_free(rt, ex);
    }
    free(c);
}

void rt_wake(rt_t *rt, const char *id)
{
    rt_call_t *c;
    if (!rt->started || rt->client_only || !rt_runs(rt, id) || (c = calloc(1, sizeof(*c))) == NULL)
        return;
    c->fn = do_wake;
    snprintf(c->id, sizeof(c->id), "%s", id);
    cbm_mailbox_post(&rt->inbox, &c->mail);
}
