/* lease.c - see lease.h. */
#include "engine/lease.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cbm_internal.h"
#include "scheduler/clock.h"

struct lm {
    rt_t *rt;
    store_t *s;
    char engine[37];
    int nshards;
    int64_t lease_ms;
    int64_t *tok;              /* the view last given to the loop */
    int posted;                /* tok was given at least once */
    uv_thread_t thread;
    int thread_started;
    uv_mutex_t mu;
    uv_cond_t cv;
    int stop, poke;            /* guarded by mu */
    int fenced;                /* our engine row is gone: hold nothing */
    /* The wake-up listener (lm_listen). */
    store_t *ls;
    uv_thread_t lthread;
    int lthread_started;
    _Atomic int lstop;
};

int lm_create(lm_t **out, rt_t *rt, store_t **s, const char *engine, int nshards,
              int64_t lease_ms)
{
    lm_t *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->tok = calloc((size_t)nshards, sizeof(*m->tok))) == NULL) {
        free(m);
        return CBM_ENOMEM;
    }
    m->rt = rt;
    m->s = *s;
    *s = NULL;
    snprintf(m->engine, sizeof(m->engine), "%s", engine);
    m->nshards = nshards;
    m->lease_ms = lease_ms > 0 ? lease_ms : 5000;
    uv_mutex_init(&m->mu);
    uv_cond_init(&m->cv);
    *out = m;
    return 0;
}

/* Give the loop the view in held[0..n) (sorted by shard); returns the
 * handlers still running for shards not in it. */
static size_t post(lm_t *m, const store_lease_t *held, size_t n, const int *skip, size_t nskip)
{
    int64_t *view = calloc((size_t)m->nshards, sizeof(*view));
    size_t running;
    if (view == NULL) return 0;
    for (size_t i = 0; i < n; i++) {
        bool skipped = false;
        for (size_t k = 0; k < nskip && !skipped; k++) skipped = skip[k] == held[i].shard;
        if (!skipped && held[i].shard >= 0 && held[i].shard < m->nshards)
            view[held[i].shard] = held[i].token;
    }
    if (m->posted && memcmp(view, m->tok, (size_t)m->nshards * sizeof(*view)) == 0 && nskip == 0 &&
        !rt_held_back(m->rt)) {
        free(view);
        return 0; /* nothing changed */
    }
    running = rt_shards_set(m->rt, view, !m->posted);
    memcpy(m->tok, view, (size_t)m->nshards * sizeof(*view));
    m->posted = 1;
    free(view);
    return running;
}

/* Hand shards over: drop them from the loop, wait (at most half a lease)
 * for their running handlers to end, then release them. */
static void hand_over(lm_t *m, const store_lease_t *held, size_t n, const int *give, size_t ng)
{
    int64_t until = clock_mono_us() + m->lease_ms * 500;
    cbm_error_t err;
    size_t running = post(m, held, n, give, ng);

    while (running > 0 && clock_mono_us() < until) {
        uv_sleep(10);
        running = rt_shards_set(m->rt, m->tok, 0);
    }
    if (store_leases_release(m->s, m->engine, give, ng, &err) != 0)
        cbm_log_warn("engine %s: releasing %zu shard(s): %s", m->engine, ng, err.message);
    else
        cbm_log_info("engine %s: handed %zu shard(s) over", m->engine, ng);
}

int lm_round(lm_t *m, cbm_error_t *err)
{
    store_lease_t *held = NULL;
    size_t nheld = 0, fenced = 0;
    int live = 0, target, rc;
    int64_t t0;

    if (m->fenced) return CBM_EFENCED;
    if (!store_ok(m->s) && (rc = store_reconnect(m->s, err)) != 0) return rc;
    /* Engines whose sessions are gone (a kill -9): fenced now, their
     * leases freed, so their shards move at once, not when they expire. */
    if ((rc = store_engine_fence_dead(m->s, m->engine, 0, &fenced, err)) != 0) return rc;
    t0 = clock_mono_us();
    rc = store_leases_round(m->s, m->engine, m->lease_ms, -1, &held, &nheld, &live, err);
    /* Renewed from a moment after t0: surely ours until t0 + lease, less a
     * tenth for the clocks' drift and the time to act on it. */
    if (rc == 0) rt_lease_until(m->rt, t0 + m->lease_ms * 900);
    if (rc == CBM_EFENCED) {
        cbm_log_error("engine %s: %s; it runs nothing from now on", m->engine, err->message);
        m->fenced = 1;
        post(m, NULL, 0, NULL, 0);
        return rc;
    }
    if (rc != 0) return rc;
    if (live < 1) live = 1;
    target = (m->nshards + live - 1) / live;
    if ((int)nheld < target) {
        free(held);
        rc = store_leases_round(m->s, m->engine, m->lease_ms, target - (int)nheld, &held, &nheld,
                                &live, err);
        if (rc != 0) return rc;
        post(m, held, nheld, NULL, 0);
    } else if ((int)nheld > target) {
        size_t ng = nheld - (size_t)target;
        int *give = malloc(ng * sizeof(*give));
        if (give != NULL) {
            for (size_t i = 0; i < ng; i++) give[i] = held[nheld - ng + i].shard;
            hand_over(m, held, nheld, give, ng);
            free(give);
        } else {
            post(m, held, nheld, NULL, 0);
        }
    } else {
        post(m, held, nheld, NULL, 0);
    }
    free(held);
    return 0;
}

