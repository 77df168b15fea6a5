/*
 * store_pg_read.c - everything that reads: histories, projections, the keyset
 * pagination of executions, resurrection's bulk load and the load of one
 * execution (each a snapshot plus the events after it), due timers,
 * blueprints; and the functions that free what they return.
 *
 * Timestamps leave the database as int8 microseconds computed from extract()
 * (numeric, exact), so they do not depend on the session's TimeZone or
 * DateStyle and round-trip the engine's clock values exactly.
 */
#include "store/pg/store_pg_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "cbm_internal.h"

#define EXEC_COLS                                                                        \
    "id, blueprint, version, status, inputs::text, result::text, error::text, last_seq, " \
    PG_US("created_at") ", " PG_US("updated_at") ", idempotency_key"
#define UNFINISHED "status NOT IN ('completed', 'failed', 'cancelled')"
/* EXEC_COLS of cbm_executions x plus its snapshot (NULL, NULL when none). */
#define EXEC_SNAP_COLS EXEC_COLS ", sn.state::text, sn.seq"
#define EXEC_SNAP_FROM \
    " FROM cbm_executions x LEFT JOIN cbm_snapshots sn ON sn.execution_id = x.id"
#define EXEC_NCOLS 11

static const char sql_last_seq[] =
    "SELECT coalesce(max(seq), 0) FROM cbm_events WHERE execution_id = $1";
static const char sql_history[] =
    "SELECT execution_id, seq, type, payload, " PG_US("recorded_at")
    " FROM cbm_events WHERE execution_id = $1 AND seq >= $2 ORDER BY seq";
static const char sql_get_exec[] = "SELECT " EXEC_COLS " FROM cbm_executions WHERE id = $1";
/* One row at most: the unique index cbm_executions_idempotency. */
static const char sql_find_key[] =
    "SELECT " EXEC_COLS " FROM cbm_executions WHERE blueprint = $1 AND idempotency_key = $2";
static const char sql_signal_key[] =
    "SELECT seq FROM cbm_events WHERE execution_id = $1 AND type = 'SignalReceived'"
    " AND payload->>'key' = $2 ORDER BY seq LIMIT 1";
static const char sql_exec_exists[] = "SELECT 1 FROM cbm_executions WHERE id = $1";
/* Both resurrection queries order by execution id, so one walk pairs them.
 * Only the events after each execution's snapshot are read, and only those
 * are visited: per unfinished execution, one range scan of cbm_events'
 * primary key (execution_id = x.id AND seq > snapshot seq). Written as a
 * plain join, the planner ran it as a hash join over a sequential scan of
 * EVERY event, finished executions' included, filtering afterwards
 * (measured, 2000 unfinished executions of 1000 events with snapshots at 990
 * among 3M events: 670 ms and 3M rows visited, against 250 ms and the 119k
 * rows returned). A LATERAL subquery with ORDER BY/OFFSET cannot be flattened
 * into such a join, so it stays a parameterised scan per execution; the
 * OFFSET 0 says so explicitly. The suite EXPLAINs it. */
static const char sql_unfinished_execs[] =
    "SELECT " EXEC_SNAP_COLS EXEC_SNAP_FROM " WHERE x." UNFINISHED " ORDER BY x.id";
const char store_pg_sql_unfinished_events[] =
    "SELECT v.execution_id, v.seq, v.type, v.payload, " PG_US("v.recorded_at")
    EXEC_SNAP_FROM
    " CROSS JOIN LATERAL (SELECT e.execution_id, e.seq, e.type, e.payload, e.recorded_at"
    "  FROM cbm_events e WHERE e.execution_id = x.id AND e.seq > coalesce(sn.seq, 0)"
    "  ORDER BY e.seq OFFSET 0) v"
    " WHERE x." UNFINISHED " ORDER BY x.id, v.seq";
/* store_load_running: the same two queries for the executions whose
 * projection says 'running' (cbm_executions_status). */
static const char sql_running_execs[] =
    "SELECT " EXEC_SNAP_COLS EXEC_SNAP_FROM " WHERE x.status = 'running' ORDER BY x.id";
static const char sql_running_events[] =
    "SELECT v.execution_id, v.seq, v.type, v.payload, " PG_US("v.recorded_at")
    EXEC_SNAP_FROM
    " CROSS JOIN LATERAL (SELECT e.execution_id, e.seq, e.type, e.payload, e.recorded_at"
    "  FROM cbm_events e WHERE e.execution_id = x.id AND e.seq > coalesce(sn.seq, 0)"
    "  ORDER BY e.seq OFFSET 0) v"
    " WHERE x.status = 'running' ORDER BY x.id, v.seq";
