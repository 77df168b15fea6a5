/*
 * test_hardening.c - one bad request never hurts another (issue 9), on a real
 * PostgreSQL:
 *
 * - text the store would refuse (not UTF-8, a NUL, \u0000 in JSON) is
 *   refused where it enters, naming the field: inputs, blueprints, keys,
 *   approvals, signals, cancels, handler names, handler results;
 * - a decision the store refuses anyway (bytes corrupted on their way, which
 *   no edge check can see) fails alone: twelve good starts committed beside
 *   it in every position of the batch succeed, and an execution whose own
 *   decision is refused fails with a recorded reason instead of staying
 *   `running`;
 * - the same isolation in the store port (store_append with one bad decision
 *   among good ones);
 * - integers at the documented bound; ids that are not UUIDs are unknown.
 *
 * The corruption: this executable is linked with --wrap=PQexecPrepared, and
 * __wrap_PQexecPrepared replaces the marker text POISON in any parameter with
 * bytes that are not UTF-8, so PostgreSQL really refuses the batch (SQLSTATE
 * 22021), as it did for the defect's invalid input.
 */
#include <cJSON.h>
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
#include "store/store.h"
#include "tests/harness/testdb.h"

static char url[512];

/* ---- the corruption ------------------------------------------------------ */

PGresult *__real_PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values,
                                const int *lengths, const int *formats, int result_format);
PGresult *__wrap_PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values,
                                const int *lengths, const int *formats, int result_format);

PGresult *__wrap_PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values,
                                const int *lengths, const int *formats, int result_format)
{
    char **copy = NULL;
    PGresult *res;

    for (int i = 0; i < n; i++) {
        char *p;
        if (values[i] == NULL || strstr(values[i], "POISON") == NULL) continue;
        if (copy == NULL) {
            copy = calloc((size_t)n, sizeof(*copy));
            assert_non_null(copy);
        }
        copy[i] = strdup(values[i]);
        assert_non_null(copy[i]);
        for (p = copy[i]; (p = strstr(p, "POISON")) != NULL; p += 6) {
            p[0] = (char)0xC3; /* a lead byte followed by ASCII: not UTF-8 */
            p[1] = 'X';
        }
    }
    if (copy == NULL)
        return __real_PQexecPrepared(conn, name, n, values, lengths, formats, result_format);
    {
        const char **vals = calloc((size_t)n, sizeof(*vals));
        assert_non_null(vals);
        for (int i = 0; i < n; i++) vals[i] = copy[i] != NULL ? copy[i] : values[i];
        res = __real_PQexecPrepared(conn, name, n, vals, lengths, formats, result_format);
        free(vals);
    }
    for (int i = 0; i < n; i++) free(copy[i]);
    free(copy);
    return res;
}

/* ---- handlers ------------------------------------------------------------ */

static void h_echo(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json);
    cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "inputs"), "x");
    char *s = x != NULL ? cJSON_PrintUnformatted(x) : NULL;
    (void)arg;
    cbm_step_ok(out, s != NULL ? s : "null");
    free(s);
    cJSON_Delete(in);
}

static void h_bad_utf8(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"a\":\"\xff\xfe\"}");
}

static void h_nul(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"a\":\"ab\\u0000cd\"}");
}

static void h_bad_message(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_fail(out, "bo\xffom", "caf\xe9 is not UTF-8", false);
}

/* Valid at every edge; corrupted on its way to the store. */
static void h_poison(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "\"POISON\"");
}

static void h_approve(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_approval(out, "check", "{}", 0);
}

static cbm_engine_t *engine(void)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "echo", h_echo, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "bad_utf8", h_bad_utf8, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "nul", h_nul, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "bad_message", h_bad_message, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "poison", h_poison, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "approve", h_approve, NULL), 0);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    return e;
}

static void reg(cbm_engine_t *e, const char *json)
{
    cbm_error_t err = {0};
    if (cbm_engine_register_blueprint(e, json, NULL, &err) != 0)
        fail_msg("register: %s", err.message);
}

