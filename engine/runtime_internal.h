/*
 * runtime_internal.h - what the runtime's files share: its structures and the
 * functions runtime.c (executions, decisions, dispatch, inbox, lifecycle) and
 * wake.c (loads from the store, timers) call in each other. Loop thread only,
 * except where runtime.h says otherwise. Not for other modules.
 */
#ifndef CBM_ENGINE_RUNTIME_INTERNAL_H
#define CBM_ENGINE_RUNTIME_INTERNAL_H

#include <stdatomic.h>
#include <uv.h>

#include "engine/committer.h"
#include "engine/step_out.h"
#include "engine/event.h"
#include "engine/runtime.h"
#include "engine/state.h"
#include "scheduler/sched.h"

#define REFILL_MS 1000                 /* store timer window poll period */
#define WINDOW_US (60 * 1000000LL)     /* how far ahead the heap is filled */
#define REFILL_LIMIT 20000             /* rows per page of the window */
#define NEAR_LIMIT 5000                /* rows per page of the near query */
/* The near query reads again what is due this soon, for the timers other
 * processes wrote behind the window's cursor: a row found there is
 * prefetched in time. */
#define NEAR_US (PREFETCH_US + REFILL_MS * 1000LL)
/* The walk for children of ended parents at start: executions per page. */
#define ORPHAN_PAGE 2000
/* The safety net (issue 9): every SWEEP_EVERY refills, load executions that
 * nothing will move (store_stranded) untouched for SWEEP_AGE_US. */
#define SWEEP_EVERY 30
#define SWEEP_AGE_US (30 * 1000000LL)
#define SWEEP_LIMIT 1000
#define PREFETCH_US 300000             /* load hibernated executions this
                                          early, so they wake on time */
#define PREFETCH_SLICE 256             /* prefetched per turn of the loop */

/* What a handler produced; filled on a pool thread, read on the loop. */
/* struct cbm_step_out: engine/step_out.h */

typedef struct rt_exec rt_exec_t;

typedef struct rt_work {
    uv_work_t req;
    rt_t *rt;
    rt_exec_t *ex;
    size_t step;
    int attempt;
    char *input;
    char exec_id[37];
    const char *step_name;
    const char *handler_name;
    int skipped;               /* not run: the leases were stale when a
                                  pool thread took it (work_cb) */
    struct cbm_step_out out;
} rt_work_t;

typedef struct rt_call rt_call_t;

struct rt_exec {
    st_exec_t st;              /* valid unless loading */
    rt_exec_t *prev, *next;    /* rt->active */
    rt_exec_t *hnext;          /* rt->map bucket chain */
    rt_exec_t *lnext;          /* rt->loadq */
    char id[37];
    const bp_blueprint_t *bp;
    int committing;            /* a decision of this execution is in flight */
    int loading;               /* its state is being read from the store */
    int reload;                /* read it again once the commit in flight ends */
    int running;               /* handlers running */
    int pins;                  /* timers due soon: stay in memory */
    int dead;                  /* terminal or dropped: free when idle */
    int refused;               /* the store refused a decision's data: failing */
    int shard;                 /* its shard (-1: this engine has no shards) */
    int64_t token;             /* the lease token of its shard it was loaded
                                  or created under; 0: not this engine's
                                  (committed without a lease, then left) */
    int *dispatched;           /* per step: the attempt last dispatched here,
                                  so no attempt runs twice (attempts keep
                                  growing across loop iterations) */
    eng_event_t *pend;         /* inputs waiting for the next decision */
    size_t npend, cappend;
    rt_call_t *start;          /* start request to answer, if any */
    size_t start_i;            /* and this execution's index in it */
    rt_call_t *rwait;          /* remote results that came while it was not
                                  held or still loading: decided once it is
                                  loaded (c->rnext chains them) */
};

typedef struct rt_decision {
    cm_req_t req;
    rt_exec_t *ex;
    rt_call_t *start;
    size_t *sched;
    size_t nsched;
    size_t nin;                /* the first nin events came from outside */
    rt_call_t **calls;         /* calls[i]: the caller waiting on input i
                                  (a remote result), or NULL; nin entries */
    int terminal;
    char **waited;             /* children the execution waited for before
                                  the decision (malloc'd ids); nwaited */
    size_t nwaited;
} rt_decision_t;

/* One execution of a load batch, folded on the reader thread. */
typedef struct rt_loaded {
    st_exec_t st;              /* valid when rc is 0 */
    const bp_blueprint_t *bp;
    int rc;                    /* 0, CBM_ENOTFOUND (no such execution), or why
                                  it cannot be folded (detail in why) */
    char *why;
} rt_loaded_t;

