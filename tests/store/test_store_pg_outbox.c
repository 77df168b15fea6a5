/*
 * test_store_pg_outbox.c - the outbox's rows (migration 009, docs/outbox.md):
 * with the database's outbox off a decision writes none; on, each lifecycle
 * event becomes one row in the decision's own statement (subject, msg id,
 * payload with its step, a payload over the cap replaced by a marker), in
 * seq order; a decision the store rejects (stale seq) or refuses for its
 * data writes none while the rest of its batch does; the publisher's calls
 * read one row per execution per round, delete, and count; the health line
 * (bus_outbox_health) says off, on, or stale past its threshold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus/outbox.h"
#include "tests/harness/testdb.h"
#include "tests/store/store_test.h"

static void enable(fixture_t *f, const char *subject, int64_t cap)
{
    cbm_error_t err = {0};
    int rc = store_outbox_configure(f->s, true, subject, cap, &err);
    if (rc != 0) fail_msg("configure: %s", err.message);
}

static int64_t rows(fixture_t *f)
{
    return sql_int(f, "SELECT count(*) FROM cbm_outbox");
}

static void test_off_writes_nothing(void **state)
{
    fixture_t *f = *state;
    char id[37];

    new_id(id);
    create_exec(f, id, 3, "running");
    assert_int_equal(rows(f), 0);
    enable(f, NULL, 1000);
    {
        cbm_error_t err = {0};
        assert_code(store_outbox_configure(f->s, false, NULL, 0, &err), 0);
    }
    {
        tdec_t t;
        cbm_error_t err = {0};
        tdec_init(&t, id, 3, 2, false, "running");
        assert_code(append1(f, &t, &err), 0);
    }
    assert_int_equal(rows(f), 0);
}

static void test_rows_with_decision(void **state)
{
    fixture_t *f = *state;
    char id[37];
    tdec_t t;
    cbm_error_t err = {0};

    enable(f, NULL, 1000);
    new_id(id);
    tdec_init(&t, id, 0, 4, true, "completed");
    t.d.blueprint = "order.flow v2"; /* '.' and ' ' may not be in a subject token */
    t.ev[0].type = (char *)"ExecutionStarted";
    t.ev[1].type = (char *)"StepScheduled"; /* not a lifecycle event: no row */
    t.ev[2].type = (char *)"StepCompleted";
    t.ev[2].payload = (char *)"{\"step\":\"charge\",\"attempt\":1,\"result\":{\"ok\":true}}";
    t.ev[3].type = (char *)"ExecutionCompleted";
    assert_code(append1(f, &t, &err), 0);
    assert_int_equal(rows(f), 3);
    assert_string_equal(sql_text(f, "SELECT string_agg(seq::text || ' ' || subject, ',' ORDER BY id)"
                                    " FROM cbm_outbox"),
                        "1 cerebelum.execution.order_flow_v2.started,"
                        "3 cerebelum.execution.order_flow_v2.step_completed,"
                        "4 cerebelum.execution.order_flow_v2.completed");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_outbox WHERE msg_id = '%s:' || seq", id), 3);
    assert_string_equal(sql_text(f, "SELECT payload::text FROM cbm_outbox WHERE seq = 3"),
                        sql_text(f, "SELECT json_build_object('event', 'step_completed', 'type',"
                                    " 'StepCompleted', 'execution_id', '%s'::uuid, 'blueprint',"
                                    " 'order.flow v2', 'seq', 3, 'step', 'charge', 'payload',"
                                    " '{\"step\":\"charge\",\"attempt\":1,\"result\":{\"ok\":true}}'"
                                    "::json)::text", id));
    /* The next decision finds the blueprint in the projection. */
    {
        tdec_t u;
        tdec_init(&u, id, 4, 1, false, "completed");
        u.ev[0].type = (char *)"StepFailed";
        assert_code(append1(f, &u, &err), 0);
        assert_string_equal(sql_text(f, "SELECT subject FROM cbm_outbox WHERE seq = 5"),
                            "cerebelum.execution.order_flow_v2.step_failed");
    }
}

static void test_template_cap_delib(void **state)
{
    fixture_t *f = *state;
    char id[37];
    tdec_t t;
    cbm_error_t err = {0};
    static char big[200];

    enable(f, "ev.{event}.of.{blueprint}", 40);
    memset(big, 0, sizeof(big));
    snprintf(big, sizeof(big), "{\"step\":\"s\",\"attempt\":1,\"result\":\"%0100d\"}", 7);
    new_id(id);
    tdec_init(&t, id, 0, 2, true, "completed");
    t.d.blueprint = "_delib.plan.deliberate";
    t.ev[0].type = (char *)"StepCompleted";
    t.ev[0].payload = big;
    t.ev[1].type = (char *)"ExecutionCompleted";
    assert_code(append1(f, &t, &err), 0);
    assert_string_equal(sql_text(f, "SELECT string_agg(subject, ',' ORDER BY id) FROM cbm_outbox"),
                        "ev.step_completed.of._delib_plan_deliberate,"
                        "ev.deliberation_finished.of._delib_plan_deliberate");
    {
        char want[64];
        snprintf(want, sizeof(want), "true %zu s", strlen(big));
        assert_string_equal(sql_text(f, "SELECT payload->'payload'->>'omitted' || ' ' ||"
                                        " (payload->'payload'->>'bytes') || ' ' ||"
                                        " (payload->>'step') FROM cbm_outbox WHERE seq = 1"),
                            want);
    }
    /* The message of seq 2 is small: kept whole. */
    assert_string_equal(sql_text(f, "SELECT payload->'payload'::text FROM cbm_outbox WHERE seq = 2"),
                        "{\"seq\":2}");
}

