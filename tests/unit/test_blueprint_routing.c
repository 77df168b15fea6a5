/*
 * test_blueprint_routing.c - diverge rules, branch entries and conditions, input
 * declarations and bp_check_inputs(), the review loop, every new field.
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
#include "engine/match.h"
#include "tests/unit/bp_fixtures.h"

/* ------------------------------------------------------------------------ */
/* Diverge                                                                  */
/* ------------------------------------------------------------------------ */

/* a -> b -> c -> d, with fields on c. */
#define CHAIN(fields)                                                                          \
    "{\"name\":\"x\",\"timeline\":[\"a\",\"b\",{\"name\":\"c\"," fields "},\"d\"]}"

static void test_diverge(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(CHAIN(
        "\"diverge\":["
        "{\"match\":{\"status\":\"retry\",\"n\":1},\"action\":\"retry\",\"max_iterations\":5},"
        "{\"match\":{\"status\":\"redo\"},\"action\":\"back_to\",\"target\":\"a\",\"max_iterations\":3},"
        "{\"match\":{\"status\":\"skip\"},\"on\":\"result\",\"action\":\"skip_to\",\"target\":\"d\"},"
        "{\"match\":{\"kind\":\"validation\"},\"on\":\"error\",\"action\":\"fail\"},"
        "{\"match\":\"_\",\"on\":\"error\",\"action\":\"continue\"},"
        "{\"match\":[1,\"_\"],\"action\":\"back_to\",\"target\":\"b\",\"max_iterations\":10000}]"));
    const bp_step_t *s = &bp->steps[2];
    assert_int_equal(s->ndiverge, 6);
    assert_int_equal(s->diverge[0].action, BP_ACTION_RETRY);
    assert_int_equal(s->diverge[0].on, BP_ON_RESULT);
    assert_int_equal(s->diverge[0].target, -1);
    assert_int_equal(s->diverge[0].max_iterations, 5);
    assert_int_equal(s->diverge[1].action, BP_ACTION_BACK_TO);
    assert_int_equal(s->diverge[1].target, 0);
    assert_int_equal(s->diverge[1].max_iterations, 3);
    assert_int_equal(s->diverge[2].action, BP_ACTION_SKIP_TO);
    assert_int_equal(s->diverge[2].target, 3);
    assert_int_equal(s->diverge[2].max_iterations, 0);
    assert_int_equal(s->diverge[3].action, BP_ACTION_FAIL);
    assert_int_equal(s->diverge[3].on, BP_ON_ERROR);
    assert_int_equal(s->diverge[4].action, BP_ACTION_CONTINUE);
    assert_int_equal(s->diverge[5].target, 1);
    assert_int_equal(s->diverge[5].max_iterations, 10000);
    assert_int_equal(bp->steps[0].ndiverge, 0);
    assert_null(bp->steps[0].diverge);
    /* The patterns are kept, canonical, and evaluate. */
    cJSON *v = cJSON_Parse("{\"n\":1,\"status\":\"retry\",\"extra\":[]}");
    assert_true(match_pattern(s->diverge[0].match, v));
    assert_false(match_pattern(s->diverge[1].match, v));
    cJSON_Delete(v);
    assert_contains(bp->canonical_json,
                    "\"diverge\":[{\"match\":{\"n\":1,\"status\":\"retry\"},\"on\":\"result\","
                    "\"action\":\"retry\",\"max_iterations\":5},{\"match\":{\"status\":\"redo\"},"
                    "\"on\":\"result\",\"action\":\"back_to\",\"target\":\"a\",\"max_iterations\":3},"
                    "{\"match\":{\"status\":\"skip\"},\"on\":\"result\",\"action\":\"skip_to\","
                    "\"target\":\"d\"},{\"match\":{\"kind\":\"validation\"},\"on\":\"error\","
                    "\"action\":\"fail\"},{\"match\":\"_\",\"on\":\"error\",\"action\":\"continue\"},"
                    "{\"match\":[1,\"_\"],\"on\":\"result\",\"action\":\"back_to\",\"target\":\"b\","
                    "\"max_iterations\":10000}]}");
    bp_destroy(bp);

    /* back_to edges are not dependencies: a loop through them is no cycle,
     * and back_to may reach any ancestor, however far. */
    bp_destroy(parse_ok("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\",\"depends_on\":[\"a\"]},"
                        "{\"name\":\"c\",\"depends_on\":[\"b\"],\"diverge\":[{\"match\":\"_\","
                        "\"action\":\"back_to\",\"target\":\"a\",\"max_iterations\":2}]},"
                        "{\"name\":\"d\",\"depends_on\":[\"a\"]}]}"));
    /* Same meaning, same version: pattern key order, default on, [] = none. */
    assert_same_version(CHAIN("\"diverge\":[{\"match\":{\"b\":1,\"a\":{\"y\":2,\"x\":1}},\"action\":\"fail\"}]"),
                        CHAIN("\"diverge\":[{\"action\":\"fail\",\"on\":\"result\","
                              "\"match\":{\"a\":{\"x\":1,\"y\":2},\"b\":1.0}}]"));
    assert_same_version(CHAIN("\"diverge\":[]"), CHAIN("\"retry\":{}"));
    assert_other_version(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"fail\"}]"),
                         CHAIN("\"diverge\":[{\"match\":1,\"on\":\"error\",\"action\":\"fail\"}]"));
    assert_other_version(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"fail\"},{\"match\":2,\"action\":\"continue\"}]"),
                         CHAIN("\"diverge\":[{\"match\":2,\"action\":\"continue\"},{\"match\":1,\"action\":\"fail\"}]"));
    /* Any kind may diverge. */
    bp_destroy(parse_ok(STEP("\"kind\":\"approval\",\"diverge\":[{\"match\":{\"kind\":"
                             "\"approval_rejected\"},\"on\":\"error\",\"action\":\"continue\"}]")));
}

