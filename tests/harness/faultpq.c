/*
 * faultpq.c - see faultpq.h. The __wrap_ functions are what the store's
 * objects call for the libpq functions named in tests/fault/meson.build;
 * __real_ ones are libpq's.
 */
#include "tests/harness/faultpq.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tests/harness/faultalloc.h"

PGresult *__real_PQexec(PGconn *conn, const char *query);
PGresult *__real_PQexecParams(PGconn *conn, const char *command, int nParams,
                              const Oid *paramTypes, const char *const *paramValues,
                              const int *paramLengths, const int *paramFormats, int resultFormat);
PGresult *__real_PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                                const char *const *paramValues, const int *paramLengths,
                                const int *paramFormats, int resultFormat);
PGresult *__real_PQprepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                           const Oid *paramTypes);
PGconn *__real_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                 int expand_dbname);
/* The harness's own copies bypass the allocation wrappers (faultalloc.c):
 * they are neither the library's nor the run's. */
char *__real_strdup(const char *s);
void __real_free(void *p);

PGresult *__wrap_PQexec(PGconn *conn, const char *query);
PGresult *__wrap_PQexecParams(PGconn *conn, const char *command, int nParams,
                              const Oid *paramTypes, const char *const *paramValues,
                              const int *paramLengths, const int *paramFormats, int resultFormat);
PGresult *__wrap_PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                                const char *const *paramValues, const int *paramLengths,
                                const int *paramFormats, int resultFormat);
PGresult *__wrap_PQprepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                           const Oid *paramTypes);
PGconn *__wrap_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                 int expand_dbname);

static long armed, counted;
static fp_mode_t mode;
static bool fired;
static char what[160];

/* Prepared statements' texts by name, to say which one failed. */
static struct {
    char name[32];
    char *sql;
} prepared[64];

const char *fp_mode_name(fp_mode_t m)
{
    static const char *const names[] = {"error", "drop", "lost", "null"};
    return m < FP_NMODES ? names[m] : "?";
}

void fp_arm(long n, fp_mode_t m)
{
    armed = n;
    mode = m;
    counted = 0;
    fired = false;
    what[0] = '\0';
}

void fp_disarm(void)
{
    armed = 0;
}

bool fp_fired(void)
{
    return fired;
}

long fp_count(void)
{
    return counted;
}

const char *fp_what(void)
{
    return what;
}

/* Counts a call made inside a library call; true when it must go wrong. */
static bool must_fail(const char *sql)
{
    if (!fa_inside()) return false;
    counted++;
    if (armed == 0 || counted != armed) return false;
    fired = true;
    snprintf(what, sizeof(what), "%s", sql != NULL ? sql : "?");
    return true;
}

static const char *prepared_sql(const char *name)
{
    for (size_t i = 0; i < sizeof(prepared) / sizeof(*prepared); i++)
        if (prepared[i].sql != NULL && strcmp(prepared[i].name, name) == 0) return prepared[i].sql;
    return name;
}

static void remember(const char *name, const char *sql)
{
    for (size_t i = 0; i < sizeof(prepared) / sizeof(*prepared); i++) {
        if (prepared[i].sql != NULL && strcmp(prepared[i].name, name) != 0) continue;
        __real_free(prepared[i].sql);
        snprintf(prepared[i].name, sizeof(prepared[i].name), "%s", name);
        prepared[i].sql = __real_strdup(sql);
        return;
    }
}

static void drop(PGconn *conn)
{
    int fd = PQsocket(conn);
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

/* The wrong answer for the armed mode instead of the statement (FP_ERROR,
 * FP_NULL) or after it ran (FP_LOST: res is its answer). FP_DROP needs
 * none: the statement is sent on a dead socket. */
static PGresult *wrong(PGconn *conn, PGresult *res, bool txn_end)
{
    switch (mode) {
    case FP_ERROR:
        /* A failed COMMIT ends the transaction; a failed statement inside
         * one aborts it, which the raise does. */
        if (txn_end) PQclear(__real_PQexec(conn, "ROLLBACK"));
        return __real_PQexec(conn, "DO $$BEGIN RAISE EXCEPTION 'fault injected'"
                                   " USING ERRCODE = 'XX000'; END$$");
    case FP_LOST:
        PQclear(res);
        drop(conn);
        return __real_PQexec(conn, "SELECT 1"); /* libpq's lost-connection answer */
    default:
        return NULL;
    }
}

static bool ends_txn(const char *sql)
{
    return strncmp(sql, "COMMIT", 6) == 0 || strncmp(sql, "ROLLBACK", 8) == 0;
}

PGresult *__wrap_PQexec(PGconn *conn, const char *query)
{
    bool f = must_fail(query);

    if (f && mode == FP_DROP) drop(conn);
    if (!f || mode == FP_DROP || mode == FP_LOST) {
        PGresult *res = __real_PQexec(conn, query);
        return f && mode == FP_LOST ? wrong(conn, res, false) : res;
    }
    return wrong(conn, NULL, ends_txn(query));
}

PGresult *__wrap_PQexecParams(PGconn *conn, const char *command, int nParams,
                              const Oid *paramTypes, const char *const *paramValues,
                              const int *paramLengths, const int *paramFormats, int resultFormat)
{
    bool f = must_fail(command);

    if (f && mode == FP_DROP) drop(conn);
    if (!f || mode == FP_DROP || mode == FP_LOST) {
        PGresult *res = __real_PQexecParams(conn, command, nParams, paramTypes, paramValues,
                                            paramLengths, paramFormats, resultFormat);
        return f && mode == FP_LOST ? wrong(conn, res, false) : res;
    }
    return wrong(conn, NULL, false);
}

PGresult *__wrap_PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                                const char *const *paramValues, const int *paramLengths,
                                const int *paramFormats, int resultFormat)
{
    bool f = must_fail(prepared_sql(stmtName));

    if (f && mode == FP_DROP) drop(conn);
    if (!f || mode == FP_DROP || mode == FP_LOST) {
        PGresult *res = __real_PQexecPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                              paramFormats, resultFormat);
        return f && mode == FP_LOST ? wrong(conn, res, false) : res;
    }
    return wrong(conn, NULL, false);
}

PGresult *__wrap_PQprepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                           const Oid *paramTypes)
{
    bool f;

    remember(stmtName, query);
    f = must_fail(query);
    if (f && mode == FP_DROP) drop(conn);
    if (!f || mode == FP_DROP || mode == FP_LOST) {
        PGresult *res = __real_PQprepare(conn, stmtName, query, nParams, paramTypes);
        return f && mode == FP_LOST ? wrong(conn, res, false) : res;
    }
    return wrong(conn, NULL, false);
}

/* A connection that fails: the same parameters, to a socket directory that
 * does not exist (the keywords are processed in order, so a host given
 * last wins). */
PGconn *__wrap_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                 int expand_dbname)
{
    const char *k[32], *v[32];
    size_t n = 0;

    if (!must_fail("connect")) return __real_PQconnectdbParams(keywords, values, expand_dbname);
    while (keywords[n] != NULL && n < 30) {
        k[n] = keywords[n];
        v[n] = values[n];
        n++;
    }
    k[n] = "host";
    v[n] = "/nonexistent/cerebelum-fault";
    k[n + 1] = NULL;
    v[n + 1] = NULL;
    return __real_PQconnectdbParams(k, v, expand_dbname);
}
