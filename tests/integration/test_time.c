/*
 * test_time.c - durable time and people on a real PostgreSQL: sleeps (a
 * sleep step and a handler's "done, now sleep"), retries with back-off,
 * start-to-close time-outs, approvals decided by another engine (approve,
 * reject, time-out, a second decision refused), signals (sent before and
 * after the wait, time-out), cancellation of waiting executions, hibernation,
 * and a sleep that spans an engine restart. Durations are short but real:
 * these run the same scheduler a month-long sleep uses.
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
#include "scheduler/clock.h"
#include "tests/harness/testdb.h"

static char url[512];

static void h_ok(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"step\": \"%s\", \"attempt\": %d}", call->step, call->attempt);
    cbm_step_ok(out, buf);
}

/* Fails (retryably) on attempts 1 and 2, succeeds on the third. */
static void h_flaky(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    if (call->attempt < 3) cbm_step_fail(out, "flaky", "not yet", true);
    else cbm_step_ok(out, "{\"third\": true}");
}

/* Fails (retryably) until attempt 30. */
static void h_stubborn(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    if (call->attempt < 30) cbm_step_fail(out, "stubborn", "not yet", true);
    else cbm_step_ok(out, "{\"at_last\": true}");
}

static void h_bad(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_fail(out, "bad_input", "never retried", true);
}

/* Attempt 1 hangs past its time-out; attempt 2 is quick. */
static void h_slow_first(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    if (call->attempt == 1) uv_sleep(600);
    cbm_step_ok(out, call->attempt == 1 ? "\"late\"" : "\"quick\"");
}

static void h_nap(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_sleep(out, "{\"napped\": true}", 250);
}

static void h_bad_nap(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_sleep(out, "{}", -5);
}

static void h_ask(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_approval(out, "budget", "{\"amount\": 120}", 0);
}

static void h_wait200(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    uv_sleep(200);
    cbm_step_ok(out, "1");
}

static cbm_engine_t *engine(void)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    assert_int_equal(cbm_engine_create(&e, &o, &err), 0);
    cbm_engine_register_step(e, "ok", h_ok, NULL);
    cbm_engine_register_step(e, "flaky", h_flaky, NULL);
    cbm_engine_register_step(e, "bad", h_bad, NULL);
    cbm_engine_register_step(e, "stubborn", h_stubborn, NULL);
    cbm_engine_register_step(e, "slow_first", h_slow_first, NULL);
    cbm_engine_register_step(e, "nap", h_nap, NULL);
    cbm_engine_register_step(e, "bad_nap", h_bad_nap, NULL);
    cbm_engine_register_step(e, "ask", h_ask, NULL);
    cbm_engine_register_step(e, "wait200", h_wait200, NULL);
    if (cbm_engine_start(e, &err) != 0) fail_msg("start: %s", err.message);
    return e;
}

static void reg(cbm_engine_t *e, const char *json)
{
    cbm_error_t err = {0};
    if (cbm_engine_register_blueprint(e, json, NULL, &err) != 0)
        fail_msg("register: %s", err.message);
}

static void start(cbm_engine_t *e, const char *bp, char id[37])
{
    cbm_error_t err = {0};
    if (cbm_execution_start(e, bp, "{}", id, &err) != 0) fail_msg("start: %s", err.message);
}

static cbm_execution_info_t *wait_done(cbm_engine_t *e, const char *id)
{
    cbm_error_t err = {0};
    cbm_execution_info_t *info = NULL;
    if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) fail_msg("wait: %s", err.message);
    return info;
}

/* Poll until the projection has this status (or fail after 10 s). */
static void wait_status(cbm_engine_t *e, const char *id, const char *status)
{
    for (int i = 0; i < 1000; i++) {
        cbm_execution_info_t *x = NULL;
        cbm_error_t err = {0};
        int same;
        assert_int_equal(cbm_execution_get(e, id, &x, &err), 0);
        same = strcmp(x->status, status) == 0;
        cbm_execution_info_free(x);
        if (same) return;
        uv_sleep(10);
    }
    fail_msg("execution %s never reached status %s", id, status);
}