static void test_diverge_errors(void **state)
{
    (void)state;
    expect_message(CHAIN("\"diverge\":{}"), "step 'c': diverge must be an array of rules");
    expect_message(CHAIN("\"diverge\":[5]"), "step 'c': diverge[0] must be an object");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"fail\",\"goto\":\"a\"}]"),
                   "step 'c': diverge[0]: unknown key 'goto' (allowed: match, on, action, target, "
                   "max_iterations)");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"fail\",\"action\":\"fail\"}]"),
                   "step 'c': diverge[0]: duplicate key 'action'");
    expect_message(CHAIN("\"diverge\":[{\"action\":\"fail\"}]"), "step 'c': diverge[0]: match is missing");
    expect_message(CHAIN("\"diverge\":[{\"match\":{\"a\":1,\"a\":2},\"action\":\"fail\"}]"),
                   "step 'c': diverge[0]: match has a duplicate key 'a'");
    expect_message(CHAIN("\"diverge\":[{\"match\":[-1e999],\"action\":\"fail\"}]"),
                   "step 'c': diverge[0]: match has a number out of range");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"on\":\"failure\",\"action\":\"fail\"}]"),
                   "step 'c': diverge[0]: on must be 'result' or 'error'");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"on\":true,\"action\":\"fail\"}]"),
                   "step 'c': diverge[0]: on must be 'result' or 'error'");
    expect_message(CHAIN("\"diverge\":[{\"match\":1}]"), "step 'c': diverge[0]: action is missing");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":3}]"),
                   "step 'c': diverge[0]: action must be a string");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"goto\"}]"),
                   "step 'c': diverge[0]: unknown action 'goto' (expected retry, back_to, skip_to, "
                   "fail or continue)");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"back_to\",\"max_iterations\":3}]"),
                   "step 'c': diverge[0]: target is required for action back_to");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"skip_to\"}]"),
                   "step 'c': diverge[0]: target is required for action skip_to");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"fail\",\"target\":\"d\"}]"),
                   "step 'c': diverge[0]: target is only for actions back_to and skip_to");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"skip_to\",\"target\":4}]"),
                   "step 'c': diverge[0]: target must be a step name");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"back_to\",\"target\":\"a\"}]"),
                   "step 'c': diverge[0]: max_iterations is required for action back_to");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"retry\"}]"),
                   "step 'c': diverge[0]: max_iterations is required for action retry");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"skip_to\",\"target\":\"d\","
                         "\"max_iterations\":2}]"),
                   "step 'c': diverge[0]: max_iterations is only for actions retry and back_to");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"retry\",\"max_iterations\":0}]"),
                   "step 'c': diverge[0]: max_iterations must be an integer from 1 to 10000");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"retry\",\"max_iterations\":10001}]"),
                   "step 'c': diverge[0]: max_iterations must be an integer from 1 to 10000");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"retry\",\"max_iterations\":\"3\"}]"),
                   "step 'c': diverge[0]: max_iterations must be an integer from 1 to 10000");
    /* Targets. */
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"fail\"},{\"match\":2,"
                         "\"action\":\"skip_to\",\"target\":\"zz\"}]"),
                   "step 'c': diverge[1]: target names unknown step 'zz'");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"back_to\",\"target\":\"d\","
                         "\"max_iterations\":3}]"),
                   "step 'c': diverge[0]: back_to target 'd' must be a step that 'c' depends on, "
                   "directly or not");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"back_to\",\"target\":\"c\","
                         "\"max_iterations\":3}]"),
                   "step 'c': diverge[0]: back_to target 'c' must be a step that 'c' depends on, "
                   "directly or not");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"skip_to\",\"target\":\"a\"}]"),
                   "step 'c': diverge[0]: skip_to target 'a' must be a step that depends on 'c', "
                   "directly or not");
    expect_message(CHAIN("\"diverge\":[{\"match\":1,\"action\":\"skip_to\",\"target\":\"c\"}]"),
                   "step 'c': diverge[0]: skip_to target 'c' must be a step that depends on 'c', "
                   "directly or not");
    /* A sibling is neither an ancestor nor a descendant. */
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"r\"},{\"name\":\"p\",\"depends_on\":[\"r\"]},"
                   "{\"name\":\"q\",\"depends_on\":[\"r\"],\"diverge\":[{\"match\":1,"
                   "\"action\":\"skip_to\",\"target\":\"p\"}]}]}",
                   "step 'q': diverge[0]: skip_to target 'p' must be a step that depends on 'q', "
                   "directly or not");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"r\"},{\"name\":\"p\",\"depends_on\":[\"r\"]},"
                   "{\"name\":\"q\",\"depends_on\":[\"r\"],\"diverge\":[{\"match\":1,"
                   "\"action\":\"back_to\",\"target\":\"p\",\"max_iterations\":1}]}]}",
                   "step 'q': diverge[0]: back_to target 'p' must be a step that 'q' depends on, "
                   "directly or not");
    /* Rules that can never be reached. */
    expect_message(CHAIN("\"diverge\":[{\"match\":\"_\",\"action\":\"continue\"},"
                         "{\"match\":{\"a\":1},\"action\":\"fail\"}]"),
                   "step 'c': diverge[1] is unreachable: diverge[0] matches every result it matches");
    expect_message(CHAIN("\"diverge\":[{\"match\":{\"kind\":\"x\"},\"on\":\"error\",\"action\":\"fail\"},"
                         "{\"match\":{\"kind\":\"y\"},\"on\":\"error\",\"action\":\"fail\"},"
                         "{\"match\":{\"kind\":\"x\",\"retryable\":true},\"on\":\"error\","
                         "\"action\":\"continue\"}]"),
                   "step 'c': diverge[2] is unreachable: diverge[0] matches every error it matches");
    /* ...but a catch-all on results does not hide rules on errors, nor a
     * narrower rule a wider one after it. */
    bp_destroy(parse_ok(CHAIN("\"diverge\":[{\"match\":\"_\",\"action\":\"continue\"},"
                              "{\"match\":\"_\",\"on\":\"error\",\"action\":\"fail\"}]")));
    bp_destroy(parse_ok(CHAIN("\"diverge\":[{\"match\":{\"a\":1,\"b\":2},\"action\":\"fail\"},"
                              "{\"match\":{\"a\":1},\"action\":\"continue\"}]")));
}

