/*
 * test_store_pg.c - conformance suite of the store port (store/store.h),
 * run against the PostgreSQL backend on the private server started by
 * tests/harness/with-postgres.sh. Each test gets a fresh database, migrated
 * (store_test.h); the multi-connection tests live in
 * test_store_pg_concurrency.c.
 *
 * Besides the port's functions the suite checks the tables directly through
 * its own connection, so "nothing was left behind" means what it says.
 * CBM_STORE_BENCH=1 adds a throughput measurement (printed, not asserted).
 */
#include "tests/store/store_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/store_pg_internal.h"
#include "tests/harness/testdb.h"

/* ------------------------------------------------------------------ tests */

static void test_array_literal(void **state)
{
    fixture_t *f = *state;
    static const char *const elems[] = {
        "plain", "", "NULL", "with \"quotes\"", "back\\slash", "both \\\"", "{braces},commas",
        "  spaces  ", "new\nline\ttab", "unicode: \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", NULL,
        "\\", "\"", "{\"json\": \"a\\\"b\\\\c\\u00e9\"}",
    };
    const size_t n = sizeof(elems) / sizeof(elems[0]);
    pg_array_t a;
    const char *lit;
    PGresult *r;

    store_pg_array_init(&a);
    assert_string_equal(store_pg_array_finish(&a), "{}");
    store_pg_array_reset(&a);
    store_pg_array_add_int(&a, -9223372036854775807LL - 1);
    store_pg_array_add_int(&a, 0);
    store_pg_array_add_text(&a, NULL);
    store_pg_array_add_text(&a, "a\"b\\c");
    assert_string_equal(store_pg_array_finish(&a), "{-9223372036854775808,0,NULL,\"a\\\"b\\\\c\"}");

    /* What the server parses is exactly what went in, NULL included. Many
     * elements also exercise the buffer's growth. */
    store_pg_array_reset(&a);
    for (int rep = 0; rep < 50; rep++)
        for (size_t i = 0; i < n; i++) store_pg_array_add_text(&a, elems[i]);
    lit = store_pg_array_finish(&a);
    assert_non_null(lit);
    r = PQexecParams(f->pg, "SELECT x, x IS NULL FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
                     1, NULL, &lit, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 50 * n);
    for (int row = 0; row < PQntuples(r); row++) {
        const char *want = elems[(size_t)row % n];
        if (want == NULL) {
            assert_string_equal(PQgetvalue(r, row, 1), "t");
        } else {
            assert_string_equal(PQgetvalue(r, row, 1), "f");
            assert_string_equal(PQgetvalue(r, row, 0), want);
        }
    }
    PQclear(r);
    store_pg_array_free(&a);
}

static void test_migrate_twice(void **state)
{
    fixture_t *f = *state;
    cbm_error_t err = {0};
    char *applied;

    /* setup() migrated once. */
    applied = strdup(sql_text(f, "SELECT string_agg(version || ':' || name || '@' || applied_at, ',' ORDER BY version) FROM cbm_schema_version"));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_schema_version"), 10);
    assert_string_equal(sql_text(f, "SELECT string_agg(version || ':' || name, ',' ORDER BY version) FROM cbm_schema_version"),
                        "1:001_init,2:002_append_check,3:003_snapshots,4:004_idempotency,5:005_tasks,6:006_engines,7:007_councils,8:008_triggers,9:009_outbox,10:010_shards");
    assert_code(store_migrate(f->s, &err), 0);
    assert_code(store_migrate(f->s, &err), 0);
    /* Nothing re-applied: same rows, same applied_at. */
    assert_string_equal(sql_text(f, "SELECT string_agg(version || ':' || name || '@' || applied_at, ',' ORDER BY version) FROM cbm_schema_version"),
                        applied);
    free(applied);
    /* The advisory lock was released. */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 0);

    /* A database at version 2 with data (what an older binary left) is
     * upgraded in place: 003 and 004 are applied, and the data loads. */
    create_exec(f, "00000000-0000-4000-8000-000000000001", 3, "running");
    PQclear(PQexec(f->pg, "DROP TABLE cbm_snapshots; DROP INDEX cbm_executions_idempotency;"
                          " ALTER TABLE cbm_executions DROP COLUMN idempotency_key;"
                          " DELETE FROM cbm_schema_version WHERE version IN (3, 4)"));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_schema_version"), 8);
    if (store_migrate(f->s, &err) != 0) fail_msg("migrate: %s", err.message);
    assert_string_equal(sql_text(f, "SELECT string_agg(version || ':' || name, ',' ORDER BY version) FROM cbm_schema_version"),
                        "1:001_init,2:002_append_check,3:003_snapshots,4:004_idempotency,5:005_tasks,6:006_engines,7:007_councils,8:008_triggers,9:009_outbox,10:010_shards");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions WHERE idempotency_key IS NULL"), 1);
    {
        store_unfinished_t u;
        assert_code(store_load_unfinished(f->s, &u, &err), 0);
        assert_int_equal(u.nexecs, 1);
        assert_int_equal(u.nevents, 3);
        assert_null(u.execs[0].snapshot);
        store_unfinished_free(&u);
    }
}

