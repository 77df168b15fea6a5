/* store_test.c - see store_test.h. */
#include "tests/store/store_test.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "tests/harness/testdb.h"

int fixture_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    cbm_error_t err = {0};

    assert_non_null(f);
    assert_int_equal(testdb_create(f->url, sizeof(f->url)), 0);
    assert_code(store_open(f->url, &f->s, &err), 0);
    if (store_migrate(f->s, &err) != 0) fail_msg("migrate: %s", err.message);
    f->pg = PQconnectdb(f->url);
    assert_int_equal(PQstatus(f->pg), CONNECTION_OK);
    *state = f;
    return 0;
}

int fixture_teardown(void **state)
{
    fixture_t *f = *state;

    store_close(f->s);
    PQfinish(f->pg);
    testdb_drop(f->url);
    free(f);
    return 0;
}

char *sql_text(fixture_t *f, const char *fmt, ...)
{
    static char out[4096];
    char sql[2048];
    va_list ap;
    PGresult *r;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    r = PQexec(f->pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s (%d rows)", sql, PQerrorMessage(f->pg), PQntuples(r));
    snprintf(out, sizeof(out), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

void sql_exec(fixture_t *f, const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    PGresult *r;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    r = PQexec(f->pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(f->pg));
    PQclear(r);
}

char *sql_explain(fixture_t *f, const char *sql)
{
    char *q = NULL, *out;
    size_t len = 0;
    PGresult *r;

    assert_true(asprintf(&q, "EXPLAIN %s", sql) > 0);
    r = PQexec(f->pg, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", q, PQerrorMessage(f->pg));
    for (int i = 0; i < PQntuples(r); i++) len += strlen(PQgetvalue(r, i, 0)) + 1;
    out = calloc(1, len + 1);
    assert_non_null(out);
    for (int i = 0; i < PQntuples(r); i++) {
        strcat(out, PQgetvalue(r, i, 0));
        strcat(out, "\n");
    }
    PQclear(r);
    free(q);
    return out;
}

void new_id(char out[37])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

void tdec_init(tdec_t *t, const char *id, int64_t expected, size_t nev, bool is_new,
               const char *status)
{
    static char payloads[64][32]; /* enough distinct texts for a test */
    static int next;

    assert(nev <= MAXEV);
    memset(t, 0, sizeof(*t));
    assert(strlen(id) == 36);
    memcpy(t->d.execution_id, id, 37);
    t->d.expected_seq = expected;
    t->d.events = t->ev;
    t->d.nevents = nev;
    for (size_t i = 0; i < nev; i++) {
        char *p = payloads[next++ % 64];
        t->ev[i].seq = expected + 1 + (int64_t)i;
        snprintf(p, 32, "{\"seq\":%lld}", (long long)t->ev[i].seq);
        t->ev[i].type = (char *)"StepCompleted";
        t->ev[i].payload = p;
        t->ev[i].recorded_at_us = 1700000000000000LL + t->ev[i].seq;
    }
    t->d.is_new = is_new;
    t->d.blueprint = "bp";
    t->d.version = "v1";
    t->d.inputs = "{\"x\":1}";
    t->d.status = status;
}

int append1(fixture_t *f, tdec_t *t, cbm_error_t *err)
{
    store_decision_t *ds[1] = {&t->d};
    return store_append(f->s, ds, 1, err);
}

int64_t create_exec(fixture_t *f, const char *id, size_t nev, const char *status)
{
    tdec_t t;
    cbm_error_t err = {0};

    tdec_init(&t, id, 0, nev, true, status);
    if (append1(f, &t, &err) != 0) fail_msg("create %s: %s", id, err.message);
    return (int64_t)nev;
}

