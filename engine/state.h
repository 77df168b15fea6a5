/*
 * state.h - execution state and the pure reducer.
 *
 * An execution's state is never stored: it is the fold of its events,
 * st_apply(state, event) for each event in seq order. The live engine applies
 * the events it decides with the same function, so the state it holds equals
 * the state rebuilt from the store at the same seq; st_to_json() gives a
 * canonical text of a state so tests can compare the two byte for byte.
 */
#ifndef CBM_ENGINE_STATE_H
#define CBM_ENGINE_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/blueprint.h"
#include "engine/event.h"

typedef enum st_step_status {
    SS_PENDING = 0,   /* waiting for its dependencies (or, after a back-off
                         timer fired, for its next attempt) */
    SS_SCHEDULED,     /* a task scheduled, running or about to run; a signal
                         step waiting for its signal */
    SS_WAITING,       /* sleeping, or waiting for an approval */
    SS_BACKOFF,       /* failed, waiting for its retry timer */
    SS_COMPLETED,
    SS_FAILED,
    SS_SKIPPED,       /* not run: a branch did not pick it, a skip_to jumped
                         over it, or all its dependencies were skipped */
} st_step_status_t;

/* Where a completed step is in its routing (docs/blueprints.md, "Routing"):
 * its diverge rules on results, then its branch, are evaluated by the decider
 * once per completion; DivergeTaken and BranchTaken record what they chose. */
typedef enum st_route {
    SR_DIVERGE = 0,   /* diverge rules on results still to evaluate */
    SR_BRANCH,        /* diverge done (no rule taken, or continue): branch next */
    SR_DONE,          /* routed: its dependents may go on */
} st_route_t;

typedef enum st_exec_status {
    XS_RUNNING = 0,
    XS_COMPLETED,
    XS_FAILED,
    XS_CANCELLED,
} st_exec_status_t;

/* What a SS_WAITING or SS_SCHEDULED step waits for, and which of its timers
 * fired (the decider resolves a fired timer into the step's next event). */
typedef enum st_wait {
    SW_NONE = 0,
    SW_SLEEP,
    SW_APPROVAL,
    SW_SIGNAL,
    SW_CHILD,         /* a subworkflow step waiting for its child execution */
} st_wait_t;

typedef enum st_timer_kind {
    TK_SLEEP = 0,
    TK_APPROVAL,
    TK_SIGNAL,
    TK_RETRY,
    TK_TIMEOUT,
    TK_WAKE,
    TK_DEADLINE,      /* the execution-wide time-out, key "deadline" */
    TK_CHILD,         /* "child:<step>": look at the step's child (the
                         runtime's reconciliation); re-armed with back-off
                         each time it fires, until the child's outcome comes */
} st_timer_kind_t;

/* The child:<step> timer: first due this long after ChildStarted, then each
 * firing waits as long as the child has run so far (doubling), at most the
 * maximum. */
#define ST_CHILD_CHECK_MIN_US 1000000LL
#define ST_CHILD_CHECK_MAX_US 60000000LL

typedef struct st_step {
    st_step_status_t status;
    int attempt;        /* attempt of the last StepScheduled; keeps growing
                           across loop iterations, so (step, attempt) is
                           unique within an execution */
    int base;           /* attempt at the last re-opening (0 if none): the
                           retry policy counts attempt - base */
    st_route_t route;   /* when completed: how far its routing went */
    int forced;         /* a skip_to or back_to target: runs once its
                           dependencies are finished even if all were
                           skipped; cleared when it starts */
    int *iters;         /* per diverge rule: jumps taken (retry, back_to) in
                           this execution; NULL when the step has no rules */
    st_wait_t wait;
    int fired;          /* 1 + st_timer_kind_t of a fired timer, 0 if none */
    char *result;       /* normalised JSON text when completed */
    char *error;        /* normalised JSON text when failed */
    char *pending;      /* result to take when a sleep ends */
    char *child;        /* subworkflow steps: the id of the child of the
                           current attempt (ChildStarted); NULL before */
    int64_t child_seq;  /* and the seq and time of that ChildStarted */
    int64_t child_at_us;
} st_step_t;

/* An active durable timer of the execution. Keys are "<kind>:<step>" (or
 * "wake"); the engine writes the difference of this set before and after a
 * decision to cbm_timers in the same transaction. */
typedef struct st_timer {
    char key[160];
    st_timer_kind_t kind;
    int64_t due_us;
} st_timer_t;

/* A signal that arrived before any step waited for it. */
typedef struct st_signal {
    char *name;
    char *payload;
} st_signal_t;

typedef struct st_exec {
    char id[37];
    const bp_blueprint_t *bp;   /* not owned */
    st_exec_status_t status;
    int64_t seq;                /* seq of the last applied event */
    char *inputs;               /* normalised JSON object text */
    char *result;
    char *error;
    int64_t started_at_us;
    int64_t updated_at_us;
    st_step_t *steps;           /* bp->nsteps entries */
    st_timer_t *timers;
    size_t ntimers, captimers;
    st_signal_t *signals;       /* buffered, oldest first */
    size_t nsignals;
    int cancel_requested;
    char *cancel_reason;
    int deadline_fired;         /* the execution-wide time-out passed */
    /* A child execution (started by a subworkflow step): its parent, from
     * ExecutionStarted; parent_id NULL for a top-level execution. */
    char *parent_id;
    char *parent_step;
    int parent_attempt;
} st_exec_t;

/* Initialise an empty state for execution id of blueprint bp. */
int st_init(st_exec_t *st, const char *id, const bp_blueprint_t *bp);
void st_finish(st_exec_t *st);

/* Apply one event. Takes the event's strings it keeps (sets them NULL in ev),
 * so the caller still ev_finish()es ev. Returns CBM_EINVAL when the event
 * does not follow (seq gap, unknown step, wrong state): a corrupt history is
 * reported, never folded silently. */
int st_apply(st_exec_t *st, eng_event_t *ev);

const char *st_status_name(st_exec_status_t s);
/* The status for the projection: completed/failed/cancelled, or while
 * running: awaiting_approval, awaiting_signal, sleeping (only timers left),
 * else running. */
const char *st_projection_status(const st_exec_t *st);
/* Nothing is scheduled to run: the execution only waits (for timers,
 * approvals or signals), so it can leave memory until something happens. */
bool st_only_waiting(const st_exec_t *st);
const st_timer_t *st_timer_find(const st_exec_t *st, const char *key);
const char *st_timer_kind_name(st_timer_kind_t k);
int st_timer_kind_from_name(const char *name);
bool st_terminal(const st_exec_t *st);

/* Canonical JSON text of the state (malloc'd), for comparisons, debugging
 * and snapshots; NULL when out of memory. */
char *st_to_json(const st_exec_t *st);

/* Restore a state from st_to_json() text (a snapshot) into st, freshly
 * st_init()ed for the same blueprint version. CBM_EINVAL if the text does not
 * describe a state of that blueprint version, CBM_EJSON if it is not JSON,
 * CBM_ENOMEM (st may then be partly filled: st_finish it). */
int st_from_json(st_exec_t *st, const char *json);

#endif