/* A migration that fails leaves the database as it was, with the lock
 * released, and says which migration failed. */
static void test_migrate_failure(void **state)
{
    char url[512];
    store_t *s;
    cbm_error_t err = {0};
    PGconn *c;
    PGresult *r;

    (void)state;
    assert_int_equal(testdb_create(url, sizeof(url)), 0);
    assert_int_equal(testdb_exec(url, "CREATE TABLE cbm_events (squatter int)"), 0);
    assert_code(store_open(url, &s, &err), 0);
    assert_code(store_migrate(s, &err), CBM_ESTORE);
    assert_non_null(strstr(err.message, "001_init"));
    assert_non_null(strstr(err.message, "42P07"));
    assert_true(store_ok(s));
    c = PQconnectdb(url);
    r = PQexec(c, "SELECT (SELECT count(*) FROM cbm_schema_version), to_regclass('cbm_executions') IS NULL,"
                  " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    assert_string_equal(PQgetvalue(r, 0, 1), "t");
    assert_string_equal(PQgetvalue(r, 0, 2), "0");
    PQclear(r);
    /* Once the squatter is gone, it migrates. */
    PQclear(PQexec(c, "DROP TABLE cbm_events"));
    PQfinish(c);
    assert_code(store_migrate(s, &err), 0);
    store_close(s);
    testdb_drop(url);
}

static void test_append_roundtrip(void **state)
{
    fixture_t *f = *state;
    static const char *const payloads[] = {
        "{\"s\":\"he said \\\"hi\\\"\"}",
        "{\"path\":\"C:\\\\dir\\\\file\",\"esc\":\"\\n\\t\\u00e9\\u0000\"}",
        "{\"unicode\":\"\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad\"}",
        "{\n  \"pretty\" :  [1,  2.50, 1e3 ],\n  \"dup\":1, \"dup\":2\n}",
        "{\"braces\":\"{a,b}\",\"null\":null,\"NULL\":\"NULL\"}",
        "{}",
    };
    static const int64_t times[] = {
        1700000000123457LL, 0, -1, 1, 4102444800999999LL, -86400000001LL,
    };
    const size_t n = sizeof(payloads) / sizeof(payloads[0]);
    char id[37];
    tdec_t t;
    cbm_error_t err = {0};
    store_event_t *ev;
    size_t nev;
    int64_t last;

    new_id(id);
    tdec_init(&t, id, 0, n, true, "running");
    for (size_t i = 0; i < n; i++) {
        t.ev[i].payload = (char *)payloads[i];
        t.ev[i].recorded_at_us = times[i];
    }
    t.ev[0].type = (char *)"ExecutionStarted";
    t.ev[1].type = (char *)"Type with \"quotes\", \\ and {braces}";
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    assert_code(t.d.result_code, 0);

    assert_code(store_read_history(f->s, id, 1, &ev, &nev, &err), 0);
    assert_int_equal(nev, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ev[i].execution_id, id);
        assert_int_equal(ev[i].seq, (int64_t)i + 1);
        assert_string_equal(ev[i].type, t.ev[i].type);
        assert_string_equal(ev[i].payload, payloads[i]);
        assert_int_equal(ev[i].recorded_at_us, times[i]);
    }
    store_events_free(ev, nev);

    /* from_seq is inclusive. */
    assert_code(store_read_history(f->s, id, 4, &ev, &nev, &err), 0);
    assert_int_equal(nev, n - 3);
    assert_int_equal(ev[0].seq, 4);
    assert_string_equal(ev[0].payload, payloads[3]);
    store_events_free(ev, nev);
    assert_code(store_read_history(f->s, id, (int64_t)n + 1, &ev, &nev, &err), 0);
    assert_int_equal(nev, 0);
    assert_null(ev);

    assert_code(store_last_seq(f->s, id, &last, &err), 0);
    assert_int_equal(last, (int64_t)n);
    new_id(id);
    assert_code(store_last_seq(f->s, id, &last, &err), 0);
    assert_int_equal(last, 0);
    assert_code(store_last_seq(f->s, "not-a-uuid", &last, &err), CBM_EINVAL);
}

