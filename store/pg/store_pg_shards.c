/*
 * store_pg_shards.c - shard leases (migration 010; store.h, "Shards").
 *
 * S shards, fixed per database; an execution's shard is cbm_shard_of(id).
 * Each engine's lease manager (engine/lease.c) calls store_leases_round
 * every lease/3 on a connection of its own: one transaction renews what it
 * holds, counts the live engines and takes free or expired shards. Locks on
 * lease rows are always taken in shard order (renewal FOR UPDATE ORDER BY
 * shard, takes with SKIP LOCKED, commits' rows FOR SHARE ORDER BY shard),
 * so a round and a commit never wait for each other in a cycle.
 *
 * A take is an UPDATE of the row, token + 1: it cannot happen while a
 * commit of the previous owner holds the row FOR SHARE (SKIP LOCKED leaves
 * that shard for a later round), and every commit of the previous owner
 * that comes after it sees the new token and is refused (CB003). So once a
 * round that took a shard has committed, no commit of the previous owner
 * can land in it, and the new owner may load it.
 */
#include "store/pg/store_pg_internal.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

static int ok(store_t *s, PGresult *res, cbm_error_t *err, const char *what)
{
    if (res != NULL && (PQresultStatus(res) == PGRES_TUPLES_OK ||
                        PQresultStatus(res) == PGRES_COMMAND_OK))
        return 0;
    return store_pg_fail(s, res, err, what);
}

int store_shard_count(store_t *s, int *out, cbm_error_t *err)
{
    PGresult *res = PQexec(s->conn, "SELECT count(*) FROM cbm_shard_leases");
    int rc = ok(s, res, err, "store_shard_count");
    if (rc == 0) *out = (int)store_pg_int(res, 0, 0);
    PQclear(res);
    if (rc == 0 && *out < 1) rc = cbm_error_set(err, CBM_ESTORE, "store_shard_count: no shards");
    return rc;
}

int store_shard_of(const char *id, int nshards)
{
    uint32_t v = 0;
    size_t len = id != NULL ? strlen(id) : 0;

    if (len != 36 || nshards < 1) return -1;
    for (size_t i = len - 8; i < len; i++) {
        char c = id[i];
        int d = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint32_t)d;
    }
    return (int)(v % (uint32_t)nshards);
}

int store_set_shards(store_t *s, const int *shards, size_t n)
{
    char *lit = NULL;
    if (shards != NULL) {
        size_t cap = 3 + n * 7, len = 0;
        if ((lit = malloc(cap)) == NULL) return CBM_ENOMEM;
        lit[len++] = '{';
        for (size_t i = 0; i < n; i++)
            len += (size_t)snprintf(lit + len, cap - len, "%s%d", i > 0 ? "," : "", shards[i]);
        snprintf(lit + len, cap - len, "}");
    }
    free(s->shards);
    s->shards = lit;
    return 0;
}

static int end(store_t *s, const char *sql)
{
    PGresult *res = PQexec(s->conn, sql);
    int rc = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : CBM_ESTORE;
    PQclear(res);
    return rc;
}

static const char sql_seen[] =
    "UPDATE cbm_engines SET seen_at = clock_timestamp() WHERE id = $1::uuid RETURNING 1";
static const char sql_lock_mine[] =
    "SELECT shard FROM cbm_shard_leases WHERE owner = $1::uuid ORDER BY shard FOR UPDATE";
static const char sql_renew[] =
    "UPDATE cbm_shard_leases SET expires_at = clock_timestamp() + $2::int8 * interval '1 millisecond'"
    " WHERE owner = $1::uuid";
static const char sql_live[] =
    "SELECT count(*) FROM cbm_engines"
    " WHERE seen_at > clock_timestamp() - $1::int8 * interval '1 millisecond'";
static const char sql_take[] =
    "UPDATE cbm_shard_leases l SET owner = $1::uuid, token = l.token + 1,"
    "  expires_at = clock_timestamp() + $2::int8 * interval '1 millisecond'"
    " WHERE l.shard IN (SELECT f.shard FROM cbm_shard_leases f"
    "  WHERE f.owner IS NULL OR f.expires_at < clock_timestamp()"
    "  ORDER BY f.shard LIMIT $3::int8 FOR UPDATE SKIP LOCKED)";
