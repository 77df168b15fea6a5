/*
 * test_trigger.c - triggers as data (bus/trigger.h): a definition parses to
 * a canonical form whose version does not depend on formatting or defaults
 * written out; refusals name the field; and what a message makes: keys
 * (Nats-Msg-Id, else stream:seq; a data path), inputs from the template
 * ($.msg.data..., subject, headers, $.item, $.index), for_each, and the
 * reasons given for bad data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus/trigger.h"

static const char FLEET[] =
    "{\"name\": \"fleet-roles\", \"stream\": \"PLANNING\", \"consumer\": \"cbm-fleet\","
    " \"subject\": \"planning.plan.approved\", \"blueprint\": \"deliberate\","
    " \"inputs\": {\"role\": \"$.item\", \"n\": \"$.index\", \"story\": \"$.msg.data.payload.story_id\","
    "   \"subject\": \"$.msg.subject\", \"by\": \"$.msg.headers.X-User\", \"lit\": [1, \"x\"]},"
    " \"for_each\": \"$.msg.data.payload.roles\", \"key\": \"$.msg.data.idempotency_key\"}";

static trigger_t *parse_ok(const char *json)
{
    trigger_t *t = NULL;
    cbm_error_t err = {0};
    int rc = trigger_parse(json, strlen(json), &t, &err);
    if (rc != 0) fail_msg("parse: %d %s", rc, err.message);
    return t;
}

static void expect_refusal(const char *json, const char *msg)
{
    trigger_t *t = NULL;
    cbm_error_t err = {0};
    int rc = trigger_parse(json, strlen(json), &t, &err);
    if (rc == 0) fail_msg("parsed, expected a refusal with \"%s\"", msg);
    if (strstr(err.message, msg) == NULL) fail_msg("\"%s\" lacks \"%s\"", err.message, msg);
    assert_null(t);
}

static void test_canonical(void **state)
{
    trigger_t *a = parse_ok(FLEET);
    trigger_t *b = parse_ok("{\"key\": \"$.msg.data.idempotency_key\", \"batch\": 10,"
        " \"for_each\": \"$.msg.data.payload.roles\", \"wait_ms\": 1000, \"action\": \"start\","
        " \"inputs\": {\"lit\": [1, \"x\"], \"by\": \"$.msg.headers.X-User\", \"role\": \"$.item\","
        " \"n\": \"$.index\", \"story\": \"$.msg.data.payload.story_id\", \"subject\": \"$.msg.subject\"},"
        " \"blueprint\": \"deliberate\", \"subject\": \"planning.plan.approved\","
        " \"consumer\": \"cbm-fleet\", \"stream\": \"PLANNING\", \"name\": \"fleet-roles\"}");
    trigger_t *c = parse_ok("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\","
                            " \"subject\": \"a.b\", \"blueprint\": \"bp\"}");
    (void)state;
    assert_string_equal(a->version, b->version);
    assert_int_equal(a->key_kind, TRIG_KEY_PATH);
    assert_int_equal(c->key_kind, TRIG_KEY_MSG_ID);
    assert_int_equal(c->batch, 10);
    assert_int_equal(c->wait_ms, 1000);
    assert_non_null(strstr(c->canonical, "\"inputs\":{\"data\":\"$.msg.data\",\"subject\":\"$.msg.subject\"}"));
    assert_non_null(strstr(c->canonical, "\"key\":\"msg_id\""));
    trigger_destroy(a);
    trigger_destroy(b);
    trigger_destroy(c);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refusal("{\"stream\": \"S\"}", "name: is required");
    expect_refusal("{\"name\": \"t\", \"consumer\": \"c\", \"subject\": \"a\", \"blueprint\": \"b\"}",
                   "trigger 't': stream: is required");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\", \"action\": \"signal\"}", "blueprint: does not apply to action signal");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"action\": \"approve\", \"execution\": \"$.msg.data.id\"}", "step: is required for action approve");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"action\": \"pause\"}", "action: 'pause' is not one of");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\", \"inputs\": {\"r\": \"$.item\"}}", "inputs: '$.item' needs for_each");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\", \"inputs\": {\"r\": \"$.msg.dta\"}}", "inputs: '$.msg.dta' is not a path");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\", \"key\": \"id\"}", "key: must be");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\", \"batch\": 0}", "batch: must be an integer from 1 to 256");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S.x\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\"}", "stream: letters");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\", \"colour\": 1}", "colour: unknown field");
    expect_refusal("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\", \"subject\": \"a\","
                   " \"blueprint\": \"b\", \"inputs\": {\"x\": \"$.msg.data.a[x]\"}}", "bad segment");
}

static const char *const HK[] = {"Nats-Msg-Id", "X-User"};
static const char *const HV[] = {"m-1", "ana"};

static trig_msg_t msg(const char *data)
{
    trig_msg_t m = {.subject = "planning.plan.approved", .data = data, .len = strlen(data),
                    .stream = "PLANNING", .seq = 42, .msg_id = "m-1", .hdr_keys = HK,
                    .hdr_vals = HV, .nhdr = 2};
    return m;
}

static void test_for_each(void **state)
{
    trigger_t *t = parse_ok(FLEET);
    trig_msg_t m = msg("{\"idempotency_key\": \"abc\", \"payload\": {\"story_id\": \"s-7\","
                       " \"roles\": [\"dev\", \"qa\", {\"r\": 1}]}}");
    trig_job_t *jobs;
    size_t n;
    char reason[200];
    (void)state;
    assert_int_equal(trigger_eval(t, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_int_equal(n, 3);
    assert_string_equal(jobs[0].key, "trig:fleet-roles:abc:0");
    assert_string_equal(jobs[2].key, "trig:fleet-roles:abc:2");
    assert_string_equal(jobs[0].inputs, "{\"by\":\"ana\",\"lit\":[1,\"x\"],\"n\":0,\"role\":\"dev\","
                        "\"story\":\"s-7\",\"subject\":\"planning.plan.approved\"}");
    assert_string_equal(jobs[2].inputs, "{\"by\":\"ana\",\"lit\":[1,\"x\"],\"n\":2,\"role\":{\"r\":1},"
                        "\"story\":\"s-7\",\"subject\":\"planning.plan.approved\"}");
    trig_jobs_free(jobs, n);
    m = msg("{\"idempotency_key\": \"abc\", \"payload\": {\"story_id\": 1, \"roles\": []}}");
    assert_int_equal(trigger_eval(t, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_int_equal(n, 0);
    assert_null(jobs);
    trigger_destroy(t);
}

static void expect_poison(const trigger_t *t, trig_msg_t m, const char *why)
{
    trig_job_t *jobs;
    size_t n;
    char reason[200];
    assert_int_equal(trigger_eval(t, &m, &jobs, &n, reason, sizeof(reason)), -1 /* CBM_EINVAL */);
    if (strstr(reason, why) == NULL) fail_msg("\"%s\" lacks \"%s\"", reason, why);
    assert_null(jobs);
}