static void thread_main(void *arg)
{
    lm_t *m = arg;
    uint64_t every = (uint64_t)(m->lease_ms / 3 > 0 ? m->lease_ms / 3 : 1);

    uv_mutex_lock(&m->mu);
    while (!m->stop) {
        if (!m->poke) uv_cond_timedwait(&m->cv, &m->mu, every * 1000000ULL);
        if (m->stop) break;
        m->poke = 0;
        uv_mutex_unlock(&m->mu);
        {
            cbm_error_t err = {0};
            int rc = lm_round(m, &err);
            if (rc != 0 && rc != CBM_EFENCED)
                cbm_log_warn("engine %s: lease round: %s", m->engine, err.message);
        }
        uv_mutex_lock(&m->mu);
    }
    uv_mutex_unlock(&m->mu);
}

int lm_start(lm_t *m)
{
    if (uv_thread_create(&m->thread, thread_main, m) != 0) return CBM_ENOMEM;
    m->thread_started = 1;
    return 0;
}

void lm_poke(lm_t *m)
{
    uv_mutex_lock(&m->mu);
    m->poke = 1;
    uv_cond_signal(&m->cv);
    uv_mutex_unlock(&m->mu);
}

void lm_stop(lm_t *m)
{
    if (m != NULL && m->lthread_started) {
        atomic_store(&m->lstop, 1);
        uv_thread_join(&m->lthread);
        m->lthread_started = 0;
    }
    if (m == NULL || !m->thread_started) return;
    uv_mutex_lock(&m->mu);
    m->stop = 1;
    uv_cond_signal(&m->cv);
    uv_mutex_unlock(&m->mu);
    uv_thread_join(&m->thread);
    m->thread_started = 0;
}

/* ------------------------------------------------ wake-ups by NOTIFY */

static void on_wake(const char *id, void *arg)
{
    lm_t *m = arg;
    rt_wake(m->rt, id);
}

/* LISTEN cbm_wake; hand each id to the loop. Waits a fifth of a second at
 * a time, so a stop is seen soon; a broken connection is opened again. */
static void listen_main(void *arg)
{
    lm_t *m = arg;
    int listening = 0;

    while (!atomic_load(&m->lstop)) {
        cbm_error_t err = {0};
        if (!listening) {
            if ((!store_ok(m->ls) && store_reconnect(m->ls, &err) != 0) ||
                store_wake_listen(m->ls, &err) != 0) {
                uv_sleep(200);
                continue;
            }
            listening = 1;
        }
        if (store_wake_wait(m->ls, 200, on_wake, m, &err) != 0) {
            cbm_log_warn("engine %s: wake-up listener: %s (the refill still finds its rows)",
                         m->engine, err.message);
            listening = 0;
        }
    }
}

int lm_listen(lm_t *m, store_t **s)
{
    m->ls = *s;
    *s = NULL;
    if (uv_thread_create(&m->lthread, listen_main, m) != 0) return CBM_ENOMEM;
    m->lthread_started = 1;
    return 0;
}

void lm_release_all(lm_t *m)
{
    cbm_error_t err;
    if (m == NULL || m->fenced) return;
    if (!store_ok(m->s) && store_reconnect(m->s, NULL) != 0) return;
    if (store_leases_release(m->s, m->engine, NULL, 0, &err) != 0)
        cbm_log_warn("engine %s: releasing its shards: %s", m->engine, err.message);
}

void lm_destroy(lm_t *m)
{
    if (m == NULL) return;
    lm_stop(m);
    store_close(m->s);
    store_close(m->ls);
    uv_cond_destroy(&m->cv);
    uv_mutex_destroy(&m->mu);
    free(m->tok);
    free(m);
}
