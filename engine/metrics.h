/*
 * metrics.h - the engine's counters and histograms for /metrics
 * (docs/http.md): cheap to update (relaxed atomics, no lock), updated where
 * the events already pass (the committer thread for commits and event
 * types, the loop for timer lateness), read by copying
 * (cbm__engine_metrics, any thread). A copy is not one instant: a
 * histogram's count may be a little ahead of its buckets while a commit
 * lands, which Prometheus tolerates (the next scrape is consistent again).
 */
#ifndef CBM_ENGINE_METRICS_H
#define CBM_ENGINE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/event.h"
#include "store/store.h"

#define CBM_HIST_BUCKETS 16

/* A histogram of integer observations (a unit each user names: decisions,
 * microseconds): bucket i counts observations <= bounds[i] (not
 * cumulative); the last counts the rest (+Inf). */
typedef struct cbm_hist {
    _Atomic uint64_t bucket[CBM_HIST_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum;
} cbm_hist_t;

/* Bounds of the engine's histograms; each list is shorter than
 * CBM_HIST_BUCKETS, the bucket after its last bound is +Inf. */
extern const int64_t cbm_batch_bounds[];      /* decisions per commit */
extern const size_t cbm_batch_nbounds;
extern const int64_t cbm_commit_bounds_us[];  /* one commit's duration */
extern const size_t cbm_commit_nbounds;
extern const int64_t cbm_lateness_bounds_us[];/* a timer's fire time - due */
extern const size_t cbm_lateness_nbounds;

void cbm_hist_observe(cbm_hist_t *h, const int64_t *bounds, size_t nbounds, int64_t v);

/* The event types count (EV_TYPE_MAP), by ev_type_t; 0 is unknown. */
#define CBM_EV_TYPES 32
_Static_assert(EV_EXECUTION_CANCELLED < CBM_EV_TYPES, "CBM_EV_TYPES holds every event type");

/* The committer's part (one per committer; cm_stats_t holds it). */
typedef struct cbm_commit_metrics {
    cbm_hist_t batch;                    /* decisions per transaction */
    cbm_hist_t duration_us;              /* store_append, send to answer */
    _Atomic uint64_t events[CBM_EV_TYPES]; /* committed events by type */
    /* LLM calls: completed steps whose result carries one call's "usage"
     * (docs/deliberation.md section 4; a deliberation's own result sums
     * its calls' usage with a "calls" count and is not counted again). */
    _Atomic uint64_t llm_calls;
    _Atomic uint64_t llm_prompt_tokens, llm_completion_tokens, llm_cached_tokens;
} cbm_commit_metrics_t;

/* Copies, for readers. */
typedef struct cbm_hist_snap {
    uint64_t bucket[CBM_HIST_BUCKETS];
    uint64_t count, sum;
} cbm_hist_snap_t;

typedef struct cbm_metrics_snap {
    cbm_hist_snap_t batch;          /* decisions */
    cbm_hist_snap_t commit_us;      /* microseconds */
    cbm_hist_snap_t lateness_us;    /* microseconds */
    uint64_t events[CBM_EV_TYPES];  /* by ev_type_t */
    uint64_t llm_calls, llm_prompt_tokens, llm_completion_tokens, llm_cached_tokens;
    uint64_t timers_fired;
} cbm_metrics_snap_t;

void cbm_hist_snap(cbm_hist_t *h, cbm_hist_snap_t *out);

/* Count a committed decision's events by type, and the LLM usage of the
 * StepCompleted ones (committer thread). Only payloads that name
 * "prompt_tokens" are parsed, so other steps cost a substring scan. */
void cbm_commit_metrics_events(cbm_commit_metrics_t *m, const store_event_t *evs, size_t n);

#endif
