/* clock.c - the real and the fake clock (see clock.h). */
#include "scheduler/clock.h"

#include <stdatomic.h>
#include <time.h>

static int64_t system_now_us(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const cbm_clock_t clock_system = {system_now_us, NULL};

static int64_t fake_now_us(void *ctx)
{
    clock_fake_t *f = ctx;
    return atomic_load(&f->now);
}

void clock_fake_init(clock_fake_t *f, int64_t start_us)
{
    f->clock.now_us = fake_now_us;
    f->clock.ctx = f;
    atomic_store(&f->now, start_us);
}

void clock_fake_advance(clock_fake_t *f, int64_t delta_us)
{
    atomic_fetch_add(&f->now, delta_us);
}

int64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