/* The same for the shards of store_set_shards ($1), with the partial index
 * of unfinished executions by shard (migration 010). */
static const char sql_running_execs_sh[] =
    "SELECT " EXEC_SNAP_COLS EXEC_SNAP_FROM " WHERE x.status = 'running'"
    " AND x.shard = ANY ($1::int[]) AND x." UNFINISHED " ORDER BY x.id";
static const char sql_running_events_sh[] =
    "SELECT v.execution_id, v.seq, v.type, v.payload, " PG_US("v.recorded_at")
    EXEC_SNAP_FROM
    " CROSS JOIN LATERAL (SELECT e.execution_id, e.seq, e.type, e.payload, e.recorded_at"
    "  FROM cbm_events e WHERE e.execution_id = x.id AND e.seq > coalesce(sn.seq, 0)"
    "  ORDER BY e.seq OFFSET 0) v"
    " WHERE x.status = 'running' AND x.shard = ANY ($1::int[]) AND x." UNFINISHED
    " ORDER BY x.id, v.seq";
/* store_load_executions: the same two queries for a given set of ids. */
static const char sql_many_execs[] =
    "SELECT " EXEC_SNAP_COLS EXEC_SNAP_FROM " WHERE x.id = ANY($1::uuid[]) ORDER BY x.id";
static const char sql_many_events[] =
    "SELECT v.execution_id, v.seq, v.type, v.payload, " PG_US("v.recorded_at")
    EXEC_SNAP_FROM
    " CROSS JOIN LATERAL (SELECT e.execution_id, e.seq, e.type, e.payload, e.recorded_at"
    "  FROM cbm_events e WHERE e.execution_id = x.id AND e.seq > coalesce(sn.seq, 0)"
    "  ORDER BY e.seq OFFSET 0) v"
    " WHERE x.id = ANY($1::uuid[]) ORDER BY x.id, v.seq";
/* store_load_execution: the projection and snapshot, then sql_history from
 * the snapshot's seq + 1, in one REPEATABLE READ transaction. */
static const char sql_load_exec[] = "SELECT " EXEC_SNAP_COLS EXEC_SNAP_FROM " WHERE x.id = $1";
/* Due timers: a range of cbm_timers_due (due_at, execution_id, key) read in
 * index order, so LIMIT stops the scan and there is no sort. A NULL bound
 * ($1 beyond the exact range) means every timer. */
const char store_pg_sql_timers_due[] =
    "SELECT execution_id, kind, key, " PG_US("due_at") " FROM cbm_timers"
    " WHERE due_at <= coalesce('epoch'::timestamptz + $1::int8 * interval '1 microsecond',"
    "  'infinity'::timestamptz)"
    " ORDER BY due_at, execution_id, key LIMIT $2::int8";
/* The same range after a cursor: due_at > $3 (every timer of that time
 * already read), or (due_at, execution_id, key) > ($3, $4, $5), a row
 * comparison that is an index condition of cbm_timers_due, so a page
 * starts where the last one ended without reading it again. */
#define PG_TS(p) "'epoch'::timestamptz + " p "::int8 * interval '1 microsecond'"
static const char sql_timers_after[] =
    "SELECT execution_id, kind, key, " PG_US("due_at") " FROM cbm_timers"
    " WHERE due_at > " PG_TS("$3")
    "  AND due_at <= coalesce(" PG_TS("$1") ", 'infinity'::timestamptz)"
    " ORDER BY due_at, execution_id, key LIMIT $2::int8";
static const char sql_timers_cursor[] =
    "SELECT execution_id, kind, key, " PG_US("due_at") " FROM cbm_timers"
    " WHERE (due_at, execution_id, key) > (" PG_TS("$3") ", $4::uuid, $5::text)"
    "  AND due_at <= coalesce(" PG_TS("$1") ", 'infinity'::timestamptz)"
    " ORDER BY due_at, execution_id, key LIMIT $2::int8";
/* The three with the shard filter of store_set_shards ($6): the same index
 * range, rows of other shards filtered out as it is read. */
#define SHARD_FILTER " AND cbm_shard_of(execution_id) = ANY ($6::int[])"
static const char sql_timers_due_sh[] =
    "SELECT execution_id, kind, key, " PG_US("due_at") " FROM cbm_timers"
    " WHERE due_at <= coalesce('epoch'::timestamptz + $1::int8 * interval '1 microsecond',"
    "  'infinity'::timestamptz) AND $3::text IS NULL AND $4::text IS NULL AND $5::text IS NULL"
    SHARD_FILTER
    " ORDER BY due_at, execution_id, key LIMIT $2::int8";