static void test_batch_one_transaction(void **state)
{
    fixture_t *f = *state;
    enum { N = 500 };
    tdec_t *t = calloc(N, sizeof(*t));
    store_decision_t *ds[N];
    char ids[N][37];
    cbm_error_t err = {0};

    assert_non_null(t);
    for (int i = 0; i < N; i++) {
        new_id(ids[i]);
        tdec_init(&t[i], ids[i], 0, 1 + (size_t)(i % 4), true, "running");
        ds[i] = &t[i].d;
    }
    if (store_append(f->s, ds, N, &err) != 0) fail_msg("append: %s", err.message);
    for (int i = 0; i < N; i++) assert_code(t[i].d.result_code, 0);

    /* Every row present, each execution's projection at its last seq... */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions"), N);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events"), N / 4 * (1 + 2 + 3 + 4));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions x WHERE last_seq <> "
                                "(SELECT max(seq) FROM cbm_events v WHERE v.execution_id = x.id)"), 0);
    /* ...and written by one transaction: one xmin on every row. */
    assert_int_equal(sql_int(f, "SELECT count(DISTINCT xmin::text) FROM "
                                "(SELECT xmin FROM cbm_events UNION ALL SELECT xmin FROM cbm_executions) r"), 1);
    /* A second batch updating all of them: again one transaction. */
    for (int i = 0; i < N; i++) tdec_init(&t[i], ids[i], 1 + (i % 4), 2, false, "sleeping");
    if (store_append(f->s, ds, N, &err) != 0) fail_msg("append: %s", err.message);
    assert_int_equal(sql_int(f, "SELECT count(DISTINCT xmin::text) FROM cbm_executions"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions WHERE status = 'sleeping'"), N);
    free(t);
}

static void test_projection_new_and_update(void **state)
{
    fixture_t *f = *state;
    char id[37];
    tdec_t t;
    store_timer_t timers[3] = {
        {.kind = (char *)"sleep", .key = (char *)"nap", .due_at_us = 1700000000000001LL},
        {.kind = (char *)"timeout", .key = (char *)"step\"a\\", .due_at_us = 1700000000000002LL},
        {.kind = (char *)"retry", .key = (char *)"nap", .due_at_us = 1700000000000003LL},
    };
    store_task_t task = {.step = (char *)"fetch", .attempt = 1, .queue = (char *)"gpu",
                         .payload = (char *)"{\"url\":\"http://x/\\\"y\"}"};
    cbm_error_t err = {0};
    store_execution_t *x;
    char want[256];

    new_id(id);
    tdec_init(&t, id, 0, 2, true, "running");
    t.d.blueprint = "order \"flow\"";
    t.d.version = "0123abcd";
    t.d.inputs = "{\"order\": 42, \"note\": \"a\\\"b\"}";
    t.d.timers_set = timers;
    t.d.ntimers_set = 3; /* "nap" twice: the last one wins */
    t.d.tasks = &task;
    t.d.ntasks = 1;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);

    assert_code(store_get_execution(f->s, id, &x, &err), 0);
    assert_string_equal(x->id, id);
    assert_string_equal(x->blueprint, "order \"flow\"");
    assert_string_equal(x->version, "0123abcd");
    assert_string_equal(x->status, "running");
    assert_string_equal(x->inputs, "{\"note\": \"a\\\"b\", \"order\": 42}"); /* jsonb's rendering */
    assert_null(x->result);
    assert_null(x->error);
    assert_int_equal(x->last_seq, 2);
    assert_true(x->created_at_us > 1600000000000000LL);
    assert_int_equal(x->updated_at_us, x->created_at_us);
    store_executions_free(x, 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_timers"), 2);
    assert_string_equal(sql_text(f, "SELECT kind || ' ' || " PG_US("due_at") " FROM cbm_timers WHERE key = 'nap'"),
                        "retry 1700000000000003");
    snprintf(want, sizeof(want), "gpu fetch 1 {\"url\": \"http://x/\\\"y\"} %s", id);
    assert_string_equal(sql_text(f, "SELECT queue || ' ' || step || ' ' || attempt || ' ' || payload::text || ' ' || execution_id FROM cbm_tasks"),
                        want);
}

/* The projection's update: result/error set, timers cleared. */
static void test_projection_update(void **state)
{
    fixture_t *f = *state;
    char id[37];
    tdec_t t;
    store_timer_t timers[2] = {
        {.kind = (char *)"sleep", .key = (char *)"a", .due_at_us = 10},
        {.kind = (char *)"sleep", .key = (char *)"b", .due_at_us = 20},
    };
    store_timer_t rearm = {.kind = (char *)"approval", .key = (char *)"a", .due_at_us = 30};
    char *cleared[2] = {(char *)"a", (char *)"b"};
    cbm_error_t err = {0};
    store_execution_t *x;
    int64_t created;

    new_id(id);
    tdec_init(&t, id, 0, 1, true, "running");
    t.d.timers_set = timers;
    t.d.ntimers_set = 2;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    assert_code(store_get_execution(f->s, id, &x, &err), 0);
    created = x->created_at_us;
    store_executions_free(x, 1);

    /* Clear a and b, set a again: a is re-armed, b is gone. */
    tdec_init(&t, id, 1, 3, false, "completed");
    t.d.result = "{\"total\": 3.5}";
    t.d.error = "{\"kind\": \"none\"}";
    t.d.timers_cleared = cleared;
    t.d.ntimers_cleared = 2;
    t.d.timers_set = &rearm;
    t.d.ntimers_set = 1;
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    assert_code(store_get_execution(f->s, id, &x, &err), 0);
    assert_string_equal(x->status, "completed");
    assert_string_equal(x->result, "{\"total\": 3.5}");
    assert_string_equal(x->error, "{\"kind\": \"none\"}");
    assert_int_equal(x->last_seq, 4);
    assert_int_equal(x->created_at_us, created);
    assert_true(x->updated_at_us > created);
    store_executions_free(x, 1);
    assert_string_equal(sql_text(f, "SELECT string_agg(key || ':' || kind || ':' || " PG_US("due_at") ", ',') FROM cbm_timers"),
                        "a:approval:30");

    /* NULL result/error mean SQL NULL. */
    tdec_init(&t, id, 4, 1, false, "failed");
    if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    assert_code(store_get_execution(f->s, id, &x, &err), 0);
    assert_null(x->result);
    assert_null(x->error);
    assert_int_equal(x->last_seq, 5);
    store_executions_free(x, 1);
}

static void test_conflict_isolated(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37], c[37], d[37], e[37], g[37];
    tdec_t t[6];
    store_decision_t *ds[6];
    cbm_error_t err = {0};
    int64_t last;

    new_id(a); new_id(b); new_id(c); new_id(d); new_id(e); new_id(g);
    create_exec(f, a, 3, "running");
    create_exec(f, b, 3, "running");
    create_exec(f, e, 2, "running");
    create_exec(f, g, 1, "running");
    tdec_init(&t[0], a, 2, 2, false, "running");   /* stale: seq 3 exists */
    tdec_init(&t[1], b, 3, 2, false, "sleeping");  /* fine */
    tdec_init(&t[2], c, 0, 1, true, "running");    /* fine, new */
    tdec_init(&t[3], d, 7, 1, false, "running");   /* no such execution */
    tdec_init(&t[4], e, 5, 1, false, "running");   /* expects 5, has 2: no key clash, projection guard */
    tdec_init(&t[5], g, 0, 1, true, "running");    /* "new" but exists */
    for (int i = 0; i < 6; i++) ds[i] = &t[i].d;

    assert_code(store_append(f->s, ds, 6, &err), CBM_ECONFLICT);
    assert_code(t[0].d.result_code, CBM_ECONFLICT);
    assert_code(t[1].d.result_code, 0);
    assert_code(t[2].d.result_code, 0);
    assert_code(t[3].d.result_code, CBM_ENOTFOUND);
    assert_code(t[4].d.result_code, CBM_ECONFLICT);
    assert_code(t[5].d.result_code, CBM_ECONFLICT);
    assert_non_null(strstr(err.message, "2 of 6 decisions committed"));

    /* The others committed, the rejected ones left nothing. */
    assert_code(store_last_seq(f->s, a, &last, &err), 0);
    assert_int_equal(last, 3);
    assert_string_equal(sql_text(f, "SELECT payload::text FROM cbm_events WHERE execution_id = '%s' AND seq = 3", a),
                        "{\"seq\":3}");
    assert_code(store_last_seq(f->s, b, &last, &err), 0);
    assert_int_equal(last, 5);
    assert_string_equal(sql_text(f, "SELECT status FROM cbm_executions WHERE id = '%s'", b), "sleeping");
    assert_code(store_last_seq(f->s, c, &last, &err), 0);
    assert_int_equal(last, 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events WHERE execution_id = '%s'", d), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events WHERE execution_id = '%s'", e), 2);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events WHERE execution_id = '%s'", g), 1);

    /* A batch where everything conflicts: nothing committed, no loop. */
    tdec_init(&t[0], a, 1, 1, false, "running");
    assert_code(store_append(f->s, ds, 1, &err), CBM_ECONFLICT);
    assert_code(t[0].d.result_code, CBM_ECONFLICT);
    /* And the store is still usable. */
    tdec_init(&t[0], a, 3, 1, false, "running");
    assert_code(store_append(f->s, ds, 1, &err), 0);
    assert_code(t[0].d.result_code, 0);
}

