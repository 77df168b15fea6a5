/*
 * test_reducer.c - the reducer and the decider on scripted histories: given
 * these events, the decider must produce these events next; a history that
 * does not follow is rejected; and a state rebuilt from the encoded events
 * equals the live state byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/blueprint.h"
#include "engine/decider.h"
#include "engine/event.h"
#include "engine/state.h"

static bp_blueprint_t *parse(const char *json)
{
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    int rc = bp_parse_json(json, strlen(json), &bp, &err);
    if (rc != 0) fail_msg("blueprint did not parse: %s", err.message);
    return bp;
}

/* The fake clock the decider and the events read (us). */
static int64_t now_us = 5000000;

/* A scripted history: the live path (apply what is given, then what the
 * decider says) with every event also encoded, as the engine stores it. */
typedef struct script {
    bp_blueprint_t *bp;
    st_exec_t st;
    char *types[64];
    char *payloads[64];
    int64_t at[64];
    size_t n;
} script_t;

static void record_and_apply(script_t *s, eng_event_t *ev)
{
    ev->seq = s->st.seq + 1;
    ev->at_us = now_us;
    assert_true(s->n < 64);
    s->types[s->n] = strdup(ev_type_name(ev->type));
    s->payloads[s->n] = ev_encode(ev, s->bp);
    s->at[s->n] = ev->at_us;
    assert_non_null(s->payloads[s->n]);
    s->n++;
    assert_int_equal(st_apply(&s->st, ev), 0);
    ev_finish(ev);
}

static void script_init(script_t *s, const char *bp_json, const char *inputs)
{
    eng_event_t ev = {0};
    memset(s, 0, sizeof(*s));
    s->bp = parse(bp_json);
    assert_int_equal(st_init(&s->st, "00000000-0000-4000-8000-000000000001", s->bp), 0);
    ev.type = EV_EXECUTION_STARTED;
    ev.step = -1;
    ev.blueprint = strdup(s->bp->name);
    ev.version = strdup(s->bp->version);
    ev.json = strdup(inputs);
    record_and_apply(s, &ev);
}

/* Run the decider, apply its events, and return them as "Type:step,..." */
static char *decide(script_t *s)
{
    eng_event_t out[32];
    size_t n = 0;
    char buf[1024] = "";
    assert_int_equal(dc_decide(&s->st, now_us, out, 32, &n), 0);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) strcat(buf, ",");
        strcat(buf, ev_type_name(out[i].type));
        if (out[i].step >= 0) {
            strcat(buf, ":");
            strcat(buf, s->bp->steps[out[i].step].name);
        }
        record_and_apply(s, &out[i]);
    }
    return strdup(buf);
}

static void expect_decide(script_t *s, const char *want)
{
    char *got = decide(s);
    assert_string_equal(got, want);
    free(got);
}

static void step_done(script_t *s, const char *step, const char *result)
{
    eng_event_t ev = {0};
    ev.type = EV_STEP_COMPLETED;
    ev.step = bp_step_index(s->bp, step);
    assert_true(ev.step >= 0);
    ev.attempt = s->st.steps[ev.step].attempt;
    ev.json = json_normalize(result);
    record_and_apply(s, &ev);
}

static void step_failed(script_t *s, const char *step, const char *error)
{
    eng_event_t ev = {0};
    ev.type = EV_STEP_FAILED;
    ev.step = bp_step_index(s->bp, step);
    ev.attempt = s->st.steps[ev.step].attempt;
    ev.json = json_normalize(error);
    record_and_apply(s, &ev);
}

/* Rebuild from the recorded (type, payload) pairs; compare canonical text. */
static void expect_rebuild_equal(script_t *s)
{
    st_exec_t re;
    char *live = st_to_json(&s->st), *rebuilt;
    assert_int_equal(st_init(&re, s->st.id, s->bp), 0);
    for (size_t i = 0; i < s->n; i++) {
        eng_event_t ev;
        cbm_error_t err = {0};
        assert_int_equal(ev_decode(s->types[i], s->payloads[i], (int64_t)i + 1, s->at[i], s->bp,
                                   &ev, &err),
                         0);
        assert_int_equal(st_apply(&re, &ev), 0);
        ev_finish(&ev);
    }
    rebuilt = st_to_json(&re);
    assert_string_equal(rebuilt, live);
    free(rebuilt);
    st_finish(&re);
    /* And from a snapshot of it: the same state again. */
    assert_int_equal(st_init(&re, s->st.id, s->bp), 0);
    assert_int_equal(st_from_json(&re, live), 0);
    rebuilt = st_to_json(&re);
    assert_string_equal(rebuilt, live);
    free(live);
    free(rebuilt);
    st_finish(&re);
}

