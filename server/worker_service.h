/*
 * worker_service.h - the WorkerService of the server (cerebelum/server.h; and
 * WorkflowService.ListWorkers): remote workers register, long-poll for
 * tasks, heartbeat, and submit results (docs/protocol.md, "WorkerService").
 *
 * Where things live:
 *   - the task queue is the store's cbm_tasks table: decisions insert and
 *     delete rows atomically with their events; this service only leases
 *     them, over a small pool of its own store connections, from the libuv
 *     thread pool (the loop never blocks);
 *   - registered workers and parked polls live in memory on the server's
 *     loop; a restarted server learns its workers again from their next
 *     Heartbeat (answered unknown_worker) and RegisterWorker;
 *   - the engine tells the service of every task it commits (a hook, on the
 *     engine's thread, handed over with a uv_async), and a parked poll of
 *     the task's queue is woken at once, the one of the worker that ran the
 *     execution's previous step first (sticky routing);
 *   - outcomes go back to the engine (cbm__engine_task_result), which
 *     accepts one per current attempt; a lease that runs out (a scan every
 *     REAP_MS) or a worker that leaves fails the attempt with kind
 *     lease_expired / worker_left, retryable, so the step's retry policy
 *     decides whether it runs again.
 */
#ifndef CBM_SERVER_WORKER_SERVICE_H
#define CBM_SERVER_WORKER_SERVICE_H

#include <stdint.h>
#include <uv.h>

#include "cerebelum/cerebelum.h"
#include "grpc_transport.h"

typedef struct wsvc wsvc_t;
struct svc;

typedef struct wsvc_opts {
    int64_t lease_ms;       /* default lease of a claimed task; 0 = 30000 */
    int pool;               /* store connections for leasing; 0 = 4 */
} wsvc_opts_t;

/* Create on the server's loop, before the engine starts (it installs the
 * engine's task hook). */
int wsvc_create(uv_loop_t *loop, cbm_engine_t *engine, struct svc *svc, const wsvc_opts_t *o,
                wsvc_t **out, cbm_error_t *err);
/* After the engine started: open the store connections, start the lease
 * expiry scan. Blocks (start-up only). */
int wsvc_start(wsvc_t *ws, cbm_error_t *err);
/* Fill the WorkerService handlers and ListWorkers into opts. opts->user_data
 * must be the svc_t, whose `ws` points here. */
void wsvc_install(wsvc_t *ws, rpc_server_options_t *opts);
/* Shutting down: answer parked polls (empty), stop the timers. */
void wsvc_drain(wsvc_t *ws);
/* Close the handles (loop thread); free when the loop has run them out. */
void wsvc_close(wsvc_t *ws);
void wsvc_destroy(wsvc_t *ws);

#endif
