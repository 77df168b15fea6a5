/*
 * store_pg_engines.c - engine incarnations and the fence of their commits
 * (migration 006; store.h, "Engines"), and the sweep for stranded
 * executions.
 *
 * The defect this closes: an engine killed while its group commit is still
 * inside PostgreSQL (a backend paused, a slow fsync) could have that commit
 * land after the next engine had read the unfinished executions; what it
 * started or decided then belonged to no engine. Now:
 *
 *   - an engine that runs executions registers a row (id, lock_key) and its
 *     "life" connection holds a session advisory lock on lock_key;
 *   - its committer's connection commits under cbm_fence(id), which locks the
 *     row FOR SHARE in the commit's own transaction;
 *   - a starting engine, for every other row whose lock it can take (the
 *     holder's session is gone), DELETEs the row: the DELETE waits for any
 *     commit that holds the row (so that commit lands before we load), and
 *     any later commit of the dead engine finds no row and fails (CB002).
 *
 * A lock that cannot be taken belongs to a live engine (or to one whose
 * session PostgreSQL has not seen end yet: after a kill -9 that takes
 * milliseconds on a local socket, up to the TCP keepalive, about a minute,
 * when a whole host is lost); the starting engine waits grace_ms for it and
 * then leaves that engine alone. The periodic sweep (store_stranded) is the
 * safety net for what such a case could still strand.
 *
 * The walk for orphans (store_orphans) finds the children that a crash left
 * running after their parent ended, at an engine's start; the engine then
 * cancels them, as it did when it loaded every unfinished execution at
 * start.
 */
#include "store/pg/store_pg_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>
#include <uv.h>

#include "cbm_internal.h"

void store_set_fence(store_t *s, const char *engine_id)
{
    snprintf(s->fence, sizeof(s->fence), "%s", engine_id != NULL ? engine_id : "");
}

void store_set_role(store_t *s, const char *role)
{
    char sql[96];
    if (role != s->role) snprintf(s->role, sizeof(s->role), "%s", role != NULL ? role : "");
    /* A name from our own code (no quotes in it): shown in pg_stat_activity. */
    snprintf(sql, sizeof(sql), "SET application_name = 'cerebelum %s'", s->role);
    if (s->role[0] != '\0' && store_ok(s)) store_pg_exec_simple(s, sql, NULL, "store_set_role");
}

static PGresult *params(store_t *s, const char *sql, int n, const char *const *vals)
{
    return PQexecParams(s->conn, sql, n, NULL, vals, NULL, NULL, 0);
}

static int tuples_ok(store_t *s, PGresult *res, cbm_error_t *err, const char *what)
{
    int rc = 0;
    if (res == NULL || (PQresultStatus(res) != PGRES_TUPLES_OK &&
                        PQresultStatus(res) != PGRES_COMMAND_OK))
        rc = store_pg_fail(s, res, err, what);
    return rc;
}

int store_engine_register(store_t *life, char id_out[37], int64_t *key_out, cbm_error_t *err)
{
    uuid_t u;
    int64_t key;
    char keytxt[24], pidtxt[16], host[256] = "";
    const char *vals[4];
    PGresult *res;
    int rc;

    uuid_generate_random(u);
    uuid_unparse_lower(u, id_out);
    /* 63 random bits from the id: distinct per incarnation. */
    memcpy(&key, u, sizeof(key));
    key &= INT64_MAX;
    snprintf(keytxt, sizeof(keytxt), "%" PRId64, key);
    snprintf(pidtxt, sizeof(pidtxt), "%d", (int)getpid());
    if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
    cbm_text_fix_inplace(host);
    vals[0] = id_out;
    vals[1] = keytxt;
    vals[2] = host;
    vals[3] = pidtxt;
    /* The lock first: from the moment the row exists, its lock is held. */
    res = params(life, "SELECT pg_advisory_lock($1::int8)", 1, &vals[1]);
    rc = tuples_ok(life, res, err, "store_engine_register: lock");
    PQclear(res);
    if (rc != 0) return rc;
    res = params(life, "INSERT INTO cbm_engines (id, lock_key, host, pid) VALUES ($1, $2, $3, $4)",
                 4, vals);
    rc = tuples_ok(life, res, err, "store_engine_register");
    PQclear(res);
    if (rc == 0) *key_out = key;
    return rc;
}

/* Delete a dead engine's row, waiting out a commit of its that holds it
 * (saying so every 5 s). */
