/*
 * test_blueprint.c - the blueprint model: parsing, defaults, timeline sugar, dependencies,
 * every validation error of the core format, canonical JSON and version.
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
/* Parsing and defaults                                                     */
/* ------------------------------------------------------------------------ */

static const char *const golden_canonical =
    "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"kind\":\"task\",\"handler\":\"a\","
    "\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":{\"max_attempts\":1,"
    "\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,\"non_retryable\":[]}}]}";

static void test_defaults(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok("{\"name\":\"x\"," ONE_STEP "}");
    assert_string_equal(bp->name, "x");
    assert_int_equal(bp->nsteps, 1);
    const bp_step_t *s = &bp->steps[0];
    assert_string_equal(s->name, "a");
    assert_int_equal(s->kind, BP_TASK);
    assert_string_equal(s->handler, "a");
    assert_string_equal(s->queue, "local");
    assert_int_equal(s->ndeps, 0);
    assert_int_equal(s->timeout_ms, 0);
    assert_int_equal(s->retry.max_attempts, 1);
    assert_int_equal(s->retry.initial_ms, 1000);
    assert_int_equal(s->retry.max_ms, 60000);
    assert_true(s->retry.multiplier == 2.0);
    assert_int_equal(s->retry.n_non_retryable, 0);
    /* Golden: the canonical form and version are stored, so a change here
     * changes the version of every registered blueprint. */
    assert_string_equal(bp->canonical_json, golden_canonical);
    assert_string_equal(bp->version,
                        "70e48539ed9cdb7aa154c13dd000b00d87f97b094df14584f2649bc10f736dfe");
    bp_destroy(bp);
}

static void test_all_fields(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"order\",\"steps\":["
        "{\"name\":\"fetch\",\"handler\":\"fetch_v2\",\"queue\":\"gpu\",\"depends_on\":[],"
        "\"timeout_ms\":5000,\"kind\":\"task\","
        "\"retry\":{\"max_attempts\":3,\"initial_ms\":250,\"max_ms\":8000,\"multiplier\":1.5,"
        "\"non_retryable\":[\"bad_input\",\"auth\",\"bad_input\"]}},"
        "{\"name\":\"s\",\"kind\":\"sleep\",\"duration_ms\":5},{\"name\":\"ap\",\"kind\":\"approval\"},"
        "{\"name\":\"sig\",\"kind\":\"signal\"},"
        "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"child\"},"
        "{\"name\":\"d\",\"kind\":\"deliberation\",\"council\":\"dev\",\"task\":\"t\"}]}");
    assert_int_equal(bp->nsteps, 6);
    const bp_step_t *s = &bp->steps[0];
    assert_string_equal(s->handler, "fetch_v2");
    assert_string_equal(s->queue, "gpu");
    assert_int_equal(s->timeout_ms, 5000);
    assert_int_equal(s->retry.max_attempts, 3);
    assert_int_equal(s->retry.initial_ms, 250);
    assert_int_equal(s->retry.max_ms, 8000);
    assert_true(s->retry.multiplier == 1.5);
    /* A set: sorted, repeats dropped. */
    assert_int_equal(s->retry.n_non_retryable, 2);
    assert_string_equal(s->retry.non_retryable[0], "auth");
    assert_string_equal(s->retry.non_retryable[1], "bad_input");
    assert_int_equal(bp->steps[1].kind, BP_SLEEP);
    assert_int_equal(bp->steps[2].kind, BP_APPROVAL);
    assert_int_equal(bp->steps[3].kind, BP_SIGNAL);
    assert_int_equal(bp->steps[4].kind, BP_SUBWORKFLOW);
    assert_int_equal(bp->steps[5].kind, BP_DELIBERATION);
    assert_contains(bp->canonical_json, "\"kind\":\"deliberation\"");
    assert_contains(bp->canonical_json, "\"multiplier\":1.5");
    assert_contains(bp->canonical_json, "\"non_retryable\":[\"auth\",\"bad_input\"]");
    bp_destroy(bp);
}

static void test_retry_partial_defaults(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"retry\":{\"max_attempts\":5}}]}");
    assert_int_equal(bp->steps[0].retry.max_attempts, 5);
    assert_int_equal(bp->steps[0].retry.initial_ms, 1000);
    assert_int_equal(bp->steps[0].retry.max_ms, 60000);
    assert_true(bp->steps[0].retry.multiplier == 2.0);
    bp_destroy(bp);
}

