/*
 * shards.c - the loop's side of shard leases (issue 13; docs/architecture.md,
 * "Shards").
 *
 * The lease manager (engine/lease.c) owns the leases and tells the loop,
 * through rt_shards_set, which shards the engine holds and with which
 * token. The loop keeps that view (rt->tok) and acts on every change:
 *
 *   - a shard lost (or held again with another token): its executions are
 *     dropped from memory at once (a running handler's outcome is thrown
 *     away when it ends; a decision in flight is refused by the fence), and
 *     its timers in the heap are skipped when they come due;
 *   - a shard taken: its running executions are read on the reader thread
 *     (store_load_running under a shard filter) and carried on as a start
 *     carries on resumed ones, the timer window is read again from its
 *     first row (the cursor had passed that shard's rows), and the walk for
 *     orphaned children runs over it.
 *
 * Each execution remembers the token it was loaded (or created) under, and
 * its decisions carry it (store_decision_t.shard_token): a commit whose
 * shard moved on is refused for that decision alone (CBM_EFENCED), and the
 * loop then drops the shard (rt_shard_refused) and pokes the lease manager
 * to read the leases again.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/decision.h"
#include "engine/runtime_internal.h"

int rt_shards_init(rt_t *rt, int nshards)
{
    assert(!rt->started && nshards > 0);
    rt->tok = calloc((size_t)nshards, sizeof(*rt->tok));
    rt->otok = calloc((size_t)nshards, sizeof(*rt->otok));
    if (rt->tok == NULL || rt->otok == NULL) {
        free(rt->tok);
        free((void *)rt->otok);
        rt->tok = NULL;
        rt->otok = NULL;
        return CBM_ENOMEM;
    }
    rt->nshards = nshards;
    return 0;
}

void rt_set_on_fenced(rt_t *rt, void (*fn)(void *arg), void *arg)
{
    assert(!rt->started);
    rt->on_fenced = fn;
    rt->on_fenced_arg = arg;
}

int rt_shard_of(rt_t *rt, const char *id)
{
    return rt->nshards > 0 ? store_shard_of(id, rt->nshards) : -1;
}

int64_t rt_token_of(rt_t *rt, const char *id)
{
    int s = rt_shard_of(rt, id);
    return s >= 0 ? rt->tok[s] : 0;
}

bool rt_held_back(rt_t *rt)
{
    return atomic_load(&rt->held_back) != 0;
}

bool rt_runs(rt_t *rt, const char *id)
{
    int s;
    if (rt->client_only || !rt->started) return false;
    if (rt->nshards == 0) return true;
    s = store_shard_of(id, rt->nshards);
    return s >= 0 && atomic_load_explicit(&rt->otok[s], memory_order_relaxed) > 0;
}

int *rt_owned_list(rt_t *rt, size_t *n, int *oom)
{
    int *l;
    *n = 0;
    if (rt->nshards == 0) return NULL;
    if ((l = malloc((size_t)rt->nshards * sizeof(*l))) == NULL) {
        *oom = 1;
        return NULL;
    }
    for (int s = 0; s < rt->nshards; s++)
        if (rt->tok[s] > 0) l[(*n)++] = s;
    return l;
}

/* Drop from memory every execution of a shard not held with its token
 * (keep, which the caller is still using, is only marked). */
static void drop_lost(rt_t *rt, rt_exec_t *keep)
{
    rt_exec_t *ex = rt->active, *next;
    for (; ex != NULL; ex = next) {
        next = ex->next;
        if (ex->shard < 0 || ex->token == 0 || rt->tok[ex->shard] == ex->token) continue;
        ex->token = 0;
        ex->dead = 1;
        if (ex != keep) rt_maybe_free(rt, ex);
    }
}

/* Handlers still running for executions this engine no longer holds. */
static size_t running_lost(rt_t *rt)
{
    size_t n = 0;
    for (rt_exec_t *ex = rt->active; ex != NULL; ex = ex->next)
        if (ex->shard >= 0 && rt->tok[ex->shard] == 0) n += (size_t)ex->running;
    return n;
}

static void take(rt_t *rt, const int *shards, const int64_t *tokens, size_t n)
{
    rt_take_t *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->shards = malloc(n * sizeof(*t->shards))) == NULL ||
        (t->tokens = malloc(n * sizeof(*t->tokens))) == NULL) {
        /* Out of memory: its running executions come in by the sweep. */
        if (t != NULL) free(t->shards);
        free(t);
        return;
    }
    memcpy(t->shards, shards, n * sizeof(*shards));
    memcpy(t->tokens, tokens, n * sizeof(*tokens));
    t->n = n;
    t->rt = rt;
    t->req.owner = t;
    t->req.job = rt_job_take;
    rt->takes_in_flight++;
    cm_submit(rt->rd, &t->req);
}

typedef struct shards_call {
    rt_call_t c;
    const int64_t *tokens;
    int wait_loaded;
    int resettle;              /* dispatch what was held back */
    size_t running;
} shards_call_t;

