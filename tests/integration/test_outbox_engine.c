/*
 * test_outbox_engine.c - outbox rows from real engines (docs/outbox.md):
 * an execution run while the database's outbox is off leaves no row; once
 * it is on (a row in the database, no engine option), an engine's execution
 * leaves one row per lifecycle event of its history, and so does a decision
 * made outside any server: a client-only engine cancelling an execution
 * that waits for an approval while no engine runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "cerebelum/cerebelum.h"
#include "store/store.h"
#include "tests/harness/testdb.h"

static char url[512];

#define BP "{\"name\":\"ob.flow\",\"steps\":[{\"name\":\"prep\"},"                      \
           "{\"name\":\"ok\",\"kind\":\"approval\",\"depends_on\":[\"prep\"]}]}"

static void h_prep(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"n\": 1}");
}

static cbm_engine_t *engine(bool client_only)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};

    o.database_url = url;
    o.client_only = client_only;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    if (!client_only) assert_int_equal(cbm_engine_register_step(e, "prep", h_prep, NULL), 0);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    if (cbm_engine_register_blueprint(e, BP, NULL, &err) != 0) fail_msg("register: %s", err.message);
    return e;
}

static void wait_status(cbm_engine_t *e, const char *id, const char *status)
{
    for (int i = 0; i < 1500; i++) {
        cbm_execution_info_t *x = NULL;
        cbm_error_t err = {0};
        int same;
        if (cbm_execution_get(e, id, &x, &err) == 0) {
            same = strcmp(x->status, status) == 0;
            cbm_execution_info_free(x);
            if (same) return;
        }
        uv_sleep(10);
    }
    fail_msg("execution %s never became %s", id, status);
}

static char *q(PGconn *c, const char *sql)
{
    static char buf[4096];
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQerrorMessage(c));
    snprintf(buf, sizeof(buf), "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

/* The rows of execution id, "seq:subject" in id order, and the lifecycle
 * events of its history, "seq:Type", must pair up one to one. */
static void check_rows(PGconn *c, const char *id, const char *want_events)
{
    char sql[1024];

    snprintf(sql, sizeof(sql),
             "SELECT string_agg(o.seq || ':' || (o.payload->>'type') || ':' || o.subject, ','"
             " ORDER BY o.id) FROM cbm_outbox o WHERE o.execution_id = '%s'", id);
    assert_string_equal(q(c, sql), want_events);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM cbm_events e JOIN cbm_outbox_events m USING (type)"
             " WHERE e.execution_id = '%s' AND NOT EXISTS (SELECT 1 FROM cbm_outbox o"
             " WHERE o.execution_id = e.execution_id AND o.seq = e.seq"
             " AND o.msg_id = e.execution_id || ':' || e.seq)", id);
    assert_string_equal(q(c, sql), "0");
}

static void test_engine_and_outside(void **state)
{
    cbm_engine_t *e = engine(false), *cli;
    cbm_error_t err = {0};
    char off[37], on[37], sql[256];
    PGconn *c = PQconnectdb(url);
    store_t *s = NULL;
    (void)state;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    /* Off: no rows. */
    assert_int_equal(cbm_execution_start(e, "ob.flow", "{}", off, &err), 0);
    wait_status(e, off, "awaiting_approval");
    assert_string_equal(q(c, "SELECT count(*) FROM cbm_outbox"), "0");

    /* On, by a row in the database: the running engine writes rows from
     * its next commit. */
    assert_int_equal(store_open(url, &s, &err), 0);
    assert_int_equal(store_outbox_configure(s, true, NULL, 65536, &err), 0);
    store_close(s);
    assert_int_equal(cbm_execution_start(e, "ob.flow", "{}", on, &err), 0);
    wait_status(e, on, "awaiting_approval");
    cbm_engine_destroy(e);

    /* No engine runs; a client-only one (what the CLI uses) cancels. */
    cli = engine(true);
    assert_int_equal(cbm_execution_cancel(cli, on, "by hand", &err), 0);
    assert_int_equal(cbm_execution_cancel(cli, off, "by hand", &err), 0);
    wait_status(cli, on, "cancelled");
    wait_status(cli, off, "cancelled");
    cbm_engine_destroy(cli);

    check_rows(c, on,
               "1:ExecutionStarted:cerebelum.execution.ob_flow.started,"
               "3:StepCompleted:cerebelum.execution.ob_flow.step_completed,"
               "4:ApprovalRequested:cerebelum.execution.ob_flow.approval_requested,"
               "6:ExecutionCancelled:cerebelum.execution.ob_flow.cancelled");
    /* The first execution: only its cancel, decided after the switch. */
    snprintf(sql, sizeof(sql), "SELECT string_agg(o.payload->>'event', ',') FROM cbm_outbox o"
                               " WHERE o.execution_id = '%s'", off);
    assert_string_equal(q(c, sql), "cancelled");
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_and_outside),
    };
    int rc;

    if (testdb_create(url, sizeof(url)) != 0) {
        fprintf(stderr, "no test PostgreSQL (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