static void test_large_integers(void **state)
{
    (void)state;
    /* The largest durations: 10 years of 365 days. */
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"timeout_ms\":315360000000,"
        "\"retry\":{\"initial_ms\":315360000000,\"max_ms\":3.1536e11}}]}");
    assert_int_equal(bp->steps[0].timeout_ms, BP_MAX_DURATION_MS);
    assert_int_equal(bp->steps[0].retry.initial_ms, BP_MAX_DURATION_MS);
    assert_int_equal(bp->steps[0].retry.max_ms, BP_MAX_DURATION_MS);
    /* Printed as integers, never in exponent form. */
    assert_contains(bp->canonical_json, "\"timeout_ms\":315360000000,");
    assert_contains(bp->canonical_json, "\"max_ms\":315360000000,");
    bp_destroy(bp);
}

static void test_length_is_respected(void **state)
{
    (void)state;
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    const char *text = "{\"name\":\"x\"," ONE_STEP "}GARBAGE";
    size_t len = strlen(text) - strlen("GARBAGE");
    assert_int_equal(bp_parse_json(text, len, &bp, &err), 0);
    bp_destroy(bp);

    /* A length that counts the terminator is fine; a NUL inside the text is
     * refused (it would cut the text silently). */
    const char with_nul[] = "{\"name\":\"x\"," ONE_STEP "}\n";
    assert_int_equal(bp_parse_json(with_nul, sizeof(with_nul), &bp, &err), 0);
    bp_destroy(bp);
    const char inner_nul[] = "{\"name\":\"x\"," ONE_STEP "}\0{}";
    assert_int_equal(bp_parse_json(inner_nul, sizeof(inner_nul), &bp, &err), CBM_EINVAL);
    assert_non_null(strstr(err.message, "NUL"));

    /* Trailing white space is fine. */
    bp = parse_ok("  {\"name\":\"x\"," ONE_STEP "} \r\n\t ");
    bp_destroy(bp);
}

static void test_null_args(void **state)
{
    (void)state;
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    assert_int_equal(bp_parse_json(NULL, 3, &bp, &err), CBM_EINVAL);
    assert_int_equal(bp_parse_json("{}", 2, NULL, &err), CBM_EINVAL);
    /* err may be NULL. */
    assert_int_equal(bp_parse_json("{", 1, &bp, NULL), CBM_EJSON);
    assert_int_equal(bp_parse_json("[]", 2, &bp, NULL), CBM_EBLUEPRINT);
    assert_null(bp);
    bp_destroy(NULL);
}

static void test_step_index(void **state)
{
    (void)state;
    bp_blueprint_t *bp =
        parse_ok("{\"name\":\"x\",\"steps\":[{\"name\":\"b\"},{\"name\":\"a\"}],\"timeline\":[\"c\"]}");
    assert_int_equal(bp_step_index(bp, "b"), 0);
    assert_int_equal(bp_step_index(bp, "a"), 1);
    assert_int_equal(bp_step_index(bp, "c"), 2);
    assert_int_equal(bp_step_index(bp, "d"), -1);
    assert_int_equal(bp_step_index(bp, NULL), -1);
    assert_int_equal(bp_step_index(NULL, "a"), -1);
    bp_destroy(bp);
}

/* ------------------------------------------------------------------------ */
/* Dependencies and timeline                                                */
/* ------------------------------------------------------------------------ */

static void test_diamond(void **state)
{
    (void)state;
    /* d lists c twice and before b; forward references are fine. */
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"dia\",\"steps\":["
        "{\"name\":\"d\",\"depends_on\":[\"c\",\"b\",\"c\"]},"
        "{\"name\":\"a\"},"
        "{\"name\":\"b\",\"depends_on\":[\"a\"]},"
        "{\"name\":\"c\",\"depends_on\":[\"a\"]}]}");
    assert_int_equal(bp->nsteps, 4);
    assert_string_equal(bp->steps[0].name, "d");
    assert_deps(bp, "d", (size_t[]){2, 3}, 2);
    assert_deps(bp, "a", NULL, 0);
    assert_deps(bp, "b", (size_t[]){1}, 1);
    assert_deps(bp, "c", (size_t[]){1}, 1);
    assert_contains(bp->canonical_json, "\"name\":\"d\",\"kind\":\"task\",\"handler\":\"d\","
                                        "\"queue\":\"local\",\"depends_on\":[\"b\",\"c\"]");
    bp_destroy(bp);
}

