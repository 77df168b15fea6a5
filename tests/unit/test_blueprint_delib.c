/*
 * test_blueprint_delib.c - the fields of a deliberation step: parsing,
 * defaults, the canonical form (golden strings), validation messages, the
 * references of its templates, the call count and the budget check
 * (docs/deliberation.md, docs/blueprints.md "deliberation").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/delib.h"
#include "tests/unit/bp_fixtures.h"

/* A blueprint of one deliberation step 'd' with council and task, and the
 * given extra fields (each starting with a comma). */
#define DELIB(fields)                                                                      \
    "{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\",\"council\":\"dev\"," \
    "\"task\":\"$.inputs.task\"" fields "}]}"

#define RETRY1 "{\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,\"non_retryable\":[]}"

static void test_delib_defaults(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(DELIB(""));
    const bp_delib_t *d = bp->steps[0].delib;
    assert_non_null(d);
    assert_string_equal(d->council, "dev");
    assert_null(d->council_version);
    assert_true(cJSON_IsString(d->task));
    assert_true(cJSON_IsNull(d->context));
    assert_int_equal(d->agents, 0);
    assert_int_equal(d->rounds, 1);
    assert_int_equal(d->topology, BP_TOPOLOGY_RING);
    assert_int_equal(d->scoring, BP_SCORING_JUDGE);
    assert_null(d->scoring_handler);
    assert_null(d->scoring_queue);
    assert_int_equal(d->rule, BP_SELECT_TOP_SCORE);
    assert_int_equal(d->top_k, 3);
    assert_int_equal(d->min_proposals, 1);
    assert_true(d->threshold < 0);
    assert_true(d->temperature < 0);
    assert_true(d->top_p < 0);
    assert_int_equal(d->max_tokens, 0);
    assert_null(d->response_format);
    assert_int_equal(d->call_timeout_ms, 0);
    assert_int_equal(d->call_heartbeat_timeout_ms, 0);
    assert_int_equal(d->call_retry.max_attempts, 1);
    assert_int_equal(d->max_calls, 0);
    assert_int_equal(d->max_completion_tokens, 0);
    assert_int_equal(d->budget_timeout_ms, 0);
    /* The step's own retry: none, as for every kind. */
    assert_int_equal(bp->steps[0].retry.max_attempts, 1);
    /* Every default written. */
    assert_string_equal(
        bp->canonical_json,
        "{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\",\"handler\":\"d\","
        "\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":" RETRY1 ","
        "\"council\":\"dev\",\"council_version\":null,\"task\":\"$.inputs.task\",\"context\":null,"
        "\"agents\":null,\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":\"judge\"},"
        "\"selection\":{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1},\"model\":{},"
        "\"call\":{\"timeout_ms\":0,\"heartbeat_timeout_ms\":0,\"retry\":" RETRY1 "},"
        "\"budget\":{\"max_calls\":null,\"max_completion_tokens\":null,\"timeout_ms\":0}}]}");
    bp_destroy(bp);
    assert_fixed_point(DELIB(""));
    /* Other kinds have no deliberation fields. */
    bp = parse_ok(STEP("\"kind\":\"approval\""));
    assert_null(bp->steps[0].delib);
    bp_destroy(bp);
}

/* The example of docs/deliberation.md §2. */
static const char *const doc_example =
    "{\"name\":\"feature\",\"inputs\":{\"task\":{\"type\":\"string\",\"required\":true}},"
    "\"steps\":[{\"name\":\"plan\"},"
    "{\"name\": \"deliberate\", \"kind\": \"deliberation\", \"depends_on\": [\"plan\"],\n"
    " \"council\": \"dev\", \"council_version\": null,\n"
    " \"task\": \"$.inputs.task\", \"context\": {\"plan\": \"$.deps.plan\"},\n"
    " \"agents\": 3, \"rounds\": 1, \"topology\": \"ring\",\n"
    " \"scoring\": {\"mode\": \"judge\"},\n"
    " \"selection\": {\"rule\": \"top_score\", \"top_k\": 3, \"min_proposals\": 2},\n"
    " \"model\": {\"temperature\": 0.7, \"max_tokens\": 1024},\n"
    " \"call\": {\"timeout_ms\": 300000, \"heartbeat_timeout_ms\": 30000,\n"
    "          \"retry\": {\"max_attempts\": 3, \"initial_ms\": 1000}},\n"
    " \"budget\": {\"max_calls\": 40, \"max_completion_tokens\": 50000, \"timeout_ms\": 1800000}}]}";