static void script_finish(script_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->types[i]);
        free(s->payloads[i]);
    }
    st_finish(&s->st);
    bp_destroy(s->bp);
}

static void test_timeline(void **state)
{
    script_t s;
    (void)state;
    script_init(&s, "{\"name\":\"t\",\"timeline\":[\"a\",\"b\",\"c\"]}", "{\"x\":1}");
    expect_decide(&s, "StepScheduled:a");
    expect_decide(&s, ""); /* a is running: nothing to do */
    step_done(&s, "a", "{\"v\": 1}");
    expect_decide(&s, "StepScheduled:b");
    step_done(&s, "b", "2");
    expect_decide(&s, "StepScheduled:c");
    expect_rebuild_equal(&s); /* mid-execution */
    step_done(&s, "c", "\"three\"");
    expect_decide(&s, "ExecutionCompleted");
    assert_int_equal(s.st.status, XS_COMPLETED);
    assert_string_equal(s.st.result, "{\"c\":\"three\"}");
    expect_decide(&s, ""); /* terminal: nothing more */
    expect_rebuild_equal(&s);
    script_finish(&s);
}

static void test_diamond_parallel(void **state)
{
    script_t s;
    char *input;
    (void)state;
    script_init(&s,
                "{\"name\":\"d\",\"steps\":[{\"name\":\"a\"},"
                "{\"name\":\"b\",\"depends_on\":[\"a\"]},{\"name\":\"c\",\"depends_on\":[\"a\"]},"
                "{\"name\":\"d\",\"depends_on\":[\"b\",\"c\"]}]}",
                "{}");
    expect_decide(&s, "StepScheduled:a");
    step_done(&s, "a", "1");
    expect_decide(&s, "StepScheduled:b,StepScheduled:c"); /* in parallel */
    step_done(&s, "c", "3");
    expect_decide(&s, ""); /* d waits for b */
    step_done(&s, "b", "2");
    expect_decide(&s, "StepScheduled:d");
    input = dc_step_input(&s.st, (size_t)bp_step_index(s.bp, "d"));
    assert_string_equal(input, "{\"inputs\":{},\"deps\":{\"b\":2,\"c\":3}}");
    free(input);
    step_done(&s, "d", "{\"sum\":5}");
    expect_decide(&s, "ExecutionCompleted");
    assert_string_equal(s.st.result, "{\"d\":{\"sum\":5}}");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* A task's args are the third member of its input; a step without args keeps
 * the two-member input. */
static void test_step_args(void **state)
{
    script_t s;
    char *input;
    (void)state;
    script_init(&s,
                "{\"name\":\"ar\",\"steps\":[{\"name\":\"a\",\"args\":{\"z\":[1,{\"b\":2,"
                "\"a\":1}],\"phase\":\"gen\"}},"
                "{\"name\":\"b\",\"depends_on\":[\"a\"],\"args\":{}},"
                "{\"name\":\"c\",\"depends_on\":[\"a\"]}]}",
                "{\"t\":\"x\"}");
    expect_decide(&s, "StepScheduled:a");
    input = dc_step_input(&s.st, 0);
    assert_string_equal(input, "{\"inputs\":{\"t\":\"x\"},\"deps\":{},\"args\":{\"phase\":"
                               "\"gen\",\"z\":[1,{\"a\":1,\"b\":2}]}}");
    free(input);
    step_done(&s, "a", "{\"r\":1}");
    expect_decide(&s, "StepScheduled:b,StepScheduled:c");
    input = dc_step_input(&s.st, 1);
    assert_string_equal(input, "{\"inputs\":{\"t\":\"x\"},\"deps\":{\"a\":{\"r\":1}},"
                               "\"args\":{}}");
    free(input);
    input = dc_step_input(&s.st, 2);
    assert_string_equal(input, "{\"inputs\":{\"t\":\"x\"},\"deps\":{\"a\":{\"r\":1}}}");
    free(input);
    step_done(&s, "b", "2");
    step_done(&s, "c", "3");
    expect_decide(&s, "ExecutionCompleted");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

static void test_failure_fails_execution(void **state)
{
    script_t s;
    (void)state;
    script_init(&s, "{\"name\":\"f\",\"timeline\":[\"a\",\"b\"]}", "{}");
    expect_decide(&s, "StepScheduled:a");
    step_failed(&s, "a", "{\"kind\":\"boom\",\"message\":\"it \\\"broke\\\"\",\"retryable\":false}");
    expect_decide(&s, "ExecutionFailed");
    assert_int_equal(s.st.status, XS_FAILED);
    assert_string_equal(s.st.error, "{\"step\":\"a\",\"kind\":\"boom\",\"message\":\"it \\\"broke\\\"\"}");
    assert_int_equal(s.st.steps[1].status, SS_PENDING); /* b never ran */
    expect_rebuild_equal(&s);
    script_finish(&s);
}

static void test_reducer_rejects_bad_history(void **state)
{
    script_t s;
    eng_event_t ev = {0};
    (void)state;
    script_init(&s, "{\"name\":\"r\",\"timeline\":[\"a\",\"b\"]}", "{}");

    /* A seq gap. */
    ev.type = EV_STEP_SCHEDULED;
    ev.step = 0;
    ev.seq = s.st.seq + 2;
    assert_int_equal(st_apply(&s.st, &ev), CBM_EINVAL);
    /* A completion of a step that was never scheduled. */
    ev.type = EV_STEP_COMPLETED;
    ev.step = 1;
    ev.seq = s.st.seq + 1;
    assert_int_equal(st_apply(&s.st, &ev), CBM_EINVAL);
    /* A second ExecutionStarted. */
    ev.type = EV_EXECUTION_STARTED;
    ev.step = -1;
    assert_int_equal(st_apply(&s.st, &ev), CBM_EINVAL);
    /* A step index outside the blueprint. */
    ev.type = EV_STEP_SCHEDULED;
    ev.step = 7;
    assert_int_equal(st_apply(&s.st, &ev), CBM_EINVAL);
    script_finish(&s);
}

static void test_decode_errors(void **state)
{
    bp_blueprint_t *bp = parse("{\"name\":\"e\",\"timeline\":[\"a\"]}");
    eng_event_t ev;
    cbm_error_t err = {0};
    (void)state;
    assert_int_equal(ev_decode("NoSuchEvent", "{}", 1, 0, bp, &ev, &err), CBM_EJSON);
    assert_non_null(strstr(err.message, "NoSuchEvent"));
    assert_int_equal(ev_decode("StepScheduled", "[1]", 2, 0, bp, &ev, &err), CBM_EJSON);
    assert_int_equal(ev_decode("StepScheduled", "{\"step\":\"zzz\"}", 2, 0, bp, &ev, &err),
                     CBM_EJSON);
    assert_non_null(strstr(err.message, "zzz"));
    assert_int_equal(ev_decode("StepCompleted", "{\"step\":\"a\",\"attempt\":1}", 3, 0, bp, &ev,
                               &err),
                     CBM_EJSON);
    /* Numbers out of range are refused, not converted (converting 1e300 to
     * an integer is undefined; a huge attempt would overflow the next one).
     * Found by tests/fuzz. */
    static const char *const bad[][2] = {
        {"StepScheduled", "{\"step\":\"a\",\"attempt\":1e300}"},
        {"StepScheduled", "{\"step\":\"a\",\"attempt\":0}"},
        {"StepScheduled", "{\"step\":\"a\",\"attempt\":2147483647}"},
        {"StepRetryScheduled", "{\"step\":\"a\",\"attempt\":2,\"due_us\":-1e300}"},
        {"SleepStarted", "{\"step\":\"a\",\"attempt\":1,\"until_us\":1e19,\"result\":null}"},
        {"ApprovalRequested", "{\"step\":\"a\",\"attempt\":1,\"type\":\"t\",\"data\":{},"
                              "\"timeout_ms\":1e18,\"deadline_us\":0}"},
        {"ExecutionStarted", "{\"blueprint\":\"e\",\"version\":\"v\",\"inputs\":{},"
                             "\"parent\":{\"execution_id\":\"p\",\"step\":\"s\",\"attempt\":-1}}"},
        /* Inputs are an object: the decider builds step inputs from them. */
        {"ExecutionStarted", "{\"blueprint\":\"e\",\"version\":\"v\",\"inputs\":null}"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.message[0] = '\0';
        assert_int_equal(ev_decode(bad[i][0], bad[i][1], 4, 0, bp, &ev, &err), CBM_EJSON);
        assert_true(err.message[0] != '\0');
    }
    bp_destroy(bp);
}

/* A snapshot that does not describe a state of the blueprint is refused
 * (st_from_json), whatever is wrong in it; the state is then only
 * st_finish()ed. Each case was found by tests/fuzz/fuzz_snapshot or
 * fuzz_history: a crash (timers given as an array), undefined behaviour
 * (1e300 converted to an integer), or a state the decider reads wrongly (no
 * inputs: a NULL the decider passed to strlen). */
static void test_snapshot_refused(void **state)
{
    static const char *const edits[][2] = {
        {"timers", "[1]"},
        {"signals", "{\"x\":1}"},
        {"seq", "0"},
        {"seq", "1e300"},
        {"started_at_us", "-1e19"},
        {"inputs", "null"},
        {"inputs", "[1]"},
    };
    static const char *const step_edits[][2] = {
        {"attempt", "1e300"}, {"attempt", "-1"}, {"wait", "9"}, {"fired", "-1"},
        {"route", "3"},       {"base", "5"},     {"child_at_us", "1e19"},
    };
    script_t s;
    (void)state;
    script_init(&s, "{\"name\":\"r\",\"timeline\":[\"a\",\"b\"]}", "{}");
    expect_decide(&s, "StepScheduled:a");
    char *live = st_to_json(&s.st);
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]) + sizeof(step_edits) /
                                                                   sizeof(step_edits[0]); i++) {
        bool top = i < sizeof(edits) / sizeof(edits[0]);
        const char *const *e = top ? edits[i] : step_edits[i - sizeof(edits) / sizeof(edits[0])];
        cJSON *o = cJSON_Parse(live), *where = o;
        char *text;
        st_exec_t re;
        if (!top)
            where = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "steps"), "a");
        cJSON_DeleteItemFromObjectCaseSensitive(where, e[0]);
        assert_true(cJSON_AddItemToObject(where, e[0], cJSON_Parse(e[1])));
        text = cJSON_PrintUnformatted(o);
        assert_int_equal(st_init(&re, s.st.id, s.bp), 0);
        if (st_from_json(&re, text) == 0) fail_msg("snapshot with %s = %s restored", e[0], e[1]);
        st_finish(&re);
        free(text);
        cJSON_Delete(o);
    }
    free(live);
    script_finish(&s);
}

