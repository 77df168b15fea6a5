/*
 * decider.h - what happens next, given an execution's state.
 *
 * dc_decide() is pure like the reducer: from the state (and the time) it
 * derives the events the engine must append next. It resolves fired timers
 * (a sleep ends, a back-off ends, a time-out or an approval deadline passes),
 * schedules retries of failed steps under their policy, schedules every
 * pending step whose dependencies are all completed (so independent steps run
 * in parallel; sleep, approval and signal steps start waiting), fails the
 * execution when a step has failed with no attempt left, cancels it when a
 * cancel was requested, and completes it when every step is done. The caller assigns seq and time,
 * applies the events and commits them as one decision.
 */
#ifndef CBM_ENGINE_DECIDER_H
#define CBM_ENGINE_DECIDER_H

#include <stddef.h>

#include "engine/event.h"
#include "engine/state.h"

/* Append the next layer of events to out (capacity cap >= 2 * bp->nsteps +
 * 1); *n is the number written (0: nothing to do now, e.g. waiting for
 * running steps or timers). The caller applies them and asks again until the
 * decider has nothing more: a layer may depend on the previous one (a timer
 * fires -> the step fails -> its retry is scheduled). now_us stamps the timers
 * the events set (sleeps, approval deadlines, retry back-off).
 * Returns CBM_ENOMEM only; then *n is 0 (nothing to free). */
int dc_decide(const st_exec_t *st, int64_t now_us, eng_event_t *out, size_t cap, size_t *n);

/* The back-off before attempt `failed_attempt + 1` under policy r, in ms:
 * initial * multiplier^(failed_attempt - 1), capped at max. */
int64_t dc_backoff_ms(const bp_retry_t *r, int failed_attempt);

/* The input document of a step: {"inputs":<inputs>,"deps":{"<dep>":<result>}},
 * and for a task step with args {...,"args":<args>} (malloc'd). */
char *dc_step_input(const st_exec_t *st, size_t step);

/* The id of the child execution that attempt `attempt` of step `step` of
 * execution parent starts: a UUID (version 8, RFC 9562) made of the SHA-256
 * of "<parent>/<step>/<attempt>", so starting it again after a crash names
 * the same child and is idempotent. out gets 37 bytes. 0, or CBM_ENOMEM
 * when the digest cannot be computed (OpenSSL allocates). */
int dc_child_id(const char *parent, const char *step, int attempt, char out[37]);

#endif