static void test_timeline(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"t\",\"timeline\":[\"a\",\"b\",{\"name\":\"c\",\"handler\":\"h\","
        "\"depends_on\":[\"x\"]}],"
        "\"steps\":[{\"name\":\"x\",\"depends_on\":[\"a\"]}]}");
    /* steps[] first, then timeline[]. */
    assert_int_equal(bp->nsteps, 4);
    assert_string_equal(bp->steps[0].name, "x");
    assert_string_equal(bp->steps[1].name, "a");
    assert_string_equal(bp->steps[2].name, "b");
    assert_string_equal(bp->steps[3].name, "c");
    assert_deps(bp, "x", (size_t[]){1}, 1);
    assert_deps(bp, "a", NULL, 0);
    assert_deps(bp, "b", (size_t[]){1}, 1);
    assert_deps(bp, "c", (size_t[]){0, 2}, 2);
    assert_string_equal(bp->steps[3].handler, "h");
    assert_string_equal(bp->steps[2].handler, "b");
    assert_int_equal(bp->steps[2].kind, BP_TASK);
    bp_destroy(bp);

    /* An explicit dependency on the previous entry is not counted twice. */
    bp = parse_ok("{\"name\":\"t\",\"timeline\":[\"a\",{\"name\":\"b\",\"depends_on\":[\"a\"]}]}");
    assert_deps(bp, "b", (size_t[]){0}, 1);
    bp_destroy(bp);
}

static void test_long_chain(void **state)
{
    (void)state;
    /* 20000 steps in one chain: the cycle search must not recurse. */
    enum { N = 20000 };
    size_t cap = (size_t)N * 16 + 64, used = 0;
    char *json = malloc(cap);
    assert_non_null(json);
    used += (size_t)snprintf(json + used, cap - used, "{\"name\":\"long\",\"timeline\":[");
    for (int i = 0; i < N; i++)
        used += (size_t)snprintf(json + used, cap - used, "%s\"s%d\"", i ? "," : "", i);
    snprintf(json + used, cap - used, "]}");
    bp_blueprint_t *bp = parse_ok(json);
    assert_int_equal(bp->nsteps, N);
    assert_deps(bp, "s19999", (size_t[]){N - 2}, 1);
    assert_int_equal(bp_step_index(bp, "s12345"), 12345);
    assert_fixed_point(json);
    bp_destroy(bp);

    /* The same chain closed into a cycle: the message is cut short. */
    used = 0;
    used += (size_t)snprintf(json + used, cap - used,
                             "{\"name\":\"long\",\"steps\":[{\"name\":\"s0\",\"depends_on\":[\"s%d\"]}],"
                             "\"timeline\":[",
                             N - 1);
    used += (size_t)snprintf(json + used, cap - used, "{\"name\":\"s1\",\"depends_on\":[\"s0\"]}");
    for (int i = 2; i < N; i++)
        used += (size_t)snprintf(json + used, cap - used, ",\"s%d\"", i);
    snprintf(json + used, cap - used, "]}");
    expect_error(json, CBM_EBLUEPRINT, "dependency cycle: s0 -> s19999 -> s19998", " -> ...");
    free(json);
}

/* ------------------------------------------------------------------------ */
/* Validation errors                                                        */
/* ------------------------------------------------------------------------ */

static void test_malformed_json(void **state)
{
    (void)state;
    expect_error("", CBM_EJSON, "malformed JSON: empty input", NULL);
    expect_error("{\"name\": \"x\", \"steps\": [}", CBM_EJSON, "malformed JSON at line 1, column",
                 NULL);
    expect_error("{\n  \"name\": \"x\",\n  \"steps\": [\n    {\"name\": \"a\",}\n  ]\n}", CBM_EJSON,
                 "malformed JSON at line 4", NULL);
    expect_error("{\"name\":\"x\"," ONE_STEP "} trailing", CBM_EJSON,
                 "unexpected text after the blueprint at line 1, column 37 (byte 36)", NULL);
    expect_error("   ", CBM_EJSON, "malformed JSON", NULL);
}

