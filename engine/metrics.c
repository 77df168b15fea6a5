/* metrics.c - see metrics.h. */
#include "engine/metrics.h"

#include <assert.h>
#include <cJSON.h>
#include <string.h>

const int64_t cbm_batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
const size_t cbm_batch_nbounds = sizeof(cbm_batch_bounds) / sizeof(cbm_batch_bounds[0]);
const int64_t cbm_commit_bounds_us[] = {250, 500, 1000, 2500, 5000, 10000, 25000,
                                        50000, 100000, 250000, 500000, 1000000, 2500000};
const size_t cbm_commit_nbounds = sizeof(cbm_commit_bounds_us) / sizeof(cbm_commit_bounds_us[0]);
const int64_t cbm_lateness_bounds_us[] = {1000, 5000, 10000, 50000, 100000, 250000,
                                          500000, 1000000, 5000000, 30000000};
const size_t cbm_lateness_nbounds =
    sizeof(cbm_lateness_bounds_us) / sizeof(cbm_lateness_bounds_us[0]);

void cbm_hist_observe(cbm_hist_t *h, const int64_t *bounds, size_t nbounds, int64_t v)
{
    size_t i = 0;

    assert(nbounds < CBM_HIST_BUCKETS);
    while (i < nbounds && v > bounds[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v > 0 ? (uint64_t)v : 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

static uint64_t tokens(const cJSON *usage, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, key);
    return cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e15
               ? (uint64_t)v->valuedouble
               : 0;
}

/* {"step", "attempt", "result": {..., "usage": {"prompt_tokens", ...}}} */
static void count_usage(cbm_commit_metrics_t *m, const char *payload)
{
    cJSON *p = cJSON_Parse(payload);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(p, "result"), "usage");

    /* One call's usage; a sum over calls (a deliberation's result) says
     * how many with "calls" and was counted call by call already. */
    if (cJSON_IsObject(usage) && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens")) &&
        cJSON_GetObjectItemCaseSensitive(usage, "calls") == NULL) {
        atomic_fetch_add_explicit(&m->llm_calls, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->llm_prompt_tokens, tokens(usage, "prompt_tokens"),
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&m->llm_completion_tokens, tokens(usage, "completion_tokens"),
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&m->llm_cached_tokens, tokens(usage, "cached_tokens"),
                                  memory_order_relaxed);
    }
    cJSON_Delete(p);
}

void cbm_commit_metrics_events(cbm_commit_metrics_t *m, const store_event_t *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ev_type_t t = ev_type_from_name(evs[i].type);
        if ((size_t)t < CBM_EV_TYPES)
            atomic_fetch_add_explicit(&m->events[t], 1, memory_order_relaxed);
        if (t == EV_STEP_COMPLETED && evs[i].payload != NULL &&
            strstr(evs[i].payload, "\"prompt_tokens\"") != NULL)
            count_usage(m, evs[i].payload);
    }
}

void cbm_hist_snap(cbm_hist_t *h, cbm_hist_snap_t *out)
{
    out->count = atomic_load_explicit(&h->count, memory_order_relaxed);
    out->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    for (size_t i = 0; i < CBM_HIST_BUCKETS; i++)
        out->bucket[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
}
