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
    SS_PENDING = 0,   /* waiting for its dependencies */
    SS_SCHEDULED,     /* scheduled, running or about to run */
    SS_COMPLETED,
    SS_FAILED,
} st_step_status_t;

typedef enum st_exec_status {
    XS_RUNNING = 0,
    XS_COMPLETED,
    XS_FAILED,
    XS_CANCELLED,
} st_exec_status_t;

typedef struct st_step {
    st_step_status_t status;
    int attempt;        /* attempt of the last StepScheduled */
    char *result;       /* normalised JSON text when completed */
    char *error;        /* normalised JSON text when failed */
} st_step_t;

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
bool st_terminal(const st_exec_t *st);

/* Canonical JSON text of the state (malloc'd), for comparisons and debugging. */
char *st_to_json(const st_exec_t *st);

#endif
