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

/* A scripted history: the live path (apply what is given, then what the
 * decider says) with every event also encoded, as the engine stores it. */
typedef struct script {
    bp_blueprint_t *bp;
    st_exec_t st;
    char *types[64];
    char *payloads[64];
    size_t n;
} script_t;

static void record_and_apply(script_t *s, eng_event_t *ev)
{
    ev->seq = s->st.seq + 1;
    ev->at_us = 1000000 + ev->seq;
    assert_true(s->n < 64);
    s->types[s->n] = strdup(ev_type_name(ev->type));
    s->payloads[s->n] = ev_encode(ev, s->bp);
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
    assert_int_equal(dc_decide(&s->st, 5000000, out, 32, &n), 0);
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
    ev.attempt = 1;
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
        assert_int_equal(ev_decode(s->types[i], s->payloads[i], (int64_t)i + 1,
                                   1000000 + (int64_t)i + 1, s->bp, &ev, &err), 0);
        assert_int_equal(st_apply(&re, &ev), 0);
        ev_finish(&ev);
    }
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
    bp_destroy(bp);
}

static void test_type_names_round_trip(void **state)
{
    (void)state;
    for (int t = EV_EXECUTION_STARTED; t <= EV_EXECUTION_CANCELLED; t++)
        assert_int_equal(ev_type_from_name(ev_type_name((ev_type_t)t)), t);
    assert_int_equal(ev_type_from_name("nope"), EV_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeline),
        cmocka_unit_test(test_diamond_parallel),
        cmocka_unit_test(test_failure_fails_execution),
        cmocka_unit_test(test_reducer_rejects_bad_history),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_type_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