/* ------------------------------------------------------------------------ */
/* Branch                                                                   */
/* ------------------------------------------------------------------------ */

/* check, and three steps that depend on it. */
#define FORK(branch)                                                                           \
    "{\"name\":\"x\",\"steps\":[{\"name\":\"check\",\"branch\":" branch "},"                  \
    "{\"name\":\"publish\",\"depends_on\":[\"check\"]},"                                      \
    "{\"name\":\"escalate\",\"depends_on\":[\"check\"]},"                                     \
    "{\"name\":\"audit\",\"depends_on\":[\"check\"]},{\"name\":\"other\"}]}"

static void test_branch(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(FORK(
        "[{\"when\":{\"path\":\"score\",\"op\":\">=\",\"value\":0.8},\"to\":\"publish\"},"
        "{\"when\":{\"and\":[{\"path\":\"items[0].flag\",\"op\":\"exists\"},"
        "{\"not\":{\"path\":\"tier\",\"op\":\"in\",\"value\":[\"gold\",\"silver\"]}}]},\"to\":\"audit\"},"
        "{\"when\":{\"or\":[{\"path\":\"\",\"op\":\"==\",\"value\":{\"b\":1,\"a\":2}}]},\"to\":\"publish\"},"
        "{\"otherwise\":\"escalate\"}]"));
    const bp_step_t *s = &bp->steps[0];
    assert_int_equal(s->nbranch, 4);
    assert_int_equal(s->branch[0].to, 1);
    assert_int_equal(s->branch[1].to, 3);
    assert_int_equal(s->branch[2].to, 1);
    assert_int_equal(s->branch[3].to, 2);
    assert_non_null(s->branch[0].when);
    assert_null(s->branch[3].when);
    assert_int_equal(s->ndependents, 3);
    assert_int_equal(s->dependents[0], 1);
    assert_int_equal(s->dependents[2], 3);
    assert_int_equal(bp->steps[4].ndependents, 0);
    assert_null(bp->steps[4].dependents);
    /* The conditions evaluate as kept. */
    cJSON *v = cJSON_Parse("{\"score\":0.85}");
    bool out = false;
    assert_int_equal(cond_eval(s->branch[0].when, v, &out), 0);
    assert_true(out);
    assert_int_equal(cond_eval(s->branch[1].when, v, &out), 0);
    assert_false(out);
    cJSON_Delete(v);
    v = cJSON_Parse("{\"items\":[{\"flag\":0}],\"tier\":\"bronze\"}");
    assert_int_equal(cond_eval(s->branch[1].when, v, &out), 0);
    assert_true(out);
    cJSON_Delete(v);
    /* Canonical: keys of conditions sorted. */
    assert_contains(bp->canonical_json,
                    "\"branch\":[{\"when\":{\"op\":\">=\",\"path\":\"score\",\"value\":0.8},"
                    "\"to\":\"publish\"},{\"when\":{\"and\":[{\"op\":\"exists\",\"path\":"
                    "\"items[0].flag\"},{\"not\":{\"op\":\"in\",\"path\":\"tier\",\"value\":"
                    "[\"gold\",\"silver\"]}}]},\"to\":\"audit\"},{\"when\":{\"or\":[{\"op\":\"==\","
                    "\"path\":\"\",\"value\":{\"a\":2,\"b\":1}}]},\"to\":\"publish\"},"
                    "{\"otherwise\":\"escalate\"}]}");
    bp_destroy(bp);

    /* Every operator parses. */
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">=", "in", "exists"};
    for (size_t i = 0; i < 8; i++) {
        char json[1024];
        const char *value = strcmp(ops[i], "in") == 0       ? ",\"value\":[1]"
                            : strcmp(ops[i], "exists") == 0 ? ""
                            : ops[i][0] == '<' || ops[i][0] == '>' ? ",\"value\":\"m\""
                                                                   : ",\"value\":{\"k\":[null]}";
        snprintf(json, sizeof(json),
                 FORK("[{\"when\":{\"path\":\"a.b[3]\",\"op\":\"%s\"%s},\"to\":\"audit\"}]"), ops[i],
                 value);
        bp_destroy(parse_ok(json));
    }
    /* Same meaning, same version. */
    assert_same_version(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"<\",\"value\":1},\"to\":\"audit\"}]"),
                        FORK("[{\"to\":\"audit\",\"when\":{\"value\":1.0,\"op\":\"<\",\"path\":\"s\"}}]"));
    assert_same_version(FORK("[]"), FORK("[]") /* none */);
    assert_other_version(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"<\",\"value\":1},\"to\":\"audit\"}]"),
                         FORK("[{\"when\":{\"path\":\"s\",\"op\":\"<=\",\"value\":1},\"to\":\"audit\"}]"));
    /* A step that both diverges and branches. */
    bp_destroy(parse_ok(
        "{\"name\":\"x\",\"timeline\":[\"gen\",{\"name\":\"check\",\"diverge\":[{\"match\":"
        "{\"verdict\":\"revise\"},\"action\":\"back_to\",\"target\":\"gen\",\"max_iterations\":3}],"
        "\"branch\":[{\"when\":{\"path\":\"score\",\"op\":\">=\",\"value\":0.8},\"to\":\"publish\"},"
        "{\"otherwise\":\"escalate\"}]}],\"steps\":[{\"name\":\"publish\",\"depends_on\":[\"check\"]},"
        "{\"name\":\"escalate\",\"depends_on\":[\"check\"]}]}"));
}

