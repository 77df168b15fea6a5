/*
 * decider.h - what happens next, given an execution's state.
 *
 * dc_decide() is pure like the reducer: from the state alone it derives the
 * events the engine must append next. It schedules every pending step whose
 * dependencies are all completed (so independent steps run in parallel),
 * fails the execution when a step has failed with no attempt left, and
 * completes it when every step is done. The caller assigns seq and time,
 * applies the events and commits them as one decision.
 */
#ifndef CBM_ENGINE_DECIDER_H
#define CBM_ENGINE_DECIDER_H

#include <stddef.h>

#include "engine/event.h"
#include "engine/state.h"

/* Append the next events to out (capacity cap >= bp->nsteps + 1); *n is the
 * number written (0: nothing to do now, e.g. waiting for running steps).
 * Returns CBM_ENOMEM only. */
int dc_decide(const st_exec_t *st, eng_event_t *out, size_t cap, size_t *n);

/* The input document of a step: {"inputs":<inputs>,"deps":{"<dep>":<result>}}
 * (malloc'd). */
char *dc_step_input(const st_exec_t *st, size_t step);

#endif