/* Two handles racing on one execution: exactly one wins each round. */
static void test_conflict_two_writers(void **state)
{
    fixture_t *f = *state;
    store_t *s2;
    char id[37];
    tdec_t t1, t2;
    store_decision_t *d1 = &t1.d, *d2 = &t2.d;
    cbm_error_t err = {0};
    int64_t last;

    assert_code(store_open(f->url, &s2, &err), 0);
    new_id(id);
    create_exec(f, id, 1, "running");
    tdec_init(&t1, id, 1, 1, false, "running");
    tdec_init(&t2, id, 1, 2, false, "running");
    assert_code(store_append(f->s, &d1, 1, &err), 0);
    assert_code(store_append(s2, &d2, 1, &err), CBM_ECONFLICT);
    assert_code(t2.d.result_code, CBM_ECONFLICT);
    assert_code(store_last_seq(s2, id, &last, &err), 0);
    assert_int_equal(last, 2);
    store_close(s2);
}

static void test_atomicity(void **state)
{
    fixture_t *f = *state;
    char a[37], b[37], c[37], d[37];
    tdec_t t[3];
    store_decision_t *ds[3];
    store_timer_t timer = {.kind = (char *)"sleep", .key = (char *)"k", .due_at_us = 5};
    store_task_t task = {.step = (char *)"s", .attempt = 1, .queue = (char *)"q", .payload = (char *)"{}"};
    cbm_error_t err = {0};
    int64_t events, execs;

    new_id(a); new_id(b); new_id(c); new_id(d);
    create_exec(f, c, 1, "running");
    events = sql_int(f, "SELECT count(*) FROM cbm_events");
    execs = sql_int(f, "SELECT count(*) FROM cbm_executions");

    /* A decision the store refuses for its data (not JSON: 22P02) writes
     * nothing of itself, and the decisions beside it commit (issue 9: one
     * bad decision never fails another). */
    tdec_init(&t[0], a, 0, 2, true, "running");
    t[0].d.timers_set = &timer;
    t[0].d.ntimers_set = 1;
    t[0].d.tasks = &task;
    t[0].d.ntasks = 1;
    tdec_init(&t[1], c, 1, 1, false, "completed");
    tdec_init(&t[2], b, 0, 2, true, "running");
    t[2].ev[1].payload = (char *)"{\"broken\": "; /* not JSON */
    for (int i = 0; i < 3; i++) ds[i] = &t[i].d;

    assert_code(store_append(f->s, ds, 3, &err), CBM_EINVAL);
    assert_non_null(strstr(err.message, "1 refused for their data"));
    assert_code(t[0].d.result_code, 0);
    assert_code(t[1].d.result_code, 0);
    assert_code(t[2].d.result_code, CBM_EINVAL);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events"), events + 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions"), execs + 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events WHERE execution_id = '%s'", b), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_executions WHERE id = '%s'", b), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_timers"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_tasks"), 1);
    assert_string_equal(sql_text(f, "SELECT status FROM cbm_executions WHERE id = '%s'", c), "completed");

    /* A duplicate task (a unique violation no stale seq explains) is the
     * fault of the decision that inserts it: it alone is refused, whole. */
    tdec_init(&t[0], d, 0, 1, true, "running");
    assert_code(store_append(f->s, ds, 1, &err), 0);
    tdec_init(&t[0], a, 2, 1, false, "running");
    t[0].d.tasks = &task; /* (a, s, 1) exists already */
    t[0].d.ntasks = 1;
    tdec_init(&t[1], d, 1, 1, false, "completed");
    assert_code(store_append(f->s, ds, 2, &err), CBM_EINVAL);
    assert_code(t[0].d.result_code, CBM_EINVAL);
    assert_code(t[1].d.result_code, 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_events WHERE execution_id = '%s'", a), 2);
    assert_string_equal(sql_text(f, "SELECT status FROM cbm_executions WHERE id = '%s'", d), "completed");
}