static void test_branch_errors(void **state)
{
    (void)state;
    expect_message(FORK("{}"), "step 'check': branch must be an array of entries");
    expect_message(FORK("[\"publish\"]"), "step 'check': branch[0] must be an object");
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"exists\"},\"goto\":\"publish\"}]"),
                   "step 'check': branch[0]: unknown key 'goto' (allowed: when, to, otherwise)");
    expect_message(FORK("[{\"to\":\"publish\"}]"), "step 'check': branch[0]: when is missing");
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"exists\"}}]"),
                   "step 'check': branch[0]: to is missing");
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"exists\"},\"to\":[\"publish\"]}]"),
                   "step 'check': branch[0]: to must be a step name");
    expect_message(FORK("[{\"otherwise\":\"publish\",\"to\":\"audit\"}]"),
                   "step 'check': branch[0]: otherwise cannot be combined with when or to");
    expect_message(FORK("[{\"otherwise\":1}]"), "step 'check': branch[0]: otherwise must be a step name");
    expect_message(FORK("[{\"otherwise\":\"publish\"},{\"when\":{\"path\":\"s\",\"op\":\"exists\"},"
                        "\"to\":\"audit\"}]"),
                   "step 'check': branch[0]: otherwise must be the last entry");
    expect_message(FORK("[{\"otherwise\":\"publish\"},{\"otherwise\":\"audit\"}]"),
                   "step 'check': branch[0]: otherwise must be the last entry");
    /* Targets: known, and a step that depends on the branching step. */
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"exists\"},\"to\":\"nowhere\"}]"),
                   "step 'check': branch[0]: to names unknown step 'nowhere'");
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"exists\"},\"to\":\"audit\"},"
                        "{\"otherwise\":\"nowhere\"}]"),
                   "step 'check': branch[1]: otherwise names unknown step 'nowhere'");
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"exists\"},\"to\":\"other\"}]"),
                   "step 'check': branch[0]: 'other' does not depend on 'check' (a branch picks "
                   "among the steps that depend on it)");
    expect_message(FORK("[{\"otherwise\":\"check\"}]"),
                   "step 'check': branch[0]: 'check' does not depend on 'check' (a branch picks "
                   "among the steps that depend on it)");
    /* Only direct dependents. */
    expect_message("{\"name\":\"x\",\"timeline\":[{\"name\":\"a\",\"branch\":[{\"otherwise\":\"c\"}]},"
                   "\"b\",\"c\"]}",
                   "step 'a': branch[0]: 'c' does not depend on 'a' (a branch picks among the steps "
                   "that depend on it)");
}

#define WHEN(cond) FORK("[{\"when\":" cond ",\"to\":\"publish\"}]")