static void test_type_names_round_trip(void **state)
{
    (void)state;
    for (int t = EV_EXECUTION_STARTED; t <= EV_EXECUTION_CANCELLED; t++)
        assert_int_equal(ev_type_from_name(ev_type_name((ev_type_t)t)), t);
    assert_int_equal(ev_type_from_name("nope"), EV_UNKNOWN);
}


static void fire_timer(script_t *s, const char *key)
{
    eng_event_t ev = {0};
    ev.type = EV_TIMER_FIRED;
    ev.step = -1;
    ev.name = strdup(key);
    record_and_apply(s, &ev);
}

static int64_t timer_due(script_t *s, const char *key)
{
    const st_timer_t *t = st_timer_find(&s->st, key);
    assert_non_null(t);
    return t->due_us;
}

static void test_retry_backoff_arithmetic(void **state)
{
    bp_retry_t r = {5, 100, 1000, 3.0, NULL, 0};
    (void)state;
    assert_int_equal(dc_backoff_ms(&r, 1), 100);
    assert_int_equal(dc_backoff_ms(&r, 2), 300);
    assert_int_equal(dc_backoff_ms(&r, 3), 900);
    assert_int_equal(dc_backoff_ms(&r, 4), 1000); /* capped */
    assert_int_equal(dc_backoff_ms(&r, 40), 1000);
}

