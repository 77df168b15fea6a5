/*
 * engine_triggers.c - triggers as data on the public engine API
 * (cerebelum/bus.h): bus/trigger.h validates and makes the canonical form,
 * the store keeps it (store.h, "Triggers"). Each call is one store call on
 * the engine's read connection; nothing is cached. Built with or without
 * NATS; without it cbm_bus_create (bus/bus.c) is the stub below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/trigger.h"
#include "cbm_internal.h"
#include "cerebelum/bus.h"
#include "engine_internal.h"

typedef struct put_args {
    const trigger_t *t;
    bool changed;
} put_args_t;

static int do_put(store_t *s, void *arg, cbm_error_t *err)
{
    put_args_t *a = arg;
    return store_trigger_put(s, a->t->name, a->t->version, a->t->canonical, &a->changed, err);
}

int cbm_trigger_put(cbm_engine_t *e, const char *json, char version_out[65], bool *changed,
                    cbm_error_t *err)
{
    put_args_t a = {0};
    trigger_t *t = NULL;
    int rc;

    if (changed != NULL) *changed = false;
    if (e == NULL || json == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if ((rc = trigger_parse(json, strlen(json), &t, err)) != 0) return rc;
    a.t = t;
    if ((rc = cbm__engine_read(e, do_put, &a, err)) == 0) {
        if (version_out != NULL) memcpy(version_out, t->version, 65);
        if (changed != NULL) *changed = a.changed;
    }
    trigger_destroy(t);
    return rc;
}

typedef struct list_args {
    store_trigger_t *rows;
    size_t n;
} list_args_t;

static int do_list(store_t *s, void *arg, cbm_error_t *err)
{
    list_args_t *a = arg;
    store_triggers_free(a->rows, a->n); /* a repeat after a reconnect */
    a->rows = NULL;
    a->n = 0;
    return store_trigger_list(s, &a->rows, &a->n, err);
}

int cbm_trigger_list(cbm_engine_t *e, cbm_trigger_info_t **out, size_t *n, cbm_error_t *err)
{
    list_args_t a = {0};
    cbm_trigger_info_t *t;
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = cbm__engine_read(e, do_list, &a, err)) != 0) return rc;
    if (a.n == 0) return 0;
    if ((t = calloc(a.n, sizeof(*t))) == NULL) {
        store_triggers_free(a.rows, a.n);
        return cbm_error_set(err, CBM_ENOMEM, "triggers: out of memory");
    }
    for (size_t i = 0; i < a.n; i++) { /* the strings are taken over */
        t[i].name = a.rows[i].name;
        t[i].version = a.rows[i].version;
        t[i].definition = a.rows[i].definition;
        t[i].updated_at_us = a.rows[i].updated_at_us;
    }
    free(a.rows);
    *out = t;
    *n = a.n;
    return 0;
}

void cbm_trigger_infos_free(cbm_trigger_info_t *t, size_t n)
{
    if (t == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].version);
        free(t[i].definition);
    }
    free(t);
}

static int do_delete(store_t *s, void *arg, cbm_error_t *err)
{
    return store_trigger_delete(s, arg, err);
}

int cbm_trigger_delete(cbm_engine_t *e, const char *name, cbm_error_t *err)
{
    int rc;
    if (name == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL trigger name");
    if ((rc = cbm_str_check(name, "trigger name", err)) != 0) return rc;
    return cbm__engine_read(e, do_delete, (void *)name, err);
}

typedef struct fail_args {
    const char *trigger;
    size_t limit;
    store_trigger_failure_t *rows;
    size_t n;
} fail_args_t;

static int do_failures(store_t *s, void *arg, cbm_error_t *err)
{
    fail_args_t *a = arg;
    store_trigger_failures_free(a->rows, a->n);
    a->rows = NULL;
    a->n = 0;
    return store_trigger_failure_list(s, a->trigger, a->limit, &a->rows, &a->n, err);
}

int cbm_trigger_failures(cbm_engine_t *e, const char *trigger, size_t limit,
                         cbm_trigger_failure_t **out, size_t *n, cbm_error_t *err)
{
    fail_args_t a = {.trigger = trigger, .limit = limit};
    cbm_trigger_failure_t *f;
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = cbm_str_check(trigger, "trigger name", err)) != 0 ||
        (rc = cbm__engine_read(e, do_failures, &a, err)) != 0)
        return rc;
    if (a.n == 0) return 0;
    if ((f = calloc(a.n, sizeof(*f))) == NULL) {
        store_trigger_failures_free(a.rows, a.n);
        return cbm_error_set(err, CBM_ENOMEM, "trigger failures: out of memory");
    }
    for (size_t i = 0; i < a.n; i++) {
        f[i].id = a.rows[i].id;
        f[i].trigger = a.rows[i].trigger;
        f[i].stream = a.rows[i].stream;
        f[i].subject = a.rows[i].subject;
        f[i].seq = a.rows[i].seq;
        f[i].reason = a.rows[i].reason;
        f[i].data = a.rows[i].data;
        f[i].at_us = a.rows[i].at_us;
    }
    free(a.rows);
    *out = f;
    *n = a.n;
    return 0;
}