static const char sql_timers_after_sh[] =
    "SELECT execution_id, kind, key, " PG_US("due_at") " FROM cbm_timers"
    " WHERE due_at > " PG_TS("$3")
    "  AND due_at <= coalesce(" PG_TS("$1") ", 'infinity'::timestamptz)"
    "  AND $4::text IS NULL AND $5::text IS NULL" SHARD_FILTER
    " ORDER BY due_at, execution_id, key LIMIT $2::int8";
static const char sql_timers_cursor_sh[] =
    "SELECT execution_id, kind, key, " PG_US("due_at") " FROM cbm_timers"
    " WHERE (due_at, execution_id, key) > (" PG_TS("$3") ", $4::uuid, $5::text)"
    "  AND due_at <= coalesce(" PG_TS("$1") ", 'infinity'::timestamptz)" SHARD_FILTER
    " ORDER BY due_at, execution_id, key LIMIT $2::int8";
static const char sql_bp_put[] =
    "INSERT INTO cbm_blueprints (name, version, definition) VALUES ($1, $2, $3::jsonb)"
    " ON CONFLICT (name, version) DO NOTHING";
static const char sql_bp_get[] =
    "SELECT version, definition::text FROM cbm_blueprints WHERE name = $1 AND version = $2";
static const char sql_bp_latest[] =
    "SELECT version, definition::text FROM cbm_blueprints WHERE name = $1"
    " ORDER BY created_at DESC LIMIT 1";

/* The server would reject a malformed id with SQLSTATE 22P02; say so
 * precisely instead of as a store failure. */
static int check_id(const char *id, const char *what, cbm_error_t *err)
{
    uuid_t u;

    if (id == NULL || uuid_parse(id, u) != 0)
        return cbm_error_set(err, CBM_EINVAL, "%s: not a UUID: \"%s\"", what, id != NULL ? id : "(null)");
    return 0;
}

static void copy_id(char dst[37], const PGresult *res, int row, int col)
{
    snprintf(dst, 37, "%s", PQgetvalue(res, row, col));
}

/* Rows of an EXEC_COLS or EXEC_SNAP_COLS query into a new array; n = 0
 * gives NULL. */
static int fill_execs(const PGresult *res, store_execution_t **out, size_t *n, cbm_error_t *err)
{
    size_t rows = (size_t)PQntuples(res);
    store_execution_t *xs;
    bool oom = false;

    *out = NULL;
    *n = 0;
    if (rows == 0) return 0;
    xs = calloc(rows, sizeof(*xs));
    if (xs == NULL) return cbm_error_set(err, CBM_ENOMEM, "store: out of memory");
    for (size_t i = 0; i < rows; i++) {
        store_execution_t *x = &xs[i];
        int r = (int)i;

        copy_id(x->id, res, r, 0);
        x->blueprint = store_pg_dup(res, r, 1, &oom);
        x->version = store_pg_dup(res, r, 2, &oom);
        x->status = store_pg_dup(res, r, 3, &oom);
        x->inputs = store_pg_dup(res, r, 4, &oom);
        x->result = store_pg_dup(res, r, 5, &oom);
        x->error = store_pg_dup(res, r, 6, &oom);
        x->last_seq = store_pg_int(res, r, 7);
        x->created_at_us = store_pg_int(res, r, 8);
        x->updated_at_us = store_pg_int(res, r, 9);
        x->idempotency_key = store_pg_dup(res, r, 10, &oom);
        if (PQnfields(res) > EXEC_NCOLS) {
            x->snapshot = store_pg_dup(res, r, EXEC_NCOLS, &oom);
            x->snapshot_seq = store_pg_int(res, r, EXEC_NCOLS + 1);
        }
    }
    if (oom) {
        store_executions_free(xs, rows);
        return cbm_error_set(err, CBM_ENOMEM, "store: out of memory");
    }
    *out = xs;
    *n = rows;
    return 0;
}

/* Rows of (execution_id, seq, type, payload, recorded_at_us). */
static int fill_events(const PGresult *res, store_event_t **out, size_t *n, cbm_error_t *err)
{
    size_t rows = (size_t)PQntuples(res);
    store_event_t *ev;
    bool oom = false;

    *out = NULL;
    *n = 0;
    if (rows == 0) return 0;
    ev = calloc(rows, sizeof(*ev));
    if (ev == NULL) return cbm_error_set(err, CBM_ENOMEM, "store: out of memory");
    for (size_t i = 0; i < rows; i++) {
        int r = (int)i;

        copy_id(ev[i].execution_id, res, r, 0);
        ev[i].seq = store_pg_int(res, r, 1);
        ev[i].type = store_pg_dup(res, r, 2, &oom);
        ev[i].payload = store_pg_dup(res, r, 3, &oom);
        ev[i].recorded_at_us = store_pg_int(res, r, 4);
    }
    if (oom) {
        store_events_free(ev, rows);
        return cbm_error_set(err, CBM_ENOMEM, "store: out of memory");
    }
    *out = ev;
    *n = rows;
    return 0;
}