static void test_retry_as_timers(void **state)
{
    script_t s;
    (void)state;
    now_us = 5000000;
    script_init(&s, "{\"name\":\"r\",\"timeline\":[{\"name\":\"a\",\"retry\":{\"max_attempts\":3,"
                    "\"initial_ms\":100,\"multiplier\":2,\"non_retryable\":[\"fatal\"]}}]}", "{}");
    expect_decide(&s, "StepScheduled:a");
    step_failed(&s, "a", "{\"kind\":\"flaky\",\"message\":\"x\",\"retryable\":true}");
    expect_decide(&s, "StepRetryScheduled:a");
    assert_int_equal(timer_due(&s, "retry:a"), 5000000 + 100000);
    assert_string_equal(st_projection_status(&s.st), "sleeping");
    assert_true(st_only_waiting(&s.st));
    expect_decide(&s, ""); /* nothing until the timer fires */
    now_us += 100000;
    fire_timer(&s, "retry:a");
    expect_decide(&s, "StepScheduled:a");
    assert_int_equal(s.st.steps[0].attempt, 2);
    step_failed(&s, "a", "{\"kind\":\"flaky\",\"message\":\"x\",\"retryable\":true}");
    expect_decide(&s, "StepRetryScheduled:a");
    assert_int_equal(timer_due(&s, "retry:a"), now_us + 200000); /* doubled */
    now_us += 200000;
    fire_timer(&s, "retry:a");
    expect_decide(&s, "StepScheduled:a");
    /* Third attempt fails: no attempt left. */
    step_failed(&s, "a", "{\"kind\":\"flaky\",\"message\":\"x\",\"retryable\":true}");
    expect_decide(&s, "ExecutionFailed");
    assert_int_equal(s.st.ntimers, 0);
    expect_rebuild_equal(&s);
    script_finish(&s);

    /* A non-retryable kind, or retryable=false, fails at once. */
    script_init(&s, "{\"name\":\"r\",\"timeline\":[{\"name\":\"a\",\"retry\":{\"max_attempts\":3,"
                    "\"non_retryable\":[\"fatal\"]}}]}", "{}");
    expect_decide(&s, "StepScheduled:a");
    step_failed(&s, "a", "{\"kind\":\"fatal\",\"message\":\"x\",\"retryable\":true}");
    expect_decide(&s, "ExecutionFailed");
    script_finish(&s);
    script_init(&s, "{\"name\":\"r\",\"timeline\":[{\"name\":\"a\",\"retry\":{\"max_attempts\":3}}]}",
                "{}");
    expect_decide(&s, "StepScheduled:a");
    step_failed(&s, "a", "{\"kind\":\"x\",\"message\":\"x\",\"retryable\":false}");
    expect_decide(&s, "ExecutionFailed");
    script_finish(&s);
}