/* A batch of executions to read from the store (wake-ups, reloads). */
#define LOAD_BATCH 2000
typedef struct rt_load {
    cm_req_t req;
    rt_t *rt;
    size_t n;
    char (*ids)[37];           /* sorted */
    const char **idp;
    rt_loaded_t *got;          /* per ids[i], when the batch was read */
    cbm_error_t err;           /* why it was not */
} rt_load_t;

/* One refill (wake.c): the near query (what is due within NEAR_US, from
 * the start or after near_after) and the next page of the window (after
 * win_after, up to until_us). */
typedef struct rt_refill {
    cm_req_t req;
    rt_t *rt;
    int64_t near_us, until_us;
    int near_from, win_from;   /* the cursors below apply */
    store_timer_t near_after, win_after; /* keys: copies, freed with this */
    store_timer_t *near, *timers;
    size_t nnear, n;
    int sweep;                 /* also look for stranded executions */
    int *shards;               /* owned shards when sent (NULL: all) */
    size_t nshards;
    unsigned gen;              /* rt->win_gen when sent */
    char (*stranded)[37];
    size_t nstranded;
} rt_refill_t;

/* A reader job that loads the running executions of shards just taken
 * (engine/shards.c). */
typedef struct rt_take {
    cm_req_t req;
    rt_t *rt;
    int *shards;               /* taken, with the tokens they were taken with */
    int64_t *tokens;
    size_t n;
    char (*ids)[37];           /* what was read: ids, folded states */
    rt_loaded_t *got;
    size_t nids;
    cbm_error_t err;
} rt_take_t;

/* One page of the walk for children whose parent ended (store_orphans). */
typedef struct rt_orphans {
    cm_req_t req;
    rt_t *rt;
    int *shards;               /* the shards walked (NULL: all) */
    size_t nshards;
    char after[37];            /* "" from the first */
    store_orphan_t *found;
    size_t n;
    char last[37];             /* "" when the walk is over */
} rt_orphans_t;

/* A sub-workflow job for the reader thread (child.c): look at a child
 * (its outcome if it ended; what to start it with if it does not exist),
 * or at the parent of a resumed child. */
typedef struct rt_child {
    cm_req_t req;
    rt_t *rt;
    int kind;                  /* LOOK_CHILD, LOOK_PARENT (child.c) */
    char parent[37];
    char child[37];
    const char *step;          /* the parent's step, its blueprint (name and */
    const char *blueprint;     /* pinned version, NULL: the latest): strings */
    const char *version;       /* of blueprints, which live as long as rt */
    const bp_step_t *dstep;    /* a deliberation step: it (the child's */
    const char *parent_bp;     /* blueprint is generated), and the parent's
                                  blueprint name; NULL otherwise */
    int attempt;
    int64_t seq;               /* the parent's ChildStarted */
    /* Out. */
    char *status;              /* of the execution looked at; NULL: none */
    char *outcome;             /* a terminal child: the ChildCompleted json */
    char *inputs;              /* a child to start: its checked inputs */
    const bp_blueprint_t *bp;  /* and its blueprint */
    const char *fail_kind;     /* or why it cannot start (message in err) */
    cbm_error_t err;
} rt_child_t;

typedef struct rt_handler {
    char *name;
    cbm_step_fn fn;
    void *arg;
} rt_handler_t;

/* A request from another thread, run on the loop by fn. */
struct rt_call {
    void (*fn)(rt_t *rt, rt_call_t *c);
    cbm_mail_t mail;           /* in the engine's inbox */
    int done;                  /* guarded by rt->mu */
    int rc;
    uv_cond_t cv;
    int waited;                /* a caller blocks on cv (else free on done) */
    /* start */
    const bp_blueprint_t *bp;
    char *const *inputs;
    char (*ids)[37];
    const char *const *keys;   /* idempotency keys (NULL: none; entries may be NULL) */
    int *codes;                /* per execution: 0 started, CBM_EEXIST key taken */
    size_t n, remaining;
    /* debug, refresh, task result */
    char id[37];
    char *text;
    /* task result (rt_task_result) */
    const char *step;
    int attempt;
    struct cbm_step_out *out;
    int from_worker;
    int accepted;
    char reason[160];
    rt_call_t *rnext;          /* rt_exec_t.rwait */
    /* An asynchronous call (rt_task_result_async): not waited for; on_done
     * runs on the loop when it is answered, then the runtime frees the call
     * and what it owns. */
    rt_result_fn on_done;
    void *done_arg;
    char *own_step;
    struct cbm_step_out *own_out;
};

