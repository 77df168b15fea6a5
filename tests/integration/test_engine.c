/*
 * test_engine.c - the embedded engine end to end on a real PostgreSQL:
 * timelines and DAGs with the right results, 1,000 executions of a DAG with
 * parallel branches, live state equal to the state rebuilt from the store,
 * listing, and bad input of every kind.
 */
#include <cJSON.h>
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
#include "engine/blueprint.h"
#include "engine/event.h"
#include "engine/state.h"
#include "tests/harness/testdb.h"

char *cbm__debug_state_json(cbm_engine_t *e, const char *id);

static char url[512];

/* ---- handlers ---------------------------------------------------------- */

/* "add": result = inputs.x + sum of numeric dependency results (as numbers) */
static void h_add(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cJSON *in = cJSON_Parse(call->input_json), *d;
    double sum = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "inputs"),
                                                  "x")->valuedouble;
    char buf[64];
    (void)arg;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(in, "deps")) sum += d->valuedouble;
    snprintf(buf, sizeof(buf), "%.0f", sum);
    cbm_step_ok(out, buf);
    cJSON_Delete(in);
}

static void h_fail(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_fail(out, "boom", "failed on purpose", false);
}

static void h_silent(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)out;
    (void)arg;
}

/* A gate: the handler blocks until the test opens it. */
typedef struct gate {
    uv_mutex_t mu;
    uv_cond_t cv;
    int entered, open;
} gate_t;

static gate_t gate;

static void h_gate(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    uv_mutex_lock(&gate.mu);
    gate.entered = 1;
    uv_cond_broadcast(&gate.cv);
    while (!gate.open) uv_cond_wait(&gate.cv, &gate.mu);
    uv_mutex_unlock(&gate.mu);
    cbm_step_ok(out, "{\"gate\": \"passed\"}");
}

static cbm_engine_t *engine(void)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "add", h_add, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "fail", h_fail, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "silent", h_silent, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "gate", h_gate, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "add", h_add, NULL), CBM_EEXIST);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    return e;
}

static void reg(cbm_engine_t *e, const char *json)
{
    cbm_error_t err = {0};
    if (cbm_engine_register_blueprint(e, json, NULL, &err) != 0)
        fail_msg("register: %s", err.message);
}

static cbm_execution_info_t *run(cbm_engine_t *e, const char *bp, const char *inputs)
{
    char id[37];
    cbm_error_t err = {0};
    cbm_execution_info_t *info = NULL;
    if (cbm_execution_start(e, bp, inputs, id, &err) != 0) fail_msg("start: %s", err.message);
    if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) fail_msg("wait: %s", err.message);
    return info;
}

static const char *DAG =
    "{\"name\":\"dag\",\"steps\":["
    "{\"name\":\"a\",\"handler\":\"add\"},"
    "{\"name\":\"b\",\"handler\":\"add\",\"depends_on\":[\"a\"]},"
    "{\"name\":\"c\",\"handler\":\"add\",\"depends_on\":[\"a\"]},"
    "{\"name\":\"d\",\"handler\":\"add\",\"depends_on\":[\"a\"]},"
    "{\"name\":\"e\",\"handler\":\"add\",\"depends_on\":[\"b\",\"c\",\"d\"]}]}";

/* With inputs x: a = x, b = c = d = 2x, e = x + 6x = 7x. */
static void test_dag_result_and_history(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    cbm_event_t *ev = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    (void)state;
    reg(e, DAG);
    info = run(e, "dag", "{\"x\": 5}");
    assert_string_equal(info->status, "completed");
    assert_string_equal(info->result, "{\"e\": 35}");
    assert_int_equal(cbm_execution_history(e, info->id, 1, &ev, &n, &err), 0);
    /* Started+Sched(a), Completed(a)+3 Sched, 3 Completed + Sched(e) (in 1..3
     * decisions), Completed(e)+ExecutionCompleted. */
    assert_int_equal(n, 1 + 1 + 1 + 3 + 3 + 1 + 1 + 1);
    assert_int_equal((int)info->last_seq, (int)n);
    for (size_t i = 0; i < n; i++) assert_int_equal(ev[i].seq, (int64_t)i + 1);
    assert_string_equal(ev[0].type, "ExecutionStarted");
    assert_string_equal(ev[n - 1].type, "ExecutionCompleted");
    cbm_events_free(ev, n);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_step_failure_fails_execution(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    (void)state;
    reg(e, "{\"name\":\"f\",\"timeline\":[{\"name\":\"a\",\"handler\":\"add\"},"
           "{\"name\":\"b\",\"handler\":\"fail\"},{\"name\":\"c\",\"handler\":\"add\"}]}");
    info = run(e, "f", "{\"x\": 1}");
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "\"step\": \"b\""));
    assert_non_null(strstr(info->error, "\"kind\": \"boom\""));
    cbm_execution_info_free(info);

    reg(e, "{\"name\":\"s\",\"timeline\":[{\"name\":\"a\",\"handler\":\"silent\"}]}");
    info = run(e, "s", "{}");
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "no_result"));
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_thousand_dag_executions(void **state)
{
    enum { N = 1000 };
    cbm_engine_t *e = engine();
    static char ids[N][37];
    static char inbuf[N][32];
    const char *inputs[N];
    cbm_error_t err = {0};
    cbm_engine_stats_t st;
    (void)state;
    reg(e, DAG);
    for (int i = 0; i < N; i++) {
        snprintf(inbuf[i], sizeof(inbuf[i]), "{\"x\": %d}", i);
        inputs[i] = inbuf[i];
    }
    if (cbm_execution_start_many(e, "dag", inputs, N, ids, &err) != 0) fail_msg("%s", err.message);
    for (int i = 0; i < N; i++) {
        cbm_execution_info_t *info = NULL;
        char want[64];
        if (cbm_execution_wait(e, ids[i], 60000, &info, &err) != 0) fail_msg("%s", err.message);
        snprintf(want, sizeof(want), "{\"e\": %d}", 7 * i);
        assert_string_equal(info->status, "completed");
        assert_string_equal(info->result, want);
        cbm_execution_info_free(info);
    }
    cbm_engine_get_stats(e, &st);
    assert_int_equal(st.steps_run, 5 * N);
    /* Group commit: many decisions share a transaction. */
    assert_true(st.commits < st.decisions);
    cbm_engine_destroy(e);
}

