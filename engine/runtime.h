/*
 * runtime.h - the execution runtime: one libuv loop thread that owns every
 * in-memory execution, decides, and hands decisions to the committer.
 *
 * Threads:
 *   - the loop thread (created by rt_start) runs the reducer and decider,
 *     builds decisions and dispatches steps; nothing else touches executions;
 *   - libuv's thread pool runs step handlers (uv_queue_work), never the loop;
 *   - the committer thread commits decisions (engine/committer.h);
 *   - callers (rt_start_executions, rt_wait_*) hand work to the loop through a
 *     locked inbox and uv_async_send, and block on their own condition.
 *
 * Order of effects for every decision: apply its events to the in-memory
 * state, commit them, and only after the commit acknowledges, dispatch the
 * steps it scheduled, answer callers and notify waiters. A step never starts
 * before the decision that scheduled it is durable.
 */
#ifndef CBM_ENGINE_RUNTIME_H
#define CBM_ENGINE_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "scheduler/clock.h"
#include "store/store.h"

typedef struct rt rt_t;

typedef struct rt_opts {
    const char *database_url;     /* for the committer's reconnects */
    int max_batch;
    const cbm_clock_t *clock;     /* NULL: the system clock */
    int client_only;              /* resume nothing, wake nothing */
} rt_opts_t;

int rt_create(rt_t **out, const rt_opts_t *o);

/* Shards (engine/shards.c). Before rt_start: this engine runs only the
 * executions of the shards it holds, of nshards (the database's S). */
int rt_shards_init(rt_t *rt, int nshards);
/* Before rt_start: called (on the loop thread) when a commit was refused
 * because a shard moved to another engine, so the leases are read again. */
void rt_set_on_fenced(rt_t *rt, void (*fn)(void *arg), void *arg);
/* Any thread but the loop's, after rt_start: the engine now holds shard s
 * with tokens[s] (0: not held; nshards entries, read before it returns).
 * Blocks until the loop has applied it: lost shards' executions dropped,
 * taken shards' running executions being read. Returns how many handlers
 * still run for executions of shards not held (a graceful hand-over waits
 * for 0 before it releases them). With wait_loaded, it also waits until
 * the running executions of the shards taken are in memory (an engine's
 * start, so that it returns with them resumed). */
size_t rt_shards_set(rt_t *rt, const int64_t *tokens, int wait_loaded);
/* Any thread: the leases are surely held until mono_us (clock_mono_us);
 * past it the loop dispatches no handler. rt_held_back: it held one back
 * since (rt_shards_set then dispatches them). */
void rt_lease_until(rt_t *rt, int64_t mono_us);
bool rt_held_back(rt_t *rt);
/* Thread-safe: another process committed a decision for id that leaves
 * work here (its "wake" row, announced by NOTIFY): wake it now if this
 * engine holds its shard. */
void rt_wake(rt_t *rt, const char *id);
/* Thread-safe: does this engine run execution id (it is started, not
 * client-only, and holds its shard)? */
bool rt_runs(rt_t *rt, const char *id);

/* Before rt_start only. */
int rt_register_handler(rt_t *rt, const char *name, cbm_step_fn fn, void *arg);
/* The built-in handlers every engine has (cbm.deliberation.select and
 * cbm.deliberation.finish); rt_create registers them. */
int rt_register_builtins(rt_t *rt);

/* Thread-safe. Takes ownership of *bp (sets it NULL). If the same name and
 * version is known already the new copy is freed. With latest, it becomes the
 * version that starts without a version use; otherwise (an old version loaded
 * for running executions) it is only findable by version. */
void rt_add_blueprint(rt_t *rt, bp_blueprint_t **bp, int latest);
/* Thread-safe. version NULL: latest. Blueprints live as long as rt. */
const bp_blueprint_t *rt_find_blueprint(rt_t *rt, const char *name, const char *version);

/* CBM_EHANDLER if a local step of bp has no registered handler. */
int rt_check_handlers(rt_t *rt, const bp_blueprint_t *bp, cbm_error_t *err);

/* Before rt_start only: read time from clock (tests move a fake one). */
void rt_set_clock(rt_t *rt, const cbm_clock_t *clock);

/* Before rt_start only: this engine's incarnation (store_engine_register) and
 * its life connection, which the committer keeps. Takes ownership. */
void rt_set_life(rt_t *rt, store_t **life, const char *engine_id, int64_t lock_key);

/* Rebuild the executions of u (those that were running: store_load_running;
 * their blueprints must have been added), then start the loop thread, which
 * resumes them, reads the timer window and walks for orphaned children. Takes ownership of *store
 * (the committer's connection) and *reads (the loop's reads: wake-up loads
 * and timer refills, on a thread of their own). */
int rt_start(rt_t *rt, store_t **store, store_t **reads, const store_unfinished_t *u,
             cbm_error_t *err);

/* Start n executions of bp with the given normalised JSON object inputs,
 * under the new ids given in ids. Blocks until all are durably started (or
 * failed). keys (NULL, or n entries that may be NULL) are idempotency keys:
 * when execution i's key is held by another execution of bp (migration 004)
 * it is not created, and codes[i] (codes: NULL or n entries) says
 * CBM_EEXIST instead of 0; the caller finds the holder (store_find_by_key).
 * Thread-safe; not on the loop thread. */