struct rt_waiter {
    char id[37];
    int done;
    uv_cond_t cv;
    rt_waiter_t *next;
};

#define WAIT_BUCKETS 256

struct rt {
    uv_loop_t loop;
    cbm_mailbox_t inbox;       /* calls from other threads (rt_call_t) */
    uv_timer_t fire_timer;     /* armed for the earliest timer in the heap */
    uv_timer_t refill_timer;   /* polls the store's timer window */
    uv_thread_t thread;
    uv_mutex_t mu;             /* blueprints, waiters, call->done */
    committer_t *cm;           /* decisions */
    committer_t *rd;           /* reads for the loop: loads, timer refills */
    store_t *life;             /* until rt_start: the incarnation (rt_set_life) */
    char engine_id[37];
    int64_t lock_key;
    unsigned refills;          /* loop thread: refills asked, for the sweep */
    _Atomic uint64_t swept;    /* stranded executions found and loaded */
    cm_stats_t cmstats;
    cm_stats_t rdstats;
    const cbm_clock_t *clock;
    char *url;
    int max_batch;

    rt_handler_t *handlers;
    size_t nhandlers;
    bp_blueprint_t **bps;      /* all versions ever added; latest = last of a name */
    size_t nbps, capbps;
    rt_waiter_t *waiters[WAIT_BUCKETS];

    /* Loop thread only. */
    rt_exec_t *active;
    rt_exec_t **map;
    size_t mapsize, nmap;
    sched_t *sched;            /* timers, by due time */
    sched_t *ready;            /* timers due within PREFETCH_US, whose
                                  executions are loaded and pinned */
    int refilling;
    /* The window's cursor: every timer row up to it was read into the heap
     * (key NULL: every row due up to win.due_at_us). win_read: read once. */
    store_timer_t win;
    int win_read;
    unsigned win_gen;          /* grows when shards are taken: the window
                                  is read again from its first row */
    store_timer_t near;        /* the near query's cursor while it pages */
    int near_paging;
    char (*gone)[37];          /* executions freed while a refill was in */
    size_t ngone, capgone;     /* flight (its rows of them may be stale) */
    size_t running_total;
    size_t loads_in_flight;
    int hold_loads;            /* gathering a batch: do not send yet */
    rt_exec_t *loadq;          /* waiting for the next load batch */
    int stopping;
    int closed;

    /* Shards (engine/shards.c). nshards 0: none (client-only). tok[s] is
     * the token this engine holds shard s with (0: not held), loop thread
     * only; otok is the same for other threads (relaxed atomics). */
    int nshards;
    int64_t *tok;
    _Atomic int64_t *otok;
    void (*on_fenced)(void *arg); /* a commit was refused by the shard fence */
    void *on_fenced_arg;
    _Atomic uint64_t shard_refusals;
    /* Until when (clock_mono_us) the leases are surely still ours: set by
     * the lease manager after each renewal, a margin before they can
     * expire. Past it no handler is dispatched (held_back is set) until
     * the next renewal says which shards are still held: a paused or cut
     * off engine never starts a step another engine may run meanwhile. */
    _Atomic int64_t lease_until_us;
    _Atomic int held_back;
    size_t takes_in_flight;    /* rt_job_take jobs not back yet */
    rt_call_t *take_waiter;    /* rt_shards_set waiting for them */

    int started;
    int client_only;
    rt_tasks_fn on_tasks;      /* told of committed remote tasks */
    void *on_tasks_arg;
    _Atomic uint64_t steps_run, resumed, nactive, hibernated, woken, timers_fired;
    _Atomic int64_t lateness_sum_us;
    cbm_hist_t lateness;       /* timers: fire time - due time, us */
};


/* runtime.c */
void rt_outcome_event(rt_t *rt, int step, int attempt, struct cbm_step_out *out,
                      eng_event_t *ev);
void rt_answer_result(rt_t *rt, rt_call_t *c, int rc);
/* Free an asynchronous call (rt_task_result_async) and what it owns. */
void rt_call_free(rt_call_t *c);
/* The results parked on ex->rwait, decided now that its load ended. */
void rt_results_resume(rt_t *rt, rt_exec_t *ex);
void rt_post_and_wait(rt_t *rt, rt_call_t *c);

/* waiters.c */
void rt_notify_terminal(rt_t *rt, const char *id);
unsigned rt_hash_id(const char *id);

/* registry.c */
const rt_handler_t *rt_find_handler(rt_t *rt, const char *name);