static int fence_one(store_t *life, const char *id, cbm_error_t *err)
{
    const char *vals[1] = {id};
    int rc;

    for (int waited = 0;; waited += 5) {
        PGresult *res;
        if ((rc = store_pg_exec_simple(life, "SET lock_timeout = '5s'", err, "store_engine_fence")) != 0)
            return rc;
        /* Its shard leases go free with it (migration 010): once its row is
         * gone none of its commits can land, so the shards may be taken now
         * rather than when the leases run out. */
        res = params(life,
                     "WITH d AS (DELETE FROM cbm_engines WHERE id = $1 RETURNING id)"
                     " UPDATE cbm_shard_leases SET owner = NULL, expires_at = '-infinity'"
                     " WHERE owner = $1 AND EXISTS (SELECT 1 FROM d)",
                     1, vals);
        rc = tuples_ok(life, res, err, "store_engine_fence");
        if (rc != 0 && strcmp(store_pg_sqlstate(res), "55P03") == 0) {
            PQclear(res);
            cbm_log_warn("engine %s is dead, but a commit of its is still in PostgreSQL; "
                         "waiting for it to end (%d s so far)",
                         id, waited + 5);
            continue;
        }
        PQclear(res);
        break;
    }
    if (store_pg_exec_simple(life, "SET lock_timeout = 0", rc == 0 ? err : NULL,
                             "store_engine_fence") != 0 && rc == 0)
        rc = CBM_EUNAVAIL;
    return rc;
}

int store_engine_fence_dead(store_t *life, const char *self, int grace_ms, size_t *fenced,
                            cbm_error_t *err)
{
    const char *vals[1] = {self};
    PGresult *res = params(life, "SELECT id, lock_key FROM cbm_engines WHERE id <> $1", 1, vals);
    char (*ids)[37] = NULL;
    char (*keys)[24] = NULL;
    size_t n, left;
    int rc;

    *fenced = 0;
    if ((rc = tuples_ok(life, res, err, "store_engine_fence_dead")) != 0) {
        PQclear(res);
        return rc;
    }
    n = (size_t)PQntuples(res);
    if (n > 0 && ((ids = calloc(n, sizeof(*ids))) == NULL || (keys = calloc(n, sizeof(*keys))) == NULL)) {
        PQclear(res);
        free(ids);
        return cbm_error_set(err, CBM_ENOMEM, "store_engine_fence_dead: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s", PQgetvalue(res, (int)i, 0));
        snprintf(keys[i], sizeof(keys[i]), "%s", PQgetvalue(res, (int)i, 1));
    }
    PQclear(res);

    left = n;
    for (int waited = 0; left > 0 && rc == 0; waited += 50) {
        for (size_t i = 0; i < n && rc == 0; i++) {
            const char *kv[1] = {keys[i]};
            bool dead;
            if (ids[i][0] == '\0') continue;
            res = params(life, "SELECT pg_try_advisory_lock($1::int8)", 1, kv);
            if ((rc = tuples_ok(life, res, err, "store_engine_fence_dead")) != 0) {
                PQclear(res);
                break;
            }
            dead = PQgetvalue(res, 0, 0)[0] == 't';
            PQclear(res);
            if (!dead) continue;
            rc = fence_one(life, ids[i], err);
            res = params(life, "SELECT pg_advisory_unlock($1::int8)", 1, kv);
            PQclear(res);
            if (rc != 0) break;
            cbm_log_info("engine %s was dead: fenced (its late commits are refused)", ids[i]);
            ids[i][0] = '\0';
            left--;
            (*fenced)++;
        }
        if (left == 0 || waited >= grace_ms) break;
        uv_sleep(50);
    }
    if (rc == 0 && left > 0 && grace_ms > 0) /* 0: a lease manager's look, quiet */
        cbm_log_info("%zu other engine(s) alive on this database (their sessions hold their locks)",
                     left);
    free(ids);
    free(keys);
    return rc;
}

bool store_life_ok(store_t *s)
{
    /* Reads what the server sent meanwhile (a FATAL before it closed the
     * session) without waiting; a closed session shows as a bad status. */
    if (s == NULL || s->conn == NULL) return false;
    if (PQstatus(s->conn) == CONNECTION_OK) PQconsumeInput(s->conn);
    return PQstatus(s->conn) == CONNECTION_OK;
}

int store_engine_relock(store_t *life, const char *self, int64_t key, cbm_error_t *err)
{
    char keytxt[24];
    const char *kv[1] = {keytxt}, *iv[1] = {self};
    PGresult *res;
    int rc, exists;

    snprintf(keytxt, sizeof(keytxt), "%" PRId64, key);
    res = params(life, "SELECT pg_advisory_lock($1::int8)", 1, kv);
    rc = tuples_ok(life, res, err, "store_engine_relock");
    PQclear(res);
    if (rc != 0) return rc;
    res = params(life, "SELECT 1 FROM cbm_engines WHERE id = $1", 1, iv);
    if ((rc = tuples_ok(life, res, err, "store_engine_relock")) != 0) {
        PQclear(res);
        return rc;
    }
    exists = PQntuples(res) > 0;
    PQclear(res);
    if (!exists)
        return cbm_error_set(err, CBM_EFENCED, "engine %s was fenced while its session was lost",
                             self);
    return 0;
}

int store_engine_unregister(store_t *life, const char *self, cbm_error_t *err)
{
    const char *iv[1] = {self};
    PGresult *res = params(life, "DELETE FROM cbm_engines WHERE id = $1", 1, iv);
    int rc = tuples_ok(life, res, err, "store_engine_unregister");
    PQclear(res);
    return rc;
}