static void test_top_level_errors(void **state)
{
    (void)state;
    expect_message("[]", "blueprint must be a JSON object");
    expect_message("\"x\"", "blueprint must be a JSON object");
    expect_message("{" ONE_STEP "}", "blueprint: name is missing");
    expect_message("{\"name\":\"\"," ONE_STEP "}", "blueprint: name is empty");
    expect_message("{\"name\":5," ONE_STEP "}", "blueprint: name must be a string");
    expect_message("{\"name\":\"my order\"," ONE_STEP "}",
                   "blueprint: name 'my order' may only contain letters, digits, '_', '.' and '-'");
    expect_error("{\"name\":\"n\\u00e9\"," ONE_STEP "}", CBM_EBLUEPRINT, "may only contain", NULL);
    char json[512];
    snprintf(json, sizeof(json), "{\"name\":\"%0129d\"," ONE_STEP "}", 0);
    expect_error(json, CBM_EBLUEPRINT, "blueprint: name '000", "is longer than 128 characters");
    snprintf(json, sizeof(json), "{\"name\":\"%0128d\"," ONE_STEP "}", 0);
    bp_destroy(parse_ok(json));

    expect_message("{\"name\":\"x\"}", "blueprint 'x' has no steps");
    expect_message("{\"name\":\"x\",\"steps\":[]}", "blueprint 'x' has no steps");
    expect_message("{\"name\":\"x\",\"steps\":[],\"timeline\":[]}", "blueprint 'x' has no steps");
    expect_message("{\"name\":\"x\",\"steps\":{}}", "blueprint 'x': steps must be an array");
    expect_message("{\"name\":\"x\",\"timeline\":\"a\"}", "blueprint 'x': timeline must be an array");
    expect_message("{\"name\":\"x\"," ONE_STEP ",\"stpes\":[]}",
                   "blueprint 'x': unknown key 'stpes' (allowed: name, steps, timeline, inputs, timeout_ms)");
    expect_message("{\"name\":\"x\"," ONE_STEP "," ONE_STEP "}",
                   "blueprint 'x': duplicate key 'steps'");
    expect_message("{\"name\":\"x\",\"Name\":\"y\"," ONE_STEP "}",
                   "blueprint 'x': unknown key 'Name' (allowed: name, steps, timeline, inputs, timeout_ms)");
}

static void test_step_shape_errors(void **state)
{
    (void)state;
    expect_message("{\"name\":\"x\",\"steps\":[5]}", "steps[0] must be an object");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},\"b\"]}", "steps[1] must be an object");
    expect_message("{\"name\":\"x\",\"timeline\":[\"a\",[]]}",
                   "timeline[1] must be a step name or a step object");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"handler\":\"h\"}]}",
                   "steps[1]: name is missing");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":null}]}", "steps[0]: name must be a string");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"\"}]}", "steps[0]: name is empty");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a/b\"}]}",
                   "steps[0]: name 'a/b' may only contain letters, digits, '_', '.' and '-'");
    expect_message("{\"name\":\"x\",\"timeline\":[\"a\",\"b c\"]}",
                   "timeline[1]: name 'b c' may only contain letters, digits, '_', '.' and '-'");
    expect_message("{\"name\":\"x\",\"timeline\":[\"a\",{\"kind\":\"task\"}]}",
                   "timeline[1]: name is missing");
    char json[512];
    snprintf(json, sizeof(json), "{\"name\":\"x\",\"steps\":[{\"name\":\"%0129d\"}]}", 7);
    expect_error(json, CBM_EBLUEPRINT, "steps[0]: name", "is longer than 128 characters");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"depend_on\":[\"b\"]},{\"name\":\"b\"}]}",
                   "step 'a': unknown key 'depend_on' (allowed: name, kind, handler, queue, "
                   "depends_on, timeout_ms, retry, heartbeat_timeout_ms, requires, args, diverge, branch)");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"handler\":\"h\",\"handler\":\"i\"}]}",
                   "step 'a': duplicate key 'handler'");
    /* A key of another kind, and the list of keys depends on the kind. */
    expect_message("{\"name\":\"x\",\"timeline\":[{\"name\":\"a\",\"duration_ms\":5}]}",
                   "step 'a': duration_ms is only for kind sleep");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":5,\"sleep_ms\":5"),
                   "step 'a': unknown key 'sleep_ms' (allowed: name, kind, handler, queue, "
                   "depends_on, timeout_ms, retry, duration_ms, until, diverge, branch)");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"blueprint\":\"d\""),
                   "step 'a': duplicate key 'blueprint'");
}

