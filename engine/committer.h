/*
 * committer.h - group commit on a dedicated thread.
 *
 * The loop thread never waits on the database. It hands each decision to the
 * committer (cm_submit, cheap: a locked list append and a condition signal)
 * and goes on. The committer thread takes EVERY decision queued at that moment
 * (up to max_batch) and commits them in one transaction through the store
 * port, so when many executions are ready together one commit (one fsync)
 * serves them all, and a lone decision is committed at once, with no waiting
 * to fill a batch. Results come back to the loop thread through a uv_async,
 * in submission order, to the done callback.
 *
 * When the database goes away the committer keeps the decisions, reconnects
 * with exponential back-off (100 ms to 5 s), finds out which decisions of an
 * interrupted batch had committed (by their last seq) and commits the rest.
 * Nothing is acknowledged before it is durable and nothing is lost.
 */
#ifndef CBM_ENGINE_COMMITTER_H
#define CBM_ENGINE_COMMITTER_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "engine/metrics.h"
#include "mailbox.h"
#include "store/store.h"

typedef struct cm_req {
    store_decision_t d;       /* d.result_code is set when done */
    struct cm_req *next;      /* committer's queue link */
    cbm_mail_t mail;          /* done: back to the loop (mailbox.h) */
    void *owner;              /* for the done callback */
    /* A job instead of a decision: run on the committer thread with its
     * store connection (after the decisions queued with it are committed),
     * for reads the loop must not do itself. It sets d.result_code. */
    void (*job)(store_t *s, struct cm_req *r);
} cm_req_t;

typedef struct committer committer_t;

/* Called on the loop thread for each finished request. */
typedef void (*cm_done_cb)(cm_req_t *req, void *ctx);

typedef struct cm_stats {
    _Atomic uint64_t commits;
    _Atomic uint64_t decisions;
    _Atomic uint64_t events;
    _Atomic uint64_t errors;
    _Atomic uint64_t fenced;     /* batches refused: this engine was fenced */
    cbm_commit_metrics_t m;      /* batch sizes, durations, events by type */
} cm_stats_t;

/* Takes ownership of store (an open, migrated connection). */
int cm_create(committer_t **out, uv_loop_t *loop, store_t **store, const char *url,
              int max_batch, cm_done_cb cb, void *ctx, cm_stats_t *stats);

/* Before the first cm_submit: the engine incarnation's life connection
 * (store_engine_register), which the committer keeps (re-locking after a lost
 * session) and unregisters on a graceful cm_close. Takes ownership. */
void cm_set_life(committer_t *c, store_t **life, const char *engine_id, int64_t lock_key);

/* Loop thread only. */
void cm_submit(committer_t *c, cm_req_t *r);

/* Ask the thread to finish: it commits what is queued, then exits. While the
 * store is unreachable and a stop was asked, pending requests are failed with
 * CBM_ESHUTDOWN instead of being retried forever. Loop thread; the done
 * callback still runs for every request. cm_idle() is true when nothing is
 * queued or in flight. */
void cm_stop(committer_t *c);
int cm_idle(committer_t *c);

/* Join the thread and close the uv handle (loop thread); free on close. */
void cm_close(committer_t *c);

#endif