static void test_delib_doc_example(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(doc_example);
    const bp_delib_t *d = bp->steps[1].delib;
    assert_int_equal(d->agents, 3);
    assert_int_equal(d->min_proposals, 2);
    assert_true(d->temperature == 0.7);
    assert_int_equal(d->max_tokens, 1024);
    assert_int_equal(d->call_timeout_ms, 300000);
    assert_int_equal(d->call_heartbeat_timeout_ms, 30000);
    assert_int_equal(d->call_retry.max_attempts, 3);
    assert_int_equal(d->max_calls, 40);
    assert_int_equal(d->max_completion_tokens, 50000);
    assert_int_equal(d->budget_timeout_ms, 1800000);
    assert_contains(
        bp->canonical_json,
        "\"retry\":" RETRY1 ",\"council\":\"dev\",\"council_version\":null,"
        "\"task\":\"$.inputs.task\",\"context\":{\"plan\":\"$.deps.plan\"},\"agents\":3,"
        "\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":\"judge\"},\"selection\":{"
        "\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":2},\"model\":{\"temperature\":0.7,"
        "\"max_tokens\":1024},\"call\":{\"timeout_ms\":300000,\"heartbeat_timeout_ms\":30000,"
        "\"retry\":{\"max_attempts\":3,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,"
        "\"non_retryable\":[]}},\"budget\":{\"max_calls\":40,\"max_completion_tokens\":50000,"
        "\"timeout_ms\":1800000}}]}");
    bp_destroy(bp);
    assert_fixed_point(doc_example);
}

static void test_delib_every_field(void **state)
{
    (void)state;
    const char *json = DELIB(
        ",\"council_version\":\"" VERSION_A "\",\"context\":[1,{\"b\":\"$.inputs\",\"a\":null}],"
        "\"agents\":4,\"rounds\":0,\"topology\":\"none\","
        "\"scoring\":{\"mode\":\"handler\",\"handler\":\"lint and test\",\"queue\":\"ci\"},"
        "\"selection\":{\"rule\":\"threshold_first\",\"threshold\":0.8,\"top_k\":16,"
        "\"min_proposals\":4},"
        "\"model\":{\"top_p\":1,\"response_format\":{\"type\":\"json_schema\",\"b\":[1],\"a\":2},"
        "\"max_tokens\":1000000,\"temperature\":0},"
        "\"call\":{\"retry\":{\"max_attempts\":2,\"non_retryable\":[\"x\",\"a\",\"x\"]}},"
        "\"budget\":{\"max_calls\":8,\"timeout_ms\":5}");
    bp_blueprint_t *bp = parse_ok(json);
    const bp_delib_t *d = bp->steps[0].delib;
    assert_string_equal(d->council_version, VERSION_A);
    assert_int_equal(d->agents, 4);
    assert_int_equal(d->rounds, 0);
    assert_int_equal(d->topology, BP_TOPOLOGY_NONE);
    assert_int_equal(d->scoring, BP_SCORING_HANDLER);
    assert_string_equal(d->scoring_handler, "lint and test");
    assert_string_equal(d->scoring_queue, "ci");
    assert_int_equal(d->rule, BP_SELECT_THRESHOLD_FIRST);
    assert_true(d->threshold == 0.8);
    assert_int_equal(d->top_k, 16);
    assert_int_equal(d->min_proposals, 4);
    assert_true(d->temperature == 0);
    assert_true(d->top_p == 1);
    assert_int_equal(d->max_tokens, 1000000);
    assert_int_equal(d->call_retry.n_non_retryable, 2);
    assert_int_equal(d->max_calls, 8);
    assert_string_equal(
        strstr(bp->canonical_json, "\"council\""),
        "\"council\":\"dev\",\"council_version\":\"" VERSION_A "\",\"task\":\"$.inputs.task\","
        "\"context\":[1,{\"a\":null,\"b\":\"$.inputs\"}],\"agents\":4,\"rounds\":0,"
        "\"topology\":\"none\",\"scoring\":{\"mode\":\"handler\",\"handler\":\"lint and test\","
        "\"queue\":\"ci\"},\"selection\":{\"rule\":\"threshold_first\",\"top_k\":16,"
        "\"min_proposals\":4,\"threshold\":0.8},\"model\":{\"temperature\":0,\"top_p\":1,"
        "\"max_tokens\":1000000,\"response_format\":{\"a\":2,\"b\":[1],\"type\":\"json_schema\"}},"
        "\"call\":{\"timeout_ms\":0,\"heartbeat_timeout_ms\":0,\"retry\":{\"max_attempts\":2,"
        "\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,\"non_retryable\":[\"a\",\"x\"]}},"
        "\"budget\":{\"max_calls\":8,\"max_completion_tokens\":null,\"timeout_ms\":5}}]}");
    bp_destroy(bp);
    assert_fixed_point(json);
    /* The fields of other kinds and the routing fields still apply. */
    assert_fixed_point("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"name\":\"d\",\"kind\":"
                       "\"deliberation\",\"depends_on\":[\"a\"],\"council\":\"c\",\"task\":"
                       "{\"t\":\"$.deps.a.text\"},\"diverge\":[{\"match\":{},\"on\":\"error\","
                       "\"action\":\"continue\"}],\"branch\":[{\"otherwise\":\"e\"}]},"
                       "{\"name\":\"e\",\"depends_on\":[\"d\"]}]}");
}

