/*
 * minieng.h - the engine's decision loop without threads, clock or store,
 * for the allocation-failure runs of tests/fault/fault_unit.c.
 *
 * It does what engine/runtime.c does around the pure engine, one input per
 * decision: start (bp_check_inputs, ExecutionStarted), dec_build, then feed
 * the next input: a task step's outcome from the scenario's script (local
 * and remote steps alike; an outcome {"hang": true} never comes), a child execution run to its end (ChildStarted,
 * then ChildCompleted, or StepFailed for an unknown child blueprint), an
 * outside input of the case (approvals, signals, cancels, in order), or
 * else the earliest durable timer (the clock jumps to it). The "store" is
 * the list of encoded events each decision carries.
 *
 * Every library call runs inside FA(), so it may fail; the first failure
 * ends the run, which frees everything and returns the code. Test-side work
 * (answers, bookkeeping) runs outside and never fails.
 */
#ifndef CBM_TEST_MINIENG_H
#define CBM_TEST_MINIENG_H

#include <stddef.h>

#include "engine/blueprint.h"
#include "store/store.h"
#include "tests/harness/scenario.h"

/* An outside input: fed, in order, when no answer is pending and the
 * history holds an event of type `after` (NULL: at once), before any timer
 * fires. */
typedef struct me_input {
    const char *after;
    const char *type;     /* an event type name */
    const char *step;     /* NULL: none */
    const char *json;     /* the payload member (result, response...) */
    const char *name;     /* signal name */
    const char *text;     /* reason */
    const char *who;
    int attempt;          /* ResultIgnored */
} me_input_t;

typedef struct me_case {
    const scn_t *scn;                   /* its script answers task steps */
    bp_blueprint_t *const *children;    /* child blueprints, by name */
    size_t nchildren;
    const me_input_t *inputs;           /* outside inputs, in order */
    size_t ninputs;
} me_case_t;

/* What a run leaves (the top-level execution's). */
typedef struct me_result {
    char *status;                       /* projection status at the end */
    char *result;                       /* JSON or NULL */
    char *error;
    store_event_t *events;              /* its history, as stored */
    size_t nevents;
    char *state;                        /* st_to_json of the final state */
} me_result_t;

/* Run one execution of bp with inputs to its end. 0, or the CBM_E* code of
 * the first failure (out is then empty). FA_WRONG when the loop cannot go
 * on (nothing pending, nothing due). */
int me_run(const me_case_t *c, const bp_blueprint_t *bp, const char *inputs, me_result_t *out);
void me_result_finish(me_result_t *r);

#endif