static void test_condition_errors(void **state)
{
    (void)state;
    expect_message(WHEN("\"score > 1\""), "step 'check': branch[0]: condition must be an object");
    expect_message(WHEN("{}"), "step 'check': branch[0]: path is missing");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"==\",\"value\":1,\"val\":2}"),
                   "step 'check': branch[0]: condition: unknown key 'val' (allowed: path, op, value, "
                   "and, or, not)");
    expect_message(WHEN("{\"path\":\"s\",\"path\":\"t\",\"op\":\"exists\"}"),
                   "step 'check': branch[0]: condition: duplicate key 'path'");
    expect_message(WHEN("{\"path\":5,\"op\":\"exists\"}"), "step 'check': branch[0]: path must be a string");
    expect_message(WHEN("{\"path\":\"a..b\",\"op\":\"exists\"}"),
                   "step 'check': branch[0]: malformed path 'a..b'");
    expect_message(WHEN("{\"path\":\"items[x].score\",\"op\":\"exists\"}"),
                   "step 'check': branch[0]: malformed path 'items[x].score'");
    expect_message(WHEN("{\"path\":\".score\",\"op\":\"exists\"}"),
                   "step 'check': branch[0]: malformed path '.score'");
    char json[2048], path[600];
    memset(path, 'p', 513);
    path[513] = '\0';
    snprintf(json, sizeof(json), WHEN("{\"path\":\"%s\",\"op\":\"exists\"}"), path);
    expect_message(json, "step 'check': branch[0]: path is longer than 512 characters");
    path[512] = '\0';
    snprintf(json, sizeof(json), WHEN("{\"path\":\"%s\",\"op\":\"exists\"}"), path);
    bp_destroy(parse_ok(json));
    expect_message(WHEN("{\"path\":\"s\"}"), "step 'check': branch[0]: op is missing");
    expect_message(WHEN("{\"path\":\"s\",\"op\":1}"), "step 'check': branch[0]: op must be a string");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"=\",\"value\":1}"),
                   "step 'check': branch[0]: unknown op '=' (expected ==, !=, <, <=, >, >=, in or "
                   "exists)");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"matches\",\"value\":1}"),
                   "step 'check': branch[0]: unknown op 'matches' (expected ==, !=, <, <=, >, >=, in "
                   "or exists)");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"exists\",\"value\":true}"),
                   "step 'check': branch[0]: op 'exists' takes no value");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"==\"}"), "step 'check': branch[0]: op '==' needs a value");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"!=\"}"), "step 'check': branch[0]: op '!=' needs a value");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"in\",\"value\":\"abc\"}"),
                   "step 'check': branch[0]: op 'in' needs an array value");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"<\",\"value\":null}"),
                   "step 'check': branch[0]: op '<' needs a number or a string value");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\">=\",\"value\":[1]}"),
                   "step 'check': branch[0]: op '>=' needs a number or a string value");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"==\",\"value\":{\"k\":1,\"k\":1}}"),
                   "step 'check': branch[0]: when has a duplicate key 'k'");
    expect_message(WHEN("{\"path\":\"s\",\"op\":\"==\",\"value\":1e400}"),
                   "step 'check': branch[0]: when has a number out of range");
    /* Combinators. */
    expect_message(WHEN("{\"and\":[]}"), "step 'check': branch[0]: and must be a non-empty array of conditions");
    expect_message(WHEN("{\"or\":{\"path\":\"s\",\"op\":\"exists\"}}"),
                   "step 'check': branch[0]: or must be a non-empty array of conditions");
    expect_message(WHEN("{\"and\":[{\"path\":\"s\",\"op\":\"exists\"}],\"path\":\"t\"}"),
                   "step 'check': branch[0]: a condition with 'and' has no other keys");
    expect_message(WHEN("{\"not\":{\"path\":\"s\",\"op\":\"exists\"},\"or\":[]}"),
                   "step 'check': branch[0]: a condition with 'or' has no other keys");
    expect_message(WHEN("{\"not\":[]}"), "step 'check': branch[0]: condition must be an object");
    /* Entries and branches that can never be taken. */
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"<\",\"value\":1},\"to\":\"audit\"},"
                        "{\"when\":{\"value\":1.0,\"op\":\"<\",\"path\":\"s\"},\"to\":\"publish\"}]"),
                   "step 'check': branch[1] is unreachable: branch[0] has the same condition");
    expect_message("{\"name\":\"x\",\"timeline\":[{\"name\":\"a\",\"diverge\":[{\"match\":1,"
                   "\"action\":\"continue\"},{\"match\":\"_\",\"action\":\"fail\"}],"
                   "\"branch\":[{\"otherwise\":\"b\"}]},\"b\"]}",
                   "step 'a': branch is unreachable: diverge[1] takes every result");
    /* A catch-all that continues, or one on errors, leaves the branch alone. */
    bp_destroy(parse_ok("{\"name\":\"x\",\"timeline\":[{\"name\":\"a\",\"diverge\":[{\"match\":"
                        "\"_\",\"on\":\"error\",\"action\":\"fail\"},{\"match\":\"_\",\"action\":"
                        "\"continue\"}],\"branch\":[{\"otherwise\":\"b\"}]},\"b\"]}"));
    /* At most 1000 rules and entries. */
    {
        size_t cap = 64 * 1024, used = 0;
        char *big = malloc(cap);
        assert_non_null(big);
        used += (size_t)snprintf(big, cap, "{\"name\":\"x\",\"timeline\":[{\"name\":\"a\",\"diverge\":[");
        for (int i = 0; i < 1001; i++)
            used += (size_t)snprintf(big + used, cap - used, "%s{\"match\":%d,\"action\":\"fail\"}",
                                     i ? "," : "", i);
        snprintf(big + used, cap - used, "]},\"b\"]}");
        expect_message(big, "step 'a': diverge has more than 1000 rules");
        used = (size_t)snprintf(big, cap, "{\"name\":\"x\",\"timeline\":[{\"name\":\"a\",\"branch\":[");
        for (int i = 0; i < 1001; i++)
            used += (size_t)snprintf(big + used, cap - used,
                                     "%s{\"when\":{\"path\":\"n\",\"op\":\"==\",\"value\":%d},\"to\":\"b\"}",
                                     i ? "," : "", i);
        snprintf(big + used, cap - used, "]},\"b\"]}");
        expect_message(big, "step 'a': branch has more than 1000 entries");
        free(big);
    }
    /* Errors deep inside are found, with the entry named. */
    expect_message(FORK("[{\"when\":{\"path\":\"s\",\"op\":\"exists\"},\"to\":\"audit\"},"
                        "{\"when\":{\"or\":[{\"path\":\"s\",\"op\":\"exists\"},{\"not\":{\"and\":["
                        "{\"path\":\"ok\",\"op\":\"exists\"},{\"path\":\"a..b\",\"op\":\"exists\"}]}}]},"
                        "\"to\":\"publish\"}]"),
                   "step 'check': branch[1]: malformed path 'a..b'");
}