/* "Type,Type,..." of the history. */
static char *types(cbm_engine_t *e, const char *id)
{
    cbm_event_t *ev = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    char *out = calloc(1, 4096);
    assert_int_equal(cbm_execution_history(e, id, 1, &ev, &n, &err), 0);
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(out, ",");
        strncat(out, ev[i].type, 4000 - strlen(out));
    }
    cbm_events_free(ev, n);
    return out;
}

static int count_of(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) c++;
    return c;
}

static int timers_of(const char *id)
{
    PGconn *c = PQconnectdb(url);
    const char *params[1] = {id};
    PGresult *r = PQexecParams(c, "SELECT count(*) FROM cbm_timers WHERE execution_id = $1", 1,
                               NULL, params, NULL, NULL, 0);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

static void test_sleep_step_and_hibernation(void **state)
{
    cbm_engine_t *e = engine();
    cbm_engine_stats_t st;
    cbm_execution_info_t *info;
    char id[37], *t;
    int64_t t0 = clock_mono_us();
    (void)state;
    reg(e, "{\"name\":\"nap\",\"timeline\":[{\"name\":\"a\",\"handler\":\"ok\"},"
           "{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":300},{\"name\":\"b\",\"handler\":\"ok\"}]}");
    start(e, "nap", id);
    wait_status(e, id, "sleeping");
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    assert_true(clock_mono_us() - t0 >= 300000);
    t = types(e, id);
    assert_non_null(strstr(t, "SleepStarted,TimerFired,StepCompleted"));
    cbm_engine_get_stats(e, &st);
    assert_true(st.hibernated >= 1); /* it left memory while it slept */
    assert_true(st.woken >= 1);
    assert_int_equal(timers_of(id), 0);
    free(t);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_handler_sleep_outcome(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37], *t;
    (void)state;
    reg(e, "{\"name\":\"hn\",\"timeline\":[{\"name\":\"a\",\"handler\":\"nap\"},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    start(e, "hn", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    t = types(e, id);
    /* a is done with its result, then the execution sleeps, then b runs. */
    assert_non_null(strstr(t, "StepScheduled,SleepStarted,TimerFired,StepCompleted,StepScheduled"));
    free(t);
    cbm_execution_info_free(info);

    reg(e, "{\"name\":\"bn\",\"timeline\":[{\"name\":\"a\",\"handler\":\"bad_nap\"}]}");
    start(e, "bn", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "bad_sleep"));
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_retry_with_backoff(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37], *t;
    (void)state;
    reg(e, "{\"name\":\"rt\",\"timeline\":[{\"name\":\"a\",\"handler\":\"flaky\","
           "\"retry\":{\"max_attempts\":3,\"initial_ms\":50,\"multiplier\":2}}]}");
    start(e, "rt", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    assert_string_equal(info->result, "{\"a\": {\"third\": true}}");
    t = types(e, id);
    assert_int_equal(count_of(t, "StepFailed"), 2);
    assert_int_equal(count_of(t, "StepRetryScheduled"), 2);
    assert_int_equal(count_of(t, "StepScheduled"), 3);
    free(t);
    cbm_execution_info_free(info);

    /* Out of attempts: fails with the last error. */
    reg(e, "{\"name\":\"rt2\",\"timeline\":[{\"name\":\"a\",\"handler\":\"flaky\","
           "\"retry\":{\"max_attempts\":2,\"initial_ms\":20}}]}");
    start(e, "rt2", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "flaky"));
    cbm_execution_info_free(info);

    /* A non-retryable kind is not retried. */
    reg(e, "{\"name\":\"rt3\",\"timeline\":[{\"name\":\"a\",\"handler\":\"bad\","
           "\"retry\":{\"max_attempts\":5,\"initial_ms\":20,\"non_retryable\":[\"bad_input\"]}}]}");
    start(e, "rt3", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "failed");
    t = types(e, id);
    assert_int_equal(count_of(t, "StepRetryScheduled"), 0);
    free(t);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_timeout_abandons_attempt(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37], *t;
    (void)state;
    reg(e, "{\"name\":\"to\",\"timeline\":[{\"name\":\"a\",\"handler\":\"slow_first\","
           "\"timeout_ms\":100,\"retry\":{\"max_attempts\":2,\"initial_ms\":10}}]}");
    start(e, "to", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    /* The late result of attempt 1 was ignored: the result is attempt 2's. */
    assert_string_equal(info->result, "{\"a\": \"quick\"}");
    t = types(e, id);
    assert_int_equal(count_of(t, "StepFailed"), 1);
    assert_int_equal(count_of(t, "StepCompleted"), 1);
    free(t);
    cbm_execution_info_free(info);
    uv_sleep(700); /* let attempt 1 come back, and be ignored, before the end */
    cbm_engine_destroy(e);
}

static const char *APPROVAL_BP =
    "{\"name\":\"ap\",\"timeline\":[{\"name\":\"prepare\",\"handler\":\"ok\"},"
    "{\"name\":\"review\",\"handler\":\"ask\"},{\"name\":\"publish\",\"handler\":\"ok\"}]}";

static void test_approval_by_another_engine(void **state)
{
    cbm_engine_t *e1 = engine(), *e2;
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    char id[37], *t;
    (void)state;
    reg(e1, APPROVAL_BP);
    start(e1, "ap", id);
    wait_status(e1, id, "awaiting_approval");
    cbm_engine_destroy(e1); /* the engine that started it is gone */

    e2 = engine();
    assert_int_equal(cbm_execution_approve(e2, id, "nope", "{}", "ann", &err), CBM_ENOTFOUND);
    assert_int_equal(cbm_execution_approve(e2, id, "prepare", "{}", "ann", &err), CBM_ESTATE);
    assert_int_equal(cbm_execution_approve(e2, id, "review", "{\"ok\": [1, 2]}", "ann", &err), 0);
    info = wait_done(e2, id);
    assert_string_equal(info->status, "completed");
    /* A second decision on the same approval is refused and changes nothing. */
    assert_int_equal(cbm_execution_reject(e2, id, "review", "too late", "bob", &err), CBM_ESTATE);
    t = types(e2, id);
    assert_int_equal(count_of(t, "ApprovalGranted"), 1);
    assert_int_equal(count_of(t, "ApprovalRejected"), 0);
    free(t);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e2);
}

static void test_approval_in_same_engine_and_reject(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    char id[37];
    (void)state;
    reg(e, APPROVAL_BP);
    start(e, "ap", id);
    wait_status(e, id, "awaiting_approval");
    assert_int_equal(cbm_execution_approve(e, id, "review", "{\"by\": \"me\"}", NULL, &err), 0);
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    assert_string_equal(info->result, "{\"publish\": {\"step\": \"publish\", \"attempt\": 1}}");
    assert_int_equal(cbm_execution_approve(e, id, "review", NULL, NULL, &err), CBM_ESTATE);
    cbm_execution_info_free(info);

    start(e, "ap", id);
    wait_status(e, id, "awaiting_approval");
    assert_int_equal(cbm_execution_reject(e, id, "review", "over budget", "cfo", &err), 0);
    info = wait_done(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "approval_rejected"));
    assert_non_null(strstr(info->error, "over budget"));
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_approval_step_timeout(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    char id[37];
    (void)state;
    reg(e, "{\"name\":\"apt\",\"timeline\":[{\"name\":\"ok1\",\"handler\":\"ok\"},"
           "{\"name\":\"sign\",\"kind\":\"approval\",\"timeout_ms\":200}]}");
    start(e, "apt", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "approval_timeout"));
    assert_int_equal(cbm_execution_approve(e, id, "sign", NULL, NULL, &err), CBM_ESTATE);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_signals(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    char id[37];
    (void)state;
    reg(e, "{\"name\":\"sg\",\"timeline\":[{\"name\":\"a\",\"handler\":\"wait200\"},"
           "{\"name\":\"go\",\"kind\":\"signal\",\"signal\":\"go\"},{\"name\":\"b\",\"handler\":\"ok\"}]}");
    /* Sent before the execution waits: kept, then consumed. */
    start(e, "sg", id);
    assert_int_equal(cbm_execution_signal(e, id, "go", "{\"early\": true}", &err), 0);
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    cbm_execution_info_free(info);
    {
        char *t = types(e, id);
        assert_int_equal(count_of(t, "SignalReceived"), 1);
        free(t);
    }
    /* Sent while it waits. */
    start(e, "sg", id);
    wait_status(e, id, "awaiting_signal");
    assert_int_equal(cbm_execution_signal(e, id, "go", NULL, &err), 0);
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    cbm_execution_info_free(info);
    /* Never sent: the wait times out. */
    reg(e, "{\"name\":\"sgt\",\"timeline\":[{\"name\":\"w\",\"kind\":\"signal\",\"timeout_ms\":150}]}");
    start(e, "sgt", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "signal_timeout"));
    assert_int_equal(cbm_execution_signal(e, id, "w", NULL, &err), CBM_ESTATE);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_cancel_waiting(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    char id[37], id2[37];
    (void)state;
    reg(e, "{\"name\":\"long\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":3600000},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    start(e, "long", id);
    wait_status(e, id, "sleeping");
    assert_int_equal(timers_of(id), 1);
    assert_int_equal(cbm_execution_cancel(e, id, "changed my mind", &err), 0);
    info = wait_done(e, id);
    assert_string_equal(info->status, "cancelled");
    assert_int_equal(timers_of(id), 0); /* its timer went with it */
    assert_int_equal(cbm_execution_cancel(e, id, "again", &err), 0); /* idempotent */
    cbm_execution_info_free(info);
    {
        char *t = types(e, id);
        assert_int_equal(count_of(t, "ExecutionCancelled"), 1);
        free(t);
    }
    reg(e, APPROVAL_BP);
    start(e, "ap", id2);
    wait_status(e, id2, "awaiting_approval");
    assert_int_equal(cbm_execution_cancel(e, id2, NULL, &err), 0);
    info = wait_done(e, id2);
    assert_string_equal(info->status, "cancelled");
    cbm_execution_info_free(info);
    /* Finished executions cannot be cancelled. */
    reg(e, "{\"name\":\"quick\",\"timeline\":[{\"name\":\"a\",\"handler\":\"ok\"}]}");
    start(e, "quick", id);
    info = wait_done(e, id);
    cbm_execution_info_free(info);
    assert_int_equal(cbm_execution_cancel(e, id, NULL, &err), CBM_ESTATE);
    assert_non_null(strstr(err.message, "completed"));
    assert_int_equal(cbm_execution_cancel(e, "00000000-0000-4000-8000-000000000000", NULL, &err),
                     CBM_ENOTFOUND);
    cbm_engine_destroy(e);
}

static void test_sleep_across_restart(void **state)
{
    cbm_engine_t *e;
    cbm_execution_info_t *info;
    char before[37], after[37];
    (void)state;
    e = engine();
    reg(e, "{\"name\":\"rs\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":1200},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    reg(e, "{\"name\":\"rs2\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":300},"
           "{\"name\":\"b\",\"handler\":\"ok\"}]}");
    start(e, "rs", before); /* due after the restart */
    start(e, "rs2", after); /* due while the engine is down */
    wait_status(e, before, "sleeping");
    wait_status(e, after, "sleeping");
    cbm_engine_destroy(e);
    uv_sleep(600);
    e = engine(); /* the overdue one fires at once, the other when due */
    info = wait_done(e, after);
    assert_string_equal(info->status, "completed");
    cbm_execution_info_free(info);
    info = wait_done(e, before);
    assert_string_equal(info->status, "completed");
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static int scalar(const char *sql, const char *id)
{
    PGconn *c = PQconnectdb(url);
    const char *params[1] = {id};
    PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    int n = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    PQfinish(c);
    return n;
}

/* A long history (30 attempts, 4 events each) gets snapshots, and an
 * execution is rebuilt from its snapshot by another engine and by an
 * outside decision. */
static void test_long_history_snapshot(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    cbm_error_t err = {0};
    cbm_event_t *ev = NULL;
    size_t n = 0;
    char id[37];
    (void)state;
    reg(e, "{\"name\":\"long\",\"timeline\":[{\"name\":\"a\",\"handler\":\"stubborn\","
           "\"retry\":{\"max_attempts\":40,\"initial_ms\":1,\"multiplier\":1}},"
           "{\"name\":\"w\",\"kind\":\"signal\",\"signal\":\"go\"},{\"name\":\"b\",\"handler\":\"ok\"}]}");
    start(e, "long", id);
    wait_status(e, id, "awaiting_signal");
    assert_true(scalar("SELECT seq FROM cbm_snapshots WHERE execution_id = $1", id) >= 100);
    cbm_engine_destroy(e);
    e = engine(); /* loads it from the snapshot when the signal wakes it */
    assert_int_equal(cbm_execution_signal(e, id, "go", "1", &err), 0);
    info = wait_done(e, id);
    assert_string_equal(info->status, "completed");
    assert_int_equal(cbm_execution_history(e, id, 1, &ev, &n, &err), 0);
    assert_int_equal((int64_t)n, info->last_seq); /* the history stays whole */
    assert_true(n > 120);
    cbm_events_free(ev, n);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_execution_timeout(void **state)
{
    cbm_engine_t *e = engine();
    cbm_execution_info_t *info;
    char id[37];
    (void)state;
    reg(e, "{\"name\":\"dl\",\"timeout_ms\":300,\"timeline\":[{\"name\":\"a\",\"handler\":\"ok\"},"
           "{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":3600000},{\"name\":\"b\",\"handler\":\"ok\"}]}");
    start(e, "dl", id);
    info = wait_done(e, id);
    assert_string_equal(info->status, "failed");
    assert_non_null(strstr(info->error, "execution_timeout"));
    assert_int_equal(timers_of(id), 0);
    cbm_execution_info_free(info);
    cbm_engine_destroy(e);
}

static void test_bad_input(void **state)
{
    cbm_engine_t *e = engine();
    cbm_error_t err = {0};
    char id[37];
    (void)state;
    assert_int_equal(cbm_engine_register_blueprint(
                         e, "{\"name\":\"neg\",\"steps\":[{\"name\":\"z\",\"kind\":\"sleep\","
                            "\"duration_ms\":-1}]}",
                         NULL, &err),
                     CBM_EBLUEPRINT);
    assert_int_equal(cbm_execution_signal(e, "00000000-0000-4000-8000-000000000000", "x", NULL, &err),
                     CBM_ENOTFOUND);
    reg(e, APPROVAL_BP);
    start(e, "ap", id);
    wait_status(e, id, "awaiting_approval");
    assert_int_equal(cbm_execution_approve(e, id, "review", "{not json", NULL, &err), CBM_EJSON);
    assert_int_equal(cbm_execution_signal(e, id, "", NULL, &err), CBM_EINVAL);
    assert_int_equal(cbm_execution_cancel(e, id, NULL, &err), 0);
    cbm_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sleep_step_and_hibernation),
        cmocka_unit_test(test_handler_sleep_outcome),
        cmocka_unit_test(test_retry_with_backoff),
        cmocka_unit_test(test_timeout_abandons_attempt),
        cmocka_unit_test(test_approval_by_another_engine),
        cmocka_unit_test(test_approval_in_same_engine_and_reject),
        cmocka_unit_test(test_approval_step_timeout),
        cmocka_unit_test(test_signals),
        cmocka_unit_test(test_cancel_waiting),
        cmocka_unit_test(test_sleep_across_restart),
        cmocka_unit_test(test_long_history_snapshot),
        cmocka_unit_test(test_execution_timeout),
        cmocka_unit_test(test_bad_input),
    };
    int rc;
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    return rc;
}
