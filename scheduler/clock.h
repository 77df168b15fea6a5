/*
 * clock.h - the injectable clock. Everything in the engine that reads time
 * (event timestamps, timers, time-outs, latency figures) reads it through a
 * cbm_clock so tests can move time instead of waiting.
 */
#ifndef CBM_SCHEDULER_CLOCK_H
#define CBM_SCHEDULER_CLOCK_H

#include <stdint.h>

typedef struct cbm_clock {
    /* Wall-clock microseconds since the Unix epoch. */
    int64_t (*now_us)(void *ctx);
    void *ctx;
} cbm_clock_t;

/* The real clock (CLOCK_REALTIME). */
extern const cbm_clock_t clock_system;

/* A settable clock for tests; thread-safe (atomic). */
typedef struct clock_fake {
    cbm_clock_t clock;
    _Atomic int64_t now;
} clock_fake_t;
void clock_fake_init(clock_fake_t *f, int64_t start_us);
void clock_fake_advance(clock_fake_t *f, int64_t delta_us);

static inline int64_t clock_now_us(const cbm_clock_t *c) { return c->now_us(c->ctx); }

/* Monotonic microseconds, for measuring durations only. */
int64_t clock_mono_us(void);

#endif