/* ------------------------------------------------------------------------ */
/* Input declarations and checks                                            */
/* ------------------------------------------------------------------------ */

#define INPUTS(decl) "{\"name\":\"x\",\"inputs\":" decl ",\"steps\":[{\"name\":\"a\"}]}"

static void test_input_declarations(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(INPUTS(
        "{\"topic\":{\"type\":\"string\",\"required\":true},"
        "\"threshold\":{\"type\":\"number\",\"default\":0.8},"
        "\"rounds\":{\"type\":\"integer\",\"default\":3.0},"
        "\"opts\":{\"type\":\"object\",\"default\":{\"z\":1,\"a\":[true]}},"
        "\"anything\":{},"
        "\"tags\":{\"type\":\"array\",\"required\":false},"
        "\"dry-run\":{\"type\":\"boolean\",\"default\":false}}"));
    assert_true(bp->inputs_declared);
    assert_int_equal(bp->ninputs, 7);
    /* Sorted by name. */
    assert_string_equal(bp->inputs[0].name, "anything");
    assert_int_equal(bp->inputs[0].type, BP_IN_ANY);
    assert_false(bp->inputs[0].required);
    assert_null(bp->inputs[0].default_value);
    assert_string_equal(bp->inputs[1].name, "dry-run");
    assert_int_equal(bp->inputs[1].type, BP_IN_BOOLEAN);
    assert_true(cJSON_IsFalse(bp->inputs[1].default_value));
    assert_string_equal(bp->inputs[2].name, "opts");
    assert_string_equal(bp->inputs[3].name, "rounds");
    assert_int_equal(bp->inputs[3].type, BP_IN_INTEGER);
    assert_string_equal(bp->inputs[5].name, "threshold");
    assert_int_equal(bp->inputs[5].type, BP_IN_NUMBER);
    assert_string_equal(bp->inputs[6].name, "topic");
    assert_true(bp->inputs[6].required);
    assert_int_equal(bp->inputs[6].type, BP_IN_STRING);
    assert_contains(bp->canonical_json,
                    "{\"name\":\"x\",\"inputs\":{\"anything\":{\"required\":false},"
                    "\"dry-run\":{\"type\":\"boolean\",\"required\":false,\"default\":false},"
                    "\"opts\":{\"type\":\"object\",\"required\":false,\"default\":{\"a\":[true],\"z\":1}},"
                    "\"rounds\":{\"type\":\"integer\",\"required\":false,\"default\":3},"
                    "\"tags\":{\"type\":\"array\",\"required\":false},"
                    "\"threshold\":{\"type\":\"number\",\"required\":false,\"default\":0.8},"
                    "\"topic\":{\"type\":\"string\",\"required\":true}},\"steps\":[");
    bp_destroy(bp);

    /* Declared empty: the blueprint takes no inputs, which is not the same as
     * declaring nothing. */
    bp = parse_ok(INPUTS("{}"));
    assert_true(bp->inputs_declared);
    assert_int_equal(bp->ninputs, 0);
    assert_contains(bp->canonical_json, "{\"name\":\"x\",\"inputs\":{},\"steps\":[");
    bp_destroy(bp);
    bp = parse_ok("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"}]}");
    assert_false(bp->inputs_declared);
    assert_null(bp->inputs);
    bp_destroy(bp);
    assert_other_version(INPUTS("{}"), "{\"name\":\"x\",\"steps\":[{\"name\":\"a\"}]}");
    assert_same_version(INPUTS("{\"b\":{\"required\":false},\"a\":{\"type\":\"integer\",\"default\":1}}"),
                        INPUTS("{\"a\":{\"default\":1.0,\"type\":\"integer\"},\"b\":{}}"));

    expect_message("{\"name\":\"x\",\"inputs\":[],\"steps\":[{\"name\":\"a\"}]}",
                   "blueprint 'x': inputs must be an object");
    expect_message(INPUTS("{\"\":{}}"), "blueprint 'x': input name is empty");
    expect_message(INPUTS("{\"a.b\":{}}"),
                   "blueprint 'x': input name 'a.b' may only contain letters, digits, '_' and '-'");
    expect_message(INPUTS("{\"a\":{},\"b\":{},\"a\":{}}"), "blueprint 'x': duplicate input 'a'");
    expect_message(INPUTS("{\"a\":\"string\"}"), "input 'a' must be an object");
    expect_message(INPUTS("{\"a\":{\"type\":\"string\",\"optional\":true}}"),
                   "input 'a': unknown key 'optional' (allowed: type, required, default)");
    expect_message(INPUTS("{\"a\":{\"type\":\"text\"}}"),
                   "input 'a': type must be one of string, number, integer, boolean, object, array");
    expect_message(INPUTS("{\"a\":{\"type\":null}}"),
                   "input 'a': type must be one of string, number, integer, boolean, object, array");
    expect_message(INPUTS("{\"a\":{\"required\":\"yes\"}}"), "input 'a': required must be true or false");
    expect_message(INPUTS("{\"a\":{\"required\":true,\"default\":1}}"),
                   "input 'a': a required input cannot have a default");
    expect_message(INPUTS("{\"a\":{\"type\":\"integer\",\"default\":1.5}}"),
                   "input 'a': default must be an integer");
    expect_message(INPUTS("{\"a\":{\"type\":\"string\",\"default\":null}}"),
                   "input 'a': default must be a string");
    expect_message(INPUTS("{\"a\":{\"type\":\"boolean\",\"default\":0}}"),
                   "input 'a': default must be a boolean");
    expect_message(INPUTS("{\"a\":{\"type\":\"array\",\"default\":{}}}"), "input 'a': default must be an array");
    expect_message(INPUTS("{\"a\":{\"type\":\"object\",\"default\":[]}}"), "input 'a': default must be an object");
    expect_message(INPUTS("{\"a\":{\"type\":\"number\",\"default\":\"1\"}}"), "input 'a': default must be a number");
    expect_message(INPUTS("{\"a\":{\"default\":{\"k\":1,\"k\":2}}}"), "input 'a': default has a duplicate key 'k'");
    expect_message(INPUTS("{\"a\":{\"default\":[1e999]}}"), "input 'a': default has a number out of range");
}