static void test_timeout_then_retry(void **state)
{
    script_t s;
    (void)state;
    now_us = 7000000;
    script_init(&s, "{\"name\":\"t\",\"timeline\":[{\"name\":\"a\",\"timeout_ms\":50,"
                    "\"retry\":{\"max_attempts\":2,\"initial_ms\":10}}]}", "{}");
    expect_decide(&s, "StepScheduled:a");
    assert_int_equal(timer_due(&s, "timeout:a"), 7000000 + 50000);
    now_us += 50000;
    fire_timer(&s, "timeout:a");
    /* The time-out fails the attempt, and the policy retries it. */
    expect_decide(&s, "StepFailed:a");
    assert_non_null(strstr(s.st.steps[0].error, "\"kind\":\"timeout\""));
    expect_decide(&s, "StepRetryScheduled:a");
    now_us += 10000;
    fire_timer(&s, "retry:a");
    expect_decide(&s, "StepScheduled:a");
    step_done(&s, "a", "1");
    assert_null(st_timer_find(&s.st, "timeout:a")); /* cleared by the completion */
    expect_decide(&s, "ExecutionCompleted");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

static void test_sleep_step(void **state)
{
    script_t s;
    (void)state;
    now_us = 9000000;
    script_init(&s, "{\"name\":\"s\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\","
                    "\"duration_ms\":2000},\"b\"]}", "{}");
    expect_decide(&s, "SleepStarted:z");
    assert_int_equal(timer_due(&s, "sleep:z"), 9000000 + 2000000);
    assert_string_equal(st_projection_status(&s.st), "sleeping");
    expect_decide(&s, "");
    now_us += 2000000;
    fire_timer(&s, "sleep:z");
    expect_decide(&s, "StepCompleted:z");
    expect_decide(&s, "StepScheduled:b");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

static void approval_request(script_t *s, const char *step, int64_t timeout_ms)
{
    eng_event_t ev = {0};
    ev.type = EV_APPROVAL_REQUESTED;
    ev.step = bp_step_index(s->bp, step);
    ev.attempt = 1;
    ev.name = strdup("budget");
    ev.json = strdup("{\"amount\":3}");
    ev.timeout_ms = timeout_ms;
    ev.due_us = timeout_ms > 0 ? now_us + timeout_ms * 1000 : 0;
    record_and_apply(s, &ev);
}

static void test_approval_paths(void **state)
{
    script_t s;
    eng_event_t ev = {0};
    (void)state;
    now_us = 1000000;
    /* Granted: the response is the step's result. */
    script_init(&s, "{\"name\":\"a\",\"timeline\":[\"ask\",\"b\"]}", "{}");
    expect_decide(&s, "StepScheduled:ask");
    approval_request(&s, "ask", 0);
    assert_string_equal(st_projection_status(&s.st), "awaiting_approval");
    assert_true(st_only_waiting(&s.st));
    ev.type = EV_APPROVAL_GRANTED;
    ev.step = 0;
    ev.json = strdup("{\"ok\":true}");
    ev.who = strdup("ann");
    record_and_apply(&s, &ev);
    assert_string_equal(s.st.steps[0].result, "{\"ok\":true}");
    expect_decide(&s, "StepScheduled:b");
    expect_rebuild_equal(&s);
    script_finish(&s);

    /* Timed out. */
    script_init(&s, "{\"name\":\"a\",\"timeline\":[\"ask\",\"b\"]}", "{}");
    expect_decide(&s, "StepScheduled:ask");
    approval_request(&s, "ask", 500);
    now_us += 500000;
    fire_timer(&s, "approval:ask");
    expect_decide(&s, "ApprovalTimedOut:ask");
    expect_decide(&s, "ExecutionFailed");
    assert_non_null(strstr(s.st.error, "approval_timeout"));
    expect_rebuild_equal(&s);
    script_finish(&s);
}

static void test_signal_before_and_during_wait(void **state)
{
    script_t s;
    eng_event_t ev = {0};
    (void)state;
    script_init(&s, "{\"name\":\"g\",\"timeline\":[\"a\",{\"name\":\"w\",\"kind\":\"signal\","
                    "\"signal\":\"go\",\"timeout_ms\":1000}]}", "{}");
    expect_decide(&s, "StepScheduled:a");
    ev.type = EV_SIGNAL_RECEIVED;
    ev.step = -1;
    ev.name = strdup("go");
    ev.json = strdup("{\"n\":1}");
    record_and_apply(&s, &ev); /* nobody waits yet: kept */
    assert_int_equal(s.st.nsignals, 1);
    step_done(&s, "a", "1");
    expect_decide(&s, "StepScheduled:w,StepCompleted:w"); /* consumed at once */
    assert_int_equal(s.st.nsignals, 0);
    assert_string_equal(s.st.steps[1].result, "{\"n\":1}");
    assert_int_equal(s.st.ntimers, 0);
    expect_decide(&s, "ExecutionCompleted");
    expect_rebuild_equal(&s);
    script_finish(&s);

    /* Waiting, then it times out. */
    now_us = 2000000;
    script_init(&s, "{\"name\":\"g\",\"timeline\":[{\"name\":\"w\",\"kind\":\"signal\","
                    "\"timeout_ms\":1000}]}", "{}");
    expect_decide(&s, "StepScheduled:w");
    assert_string_equal(st_projection_status(&s.st), "awaiting_signal");
    now_us += 1000000;
    fire_timer(&s, "signal:w");
    expect_decide(&s, "StepFailed:w");
    expect_decide(&s, "ExecutionFailed");
    assert_non_null(strstr(s.st.error, "signal_timeout"));
    script_finish(&s);
}

/* Cancelling each kind of wait: the execution ends cancelled and every
 * timer it had is gone from its state (so the decision clears their rows). */
static void test_cancel_each_wait(void **state)
{
    const char *bps[] = {
        "{\"name\":\"c\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":99999}]}",
        "{\"name\":\"c\",\"timeline\":[{\"name\":\"p\",\"kind\":\"approval\",\"timeout_ms\":99999}]}",
        "{\"name\":\"c\",\"timeline\":[{\"name\":\"w\",\"kind\":\"signal\",\"timeout_ms\":99999}]}",
    };
    const char *first[] = {"SleepStarted:z", "ApprovalRequested:p", "StepScheduled:w"};
    (void)state;
    for (int i = 0; i < 3; i++) {
        script_t s;
        eng_event_t ev = {0};
        script_init(&s, bps[i], "{}");
        expect_decide(&s, first[i]);
        assert_int_equal(s.st.ntimers, 1);
        ev.type = EV_CANCEL_REQUESTED;
        ev.step = -1;
        ev.text = strdup("stop");
        record_and_apply(&s, &ev);
        expect_decide(&s, "ExecutionCancelled");
        assert_int_equal(s.st.status, XS_CANCELLED);
        assert_int_equal(s.st.ntimers, 0);
        expect_rebuild_equal(&s);
        script_finish(&s);
    }
}