static void test_duplicate_names(void **state)
{
    (void)state;
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"a\"}]}",
                   "duplicate step name 'a' (steps[0] and steps[2])");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"z\"}],\"timeline\":[\"q\",\"z\"]}",
                   "duplicate step name 'z' (steps[0] and timeline[1])");
    /* The first repeated declaration is reported, not the first in name order. */
    expect_message("{\"name\":\"x\",\"timeline\":[\"b\",\"b\",\"a\",\"a\",\"a\"]}",
                   "duplicate step name 'b' (timeline[0] and timeline[1])");
    expect_message("{\"name\":\"x\",\"timeline\":[\"c\",\"a\",\"a\",\"a\"]}",
                   "duplicate step name 'a' (timeline[1] and timeline[2])");
}

static void test_dependency_errors(void **state)
{
    (void)state;
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\",\"depends_on\":[\"a\",\"x\"]}]}",
                   "step 'b': depends_on names unknown step 'x'");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"depends_on\":[\"a\"]}]}",
                   "step 'a' depends on itself");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"depends_on\":\"b\"},{\"name\":\"b\"}]}",
                   "step 'a': depends_on must be an array of step names");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"depends_on\":[\"b\",3]},{\"name\":\"b\"}]}",
                   "step 'a': depends_on[1] must be a string");
    /* Cycles: x -> y reads "x depends on y". */
    expect_message("{\"name\":\"x\",\"steps\":["
                   "{\"name\":\"a\",\"depends_on\":[\"c\"]},"
                   "{\"name\":\"b\",\"depends_on\":[\"a\"]},"
                   "{\"name\":\"c\",\"depends_on\":[\"b\"]}]}",
                   "dependency cycle: a -> c -> b -> a");
    expect_message("{\"name\":\"x\",\"steps\":["
                   "{\"name\":\"r\",\"depends_on\":[\"p\"]},"
                   "{\"name\":\"p\",\"depends_on\":[\"q\"]},"
                   "{\"name\":\"q\",\"depends_on\":[\"p\"]}]}",
                   "dependency cycle: p -> q -> p");
    expect_message("{\"name\":\"x\",\"timeline\":[{\"name\":\"a\",\"depends_on\":[\"c\"]},\"b\",\"c\"]}",
                   "dependency cycle: a -> c -> b -> a");
}

static void test_field_errors(void **state)
{
    (void)state;
    expect_message(STEP("\"kind\":1"), "step 'a': kind must be a string");
    expect_message(STEP("\"kind\":\"loop\""),
                   "step 'a': unknown kind 'loop' (expected task, sleep, approval, signal, "
                   "subworkflow or deliberation)");
    expect_message(STEP("\"kind\":\"Task\""),
                   "step 'a': unknown kind 'Task' (expected task, sleep, approval, signal, "
                   "subworkflow or deliberation)");
    expect_message(STEP("\"handler\":\"\""), "step 'a': handler must be a non-empty string");
    expect_message(STEP("\"handler\":7"), "step 'a': handler must be a non-empty string");
    expect_message(STEP("\"handler\":\"h\\u0001\""), "step 'a': handler contains a control character");
    expect_message(STEP("\"queue\":null"), "step 'a': queue must be a non-empty string");
    expect_message(STEP("\"queue\":\"gpu queue\""),
                   "step 'a': queue 'gpu queue' may only contain letters, digits, '_', '.' and '-'");
    char json[512];
    snprintf(json, sizeof(json), STEP("\"handler\":\"%0129d\""), 1);
    expect_message(json, "step 'a': handler is longer than 128 characters");

    expect_message(STEP("\"timeout_ms\":-1"), "step 'a': timeout_ms must be a non-negative integer");
    expect_message(STEP("\"timeout_ms\":1.5"), "step 'a': timeout_ms must be a non-negative integer");
    expect_message(STEP("\"timeout_ms\":\"5s\""), "step 'a': timeout_ms must be a non-negative integer");
    expect_message(STEP("\"timeout_ms\":1e300"),
                   "step 'a': timeout_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"timeout_ms\":315360000001"),
                   "step 'a': timeout_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"timeout_ms\":9007199254740992"),
                   "step 'a': timeout_ms must be at most 315360000000 (10 years)");
    expect_error(STEP("\"timeout_ms\":1e999"), CBM_EBLUEPRINT, "step 'a': timeout_ms", NULL);
}