static char *check_inputs_ok(const bp_blueprint_t *bp, const char *inputs)
{
    char *out = NULL;
    cbm_error_t err = {0};
    int rc = bp_check_inputs(bp, inputs, &out, &err);
    if (rc != 0) fail_msg("inputs %s refused: %s", inputs ? inputs : "NULL", err.message);
    assert_non_null(out);
    return out;
}

static void check_inputs_bad(const bp_blueprint_t *bp, const char *inputs, int code,
                             const char *message)
{
    char *out = (char *)"sentinel";
    cbm_error_t err = {0};
    int rc = bp_check_inputs(bp, inputs, &out, &err);
    if (rc != code)
        fail_msg("inputs %s: expected %s, got %s (%s)", inputs, cbm_err_name(code), cbm_err_name(rc),
                 err.message);
    assert_null(out);
    assert_string_equal(err.message, message);
}

static void expect_normalized(const bp_blueprint_t *bp, const char *inputs, const char *want)
{
    char *out = check_inputs_ok(bp, inputs);
    assert_string_equal(out, want);
    cJSON_free(out);
}

static void test_check_inputs(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(INPUTS(
        "{\"topic\":{\"type\":\"string\",\"required\":true},"
        "\"threshold\":{\"type\":\"number\",\"default\":0.8},"
        "\"rounds\":{\"type\":\"integer\",\"default\":3},"
        "\"opts\":{\"type\":\"object\",\"default\":{\"a\":1}},"
        "\"any\":{},\"tags\":{\"type\":\"array\"},\"dry\":{\"type\":\"boolean\"}}"));

    /* Defaults filled in after the given keys, in name order. */
    expect_normalized(bp, "{\"topic\":\"cats\"}",
                      "{\"topic\":\"cats\",\"opts\":{\"a\":1},\"rounds\":3,\"threshold\":0.8}");
    expect_normalized(bp, " {\"rounds\": 5.0, \"topic\": \"cats\", \"any\": null,\n"
                          "  \"tags\": [], \"dry\": true, \"threshold\": 1, \"opts\": {}} ",
                      "{\"rounds\":5,\"topic\":\"cats\",\"any\":null,\"tags\":[],\"dry\":true,"
                      "\"threshold\":1,\"opts\":{}}");
    /* A check without output. */
    assert_int_equal(bp_check_inputs(bp, "{\"topic\":\"t\"}", NULL, NULL), 0);

    check_inputs_bad(bp, "{}", CBM_EINVAL, "input 'topic' is required");
    check_inputs_bad(bp, NULL, CBM_EINVAL, "input 'topic' is required");
    check_inputs_bad(bp, "", CBM_EINVAL, "input 'topic' is required");
    check_inputs_bad(bp, "{\"topic\":5}", CBM_EINVAL, "input 'topic' must be a string (got integer)");
    check_inputs_bad(bp, "{\"topic\":null}", CBM_EINVAL, "input 'topic' must be a string (got null)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"rounds\":2.5}", CBM_EINVAL,
                     "input 'rounds' must be an integer (got number)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"rounds\":\"2\"}", CBM_EINVAL,
                     "input 'rounds' must be an integer (got string)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"rounds\":1e300}", CBM_EINVAL,
                     "input 'rounds' must be an integer (got number)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"threshold\":\"0.5\"}", CBM_EINVAL,
                     "input 'threshold' must be a number (got string)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"threshold\":1e999}", CBM_EINVAL,
                     "input 'threshold' must be a number (got number)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"dry\":1}", CBM_EINVAL,
                     "input 'dry' must be a boolean (got integer)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"tags\":{}}", CBM_EINVAL,
                     "input 'tags' must be an array (got object)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"opts\":[]}", CBM_EINVAL,
                     "input 'opts' must be an object (got array)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"topik\":\"t\"}", CBM_EINVAL,
                     "unknown input 'topik' (declared: any, dry, opts, rounds, tags, threshold, "
                     "topic)");
    check_inputs_bad(bp, "{\"topic\":\"t\",\"topic\":\"u\"}", CBM_EINVAL, "input 'topic' is given twice");
    check_inputs_bad(bp, "[]", CBM_EINVAL, "inputs must be a JSON object");
    check_inputs_bad(bp, "\"topic\"", CBM_EINVAL, "inputs must be a JSON object");
    check_inputs_bad(bp, "{\"topic\":", CBM_EJSON, "inputs: malformed JSON at line 1, column 9 (byte 8)");
    check_inputs_bad(bp, "{} {}", CBM_EJSON,
                     "inputs: malformed JSON: unexpected text after the inputs at line 1, column 4 "
                     "(byte 3)");
    assert_int_equal(bp_check_inputs(NULL, "{}", NULL, NULL), CBM_EINVAL);
    bp_destroy(bp);

    /* Declared empty: nothing may be given. */
    bp = parse_ok(INPUTS("{}"));
    expect_normalized(bp, NULL, "{}");
    check_inputs_bad(bp, "{\"a\":1}", CBM_EINVAL, "unknown input 'a' (blueprint 'x' declares no inputs)");
    bp_destroy(bp);

    /* Nothing declared: any object, as it is (but a key given twice is
     * ambiguous, so still refused). */
    bp = parse_ok("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"}]}");
    expect_normalized(bp, NULL, "{}");
    expect_normalized(bp, "", "{}");
    expect_normalized(bp, "{ \"b\" : [1, {\"c\": null}], \"a\": \"x\" }",
                      "{\"b\":[1,{\"c\":null}],\"a\":\"x\"}");
    check_inputs_bad(bp, "{\"a\":1,\"a\":1}", CBM_EINVAL, "input 'a' is given twice");
    check_inputs_bad(bp, "5", CBM_EINVAL, "inputs must be a JSON object");
    check_inputs_bad(bp, "{", CBM_EJSON, "inputs: malformed JSON at line 1, column 1 (byte 0)");
    bp_destroy(bp);
}

