/*
 * sched.h - the in-memory side of the durable timer scheduler: a min-heap of
 * (due, sequence) over the timers the engine knows are coming, with a set
 * that keeps each (execution, key, due) in it once.
 *
 * The durable side is the cbm_timers table, written in the same transaction
 * as the decision that sets or clears a timer. The heap holds only the next
 * window of those rows (refilled from the store) plus the timers this engine
 * set since; popping a timer does not mean it still holds: the engine checks
 * it against the execution's state, which drops timers cleared meanwhile.
 * Not thread-safe: the engine's loop thread owns it.
 */
#ifndef CBM_SCHEDULER_SCHED_H
#define CBM_SCHEDULER_SCHED_H

#include <stddef.h>
#include <stdint.h>

typedef struct sched_entry {
    int64_t due_us;
    uint64_t seq;            /* insertion order: ties fire first-in first-out */
    char id[37];
    char *key;
} sched_entry_t;

typedef struct sched sched_t;

sched_t *sched_create(void);
void sched_destroy(sched_t *s);

/* Add a timer; a duplicate of one already held is ignored. 0 or CBM_ENOMEM. */
int sched_push(sched_t *s, const char *id, const char *key, int64_t due_us);

/* Whether this timer (execution, key, due) is held. */
int sched_contains(const sched_t *s, const char *id, const char *key, int64_t due_us);

/* The earliest entry, or NULL when empty. */
const sched_entry_t *sched_peek(const sched_t *s);

/* Remove the earliest entry into *out (caller frees out->key). 0, -1 when
 * empty, or CBM_ENOMEM (the entry stays). */
int sched_pop(sched_t *s, sched_entry_t *out);

size_t sched_size(const sched_t *s);

#endif