/* A stale decision and one refused for its data leave no rows; the batch's
 * other decision commits with its rows. */
static void test_rejected_write_none(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37], c[37];
    tdec_t ta, tb, tc;
    store_decision_t *ds[3] = {&ta.d, &tb.d, &tc.d};
    cbm_error_t err = {0};

    enable(f, NULL, 1000);
    new_id(a);
    new_id(b);
    new_id(c);
    create_exec(f, a, 1, "running");
    create_exec(f, b, 1, "running");
    create_exec(f, c, 1, "running");
    sql_exec(f, "DELETE FROM cbm_outbox");
    tdec_init(&ta, a, 1, 1, false, "failed");
    ta.ev[0].type = (char *)"ExecutionFailed";
    tdec_init(&tb, b, 0, 1, false, "failed"); /* stale: b is at seq 1 */
    tb.ev[0].type = (char *)"ExecutionFailed";
    tdec_init(&tc, c, 1, 1, false, "failed");
    tc.ev[0].type = (char *)"ExecutionFailed";
    tc.d.error = "{\"r\":\"\\u0000\"}"; /* jsonb refuses \u0000: 22P05 */
    store_append(f->s, ds, 3, &err);
    assert_code(ta.d.result_code, 0);
    assert_code(tb.d.result_code, CBM_ECONFLICT);
    assert_code(tc.d.result_code, CBM_EINVAL);
    assert_int_equal(rows(f), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_outbox WHERE execution_id = '%s'", a), 1);
}

static void test_publisher_calls(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37];
    cbm_error_t err = {0};
    store_outbox_row_t *r = NULL;
    size_t n = 0;
    store_outbox_stats_t st;
    bool got = false;

    enable(f, NULL, 1000);
    new_id(a);
    new_id(b);
    {
        tdec_t t;
        tdec_init(&t, a, 0, 3, true, "running"); /* three StepCompleted rows */
        assert_code(append1(f, &t, &err), 0);
        tdec_init(&t, b, 0, 2, true, "running");
        assert_code(append1(f, &t, &err), 0);
    }
    assert_code(store_outbox_try_lock(f->s, &got, &err), 0);
    assert_true(got);
    assert_code(store_outbox_stats(f->s, &st, &err), 0);
    assert_true(st.enabled);
    assert_int_equal(st.rows, 5);
    assert_string_equal(st.subject, CBM_OUTBOX_SUBJECT_DEFAULT);
    /* Round 1: a's first row and b's first row only. */
    assert_code(store_outbox_read(f->s, 100, &r, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].execution_id, a);
    assert_int_equal(r[0].seq, 1);
    assert_string_equal(r[1].execution_id, b);
    assert_int_equal(r[1].seq, 1);
    {
        char want[64];
        snprintf(want, sizeof(want), "%s:1", a);
        assert_string_equal(r[0].msg_id, want);
    }
    {
        int64_t ids[2] = {r[0].id, r[1].id};
        assert_code(store_outbox_delete(f->s, ids, 2, &err), 0);
    }
    store_outbox_rows_free(r, n);
    assert_code(store_outbox_read(f->s, 100, &r, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].seq, 2);
    assert_int_equal(r[1].seq, 2);
    store_outbox_rows_free(r, n);
    /* A second session cannot take the lock. */
    {
        store_t *s2 = NULL;
        assert_code(store_open(f->url, &s2, &err), 0);
        assert_code(store_outbox_try_lock(s2, &got, &err), 0);
        assert_false(got);
        store_close(s2);
    }
    assert_code(store_outbox_stats(f->s, &st, &err), 0);
    assert_int_equal(st.rows, 3);
}

/* The health line, from the database alone. */
static void test_health(void **state)
{
    fixture_t *f = *state;
    cbm_error_t err = {0};
    char line[256], id[37];
    bool stale = true;

    assert_code(bus_outbox_health(f->s, 60000, line, sizeof(line), &stale, &err), 0);
    assert_string_equal(line, "outbox: off");
    assert_false(stale);
    enable(f, NULL, 1000);
    assert_code(bus_outbox_health(f->s, 60000, line, sizeof(line), &stale, &err), 0);
    assert_string_equal(line, "outbox: on, 0 rows waiting");
    new_id(id);
    create_exec(f, id, 2, "running");
    assert_code(bus_outbox_health(f->s, 60000, line, sizeof(line), &stale, &err), 0);
    assert_false(stale);
    assert_non_null(strstr(line, "outbox: on, 2 rows waiting, oldest "));
    sql_exec(f, "UPDATE cbm_outbox SET created_at = created_at - interval '95 s'");
    assert_code(bus_outbox_health(f->s, 60000, line, sizeof(line), &stale, &err), 0);
    assert_true(stale);
    if (strncmp(line, "outbox: STALE: 2 rows waiting, oldest 95.", 41) != 0 ||
        strstr(line, "(threshold 60 s): is a publisher (serve --nats) running") == NULL)
        fail_msg("line: %s", line);
}

int main(void)
{
    char url[512];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_off_writes_nothing, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_rows_with_decision, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_template_cap_delib, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_rejected_write_none, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_publisher_calls, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_health, fixture_setup, fixture_teardown),
    };

    if (testdb_create(url, sizeof(url)) != 0) {
        fprintf(stderr, "no test PostgreSQL (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    testdb_drop(url);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