int store_last_seq(store_t *s, const char *execution_id, int64_t *out, cbm_error_t *err)
{
    PGresult *res;
    int rc = check_id(execution_id, "store_last_seq", err);

    if (rc != 0) return rc;
    res = store_pg_query(s, STMT_LAST_SEQ, sql_last_seq, 1, &execution_id, err, "store_last_seq", &rc);
    if (res == NULL) return rc;
    *out = store_pg_int(res, 0, 0);
    PQclear(res);
    return 0;
}

int store_read_history(store_t *s, const char *execution_id, int64_t from_seq,
                       store_event_t **out, size_t *n, cbm_error_t *err)
{
    char from[24];
    const char *vals[2] = {execution_id, from};
    PGresult *res;
    int rc;

    *out = NULL;
    *n = 0;
    rc = check_id(execution_id, "store_read_history", err);
    if (rc != 0) return rc;
    snprintf(from, sizeof(from), "%lld", (long long)from_seq);
    res = store_pg_query(s, STMT_HISTORY, sql_history, 2, vals, err, "store_read_history", &rc);
    if (res == NULL) return rc;
    rc = fill_events(res, out, n, err);
    PQclear(res);
    return rc;
}

int store_get_execution(store_t *s, const char *id, store_execution_t **out, cbm_error_t *err)
{
    PGresult *res;
    size_t n;
    int rc;

    *out = NULL;
    rc = check_id(id, "store_get_execution", err);
    if (rc != 0) return rc;
    res = store_pg_query(s, STMT_GET_EXEC, sql_get_exec, 1, &id, err, "store_get_execution", &rc);
    if (res == NULL) return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return cbm_error_set(err, CBM_ENOTFOUND, "execution %s not found", id);
    }
    rc = fill_execs(res, out, &n, err);
    PQclear(res);
    return rc;
}

/*
 * Lists are not prepared: each call is planned with its actual values. A
 * generic plan would guess the selectivity of status = $1 and (measured on
 * 200k rows) walk the created_at index filtering out 100k rows for a rare
 * status, where the custom plan uses the (status, created_at, id) index. A
 * plan costs ~0.1 ms; a listing is not the hot path.
 *
 * The cursor row's created_at is fetched by a scalar subquery so the row
 * comparison stays an index condition (a join would make it a filter).
 */
int store_list_executions(store_t *s, const store_list_filter_t *f, store_execution_t **out,
                          size_t *n, cbm_error_t *err)
{
    static const store_list_filter_t all = {0};
    char sql[1024], limit[24];
    const char *dir;
    const char *vals[4];
    int np = 0, len, rc;
    PGresult *res;

    *out = NULL;
    *n = 0;
    if (f == NULL) f = &all;
    dir = f->newest_first ? "DESC" : "";
    if (f->after_id != NULL && (rc = check_id(f->after_id, "store_list_executions", err)) != 0)
        return rc;
    len = snprintf(sql, sizeof(sql), "SELECT " EXEC_COLS " FROM cbm_executions WHERE true");
    if (f->status != NULL) {
        vals[np++] = f->status;
        len += snprintf(sql + len, sizeof(sql) - (size_t)len, " AND status = $%d", np);
    }
    if (f->blueprint != NULL) {
        vals[np++] = f->blueprint;
        len += snprintf(sql + len, sizeof(sql) - (size_t)len, " AND blueprint = $%d", np);
    }
    if (f->after_id != NULL) {
        vals[np++] = f->after_id;
        len += snprintf(sql + len, sizeof(sql) - (size_t)len,
                        " AND (created_at, id) %s ((SELECT created_at FROM cbm_executions"
                        " WHERE id = $%d::uuid), $%d::uuid)", f->newest_first ? "<" : ">", np, np);
    }
    snprintf(limit, sizeof(limit), "%zu", f->limit != 0 ? f->limit : 100);
    vals[np++] = limit;
    /* Both columns in one direction, so an index on (..., created_at, id)
     * serves either order (a backward scan for newest first). */
    len += snprintf(sql + len, sizeof(sql) - (size_t)len,
                    " ORDER BY created_at %s, id %s LIMIT $%d", dir, dir, np);
    assert(len > 0 && (size_t)len < sizeof(sql));

    res = PQexecParams(s->conn, sql, np, NULL, vals, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_pg_fail(s, res, err, "store_list_executions");
        PQclear(res);
        return rc;
    }
    rc = fill_execs(res, out, n, err);
    PQclear(res);
    if (rc != 0 || *n > 0 || f->after_id == NULL) return rc;

    /* An empty page: the end, or a cursor that names no execution? */
    res = store_pg_query(s, STMT_EXEC_EXISTS, sql_exec_exists, 1, &f->after_id, err,
                "store_list_executions", &rc);
    if (res == NULL) return rc;
    if (PQntuples(res) == 0)
        rc = cbm_error_set(err, CBM_ENOTFOUND, "list cursor: execution %s not found", f->after_id);
    PQclear(res);
    return rc;
}