/* Pages of `limit` through every execution matching (status, blueprint);
 * checks each is seen once and in (created_at, id) order. */
static void check_pages(fixture_t *f, const char *status, const char *blueprint, size_t limit,
                        size_t expected)
{
    store_list_filter_t flt = {.status = status, .blueprint = blueprint, .limit = limit};
    char cursor[37] = "", where[256] = "true";
    size_t total = 0, pages = 0;
    PGresult *want;
    cbm_error_t err = {0};

    if (status != NULL) snprintf(where + strlen(where), sizeof(where) - strlen(where), " AND status = '%s'", status);
    if (blueprint != NULL) snprintf(where + strlen(where), sizeof(where) - strlen(where), " AND blueprint = '%s'", blueprint);
    {
        char sql[512];
        snprintf(sql, sizeof(sql), "SELECT id FROM cbm_executions WHERE %s ORDER BY created_at, id", where);
        want = PQexec(f->pg, sql);
        assert_int_equal(PQresultStatus(want), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(want), expected);
    }
    for (;;) {
        store_execution_t *xs;
        size_t n;

        flt.after_id = cursor[0] != '\0' ? cursor : NULL;
        if (store_list_executions(f->s, &flt, &xs, &n, &err) != 0) fail_msg("list: %s", err.message);
        pages++;
        assert_true(n <= (limit != 0 ? limit : 100));
        for (size_t i = 0; i < n; i++) {
            assert_true(total + i < expected);
            assert_string_equal(xs[i].id, PQgetvalue(want, (int)(total + i), 0));
            if (status != NULL) assert_string_equal(xs[i].status, status);
            if (blueprint != NULL) assert_string_equal(xs[i].blueprint, blueprint);
        }
        total += n;
        if (n > 0) snprintf(cursor, sizeof(cursor), "%s", xs[n - 1].id);
        store_executions_free(xs, n);
        if (n == 0) break;
    }
    assert_int_equal(total, expected);
    assert_int_equal(pages, expected / (limit != 0 ? limit : 100) + 1 + (expected % (limit != 0 ? limit : 100) != 0));
    PQclear(want);
}

