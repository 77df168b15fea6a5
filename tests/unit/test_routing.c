/*
 * test_routing.c - diverge rules, loops, skips and branches through the pure
 * reducer and decider, on scripted histories: each action on results and on
 * errors, loop limits with attempts that keep growing, the retry policy
 * counting within an iteration, skip propagation and joins, every branch
 * operator; and after each, the state rebuilt from the encoded events (and
 * from a snapshot) equals the live state byte for byte.
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

#define MAXEV 512

static int64_t now_us = 1000000;

typedef struct script {
    bp_blueprint_t *bp;
    st_exec_t st;
    char *types[MAXEV];
    char *payloads[MAXEV];
    int64_t at[MAXEV];
    size_t n;
} script_t;

static void record_and_apply(script_t *s, eng_event_t *ev)
{
    ev->seq = s->st.seq + 1;
    ev->at_us = now_us;
    assert_true(s->n < MAXEV);
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
    cbm_error_t err = {0};
    memset(s, 0, sizeof(*s));
    if (bp_parse_json(bp_json, strlen(bp_json), &s->bp, &err) != 0)
        fail_msg("blueprint did not parse: %s", err.message);
    assert_int_equal(st_init(&s->st, "00000000-0000-4000-8000-000000000002", s->bp), 0);
    ev.type = EV_EXECUTION_STARTED;
    ev.step = -1;
    ev.blueprint = strdup(s->bp->name);
    ev.version = strdup(s->bp->version);
    ev.json = strdup(inputs);
    record_and_apply(s, &ev);
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

/* Run the decider once, apply its events; "Type:step,..." */
static void expect_decide(script_t *s, const char *want)
{
    eng_event_t out[64];
    size_t n = 0;
    char buf[2048] = "";
    assert_int_equal(dc_decide(&s->st, now_us, out, 64, &n), 0);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) strcat(buf, ",");
        strcat(buf, ev_type_name(out[i].type));
        if (out[i].step >= 0) {
            strcat(buf, ":");
            strcat(buf, s->bp->steps[out[i].step].name);
        }
        record_and_apply(s, &out[i]);
    }
    assert_string_equal(buf, want);
}

static void outcome(script_t *s, const char *step, ev_type_t type, const char *json)
{
    eng_event_t ev = {0};
    ev.type = type;
    ev.step = bp_step_index(s->bp, step);
    assert_true(ev.step >= 0);
    ev.attempt = s->st.steps[ev.step].attempt;
    ev.json = json_normalize(json);
    assert_non_null(ev.json);
    record_and_apply(s, &ev);
}

static void done(script_t *s, const char *step, const char *result)
{
    outcome(s, step, EV_STEP_COMPLETED, result);
}

static void failed(script_t *s, const char *step, const char *kind, int retryable)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"kind\":\"%s\",\"message\":\"m\",\"retryable\":%s}", kind,
             retryable ? "true" : "false");
    outcome(s, step, EV_STEP_FAILED, buf);
}

static const char *last_payload(script_t *s, const char *type)
{
    for (size_t i = s->n; i-- > 0;)
        if (strcmp(s->types[i], type) == 0) return s->payloads[i];
    fail_msg("no %s in the history", type);
    return NULL;
}

static int attempt_of(script_t *s, const char *step)
{
    return s->st.steps[bp_step_index(s->bp, step)].attempt;
}

static const char *status_of(script_t *s, const char *step)
{
    static const char *names[] = {"pending", "scheduled", "waiting", "backoff",
                                  "completed", "failed", "skipped"};
    return names[s->st.steps[bp_step_index(s->bp, step)].status];
}

static void expect_rebuild_equal(script_t *s)
{
    st_exec_t re;
    char *live = st_to_json(&s->st), *rebuilt;
    assert_int_equal(st_init(&re, s->st.id, s->bp), 0);
    for (size_t i = 0; i < s->n; i++) {
        eng_event_t ev;
        cbm_error_t err = {0};
        if (ev_decode(s->types[i], s->payloads[i], (int64_t)i + 1, s->at[i], s->bp, &ev, &err))
            fail_msg("decode %s %s: %s", s->types[i], s->payloads[i], err.message);
        assert_int_equal(st_apply(&re, &ev), 0);
        ev_finish(&ev);
    }
    rebuilt = st_to_json(&re);
    assert_string_equal(rebuilt, live);
    free(rebuilt);
    st_finish(&re);
    assert_int_equal(st_init(&re, s->st.id, s->bp), 0);
    assert_int_equal(st_from_json(&re, live), 0);
    rebuilt = st_to_json(&re);
    assert_string_equal(rebuilt, live);
    free(live);
    free(rebuilt);
    st_finish(&re);
}

