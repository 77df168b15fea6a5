/*
 * lease.h - an engine's lease manager (issue 13; docs/architecture.md,
 * "Shards"): one thread and one store connection that renew the engine's
 * shard leases, take free or expired shards, balance toward an equal share
 * of the live engines, fence engines found dead, and tell the loop what it
 * holds (rt_shards_set). Every lease/3 ms, and at once when poked (a commit
 * refused by the shard fence).
 *
 * Threads: lm_round and lm_release_all on the caller's thread (never the
 * loop's: they wait for the database and for the loop); lm_poke from any
 * thread; the rest from the thread that owns the engine.
 */
#ifndef CBM_ENGINE_LEASE_H
#define CBM_ENGINE_LEASE_H

#include <stdint.h>

#include "engine/runtime.h"
#include "store/store.h"

typedef struct lm lm_t;

/* Takes *s (an open, migrated connection). engine: this incarnation's id;
 * nshards: the database's S; lease_ms: how long a lease lasts unrenewed. */
int lm_create(lm_t **out, rt_t *rt, store_t **s, const char *engine, int nshards,
              int64_t lease_ms);
/* One round, now (the first one, before lm_start, so a lone engine holds
 * every shard when its start returns). */
int lm_round(lm_t *m, cbm_error_t *err);
int lm_start(lm_t *m);
/* After lm_start: a thread that LISTENs for wake-ups (store_wake_listen)
 * on *s (taken) and wakes the executions this engine holds (rt_wake). */
int lm_listen(lm_t *m, store_t **s);
/* Any thread: run a round now. */
void lm_poke(lm_t *m);
/* Stop and join the threads (no round runs after it returns). */
void lm_stop(lm_t *m);
/* After the engine's loop and committer have stopped: give up every lease,
 * so other engines take the shards at their next round. */
void lm_release_all(lm_t *m);
void lm_destroy(lm_t *m);

#endif