/* Equal meaning, equal version: defaults written or not. */
static void test_delib_versions(void **state)
{
    (void)state;
    assert_same_version(DELIB(""),
                        DELIB(",\"council_version\":null,\"context\":null,\"agents\":null,"
                              "\"rounds\":1,\"topology\":\"ring\",\"scoring\":{\"mode\":\"judge\"},"
                              "\"selection\":{\"rule\":\"top_score\",\"top_k\":3,\"min_proposals\":1},"
                              "\"model\":{},\"call\":{\"timeout_ms\":0,\"heartbeat_timeout_ms\":0,"
                              "\"retry\":{}},\"budget\":{\"max_calls\":null,"
                              "\"max_completion_tokens\":null,\"timeout_ms\":0}"));
    /* rounds: 0 is the default of topology none. */
    assert_same_version(DELIB(",\"topology\":\"none\""),
                        DELIB(",\"topology\":\"none\",\"rounds\":0"));
    assert_other_version(DELIB(",\"topology\":\"ring\",\"rounds\":0"), DELIB(""));
    /* scoring.queue defaults to local. */
    assert_same_version(DELIB(",\"scoring\":{\"mode\":\"handler\",\"handler\":\"h\"}"),
                        DELIB(",\"scoring\":{\"mode\":\"handler\",\"handler\":\"h\","
                              "\"queue\":\"local\"}"));
    /* Templates are canonical. */
    assert_same_version(DELIB(",\"context\":{\"b\":1,\"a\":[2]}"),
                        DELIB(",\"context\":{\"a\":[2.0],\"b\":1}"));
    assert_other_version(DELIB(",\"agents\":2"), DELIB(",\"agents\":3"));
    assert_other_version(DELIB(",\"model\":{\"temperature\":1}"), DELIB(""));
    assert_other_version(DELIB(",\"model\":{\"temperature\":1}"),
                         DELIB(",\"model\":{\"temperature\":1.5}"));
}