/* runtime.c */
rt_exec_t *rt_map_get(rt_t *rt, const char *id);
rt_exec_t *rt_exec_new(rt_t *rt, const char *id);
int rt_pend_push(rt_exec_t *ex, eng_event_t *ev);
void rt_maybe_free(rt_t *rt, rt_exec_t *ex);
int rt_exec_set_bp(rt_exec_t *ex, const bp_blueprint_t *bp);
void rt_dispatch(rt_t *rt, rt_exec_t *ex, size_t step);
void rt_answer_start(rt_t *rt, rt_call_t *c, int rc);
void rt_maybe_quiesce(rt_t *rt);
void rt_call_complete(rt_t *rt, rt_call_t *c);

/* runtime_decide.c */
void rt_process(rt_t *rt, rt_exec_t *ex, int force);
void rt_settle(rt_t *rt, rt_exec_t *ex);
void rt_on_commit(cm_req_t *req, void *ctx);

/* wake.c */
void rt_start_load(rt_t *rt, rt_exec_t *ex);
int rt_fold(rt_exec_t *ex, const bp_blueprint_t *bp, const char *snapshot,
            const store_event_t *evs, size_t n, cbm_error_t *err);
void rt_fold_loaded(store_t *s, rt_t *rt, const store_unfinished_t *u, size_t j,
                    const bp_blueprint_t **bp, rt_loaded_t *g);
void rt_job_load(store_t *s, cm_req_t *r);
void rt_on_loaded(rt_t *rt, rt_load_t *l);
void rt_arm_fire(rt_t *rt);
void rt_job_refill(store_t *s, cm_req_t *r);
void rt_on_refilled(rt_t *rt, rt_refill_t *f);
void rt_refill(rt_t *rt);
void rt_on_refill_timer(uv_timer_t *t);
void rt_timers_finish(rt_t *rt);
/* ex leaves memory (runtime.c, exec_free). */
void rt_note_gone(rt_t *rt, const char *id);

/* shards.c */
/* Loop thread: the shard of id and the token this engine holds it with
 * (0: not held, or no shards). */
int rt_shard_of(rt_t *rt, const char *id);
int64_t rt_token_of(rt_t *rt, const char *id);
/* The shards held now, as a malloc'd list for a reader job's filter
 * (store_set_shards): NULL with *n 0 when the engine has no shards (no
 * filter), a non-NULL list with *n 0 when it holds none. *oom on failure. */
int *rt_owned_list(rt_t *rt, size_t *n, int *oom);
void rt_job_take(store_t *s, cm_req_t *r);
void rt_on_taken(rt_t *rt, rt_take_t *t);
/* A commit of ex was refused by the shard fence: drop its shard. */
void rt_shard_refused(rt_t *rt, rt_exec_t *ex);

/* wake.c, for shards.c */
void rt_loaded_one(rt_t *rt, rt_exec_t *ex, rt_loaded_t *g, int rc, const char *why);
const bp_blueprint_t *rt_load_blueprint(store_t *s, rt_t *rt, const store_execution_t *x,
                                        cbm_error_t *err);

/* child.c */
/* A subworkflow step i of ex waits for its child: make sure the child
 * exists (start it) and, if it ended, that the parent hears of it. */
void rt_child_ensure(rt_t *rt, rt_exec_t *ex, size_t i);
void rt_job_child(store_t *s, cm_req_t *r);
void rt_on_child(rt_t *rt, rt_child_t *j);
/* ex is terminal: tell its parent; with cascade (the loop committed the
 * end), also cancel the children it still waited for. */
void rt_child_ended(rt_t *rt, rt_exec_t *ex, int cascade);
/* After a decision of ex committed: cancel each child in waited[] that no
 * step holds any more (a loop re-opened its step while it ran). */
void rt_child_orphans(rt_t *rt, rt_exec_t *ex, char *const *waited, size_t n);
/* A resumed child: cancel it if its parent ended without it. */
void rt_parent_check(rt_t *rt, rt_exec_t *ex);
/* At a start: walk the unfinished executions for children whose parent
 * ended without them (store_orphans), a page at a time on the reader, and
 * cancel them as rt_parent_check would. */
void rt_orphans_walk(rt_t *rt, const char *after);
void rt_job_orphans(store_t *s, cm_req_t *r);
void rt_on_orphans(rt_t *rt, rt_orphans_t *o);
/* Inputs from a child name the child, not the step: find the step that
 * waits for it (ev->step stays -1 when none does). */
void rt_child_resolve(const st_exec_t *st, eng_event_t *ev);

#endif