/* The live state at a point in the middle equals the fold of the stored
 * history, byte for byte. */
static void test_live_state_equals_rebuilt(void **state)
{
    cbm_engine_t *e = engine();
    char id[37];
    cbm_error_t err = {0};
    cbm_event_t *ev = NULL;
    size_t n = 0;
    char *live, *rebuilt;
    bp_blueprint_t *bp = NULL;
    const char *json = "{\"name\":\"g\",\"steps\":[{\"name\":\"a\",\"handler\":\"add\"},"
                       "{\"name\":\"b\",\"handler\":\"gate\",\"depends_on\":[\"a\"]},"
                       "{\"name\":\"c\",\"handler\":\"add\",\"depends_on\":[\"a\"]},"
                       "{\"name\":\"d\",\"handler\":\"add\",\"depends_on\":[\"b\",\"c\"]}]}";
    st_exec_t st;
    cbm_execution_info_t *info = NULL;
    (void)state;

    uv_mutex_init(&gate.mu);
    uv_cond_init(&gate.cv);
    reg(e, json);
    assert_int_equal(cbm_execution_start(e, "g", "{\"x\": 2, \"s\": \"q\\\"uote\\u00e9\"}", id, &err), 0);
    uv_mutex_lock(&gate.mu);
    while (!gate.entered) uv_cond_wait(&gate.cv, &gate.mu);
    uv_mutex_unlock(&gate.mu);
    /* Wait until c completed too, so the state is settled mid-execution. */
    for (int i = 0; i < 500; i++) {
        cbm_execution_info_t *x = NULL;
        assert_int_equal(cbm_execution_get(e, id, &x, &err), 0);
        int done = x->last_seq >= 6;
        cbm_execution_info_free(x);
        if (done) break;
        uv_sleep(10);
    }
    live = cbm__debug_state_json(e, id);
    assert_non_null(live);
    assert_int_equal(cbm_execution_history(e, id, 1, &ev, &n, &err), 0);
    assert_int_equal(bp_parse_json(json, strlen(json), &bp, &err), 0);
    assert_int_equal(st_init(&st, id, bp), 0);
    for (size_t i = 0; i < n; i++) {
        eng_event_t x;
        assert_int_equal(ev_decode(ev[i].type, ev[i].payload, ev[i].seq, ev[i].recorded_at_us, bp,
                                   &x, &err), 0);
        assert_int_equal(st_apply(&st, &x), 0);
        ev_finish(&x);
    }
    rebuilt = st_to_json(&st);
    assert_string_equal(rebuilt, live);
    assert_non_null(strstr(live, "\"b\":{\"status\":\"scheduled\""));

    uv_mutex_lock(&gate.mu);
    gate.open = 1;
    uv_cond_broadcast(&gate.cv);
    uv_mutex_unlock(&gate.mu);
    assert_int_equal(cbm_execution_wait(e, id, 30000, &info, &err), 0);
    assert_string_equal(info->status, "completed");
    cbm_execution_info_free(info);
    free(live);
    free(rebuilt);
    st_finish(&st);
    bp_destroy(bp);
    cbm_events_free(ev, n);
    cbm_engine_destroy(e);
    uv_cond_destroy(&gate.cv);
    uv_mutex_destroy(&gate.mu);
}

