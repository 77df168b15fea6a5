/*
 * harness.h - a transport server on its own loop thread, for the proto tests.
 *
 * The test's main thread plays the client (blocking rpc_client_call); the
 * server runs on a uv loop in a second thread, exactly as in the engine.
 * fx_run() runs a function on the loop thread and waits for it, which is how
 * a test reaches into server state (parked calls, counters) without races.
 *
 * The echo handlers answer every method with a reply computed from the
 * request, so a test can check that each field crossed the wire.
 */
#ifndef PROTO_TEST_HARNESS_H
#define PROTO_TEST_HARNESS_H

#include <stdatomic.h>

#include "grpc_transport.h"

#define FX_MAX_PARKED 64

typedef struct fx fx_t;
typedef void (*fx_fn)(fx_t *fx, void *arg);

typedef struct parked {
    rpc_call_t *call; /* NULL when the slot is free */
    fx_t *fx;
    uv_timer_t timer; /* answers after a delay when armed */
    int timer_open;
} parked_t;

struct fx {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t cmd;
    uv_mutex_t mu;
    uv_cond_t cv;
    uv_mutex_t run_mu; /* one fx_run at a time */
    fx_fn fn;
    void *arg;
    int done;

    rpc_server_options_t opts; /* filled by the test before fx_start */
    rpc_server_t *srv;
    int create_rc;
    cbm_error_t err;
    int shut_done;
    char target[300]; /* for clients: 127.0.0.1:<port> or unix:... */

    /* Long-poll state, loop thread only (read through fx_run). */
    int park_polls;       /* PollTask parks instead of answering */
    int answer_after_ms;  /* >0: a parked poll answers itself after this */
    parked_t parked[FX_MAX_PARKED];
    int n_parked;         /* parked right now */
    int n_cancelled;      /* cancel callbacks received */
    int n_answered_late;  /* parked polls answered */
    int late_reply_rc;    /* rc of the last late rpc_call_reply */
    atomic_int handled;   /* handler invocations, any method */
};

/* Fill fx->opts with the echo handlers and listen_addr. */
void fx_init(fx_t *fx, const char *listen_addr);
/* Start the loop thread and create the server on it. Returns create's rc. */
int fx_start(fx_t *fx);
/* Run fn(fx, arg) on the loop thread and wait for it. */
void fx_run(fx_t *fx, fx_fn fn, void *arg);
/* Graceful shutdown, destroy, stop the loop, join, check uv_loop_close. */
void fx_stop(fx_t *fx);

/* Loop-side helpers for fx_run. */
void fx_answer_parked(fx_t *fx, void *arg);   /* answer every parked poll */
/* Poll the loop until pred(fx) holds or ms pass; 1 if it held. */
int fx_wait(fx_t *fx, int (*pred)(fx_t *fx), int ms);

/* A client for fx->target with the given token (may be NULL). */
rpc_client_t *fx_client(fx_t *fx, const char *token);

/* Read a whole file into a malloc'd NUL-terminated string (NULL on error). */
char *fx_read_file(const char *path);

#endif
