/*
 * store_pg.c - the PostgreSQL store: connection, prepared statements and the
 * mapping of libpq failures onto the CBM_E* space.
 *
 * Blocking libpq on purpose: the engine calls the store from a committer
 * thread, never from its loop (store.h), so the simplest correct client is the
 * right one. Statements are prepared lazily, once per connection, the first
 * time they are used: the tables do not exist before store_migrate(), and a
 * reconnect starts a new session with nothing prepared.
 *
 * Every session plans with enable_seqscan and enable_bitmapscan off and
 * plan_cache_mode = force_generic_plan. Each statement here reaches its rows
 * by key or in index order, and is prepared once per connection; a generic
 * plan is built from the statistics of the moment, and one built while a
 * table was nearly empty (a young database, the first commits after a
 * start) scanned the whole table once it had grown, until an autoanalyze
 * happened to invalidate it: measured, the group commit of 512 wake-ups
 * took 40 to 130 ms instead of 10, by a hash join over a sequential scan of
 * 100k timers and of 100k projections (docs/store.md, "Plans"). Without
 * sequential scans the generic plan is an index plan whatever the
 * statistics said. Bitmap scans are no better for a few rows per key: the
 * load of 2000 executions' events made one bitmap scan and one sort per
 * execution (22 ms; 13 ms as ordered index scans). Forcing the generic plan
 * saves planning each call (a custom plan of the append statement costs
 * 0.8 ms, more than a one-decision commit). Lists, planned per call with
 * their values, are unprepared statements and keep custom plans. JIT is off
 * too: a statement that can only scan a table (a handful of engine rows)
 * is costed above jit_above_cost once sequential scans are "disabled", and
 * compiling it took 155 ms of every engine start.
 *
 * Durability relies on the server's default synchronous_commit = on: a
 * statement that returned success is on disk. We do not SET it, so an
 * operator who turns it off for a benchmark does so knowingly.
 */
#include "store/pg/store_pg_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

/* Lists are planned per call, so they are not here (store_pg_read.c). */
#define PREPARED_BIT(id) (UINT64_C(1) << (unsigned)(id))

const char *store_pg_sqlstate(const PGresult *res)
{
    const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return st != NULL ? st : "";
}

bool store_pg_is_unavailable(store_t *s, const PGresult *res)
{
    const char *st;

    if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK || res == NULL) return true;
    st = store_pg_sqlstate(res);
    /* No SQLSTATE: libpq's own failure (lost socket, protocol error).
     * 08xxx: connection exception. 57P01..57P03: admin/crash shutdown, cannot
     * connect now; the server is going away. */
    if (*st == '\0') return true;
    if (strncmp(st, "08", 2) == 0) return true;
    if (strncmp(st, "57P0", 4) == 0) return true;
    return false;
}

int store_pg_fail(store_t *s, const PGresult *res, cbm_error_t *err, const char *what)
{
    const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
    size_t len;

    if (msg == NULL || *msg == '\0') msg = s->conn != NULL ? PQerrorMessage(s->conn) : "no connection";
    len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) len--;
    if (store_pg_is_unavailable(s, res))
        return cbm_error_set(err, CBM_EUNAVAIL, "%s: connection lost: %.*s", what, (int)len, msg);
    return cbm_error_set(err, CBM_ESTORE, "%s: SQLSTATE %s: %.*s", what, store_pg_sqlstate(res),
                         (int)len, msg);
}

int64_t store_pg_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) return 0;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

int store_pg_exec_simple(store_t *s, const char *sql, cbm_error_t *err, const char *what)
{
    PGresult *res = PQexec(s->conn, sql);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) rc = store_pg_fail(s, res, err, what);
    PQclear(res);
    return rc;
}

PGresult *store_pg_exec(store_t *s, enum pg_stmt id, const char *sql, int nparams,
                        const char *const *values)
{
    char name[16];
    PGresult *res;

    assert(id >= 0 && id < STMT_COUNT_);
    snprintf(name, sizeof(name), "cbm_%d", (int)id);
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((s->prepared & PREPARED_BIT(id)) == 0) {
            res = PQprepare(s->conn, name, sql, nparams, NULL);
            if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) return res;
            PQclear(res);
            s->prepared |= PREPARED_BIT(id);
        }
        res = PQexecPrepared(s->conn, name, nparams, values, NULL, NULL, 0);
        /* 26000: the statement vanished (DISCARD ALL by a pooler, say):
         * forget it and prepare again, once. */
        if (attempt == 0 && res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR &&
            strcmp(store_pg_sqlstate(res), "26000") == 0) {
            PQclear(res);
            s->prepared &= ~PREPARED_BIT(id);
            continue;
        }
        return res;
    }
    return NULL; /* not reached */
}