static void one_step(cbm_engine_t *e, const char *name, const char *handler)
{
    char json[256];
    snprintf(json, sizeof(json), "{\"name\":\"%s\",\"steps\":[{\"name\":\"s\",\"handler\":\"%s\"}]}",
             name, handler);
    reg(e, json);
}

static cbm_execution_info_t *wait_end(cbm_engine_t *e, const char *id)
{
    cbm_execution_info_t *x = NULL;
    cbm_error_t err = {0};
    if (cbm_execution_wait(e, id, 30000, &x, &err) != 0) fail_msg("wait %s: %s", id, err.message);
    return x;
}

static void expect_msg(const cbm_error_t *err, const char *part)
{
    if (strstr(err->message, part) == NULL)
        fail_msg("error message \"%s\" does not name \"%s\"", err->message, part);
}

/* ---- refused at the edge -------------------------------------------------- */

static void test_edge_inputs_and_blueprints(void **state)
{
    cbm_engine_t *e = engine();
    cbm_error_t err = {0};
    cbm_start_opts_t so = {0};
    char id[37];
    bool created;
    (void)state;

    one_step(e, "echo1", "echo");
    /* Inputs: bytes that are not UTF-8, a NUL escape; both refused, named. */
    assert_int_equal(cbm_execution_start(e, "echo1", "{\"x\":\"\xff\"}", id, &err), CBM_EINVAL);
    expect_msg(&err, "inputs");
    expect_msg(&err, "UTF-8");
    assert_int_equal(cbm_execution_start(e, "echo1", "{\"x\":\"ab\\u0000cd\"}", id, &err),
                     CBM_EINVAL);
    expect_msg(&err, "\\u0000");
    /* An escaped backslash before u0000 is no NUL: kept whole. */
    assert_int_equal(cbm_execution_start(e, "echo1", "{\"x\":\"ab\\\\u0000cd\"}", id, &err), 0);
    {
        cbm_execution_info_t *x = wait_end(e, id);
        assert_string_equal(x->status, "completed");
        assert_string_equal(x->result, "{\"s\": \"ab\\\\u0000cd\"}");
        cbm_execution_info_free(x);
    }
    /* A blueprint whose handler name holds \u0000 is refused, not cut. */
    assert_int_not_equal(cbm_engine_register_blueprint(
                             e, "{\"name\":\"nulh\",\"steps\":[{\"name\":\"s\",\"handler\":\"h\\u0000x\"}]}",
                             NULL, &err),
                         0);
    expect_msg(&err, "\\u0000");
    assert_int_not_equal(cbm_engine_register_blueprint(
                             e, "{\"name\":\"bad\xc3\",\"steps\":[{\"name\":\"s\",\"handler\":\"echo\"}]}",
                             NULL, &err),
                         0);
    expect_msg(&err, "UTF-8");
    /* Idempotency key, blueprint name, handler name. */
    so.idempotency_key = "k\xe2\x82";
    assert_int_equal(cbm_execution_start_opts(e, "echo1", "{}", &so, id, &created, &err),
                     CBM_EINVAL);
    expect_msg(&err, "idempotency key");
    assert_int_equal(cbm_execution_start(e, "echo\xff", "{}", id, &err), CBM_EINVAL);
    expect_msg(&err, "blueprint");
    assert_int_equal(cbm_engine_register_step(e, "h\xc0\xaf", h_echo, NULL), CBM_EINVAL);
    cbm_engine_destroy(e);
}