static void test_delib_errors(void **state)
{
    (void)state;
    /* What the kind needs. */
    expect_message(STEP("\"kind\":\"deliberation\",\"task\":\"t\""),
                   "step 'a': deliberation needs council");
    expect_message(STEP("\"kind\":\"deliberation\",\"council\":\"c\""),
                   "step 'a': deliberation needs task");
    expect_message(STEP("\"kind\":\"deliberation\""), "step 'a': deliberation needs council");
    /* Keys of the kind, on other kinds; keys of other kinds on it. */
    expect_message(STEP("\"council\":\"c\""), "step 'a': council is only for kind deliberation");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"b\",\"budget\":{}"),
                   "step 'a': budget is only for kind deliberation");
    expect_message(DELIB(",\"requires\":{}"), "step 'd': requires is only for kind task");
    expect_message(DELIB(",\"args\":{}"), "step 'd': args is only for kind task");
    expect_message(DELIB(",\"inputs\":{}"), "step 'd': inputs is only for kind subworkflow");
    expect_message(DELIB(",\"agent\":3"),
                   "step 'd': unknown key 'agent' (allowed: name, kind, handler, queue, "
                   "depends_on, timeout_ms, retry, council, council_version, task, context, "
                   "agents, rounds, topology, scoring, selection, model, call, budget, diverge, "
                   "branch)");
    expect_message(DELIB(",\"rounds\":1,\"rounds\":2"), "step 'd': duplicate key 'rounds'");
    /* council, council_version, task, context. */
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\","
                   "\"council\":\"a council\",\"task\":1}]}",
                   "step 'd': council 'a council' may only contain letters, digits, '_', '.' "
                   "and '-'");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\","
                   "\"council\":7,\"task\":1}]}",
                   "step 'd': council must be a non-empty string");
    expect_message(DELIB(",\"council_version\":\"abc\""),
                   "step 'd': council_version must be a council version (64 lowercase hex "
                   "digits) or null");
    expect_message(DELIB(",\"council_version\":1"),
                   "step 'd': council_version must be a council version (64 lowercase hex "
                   "digits) or null");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\","
                   "\"council\":\"c\",\"task\":null}]}",
                   "step 'd': task must not be null");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\","
                   "\"council\":\"c\",\"task\":{\"k\":1,\"k\":2}}]}",
                   "step 'd': task has a duplicate key 'k'");
    expect_message(DELIB(",\"context\":[1e999]"), "step 'd': context has a number out of range");
    /* agents, rounds, topology. */
    expect_message(DELIB(",\"agents\":0"), "step 'd': agents must be an integer from 1 to 16");
    expect_message(DELIB(",\"agents\":17"), "step 'd': agents must be an integer from 1 to 16");
    expect_message(DELIB(",\"agents\":2.5"), "step 'd': agents must be an integer from 1 to 16");
    expect_message(DELIB(",\"rounds\":6"), "step 'd': rounds must be an integer from 0 to 5");
    expect_message(DELIB(",\"rounds\":null"), "step 'd': rounds must be an integer from 0 to 5");
    expect_message(DELIB(",\"topology\":\"star\""),
                   "step 'd': topology must be none, ring or all_to_all");
    expect_message(DELIB(",\"topology\":\"none\",\"rounds\":2"),
                   "step 'd': topology none has no rounds (rounds is 2)");
    expect_message(DELIB(",\"agents\":1"),
                   "step 'd': topology ring needs at least 2 agents (agents is 1)");
    expect_message(DELIB(",\"agents\":1,\"topology\":\"all_to_all\",\"rounds\":0"),
                   "step 'd': topology all_to_all needs at least 2 agents (agents is 1)");
    bp_destroy(parse_ok(DELIB(",\"agents\":1,\"topology\":\"none\"")));
    /* scoring. */
    expect_message(DELIB(",\"scoring\":\"judge\""), "step 'd': scoring must be an object");
    expect_message(DELIB(",\"scoring\":{\"kind\":\"judge\"}"),
                   "step 'd': scoring: unknown key 'kind' (allowed: mode, handler, queue)");
    expect_message(DELIB(",\"scoring\":{\"mode\":\"peer\"}"),
                   "step 'd': scoring.mode must be judge, handler or none");
    expect_message(DELIB(",\"scoring\":{\"mode\":\"handler\"}"),
                   "step 'd': scoring.handler is required for mode handler");
    expect_message(DELIB(",\"scoring\":{\"handler\":\"h\"}"),
                   "step 'd': scoring.handler is only for mode handler");
    expect_message(DELIB(",\"scoring\":{\"mode\":\"none\",\"queue\":\"q\"}"),
                   "step 'd': scoring.queue is only for mode handler");
    expect_message(DELIB(",\"scoring\":{\"mode\":\"handler\",\"handler\":\"\"}"),
                   "step 'd': scoring.handler must be a non-empty string");
    expect_message(DELIB(",\"scoring\":{\"mode\":\"handler\",\"handler\":\"h\",\"queue\":\"a b\"}"),
                   "step 'd': scoring.queue 'a b' may only contain letters, digits, '_', '.' and "
                   "'-'");
    /* selection. */
    expect_message(DELIB(",\"selection\":[]"), "step 'd': selection must be an object");
    expect_message(DELIB(",\"selection\":{\"k\":1}"),
                   "step 'd': selection: unknown key 'k' (allowed: rule, top_k, min_proposals, "
                   "threshold)");
    expect_message(DELIB(",\"selection\":{\"rule\":\"best\"}"),
                   "step 'd': selection.rule must be top_score, threshold_first, approval or all");
    expect_message(DELIB(",\"selection\":{\"top_k\":0}"),
                   "step 'd': selection.top_k must be an integer from 1 to 16");
    expect_message(DELIB(",\"selection\":{\"min_proposals\":17}"),
                   "step 'd': selection.min_proposals must be an integer from 1 to 16");
    expect_message(DELIB(",\"selection\":{\"rule\":\"threshold_first\"}"),
                   "step 'd': selection.threshold is required for rule threshold_first");
    expect_message(DELIB(",\"selection\":{\"threshold\":0.5}"),
                   "step 'd': selection.threshold is only for rule threshold_first");
    expect_message(DELIB(",\"selection\":{\"rule\":\"threshold_first\",\"threshold\":1.5}"),
                   "step 'd': selection.threshold must be a number from 0 to 1");
    expect_message(DELIB(",\"selection\":{\"rule\":\"threshold_first\",\"threshold\":\"0.5\"}"),
                   "step 'd': selection.threshold must be a number from 0 to 1");
    expect_message(DELIB(",\"scoring\":{\"mode\":\"none\"}"),
                   "step 'd': selection rule top_score needs scoring (scoring.mode is none)");
    expect_message(DELIB(",\"scoring\":{\"mode\":\"none\"},\"selection\":{\"rule\":"
                         "\"threshold_first\",\"threshold\":0}"),
                   "step 'd': selection rule threshold_first needs scoring (scoring.mode is "
                   "none)");
    bp_destroy(parse_ok(DELIB(",\"scoring\":{\"mode\":\"none\"},\"selection\":{\"rule\":\"all\"}")));
    bp_destroy(parse_ok(DELIB(",\"scoring\":{\"mode\":\"none\"},\"selection\":{\"rule\":"
                              "\"approval\"}")));
    expect_message(DELIB(",\"agents\":3,\"selection\":{\"min_proposals\":4}"),
                   "step 'd': selection.min_proposals (4) must be at most agents (3)");
    bp_destroy(parse_ok(DELIB(",\"selection\":{\"min_proposals\":16}")));
    /* model. */
    expect_message(DELIB(",\"model\":\"gpt\""), "step 'd': model must be an object");
    expect_message(DELIB(",\"model\":{\"name\":\"gpt\"}"),
                   "step 'd': model: unknown key 'name' (allowed: temperature, top_p, max_tokens, "
                   "response_format)");
    expect_message(DELIB(",\"model\":{\"temperature\":2.5}"),
                   "step 'd': model.temperature must be a number from 0 to 2");
    expect_message(DELIB(",\"model\":{\"temperature\":-0.1}"),
                   "step 'd': model.temperature must be a number from 0 to 2");
    expect_message(DELIB(",\"model\":{\"top_p\":0}"),
                   "step 'd': model.top_p must be a number greater than 0 and at most 1");
    expect_message(DELIB(",\"model\":{\"top_p\":1.01}"),
                   "step 'd': model.top_p must be a number greater than 0 and at most 1");
    expect_message(DELIB(",\"model\":{\"max_tokens\":0}"),
                   "step 'd': model.max_tokens must be an integer from 1 to 1000000");
    expect_message(DELIB(",\"model\":{\"response_format\":\"json\"}"),
                   "step 'd': model.response_format must be an object");
    expect_message(DELIB(",\"model\":{\"response_format\":{\"a\":1,\"a\":1}}"),
                   "step 'd': model.response_format has a duplicate key 'a'");
    /* call. */
    expect_message(DELIB(",\"call\":1"), "step 'd': call must be an object");
    expect_message(DELIB(",\"call\":{\"deadline\":1}"),
                   "step 'd': call: unknown key 'deadline' (allowed: timeout_ms, "
                   "heartbeat_timeout_ms, retry)");
    expect_message(DELIB(",\"call\":{\"timeout_ms\":-1}"),
                   "step 'd': call.timeout_ms must be a non-negative integer");
    expect_message(DELIB(",\"call\":{\"heartbeat_timeout_ms\":315360000001}"),
                   "step 'd': call.heartbeat_timeout_ms must be at most 315360000000 (10 years)");
    expect_message(DELIB(",\"call\":{\"timeout_ms\":1000,\"heartbeat_timeout_ms\":2000}"),
                   "step 'd': call.heartbeat_timeout_ms (2000) must be at most call.timeout_ms "
                   "(1000)");
    expect_message(DELIB(",\"call\":{\"retry\":[]}"), "step 'd': call: retry must be an object");
    expect_message(DELIB(",\"call\":{\"retry\":{\"max_attempts\":0}}"),
                   "step 'd': call: retry.max_attempts must be an integer from 1 to 1000");
    expect_message(DELIB(",\"call\":{\"retry\":{\"tries\":2}}"),
                   "step 'd': call: retry: unknown key 'tries' (allowed: max_attempts, initial_ms, "
                   "max_ms, multiplier, non_retryable)");
    /* budget. */
    expect_message(DELIB(",\"budget\":null"), "step 'd': budget must be an object");
    expect_message(DELIB(",\"budget\":{\"calls\":1}"),
                   "step 'd': budget: unknown key 'calls' (allowed: max_calls, "
                   "max_completion_tokens, timeout_ms)");
    expect_message(DELIB(",\"budget\":{\"max_calls\":0}"),
                   "step 'd': budget.max_calls must be an integer from 1 to 100000");
    expect_message(DELIB(",\"budget\":{\"max_calls\":100001}"),
                   "step 'd': budget.max_calls must be an integer from 1 to 100000");
    expect_message(DELIB(",\"budget\":{\"max_completion_tokens\":1000000001}"),
                   "step 'd': budget.max_completion_tokens must be an integer from 1 to "
                   "1000000000");
    expect_message(DELIB(",\"budget\":{\"timeout_ms\":-5}"),
                   "step 'd': budget.timeout_ms must be a non-negative integer");
}

