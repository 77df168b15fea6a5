/*
 * store_pg_triggers.c - NATS triggers as data and the messages they refused
 * (migration 008; store.h, "Triggers"). One prepared statement per call.
 */
#include "store/pg/store_pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

/* Inserted, replaced by another version, or brought back from a delete: one
 * row. The same version, live: none (the WHERE is false). */
static const char sql_put[] =
    "INSERT INTO cbm_triggers AS t (name, version, definition) VALUES ($1, $2, $3)"
    " ON CONFLICT (name) DO UPDATE SET version = $2, definition = $3, deleted_at = NULL,"
    " updated_at = clock_timestamp()"
    " WHERE t.deleted_at IS NOT NULL OR t.version <> $2";
static const char sql_list[] =
    "SELECT name, version, definition, " PG_US("updated_at")
    " FROM cbm_triggers WHERE deleted_at IS NULL ORDER BY name";
static const char sql_delete[] =
    "UPDATE cbm_triggers SET deleted_at = clock_timestamp()"
    " WHERE name = $1 AND deleted_at IS NULL";
static const char sql_fail_add[] =
    "INSERT INTO cbm_trigger_failures (trigger, stream, seq, subject, reason, data)"
    " VALUES ($1, $2, $3::int8, $4, $5, $6) ON CONFLICT (trigger, stream, seq) DO NOTHING";
static const char sql_fail_list[] =
    "SELECT id, trigger, stream, seq, subject, reason, data, " PG_US("at")
    " FROM cbm_trigger_failures WHERE $1::text IS NULL OR trigger = $1"
    " ORDER BY id DESC LIMIT $2::int8";

int store_trigger_put(store_t *s, const char *name, const char *version, const char *definition,
                      bool *changed, cbm_error_t *err)
{
    const char *vals[3] = {name, version, definition};
    PGresult *res;
    int rc;

    if (changed != NULL) *changed = false;
    if (name == NULL || version == NULL || definition == NULL)
        return cbm_error_set(err, CBM_EINVAL, "store_trigger_put: NULL argument");
    res = store_pg_query(s, STMT_TRIGGER_PUT, sql_put, 3, vals, err, "store_trigger_put", &rc);
    if (res != NULL && changed != NULL) *changed = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return rc;
}

void store_triggers_free(store_trigger_t *t, size_t n)
{
    if (t == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].version);
        free(t[i].definition);
    }
    free(t);
}

int store_trigger_list(store_t *s, store_trigger_t **out, size_t *n, cbm_error_t *err)
{
    PGresult *res;
    store_trigger_t *t;
    size_t rows;
    bool oom = false;
    int rc;

    *out = NULL;
    *n = 0;
    res = store_pg_query(s, STMT_TRIGGER_LIST, sql_list, 0, NULL, err, "store_trigger_list", &rc);
    if (res == NULL) return rc;
    if ((rows = (size_t)PQntuples(res)) == 0) goto done;
    if ((t = calloc(rows, sizeof(*t))) == NULL) {
        rc = cbm_error_set(err, CBM_ENOMEM, "triggers: out of memory");
        goto done;
    }
    for (size_t i = 0; i < rows; i++) {
        t[i].name = store_pg_dup(res, (int)i, 0, &oom);
        t[i].version = store_pg_dup(res, (int)i, 1, &oom);
        t[i].definition = store_pg_dup(res, (int)i, 2, &oom);
        t[i].updated_at_us = store_pg_int(res, (int)i, 3);
    }
    if (oom) {
        store_triggers_free(t, rows);
        rc = cbm_error_set(err, CBM_ENOMEM, "triggers: out of memory");
        goto done;
    }
    *out = t;
    *n = rows;
done:
    PQclear(res);
    return rc;
}

int store_trigger_delete(store_t *s, const char *name, cbm_error_t *err)
{
    PGresult *res;
    int rc;

    if (name == NULL) return cbm_error_set(err, CBM_EINVAL, "store_trigger_delete: no name");
    res = store_pg_query(s, STMT_TRIGGER_DELETE, sql_delete, 1, &name, err,
                         "store_trigger_delete", &rc);
    if (res == NULL) return rc;
    if (strcmp(PQcmdTuples(res), "0") == 0)
        rc = cbm_error_set(err, CBM_ENOTFOUND, "no trigger named '%s'", name);
    PQclear(res);
    return rc;
}

int store_trigger_failure_add(store_t *s, const store_trigger_failure_t *f, cbm_error_t *err)
{
    char seq[24];
    const char *vals[6] = {f->trigger, f->stream, seq, f->subject, f->reason,
                           f->data != NULL ? f->data : ""};
    PGresult *res;
    int rc;

    if (f->trigger == NULL || f->stream == NULL || f->subject == NULL || f->reason == NULL)
        return cbm_error_set(err, CBM_EINVAL, "store_trigger_failure_add: NULL field");
    snprintf(seq, sizeof(seq), "%lld", (long long)f->seq);
    res = store_pg_query(s, STMT_TRIGGER_FAIL_ADD, sql_fail_add, 6, vals, err,
                         "store_trigger_failure_add", &rc);
    PQclear(res);
    return rc;
}

void store_trigger_failures_free(store_trigger_failure_t *f, size_t n)
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

