/*
 * test_resurrect.c - routing survives engine restarts. An execution is
 * stopped in the middle of a loop (sleeping in its second iteration, after a
 * back_to) and again in the middle of a branch (waiting for an approval on
 * the arm the branch picked); each time a new engine takes it over. The
 * state folded from the store before the stop equals the one after it; the
 * live state of the resurrected execution equals the fold of its history,
 * byte for byte, loop counts included; and it ends as if never stopped.
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

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/event.h"
#include "engine/state.h"
#include "tests/harness/testdb.h"

char *cbm__debug_state_json(cbm_engine_t *e, const char *id);

static char url[512];

static const char *BP =
    "{\"name\":\"rr\",\"steps\":["
    "{\"name\":\"gen\",\"handler\":\"ok\"},"
    "{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":700,\"depends_on\":[\"gen\"]},"
    "{\"name\":\"check\",\"handler\":\"chk\",\"depends_on\":[\"nap\"],"
    " \"diverge\":[{\"match\":{\"verdict\":\"revise\"},\"action\":\"back_to\",\"target\":\"gen\","
    "              \"max_iterations\":3}],"
    " \"branch\":[{\"when\":{\"path\":\"score\",\"op\":\">=\",\"value\":0.8},\"to\":\"publish\"},"
    "            {\"otherwise\":\"escalate\"}]},"
    "{\"name\":\"publish\",\"handler\":\"ok\",\"depends_on\":[\"check\"]},"
    "{\"name\":\"escalate\",\"kind\":\"approval\",\"depends_on\":[\"check\"]},"
    "{\"name\":\"notify\",\"handler\":\"ok\",\"depends_on\":[\"publish\",\"escalate\"]}]}";

typedef struct gate {
    uv_mutex_t mu;
    uv_cond_t cv;
    int entered, open;
} gate_t;

static gate_t gate;

static void h_ok(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"step\":\"%s\",\"attempt\":%d}", call->step, call->attempt);
    cbm_step_ok(out, buf);
}

/* Attempt 1 asks for a revision; attempt 2 waits at the gate, then passes
 * with a low score (so the branch picks the editor). */
static void h_chk(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    if (call->attempt == 1) {
        cbm_step_ok(out, "{\"verdict\":\"revise\"}");
        return;
    }
    uv_mutex_lock(&gate.mu);
    gate.entered = 1;
    uv_cond_broadcast(&gate.cv);
    while (!gate.open) uv_cond_wait(&gate.cv, &gate.mu);
    uv_mutex_unlock(&gate.mu);
    cbm_step_ok(out, "{\"verdict\":\"pass\",\"score\":0.5}");
}

static cbm_engine_t *engine(void)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    assert_int_equal(cbm_engine_register_step(e, "ok", h_ok, NULL), 0);
    assert_int_equal(cbm_engine_register_step(e, "chk", h_chk, NULL), 0);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    if (cbm_engine_register_blueprint(e, BP, NULL, &err) != 0) fail_msg("%s", err.message);
    return e;
}

/* The state folded from the stored history (st_to_json text). */
static char *folded(cbm_engine_t *e, const char *id, char *types, size_t typesz)
{
    cbm_event_t *ev = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    bp_blueprint_t *bp = NULL;
    st_exec_t st;
    char *out;
    assert_int_equal(cbm_execution_history(e, id, 1, &ev, &n, &err), 0);
    assert_int_equal(bp_parse_json(BP, strlen(BP), &bp, &err), 0);
    assert_int_equal(st_init(&st, id, bp), 0);
    if (types != NULL) types[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        eng_event_t x;
        assert_int_equal(ev_decode(ev[i].type, ev[i].payload, ev[i].seq, ev[i].recorded_at_us, bp,
                                   &x, &err), 0);
        assert_int_equal(st_apply(&st, &x), 0);
        ev_finish(&x);
        if (types != NULL) {
            if (i) strncat(types, ",", typesz - strlen(types) - 1);
            strncat(types, ev[i].type, typesz - strlen(types) - 1);
        }
    }
    out = st_to_json(&st);
    st_finish(&st);
    bp_destroy(bp);
    cbm_events_free(ev, n);
    return out;
}

