/*
 * store_pg_internal.h - private to the PostgreSQL backend (store/pg/).
 *
 * The backend is split by responsibility:
 *   store_pg.c         connection, prepared statements, error mapping
 *   store_pg_migrate.c the versioned migrations under an advisory lock
 *   store_pg_array.c   the text array-literal builder used to pass columns
 *   store_pg_append.c  group commit (one statement per batch) and conflicts
 *   store_pg_tasks.c   leasing remote tasks: claim, heartbeat, expiry
 *   store_pg_engines.c engine incarnations, the fence of their commits, and
 *                      the sweep for stranded executions
 *   store_pg_read.c    histories, projections, pagination, resurrection and
 *                      single-execution loads (with snapshots), due timers,
 *                      blueprints, frees
 *   store_pg_councils.c councils: put, get, list, soft delete
 *   store_pg_outbox.c  the outbox's switch, and the publisher's reads and
 *                      deletes (the rows are written by store_pg_append.c)
 *
 * Everything here is blocking libpq on one PGconn; a store_t is used by one
 * thread at a time (store.h).
 */
#ifndef CBM_STORE_PG_INTERNAL_H
#define CBM_STORE_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/*
 * A PostgreSQL array literal under construction, e.g. {"a","b\"c",NULL}.
 * Every element is written quoted (except NULL), with only " and \ escaped,
 * which is all the array input parser requires inside double quotes; the
 * element text is then parsed by the element type's own input function
 * (uuid, int8, json...). The buffer is kept between uses (reset, not freed)
 * so a busy committer does not allocate per batch.
 */
typedef struct pg_array {
    char *buf;
    size_t len;
    size_t cap;
    size_t count;  /* elements added since the last reset */
    bool oom;      /* an allocation failed; finish() reports it */
} pg_array_t;

void store_pg_array_init(pg_array_t *a);
void store_pg_array_reset(pg_array_t *a);
void store_pg_array_free(pg_array_t *a);
/* s == NULL adds SQL NULL. */
void store_pg_array_add_text(pg_array_t *a, const char *s);
void store_pg_array_add_int(pg_array_t *a, int64_t v);
/* The literal ("{...}", NUL-terminated, owned by a), or NULL on OOM. */
const char *store_pg_array_finish(pg_array_t *a);

/* Prepared statements, prepared lazily once per connection (the tables may
 * not exist before store_migrate, so nothing is prepared at open). */
enum pg_stmt {
    STMT_APPEND,
    STMT_CONFLICTS,
    STMT_LAST_SEQ,
    STMT_HISTORY,
    STMT_GET_EXEC,
    STMT_EXEC_EXISTS,
    STMT_UNFINISHED_EXECS,
    STMT_UNFINISHED_EVENTS,
    STMT_LOAD_EXEC,
    STMT_LOAD_MANY_EXECS,
    STMT_LOAD_MANY_EVENTS,
    STMT_TIMERS_DUE,
    STMT_BP_PUT,
    STMT_BP_GET,
    STMT_BP_LATEST,
    STMT_FIND_KEY,
    STMT_SIGNAL_KEY,
    STMT_TASK_CLAIM,
    STMT_TASK_CLAIM_ONE,
    STMT_TASK_HEARTBEAT,
    STMT_TASK_UNCLAIM,
    STMT_TASK_GRACE,
    STMT_TASK_EXPIRED,
    STMT_TASK_RELEASE,
    STMT_STRANDED,
    STMT_COUNCIL_PUT,
    STMT_COUNCIL_GET,
    STMT_COUNCIL_LATEST,
    STMT_COUNCIL_LIST,
    STMT_COUNCIL_DELETE,
    STMT_OUTBOX_READ,
    STMT_OUTBOX_DELETE,
    STMT_TRIGGER_PUT,
    STMT_TRIGGER_LIST,
    STMT_TRIGGER_DELETE,
    STMT_TRIGGER_FAIL_ADD,
    STMT_TRIGGER_FAIL_LIST,
    STMT_TRIGGER_HEALTH_PUT,
    STMT_TRIGGER_HEALTH_LIST,
    STMT_TIMERS_AFTER,
    STMT_TIMERS_CURSOR,
    STMT_RUNNING_EXECS,
    STMT_RUNNING_EVENTS,
    STMT_ORPHANS,
    STMT_TIMERS_DUE_SH,
    STMT_TIMERS_AFTER_SH,
    STMT_TIMERS_CURSOR_SH,
    STMT_RUNNING_EXECS_SH,
    STMT_RUNNING_EVENTS_SH,
    STMT_COUNT_
};
_Static_assert(STMT_COUNT_ <= 64, "store_t.prepared has a bit per statement");

/* Number of array columns the append statement takes (see store_pg_append.c). */
#define APPEND_NCOLS 44

struct store {
    PGconn *conn;
    uint64_t prepared;              /* bit i: statement i prepared on conn */
    pg_array_t cols[APPEND_NCOLS];  /* reused by store_append */
    store_decision_t **sorted;      /* store_append's batch in id order */
    size_t sorted_cap;
    char fence[37];                 /* engine id store_append commits under
                                       ("" = not fenced: outside decisions) */
    char role[48];                  /* application_name suffix ("" = none) */
    char *shards;                   /* the shard filter of loads, timers,
                                       orphans and the sweep: an int[]
                                       literal, NULL = every shard
                                       (store_set_shards) */
};

/* Execute statement id (whose text is sql) with text parameters, preparing
 * it first if this connection has not yet. Returns the result, which the
 * caller PQclear()s; NULL only when libpq could not allocate one (treat as a
 * lost connection: store_pg_fail handles NULL). */
PGresult *store_pg_exec(store_t *s, enum pg_stmt id, const char *sql, int nparams,
                        const char *const *values);

/* store_pg_exec, expecting success: the result (the caller PQclear()s) and
 * *rc = 0, or NULL with the failure mapped by store_pg_fail into *rc and
 * err (what names the call). */
PGresult *store_pg_query(store_t *s, enum pg_stmt id, const char *sql, int n,
                         const char *const *vals, cbm_error_t *err, const char *what, int *rc);

/* A malloc'd copy of a column's value; NULL for SQL NULL, and NULL with
 * *oom set when out of memory. */
char *store_pg_dup(const PGresult *res, int row, int col, bool *oom);

/* Run sql (no parameters, not prepared), expecting success; on failure map
 * the error with store_pg_fail (what names the call). */
int store_pg_exec_simple(store_t *s, const char *sql, cbm_error_t *err, const char *what);

/* True when res (or the connection) says the server is gone:
 * connection status bad, no SQLSTATE, class 08 or 57P0x. */
bool store_pg_is_unavailable(store_t *s, const PGresult *res);

/* Maps a failed result to CBM_EUNAVAIL or CBM_ESTORE, filling err with what,
 * the SQLSTATE and the server's message. Does not PQclear. */
int store_pg_fail(store_t *s, const PGresult *res, cbm_error_t *err, const char *what);

/* SQLSTATE of a result, "" when none. */
const char *store_pg_sqlstate(const PGresult *res);

/* Column expression giving a timestamptz as int8 microseconds since the Unix
 * epoch, exactly (extract() returns numeric since PostgreSQL 14). */
#define PG_US(col) "(extract(epoch FROM " col ") * 1000000)::int8"

int64_t store_pg_int(const PGresult *res, int row, int col);

/* Statement texts the conformance suite EXPLAINs (store_pg_read.c). */
extern const char store_pg_sql_timers_due[];
extern const char store_pg_sql_unfinished_events[];
extern const char store_pg_sql_task_claim[];

#endif