static void test_edge_decisions_from_outside(void **state)
{
    cbm_engine_t *e = engine();
    cbm_error_t err = {0};
    cbm_execution_info_t *x = NULL;
    char id[37];
    (void)state;

    one_step(e, "appr", "approve");
    assert_int_equal(cbm_execution_start(e, "appr", "{}", id, &err), 0);
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(cbm_execution_get(e, id, &x, &err), 0);
        if (strcmp(x->status, "awaiting_approval") == 0) break;
        cbm_execution_info_free(x);
        x = NULL;
        uv_sleep(10);
    }
    assert_non_null(x);
    assert_string_equal(x->status, "awaiting_approval");
    cbm_execution_info_free(x);

    assert_int_equal(cbm_execution_approve(e, id, "s", "{\"ok\":\"\xff\"}", "ada", &err),
                     CBM_EINVAL);
    expect_msg(&err, "response");
    assert_int_equal(cbm_execution_approve(e, id, "s", "{\"ok\":\"a\\u0000\"}", "ada", &err),
                     CBM_EINVAL);
    assert_int_equal(cbm_execution_approve(e, id, "s", "{}", "ad\xff" "a", &err), CBM_EINVAL);
    expect_msg(&err, "actor");
    assert_int_equal(cbm_execution_reject(e, id, "s", "no\xff", "ada", &err), CBM_EINVAL);
    expect_msg(&err, "reason");
    assert_int_equal(cbm_execution_signal(e, id, "go\xc3", "null", &err), CBM_EINVAL);
    expect_msg(&err, "signal name");
    assert_int_equal(cbm_execution_cancel(e, id, "r\xed\xa0\x80", &err), CBM_EINVAL); /* surrogate */
    /* Nothing of it was recorded: the approval still waits, and a good one
     * goes through. */
    assert_int_equal(cbm_execution_approve(e, id, "s", "{\"ok\":true}", "ada", &err), 0);
    x = wait_end(e, id);
    assert_string_equal(x->status, "completed");
    cbm_execution_info_free(x);
    cbm_engine_destroy(e);
}

/* A handler's result the store cannot take fails its step (and so the
 * execution) with the reason; it never leaves the execution running. */
static void test_edge_handler_results(void **state)
{
    cbm_engine_t *e = engine();
    cbm_error_t err = {0};
    cbm_execution_info_t *x;
    char id[37];
    (void)state;

    one_step(e, "badu", "bad_utf8");
    one_step(e, "nulr", "nul");
    one_step(e, "badm", "bad_message");

    assert_int_equal(cbm_execution_start(e, "badu", "{}", id, &err), 0);
    x = wait_end(e, id);
    assert_string_equal(x->status, "failed");
    assert_non_null(strstr(x->error, "bad_result"));
    assert_non_null(strstr(x->error, "UTF-8"));
    cbm_execution_info_free(x);

    assert_int_equal(cbm_execution_start(e, "nulr", "{}", id, &err), 0);
    x = wait_end(e, id);
    assert_string_equal(x->status, "failed");
    assert_non_null(strstr(x->error, "u0000"));
    cbm_execution_info_free(x);

    /* A failure message is recorded whatever it holds (bad bytes: U+FFFD). */
    assert_int_equal(cbm_execution_start(e, "badm", "{}", id, &err), 0);
    x = wait_end(e, id);
    assert_string_equal(x->status, "failed");
    assert_non_null(strstr(x->error, "caf\xef\xbf\xbd is not UTF-8"));
    assert_non_null(strstr(x->error, "bo\xef\xbf\xbdom"));
    cbm_execution_info_free(x);
    cbm_engine_destroy(e);
}

/* ---- refused by the store: isolated ---------------------------------------- */

enum { GOOD = 12, ALL = GOOD + 1 };

typedef struct starter {
    cbm_engine_t *e;
    uv_barrier_t *barrier;
    int poisoned;
    int rc;
    char id[37];
    cbm_error_t err;
} starter_t;

static void start_one(void *arg)
{
    starter_t *s = arg;
    uv_barrier_wait(s->barrier);
    s->rc = cbm_execution_start(s->e, "echo2", s->poisoned ? "{\"x\":\"POISON\"}" : "{\"x\":7}",
                                s->id, &s->err);
}