/* ---------------------------------------------------------------- diverge */

static const char *REVIEW =
    "{\"name\":\"review\",\"steps\":["
    "{\"name\":\"generate\"},"
    "{\"name\":\"check\",\"depends_on\":[\"generate\"],\"diverge\":["
    "{\"match\":{\"verdict\":\"revise\"},\"action\":\"back_to\",\"target\":\"generate\","
    "\"max_iterations\":2}]},"
    "{\"name\":\"publish\",\"depends_on\":[\"check\"]}]}";

/* back_to re-opens the target and everything after it; attempts keep
 * growing; the third match fails with loop_limit. */
static void test_back_to_and_loop_limit(void **state)
{
    script_t s;
    (void)state;
    script_init(&s, REVIEW, "{}");
    expect_decide(&s, "StepScheduled:generate");
    for (int it = 1; it <= 2; it++) {
        done(&s, "generate", "{\"text\":\"draft\"}");
        expect_decide(&s, "StepScheduled:check");
        done(&s, "check", "{\"verdict\":\"revise\"}");
        expect_decide(&s, "DivergeTaken:check");
        assert_string_equal(status_of(&s, "generate"), "pending");
        assert_string_equal(status_of(&s, "check"), "pending");
        assert_null(s.st.steps[0].result);
        expect_decide(&s, "StepScheduled:generate");
        assert_int_equal(attempt_of(&s, "generate"), it + 1);
        expect_rebuild_equal(&s);
    }
    assert_non_null(strstr(last_payload(&s, "DivergeTaken"),
                           "\"rule\":0,\"on\":\"result\",\"action\":\"back_to\",\"target\":"
                           "\"generate\",\"iteration\":2,\"reopened\":[\"generate\",\"check\","
                           "\"publish\"]"));
    done(&s, "generate", "{}");
    expect_decide(&s, "StepScheduled:check");
    assert_int_equal(attempt_of(&s, "check"), 3);
    done(&s, "check", "{\"verdict\":\"revise\"}");
    expect_decide(&s, "ExecutionFailed");
    assert_non_null(strstr(s.st.error, "\"kind\":\"loop_limit\""));
    assert_non_null(strstr(s.st.error, "\"step\":\"check\""));
    expect_rebuild_equal(&s);
    script_finish(&s);

    /* The same loop that passes on the second round goes on to publish. */
    script_init(&s, REVIEW, "{}");
    expect_decide(&s, "StepScheduled:generate");
    done(&s, "generate", "1");
    expect_decide(&s, "StepScheduled:check");
    done(&s, "check", "{\"verdict\":\"revise\"}");
    expect_decide(&s, "DivergeTaken:check");
    expect_decide(&s, "StepScheduled:generate");
    done(&s, "generate", "2");
    expect_decide(&s, "StepScheduled:check");
    done(&s, "check", "{\"verdict\":\"ok\"}");
    expect_decide(&s, "StepScheduled:publish");
    done(&s, "publish", "3");
    expect_decide(&s, "ExecutionCompleted");
    assert_string_equal(s.st.result, "{\"publish\":3}");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* retry on a result: the step alone (and its dependents) run again. */
static void test_retry_on_result(void **state)
{
    script_t s;
    (void)state;
    script_init(&s,
                "{\"name\":\"poll\",\"timeline\":[{\"name\":\"poll\",\"diverge\":[{\"match\":"
                "{\"status\":\"pending\"},\"action\":\"retry\",\"max_iterations\":3}]},\"use\"]}",
                "{}");
    expect_decide(&s, "StepScheduled:poll");
    for (int i = 0; i < 3; i++) {
        done(&s, "poll", "{\"status\":\"pending\",\"n\":1}");
        expect_decide(&s, "DivergeTaken:poll");
        expect_decide(&s, "StepScheduled:poll");
    }
    assert_int_equal(attempt_of(&s, "poll"), 4);
    assert_int_equal(s.st.steps[0].iters[0], 3);
    done(&s, "poll", "{\"status\":\"ready\"}");
    expect_decide(&s, "StepScheduled:use");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* The retry policy counts attempts within an iteration; a retry rule on the
 * error gives a fresh set of attempts. */
static void test_retry_policy_within_iteration(void **state)
{
    script_t s;
    (void)state;
    script_init(&s,
                "{\"name\":\"r\",\"timeline\":[{\"name\":\"a\",\"retry\":{\"max_attempts\":2,"
                "\"initial_ms\":10},\"diverge\":[{\"match\":{\"kind\":\"flaky\"},\"on\":\"error\","
                "\"action\":\"retry\",\"max_iterations\":1}]}]}",
                "{}");
    expect_decide(&s, "StepScheduled:a");
    failed(&s, "a", "flaky", 1);
    expect_decide(&s, "StepRetryScheduled:a");
    assert_non_null(st_timer_find(&s.st, "retry:a"));
    /* Its back-off is the first one of the policy. */
    assert_int_equal(st_timer_find(&s.st, "retry:a")->due_us, now_us + 10000);
    {
        eng_event_t ev = {0};
        ev.type = EV_TIMER_FIRED;
        ev.step = -1;
        ev.name = strdup("retry:a");
        record_and_apply(&s, &ev);
    }
    expect_decide(&s, "StepScheduled:a");
    failed(&s, "a", "flaky", 1);
    /* Policy used up (2 attempts): the error rule retries the step. */
    expect_decide(&s, "DivergeTaken:a");
    assert_int_equal(s.st.steps[0].base, 2);
    expect_decide(&s, "StepScheduled:a");
    assert_int_equal(attempt_of(&s, "a"), 3);
    failed(&s, "a", "flaky", 1);
    expect_decide(&s, "StepRetryScheduled:a"); /* attempt 1 of this iteration failed */
    assert_int_equal(st_timer_find(&s.st, "retry:a")->due_us, now_us + 10000);
    expect_rebuild_equal(&s);
    {
        eng_event_t ev = {0};
        ev.type = EV_TIMER_FIRED;
        ev.step = -1;
        ev.name = strdup("retry:a");
        record_and_apply(&s, &ev);
    }
    expect_decide(&s, "StepScheduled:a");
    assert_int_equal(attempt_of(&s, "a"), 4);
    failed(&s, "a", "flaky", 1);
    expect_decide(&s, "ExecutionFailed"); /* the rule's one iteration is spent */
    assert_non_null(strstr(s.st.error, "loop_limit"));
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* skip_to: the steps between are skipped, the target runs with null deps. */
static void test_skip_to(void **state)
{
    script_t s;
    char *in;
    (void)state;
    script_init(&s,
                "{\"name\":\"sk\",\"steps\":[{\"name\":\"a\",\"diverge\":[{\"match\":{\"cached\":"
                "true},\"action\":\"skip_to\",\"target\":\"d\"}]},"
                "{\"name\":\"b\",\"depends_on\":[\"a\"]},{\"name\":\"c\",\"depends_on\":[\"b\"]},"
                "{\"name\":\"d\",\"depends_on\":[\"c\"]},{\"name\":\"side\",\"depends_on\":[\"a\"]},"
                "{\"name\":\"after_b\",\"depends_on\":[\"b\"]}]}",
                "{}");
    expect_decide(&s, "StepScheduled:a");
    done(&s, "a", "{\"cached\":true}");
    expect_decide(&s, "DivergeTaken:a");
    /* b and c are between; after_b only follows b, so it is skipped with it;
     * side is another dependent of a: not affected. */
    assert_non_null(strstr(last_payload(&s, "DivergeTaken"),
                           "\"action\":\"skip_to\",\"target\":\"d\",\"skipped\":[\"b\",\"c\","
                           "\"after_b\"]"));
    expect_decide(&s, "StepScheduled:d,StepScheduled:side");
    in = dc_step_input(&s.st, 3);
    assert_string_equal(in, "{\"inputs\":{},\"deps\":{\"c\":null}}");
    free(in);
    done(&s, "d", "4");
    done(&s, "side", "5");
    expect_decide(&s, "ExecutionCompleted");
    /* Skipped sinks are in the result, as null. */
    assert_string_equal(s.st.result, "{\"d\":4,\"side\":5,\"after_b\":null}");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* fail on a result and on an error; continue on an error. */
static void test_fail_and_continue(void **state)
{
    script_t s;
    const char *bp =
        "{\"name\":\"fc\",\"timeline\":[{\"name\":\"a\",\"diverge\":["
        "{\"match\":{\"bad\":true},\"action\":\"fail\"},"
        "{\"match\":{\"kind\":\"validation\"},\"on\":\"error\",\"action\":\"fail\"},"
        "{\"match\":{\"kind\":\"soft\"},\"on\":\"error\",\"action\":\"continue\"},"
        "{\"match\":\"_\",\"action\":\"continue\"}]},\"b\"]}";
    (void)state;
    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:a");
    done(&s, "a", "{\"bad\":true}");
    expect_decide(&s, "DivergeTaken:a,ExecutionFailed");
    assert_non_null(strstr(s.st.error, "\"kind\":\"diverge_fail\""));
    expect_rebuild_equal(&s);
    script_finish(&s);

    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:a");
    failed(&s, "a", "validation", 0);
    expect_decide(&s, "DivergeTaken:a,ExecutionFailed");
    assert_string_equal(s.st.error, "{\"step\":\"a\",\"kind\":\"validation\",\"message\":\"m\"}");
    script_finish(&s);

    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:a");
    failed(&s, "a", "soft", 0);
    expect_decide(&s, "DivergeTaken:a");
    assert_string_equal(status_of(&s, "a"), "completed");
    assert_string_equal(s.st.steps[0].result, "{\"kind\":\"soft\",\"message\":\"m\",\"retryable\":false}");
    expect_decide(&s, "StepScheduled:b");
    expect_rebuild_equal(&s);
    script_finish(&s);

    /* An error no rule takes fails as without rules; a continue on a result
     * is recorded and goes on. */
    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:a");
    failed(&s, "a", "other", 0);
    expect_decide(&s, "ExecutionFailed");
    script_finish(&s);
    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:a");
    done(&s, "a", "{\"fine\":1}");
    expect_decide(&s, "DivergeTaken:a");
    expect_decide(&s, "StepScheduled:b");
    script_finish(&s);
}

/* ----------------------------------------------------------------- branch */

static const char *BRANCH =
    "{\"name\":\"br\",\"steps\":["
    "{\"name\":\"check\",\"branch\":["
    "{\"when\":{\"path\":\"score\",\"op\":\">=\",\"value\":0.8},\"to\":\"ge\"},"
    "{\"when\":{\"path\":\"score\",\"op\":\">\",\"value\":0.5},\"to\":\"gt\"},"
    "{\"when\":{\"path\":\"score\",\"op\":\"<\",\"value\":0},\"to\":\"lt\"},"
    "{\"when\":{\"path\":\"score\",\"op\":\"<=\",\"value\":0.1},\"to\":\"le\"},"
    "{\"when\":{\"path\":\"tier\",\"op\":\"==\",\"value\":\"gold\"},\"to\":\"eq\"},"
    "{\"when\":{\"path\":\"tier\",\"op\":\"in\",\"value\":[\"x\",\"y\"]},\"to\":\"in\"},"
    "{\"when\":{\"path\":\"flags[0]\",\"op\":\"exists\"},\"to\":\"ex\"},"
    "{\"when\":{\"and\":[{\"path\":\"a\",\"op\":\"==\",\"value\":1},"
    "{\"or\":[{\"path\":\"b\",\"op\":\"==\",\"value\":1},{\"not\":{\"path\":\"c\",\"op\":\"exists\"}}]}]},"
    "\"to\":\"logic\"},"
    "{\"when\":{\"path\":\"tier\",\"op\":\"!=\",\"value\":\"none\"},\"to\":\"ne\"},"
    "{\"otherwise\":\"other\"}]},"
    "{\"name\":\"ge\",\"depends_on\":[\"check\"]},{\"name\":\"gt\",\"depends_on\":[\"check\"]},"
    "{\"name\":\"lt\",\"depends_on\":[\"check\"]},{\"name\":\"le\",\"depends_on\":[\"check\"]},"
    "{\"name\":\"eq\",\"depends_on\":[\"check\"]},{\"name\":\"in\",\"depends_on\":[\"check\"]},"
    "{\"name\":\"ex\",\"depends_on\":[\"check\"]},{\"name\":\"logic\",\"depends_on\":[\"check\"]},"
    "{\"name\":\"ne\",\"depends_on\":[\"check\"]},{\"name\":\"other\",\"depends_on\":[\"check\"]},"
    "{\"name\":\"always\",\"depends_on\":[\"check\"]}]}";

static void test_branch_operators(void **state)
{
    static const struct {
        const char *result, *to;
    } cases[] = {
        {"{\"score\":0.9}", "ge"},          {"{\"score\":0.8}", "ge"},
        {"{\"score\":0.6}", "gt"},          {"{\"score\":-1}", "lt"},
        {"{\"score\":0.1}", "le"},          {"{\"score\":\"0.9\",\"tier\":\"gold\"}", "eq"},
        {"{\"tier\":\"y\"}", "in"},         {"{\"flags\":[null]}", "ex"},
        {"{\"a\":1,\"c\":0,\"b\":1}", "logic"}, {"{\"a\":1}", "logic"},
        {"{\"a\":1,\"c\":0,\"tier\":\"z\"}", "ne"}, {"{\"tier\":\"none\"}", "other"},
        {"[]", "other"},                    {"{\"flags\":[]}", "other"},
    };
    (void)state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
        script_t s;
        char want[64], sched[512] = "";
        script_init(&s, BRANCH, "{}");
        expect_decide(&s, "StepScheduled:check");
        done(&s, "check", cases[k].result);
        expect_decide(&s, "BranchTaken:check");
        snprintf(want, sizeof(want), "\"to\":\"%s\"", cases[k].to);
        if (strstr(last_payload(&s, "BranchTaken"), want) == NULL)
            fail_msg("result %s: want %s, got %s", cases[k].result, cases[k].to,
                     last_payload(&s, "BranchTaken"));
        /* The picked target and the step outside the choice run. */
        for (size_t i = 1; i < s.bp->nsteps; i++) {
            const char *name = s.bp->steps[i].name;
            bool runs = strcmp(name, cases[k].to) == 0 || strcmp(name, "always") == 0;
            assert_string_equal(status_of(&s, name), runs ? "pending" : "skipped");
            if (runs) {
                if (*sched) strcat(sched, ",");
                strcat(sched, "StepScheduled:");
                strcat(sched, name);
            }
        }
        expect_decide(&s, sched);
        expect_rebuild_equal(&s);
        script_finish(&s);
    }
}

/* No entry holds and there is no otherwise: every target is skipped. A join
 * after both arms runs after the one that ran; a chain behind the arm not
 * taken is skipped step by step; a join of two skipped arms is skipped. */
static void test_branch_skips_and_joins(void **state)
{
    const char *bp =
        "{\"name\":\"j\",\"steps\":["
        "{\"name\":\"c\",\"branch\":[{\"when\":{\"path\":\"go\",\"op\":\"==\",\"value\":\"x\"},"
        "\"to\":\"x\"},{\"when\":{\"path\":\"go\",\"op\":\"==\",\"value\":\"y\"},\"to\":\"y\"}]},"
        "{\"name\":\"x\",\"depends_on\":[\"c\"]},{\"name\":\"y\",\"depends_on\":[\"c\"]},"
        "{\"name\":\"y2\",\"depends_on\":[\"y\"]},{\"name\":\"y3\",\"depends_on\":[\"y2\"]},"
        "{\"name\":\"join\",\"depends_on\":[\"x\",\"y3\"]}]}";
    script_t s;
    char *in;
    (void)state;
    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:c");
    done(&s, "c", "{\"go\":\"x\"}");
    expect_decide(&s, "BranchTaken:c");
    assert_non_null(strstr(last_payload(&s, "BranchTaken"),
                           "{\"step\":\"c\",\"entry\":0,\"to\":\"x\",\"skipped\":[\"y\",\"y2\","
                           "\"y3\"]}"));
    expect_decide(&s, "StepScheduled:x");
    done(&s, "x", "\"X\"");
    expect_decide(&s, "StepScheduled:join");
    in = dc_step_input(&s.st, 5);
    assert_string_equal(in, "{\"inputs\":{},\"deps\":{\"x\":\"X\",\"y3\":null}}");
    free(in);
    done(&s, "join", "1");
    expect_decide(&s, "ExecutionCompleted");
    expect_rebuild_equal(&s);
    script_finish(&s);

    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:c");
    done(&s, "c", "{\"go\":\"nowhere\"}");
    expect_decide(&s, "BranchTaken:c");
    assert_non_null(strstr(last_payload(&s, "BranchTaken"),
                           "{\"step\":\"c\",\"entry\":null,\"to\":null,\"skipped\":[\"x\",\"y\","
                           "\"y2\",\"y3\",\"join\"]}"));
    expect_decide(&s, "ExecutionCompleted");
    assert_string_equal(s.st.result, "{\"join\":null}");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* A loop that goes back over a branch re-opens the arm it skipped. */
static void test_loop_over_branch(void **state)
{
    const char *bp =
        "{\"name\":\"lb\",\"steps\":["
        "{\"name\":\"gen\"},"
        "{\"name\":\"check\",\"depends_on\":[\"gen\"],\"branch\":[{\"when\":{\"path\":\"ok\","
        "\"op\":\"==\",\"value\":true},\"to\":\"pub\"},{\"otherwise\":\"esc\"}]},"
        "{\"name\":\"pub\",\"depends_on\":[\"check\"]},"
        "{\"name\":\"esc\",\"depends_on\":[\"check\"],\"diverge\":[{\"match\":{\"again\":true},"
        "\"action\":\"back_to\",\"target\":\"gen\",\"max_iterations\":5}]},"
        "{\"name\":\"notify\",\"depends_on\":[\"pub\",\"esc\"]}]}";
    script_t s;
    (void)state;
    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:gen");
    done(&s, "gen", "1");
    expect_decide(&s, "StepScheduled:check");
    done(&s, "check", "{\"ok\":false}");
    expect_decide(&s, "BranchTaken:check");
    expect_decide(&s, "StepScheduled:esc");
    assert_string_equal(status_of(&s, "pub"), "skipped");
    done(&s, "esc", "{\"again\":true}");
    expect_decide(&s, "DivergeTaken:esc");
    assert_string_equal(status_of(&s, "pub"), "pending");
    expect_decide(&s, "StepScheduled:gen");
    assert_int_equal(attempt_of(&s, "gen"), 2);
    expect_rebuild_equal(&s);
    done(&s, "gen", "2");
    expect_decide(&s, "StepScheduled:check");
    done(&s, "check", "{\"ok\":true}");
    expect_decide(&s, "BranchTaken:check");
    expect_decide(&s, "StepScheduled:pub");
    assert_string_equal(status_of(&s, "esc"), "skipped");
    done(&s, "pub", "\"P\"");
    expect_decide(&s, "StepScheduled:notify");
    done(&s, "notify", "\"N\"");
    expect_decide(&s, "ExecutionCompleted");
    assert_string_equal(s.st.result, "{\"notify\":\"N\"}");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* Re-opening abandons a running parallel step and clears its timers; its
 * late outcome is for an attempt the state no longer runs. */
static void test_reopen_running_sibling(void **state)
{
    const char *bp =
        "{\"name\":\"par\",\"steps\":[{\"name\":\"a\"},"
        "{\"name\":\"fast\",\"depends_on\":[\"a\"],\"diverge\":[{\"match\":\"again\","
        "\"action\":\"back_to\",\"target\":\"a\",\"max_iterations\":1}]},"
        "{\"name\":\"slow\",\"depends_on\":[\"a\"],\"timeout_ms\":5000}]}";
    script_t s;
    eng_event_t ev = {0};
    (void)state;
    script_init(&s, bp, "{}");
    expect_decide(&s, "StepScheduled:a");
    done(&s, "a", "1");
    expect_decide(&s, "StepScheduled:fast,StepScheduled:slow");
    assert_non_null(st_timer_find(&s.st, "timeout:slow"));
    done(&s, "fast", "\"again\"");
    expect_decide(&s, "DivergeTaken:fast");
    assert_null(st_timer_find(&s.st, "timeout:slow"));
    assert_string_equal(status_of(&s, "slow"), "pending");
    /* The old attempt of slow cannot complete now. */
    ev.type = EV_STEP_COMPLETED;
    ev.step = 2;
    ev.attempt = 1;
    ev.seq = s.st.seq + 1;
    assert_int_equal(st_apply(&s.st, &ev), CBM_EINVAL);
    expect_decide(&s, "StepScheduled:a");
    done(&s, "a", "2");
    expect_decide(&s, "StepScheduled:fast,StepScheduled:slow");
    assert_int_equal(attempt_of(&s, "slow"), 2);
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* Routing events that do not fit the blueprint are refused when decoded,
 * and ones that do not fit the state when applied. */
static void test_bad_routing_events(void **state)
{
    script_t s;
    eng_event_t ev;
    cbm_error_t err = {0};
    (void)state;
    script_init(&s, REVIEW, "{}");
    assert_int_equal(ev_decode("DivergeTaken", "{\"step\":\"check\",\"rule\":3,\"action\":\"back_to\"}",
                               2, 0, s.bp, &ev, &err), CBM_EJSON);
    assert_non_null(strstr(err.message, "no diverge rule"));
    assert_int_equal(ev_decode("DivergeTaken", "{\"step\":\"check\",\"rule\":0,\"action\":\"fail\"}",
                               2, 0, s.bp, &ev, &err), CBM_EJSON);
    assert_non_null(strstr(err.message, "action"));
    assert_int_equal(ev_decode("DivergeTaken", "{\"step\":\"check\",\"rule\":0,\"action\":"
                               "\"back_to\",\"target\":\"generate\",\"iteration\":1,"
                               "\"reopened\":[\"zz\"]}", 2, 0, s.bp, &ev, &err), CBM_EJSON);
    assert_int_equal(ev_decode("BranchTaken", "{\"step\":\"check\",\"entry\":0,\"to\":null,"
                               "\"skipped\":[]}", 2, 0, s.bp, &ev, &err), CBM_EJSON);
    /* Well formed, but check has not completed. */
    assert_int_equal(ev_decode("DivergeTaken", "{\"step\":\"check\",\"rule\":0,\"action\":"
                               "\"back_to\",\"target\":\"generate\",\"iteration\":1,"
                               "\"reopened\":[\"generate\"]}", 2, 0, s.bp, &ev, &err), 0);
    assert_int_equal(st_apply(&s.st, &ev), CBM_EINVAL);
    ev_finish(&ev);
    script_finish(&s);
}

/* ------------------------------------------------------------ sub-workflows */

static void child_done(script_t *s, const char *step, const char *status, const char *json)
{
    eng_event_t ev = {0};
    int i = bp_step_index(s->bp, step);
    ev.type = EV_CHILD_COMPLETED;
    ev.step = i;
    ev.attempt = s->st.steps[i].attempt;
    ev.name = strdup(s->st.steps[i].child);
    ev.text = strdup(status);
    ev.json = json_normalize(json);
    record_and_apply(s, &ev);
}

/* A subworkflow step starts a child named by (parent, step, attempt), with
 * inputs from its template, waits for it (the parent can hibernate), and
 * takes its result; a failed child is a failed step, so retry and diverge
 * apply, and the next attempt is a new child. */
static void test_subworkflow_step(void **state)
{
    const char *bp =
        "{\"name\":\"parent\",\"steps\":[{\"name\":\"gen\"},"
        "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"kid\",\"depends_on\":[\"gen\"],"
        "\"inputs\":{\"draft\":\"$.deps.gen.text\",\"n\":\"$.inputs.n\",\"fixed\":true},"
        "\"retry\":{\"max_attempts\":2,\"initial_ms\":5},"
        "\"diverge\":[{\"match\":{\"kind\":\"child_cancelled\"},\"on\":\"error\",\"action\":\"continue\"}]},"
        "{\"name\":\"use\",\"depends_on\":[\"sub\"]}]}";
    script_t s;
    char id1[37], id2[37];
    eng_event_t ev = {0};
    (void)state;
    script_init(&s, bp, "{\"n\":7}");
    expect_decide(&s, "StepScheduled:gen");
    done(&s, "gen", "{\"text\":\"hello\"}");
    expect_decide(&s, "ChildStarted:sub");
    dc_child_id(s.st.id, "sub", 1, id1);
    assert_string_equal(s.st.steps[1].child, id1);
    assert_int_equal(id1[14], '8'); /* a version 8 UUID */
    assert_non_null(strstr(last_payload(&s, "ChildStarted"),
                           "\"blueprint\":\"kid\",\"version\":null,\"inputs\":{\"draft\":\"hello\","
                           "\"fixed\":true,\"n\":7}"));
    assert_string_equal(st_projection_status(&s.st), "awaiting_child");
    assert_true(st_only_waiting(&s.st));
    expect_decide(&s, "");
    expect_rebuild_equal(&s);
    /* A completion of another child, or another attempt, is refused. */
    ev.type = EV_CHILD_COMPLETED;
    ev.step = 1;
    ev.attempt = 1;
    ev.seq = s.st.seq + 1;
    ev.name = strdup("00000000-0000-8000-8000-000000000000");
    ev.text = strdup("completed");
    assert_int_equal(st_apply(&s.st, &ev), CBM_EINVAL);
    ev_finish(&ev);
    /* The child failed: the step fails and is retried with a new child. */
    child_done(&s, "sub", "failed", "{\"step\":\"x\",\"kind\":\"boom\",\"message\":\"m\"}");
    assert_non_null(strstr(s.st.steps[1].error, "\"kind\":\"child_failed\""));
    expect_decide(&s, "StepRetryScheduled:sub");
    {
        eng_event_t f = {0};
        f.type = EV_TIMER_FIRED;
        f.step = -1;
        f.name = strdup("retry:sub");
        record_and_apply(&s, &f);
    }
    expect_decide(&s, "ChildStarted:sub");
    dc_child_id(s.st.id, "sub", 2, id2);
    assert_string_equal(s.st.steps[1].child, id2);
    assert_string_not_equal(id1, id2);
    child_done(&s, "sub", "completed", "{\"review\":{\"ok\":true}}");
    expect_decide(&s, "StepScheduled:use");
    expect_rebuild_equal(&s);
    script_finish(&s);

    /* A cancelled child: child_cancelled, which a rule here continues on. */
    script_init(&s, bp, "{\"n\":1}");
    expect_decide(&s, "StepScheduled:gen");
    done(&s, "gen", "{}");
    expect_decide(&s, "ChildStarted:sub");
    child_done(&s, "sub", "cancelled", "{\"step\":\"\",\"kind\":\"cancelled\",\"message\":\"\"}");
    expect_decide(&s, "DivergeTaken:sub");
    assert_non_null(strstr(s.st.steps[1].result, "child_cancelled"));
    expect_decide(&s, "StepScheduled:use");
    expect_rebuild_equal(&s);
    script_finish(&s);
}

/* The child:<step> timer: due a second after ChildStarted, re-armed on
 * each firing for as long as the child has run (doubling, up to a minute),
 * cleared by the outcome. A child's ExecutionStarted names its parent; both
 * survive a rebuild and a snapshot. */
static void test_child_timer_and_parent(void **state)
{
    const char *bp = "{\"name\":\"p\",\"steps\":[{\"name\":\"sub\",\"kind\":\"subworkflow\","
                     "\"blueprint\":\"kid\"}]}";
    int64_t t0 = now_us, want[] = {1, 1, 2, 4, 8, 16, 32, 60, 60};
    const st_timer_t *t;
    script_t s;
    eng_event_t ev = {0};
    (void)state;
    script_init(&s, bp, "{}");
    expect_decide(&s, "ChildStarted:sub");
    assert_non_null(t = st_timer_find(&s.st, "child:sub"));
    assert_int_equal(t->due_us, t0 + 1000000);
    for (size_t k = 1; k < sizeof(want) / sizeof(*want); k++) {
        ev.type = EV_TIMER_FIRED;
        ev.step = -1;
        ev.name = strdup("child:sub");
        now_us = st_timer_find(&s.st, "child:sub")->due_us;
        record_and_apply(&s, &ev);
        assert_non_null(t = st_timer_find(&s.st, "child:sub"));
        assert_int_equal(t->due_us - now_us, want[k] * 1000000);
        assert_int_equal(s.st.steps[0].fired, 0);
    }
    assert_true(st_only_waiting(&s.st));
    expect_decide(&s, "");
    expect_rebuild_equal(&s);
    child_done(&s, "sub", "completed", "{\"x\":1}");
    assert_null(st_timer_find(&s.st, "child:sub"));
    expect_rebuild_equal(&s);
    script_finish(&s);
    now_us = t0;

    /* A child: its parent in ExecutionStarted, in the state, back again. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(bp_parse_json(bp, strlen(bp), &s.bp, NULL), 0);
    assert_int_equal(st_init(&s.st, "00000000-0000-8000-8000-000000000009", s.bp), 0);
    ev.type = EV_EXECUTION_STARTED;
    ev.step = -1;
    ev.blueprint = strdup("p");
    ev.version = strdup(s.bp->version);
    ev.json = strdup("{}");
    ev.name = strdup("00000000-0000-4000-8000-000000000002");
    ev.text = strdup("sub");
    ev.attempt = 3;
    record_and_apply(&s, &ev);
    assert_non_null(strstr(s.payloads[0], ",\"parent\":{\"execution_id\":"
                                          "\"00000000-0000-4000-8000-000000000002\","
                                          "\"step\":\"sub\",\"attempt\":3}}"));
    assert_string_equal(s.st.parent_id, "00000000-0000-4000-8000-000000000002");
    assert_string_equal(s.st.parent_step, "sub");
    assert_int_equal(s.st.parent_attempt, 3);
    expect_rebuild_equal(&s);
    script_finish(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_timer_and_parent),
        cmocka_unit_test(test_back_to_and_loop_limit),
        cmocka_unit_test(test_retry_on_result),
        cmocka_unit_test(test_retry_policy_within_iteration),
        cmocka_unit_test(test_skip_to),
        cmocka_unit_test(test_fail_and_continue),
        cmocka_unit_test(test_branch_operators),
        cmocka_unit_test(test_branch_skips_and_joins),
        cmocka_unit_test(test_loop_over_branch),
        cmocka_unit_test(test_reopen_running_sibling),
        cmocka_unit_test(test_bad_routing_events),
        cmocka_unit_test(test_subworkflow_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