static void test_list_pagination(void **state)
{
    enum { N = 25 };
    cbm_engine_t *e = engine();
    char ids[N][37];
    cbm_error_t err = {0};
    cbm_list_opts_t lo = {0};
    char after[37] = "";
    int seen = 0;
    (void)state;
    reg(e, "{\"name\":\"one\",\"timeline\":[{\"name\":\"a\",\"handler\":\"add\"}]}");
    {
        const char *in[N];
        for (int i = 0; i < N; i++) in[i] = "{\"x\":1}";
        assert_int_equal(cbm_execution_start_many(e, "one", in, N, ids, &err), 0);
    }
    for (int i = 0; i < N; i++) {
        cbm_execution_info_t *x = NULL;
        assert_int_equal(cbm_execution_wait(e, ids[i], 30000, &x, &err), 0);
        cbm_execution_info_free(x);
    }
    lo.blueprint = "one";
    lo.status = "completed";
    lo.limit = 10;
    for (;;) {
        cbm_execution_info_t *page = NULL;
        size_t n = 0;
        lo.after = after[0] ? after : NULL;
        assert_int_equal(cbm_execution_list(e, &lo, &page, &n, &err), 0);
        if (n == 0) {
            cbm_execution_infos_free(page, n);
            break;
        }
        assert_true(n <= 10);
        for (size_t i = 0; i < n; i++) {
            int found = 0;
            for (int j = 0; j < N; j++) found += strcmp(page[i].id, ids[j]) == 0;
            assert_int_equal(found, 1);
            assert_string_equal(page[i].blueprint, "one");
        }
        seen += (int)n;
        snprintf(after, sizeof(after), "%s", page[n - 1].id);
        cbm_execution_infos_free(page, n);
    }
    assert_int_equal(seen, N);
    cbm_engine_destroy(e);
}

static void test_bad_input(void **state)
{
    cbm_engine_t *e = engine();
    cbm_error_t err = {0};
    char id[37];
    cbm_execution_info_t *info = NULL;
    (void)state;

    assert_int_equal(cbm_engine_register_blueprint(e, "{\"name\": \"x\", ", NULL, &err), CBM_EJSON);
    assert_int_equal(cbm_engine_register_blueprint(
                         e, "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"depends_on\":[\"zz\"]}]}",
                         NULL, &err),
                     CBM_EBLUEPRINT);
    assert_non_null(strstr(err.message, "zz"));
    assert_int_equal(cbm_execution_start(e, "nope", "{}", id, &err), CBM_ENOTFOUND);
    assert_non_null(strstr(err.message, "nope"));

    reg(e, "{\"name\":\"nh\",\"timeline\":[{\"name\":\"a\",\"handler\":\"unregistered\"}]}");
    assert_int_equal(cbm_execution_start(e, "nh", "{}", id, &err), CBM_EHANDLER);
    assert_non_null(strstr(err.message, "unregistered"));

    reg(e, "{\"name\":\"ok\",\"timeline\":[{\"name\":\"a\",\"handler\":\"add\"}]}");
    assert_int_equal(cbm_execution_start(e, "ok", "[1, 2]", id, &err), CBM_EINVAL);
    assert_int_equal(cbm_execution_start(e, "ok", "{\"x\": ", id, &err), CBM_EJSON);
    assert_int_equal(cbm_execution_get(e, "00000000-0000-4000-8000-000000000000", &info, &err),
                     CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_start(NULL, "ok", "{}", id, &err), CBM_EINVAL);

    /* Declared inputs are checked at start, defaults filled in. */
    reg(e, "{\"name\":\"typed\",\"inputs\":{\"x\":{\"type\":\"integer\",\"required\":true},"
           "\"mode\":{\"type\":\"string\",\"default\":\"fast\"}},"
           "\"timeline\":[{\"name\":\"a\",\"handler\":\"add\"}]}");
    assert_int_equal(cbm_execution_start(e, "typed", "{}", id, &err), CBM_EINVAL);
    assert_non_null(strstr(err.message, "'x'"));
    assert_int_equal(cbm_execution_start(e, "typed", "{\"x\": \"two\"}", id, &err), CBM_EINVAL);
    assert_int_equal(cbm_execution_start(e, "typed", "{\"x\": 2, \"y\": 1}", id, &err), CBM_EINVAL);
    assert_non_null(strstr(err.message, "'y'"));
    assert_int_equal(cbm_execution_start(e, "typed", "{\"x\": 2}", id, &err), 0);
    assert_int_equal(cbm_execution_wait(e, id, 30000, &info, &err), 0);
    assert_string_equal(info->status, "completed");
    assert_non_null(strstr(info->inputs, "\"mode\": \"fast\""));
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    cbm_engine_destroy(NULL);
}

static void test_database_down_at_start(void **state)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    (void)state;
    /* Port 1 on loopback: nothing listens there. */
    o.database_url = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2";
    o.connect_timeout_ms = 700;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    assert_int_equal(cbm_engine_start(e, &err), CBM_EUNAVAIL);
    assert_non_null(strstr(err.message, "unreachable"));
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dag_result_and_history),
        cmocka_unit_test(test_step_failure_fails_execution),
        cmocka_unit_test(test_thousand_dag_executions),
        cmocka_unit_test(test_live_state_equals_rebuilt),
        cmocka_unit_test(test_list_pagination),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_database_down_at_start),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