static void test_mixed_batches(void **state)
{
    cbm_engine_t *e = engine();
    (void)state;

    one_step(e, "echo2", "echo");
    for (int bad = 0; bad < ALL; bad++) {
        starter_t s[ALL];
        uv_thread_t t[ALL];
        uv_barrier_t barrier;
        uv_barrier_init(&barrier, ALL);
        for (int i = 0; i < ALL; i++) {
            memset(&s[i], 0, sizeof(s[i]));
            s[i].e = e;
            s[i].barrier = &barrier;
            s[i].poisoned = i == bad;
            assert_int_equal(uv_thread_create(&t[i], start_one, &s[i]), 0);
        }
        for (int i = 0; i < ALL; i++) uv_thread_join(&t[i]);
        uv_barrier_destroy(&barrier);
        for (int i = 0; i < ALL; i++) {
            if (i == bad) {
                if (s[i].rc != CBM_EINVAL)
                    fail_msg("round %d: the poisoned start gave %s: %s", bad,
                             cbm_err_name(s[i].rc), s[i].err.message);
                /* No SQL text reaches the caller. */
                assert_null(strstr(s[i].err.message, "SQLSTATE"));
                assert_null(strstr(s[i].err.message, "ERROR:"));
                continue;
            }
            if (s[i].rc != 0)
                fail_msg("round %d: good start %d failed beside the bad one: %s", bad, i,
                         s[i].err.message);
            {
                cbm_execution_info_t *x = wait_end(e, s[i].id);
                assert_string_equal(x->status, "completed");
                assert_string_equal(x->result, "{\"s\": 7}");
                cbm_execution_info_free(x);
            }
        }
    }
    cbm_engine_destroy(e);
}

/* An execution whose own decision is refused fails, with the reason recorded,
 * and other executions deciding at the same moment carry on. */
static void test_refused_decision_fails_its_execution(void **state)
{
    cbm_engine_t *e = engine();
    cbm_error_t err = {0};
    char bad[37], good[8][37];
    cbm_execution_info_t *x;
    (void)state;

    one_step(e, "pois", "poison");
    one_step(e, "echo3", "echo");
    for (int i = 0; i < 4; i++) assert_int_equal(cbm_execution_start(e, "echo3", "{\"x\":1}", good[i], &err), 0);
    assert_int_equal(cbm_execution_start(e, "pois", "{}", bad, &err), 0);
    for (int i = 4; i < 8; i++) assert_int_equal(cbm_execution_start(e, "echo3", "{\"x\":1}", good[i], &err), 0);
    x = wait_end(e, bad);
    assert_string_equal(x->status, "failed");
    if (strstr(x->error, "store_refused") == NULL) fail_msg("error: %s", x->error);
    assert_null(strstr(x->error, "SQLSTATE"));
    cbm_execution_info_free(x);
    for (int i = 0; i < 8; i++) {
        x = wait_end(e, good[i]);
        assert_string_equal(x->status, "completed");
        cbm_execution_info_free(x);
    }
    cbm_engine_destroy(e);

    /* After a restart nothing is left running. */
    e = engine();
    x = wait_end(e, bad);
    assert_string_equal(x->status, "failed");
    cbm_execution_info_free(x);
    cbm_engine_destroy(e);
}

/* The store port alone: one refused decision among good ones. */
static void test_store_isolates_refused_decision(void **state)
{
    store_t *s = NULL;
    cbm_error_t err = {0};
    enum { N = 9 };
    store_decision_t d[N];
    store_event_t ev[N];
    store_decision_t *ds[N];
    (void)state;

    assert_int_equal(store_open(url, &s, &err), 0);
    assert_int_equal(store_migrate(s, &err), 0);
    for (int bad = 0; bad < N; bad += 4) {
        memset(d, 0, sizeof(d));
        memset(ev, 0, sizeof(ev));
        for (int i = 0; i < N; i++) {
            snprintf(d[i].execution_id, sizeof(d[i].execution_id),
                     "00000000-0000-4000-8000-%012d", bad * 100 + i);
            ev[i].seq = 1;
            ev[i].type = "ExecutionStarted";
            ev[i].payload = i == bad ? "{\"x\":\"POISON\"}" : "{\"x\":1}";
            d[i].is_new = true;
            d[i].blueprint = "b";
            d[i].version = "v";
            d[i].status = "running";
            d[i].inputs = "{}";
            d[i].expected_seq = 0;
            d[i].events = &ev[i];
            d[i].nevents = 1;
            ds[i] = &d[i];
        }
        assert_int_not_equal(store_append(s, ds, N, &err), 0);
        for (int i = 0; i < N; i++) {
            int64_t last = -1;
            if (i == bad) {
                assert_int_equal(d[i].result_code, CBM_EINVAL);
                assert_int_equal(store_last_seq(s, d[i].execution_id, &last, &err), 0);
                assert_int_equal(last, 0);
            } else {
                assert_int_equal(d[i].result_code, 0);
                assert_int_equal(store_last_seq(s, d[i].execution_id, &last, &err), 0);
                assert_int_equal(last, 1);
            }
        }
    }
    store_close(s);
    /* Executions of no blueprint: not for the engines of the other cases. */
    assert_int_equal(testdb_exec(url, "DELETE FROM cbm_events WHERE execution_id::text LIKE "
                                      "'00000000-%'; DELETE FROM cbm_executions WHERE "
                                      "id::text LIKE '00000000-%'"),
                     0);
}