static const char sql_held[] =
    "SELECT shard, token FROM cbm_shard_leases WHERE owner = $1::uuid ORDER BY shard";

int store_leases_round(store_t *s, const char *engine, int64_t lease_ms, int want,
                       store_lease_t **held, size_t *nheld, int *live, cbm_error_t *err)
{
    char ms[24], wn[24];
    const char *v1[1] = {engine}, *v2[2] = {engine, ms}, *v3[3] = {engine, ms, wn};
    PGresult *res;
    int rc;

    *held = NULL;
    *nheld = 0;
    *live = 0;
    snprintf(ms, sizeof(ms), "%" PRId64, lease_ms);
    snprintf(wn, sizeof(wn), "%d", want);
    res = PQexec(s->conn, "BEGIN");
    rc = ok(s, res, err, "store_leases_round");
    PQclear(res);
    if (rc != 0) return rc;
    res = PQexecParams(s->conn, sql_seen, 1, NULL, v1, NULL, NULL, 0);
    if ((rc = ok(s, res, err, "store_leases_round: seen")) == 0 && PQntuples(res) == 0)
        rc = cbm_error_set(err, CBM_EFENCED, "engine %s was fenced: another engine found it dead",
                           engine);
    PQclear(res);
    if (rc != 0) goto rollback;
    res = PQexecParams(s->conn, sql_lock_mine, 1, NULL, v1, NULL, NULL, 0);
    rc = ok(s, res, err, "store_leases_round: lock");
    PQclear(res);
    if (rc != 0) goto rollback;
    res = PQexecParams(s->conn, sql_renew, 2, NULL, v2, NULL, NULL, 0);
    rc = ok(s, res, err, "store_leases_round: renew");
    PQclear(res);
    if (rc != 0) goto rollback;
    res = PQexecParams(s->conn, sql_live, 1, NULL, &v2[1], NULL, NULL, 0);
    if ((rc = ok(s, res, err, "store_leases_round: live")) == 0) *live = (int)store_pg_int(res, 0, 0);
    PQclear(res);
    if (rc != 0) goto rollback;
    if (want > 0) {
        res = PQexecParams(s->conn, sql_take, 3, NULL, v3, NULL, NULL, 0);
        rc = ok(s, res, err, "store_leases_round: take");
        PQclear(res);
        if (rc != 0) goto rollback;
    }
    res = PQexecParams(s->conn, sql_held, 1, NULL, v1, NULL, NULL, 0);
    if ((rc = ok(s, res, err, "store_leases_round: held")) == 0 && PQntuples(res) > 0) {
        *held = calloc((size_t)PQntuples(res), sizeof(**held));
        if (*held == NULL) {
            rc = cbm_error_set(err, CBM_ENOMEM, "store_leases_round: out of memory");
        } else {
            for (int i = 0; i < PQntuples(res); i++) {
                (*held)[i].shard = (int)store_pg_int(res, i, 0);
                (*held)[i].token = store_pg_int(res, i, 1);
            }
            *nheld = (size_t)PQntuples(res);
        }
    }
    PQclear(res);
    if (rc != 0) goto rollback;
    res = PQexec(s->conn, "COMMIT");
    rc = ok(s, res, err, "store_leases_round: commit");
    PQclear(res);
    if (rc != 0) goto fail;
    return 0;

rollback:
    end(s, "ROLLBACK");
fail:
    free(*held);
    *held = NULL;
    *nheld = 0;
    return rc;
}

int store_leases_release(store_t *s, const char *engine, const int *shards, size_t n,
                         cbm_error_t *err)
{
    const char *vals[2] = {engine, NULL};
    PGresult *res;
    int rc;

    if (shards != NULL && n == 0) return 0;
    if (store_set_shards(s, shards, n) != 0)
        return cbm_error_set(err, CBM_ENOMEM, "store_leases_release: out of memory");
    vals[1] = s->shards;
    res = PQexecParams(s->conn,
                       "UPDATE cbm_shard_leases SET owner = NULL, expires_at = '-infinity'"
                       " WHERE shard IN (SELECT shard FROM cbm_shard_leases WHERE owner = $1::uuid"
                       "  AND ($2::int[] IS NULL OR shard = ANY ($2::int[]))"
                       "  ORDER BY shard FOR UPDATE)",
                       2, NULL, vals, NULL, NULL, 0);
    rc = ok(s, res, err, "store_leases_release");
    PQclear(res);
    store_set_shards(s, NULL, 0);
    return rc;
}

