/*
 * health.c - the server's health answer (health.h): the store, the NATS
 * triggers and the outbox, each a check with a verdict and one line of
 * detail. Everything is read from the database, not from this process's
 * memory: the triggers' reports (cbm_trigger_health, written every 2 s by
 * whichever serve --nats runs them) and the outbox's rows are the truth
 * whichever process runs the bus or the publisher, so a server without
 * --nats answers the same as one with it.
 */
#include "server/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/outbox.h"
#include "cbm_internal.h"
#include "cerebelum/bus.h"
#include "sdk-c/engine_internal.h"

static server_health_check_t *add(server_health_t *h, const char *name)
{
    server_health_check_t *c = &h->checks[h->n++];
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    return c;
}

static const cbm_trigger_health_t *report_of(const cbm_trigger_health_t *r, size_t n,
                                             const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].trigger, name) == 0) return &r[i];
    return NULL;
}

/* The verdict on one stored trigger, as `cerebelum bus` gives it. */
static void trigger_check(server_health_check_t *c, const cbm_trigger_health_t *r)
{
    c->ok = false;
    if (r == NULL) {
        snprintf(c->detail, sizeof(c->detail), "not running: no serve --nats has run it");
    } else if (r->stale && r->reported_ms_ago > 6000) {
        snprintf(c->detail, sizeof(c->detail),
                 "stale: no report for %.1f s from %s (its process is gone?)",
                 (double)r->reported_ms_ago / 1000, r->process);
    } else if (r->stale) {
        snprintf(c->detail, sizeof(c->detail),
                 "stale: its consumer has not fetched for %.1f s (3 fetch waits are %.1f s)",
                 (double)r->last_fetch_ms_ago / 1000, 3.0 * r->wait_ms / 1000);
    } else if (strcmp(r->state, "error") == 0) {
        snprintf(c->detail, sizeof(c->detail), "error: %s", r->error);
    } else {
        c->ok = true;
        snprintf(c->detail, sizeof(c->detail),
                 "%s, last fetch %.1f s ago, %lld messages, %lld started, %lld existing, "
                 "%lld failures, %lld naks",
                 r->state, (double)r->last_fetch_ms_ago / 1000, (long long)r->messages,
                 (long long)r->started, (long long)r->existing, (long long)r->failures,
                 (long long)r->naks);
    }
}

typedef struct outbox_args {
    int64_t threshold_ms;
    char line[512];
    bool stale;
} outbox_args_t;

static int outbox_read(store_t *s, void *arg, cbm_error_t *err)
{
    outbox_args_t *a = arg;
    return bus_outbox_health(s, a->threshold_ms, a->line, sizeof(a->line), &a->stale, err);
}

int server_health_gather(cbm_engine_t *e, int64_t outbox_threshold_ms, server_health_t *h,
                         cbm_error_t *err)
{
    cbm_trigger_info_t *ts = NULL;
    cbm_trigger_health_t *rs = NULL;
    size_t nt = 0, nr = 0;
    outbox_args_t ob = {0};
    cbm_error_t e2 = {0};
    server_health_check_t *c;
    int rc;

    if (h == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL health");
    memset(h, 0, sizeof(*h));
    if (e == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL engine");
    /* The store: the triggers' list is the first read. */
    rc = cbm_trigger_list(e, &ts, &nt, &e2);
    if (rc == CBM_ESTATE || rc == CBM_ENOMEM) return cbm_error_set(err, rc, "%s", e2.message);
    if (rc == 0) rc = cbm_trigger_health_list(e, &rs, &nr, &e2);
    if ((h->checks = calloc(nt + 2, sizeof(*h->checks))) == NULL) {
        rc = cbm_error_set(err, CBM_ENOMEM, "health: out of memory");
        goto done;
    }
    c = add(h, "store");
    if (rc != 0) {
        /* Unreachable (or refusing): that is the answer. */
        snprintf(c->detail, sizeof(c->detail), "unreachable: %.480s", e2.message);
        c = add(h, "outbox");
        snprintf(c->detail, sizeof(c->detail), "unknown: the store is unreachable");
        rc = 0;
        goto done;
    }
    c->ok = true;
    snprintf(c->detail, sizeof(c->detail), "reachable");
    for (size_t i = 0; i < nt; i++) {
        char name[96];
        snprintf(name, sizeof(name), "trigger %s", ts[i].name);
        trigger_check(add(h, name), report_of(rs, nr, ts[i].name));
    }
    c = add(h, "outbox");
    ob.threshold_ms = outbox_threshold_ms > 0 ? outbox_threshold_ms : SERVER_HEALTH_OUTBOX_MS;
    cbm_error_clear(&e2);
    if (cbm__engine_read(e, outbox_read, &ob, &e2) != 0) {
        snprintf(c->detail, sizeof(c->detail), "%s", ob.line[0] != '\0' ? ob.line : e2.message);
    } else {
        /* The line without its "outbox: " (the check's name says it). */
        const char *line = strncmp(ob.line, "outbox: ", 8) == 0 ? ob.line + 8 : ob.line;
        c->ok = !ob.stale;
        snprintf(c->detail, sizeof(c->detail), "%s", line);
    }
done:
    h->ok = h->n > 0;
    for (size_t i = 0; i < h->n; i++) h->ok = h->ok && h->checks[i].ok;
    cbm_trigger_healths_free(rs, nr);
    cbm_trigger_infos_free(ts, nt);
    return rc;
}

void server_health_finish(server_health_t *h)
{
    if (h == NULL) return;
    free(h->checks);
    memset(h, 0, sizeof(*h));
}