static void do_shards(rt_t *rt, rt_call_t *c)
{
    shards_call_t *sc = (shards_call_t *)c;
    int *gained = NULL;
    int64_t *gtok = NULL;
    size_t ng = 0;
    bool lost = false;

    if (!rt->stopping && (gained = malloc((size_t)rt->nshards * sizeof(*gained))) != NULL &&
        (gtok = malloc((size_t)rt->nshards * sizeof(*gtok))) != NULL) {
        for (int s = 0; s < rt->nshards; s++) {
            int64_t t = sc->tokens[s];
            if (t == rt->tok[s]) continue;
            if (rt->tok[s] > 0) lost = true;
            rt->tok[s] = t;
            atomic_store_explicit(&rt->otok[s], t, memory_order_relaxed);
            if (t > 0) {
                gained[ng] = s;
                gtok[ng++] = t;
            }
        }
        if (lost) drop_lost(rt, NULL);
        if (ng > 0) {
            cbm_log_info("engine %s: took %zu shard(s)", rt->engine_id, ng);
            take(rt, gained, gtok, ng);
            rt->win_gen++;
            rt->win_read = 0;
            rt->near_paging = 0;
            rt_refill(rt);
            rt_orphans_walk(rt, NULL);
        }
    }
    free(gained);
    free(gtok);
    if (sc->resettle && !rt->stopping) {
        rt_exec_t *ex = rt->active, *next;
        for (; ex != NULL; ex = next) {
            next = ex->next;
            rt_settle(rt, ex);
            rt_maybe_free(rt, ex);
        }
    }
    sc->running = running_lost(rt);
    if (sc->wait_loaded && rt->takes_in_flight > 0 && rt->take_waiter == NULL)
        rt->take_waiter = c; /* answered by rt_on_taken */
    else
        rt_answer_result(rt, c, 0);
}

void rt_lease_until(rt_t *rt, int64_t mono_us)
{
    atomic_store(&rt->lease_until_us, mono_us);
}

size_t rt_shards_set(rt_t *rt, const int64_t *tokens, int wait_loaded)
{
    shards_call_t sc;
    memset(&sc, 0, sizeof(sc));
    sc.resettle = atomic_exchange(&rt->held_back, 0);
    sc.c.fn = do_shards;
    sc.tokens = tokens;
    sc.wait_loaded = wait_loaded;
    rt_post_and_wait(rt, &sc.c);
    return sc.running;
}

void rt_shard_refused(rt_t *rt, rt_exec_t *ex)
{
    atomic_fetch_add(&rt->shard_refusals, 1);
    if (ex->shard >= 0 && ex->token > 0 && rt->tok[ex->shard] == ex->token) {
        cbm_log_warn("engine %s: shard %d is no longer ours (a commit was refused); dropping it",
                     rt->engine_id, ex->shard);
        rt->tok[ex->shard] = 0;
        atomic_store_explicit(&rt->otok[ex->shard], 0, memory_order_relaxed);
        drop_lost(rt, ex);
        if (rt->on_fenced != NULL) rt->on_fenced(rt->on_fenced_arg);
    }
    ex->token = 0;
    ex->dead = 1;
}

/* On the reader thread: the running executions of the shards taken, each
 * folded (as rt_job_load does). */
void rt_job_take(store_t *s, cm_req_t *r)
{
    rt_take_t *t = (rt_take_t *)r;
    store_unfinished_t u;
    const bp_blueprint_t *bp = NULL;
    int rc = store_set_shards(s, t->shards, t->n);

    if (rc == 0) rc = store_load_running(s, &u, &t->err);
    if (rc == 0 && u.nexecs > 0 &&
        ((t->ids = calloc(u.nexecs, sizeof(*t->ids))) == NULL ||
         (t->got = calloc(u.nexecs, sizeof(*t->got))) == NULL)) {
        store_unfinished_free(&u);
        rc = cbm_error_set(&t->err, CBM_ENOMEM, "out of memory");
    }
    for (size_t j = 0; rc == 0 && j < u.nexecs; j++) {
        const store_execution_t *x = &u.execs[j];
        rt_loaded_t *g = &t->got[j];
        memcpy(t->ids[j], x->id, sizeof(t->ids[j]));
        rt_fold_loaded(s, t->rt, &u, j, &bp, g);
    }
    if (rc == 0) {
        t->nids = u.nexecs;
        store_unfinished_free(&u);
    }
    r->d.result_code = rc;
}

void rt_on_taken(rt_t *rt, rt_take_t *t)
{
    if (t->req.d.result_code != 0)
        cbm_log_error("engine %s: cannot read the running executions of %zu shard(s) taken: %s "
                      "(the sweep brings them in)", rt->engine_id, t->n, t->err.message);
    for (size_t i = 0; i < t->nids; i++) {
        rt_loaded_t *g = &t->got[i];
        int s = rt_shard_of(rt, t->ids[i]);
        int64_t want = 0;
        rt_exec_t *ex;
        for (size_t k = 0; k < t->n; k++)
            if (t->shards[k] == s) want = t->tokens[k];
        /* Still held with the token it was read under, and not already
         * brought in some other way (a start, a timer). */
        if (!rt->stopping && s >= 0 && want > 0 && rt->tok[s] == want &&
            rt_map_get(rt, t->ids[i]) == NULL && (ex = rt_exec_new(rt, t->ids[i])) != NULL) {
            ex->loading = 1;
            atomic_fetch_add(&rt->resumed, 1);
            rt_loaded_one(rt, ex, g, 0, NULL);
            if (rt_map_get(rt, t->ids[i]) == ex && !ex->dead) rt_parent_check(rt, ex);
        }
        if (g->bp != NULL) st_finish(&g->st); /* not taken */
        free(g->why);
    }
    free(t->got);
    free(t->ids);
    free(t->shards);
    free(t->tokens);
    free(t);
    if (--rt->takes_in_flight == 0 && rt->take_waiter != NULL) {
        rt_call_t *c = rt->take_waiter;
        rt->take_waiter = NULL;
        rt_answer_result(rt, c, 0);
    }
}