/* ---- bounds and ids ------------------------------------------------------- */

static void test_integer_bounds_and_ids(void **state)
{
    cbm_engine_t *e = engine();
    cbm_error_t err = {0};
    cbm_execution_info_t *x = NULL;
    char id[37];
    (void)state;

    reg(e, "{\"name\":\"intin\",\"inputs\":{\"x\":{\"type\":\"integer\"}},"
           "\"steps\":[{\"name\":\"s\",\"handler\":\"echo\"}]}");
    assert_int_equal(cbm_execution_start(e, "intin", "{\"x\":9007199254740991}", id, &err), 0);
    x = wait_end(e, id);
    assert_string_equal(x->status, "completed");
    cbm_execution_info_free(x);
    assert_int_equal(cbm_execution_start(e, "intin", "{\"x\":-9007199254740991}", id, &err), 0);
    cbm_execution_info_free(wait_end(e, id));
    assert_int_equal(cbm_execution_start(e, "intin", "{\"x\":9007199254740992}", id, &err),
                     CBM_EINVAL);
    assert_int_equal(cbm_execution_start(e, "intin", "{\"x\":-9007199254740992}", id, &err),
                     CBM_EINVAL);
    assert_int_equal(cbm_execution_start(e, "intin", "{\"x\":9007199254740993}", id, &err),
                     CBM_EINVAL);

    /* A declared default at the bound, and past it. */
    assert_int_equal(cbm_engine_register_blueprint(
                         e, "{\"name\":\"intdef\",\"inputs\":{\"x\":{\"type\":\"integer\","
                            "\"default\":9007199254740991}},\"steps\":[{\"name\":\"s\",\"handler\":\"echo\"}]}",
                         NULL, &err),
                     0);
    assert_int_not_equal(cbm_engine_register_blueprint(
                             e, "{\"name\":\"intdef2\",\"inputs\":{\"x\":{\"type\":\"integer\","
                                "\"default\":9007199254740992}},\"steps\":[{\"name\":\"s\",\"handler\":\"echo\"}]}",
                             NULL, &err),
                         0);

    /* An id that is not a UUID names no execution. */
    x = NULL;
    assert_int_equal(cbm_execution_get(e, "nope", &x, &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_wait(e, "nope", 10, &x, &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_approve(e, "nope", "s", "{}", NULL, &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_reject(e, "nope", "s", "r", NULL, &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_signal(e, "nope", "go", "null", &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_cancel(e, "nope", NULL, &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_cancel(e, "00000000-0000-4000-8000-000000000000", NULL, &err),
                     CBM_ENOTFOUND);
    {
        cbm_event_t *evs = NULL;
        size_t n = 0;
        assert_int_equal(cbm_execution_history(e, "nope", 0, &evs, &n, &err), CBM_ENOTFOUND);
    }
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_inputs_and_blueprints),
        cmocka_unit_test(test_edge_decisions_from_outside),
        cmocka_unit_test(test_edge_handler_results),
        cmocka_unit_test(test_mixed_batches),
        cmocka_unit_test(test_refused_decision_fails_its_execution),
        cmocka_unit_test(test_store_isolates_refused_decision),
        cmocka_unit_test(test_integer_bounds_and_ids),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