static void test_poison(void **state)
{
    trigger_t *t = parse_ok(FLEET);
    trig_msg_t m;
    (void)state;
    expect_poison(t, msg("not json"), "$.msg.data.idempotency_key: the message's data is not JSON");
    expect_poison(t, msg("{\"payload\": {\"roles\": []}}"), "$.msg.data.idempotency_key: not found");
    expect_poison(t, msg("{\"idempotency_key\": [1], \"payload\": {\"roles\": []}}"), "must be a non-empty string");
    expect_poison(t, msg("{\"idempotency_key\": \"k\", \"payload\": {\"roles\": 3}}"), "not an array");
    expect_poison(t, msg("{\"idempotency_key\": \"k\", \"payload\": {\"roles\": [1]}}"),
                  "$.msg.data.payload.story_id: not found");
    m = msg("{\"idempotency_key\": \"k\", \"payload\": {\"story_id\": 1, \"roles\": [1]}}");
    m.nhdr = 1;
    expect_poison(t, m, "no header 'X-User'");
    trigger_destroy(t);
}

static void test_keys(void **state)
{
    trigger_t *t = parse_ok("{\"name\": \"t\", \"stream\": \"S\", \"consumer\": \"c\","
                            " \"subject\": \"a.b\", \"blueprint\": \"bp\"}");
    trigger_t *q = parse_ok("{\"name\": \"q\", \"stream\": \"S\", \"consumer\": \"c\","
                            " \"subject\": \"a.b\", \"blueprint\": \"bp\", \"key\": \"stream_seq\"}");
    trigger_t *p = parse_ok("{\"name\": \"p\", \"stream\": \"S\", \"consumer\": \"c\","
                            " \"subject\": \"a.b\", \"blueprint\": \"bp\", \"key\": \"$.msg.data.id\"}");
    trig_msg_t m = msg("{\"id\": 17}");
    trig_job_t *jobs;
    size_t n;
    char reason[200], big[600];
    (void)state;
    assert_int_equal(trigger_eval(t, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_string_equal(jobs[0].key, "trig:t:m-1");
    assert_string_equal(jobs[0].inputs, "{\"data\":{\"id\":17},\"subject\":\"planning.plan.approved\"}");
    trig_jobs_free(jobs, n);
    m.msg_id = NULL; /* no Nats-Msg-Id: stream and sequence */
    assert_int_equal(trigger_eval(t, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_string_equal(jobs[0].key, "trig:t:PLANNING:42");
    trig_jobs_free(jobs, n);
    m = msg("{\"id\": 17}");
    assert_int_equal(trigger_eval(q, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_string_equal(jobs[0].key, "trig:q:PLANNING:42");
    trig_jobs_free(jobs, n);
    assert_int_equal(trigger_eval(p, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_string_equal(jobs[0].key, "trig:p:17");
    trig_jobs_free(jobs, n);
    memset(big, 'k', sizeof(big));
    snprintf(big, sizeof(big), "{\"id\": \"%.*s\"}", 500, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk");
    m = msg(big);
    assert_int_equal(trigger_eval(p, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_true(strlen(jobs[0].key) <= 256);
    assert_int_equal(strncmp(jobs[0].key, "trig:p:sha256:", 14), 0);
    trig_jobs_free(jobs, n);
    trigger_destroy(t);
    trigger_destroy(q);
    trigger_destroy(p);
}

static void test_decision(void **state)
{
    trigger_t *t = parse_ok("{\"name\": \"ap\", \"stream\": \"S\", \"consumer\": \"c\","
                            " \"subject\": \"a.b\", \"action\": \"approve\","
                            " \"execution\": \"$.msg.data.exec\", \"step\": \"sign_off\","
                            " \"inputs\": {\"ok\": \"$.msg.data.ok\"}}");
    trig_msg_t m = msg("{\"exec\": \"e-1\", \"ok\": true}");
    trig_job_t *jobs;
    size_t n;
    char reason[200];
    (void)state;
    assert_int_equal(t->act, TRIG_ACT_APPROVE);
    assert_int_equal(trigger_eval(t, &m, &jobs, &n, reason, sizeof(reason)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].execution, "e-1");
    assert_string_equal(jobs[0].step, "sign_off");
    assert_null(jobs[0].signal);
    assert_string_equal(jobs[0].inputs, "{\"ok\":true}");
    trig_jobs_free(jobs, n);
    expect_poison(t, msg("{\"ok\": true}"), "$.msg.data.exec: not found");
    expect_poison(t, msg("{\"exec\": {}, \"ok\": true}"), "execution $.msg.data.exec: must be");
    trigger_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_for_each),  cmocka_unit_test(test_poison),
        cmocka_unit_test(test_keys),      cmocka_unit_test(test_decision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
