/*
 * engine_remote.h - what `cerebelum serve` needs from the engine to run
 * remote tasks, beyond the public API: not exported, not for users.
 *
 * The server leases cbm_tasks rows to workers over its own store
 * connections (store.h, "Remote task queue") and hands each outcome back to
 * the engine, which decides it like a local handler's outcome.
 */
#ifndef CBM_ENGINE_REMOTE_H
#define CBM_ENGINE_REMOTE_H

#include <stddef.h>

#include "cerebelum/cerebelum.h"
#include "engine/runtime.h"

/* Told (on the engine's loop thread, after the commit) of every remote task
 * a decision wrote; see rt_tasks_fn. Before cbm_engine_start. */
void cbm__engine_set_tasks_hook(cbm_engine_t *e, rt_tasks_fn fn, void *arg);
/* Any thread but the engine's: no call of the hook is in progress or comes
 * after this returns. */
void cbm__engine_clear_tasks_hook(cbm_engine_t *e);

/* The database URL the engine uses (its embedded one included), once
 * started; NULL before. */
const char *cbm__engine_url(cbm_engine_t *e);

/* A fresh outcome to fill with cbm_step_ok/fail/sleep/approval. */
cbm_step_out_t *cbm__step_out_new(void);
void cbm__step_out_free(cbm_step_out_t *out);

/*
 * Decide a remote attempt's outcome (rt_task_result), blocking. 0 with
 * *accepted set (and reason when not accepted), including for an execution
 * that has finished or does not exist. CBM_EUNAVAIL when the execution is
 * not in memory yet (it is loaded now: try again shortly), or the store is
 * down; CBM_ESHUTDOWN when the engine stops.
 */
int cbm__engine_task_result(cbm_engine_t *e, const char *id, const char *step, int attempt,
                            cbm_step_out_t *out, int from_worker, int *accepted, char *reason,
                            size_t cap, cbm_error_t *err);

/*
 * cbm__engine_task_result without a thread waiting: the outcome enters the
 * engine's inbox (the engine loads a hibernated execution itself) and
 * done(arg, rc, accepted, reason) is called on the ENGINE's thread once the
 * decision is durable or refused; it must only hand the answer over (e.g.
 * post to another loop). rc: 0 with accepted/reason; CBM_ENOTFOUND when the
 * store holds no unfinished execution of that id (ask
 * cbm__engine_task_result, which reads the store for the reason);
 * CBM_EUNAVAIL, CBM_ECONFLICT: try again; CBM_ESHUTDOWN. *out is copied.
 * Returns 0 (done will be called once) or CBM_ESTATE / CBM_ENOMEM (never).
 */
typedef void (*cbm__result_fn)(void *arg, int rc, int accepted, const char *reason);
int cbm__engine_task_result_async(cbm_engine_t *e, const char *id, const char *step, int attempt,
                                  const cbm_step_out_t *out, int from_worker, cbm__result_fn done,
                                  void *arg);

#endif