/* The generated blueprint's name must be a name. */
static void test_delib_child_name(void **state)
{
    (void)state;
    char json[1024], bpname[129], want[512];
    /* "_delib." + 100 + "." + 20 = 128: fine; one more is too long. */
    memset(bpname, 'b', 100);
    bpname[100] = '\0';
    snprintf(json, sizeof(json),
             "{\"name\":\"%s\",\"steps\":[{\"name\":\"dddddddddddddddddddd\",\"kind\":"
             "\"deliberation\",\"council\":\"c\",\"task\":1}]}",
             bpname);
    bp_destroy(parse_ok(json));
    snprintf(json, sizeof(json),
             "{\"name\":\"%s\",\"steps\":[{\"name\":\"ddddddddddddddddddddd\",\"kind\":"
             "\"deliberation\",\"council\":\"c\",\"task\":1}]}",
             bpname);
    snprintf(want, sizeof(want),
             "step 'ddddddddddddddddddddd': the name of the deliberation's blueprint, "
             "'_delib.%s.ddddddddddddddddddddd', would be longer than 128 characters",
             bpname);
    expect_message(json, want);
}

static void test_delib_templates(void **state)
{
    (void)state;
    /* References in task and context: dependencies and declared inputs. */
    bp_destroy(parse_ok("{\"name\":\"x\",\"inputs\":{\"task\":{},\"ctx\":{}},\"steps\":["
                        "{\"name\":\"plan\"},{\"name\":\"d\",\"kind\":\"deliberation\","
                        "\"depends_on\":[\"plan\"],\"council\":\"c\",\"task\":\"$.inputs.task\","
                        "\"context\":{\"p\":\"$.deps.plan.steps[0]\",\"c\":[\"$.inputs.ctx\","
                        "\"$.inputs\"]}}]}"));
    /* A literal task. */
    bp_destroy(parse_ok(DELIB(",\"context\":\"plain text, $5\"")));
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\","
                   "\"council\":\"c\",\"task\":\"$.foo\"}]}",
                   "step 'd': task: malformed reference '$.foo' (expected $.inputs or "
                   "$.deps.<step>, then an optional path)");
    expect_message(DELIB(",\"context\":{\"a\":[\"$.deps.\"]}"),
                   "step 'd': context: malformed reference '$.deps.' (expected $.inputs or "
                   "$.deps.<step>, then an optional path)");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"d\",\"kind\":\"deliberation\","
                   "\"council\":\"c\",\"task\":{\"t\":\"$.deps.plan\"}}]}",
                   "step 'd': task: reference '$.deps.plan' names unknown step 'plan'");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"plan\"},{\"name\":\"d\",\"kind\":"
                   "\"deliberation\",\"council\":\"c\",\"task\":1,\"context\":\"$.deps.plan\"}]}",
                   "step 'd': context: reference '$.deps.plan' names step 'plan', which 'd' does "
                   "not depend on");
    expect_message("{\"name\":\"x\",\"inputs\":{\"task\":{}},\"steps\":[{\"name\":\"d\",\"kind\":"
                   "\"deliberation\",\"council\":\"c\",\"task\":\"$.inputs.tsak\"}]}",
                   "step 'd': task: reference '$.inputs.tsak' names undeclared input 'tsak'");
    /* The subworkflow's messages are as they were. */
    expect_message("{\"name\":\"x\",\"inputs\":{},\"steps\":[{\"name\":\"s\",\"kind\":"
                   "\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{\"k\":\"$.inputs.t\"}}]}",
                   "step 's': inputs: reference '$.inputs.t' names undeclared input 't'");
}

