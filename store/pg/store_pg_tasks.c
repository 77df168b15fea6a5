/*
 * store_pg_tasks.c - leasing remote tasks (store.h, "Remote task queue").
 *
 * Decisions insert and delete cbm_tasks rows (store_pg_append.c); everything
 * here only moves a row's lease: lease_owner is NULL while the task waits in
 * its queue, a worker id while that worker runs it, and "!expired" while the
 * engine is failing an attempt whose lease ran out or whose worker left.
 *
 * A claim is one statement: the sub-select takes the oldest unleased row of
 * the queues through the partial index cbm_tasks_ready (queue, available_at,
 * id) WHERE lease_owner IS NULL (see store_pg_sql_task_claim), locks it with FOR UPDATE
 * SKIP LOCKED (a row another claim holds is passed over, never waited for),
 * and the UPDATE leases it. Capabilities are checked on the row
 * (requires <@ capabilities).
 */
#include "store/pg/store_pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

#define CLAIM_RETURNING                                                                    \
    " RETURNING t.id, t.execution_id, t.step, t.handler, t.queue, t.blueprint,"            \
    "  t.payload::text, t.attempt, (CASE WHEN t.lease_ms > 0 THEN t.lease_ms ELSE $4::int8 END),"\
    "  t.timeout_ms"

#define LEASE_UNTIL                                                                        \
    "clock_timestamp() + (CASE WHEN t.lease_ms > 0 THEN t.lease_ms ELSE $4::int8 END)"    \
    " * interval '1 millisecond'"

/* The candidates: the CLAIM_WINDOW oldest unleased rows of EACH queue, each
 * read in index order (cbm_tasks_ready), whatever the backlog; then the
 * oldest of them that no other claim holds. (A plain `queue = ANY($2)
 * ORDER BY available_at` cannot use the index order and sorts the whole
 * backlog: measured 100 ms per claim with 200,000 waiting tasks, against
 * 1.5 ms.) When more than CLAIM_WINDOW claims of one queue race, a claim
 * may find every candidate held and come back empty; its poll parks and is
 * woken by the next task or the next sweep.
 *
 * The candidates are then fetched again by id, to lock them; that lookup
 * writes "lease_owner IS NULL" as num_nulls(lease_owner) = 1 (the same test,
 * re-checked on the newest row version after the lock) so that it does not
 * imply the predicate of the partial index cbm_tasks_ready. With the plain
 * form the generic plan (store_pg.c: plans are made once per connection,
 * when the server's claim connections open on an empty table) fetched each
 * candidate through cbm_tasks_ready with id, its third column, as the only
 * condition: a walk of the whole index per candidate, 2.9 ms a claim under
 * remote W1 against 0.1 ms through the primary key (remote W1 fell from
 * 1,124 to 336 steps/s; docs/benchmarks.md). */
#define CLAIM_WINDOW "32"
const char store_pg_sql_task_claim[] =
    "UPDATE cbm_tasks t SET lease_owner = $1, lease_expires_at = " LEASE_UNTIL
    " WHERE t.id = (SELECT c.id FROM cbm_tasks c"
    "  WHERE c.id IN (SELECT x.id FROM unnest($2::text[]) AS q(name) CROSS JOIN LATERAL"
    "   (SELECT i.id FROM cbm_tasks i WHERE i.queue = q.name AND i.lease_owner IS NULL"
    "    AND i.available_at <= clock_timestamp() AND i.requires <@ $3::jsonb"
    "    ORDER BY i.available_at, i.id LIMIT " CLAIM_WINDOW ") AS x)"
    "  AND num_nulls(c.lease_owner) = 1"  /* IS NULL, kept off cbm_tasks_ready: see above */
    "  ORDER BY c.available_at, c.id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    CLAIM_RETURNING;

static const char sql_claim_one[] =
    "UPDATE cbm_tasks t SET lease_owner = $1, lease_expires_at = " LEASE_UNTIL
    " WHERE t.id = (SELECT c.id FROM cbm_tasks c"
    "  WHERE c.execution_id = $5::uuid AND c.step = $6 AND c.attempt = $7::int4"
    "   AND c.queue = ANY ($2::text[]) AND num_nulls(c.lease_owner) = 1"
    "   AND c.requires <@ $3::jsonb FOR UPDATE SKIP LOCKED)"
    CLAIM_RETURNING;

static const char sql_heartbeat[] =
    "UPDATE cbm_tasks t SET lease_expires_at = clock_timestamp() +"
    " (CASE WHEN t.lease_ms > 0 THEN t.lease_ms ELSE $3::int8 END) * interval '1 millisecond'"
    " WHERE t.id = ANY ($2::int8[]) AND t.lease_owner = $1 RETURNING t.id";

static const char sql_unclaim[] =
    "UPDATE cbm_tasks SET lease_owner = NULL, lease_expires_at = NULL"
    " WHERE id = $1::int8 AND lease_owner = $2";