static void test_pagination(void **state)
{
    fixture_t *f = *state;
    enum { N = 250, BATCH = 50 };
    static const char *const statuses[] = {"running", "completed", "sleeping"};
    tdec_t t[BATCH];
    store_decision_t *ds[BATCH];
    char id[37];
    cbm_error_t err = {0};
    store_list_filter_t flt = {0};
    store_execution_t *xs;
    size_t n;

    /* Batches of 50: rows of one transaction share a created_at only if the
     * clock does not move, so the id tie-break is exercised too. */
    for (int b = 0; b < N / BATCH; b++) {
        for (int i = 0; i < BATCH; i++) {
            int k = b * BATCH + i;
            new_id(id);
            tdec_init(&t[i], id, 0, 1, true, statuses[k % 3]);
            t[i].d.blueprint = k % 2 == 0 ? "even" : "odd";
            ds[i] = &t[i].d;
        }
        if (store_append(f->s, ds, BATCH, &err) != 0) fail_msg("append: %s", err.message);
    }
    /* Force ties on created_at to test the (created_at, id) order. */
    PQclear(PQexec(f->pg, "UPDATE cbm_executions SET created_at = date_trunc('second', created_at) "
                          "WHERE id IN (SELECT id FROM cbm_executions ORDER BY id LIMIT 120)"));

    check_pages(f, NULL, NULL, 100, N);
    check_pages(f, NULL, NULL, 0, N);   /* default limit 100 */
    check_pages(f, NULL, NULL, 7, N);
    check_pages(f, "completed", NULL, 10, 83);
    check_pages(f, NULL, "odd", 100, 125);
    check_pages(f, "running", "even", 9, 42);
    check_pages(f, "cancelled", NULL, 10, 0);

    /* A cursor that names no execution, and one that is not an id. */
    new_id(id);
    flt.after_id = id;
    assert_code(store_list_executions(f->s, &flt, &xs, &n, &err), CBM_ENOTFOUND);
    assert_int_equal(n, 0);
    flt.after_id = "zzz";
    assert_code(store_list_executions(f->s, &flt, &xs, &n, &err), CBM_EINVAL);
}