/* The events loaded for x must be exactly seq snapshot_seq+1 .. last_seq:
 * anything else (a gap, a snapshot beyond the history) would rebuild a wrong
 * state, so it is reported rather than handed to the engine. */
static int check_run(const store_execution_t *x, const store_event_t *ev, size_t n,
                     const char *what, cbm_error_t *err)
{
    int64_t want = x->last_seq - x->snapshot_seq;

    if (want >= 0 && (uint64_t)want == n && (n == 0 || ev[0].seq == x->snapshot_seq + 1) &&
        (n == 0 || ev[n - 1].seq == x->last_seq))
        return 0;
    return cbm_error_set(err, CBM_ESTORE,
                         "%s: execution %s: %zu events after snapshot seq %lld, last_seq %lld",
                         what, x->id, n, (long long)x->snapshot_seq, (long long)x->last_seq);
}

/* Pair each execution with its run of events; both are ordered by id. */
static int pair_events(store_unfinished_t *u, cbm_error_t *err)
{
    size_t j = 0;
    int rc;

    if (u->nexecs == 0) return 0;
    u->first = calloc(u->nexecs, sizeof(*u->first));
    u->count = calloc(u->nexecs, sizeof(*u->count));
    if (u->first == NULL || u->count == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "store_load_unfinished: out of memory");
    for (size_t i = 0; i < u->nexecs; i++) {
        u->first[i] = j;
        while (j < u->nevents && strcmp(u->events[j].execution_id, u->execs[i].id) == 0) j++;
        u->count[i] = j - u->first[i];
        rc = check_run(&u->execs[i], u->events + u->first[i], u->count[i], "store_load_unfinished",
                       err);
        if (rc != 0) return rc;
    }
    if (j != u->nevents) /* one snapshot serves both queries: cannot happen */
        return cbm_error_set(err, CBM_ESTORE, "store_load_unfinished: events out of order");
    return 0;
}

static void end_txn(store_t *s, const char *sql)
{
    if (!store_ok(s)) return;
    PQclear(PQexec(s->conn, sql));
    /* A COMMIT or ROLLBACK that did not run (libpq could not allocate its
     * result, say) leaves the read-only transaction open on a healthy
     * connection, and every later write on it would fail: end it. */
    if (store_ok(s) && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
        PQclear(PQexec(s->conn, "ROLLBACK"));
}

/* Start a read-only transaction whose queries all see one snapshot. JIT is
 * off inside it: the per-execution loop of the resurrection query is costed
 * far above jit_above_cost, and compiling it took 176 ms of a 500 ms load
 * (measured above) for a query that runs once. One round trip for both. */
static int begin_read(store_t *s, const char *what, cbm_error_t *err)
{
    PGresult *res = PQexec(s->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
                                    " SET LOCAL jit = off");
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) rc = store_pg_fail(s, res, err, what);
    PQclear(res);
    if (rc != 0) end_txn(s, "ROLLBACK"); /* BEGIN may have run, then SET failed */
    return rc;
}

/* Executions and their events (after their snapshots) from the two
 * queries given, which both order by execution id, in one snapshot. */
static int load_set(store_t *s, enum pg_stmt xid, const char *xsql, enum pg_stmt eid,
                    const char *esql, const char *what, store_unfinished_t *out,
                    cbm_error_t *err)
{
    const char *pv[1] = {s->shards}; /* the _SH statements' $1 */
    PGresult *res;
    int rc;

    memset(out, 0, sizeof(*out));
    /* One snapshot for both queries, so the events match the executions. */
    rc = begin_read(s, what, err);
    if (rc != 0) return rc;
    res = store_pg_query(s, xid, xsql, xid == STMT_RUNNING_EXECS_SH, pv, err, what, &rc);
    if (res == NULL) goto rollback;
    rc = fill_execs(res, &out->execs, &out->nexecs, err);
    PQclear(res);
    if (rc != 0) goto rollback;
    if (out->nexecs == 0) { /* nothing to read the events of */
        end_txn(s, "COMMIT");
        return 0;
    }
    res = store_pg_query(s, eid, esql, eid == STMT_RUNNING_EVENTS_SH, pv, err, what, &rc);
    if (res == NULL) goto rollback;
    rc = fill_events(res, &out->events, &out->nevents, err);
    PQclear(res);
    if (rc != 0) goto rollback;
    end_txn(s, "COMMIT"); /* read only: nothing to lose if this fails */
    rc = pair_events(out, err);
    if (rc != 0) store_unfinished_free(out);
    return rc;

rollback:
    end_txn(s, "ROLLBACK");
    store_unfinished_free(out);
    return rc;
}