static void test_delib_calls(void **state)
{
    (void)state;
    /* gen N; ring 2N per round; all_to_all N^2 per round; judge N. */
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_RING, 3, 1, BP_SCORING_JUDGE), 12);
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_RING, 3, 1, BP_SCORING_NONE), 9);
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_RING, 2, 2, BP_SCORING_HANDLER), 10);
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_ALL_TO_ALL, 3, 1, BP_SCORING_JUDGE), 15);
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_ALL_TO_ALL, 16, 5, BP_SCORING_JUDGE), 1312);
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_NONE, 4, 0, BP_SCORING_JUDGE), 8);
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_NONE, 1, 0, BP_SCORING_NONE), 1);
    assert_int_equal(delib_llm_calls(BP_TOPOLOGY_RING, 5, 0, BP_SCORING_JUDGE), 10);
}

static void test_delib_budget(void **state)
{
    (void)state;
    /* ring, 3 agents, 1 round, judge: 12 calls. */
    bp_destroy(parse_ok(DELIB(",\"agents\":3,\"budget\":{\"max_calls\":12}")));
    expect_message(DELIB(",\"agents\":3,\"budget\":{\"max_calls\":11}"),
                   "step 'd': budget.max_calls is 11 but the deliberation may make up to 12 "
                   "calls (12 calls × 1 attempt)");
    expect_message(DELIB(",\"agents\":3,\"call\":{\"retry\":{\"max_attempts\":2}},"
                         "\"budget\":{\"max_calls\":10}"),
                   "step 'd': budget.max_calls is 10 but the deliberation may make up to 24 "
                   "calls (12 calls × 2 attempts)");
    bp_destroy(parse_ok(DELIB(",\"agents\":3,\"call\":{\"retry\":{\"max_attempts\":2}},"
                              "\"budget\":{\"max_calls\":24}")));
    /* Tokens: only when the step gives max_tokens (else the council's is
     * known at run time). */
    expect_message(DELIB(",\"agents\":3,\"model\":{\"max_tokens\":1024},"
                         "\"budget\":{\"max_completion_tokens\":5000}"),
                   "step 'd': budget.max_completion_tokens is 5000 but the deliberation may use "
                   "up to 12288 completion tokens (12 calls × 1024 max_tokens)");
    bp_destroy(parse_ok(DELIB(",\"agents\":3,\"model\":{\"max_tokens\":1024},"
                              "\"budget\":{\"max_completion_tokens\":12288}")));
    bp_destroy(parse_ok(DELIB(",\"agents\":3,\"budget\":{\"max_completion_tokens\":1}")));
    /* Without agents nothing is known yet: checked when the child starts. */
    bp_blueprint_t *bp = parse_ok(DELIB(",\"topology\":\"all_to_all\",\"rounds\":5,"
                                        "\"call\":{\"retry\":{\"max_attempts\":3}},"
                                        "\"model\":{\"max_tokens\":100},"
                                        "\"budget\":{\"max_calls\":100,"
                                        "\"max_completion_tokens\":4000}"));
    const bp_step_t *s = &bp->steps[0];
    cbm_error_t err = {0};
    /* 2 agents: 2 + 5 * 4 + 2 = 24 calls, 72 attempts, 2400 tokens. */
    assert_int_equal(delib_check_budget(s, 2, 100, &err), 0);
    /* 3 agents: 3 + 5 * 9 + 3 = 51 calls x 3 = 153 attempts. */
    assert_int_equal(delib_check_budget(s, 3, 100, &err), CBM_EINVAL);
    assert_int_equal(err.code, CBM_EINVAL);
    assert_string_equal(err.message, "step 'd': budget.max_calls is 100 but the deliberation may "
                                     "make up to 153 calls (51 calls × 3 attempts)");
    /* The council's max_tokens at run time. */
    assert_int_equal(delib_check_budget(s, 2, 166, &err), 0);
    assert_int_equal(delib_check_budget(s, 2, 167, &err), CBM_EINVAL);
    assert_string_equal(err.message, "step 'd': budget.max_completion_tokens is 4000 but the "
                                     "deliberation may use up to 4008 completion tokens (24 calls "
                                     "× 167 max_tokens)");
    assert_int_equal(delib_check_budget(s, 2, 0, &err), 0);
    assert_int_equal(delib_check_budget(s, 0, 0, &err), CBM_EINVAL);
    bp_destroy(bp);
    bp = parse_ok(STEP("\"kind\":\"approval\""));
    assert_int_equal(delib_check_budget(&bp->steps[0], 2, 0, NULL), CBM_EINVAL);
    bp_destroy(bp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delib_defaults),
        cmocka_unit_test(test_delib_doc_example),
        cmocka_unit_test(test_delib_every_field),
        cmocka_unit_test(test_delib_versions),
        cmocka_unit_test(test_delib_errors),
        cmocka_unit_test(test_delib_child_name),
        cmocka_unit_test(test_delib_templates),
        cmocka_unit_test(test_delib_calls),
        cmocka_unit_test(test_delib_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