/* ------------------------------------------------------------------------ */
/* The review loop of docs/blueprints.md                                     */
/* ------------------------------------------------------------------------ */


static void test_review_loop(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(review_loop);
    int gen = bp_step_index(bp, "generate"), check = bp_step_index(bp, "check");
    int publish = bp_step_index(bp, "publish"), escalate = bp_step_index(bp, "escalate");
    const bp_step_t *c = &bp->steps[check];
    assert_int_equal(c->ndiverge, 2);
    assert_int_equal(c->diverge[0].action, BP_ACTION_BACK_TO);
    assert_int_equal(c->diverge[0].target, gen);
    assert_int_equal(c->diverge[0].max_iterations, 3);
    assert_int_equal(c->diverge[1].on, BP_ON_ERROR);
    assert_int_equal(c->nbranch, 2);
    assert_int_equal(c->branch[0].to, publish);
    assert_int_equal(c->branch[1].to, escalate);
    assert_null(c->branch[1].when);
    assert_string_equal(bp->steps[escalate].approval_type, "editor");
    assert_int_equal(bp->steps[escalate].timeout_ms, 86400000);

    /* What the decider will see: a revise verdict loops, a good score
     * publishes, anything else escalates. */
    cJSON *revise = cJSON_Parse("{\"verdict\":\"revise\",\"score\":0.4}");
    cJSON *pass = cJSON_Parse("{\"verdict\":\"pass\",\"score\":0.93}");
    cJSON *meh = cJSON_Parse("{\"verdict\":\"pass\",\"score\":0.5}");
    bool out;
    assert_true(match_pattern(c->diverge[0].match, revise));
    assert_false(match_pattern(c->diverge[0].match, pass));
    assert_int_equal(cond_eval(c->branch[0].when, pass, &out), 0);
    assert_true(out);
    assert_int_equal(cond_eval(c->branch[0].when, meh, &out), 0);
    assert_false(out);
    cJSON_Delete(revise);
    cJSON_Delete(pass);
    cJSON_Delete(meh);

    char *norm = check_inputs_ok(bp, "{\"topic\":\"C\"}");
    assert_string_equal(norm, "{\"topic\":\"C\",\"threshold\":0.8}");
    cJSON_free(norm);
    assert_fixed_point(review_loop);
    bp_destroy(bp);
}


static void test_new_fields_fixed_point(void **state)
{
    (void)state;
    assert_fixed_point(everything);
    bp_blueprint_t *bp = parse_ok(everything);
    assert_int_equal(bp->steps[1].sleep_until_us, INT64_C(1893448800500000));
    assert_contains(bp->canonical_json, "\"until\":\"2029-12-31T22:00:00.5Z\"");
    bp_destroy(bp);
    /* The golden blueprint keeps its version (test_defaults pins it); so does
     * every blueprint that uses none of the new fields, whatever its kinds.
     * (A deliberation step has fields it cannot do without: council, task.) */
    bp = parse_ok("{\"name\":\"k\",\"steps\":[{\"name\":\"a\",\"kind\":\"approval\"},"
                  "{\"name\":\"s\",\"kind\":\"signal\"}]}");
    assert_string_equal(bp->canonical_json,
                        "{\"name\":\"k\",\"steps\":[{\"name\":\"a\",\"kind\":\"approval\",\"handler\":"
                        "\"a\",\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":{"
                        "\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,"
                        "\"non_retryable\":[]}},{\"name\":\"s\",\"kind\":\"signal\",\"handler\":\"s\","
                        "\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":{"
                        "\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,"
                        "\"non_retryable\":[]}}]}");
    bp_destroy(bp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diverge),
        cmocka_unit_test(test_diverge_errors),
        cmocka_unit_test(test_branch),
        cmocka_unit_test(test_branch_errors),
        cmocka_unit_test(test_condition_errors),
        cmocka_unit_test(test_input_declarations),
        cmocka_unit_test(test_check_inputs),
        cmocka_unit_test(test_review_loop),
        cmocka_unit_test(test_new_fields_fixed_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