int store_load_unfinished(store_t *s, store_unfinished_t *out, cbm_error_t *err)
{
    return load_set(s, STMT_UNFINISHED_EXECS, sql_unfinished_execs, STMT_UNFINISHED_EVENTS,
                    store_pg_sql_unfinished_events, "store_load_unfinished", out, err);
}

int store_load_running(store_t *s, store_unfinished_t *out, cbm_error_t *err)
{
    if (s->shards != NULL)
        return load_set(s, STMT_RUNNING_EXECS_SH, sql_running_execs_sh, STMT_RUNNING_EVENTS_SH,
                        sql_running_events_sh, "store_load_running", out, err);
    return load_set(s, STMT_RUNNING_EXECS, sql_running_execs, STMT_RUNNING_EVENTS,
                    sql_running_events, "store_load_running", out, err);
}

int store_load_executions(store_t *s, const char *const *ids, size_t n, store_unfinished_t *out,
                          cbm_error_t *err)
{
    static const char what[] = "store_load_executions";
    PGresult *res;
    char *arr, *p;
    const char *vals[1];
    int rc;

    memset(out, 0, sizeof(*out));
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if ((rc = check_id(ids[i], what, err)) != 0) return rc;
    /* UUIDs need no quoting inside an array literal. */
    if ((arr = malloc(n * 37 + 3)) == NULL) return cbm_error_set(err, CBM_ENOMEM, "%s: out of memory", what);
    p = arr;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) *p++ = ',';
        memcpy(p, ids[i], 36);
        p += 36;
    }
    *p++ = '}';
    *p = '\0';
    vals[0] = arr;
    rc = begin_read(s, what, err);
    if (rc != 0) {
        free(arr);
        return rc;
    }
    res = store_pg_query(s, STMT_LOAD_MANY_EXECS, sql_many_execs, 1, vals, err, what, &rc);
    if (res == NULL) goto rollback;
    rc = fill_execs(res, &out->execs, &out->nexecs, err);
    PQclear(res);
    if (rc != 0) goto rollback;
    res = store_pg_query(s, STMT_LOAD_MANY_EVENTS, sql_many_events, 1, vals, err, what, &rc);
    if (res == NULL) goto rollback;
    rc = fill_events(res, &out->events, &out->nevents, err);
    PQclear(res);
    if (rc != 0) goto rollback;
    end_txn(s, "COMMIT");
    free(arr);
    rc = pair_events(out, err);
    if (rc != 0) store_unfinished_free(out);
    return rc;

rollback:
    end_txn(s, "ROLLBACK");
    free(arr);
    store_unfinished_free(out);
    return rc;
}

void store_unfinished_free(store_unfinished_t *u)
{
    if (u == NULL) return;
    store_executions_free(u->execs, u->nexecs);
    store_events_free(u->events, u->nevents);
    free(u->first);
    free(u->count);
    memset(u, 0, sizeof(*u));
}

int store_load_execution(store_t *s, const char *id, store_execution_t **x,
                         store_event_t **events, size_t *n, cbm_error_t *err)
{
    static const char what[] = "store_load_execution";
    char from[24];
    const char *vals[2] = {id, from};
    PGresult *res;
    size_t nx = 0;
    int rc;

    assert(x != NULL && events != NULL && n != NULL);
    *x = NULL;
    *events = NULL;
    *n = 0;
    rc = check_id(id, what, err);
    if (rc != 0) return rc;
    /* The projection, its snapshot and the events after it from one
     * snapshot of the database: a decision committed in between cannot
     * give a projection that disagrees with its history. */
    rc = begin_read(s, what, err);
    if (rc != 0) return rc;
    res = store_pg_query(s, STMT_LOAD_EXEC, sql_load_exec, 1, &id, err, what, &rc);
    if (res == NULL) goto rollback;
    if (PQntuples(res) == 0) {
        PQclear(res);
        rc = cbm_error_set(err, CBM_ENOTFOUND, "execution %s not found", id);
        goto rollback;
    }
    rc = fill_execs(res, x, &nx, err);
    PQclear(res);
    if (rc != 0) goto rollback;
    snprintf(from, sizeof(from), "%lld", (long long)((*x)->snapshot_seq + 1));
    res = store_pg_query(s, STMT_HISTORY, sql_history, 2, vals, err, what, &rc);
    if (res == NULL) goto rollback;
    rc = fill_events(res, events, n, err);
    PQclear(res);
    if (rc != 0) goto rollback;
    end_txn(s, "COMMIT"); /* read only: nothing to lose if this fails */
    rc = check_run(*x, *events, *n, what, err);
    if (rc == 0) return 0;
    goto cleanup;

rollback:
    end_txn(s, "ROLLBACK");
cleanup:
    store_executions_free(*x, nx);
    store_events_free(*events, *n);
    *x = NULL;
    *events = NULL;
    *n = 0;
    return rc;
}