static void test_load_unfinished(void **state)
{
    fixture_t *f = *state;
    static const char *const statuses[] = {"running", "completed", "sleeping", "failed",
                                           "waiting_approval", "cancelled", "running"};
    enum { N = 7 };
    char ids[N][37];
    store_unfinished_t u;
    cbm_error_t err = {0};
    size_t seen = 0;

    assert_code(store_load_unfinished(f->s, &u, &err), 0);
    assert_int_equal(u.nexecs, 0);
    assert_int_equal(u.nevents, 0);
    store_unfinished_free(&u);

    for (int i = 0; i < N; i++) {
        tdec_t t;
        new_id(ids[i]);
        create_exec(f, ids[i], 1 + (size_t)i % 3, "running");
        /* a second decision, so events come from two transactions */
        tdec_init(&t, ids[i], 1 + i % 3, 2, false, statuses[i]);
        if (append1(f, &t, &err) != 0) fail_msg("append: %s", err.message);
    }
    assert_code(store_load_unfinished(f->s, &u, &err), 0);
    assert_int_equal(u.nexecs, 4);
    for (size_t i = 0; i < u.nexecs; i++) {
        const store_execution_t *x = &u.execs[i];
        int k = -1;

        for (int j = 0; j < N; j++)
            if (strcmp(ids[j], x->id) == 0) k = j;
        assert_true(k >= 0);
        assert_string_equal(x->status, statuses[k]);
        assert_int_equal(u.count[i], (size_t)(1 + k % 3 + 2));
        assert_int_equal(x->last_seq, (int64_t)u.count[i]);
        assert_true(u.first[i] + u.count[i] <= u.nevents);
        for (size_t j = 0; j < u.count[i]; j++) {
            const store_event_t *e = &u.events[u.first[i] + j];
            char want[32];
            assert_string_equal(e->execution_id, x->id);
            assert_int_equal(e->seq, (int64_t)j + 1);
            snprintf(want, sizeof(want), "{\"seq\":%zu}", j + 1);
            assert_string_equal(e->payload, want);
            assert_int_equal(e->recorded_at_us, 1700000000000000LL + (int64_t)j + 1);
        }
        seen += u.count[i];
    }
    assert_int_equal(seen, u.nevents);
    store_unfinished_free(&u);
}

static void test_get_execution_unknown(void **state)
{
    fixture_t *f = *state;
    char id[37];
    store_execution_t *x = (store_execution_t *)&x;
    cbm_error_t err = {0};

    new_id(id);
    assert_code(store_get_execution(f->s, id, &x, &err), CBM_ENOTFOUND);
    assert_code(err.code, CBM_ENOTFOUND);
    assert_null(x);
    assert_code(store_get_execution(f->s, "42", &x, &err), CBM_EINVAL);
}