static void test_retry_errors(void **state)
{
    (void)state;
    expect_message(STEP("\"retry\":3"), "step 'a': retry must be an object");
    expect_message(STEP("\"retry\":{\"max_attempt\":3}"),
                   "step 'a': retry: unknown key 'max_attempt' (allowed: max_attempts, initial_ms, "
                   "max_ms, multiplier, non_retryable)");
    expect_message(STEP("\"retry\":{\"max_ms\":1,\"max_ms\":2}"), "step 'a': retry: duplicate key 'max_ms'");
    expect_message(STEP("\"retry\":{\"max_attempts\":0}"),
                   "step 'a': retry.max_attempts must be an integer from 1 to 1000");
    expect_message(STEP("\"retry\":{\"max_attempts\":1001}"),
                   "step 'a': retry.max_attempts must be an integer from 1 to 1000");
    expect_message(STEP("\"retry\":{\"max_attempts\":2.5}"),
                   "step 'a': retry.max_attempts must be an integer from 1 to 1000");
    expect_message(STEP("\"retry\":{\"initial_ms\":0}"),
                   "step 'a': retry.initial_ms must be a positive integer");
    expect_message(STEP("\"retry\":{\"max_ms\":\"1m\"}"), "step 'a': retry.max_ms must be a positive integer");
    expect_message(STEP("\"retry\":{\"max_ms\":-5}"), "step 'a': retry.max_ms must be a positive integer");
    expect_message(STEP("\"retry\":{\"initial_ms\":315360000001}"),
                   "step 'a': retry.initial_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"retry\":{\"max_ms\":1e16}"),
                   "step 'a': retry.max_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"retry\":{\"initial_ms\":1000,\"max_ms\":500}"),
                   "step 'a': retry.max_ms (500) must be >= retry.initial_ms (1000)");
    /* Checked on the policy after defaults: max_ms defaults to 60000. */
    expect_message(STEP("\"retry\":{\"initial_ms\":120000}"),
                   "step 'a': retry.max_ms (60000) must be >= retry.initial_ms (120000)");
    expect_message(STEP("\"retry\":{\"multiplier\":0.5}"), "step 'a': retry.multiplier must be a number >= 1");
    expect_message(STEP("\"retry\":{\"multiplier\":\"2\"}"), "step 'a': retry.multiplier must be a number >= 1");
    expect_message(STEP("\"retry\":{\"non_retryable\":\"bad_input\"}"),
                   "step 'a': retry.non_retryable must be an array of error kinds");
    expect_message(STEP("\"retry\":{\"non_retryable\":[\"x\",\"\"]}"),
                   "step 'a': retry.non_retryable[1] must be a non-empty string");
    expect_message(STEP("\"retry\":{\"non_retryable\":[\"x\",\"y\",false]}"),
                   "step 'a': retry.non_retryable[2] must be a non-empty string");
}

/* ------------------------------------------------------------------------ */
/* Canonical JSON and version                                               */
/* ------------------------------------------------------------------------ */

