/*
 * engine_internal.h - what the files of the engine API (cerebelum.h) share
 * beyond the public header: engine_api.c owns the engine; the councils'
 * calls (engine_councils.c) use its store connection for reads.
 */
#ifndef CBM_ENGINE_INTERNAL_H
#define CBM_ENGINE_INTERNAL_H

#include "cerebelum/cerebelum.h"
#include "store/store.h"

/* A call on the engine's read connection: a store_* call and its arguments. */
typedef int (*cbm__read_fn)(store_t *s, void *arg, cbm_error_t *err);

/* Run fn on the engine's read connection, under its mutex, and once more
 * after a reconnect when it answered CBM_EUNAVAIL (fn must be safe to
 * repeat). CBM_EINVAL for a NULL engine, CBM_ESTATE before
 * cbm_engine_start; otherwise fn's code. Any thread. */
int cbm__engine_read(cbm_engine_t *e, cbm__read_fn fn, void *arg, cbm_error_t *err);

/* Record a message a trigger refused (engine_triggers.c; store.h,
 * "Triggers"), on the read connection. Any thread. */
int cbm__trigger_failure_add(cbm_engine_t *e, const store_trigger_failure_t *f, cbm_error_t *err);
/* Start n executions of the latest version of blueprint, the i-th with
 * inputs[i] and idempotency key keys[i] (required, distinct), committed
 * together: the trigger runner's batch (bus/trigger_run.c). created[i] is
 * false when keys[i] named an execution already (ids[i] is that one). No
 * read of the keys before the start, and the version is resolved once, so a
 * batch costs one commit. Errors as cbm_execution_start_many (a bad input
 * fails the call: retry item by item to find it). Any thread. */
int cbm__execution_start_keyed(cbm_engine_t *e, const char *blueprint, const char *const *inputs,
                               const char *const *keys, size_t n, char (*ids)[37], bool *created,
                               cbm_error_t *err);
/* Write a running trigger's health report (the bus's watcher). */
int cbm__trigger_health_put(cbm_engine_t *e, const store_trigger_health_t *h, cbm_error_t *err);

/* The engine's own reduced state of execution id, folded from its history
 * by the reducer (st_to_json(): steps with status, attempt, result, error,
 * child). *json is malloc'd; free() it. CBM_ENOTFOUND, store errors,
 * CBM_ENOMEM. Any thread. What GetExecution's state_json takes its results
 * from, instead of a second reading of events. */
int cbm__engine_state(cbm_engine_t *e, const char *id, char **json, cbm_error_t *err);

/* /metrics (server/http_metrics.c): the engine's counters (as
 * cbm_engine_get_stats) and its histograms and committed events by type
 * (engine/metrics.h). Any thread; cheap (atomic loads). */
struct cbm_metrics_snap;
void cbm__engine_metrics(cbm_engine_t *e, cbm_engine_stats_t *stats,
                         struct cbm_metrics_snap *m);

/* /readyz: does the engine's loop run a no-op posted to its inbox within
 * timeout_ms? 0, CBM_ETIMEDOUT, CBM_ESTATE (not started). Any thread. */
int cbm__engine_ping(cbm_engine_t *e, int timeout_ms);

#endif