static void test_blueprints(void **state)
{
    fixture_t *f = *state;
    cbm_error_t err = {0};
    char *version, *json;

    assert_code(store_put_blueprint(f->s, "flow", "v1", "{\"steps\":[{\"name\":\"a\"}]}", NULL, &err), 0);
    assert_code(store_put_blueprint(f->s, "flow", "v1", "{\"steps\":[{\"name\":\"CHANGED\"}]}", NULL, &err), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM cbm_blueprints"), 1);
    assert_code(store_get_blueprint(f->s, "flow", NULL, &version, &json, &err), 0);
    assert_string_equal(version, "v1");
    assert_string_equal(json, "{\"steps\": [{\"name\": \"a\"}]}");
    free(version);
    free(json);

    assert_code(store_put_blueprint(f->s, "flow", "v2", "{\"steps\":[]}", NULL, &err), 0);
    assert_code(store_put_blueprint(f->s, "other", "v9", "{}", NULL, &err), 0);
    assert_code(store_get_blueprint(f->s, "flow", NULL, &version, &json, &err), 0);
    assert_string_equal(version, "v2");
    assert_string_equal(json, "{\"steps\": []}");
    free(version);
    free(json);
    assert_code(store_get_blueprint(f->s, "flow", "v1", &version, &json, &err), 0);
    assert_string_equal(version, "v1");
    free(version);
    free(json);
    assert_code(store_get_blueprint(f->s, "flow", "v3", &version, &json, &err), CBM_ENOTFOUND);
    assert_null(version);
    assert_null(json);
    assert_code(store_get_blueprint(f->s, "nope", NULL, &version, &json, &err), CBM_ENOTFOUND);
    assert_code(store_put_blueprint(f->s, "bad", "v1", "{not json", NULL, &err), CBM_ESTORE);
}

static void test_open_unavailable(void **state)
{
    store_t *s = (store_t *)&s;
    cbm_error_t err = {0};
    const char *port = getenv("CEREBELUM_TEST_PGPORT");

    (void)state;
    /* Port 1 on loopback: nothing listens there. */
    assert_code(store_open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", &s, &err),
                     CBM_EUNAVAIL);
    assert_null(s);
    assert_non_null(strstr(err.message, "cannot connect"));
    assert_code(store_open("host=127.0.0.1 port=1 connect_timeout=2", &s, &err), CBM_EUNAVAIL);
    assert_null(s);
    /* A key=value conninfo works as well as a URL. */
    if (port != NULL) {
        char conninfo[128];
        int64_t last;
        snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%s user=postgres dbname=postgres", port);
        assert_code(store_open(conninfo, &s, &err), 0);
        assert_true(store_ok(s));
        /* no tables in this database: a clean ESTORE, not a crash */
        assert_code(store_last_seq(s, "00000000-0000-0000-0000-000000000000", &last, &err), CBM_ESTORE);
        assert_non_null(strstr(err.message, "42P01"));
        store_close(s);
    }
    store_close(NULL);
}

int main(void)
{
    char url[512];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_array_literal, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_twice, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_migrate_concurrent),
        cmocka_unit_test(test_migrate_failure),
        cmocka_unit_test_setup_teardown(test_append_roundtrip, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_batch_one_transaction, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_projection_new_and_update, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_projection_update, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_conflict_isolated, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_conflict_two_writers, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_conflict_race, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_atomicity, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_pagination, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_load_unfinished, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_get_execution_unknown, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_blueprints, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_blueprint_inserted, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_key_unique, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_key_same_batch, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_key_race, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_list_newest_first, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_timers_clear_and_set, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_timers_due_order, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_timers_due_plan, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_roundtrip, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_batch, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_load_execution, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_load_inconsistent, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_plan, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_append_plan, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_load_running, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_orphans, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_load_consistent, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_connection_loss, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_open_unavailable),
        cmocka_unit_test_setup_teardown(test_tasks_claim_order, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_capabilities_and_sticky, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_heartbeat_unclaim_expiry, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_done_with_decision, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_concurrent_claims, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_claim_plan, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bench_group_commit, fixture_setup, fixture_teardown),
    };

    if (testdb_create(url, sizeof(url)) != 0) {
        fprintf(stderr, "no test PostgreSQL (CEREBELUM_TEST_DATABASE_URL): skipped\n");
        return TESTDB_SKIP;
    }
    testdb_drop(url);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