static void wait_for(cbm_engine_t *e, const char *id, const char *status, const char *event)
{
    char types[4096];
    for (int i = 0; i < 1500; i++) {
        cbm_execution_info_t *x = NULL;
        cbm_error_t err = {0};
        int same;
        char *s;
        assert_int_equal(cbm_execution_get(e, id, &x, &err), 0);
        same = strcmp(x->status, status) == 0;
        cbm_execution_info_free(x);
        s = folded(e, id, types, sizeof(types));
        free(s);
        if (same && (event == NULL || strstr(types, event) != NULL)) return;
        uv_sleep(10);
    }
    fail_msg("execution %s never reached %s with %s", id, status, event ? event : "-");
}

static void test_restart_mid_loop_and_mid_branch(void **state)
{
    cbm_engine_t *e;
    cbm_error_t err = {0};
    cbm_execution_info_t *info = NULL;
    char id[37], *before, *after, *live, types[4096];
    (void)state;

    uv_mutex_init(&gate.mu);
    uv_cond_init(&gate.cv);

    /* Engine 1: the first round asks for a revision; stop while the second
     * round sleeps. */
    e = engine();
    assert_int_equal(cbm_execution_start(e, "rr", "{}", id, &err), 0);
    wait_for(e, id, "sleeping", "DivergeTaken");
    before = folded(e, id, NULL, 0);
    assert_non_null(strstr(before, "\"iters\":[1]"));
    assert_non_null(strstr(before, "\"gen\":{\"status\":\"completed\",\"attempt\":2"));
    cbm_engine_destroy(e);

    /* Engine 2 takes it over: nothing changed in between, and the check of
     * the second round runs (attempt 2, not 1 again). */
    e = engine();
    after = folded(e, id, NULL, 0);
    assert_string_equal(after, before);
    free(after);
    uv_mutex_lock(&gate.mu);
    while (!gate.entered) uv_cond_wait(&gate.cv, &gate.mu);
    uv_mutex_unlock(&gate.mu);
    uv_sleep(50); /* let the decision that scheduled it settle */
    live = cbm__debug_state_json(e, id);
    assert_non_null(live);
    after = folded(e, id, NULL, 0);
    assert_string_equal(live, after);
    assert_non_null(strstr(live, "\"iters\":[1]"));
    assert_non_null(strstr(live, "\"check\":{\"status\":\"scheduled\",\"attempt\":2"));
    free(live);
    free(after);
    free(before);
    uv_mutex_lock(&gate.mu);
    gate.open = 1;
    uv_cond_broadcast(&gate.cv);
    uv_mutex_unlock(&gate.mu);

    /* The branch picks the editor; stop while the approval waits. */
    wait_for(e, id, "awaiting_approval", "BranchTaken");
    before = folded(e, id, NULL, 0);
    assert_non_null(strstr(before, "\"publish\":{\"status\":\"skipped\""));
    cbm_engine_destroy(e);

    /* Engine 3: the same state; the approval completes it. */
    e = engine();
    after = folded(e, id, NULL, 0);
    assert_string_equal(after, before);
    free(after);
    free(before);
    assert_int_equal(cbm_execution_approve(e, id, "escalate", "{\"ok\":true}", "ed", &err), 0);
    if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) fail_msg("%s", err.message);
    assert_string_equal(info->status, "completed");
    assert_string_equal(info->result, "{\"notify\": {\"step\": \"notify\", \"attempt\": 1}}");
    after = folded(e, id, types, sizeof(types));
    free(after);
    assert_string_equal(types,
                        "ExecutionStarted,StepScheduled,StepCompleted,SleepStarted,TimerFired,"
                        "StepCompleted,StepScheduled,StepCompleted,DivergeTaken,StepScheduled,"
                        "StepCompleted,SleepStarted,TimerFired,StepCompleted,StepScheduled,"
                        "StepCompleted,BranchTaken,ApprovalRequested,ApprovalGranted,"
                        "StepScheduled,StepCompleted,ExecutionCompleted");
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
    uv_cond_destroy(&gate.cv);
    uv_mutex_destroy(&gate.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_mid_loop_and_mid_branch),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
