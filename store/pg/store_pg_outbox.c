/*
 * store_pg_outbox.c - the outbox's side of the store (migration 009,
 * docs/outbox.md): the database-level switch, and what the one publisher
 * (bus/outbox.c) needs: its advisory lock, the next rows, deleting the
 * acknowledged ones, and the backlog's size and age for health.
 *
 * The rows themselves are written by the group commit (store_pg_append.c,
 * CTE ob), never here.
 */
#include "store/pg/store_pg_internal.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

/* 'CBMOUTBX': the publisher's session advisory lock, one per database. */
#define OUTBOX_LOCK "x'43424d4f55544258'::int8"

/* The first row (by seq) of each execution among the limit oldest rows, in
 * id order: an execution never has two rows in flight, and its next row is
 * read only once this one is deleted, i.e. stored by the stream, so no
 * failure can let a later event of an execution overtake an earlier one.
 * (An execution's ids follow its seqs anyway; ordering the partition by seq
 * does not rely on it.) */
static const char sql_read[] =
    "SELECT id, execution_id, seq, subject, msg_id, payload FROM ("
    " SELECT w.*, row_number() OVER (PARTITION BY w.execution_id ORDER BY w.seq) AS r"
    " FROM (SELECT * FROM cbm_outbox ORDER BY id LIMIT $1::int8) w) t"
    " WHERE r = 1 ORDER BY id";

static const char sql_delete[] = "DELETE FROM cbm_outbox WHERE id = ANY ($1::int8[])";