int store_timers_due(store_t *s, int64_t until_us, size_t limit, store_timer_t **out, size_t *n,
                     cbm_error_t *err)
{
    return store_timers_page(s, NULL, until_us, limit, out, n, err);
}

int store_timers_page(store_t *s, const store_timer_t *after, int64_t until_us, size_t limit,
                      store_timer_t **out, size_t *n, cbm_error_t *err)
{
    /* 'epoch' + us * interval goes through a double: exact below 2^53 (the
     * limit on every timestamp the store keeps), out of range far beyond. */
    const int64_t exact = INT64_C(1) << 53;
    char until[24], lim[24], from[24];
    const char *vals[6] = {until, lim, from, NULL, NULL, s->shards};
    store_timer_t *t;
    PGresult *res;
    size_t rows;
    bool oom = false;
    int rc;

    assert(out != NULL && n != NULL);
    *out = NULL;
    *n = 0;
    if (limit == 0 || until_us <= -exact) return 0;
    if (after != NULL && (after->due_at_us >= exact || after->due_at_us <= -exact))
        return cbm_error_set(err, CBM_EINVAL, "store_timers_page: cursor out of range");
    if (after != NULL && after->key != NULL &&
        (rc = check_id(after->execution_id, "store_timers_page", err)) != 0)
        return rc;
    if (until_us >= exact) vals[0] = NULL; /* every timer */
    else snprintf(until, sizeof(until), "%lld", (long long)until_us);
    snprintf(lim, sizeof(lim), "%llu",
             (unsigned long long)(limit < (size_t)INT64_MAX ? limit : (size_t)INT64_MAX));
    if (s->shards != NULL) {
        /* One of the filtered statements, with all six parameters. */
        enum pg_stmt id = STMT_TIMERS_DUE_SH;
        const char *sql = sql_timers_due_sh;
        if (after == NULL) {
            vals[2] = NULL;
        } else {
            snprintf(from, sizeof(from), "%lld", (long long)after->due_at_us);
            if (after->key == NULL) {
                id = STMT_TIMERS_AFTER_SH;
                sql = sql_timers_after_sh;
            } else {
                id = STMT_TIMERS_CURSOR_SH;
                sql = sql_timers_cursor_sh;
                vals[3] = after->execution_id;
                vals[4] = after->key;
            }
        }
        res = store_pg_query(s, id, sql, 6, vals, err, "store_timers_page", &rc);
    } else if (after == NULL) {
        res = store_pg_query(s, STMT_TIMERS_DUE, store_pg_sql_timers_due, 2, vals, err, "store_timers_due",
                    &rc);
    } else {
        snprintf(from, sizeof(from), "%lld", (long long)after->due_at_us);
        if (after->key == NULL) {
            res = store_pg_query(s, STMT_TIMERS_AFTER, sql_timers_after, 3, vals, err, "store_timers_page",
                        &rc);
        } else {
            vals[3] = after->execution_id;
            vals[4] = after->key;
            res = store_pg_query(s, STMT_TIMERS_CURSOR, sql_timers_cursor, 5, vals, err,
                        "store_timers_page", &rc);
        }
    }
    if (res == NULL) return rc;
    rows = (size_t)PQntuples(res);
    if (rows == 0) {
        PQclear(res);
        return 0;
    }
    t = calloc(rows, sizeof(*t));
    if (t == NULL) {
        PQclear(res);
        return cbm_error_set(err, CBM_ENOMEM, "store_timers_due: out of memory");
    }
    for (size_t i = 0; i < rows; i++) {
        int r = (int)i;

        copy_id(t[i].execution_id, res, r, 0);
        t[i].kind = store_pg_dup(res, r, 1, &oom);
        t[i].key = store_pg_dup(res, r, 2, &oom);
        t[i].due_at_us = store_pg_int(res, r, 3);
    }
    PQclear(res);
    if (oom) {
        store_timers_free(t, rows);
        return cbm_error_set(err, CBM_ENOMEM, "store_timers_due: out of memory");
    }
    *out = t;
    *n = rows;
    return 0;
}

