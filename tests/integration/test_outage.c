/*
 * test_outage.c - the database goes away mid-run: every backend of the
 * engine's connections is terminated, several times, while hundreds of
 * executions are running. The engine must report the errors, reconnect with
 * back-off and finish every execution, with whole histories (no gap, no
 * duplicate, each step completed exactly once).
 */
#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "cerebelum/cerebelum.h"
#include "tests/harness/testdb.h"

static char url[512];

static void h_slow(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    uv_sleep(2);
    cbm_step_ok(out, "{\"ok\": true}");
}

static int scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) v = atoi(PQgetvalue(r, 0, 0));
    else fprintf(stderr, "query failed: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return v;
}

static void test_connections_killed_mid_run(void **state)
{
    enum { N = 300 };
    static char ids[N][37];
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    cbm_engine_stats_t st;
    PGconn *side;
    int kills = 0;
    (void)state;

    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "slow", h_slow, NULL), 0);
    assert_int_equal(cbm_engine_start(e, &err), 0);
    assert_int_equal(cbm_engine_register_blueprint(
                         e,
                         "{\"name\":\"t\",\"timeline\":[{\"name\":\"a\",\"handler\":\"slow\"},"
                         "{\"name\":\"b\",\"handler\":\"slow\"},{\"name\":\"c\",\"handler\":\"slow\"},"
                         "{\"name\":\"d\",\"handler\":\"slow\"}]}",
                         NULL, &err),
                     0);
    assert_int_equal(cbm_execution_start_many(e, "t", NULL, N, ids, &err), 0);

    side = PQconnectdb(url);
    assert_int_equal(PQstatus(side), CONNECTION_OK);
    for (int i = 0; i < 4; i++) {
        uv_sleep(150);
        kills += scalar(side, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()");
    }
    assert_true(kills > 0);

    for (int i = 0; i < N; i++) {
        cbm_execution_info_t *info = NULL;
        if (cbm_execution_wait(e, ids[i], 60000, &info, &err) != 0)
            fail_msg("execution %d: %s", i, err.message);
        assert_string_equal(info->status, "completed");
        cbm_execution_info_free(info);
    }
    cbm_engine_get_stats(e, &st);
    assert_true(st.store_errors > 0); /* the outage was seen, not hidden */
    cbm_engine_destroy(e);

    /* Whole histories: seq 1..n with no gap, one completion per step. */
    assert_int_equal(scalar(side, "SELECT count(*) FROM (SELECT execution_id FROM cbm_events "
                                  "GROUP BY 1 HAVING max(seq) <> count(*)) g"), 0);
    assert_int_equal(scalar(side, "SELECT count(*) FROM (SELECT execution_id, payload->>'step' "
                                  "FROM cbm_events WHERE type = 'StepCompleted' GROUP BY 1, 2 "
                                  "HAVING count(*) <> 1) g"), 0);
    assert_int_equal(scalar(side, "SELECT count(*) FROM cbm_events WHERE type = 'StepCompleted'"),
                     4 * N);
    assert_int_equal(scalar(side, "SELECT count(*) FROM cbm_executions WHERE status = 'completed'"),
                     N);
    PQfinish(side);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections_killed_mid_run),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