static void test_same_meaning_same_version(void **state)
{
    (void)state;
    /* Key order and white space. */
    assert_same_version(
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"handler\":\"h\",\"timeout_ms\":5}]}",
        "{ \"steps\" : [ { \"timeout_ms\" : 5 ,\n\"handler\":\"h\", \"name\":\"a\" } ],\n"
        "  \"name\" : \"o\" }");
    /* Defaults omitted or given. */
    assert_same_version(
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\"}]}",
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"kind\":\"task\",\"handler\":\"a\","
        "\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":{\"max_attempts\":1,"
        "\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2.0,\"non_retryable\":[]}}]}");
    assert_same_version("{\"name\":\"o\",\"steps\":[{\"name\":\"a\"}]}",
                        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"retry\":{}}]}");
    /* Timeline or explicit depends_on. */
    assert_same_version(
        "{\"name\":\"o\",\"timeline\":[\"a\",\"b\",{\"name\":\"c\",\"queue\":\"gpu\"}]}",
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\",\"depends_on\":[\"a\"]},"
        "{\"name\":\"c\",\"queue\":\"gpu\",\"depends_on\":[\"b\"]}]}");
    /* depends_on and non_retryable are sets. */
    assert_same_version(
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\"},"
        "{\"name\":\"c\",\"depends_on\":[\"b\",\"a\",\"b\"],"
        "\"retry\":{\"non_retryable\":[\"y\",\"x\",\"y\"]}}]}",
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\"},"
        "{\"name\":\"c\",\"depends_on\":[\"a\",\"b\"],\"retry\":{\"non_retryable\":[\"x\",\"y\"]}}]}");
    /* One JSON number type. */
    assert_same_version(
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"timeout_ms\":5000,\"retry\":{\"multiplier\":3}}]}",
        "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"timeout_ms\":5e3,\"retry\":{\"multiplier\":3.0}}]}");
}

static void test_different_meaning_other_version(void **state)
{
    (void)state;
    const char *base = "{\"name\":\"o\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\"}]}";
    assert_other_version(base, "{\"name\":\"p\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\"}]}");
    assert_other_version(base, "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"handler\":\"h\"},{\"name\":\"b\"}]}");
    assert_other_version(base, "{\"name\":\"o\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\",\"depends_on\":[\"a\"]}]}");
    assert_other_version(base, "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"timeout_ms\":1},{\"name\":\"b\"}]}");
    assert_other_version(base, "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"kind\":\"approval\"},{\"name\":\"b\"}]}");
    assert_other_version(base, "{\"name\":\"o\",\"steps\":[{\"name\":\"a\",\"retry\":{\"multiplier\":2.5}},{\"name\":\"b\"}]}");
    /* Declaration order is kept (it is the order ready steps are scheduled in). */
    assert_other_version(base, "{\"name\":\"o\",\"steps\":[{\"name\":\"b\"},{\"name\":\"a\"}]}");
}

static void test_fixed_point(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "{\"name\":\"x\"," ONE_STEP "}",
        "{\"name\":\"t\",\"timeline\":[\"a\",\"b\",{\"name\":\"c\",\"handler\":\"h\","
        "\"depends_on\":[\"x\"]}],\"steps\":[{\"name\":\"x\",\"depends_on\":[\"a\"]}]}",
        "{\"name\":\"dia\",\"steps\":[{\"name\":\"d\",\"depends_on\":[\"c\",\"b\"]},"
        "{\"name\":\"a\"},{\"name\":\"b\",\"depends_on\":[\"a\"]},{\"name\":\"c\",\"depends_on\":[\"a\"]}]}",
        "{\"name\":\"r\",\"steps\":[{\"name\":\"a\",\"kind\":\"approval\",\"queue\":\"gpu\","
        "\"timeout_ms\":315360000000,\"retry\":{\"max_attempts\":7,\"initial_ms\":3,"
        "\"max_ms\":315360000000,\"multiplier\":1.1,\"non_retryable\":[\"q\",\"p\"]}}]}",
        "{\"name\":\"u\",\"steps\":[{\"name\":\"a\",\"handler\":\"caf\\u00e9 \\\"v2\\\"\"}]}",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) assert_fixed_point(inputs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_fields),
        cmocka_unit_test(test_retry_partial_defaults),
        cmocka_unit_test(test_large_integers),
        cmocka_unit_test(test_length_is_respected),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_step_index),
        cmocka_unit_test(test_diamond),
        cmocka_unit_test(test_timeline),
        cmocka_unit_test(test_long_chain),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_top_level_errors),
        cmocka_unit_test(test_step_shape_errors),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_dependency_errors),
        cmocka_unit_test(test_field_errors),
        cmocka_unit_test(test_retry_errors),
        cmocka_unit_test(test_same_meaning_same_version),
        cmocka_unit_test(test_different_meaning_other_version),
        cmocka_unit_test(test_fixed_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
