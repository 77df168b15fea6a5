/*
 * waiters.c - callers blocked until an execution ends (rt_wait_begin,
 * rt_wait_until, rt_wait_end in runtime.h), told by the loop when this
 * engine commits an execution's terminal decision. Buckets by id hash under
 * rt->mu.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "engine/runtime_internal.h"

/* ---------------------------------------------------------------- waiters */

unsigned rt_hash_id(const char *id)
{
    return cbm_hash_str(id);
}

rt_waiter_t *rt_wait_begin(rt_t *rt, const char *id)
{
    rt_waiter_t *w = calloc(1, sizeof(*w));
    unsigned b;
    if (w == NULL) return NULL;
    snprintf(w->id, sizeof(w->id), "%s", id);
    uv_cond_init(&w->cv);
    b = rt_hash_id(w->id) % WAIT_BUCKETS;
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
    for (pp = &rt->waiters[rt_hash_id(w->id) % WAIT_BUCKETS]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    uv_mutex_unlock(&rt->mu);
    uv_cond_destroy(&w->cv);
    free(w);
}

void rt_notify_terminal(rt_t *rt, const char *id)
{
    uv_mutex_lock(&rt->mu);
    for (rt_waiter_t *w = rt->waiters[rt_hash_id(id) % WAIT_BUCKETS]; w != NULL; w = w->next) {
        if (strcmp(w->id, id) == 0) {
            w->done = 1;
            uv_cond_signal(&w->cv);
        }
    }
    uv_mutex_unlock(&rt->mu);
}