int store_trigger_failure_list(store_t *s, const char *trigger, size_t limit,
                               store_trigger_failure_t **out, size_t *n, cbm_error_t *err)
{
    char lim[24];
    const char *vals[2] = {trigger, lim};
    store_trigger_failure_t *f;
    PGresult *res;
    size_t rows;
    bool oom = false;
    int rc;

    *out = NULL;
    *n = 0;
    snprintf(lim, sizeof(lim), "%zu", limit == 0 ? (size_t)100 : limit);
    res = store_pg_query(s, STMT_TRIGGER_FAIL_LIST, sql_fail_list, 2, vals, err,
                         "store_trigger_failure_list", &rc);
    if (res == NULL) return rc;
    if ((rows = (size_t)PQntuples(res)) == 0) goto done;
    if ((f = calloc(rows, sizeof(*f))) == NULL) {
        rc = cbm_error_set(err, CBM_ENOMEM, "trigger failures: out of memory");
        goto done;
    }
    for (size_t i = 0; i < rows; i++) {
        int r = (int)i;
        f[i].id = store_pg_int(res, r, 0);
        f[i].trigger = store_pg_dup(res, r, 1, &oom);
        f[i].stream = store_pg_dup(res, r, 2, &oom);
        f[i].seq = store_pg_int(res, r, 3);
        f[i].subject = store_pg_dup(res, r, 4, &oom);
        f[i].reason = store_pg_dup(res, r, 5, &oom);
        f[i].data = store_pg_dup(res, r, 6, &oom);
        f[i].at_us = store_pg_int(res, r, 7);
    }
    if (oom) {
        store_trigger_failures_free(f, rows);
        rc = cbm_error_set(err, CBM_ENOMEM, "trigger failures: out of memory");
        goto done;
    }
    *out = f;
    *n = rows;
done:
    PQclear(res);
    return rc;
}

static const char sql_health_put[] =
    "INSERT INTO cbm_trigger_health AS h (trigger, process, state, error, wait_ms, last_fetch_at,"
    " messages, started, existing, failures, naks)"
    " VALUES ($1, $2, $3, $4, $5::int4, clock_timestamp() - $6::int8 * interval '1 ms',"
    " $7::int8, $8::int8, $9::int8, $10::int8, $11::int8)"
    " ON CONFLICT (trigger) DO UPDATE SET process = $2, state = $3, error = $4, wait_ms = $5::int4,"
    " last_fetch_at = excluded.last_fetch_at, messages = $7::int8, started = $8::int8,"
    " existing = $9::int8, failures = $10::int8, naks = $11::int8,"
    " reported_at = clock_timestamp()";
static const char sql_health_list[] =
    "SELECT trigger, process, state, error, wait_ms,"
    " (extract(epoch FROM clock_timestamp() - last_fetch_at) * 1000)::int8,"
    " messages, started, existing, failures, naks,"
    " (extract(epoch FROM clock_timestamp() - reported_at) * 1000)::int8"
    " FROM cbm_trigger_health ORDER BY trigger";

int store_trigger_health_put(store_t *s, const store_trigger_health_t *h, cbm_error_t *err)
{
    char nums[7][24];
    const char *vals[11] = {h->trigger, h->process, h->state, h->error != NULL ? h->error : "",
                            nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], nums[6]};
    PGresult *res;
    int rc;

    snprintf(nums[0], 24, "%d", h->wait_ms);
    snprintf(nums[1], 24, "%lld", (long long)h->last_fetch_ms_ago);
    snprintf(nums[2], 24, "%lld", (long long)h->messages);
    snprintf(nums[3], 24, "%lld", (long long)h->started);
    snprintf(nums[4], 24, "%lld", (long long)h->existing);
    snprintf(nums[5], 24, "%lld", (long long)h->failures);
    snprintf(nums[6], 24, "%lld", (long long)h->naks);
    res = store_pg_query(s, STMT_TRIGGER_HEALTH_PUT, sql_health_put, 11, vals, err,
                         "store_trigger_health_put", &rc);
    PQclear(res);
    return rc;
}

void store_trigger_healths_free(store_trigger_health_t *h, size_t n)
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

int store_trigger_health_list(store_t *s, store_trigger_health_t **out, size_t *n,
                              cbm_error_t *err)
{
    store_trigger_health_t *h;
    PGresult *res;
    size_t rows;
    bool oom = false;
    int rc;

    *out = NULL;
    *n = 0;
    res = store_pg_query(s, STMT_TRIGGER_HEALTH_LIST, sql_health_list, 0, NULL, err,
                         "store_trigger_health_list", &rc);
    if (res == NULL) return rc;
    if ((rows = (size_t)PQntuples(res)) == 0) goto done;
    if ((h = calloc(rows, sizeof(*h))) == NULL) {
        rc = cbm_error_set(err, CBM_ENOMEM, "trigger health: out of memory");
        goto done;
    }
    for (size_t i = 0; i < rows; i++) {
        int r = (int)i;
        h[i].trigger = store_pg_dup(res, r, 0, &oom);
        h[i].process = store_pg_dup(res, r, 1, &oom);
        h[i].state = store_pg_dup(res, r, 2, &oom);
        h[i].error = store_pg_dup(res, r, 3, &oom);
        h[i].wait_ms = (int)store_pg_int(res, r, 4);
        h[i].last_fetch_ms_ago = store_pg_int(res, r, 5);
        h[i].messages = store_pg_int(res, r, 6);
        h[i].started = store_pg_int(res, r, 7);
        h[i].existing = store_pg_int(res, r, 8);
        h[i].failures = store_pg_int(res, r, 9);
        h[i].naks = store_pg_int(res, r, 10);
        h[i].reported_ms_ago = store_pg_int(res, r, 11);
    }
    if (oom) {
        store_trigger_healths_free(h, rows);
        rc = cbm_error_set(err, CBM_ENOMEM, "trigger health: out of memory");
        goto done;
    }
    *out = h;
    *n = rows;
done:
    PQclear(res);
    return rc;
}