static void test_execution_deadline(void **state)
{
    script_t s;
    bp_blueprint_t *bp;
    cbm_error_t err = {0};
    (void)state;
    now_us = 3000000;
    script_init(&s, "{\"name\":\"d\",\"timeout_ms\":800,\"timeline\":[{\"name\":\"z\","
                    "\"kind\":\"sleep\",\"duration_ms\":5000},\"b\"]}", "{}");
    assert_int_equal(timer_due(&s, "deadline"), 3000000 + 800000);
    expect_decide(&s, "SleepStarted:z");
    assert_int_equal(s.st.ntimers, 2);
    now_us += 800000;
    fire_timer(&s, "deadline");
    expect_decide(&s, "ExecutionFailed");
    assert_non_null(strstr(s.st.error, "execution_timeout"));
    assert_int_equal(s.st.ntimers, 0); /* the sleep's timer goes too */
    expect_rebuild_equal(&s);
    script_finish(&s);
    /* Only written into the canonical form when set; bad values refused. */
    assert_int_equal(bp_parse_json("{\"name\":\"x\",\"timeline\":[\"a\"]}", 29, &bp, &err), 0);
    assert_null(strstr(bp->canonical_json, "timeout_ms\":8"));
    assert_int_equal(bp->timeout_ms, 0);
    bp_destroy(bp);
    assert_int_equal(bp_parse_json("{\"name\":\"x\",\"timeout_ms\":-1,\"timeline\":[\"a\"]}",
                                   45, &bp, &err), CBM_EBLUEPRINT);
    assert_non_null(strstr(err.message, "timeout_ms"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeline),
        cmocka_unit_test(test_diamond_parallel),
        cmocka_unit_test(test_step_args),
        cmocka_unit_test(test_failure_fails_execution),
        cmocka_unit_test(test_reducer_rejects_bad_history),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_snapshot_refused),
        cmocka_unit_test(test_type_names_round_trip),
        cmocka_unit_test(test_retry_backoff_arithmetic),
        cmocka_unit_test(test_retry_as_timers),
        cmocka_unit_test(test_timeout_then_retry),
        cmocka_unit_test(test_sleep_step),
        cmocka_unit_test(test_approval_paths),
        cmocka_unit_test(test_signal_before_and_during_wait),
        cmocka_unit_test(test_cancel_each_wait),
        cmocka_unit_test(test_execution_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
