/*
 * decision.h - turning what happened into one atomic decision.
 *
 * dec_build() applies the incoming events to a state, runs the decider until
 * it has nothing more to say, and fills a store_decision_t with every event
 * (encoded), the projection, and the timers to set and clear (the difference
 * of the state's timer set before and after). The engine's loop and the
 * out-of-process decisions (approve, signal, cancel from any process) both
 * use it, so a decision means the same wherever it is made.
 */
#ifndef CBM_ENGINE_DECISION_H
#define CBM_ENGINE_DECISION_H

#include <stddef.h>
#include <stdint.h>

#include "engine/event.h"
#include "engine/state.h"
#include "store/store.h"

/* in[0..nin) are applied first (their strings are taken), then the decider's
 * layers. now_us stamps every event. On success d owns its arrays and strings
 * (free with dec_release); *sched lists the task steps the decision scheduled
 * (malloc'd, *nsched entries). On failure the state may be partly applied:
 * the caller must throw it away. d->nevents may be 0 (nothing happened). */
int dec_build(st_exec_t *st, eng_event_t *in, size_t nin, int64_t now_us, store_decision_t *d,
              size_t **sched, size_t *nsched);

/* Add a timer row to set (e.g. the "wake" notification). */
int dec_add_timer(store_decision_t *d, const char *kind, const char *key, int64_t due_us);
/* Add a timer key to clear. */
int dec_clear_timer(store_decision_t *d, const char *key);

void dec_release(store_decision_t *d);

/* Rebuild a state: st_init(st, id, bp), restore the snapshot (st_to_json
 * text; NULL: none), then apply the stored events that follow it, in order.
 * On failure st is left initialised (st_finish it) and err says why. */
int dec_fold(st_exec_t *st, const char *id, const bp_blueprint_t *bp, const char *snapshot,
             const store_event_t *evs, size_t n, cbm_error_t *err);

/* A snapshot is written with the decision that crosses each multiple of
 * this many events, so no rebuild folds more than about this many. */
#define DEC_SNAPSHOT_EVERY 100

#endif