PGresult *store_pg_query(store_t *s, enum pg_stmt id, const char *sql, int n,
                         const char *const *vals, cbm_error_t *err, const char *what, int *rc)
{
    PGresult *res = store_pg_exec(s, id, sql, n, vals);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *rc = 0;
        return res;
    }
    *rc = store_pg_fail(s, res, err, what);
    PQclear(res);
    return NULL;
}

char *store_pg_dup(const PGresult *res, int row, int col, bool *oom)
{
    char *v;

    if (PQgetisnull(res, row, col)) return NULL;
    v = strdup(PQgetvalue(res, row, col));
    if (v == NULL) *oom = true;
    return v;
}

/* Notices ("relation already exists, skipping" and the like) are not
 * errors; libpq would print them on stderr. */
static void notice_log(void *arg, const PGresult *res)
{
    const char *msg = PQresultErrorMessage(res);
    size_t len = strlen(msg);

    (void)arg;
    while (len > 0 && msg[len - 1] == '\n') len--;
    cbm_log_debug("store: server notice: %.*s", (int)len, msg);
}

static int check_server(store_t *s, cbm_error_t *err)
{
    if (PQstatus(s->conn) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(s->conn);
        size_t len = strlen(msg);
        while (len > 0 && msg[len - 1] == '\n') len--;
        return cbm_error_set(err, CBM_EUNAVAIL, "cannot connect to PostgreSQL: %.*s", (int)len, msg);
    }
    /* extract(epoch ...) is exact numeric since 14; timestamps depend on it. */
    if (PQserverVersion(s->conn) < 140000)
        return cbm_error_set(err, CBM_ESTORE, "PostgreSQL %d is too old: 14 or newer is required",
                             PQserverVersion(s->conn));
    PQsetNoticeReceiver(s->conn, notice_log, NULL);
    /* Plans that do not depend on when they were made (see the top of the
     * file): every statement here reaches rows by key or in index order. */
    return store_pg_exec_simple(s, "SET enable_seqscan = off; SET enable_bitmapscan = off;"
                                   " SET plan_cache_mode = force_generic_plan; SET jit = off",
                                err, "store_open: session settings");
}

int store_open(const char *url, store_t **out, cbm_error_t *err)
{
    /* Defaults first: keywords are processed in order, so the URL (dbname,
     * expanded) overrides them. Without connect_timeout a connect to an
     * unreachable host waits for TCP to give up (minutes); the keepalives
     * notice a dead server under an idle connection within about a minute. */
    const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
                          "keepalives_count", "dbname", "fallback_application_name", NULL};
    const char *vals[] = {"10", "30", "10", "3", url, "cerebelum", NULL};
    store_t *s;
    int rc;

    assert(out != NULL);
    *out = NULL;
    if (url == NULL) return cbm_error_set(err, CBM_EINVAL, "store_open: no database URL");
    s = calloc(1, sizeof(*s));
    if (s == NULL) return cbm_error_set(err, CBM_ENOMEM, "store_open: out of memory");
    for (size_t i = 0; i < APPEND_NCOLS; i++) store_pg_array_init(&s->cols[i]);

    /* expand_dbname = 1: url may be a postgres:// URL or a conninfo string. */
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (s->conn == NULL) {
        store_close(s);
        return cbm_error_set(err, CBM_ENOMEM, "store_open: out of memory");
    }
    rc = check_server(s, err);
    if (rc != 0) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(store_t *s)
{
    if (s == NULL) return;
    if (s->conn != NULL) PQfinish(s->conn);
    for (size_t i = 0; i < APPEND_NCOLS; i++) store_pg_array_free(&s->cols[i]);
    free(s->sorted);
    free(s->shards);
    free(s);
}

bool store_ok(store_t *s)
{
    return s != NULL && s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK;
}

int store_reconnect(store_t *s, cbm_error_t *err)
{
    int rc;
    assert(s != NULL && s->conn != NULL);
    /* A new session: nothing is prepared on it, and it has no name. */
    s->prepared = 0;
    PQreset(s->conn);
    if ((rc = check_server(s, err)) == 0 && s->role[0] != '\0') store_set_role(s, s->role);
    return rc;
}