/* Unfinished executions that nothing will move: not waiting for a person,
 * a signal or a child (those have their own statuses), no timer, no remote
 * task, and untouched for a while. */
static const char sql_stranded[] =
    "SELECT e.id FROM cbm_executions e"
    " WHERE e.status IN ('running', 'sleeping')"
    "  AND e.updated_at < clock_timestamp() - $1::int8 * interval '1 microsecond'"
    "  AND NOT EXISTS (SELECT 1 FROM cbm_timers t WHERE t.execution_id = e.id)"
    "  AND NOT EXISTS (SELECT 1 FROM cbm_tasks k WHERE k.execution_id = e.id)"
    "  AND ($3::int[] IS NULL OR e.shard = ANY ($3::int[]))"
    " ORDER BY e.updated_at LIMIT $2";

int store_stranded(store_t *s, int64_t older_than_us, size_t limit, char (**ids)[37], size_t *n,
                   cbm_error_t *err)
{
    char age[24], lim[24];
    const char *vals[3] = {age, lim, s->shards};
    PGresult *res;
    int rc;

    *ids = NULL;
    *n = 0;
    snprintf(age, sizeof(age), "%" PRId64, older_than_us);
    snprintf(lim, sizeof(lim), "%zu", limit);
    res = store_pg_exec(s, STMT_STRANDED, sql_stranded, 3, vals);
    if ((rc = tuples_ok(s, res, err, "store_stranded")) != 0) {
        PQclear(res);
        return rc;
    }
    if (PQntuples(res) > 0) {
        if ((*ids = calloc((size_t)PQntuples(res), sizeof(**ids))) == NULL) {
            PQclear(res);
            return cbm_error_set(err, CBM_ENOMEM, "store_stranded: out of memory");
        }
        for (int i = 0; i < PQntuples(res); i++)
            snprintf((*ids)[i], sizeof((*ids)[i]), "%s", PQgetvalue(res, i, 0));
        *n = (size_t)PQntuples(res);
    }
    PQclear(res);
    return 0;
}

/* A page of the walk: the next candidates by the partial index of
 * unfinished executions, each with its first event (ExecutionStarted names
 * a child's parent), and the parent's projection. The last row is the
 * cursor: the last id looked at, with no parent (NULL when none was left). */
static const char sql_orphans[] =
    "WITH c AS (SELECT id FROM cbm_executions"
    "  WHERE status NOT IN ('completed', 'failed', 'cancelled')"
    "   AND id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)"
    "   AND ($3::int[] IS NULL OR shard = ANY ($3::int[]))"
    "  ORDER BY id LIMIT $2::int8)"
    " SELECT c.id::text, p.id::text, p.status, 0 AS k FROM c"
    "  JOIN cbm_events e ON e.execution_id = c.id AND e.seq = 1"
    "  JOIN cbm_executions p ON p.id = (e.payload -> 'parent' ->> 'execution_id')::uuid"
    "  WHERE p.status IN ('completed', 'failed', 'cancelled')"
    " UNION ALL SELECT (SELECT id FROM c ORDER BY id DESC LIMIT 1)::text, NULL, NULL, 1"
    " ORDER BY k";

int store_orphans(store_t *s, const char *after_id, size_t scan, store_orphan_t **out, size_t *n,
                  char last[37], cbm_error_t *err)
{
    char lim[24];
    const char *vals[3] = {after_id, lim, s->shards};
    PGresult *res;
    int rc, rows;

    *out = NULL;
    *n = 0;
    last[0] = '\0';
    snprintf(lim, sizeof(lim), "%zu", scan);
    res = store_pg_exec(s, STMT_ORPHANS, sql_orphans, 3, vals);
    if ((rc = tuples_ok(s, res, err, "store_orphans")) != 0) {
        PQclear(res);
        return rc;
    }
    rows = PQntuples(res);
    if (rows > 1 && (*out = calloc((size_t)rows - 1, sizeof(**out))) == NULL) {
        PQclear(res);
        return cbm_error_set(err, CBM_ENOMEM, "store_orphans: out of memory");
    }
    for (int i = 0; i + 1 < rows; i++) {
        snprintf((*out)[i].id, sizeof((*out)[i].id), "%s", PQgetvalue(res, i, 0));
        snprintf((*out)[i].parent, sizeof((*out)[i].parent), "%s", PQgetvalue(res, i, 1));
        snprintf((*out)[i].parent_status, sizeof((*out)[i].parent_status), "%s",
                 PQgetvalue(res, i, 2));
    }
    *n = rows > 1 ? (size_t)rows - 1 : 0;
    if (rows > 0 && !PQgetisnull(res, rows - 1, 0))
        snprintf(last, 37, "%s", PQgetvalue(res, rows - 1, 0));
    PQclear(res);
    return 0;
}
