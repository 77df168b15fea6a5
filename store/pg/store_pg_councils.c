/*
 * store_pg_councils.c - councils as data (migration 007; store.h,
 * "Councils"): put, get (a version, or the latest live one), the list of
 * latest versions, and the soft delete.
 *
 * Every call is one prepared statement. "Latest" is the live row with the
 * newest put_at, read through the partial index cbm_councils_latest (name,
 * put_at DESC) WHERE deleted_at IS NULL; a put that brings a deleted version
 * back sets put_at, so it is the latest again, while a put of a live version
 * changes nothing (the blueprints' rule). The definition is text and is
 * only cast to jsonb to read the role and the number of agents for lists.
 */
#include "store/pg/store_pg_internal.h"

#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

/* The columns of a store_council_t, in its order; def is the definition
 * column or NULL (lists). */
#define COUNCIL_COLS(def)                                                              \
    "name, version, " def ", definition::jsonb->>'role',"                              \
    " coalesce(jsonb_array_length(definition::jsonb->'agents'), 0), " PG_US("created_at") \
    ", " PG_US("put_at") ", " PG_US("deleted_at")
#define LIVE "deleted_at IS NULL"

/* Inserted, or brought back from a delete: one row affected. A live row
 * (the WHERE is false) is left alone: none affected. */
static const char sql_put[] =
    "INSERT INTO cbm_councils AS c (name, version, definition) VALUES ($1, $2, $3)"
    " ON CONFLICT (name, version) DO UPDATE SET deleted_at = NULL, put_at = clock_timestamp()"
    " WHERE c.deleted_at IS NOT NULL";
static const char sql_get[] =
    "SELECT " COUNCIL_COLS("definition") " FROM cbm_councils WHERE name = $1 AND version = $2";
static const char sql_latest[] =
    "SELECT " COUNCIL_COLS("definition") " FROM cbm_councils WHERE name = $1 AND " LIVE
    " ORDER BY put_at DESC, version LIMIT 1";
static const char sql_list[] =
    "SELECT DISTINCT ON (name) " COUNCIL_COLS("NULL") " FROM cbm_councils WHERE " LIVE
    " ORDER BY name, put_at DESC, version";
static const char sql_delete[] =
    "UPDATE cbm_councils SET deleted_at = clock_timestamp() WHERE name = $1 AND " LIVE;

void store_councils_free(store_council_t *c, size_t n)
{
    if (c == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(c[i].name);
        free(c[i].version);
        free(c[i].definition);
        free(c[i].role);
    }
    free(c);
}

/* The rows of res as *n councils. */
static int fill(const PGresult *res, store_council_t **out, size_t *n, cbm_error_t *err)
{
    size_t rows = (size_t)PQntuples(res);
    store_council_t *c;
    bool oom = false;

    *out = NULL;
    *n = 0;
    if (rows == 0) return 0;
    if ((c = calloc(rows, sizeof(*c))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "councils: out of memory");
    for (size_t i = 0; i < rows; i++) {
        int r = (int)i;
        c[i].name = store_pg_dup(res, r, 0, &oom);
        c[i].version = store_pg_dup(res, r, 1, &oom);
        c[i].definition = store_pg_dup(res, r, 2, &oom);
        c[i].role = store_pg_dup(res, r, 3, &oom);
        c[i].agents = (int)store_pg_int(res, r, 4);
        c[i].created_at_us = store_pg_int(res, r, 5);
        c[i].put_at_us = store_pg_int(res, r, 6);
        c[i].deleted_at_us = store_pg_int(res, r, 7);
    }
    if (oom) {
        store_councils_free(c, rows);
        return cbm_error_set(err, CBM_ENOMEM, "councils: out of memory");
    }
    *out = c;
    *n = rows;
    return 0;
}

int store_council_put(store_t *s, const char *name, const char *version, const char *definition,
                      bool *created, cbm_error_t *err)
{
    const char *vals[3] = {name, version, definition};
    PGresult *res;
    int rc;

    if (created != NULL) *created = false;
    if (name == NULL || version == NULL || definition == NULL)
        return cbm_error_set(err, CBM_EINVAL,
                             "store_council_put: name, version and definition are required");
    res = store_pg_query(s, STMT_COUNCIL_PUT, sql_put, 3, vals, err, "store_council_put", &rc);
    if (res != NULL && created != NULL) *created = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return rc;
}

int store_council_get(store_t *s, const char *name, const char *version,
                      store_council_t **out, cbm_error_t *err)
{
    const char *vals[2] = {name, version};
    PGresult *res;
    size_t n = 0;
    int rc;

    *out = NULL;
    if (name == NULL) return cbm_error_set(err, CBM_EINVAL, "store_council_get: no name");
    if (version != NULL)
        res = store_pg_query(s, STMT_COUNCIL_GET, sql_get, 2, vals, err, "store_council_get", &rc);
    else
        res = store_pg_query(s, STMT_COUNCIL_LATEST, sql_latest, 1, vals, err,
                             "store_council_get", &rc);
    if (res == NULL) return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        if (version != NULL)
            return cbm_error_set(err, CBM_ENOTFOUND, "council '%s' has no version %s", name,
                                 version);
        return cbm_error_set(err, CBM_ENOTFOUND, "no council named '%s'", name);
    }
    rc = fill(res, out, &n, err);
    PQclear(res);
    return rc;
}

int store_council_list(store_t *s, store_council_t **out, size_t *n, cbm_error_t *err)
{
    PGresult *res;
    int rc;

    *out = NULL;
    *n = 0;
    res = store_pg_query(s, STMT_COUNCIL_LIST, sql_list, 0, NULL, err, "store_council_list", &rc);
    if (res == NULL) return rc;
    rc = fill(res, out, n, err);
    PQclear(res);
    return rc;
}

int store_council_delete(store_t *s, const char *name, cbm_error_t *err)
{
    PGresult *res;
    int rc;

    if (name == NULL) return cbm_error_set(err, CBM_EINVAL, "store_council_delete: no name");
    res = store_pg_query(s, STMT_COUNCIL_DELETE, sql_delete, 1, &name, err,
                         "store_council_delete", &rc);
    if (res == NULL) return rc;
    if (strcmp(PQcmdTuples(res), "0") == 0)
        rc = cbm_error_set(err, CBM_ENOTFOUND, "no council named '%s'", name);
    PQclear(res);
    return rc;
}