int store_outbox_configure(store_t *s, bool enabled, const char *subject, int64_t max_payload,
                           cbm_error_t *err)
{
    char cap[32];
    const char *vals[2] = {subject, cap};
    PGresult *res;
    int rc = 0;

    if (!enabled)
        return store_pg_exec_simple(s, "DELETE FROM cbm_outbox_config", err, "outbox: disable");
    if (subject == NULL || subject[0] == '\0') subject = vals[0] = CBM_OUTBOX_SUBJECT_DEFAULT;
    if (max_payload < 0 || max_payload > INT32_MAX)
        return cbm_error_set(err, CBM_EINVAL, "outbox: payload cap %lld out of range",
                             (long long)max_payload);
    snprintf(cap, sizeof(cap), "%lld", (long long)max_payload);
    res = PQexecParams(s->conn,
                       "INSERT INTO cbm_outbox_config (one, subject, max_payload) VALUES (true, $1, $2)"
                       " ON CONFLICT (one) DO UPDATE SET subject = excluded.subject,"
                       " max_payload = excluded.max_payload, updated_at = now()",
                       2, NULL, vals, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = store_pg_fail(s, res, err, "outbox: configure");
    PQclear(res);
    return rc;
}

int store_outbox_try_lock(store_t *s, bool *got, cbm_error_t *err)
{
    PGresult *res = PQexec(s->conn, "SELECT pg_try_advisory_lock(" OUTBOX_LOCK ")");
    int rc = 0;

    *got = false;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = store_pg_fail(s, res, err, "outbox: advisory lock");
    else
        *got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    /* Losing a delete to a crash only republishes a row that the stream
     * drops as a duplicate: no need to wait for the WAL flush. */
    if (rc == 0 && *got)
        rc = store_pg_exec_simple(s, "SET synchronous_commit = off", err, "outbox: session");
    return rc;
}

int store_outbox_read(store_t *s, size_t limit, store_outbox_row_t **out, size_t *n,
                      cbm_error_t *err)
{
    char lim[32];
    const char *vals[1] = {lim};
    PGresult *res;
    store_outbox_row_t *r = NULL;
    bool oom = false;
    int rc = 0, nt;

    *out = NULL;
    *n = 0;
    snprintf(lim, sizeof(lim), "%zu", limit);
    res = store_pg_query(s, STMT_OUTBOX_READ, sql_read, 1, vals, err, "outbox: read", &rc);
    if (res == NULL) return rc;
    nt = PQntuples(res);
    if (nt > 0 && (r = calloc((size_t)nt, sizeof(*r))) == NULL) oom = true;
    for (int i = 0; i < nt && !oom; i++) {
        r[i].id = store_pg_int(res, i, 0);
        snprintf(r[i].execution_id, sizeof(r[i].execution_id), "%s", PQgetvalue(res, i, 1));
        r[i].seq = store_pg_int(res, i, 2);
        r[i].subject = store_pg_dup(res, i, 3, &oom);
        r[i].msg_id = store_pg_dup(res, i, 4, &oom);
        r[i].payload = store_pg_dup(res, i, 5, &oom);
    }
    PQclear(res);
    if (oom) {
        store_outbox_rows_free(r, (size_t)nt);
        return cbm_error_set(err, CBM_ENOMEM, "outbox: read: out of memory");
    }
    *out = r;
    *n = (size_t)nt;
    return 0;
}

int store_outbox_delete(store_t *s, const int64_t *ids, size_t n, cbm_error_t *err)
{
    pg_array_t a;
    const char *vals[1];
    PGresult *res;
    int rc = 0;

    if (n == 0) return 0;
    store_pg_array_init(&a);
    for (size_t i = 0; i < n; i++) store_pg_array_add_int(&a, ids[i]);
    vals[0] = store_pg_array_finish(&a);
    if (vals[0] == NULL) {
        store_pg_array_free(&a);
        return cbm_error_set(err, CBM_ENOMEM, "outbox: delete: out of memory");
    }
    res = store_pg_exec(s, STMT_OUTBOX_DELETE, sql_delete, 1, vals);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = store_pg_fail(s, res, err, "outbox: delete");
    PQclear(res);
    store_pg_array_free(&a);
    return rc;
}

int store_outbox_stats(store_t *s, store_outbox_stats_t *out, cbm_error_t *err)
{
    PGresult *res = PQexec(s->conn,
                           "SELECT EXISTS (SELECT 1 FROM cbm_outbox_config),"
                           " (SELECT subject FROM cbm_outbox_config),"
                           " (SELECT max_payload FROM cbm_outbox_config),"
                           " count(*), coalesce(" PG_US("min(created_at)") ", 0),"
                           " " PG_US("clock_timestamp()") " FROM cbm_outbox");
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_pg_fail(s, res, err, "outbox: stats");
    } else {
        int64_t oldest = store_pg_int(res, 0, 4), now = store_pg_int(res, 0, 5);
        out->enabled = PQgetvalue(res, 0, 0)[0] == 't';
        snprintf(out->subject, sizeof(out->subject), "%s", PQgetvalue(res, 0, 1));
        out->max_payload = store_pg_int(res, 0, 2);
        out->rows = store_pg_int(res, 0, 3);
        out->oldest_age_ms = out->rows > 0 && now > oldest ? (now - oldest) / 1000 : 0;
    }
    PQclear(res);
    return rc;
}

int store_outbox_listen(store_t *s, cbm_error_t *err)
{
    return store_pg_exec_simple(s, "LISTEN cbm_outbox", err, "outbox: listen");
}

/* Drains the notifications received; true if there was one. */
static bool drain(store_t *s)
{
    PGnotify *n;
    bool got = false;

    while ((n = PQnotifies(s->conn)) != NULL) {
        got = true;
        PQfreemem(n);
    }
    return got;
}

int store_outbox_wait(store_t *s, int fd, int64_t timeout_ms, cbm_error_t *err)
{
    struct pollfd p[2];

    if (PQconsumeInput(s->conn) == 0 || PQsocket(s->conn) < 0)
        return store_pg_fail(s, NULL, err, "outbox: wait");
    if (drain(s)) return 0;
    p[0].fd = PQsocket(s->conn);
    p[0].events = POLLIN;
    p[0].revents = 0;
    p[1].fd = fd;
    p[1].events = POLLIN;
    p[1].revents = 0;
    if (poll(p, fd >= 0 ? 2 : 1, timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms) > 0 &&
        p[0].revents != 0) {
        if (PQconsumeInput(s->conn) == 0) return store_pg_fail(s, NULL, err, "outbox: wait");
        drain(s);
    }
    return 0;
}

void store_outbox_rows_free(store_outbox_row_t *r, size_t n)
{
    if (r == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(r[i].subject);
        free(r[i].msg_id);
        free(r[i].payload);
    }
    free(r);
}