/* Shard numbers as ranges: "0-3,9". */
static const char sql_engines[] =
    "SELECT e.id, e.host, e.pid, " PG_US("e.started_at") ","
    " (extract(epoch FROM clock_timestamp() - e.seen_at) * 1000)::int8,"
    " (SELECT count(*) FROM cbm_shard_leases l WHERE l.owner = e.id"
    "   AND l.expires_at > clock_timestamp()),"
    " (SELECT coalesce(string_agg(CASE WHEN lo = hi THEN lo::text ELSE lo || '-' || hi END, ','"
    "    ORDER BY lo), '')"
    "  FROM (SELECT min(shard) AS lo, max(shard) AS hi FROM"
    "   (SELECT shard, shard - row_number() OVER (ORDER BY shard) AS g FROM cbm_shard_leases l"
    "     WHERE l.owner = e.id AND l.expires_at > clock_timestamp()) AS r GROUP BY g) AS q)"
    " FROM cbm_engines e ORDER BY e.started_at, e.id";

int store_engines_list(store_t *s, store_engine_row_t **out, size_t *n, cbm_error_t *err)
{
    PGresult *res = PQexec(s->conn, sql_engines);
    bool oom = false;
    int rc = ok(s, res, err, "store_engines_list");
    size_t rows;

    *out = NULL;
    *n = 0;
    if (rc != 0) {
        PQclear(res);
        return rc;
    }
    rows = (size_t)PQntuples(res);
    if (rows > 0 && (*out = calloc(rows, sizeof(**out))) == NULL) {
        PQclear(res);
        return cbm_error_set(err, CBM_ENOMEM, "store_engines_list: out of memory");
    }
    for (size_t i = 0; i < rows; i++) {
        store_engine_row_t *r = &(*out)[i];
        snprintf(r->id, sizeof(r->id), "%s", PQgetvalue(res, (int)i, 0));
        r->host = store_pg_dup(res, (int)i, 1, &oom);
        r->pid = (int)store_pg_int(res, (int)i, 2);
        r->started_at_us = store_pg_int(res, (int)i, 3);
        r->seen_ms_ago = store_pg_int(res, (int)i, 4);
        r->nshards = (int)store_pg_int(res, (int)i, 5);
        r->shards = store_pg_dup(res, (int)i, 6, &oom);
    }
    *n = rows;
    PQclear(res);
    if (oom) {
        store_engine_rows_free(*out, *n);
        *out = NULL;
        *n = 0;
        return cbm_error_set(err, CBM_ENOMEM, "store_engines_list: out of memory");
    }
    return 0;
}

void store_engine_rows_free(store_engine_row_t *r, size_t n)
{
    if (r == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(r[i].host);
        free(r[i].shards);
    }
    free(r);
}

int store_wake_listen(store_t *s, cbm_error_t *err)
{
    return store_pg_exec_simple(s, "LISTEN cbm_wake", err, "store_wake_listen");
}

int store_wake_wait(store_t *s, int64_t timeout_ms, void (*cb)(const char *id, void *arg),
                    void *arg, cbm_error_t *err)
{
    struct pollfd p;
    PGnotify *n;

    if (PQconsumeInput(s->conn) == 0 || PQsocket(s->conn) < 0)
        return store_pg_fail(s, NULL, err, "store_wake_wait");
    if ((n = PQnotifies(s->conn)) == NULL) {
        p.fd = PQsocket(s->conn);
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms) <= 0) return 0;
        if (PQconsumeInput(s->conn) == 0) return store_pg_fail(s, NULL, err, "store_wake_wait");
        n = PQnotifies(s->conn);
    }
    while (n != NULL) {
        cb(n->extra, arg);
        PQfreemem(n);
        n = PQnotifies(s->conn);
    }
    return 0;
}
