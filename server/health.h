/*
 * health.h - the server's health answer, gathered (health.c). Private to the
 * library: GetHealth (workflow_service.c) answers with it, and any other
 * front end (an HTTP readiness probe, say) can call the same function so
 * that every door says the same thing.
 *
 * Threads: server_health_gather blocks on the store (several reads): call it
 * from a worker thread (the thread pool), never from the engine's loop.
 */
#ifndef CBM_SERVER_HEALTH_H
#define CBM_SERVER_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerebelum/cerebelum.h"

/* The outbox is stale when its oldest row waits longer than this (what
 * `cerebelum bus` uses too). */
#define SERVER_HEALTH_OUTBOX_MS 60000

typedef struct server_health_check {
    char name[96];          /* "store", "outbox", "trigger NAME" */
    bool ok;
    char detail[512];       /* one line: the state, or why it is not ok */
} server_health_check_t;

typedef struct server_health {
    bool ok;                /* every check ok */
    server_health_check_t *checks; /* store, each stored trigger by name, outbox */
    size_t n;
} server_health_t;

/*
 * Gather the health of engine e's process and database into *h (finish it
 * with server_health_finish, even on an error):
 *   store    reachable (a read answered);
 *   trigger  each stored trigger, as the bus running it last reported
 *            (cbm_trigger_health_list): not ok when no serve --nats ever ran
 *            it, when it is in error, or when it is stale (its consumer had
 *            not fetched for three fetch waits at its last report, or no
 *            report came for three report periods: its process is gone);
 *   outbox   bus_outbox_health: not ok when its oldest row waits longer
 *            than outbox_threshold_ms (<= 0: SERVER_HEALTH_OUTBOX_MS).
 * The store unreachable is an answer (store not ok, the others "unknown"),
 * not an error. Returns 0, CBM_EINVAL (NULL), CBM_ESTATE (engine not
 * started), CBM_ENOMEM.
 */
int server_health_gather(cbm_engine_t *e, int64_t outbox_threshold_ms, server_health_t *h,
                         cbm_error_t *err);
void server_health_finish(server_health_t *h);

#endif