void cbm_trigger_failures_free(cbm_trigger_failure_t *f, size_t n)
{
    if (f == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(f[i].trigger);
        free(f[i].stream);
        free(f[i].subject);
        free(f[i].reason);
        free(f[i].data);
    }
    free(f);
}

static int do_fail_add(store_t *s, void *arg, cbm_error_t *err)
{
    return store_trigger_failure_add(s, arg, err);
}

/* For bus/trigger_run.c (engine_internal.h). */
int cbm__trigger_failure_add(cbm_engine_t *e, const store_trigger_failure_t *f, cbm_error_t *err)
{
    return cbm__engine_read(e, do_fail_add, (void *)f, err);
}

static int do_health_put(store_t *s, void *arg, cbm_error_t *err)
{
    return store_trigger_health_put(s, arg, err);
}

int cbm__trigger_health_put(cbm_engine_t *e, const store_trigger_health_t *h, cbm_error_t *err)
{
    return cbm__engine_read(e, do_health_put, (void *)h, err);
}

typedef struct health_args {
    store_trigger_health_t *rows;
    size_t n;
} health_args_t;

static int do_health_list(store_t *s, void *arg, cbm_error_t *err)
{
    health_args_t *a = arg;
    store_trigger_healths_free(a->rows, a->n);
    a->rows = NULL;
    a->n = 0;
    return store_trigger_health_list(s, &a->rows, &a->n, err);
}

/* The bus reports every 2 s (bus/bus.c, WATCH_MS). */
#define REPORT_MS 2000

int cbm_trigger_health_list(cbm_engine_t *e, cbm_trigger_health_t **out, size_t *n,
                            cbm_error_t *err)
{
    health_args_t a = {0};
    cbm_trigger_health_t *h;
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = cbm__engine_read(e, do_health_list, &a, err)) != 0) return rc;
    if (a.n == 0) return 0;
    if ((h = calloc(a.n, sizeof(*h))) == NULL) {
        store_trigger_healths_free(a.rows, a.n);
        return cbm_error_set(err, CBM_ENOMEM, "trigger health: out of memory");
    }
    for (size_t i = 0; i < a.n; i++) {
        const store_trigger_health_t *r = &a.rows[i];
        h[i].trigger = r->trigger;
        h[i].process = r->process;
        h[i].state = r->state;
        h[i].error = r->error;
        h[i].wait_ms = r->wait_ms;
        h[i].last_fetch_ms_ago = r->last_fetch_ms_ago;
        h[i].reported_ms_ago = r->reported_ms_ago;
        h[i].messages = r->messages;
        h[i].started = r->started;
        h[i].existing = r->existing;
        h[i].failures = r->failures;
        h[i].naks = r->naks;
        /* At its report, had it fetched within three waits? And is the
         * report itself recent (a process killed reports nothing)? */
        h[i].stale = r->last_fetch_ms_ago - r->reported_ms_ago > 3 * (int64_t)r->wait_ms ||
                     r->reported_ms_ago > 3 * REPORT_MS;
    }
    free(a.rows);
    *out = h;
    *n = a.n;
    return 0;
}

void cbm_trigger_healths_free(cbm_trigger_health_t *h, size_t n)
{
    if (h == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(h[i].trigger);
        free(h[i].process);
        free(h[i].state);
        free(h[i].error);
    }
    free(h);
}
