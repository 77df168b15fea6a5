/*
 * bus_internal.h - private to bus/ (built with libnats only).
 *
 *   bus.c          the connection, the watcher thread that keeps one runner
 *                  per stored trigger, health, and stream/consumer set-up
 *   trigger_run.c  a runner: one thread per trigger that fetches small
 *                  batches from its durable pull consumer and turns each
 *                  message into durable starts, then acks it
 *
 * Nothing here runs on the engine's loop: runners call the engine's public
 * API (thread-safe, returns once durable) from their own threads, so a
 * blocking nats.c call can never stall it (c-stack.md section 6).
 */
#ifndef CBM_BUS_INTERNAL_H
#define CBM_BUS_INTERNAL_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/trigger.h"
#include "cerebelum/bus.h"

typedef struct runner {
    struct runner *next;
    cbm_bus_t *bus;
    trigger_t *t;
    pthread_t thread;
    atomic_bool stop;
    atomic_int_least64_t last_fetch_us; /* when a Fetch last returned (or the start) */
    atomic_uint_least64_t messages, started, existing, failures, naks, acks;
    /* the queue of fetched messages and the worker threads (trigger_run.c) */
    pthread_t workers[16];
    int nworkers;
    pthread_mutex_t qmu;
    pthread_cond_t qcv, qspace;
    natsMsg **q;
    int qhead, qlen;
    bool qclose;
    /* under bus->mu */
    char state[16];                     /* "starting", "fetching", "error" */
    char error[256];
} runner_t;

struct cbm_bus {
    cbm_engine_t *engine;
    natsConnection *nc;
    jsCtx *js;
    pthread_t watcher;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;                      /* under mu */
    runner_t *runners;                  /* the watcher's; read under mu */
    bool exit_before_ack;               /* CEREBELUM_TEST_EXIT_BEFORE_ACK=1 (tests only) */
};

int64_t bus_now_us(void);

/* Make sure t's stream (when it gives stream_subjects) and durable consumer
 * exist, then bind a pull subscription to the consumer by name. On failure
 * msg says why (a NATS status, a JetStream error code). */
int bus_subscribe(cbm_bus_t *b, const trigger_t *t, natsSubscription **sub, char *msg,
                  size_t msglen);

/* Start runner r's thread / stop it and wait for it (trigger_run.c). */
int runner_start(runner_t *r);
void runner_stop(runner_t *r);

void bus_set_state(runner_t *r, const char *state, const char *error);

#endif
