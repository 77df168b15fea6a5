/*
 * ws_internal.h - what the WorkerService's files share (worker_service.h
 * describes the service): worker_service.c has the registry, heartbeats,
 * results, lease expiry, ListWorkers and the lifecycle; ws_polls.c the long
 * polls, their claims and the engine's task notifications. Loop thread only,
 * except the job work functions (thread pool) and on_engine_task (the
 * engine's thread).
 */
#ifndef CBM_CLI_WS_INTERNAL_H
#define CBM_CLI_WS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "workflow_service.h"
#include "mailbox.h"
#include "store/store.h"
#include "worker_service.h"

#define DEFAULT_LEASE_MS 30000
#define MAX_WAIT_MS 60000
#define REAP_MS 500
/* The lease grace at start (store_task_grace) adds this to each held lease:
 * a worker's channel reconnects after a back-off of up to 5 s times 1.5
 * (worker.c, BACKOFF_MAX_MS with jitter), so a lease shorter than that
 * would run out before the worker could even heartbeat the new server. */
#define GRACE_EXTRA_MS 10000
#define SWEEP_MS 1000
#define REAP_LIMIT 1000
#define EARLY_MS 50        /* answer a poll this long before its deadline */
#define STICKY_BUCKETS 1024

typedef struct worker {
    struct worker *next;
    char *id;
    char **queues;
    size_t nqueues;
    char **capk, **capv;   /* capabilities, as given */
    size_t ncaps;
    char *caps_json;       /* the same as a JSON object, for claims */
    uint32_t max_concurrency;
    char *sdk;
    int64_t registered_ms, last_seen_ms;
    uint32_t active;       /* tasks handed to it and not yet answered */
} worker_t;

typedef struct poll poll_t;
struct poll {
    poll_t *prev, *next;   /* ws->polls: every poll not yet answered */
    wsvc_t *ws;
    rpc_call_t *call;      /* NULL once gone */
    char *worker_id;
    char **queues;         /* copies */
    size_t nq;
    char *caps;            /* the worker's capabilities JSON */
    uv_timer_t timer;      /* the poll's deadline */
    int parked;            /* waiting for a task (else claiming) */
    int claiming;          /* a claim job in flight */
    int again;             /* a task came while claiming: claim once more */
    int expired;           /* the deadline passed */
    int closing;
    store_task_t want;     /* sticky: the task to try first (step != NULL) */
};

/* A task committed by the engine, handed from its thread. */
typedef struct note {
    cbm_mail_t mail;
    char *queue;
    char execution_id[37];
    char *step;
    int attempt;
} note_t;

/* Which worker ran an execution's last accepted step (sticky routing);
 * a small direct-mapped cache: a collision only loses a preference. */
typedef struct sticky {
    char execution_id[37];
    char worker_id[128];
} sticky_t;

struct wsvc {
    uv_loop_t *loop;
    cbm_engine_t *engine;
    svc_t *svc;
    int64_t lease_ms;
    int npool;
    store_t **pool;
    int nfree;
    uv_mutex_t pool_mu;
    uv_cond_t pool_cv;
    char *url;

    worker_t *workers;
    poll_t *polls;
    cbm_mailbox_t notes;   /* note_t from the engine's thread; after
                              wsvc_close they wait for wsvc_destroy */
    cbm_mailbox_t results; /* wjob_t of SubmitResult, answered by the
                              engine's thread once decided (on_submit) */
    uv_timer_t reap_timer, sweep_timer;
    int reaping;
    int graced;        /* the start's lease grace is done (store_task_grace; reap jobs only) */
    int draining;
    int started;
    sticky_t sticky[STICKY_BUCKETS];
    _Atomic uint64_t leases_expired; /* attempts failed as lease_expired (/metrics) */
};

typedef struct wjob wjob_t;
typedef void (*wjob_fn)(wjob_t *j, store_t *s);
typedef void (*wjob_done)(wjob_t *j);

struct wjob {
    uv_work_t req;
    cbm_mail_t mail;       /* ws->results */
    wsvc_t *ws;
    wjob_fn work;
    wjob_done done;
    rpc_call_t *call;      /* NULL once gone (or none) */
    int no_store;          /* work needs no store connection (gets NULL) */
    poll_t *poll;
    int rc;
    cbm_error_t err;
    /* claim */
    store_task_t want;     /* a copy of the poll's sticky want (strings its) */
    int want_used;
    bool found;
    store_claimed_t task;
    /* heartbeat */
    int64_t *ids;
    char **tids;
    size_t nids;
    int64_t *held;
    size_t nheld;
    /* result */
    char *worker_id;
    char *execution_id;
    char *step;
    int attempt;
    cbm_step_out_t *out;
    int accepted;
    char reason[160];
    /* expiry, release */
    store_task_t *expired;
    size_t nexpired;
    uint32_t released;
};

/* worker_service.c */
int64_t now_ms(void);
void job_free(wjob_t *j);
wjob_t *job_new(wsvc_t *ws, wjob_fn work, wjob_done done);
int job_queue(wjob_t *j, rpc_call_t *call);
worker_t *worker_find(wsvc_t *ws, const char *id);
void strv_free(char **v, size_t n);
char **strv_dup(char *const *v, size_t n);
const char *sticky_worker(wsvc_t *ws, const char *execution_id);
bool worker_serves(const worker_t *w, const char *queue);

/* ws_polls.c */
void poll_answer_empty(poll_t *p);
void on_poll(rpc_call_t *call, const Cerebelum__V1__PollTaskRequest *rq, wsvc_t *ws);
void on_engine_task(void *arg, const char *queue, const char *execution_id, const char *step,
                    int attempt);
void on_notify(cbm_mailbox_t *mb, cbm_mail_t *mail);
void on_sweep(uv_timer_t *t);

#endif