/* A server starting: every lease a worker holds runs at least one lease
 * from now (expired ones included, "!expired" ones excluded). */
static const char sql_grace[] =
    "UPDATE cbm_tasks t SET lease_expires_at = clock_timestamp() +"
    " ((CASE WHEN t.lease_ms > 0 THEN t.lease_ms ELSE $1::int8 END) + $2::int8)"
    "  * interval '1 millisecond'"
    " WHERE t.lease_owner IS NOT NULL AND t.lease_owner <> '!expired'"
    "  AND t.lease_expires_at < clock_timestamp() +"
    "   ((CASE WHEN t.lease_ms > 0 THEN t.lease_ms ELSE $1::int8 END) + $2::int8)"
    "   * interval '1 millisecond'";

/* Expired leases, marked "!expired" for 30 s while the engine fails them.
 * The inner select reads cbm_tasks_leased in expiry order. */
static const char sql_expired[] =
    "UPDATE cbm_tasks t SET lease_owner = '!expired',"
    " lease_expires_at = clock_timestamp() + interval '30 seconds'"
    " WHERE t.id IN (SELECT c.id FROM cbm_tasks c WHERE c.lease_owner IS NOT NULL"
    "  AND c.lease_expires_at <= clock_timestamp() ORDER BY c.lease_expires_at"
    "  LIMIT $1::int8 FOR UPDATE SKIP LOCKED)"
    " RETURNING t.execution_id, t.step, t.attempt, t.queue";

static const char sql_release[] =
    "UPDATE cbm_tasks t SET lease_owner = '!expired',"
    " lease_expires_at = clock_timestamp() + interval '30 seconds'"
    " WHERE t.id IN (SELECT c.id FROM cbm_tasks c WHERE c.lease_owner = $1"
    "  FOR UPDATE SKIP LOCKED)"
    " RETURNING t.execution_id, t.step, t.attempt, t.queue";

void store_claimed_clear(store_claimed_t *c)
{
    if (c == NULL) return;
    free(c->step);
    free(c->handler);
    free(c->queue);
    free(c->blueprint);
    free(c->payload);
    memset(c, 0, sizeof(*c));
}

void store_tasks_free(store_task_t *t, size_t n)
{
    if (t == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(t[i].step);
        free(t[i].queue);
        free(t[i].payload);
        free(t[i].handler);
        free(t[i].blueprint);
        free(t[i].requires);
    }
    free(t);
}

int store_tasks_relaxed(store_t *s, cbm_error_t *err)
{
    return store_pg_exec_simple(s, "SET synchronous_commit = off", err, "store_tasks_relaxed");
}

static char *dup_value(const PGresult *res, int col)
{
    return strdup(PQgetvalue(res, 0, col));
}

int store_task_claim(store_t *s, const char *worker, const char *const *queues, size_t nq,
                     const char *capabilities, int64_t default_lease_ms,
                     const store_task_t *want, store_claimed_t *out, bool *found,
                     cbm_error_t *err)
{
    pg_array_t qa;
    char lease[24], attempt[16];
    const char *vals[7];
    PGresult *res;
    int rc = 0;

    *found = false;
    store_pg_array_init(&qa);
    for (size_t i = 0; i < nq; i++) store_pg_array_add_text(&qa, queues[i]);
    snprintf(lease, sizeof(lease), "%lld", (long long)default_lease_ms);
    vals[0] = worker;
    vals[1] = store_pg_array_finish(&qa);
    vals[2] = capabilities != NULL ? capabilities : "{}";
    vals[3] = lease;
    if (vals[1] == NULL) {
        store_pg_array_free(&qa);
        return cbm_error_set(err, CBM_ENOMEM, "store_task_claim: out of memory");
    }
    if (want != NULL) {
        snprintf(attempt, sizeof(attempt), "%d", want->attempt);
        vals[4] = want->execution_id;
        vals[5] = want->step;
        vals[6] = attempt;
        res = store_pg_exec(s, STMT_TASK_CLAIM_ONE, sql_claim_one, 7, vals);
    } else {
        res = store_pg_exec(s, STMT_TASK_CLAIM, store_pg_sql_task_claim, 4, vals);
    }
    store_pg_array_free(&qa);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_pg_fail(s, res, err, "store_task_claim");
    } else if (PQntuples(res) == 1) {
        memset(out, 0, sizeof(*out));
        out->id = store_pg_int(res, 0, 0);
        snprintf(out->execution_id, sizeof(out->execution_id), "%s", PQgetvalue(res, 0, 1));
        out->step = dup_value(res, 2);
        out->handler = dup_value(res, 3);
        out->queue = dup_value(res, 4);
        out->blueprint = dup_value(res, 5);
        out->payload = dup_value(res, 6);
        out->attempt = (int)store_pg_int(res, 0, 7);
        out->lease_ms = store_pg_int(res, 0, 8);
        out->timeout_ms = store_pg_int(res, 0, 9);
        if (out->step == NULL || out->handler == NULL || out->queue == NULL ||
            out->blueprint == NULL || out->payload == NULL) {
            /* The lease is taken but cannot be handed over: it runs out. */
            store_claimed_clear(out);
            rc = cbm_error_set(err, CBM_ENOMEM, "store_task_claim: out of memory");
        } else {
            *found = true;
        }
    }
    PQclear(res);
    return rc;
}