void store_timers_free(store_timer_t *t, size_t n)
{
    if (t == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(t[i].kind);
        free(t[i].key);
    }
    free(t);
}

int store_put_blueprint(store_t *s, const char *name, const char *version,
                        const char *canonical_json, bool *inserted, cbm_error_t *err)
{
    const char *vals[3] = {name, version, canonical_json};
    PGresult *res;
    int rc;

    if (inserted != NULL) *inserted = false;
    if (name == NULL || version == NULL || canonical_json == NULL)
        return cbm_error_set(err, CBM_EINVAL, "store_put_blueprint: name, version and JSON are required");
    res = store_pg_query(s, STMT_BP_PUT, sql_bp_put, 3, vals, err, "store_put_blueprint", &rc);
    /* ON CONFLICT DO NOTHING: "INSERT 0 1" when stored, "INSERT 0 0" when the
     * row was there already. */
    if (res != NULL && inserted != NULL) *inserted = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return rc;
}

int store_find_by_key(store_t *s, const char *blueprint, const char *key,
                      store_execution_t **out, cbm_error_t *err)
{
    const char *vals[2] = {blueprint, key};
    PGresult *res;
    size_t n;
    int rc;

    *out = NULL;
    if (blueprint == NULL || key == NULL)
        return cbm_error_set(err, CBM_EINVAL, "store_find_by_key: blueprint and key are required");
    res = store_pg_query(s, STMT_FIND_KEY, sql_find_key, 2, vals, err, "store_find_by_key", &rc);
    if (res == NULL) return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return cbm_error_set(err, CBM_ENOTFOUND, "no execution of %s with idempotency key '%s'",
                             blueprint, key);
    }
    rc = fill_execs(res, out, &n, err);
    PQclear(res);
    return rc;
}

int store_signal_key_seq(store_t *s, const char *execution_id, const char *key, int64_t *seq,
                         cbm_error_t *err)
{
    const char *vals[2] = {execution_id, key};
    PGresult *res;
    int rc;

    *seq = 0;
    if (execution_id == NULL || key == NULL)
        return cbm_error_set(err, CBM_EINVAL, "store_signal_key_seq: execution and key are required");
    res = store_pg_query(s, STMT_SIGNAL_KEY, sql_signal_key, 2, vals, err, "store_signal_key_seq",
                         &rc);
    if (res == NULL) return rc;
    if (PQntuples(res) > 0) *seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}

int store_get_blueprint(store_t *s, const char *name, const char *version,
                        char **version_out, char **json_out, cbm_error_t *err)
{
    const char *vals[2] = {name, version};
    PGresult *res;
    bool oom = false;
    char *v, *j;
    int rc;

    if (version_out != NULL) *version_out = NULL;
    if (json_out != NULL) *json_out = NULL;
    if (name == NULL) return cbm_error_set(err, CBM_EINVAL, "store_get_blueprint: no name");
    if (version != NULL)
        res = store_pg_query(s, STMT_BP_GET, sql_bp_get, 2, vals, err, "store_get_blueprint", &rc);
    else
        res = store_pg_query(s, STMT_BP_LATEST, sql_bp_latest, 1, vals, err, "store_get_blueprint", &rc);
    if (res == NULL) return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return cbm_error_set(err, CBM_ENOTFOUND, "blueprint %s%s%s not found", name,
                             version != NULL ? " version " : "", version != NULL ? version : "");
    }
    v = version_out != NULL ? store_pg_dup(res, 0, 0, &oom) : NULL;
    j = json_out != NULL ? store_pg_dup(res, 0, 1, &oom) : NULL;
    PQclear(res);
    if (oom) {
        free(v);
        free(j);
        return cbm_error_set(err, CBM_ENOMEM, "store_get_blueprint: out of memory");
    }
    if (version_out != NULL) *version_out = v;
    if (json_out != NULL) *json_out = j;
    return 0;
}

void store_events_free(store_event_t *ev, size_t n)
{
    if (ev == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(ev[i].type);
        free(ev[i].payload);
    }
    free(ev);
}

void store_executions_free(store_execution_t *ex, size_t n)
{
    if (ex == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(ex[i].blueprint);
        free(ex[i].version);
        free(ex[i].status);
        free(ex[i].inputs);
        free(ex[i].result);
        free(ex[i].error);
        free(ex[i].snapshot);
        free(ex[i].idempotency_key);
    }
    free(ex);
}