int rt_start_executions(rt_t *rt, const bp_blueprint_t *bp, char *const *inputs,
                        const char *const *keys, size_t n, char (*ids)[37], int *codes,
                        cbm_error_t *err);

/* Waiting for terminal executions. rt_wait_begin registers interest in id
 * (before the caller checks the store, so no completion is missed);
 * rt_wait_until blocks until id is reported terminal by this engine or the
 * absolute monotonic deadline (us; <0 forever) passes (CBM_ETIMEDOUT);
 * rt_wait_end unregisters. */
typedef struct rt_waiter rt_waiter_t;
rt_waiter_t *rt_wait_begin(rt_t *rt, const char *id);
int rt_wait_until(rt_t *rt, rt_waiter_t *w, int64_t deadline_mono_us);
void rt_wait_end(rt_t *rt, rt_waiter_t *w);

/* After a decision was committed for execution id from outside the loop
 * (approve, signal, cancel): read it again now. Thread-safe, does not wait. */
void rt_refresh(rt_t *rt, const char *id);

void rt_get_stats(rt_t *rt, cbm_engine_stats_t *out);
/* The commit and timer histograms and events by type (metrics.h). Any
 * thread. */
struct cbm_metrics_snap;
void rt_get_metrics(rt_t *rt, struct cbm_metrics_snap *out);
/* Post a no-op to the loop's inbox and wait up to timeout_ms for the loop
 * to run it: 0, CBM_ETIMEDOUT (the loop is busy or stuck; the no-op still
 * runs, or is dropped at destroy, later), CBM_ESTATE (not started or
 * stopping), CBM_ENOMEM. Any thread but the loop's. */
int rt_ping(rt_t *rt, int timeout_ms);

/* ---- remote tasks -------------------------------------------------------
 * A task step whose queue is not "local" is not run here: the decision that
 * schedules an attempt writes its cbm_tasks row (and the one that ends it
 * deletes it), workers lease rows from the store, and their outcomes come
 * back through rt_task_result. */

/* Told on the loop thread, after the commit, of each remote task a
 * decision wrote. Must be quick and thread-safe (e.g. queue it and
 * uv_async_send another loop). */
typedef void (*rt_tasks_fn)(void *arg, const char *queue, const char *execution_id,
                            const char *step, int attempt);
/* Before rt_start only. */
void rt_set_tasks_hook(rt_t *rt, rt_tasks_fn fn, void *arg);
/* Any thread but the loop's: the hook is not running and is never called
 * again once this returns. */
void rt_clear_tasks_hook(rt_t *rt);

/*
 * The outcome of attempt `attempt` of step `step` of execution id, run
 * remotely: *out as filled by cbm_step_ok/fail/sleep/approval (its strings
 * are taken). Blocks until the outcome is decided and durable. Returns 0
 * with *accepted = 1 when it became the attempt's result, or *accepted = 0
 * and reason (cap bytes) when it no longer applies (a later attempt runs, the
 * step finished, the execution ended): with from_worker the execution's
 * history then records a ResultIgnored event (unless it has ended).
 * An execution that is not in memory (hibernated, or not yet read back after
 * a restart) is loaded by the loop first and the outcome decided then.
 * CBM_ENOTFOUND: the execution is not held here and the store has no
 * unfinished execution of that id (finished, or unknown: the caller asks the
 * store which); CBM_EUNAVAIL: it could not be decided now (the store is
 * down, the execution was dropped from memory meanwhile: try again);
 * CBM_ESHUTDOWN: the runtime stops; CBM_ECONFLICT (decided elsewhere
 * meanwhile: try again), or a commit failure otherwise.
 * Thread-safe; not on the loop thread.
 */
int rt_task_result(rt_t *rt, const char *id, const char *step, int attempt,
                   struct cbm_step_out *out, int from_worker, int *accepted, char *reason,
                   size_t cap);

/* The answer of rt_task_result_async, on the loop thread: rc, accepted and
 * reason as rt_task_result returns them. Must be quick (hand it to another
 * loop); reason is valid during the call only. */
typedef void (*rt_result_fn)(void *arg, int rc, int accepted, const char *reason);

/*
 * rt_task_result without waiting: the outcome is decided on the loop and
 * on_done(arg, ...) is called there once it is durable (or refused). Takes
 * id, step and the strings of *out by copy, so the caller may free them on
 * return. Returns 0 (on_done will be called exactly once), or CBM_ENOMEM /
 * CBM_ESTATE (not started) with on_done never called. A runtime that stops
 * answers the calls it holds with CBM_ESHUTDOWN.
 * Thread-safe; not on the loop thread.
 */
int rt_task_result_async(rt_t *rt, const char *id, const char *step, int attempt,
                         const struct cbm_step_out *out, int from_worker, rt_result_fn on_done,
                         void *arg);

/* Stop: finish running handlers and in-flight commits, stop the loop thread.
 * Then free everything. rt_destroy(NULL) is a no-op. */
void rt_destroy(rt_t *rt);

/* Testing: canonical JSON of the live state of an execution held in memory
 * (NULL if not in memory). Thread-safe (runs on the loop and waits). */
char *rt_debug_state_json(rt_t *rt, const char *id);

#endif