int store_task_heartbeat(store_t *s, const char *worker, const int64_t *ids, size_t n,
                         int64_t default_lease_ms, int64_t **held, size_t *nheld,
                         cbm_error_t *err)
{
    pg_array_t ia;
    char lease[24];
    const char *vals[3];
    PGresult *res;
    int rc = 0;

    *held = NULL;
    *nheld = 0;
    if (n == 0) return 0;
    store_pg_array_init(&ia);
    for (size_t i = 0; i < n; i++) store_pg_array_add_int(&ia, ids[i]);
    snprintf(lease, sizeof(lease), "%lld", (long long)default_lease_ms);
    vals[0] = worker;
    vals[1] = store_pg_array_finish(&ia);
    vals[2] = lease;
    if (vals[1] == NULL) {
        store_pg_array_free(&ia);
        return cbm_error_set(err, CBM_ENOMEM, "store_task_heartbeat: out of memory");
    }
    res = store_pg_exec(s, STMT_TASK_HEARTBEAT, sql_heartbeat, 3, vals);
    store_pg_array_free(&ia);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_pg_fail(s, res, err, "store_task_heartbeat");
    } else if (PQntuples(res) > 0) {
        if ((*held = malloc((size_t)PQntuples(res) * sizeof(**held))) == NULL) {
            rc = cbm_error_set(err, CBM_ENOMEM, "store_task_heartbeat: out of memory");
        } else {
            for (int r = 0; r < PQntuples(res); r++) (*held)[r] = store_pg_int(res, r, 0);
            *nheld = (size_t)PQntuples(res);
        }
    }
    PQclear(res);
    return rc;
}

int store_task_unclaim(store_t *s, int64_t id, const char *worker, cbm_error_t *err)
{
    char idbuf[24];
    const char *vals[2] = {idbuf, worker};
    PGresult *res;
    int rc = 0;

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
    res = store_pg_exec(s, STMT_TASK_UNCLAIM, sql_unclaim, 2, vals);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = store_pg_fail(s, res, err, "store_task_unclaim");
    PQclear(res);
    return rc;
}

int store_task_grace(store_t *s, int64_t default_lease_ms, int64_t extra_ms, size_t *n,
                     cbm_error_t *err)
{
    char ms[24], extra[24];
    const char *vals[2] = {ms, extra};
    PGresult *res;
    int rc = 0;

    *n = 0;
    snprintf(ms, sizeof(ms), "%lld", (long long)default_lease_ms);
    snprintf(extra, sizeof(extra), "%lld", (long long)(extra_ms > 0 ? extra_ms : 0));
    res = store_pg_exec(s, STMT_TASK_GRACE, sql_grace, 2, vals);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = store_pg_fail(s, res, err, "store_task_grace");
    else
        *n = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rc;
}

int store_task_expired(store_t *s, const char *worker, size_t limit, store_task_t **out,
                       size_t *n, cbm_error_t *err)
{
    char lim[24];
    const char *vals[1];
    PGresult *res;
    int rc = 0, rows;

    *out = NULL;
    *n = 0;
    if (worker != NULL) {
        vals[0] = worker;
        res = store_pg_exec(s, STMT_TASK_RELEASE, sql_release, 1, vals);
    } else {
        if (limit == 0) return 0;
        snprintf(lim, sizeof(lim), "%zu", limit);
        vals[0] = lim;
        res = store_pg_exec(s, STMT_TASK_EXPIRED, sql_expired, 1, vals);
    }
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_pg_fail(s, res, err, "store_task_expired");
        PQclear(res);
        return rc;
    }
    rows = PQntuples(res);
    if (rows > 0) {
        store_task_t *t = calloc((size_t)rows, sizeof(*t));
        if (t == NULL) {
            PQclear(res);
            return cbm_error_set(err, CBM_ENOMEM, "store_task_expired: out of memory");
        }
        for (int r = 0; r < rows; r++) {
            snprintf(t[r].execution_id, sizeof(t[r].execution_id), "%s", PQgetvalue(res, r, 0));
            t[r].step = strdup(PQgetvalue(res, r, 1));
            t[r].attempt = (int)store_pg_int(res, r, 2);
            t[r].queue = strdup(PQgetvalue(res, r, 3));
            if (t[r].step == NULL || t[r].queue == NULL) rc = CBM_ENOMEM;
        }
        if (rc != 0) {
            /* The rows come back in 30 s. */
            store_tasks_free(t, (size_t)rows);
            PQclear(res);
            return cbm_error_set(err, rc, "store_task_expired: out of memory");
        }
        *out = t;
        *n = (size_t)rows;
    }
    PQclear(res);
    return 0;
}
