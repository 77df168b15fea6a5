/**
 * @file worker.h
 * @brief A remote worker: runs blueprint steps for a `cerebelum serve` over
 * gRPC (WorkerService, docs/protocol.md).
 *
 * Steps whose blueprint names a queue other than "local" (`"queue": "gpu"`)
 * are not run by the engine's own threads: they become tasks that workers on
 * that queue take. A worker registers its handlers by name with exactly the
 * handler type of embedded steps (cbm_step_fn, cerebelum.h), so the same
 * handler code runs in-process or remote, and ends the step the same ways:
 * cbm_step_ok, cbm_step_fail, cbm_step_sleep, cbm_step_approval.
 *
 * What a worker does, on its own threads: it registers (RegisterWorker),
 * keeps `concurrency` long polls out (PollTask), runs each task's handler on
 * the thread that polled it, heartbeats while handlers run (so steps that
 * take minutes keep their leases), and submits each outcome (SubmitResult).
 * A task the server lists in cancel_task_ids (execution cancelled, step
 * timed out, lease lost) is not interrupted, since C code cannot be stopped
 * safely from outside: its handler hears of it through the callback it gave
 * cbm_step_on_cancel() (cerebelum.h), if any, and should then return soon;
 * its result is not submitted. When the server says
 * unknown_worker, or a poll says the worker is not registered (a restarted
 * server), it registers again. When the server goes away it retries with
 * exponential back-off and jitter (100 ms doubling to 5 s), never a busy
 * loop. cbm_worker_stop() drains: no new polls, running handlers finish and
 * submit, then UnregisterWorker.
 *
 * Delivery is at least once (a task whose lease runs out may run again
 * elsewhere), so handlers with outside effects should be idempotent, as
 * embedded ones: execution_id + step + attempt names an attempt.
 *
 * Threads: cbm_worker_stop() may be called from any thread (a signal-
 * handling thread, a handler); everything else from one thread. Handlers
 * run on the worker's threads, up to `concurrency` at once.
 */
#ifndef CEREBELUM_WORKER_H
#define CEREBELUM_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/cerebelum.h"
#include "cerebelum/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A worker (opaque). */
typedef struct cbm_worker cbm_worker_t;

/** One capability label, e.g. {"gpu", "a100"}: a step that `requires` it
 *  only goes to workers that have it. */
typedef struct cbm_worker_label {
    const char *key;
    const char *value;
} cbm_worker_label_t;

/** Options for cbm_worker_create(). Zero-initialise, then set what you need.
 *  Everything is copied. */
typedef struct cbm_worker_opts {
    /** "host:port" or "unix:/path" of `cerebelum serve`. Required. */
    const char *server;
    /** Sent as `authorization: Bearer <token>`; NULL: none. */
    const char *token;
    /** PEM text (not file names) for TLS: the CA that signed the server's
     *  certificate (setting it turns TLS on), and the worker's own
     *  certificate and key for mTLS (both or neither). */
    const char *tls_root_pem;
    const char *tls_cert_pem;
    const char *tls_key_pem;
    /** Check the server certificate against this name (NULL: the host). */
    const char *tls_server_name;
    /** Stable id of this worker (NULL: "<hostname>-<pid>-<random>"). */
    const char *worker_id;
    /** Queues served; at least one. */
    const char *const *queues;
    size_t nqueues;
    /** Capability labels (may be none). */
    const cbm_worker_label_t *capabilities;
    size_t ncapabilities;
    /** Tasks run at once, each on its own thread (0: 1; at most 256). */
    int concurrency;
    /** How long one poll waits for a task, in ms (0: 30000; at most the
     *  server's max_wait_ms). */
    int poll_wait_ms;
} cbm_worker_opts_t;

/** Counters, for tests and monitoring. */
typedef struct cbm_worker_stats {
    uint64_t registrations;  /**< RegisterWorker calls that succeeded */
    uint64_t tasks;          /**< tasks received */
    uint64_t submitted;      /**< results the server accepted */
    uint64_t ignored;        /**< results the server acknowledged and ignored */
    uint64_t cancelled;      /**< tasks whose result was dropped on the
                                  server's word (cancel_task_ids) */
    uint64_t heartbeats;     /**< Heartbeat calls that succeeded */
    uint64_t errors;         /**< failed calls (retried) */
} cbm_worker_stats_t;

/**
 * Create a worker. Nothing is sent until cbm_worker_start() or
 * cbm_worker_run(). *out is owned by the caller (cbm_worker_destroy).
 * CBM_EINVAL for a missing server or queue, or a bad option.
 */
CBM_EXTERN int cbm_worker_create(cbm_worker_t **out, const cbm_worker_opts_t *opts,
                                 cbm_error_t *err);

/** Run @p fn for tasks whose handler is @p name (the step's `handler` in the
 *  blueprint, or its name). Before start only. CBM_EEXIST for a name given
 *  twice. @p arg is passed through untouched. A task whose handler this
 *  worker does not have fails with kind "no_handler" (not retryable). */
CBM_EXTERN int cbm_worker_register_handler(cbm_worker_t *w, const char *name, cbm_step_fn fn,
                                           void *arg);

/** Start the worker's threads and return. The first registration happens on
 *  them; an unreachable server is retried, not an error. CBM_ESTATE if
 *  already started, CBM_EINVAL without handlers. */
CBM_EXTERN int cbm_worker_start(cbm_worker_t *w, cbm_error_t *err);

/** cbm_worker_start(), then block until cbm_worker_stop() is called and the
 *  worker has drained (cbm_worker_wait()). */
CBM_EXTERN int cbm_worker_run(cbm_worker_t *w, cbm_error_t *err);

/** Ask the worker to stop: no new polls (polls out are cancelled), running
 *  handlers finish and their results are submitted (retried for at most
 *  10 s if the server is away; the lease then gives the attempt back), then
 *  UnregisterWorker. Returns at once. Thread-safe; idempotent. */
CBM_EXTERN void cbm_worker_stop(cbm_worker_t *w);

/** Block until a stopped worker has drained and its threads ended. */
CBM_EXTERN void cbm_worker_wait(cbm_worker_t *w);

/** The worker's id (as given or generated). Valid until destroy. */
CBM_EXTERN const char *cbm_worker_id(const cbm_worker_t *w);

/** A snapshot of the worker's counters. */
CBM_EXTERN void cbm_worker_get_stats(cbm_worker_t *w, cbm_worker_stats_t *out);

/** Stop (if running), wait for the drain, free. NULL is a no-op. */
CBM_EXTERN void cbm_worker_destroy(cbm_worker_t *w);

#ifdef __cplusplus
}
#endif
#endif
