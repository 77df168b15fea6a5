/*
 * route.h - the routing half of the decider (docs/blueprints.md, "Routing").
 *
 * Pure like the rest of the decider: from the state, the events that record
 * what a step's diverge rules and branch chose. A failed step whose retry
 * policy gave up is routed on its error (route_failed); a completed step on
 * its result (route_completed), first its diverge rules, then its branch.
 * The choice is an event (DivergeTaken, BranchTaken) whose payload lists
 * every step it re-opens or skips, so the reducer only applies lists and the
 * history says plainly what happened.
 */
#ifndef CBM_ENGINE_ROUTE_H
#define CBM_ENGINE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/event.h"
#include "engine/state.h"

/* Step i failed and its retry policy gave up: the first diverge rule on
 * errors that matches takes its action (DivergeTaken, maybe ExecutionFailed);
 * none: ExecutionFailed with the step's error. Appends to out[*n..cap).
 * Returns 0 or CBM_ENOMEM. */
int route_failed(const st_exec_t *st, size_t i, eng_event_t *out, size_t cap, size_t *n);

/* Step i completed and its route is not SR_DONE: the first diverge rule on
 * results that matches takes its action, else its branch picks. Appends the
 * events that record it; appends nothing and sets *open when nothing applies
 * (no rule matches and the step has no branch), meaning the step is finished
 * and its dependents may go on. Returns 0 or CBM_ENOMEM. */
int route_completed(const st_exec_t *st, size_t i, eng_event_t *out, size_t cap, size_t *n,
                    bool *open);

/* {"step":..,"kind":..,"message":..} from the failed step's error object
 * (malloc'd; NULL on OOM). */
char *route_execution_error(const st_exec_t *st, size_t i);

#endif
