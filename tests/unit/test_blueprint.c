/*
 * test_blueprint.c - the blueprint model: parsing, defaults, timeline sugar,
 * dependencies, kind-specific fields, RFC 3339 times, diverge rules, branch
 * entries and conditions, input declarations and bp_check_inputs(), every
 * validation error, canonical JSON and version, the builder, and allocation
 * failures.
 *
 * Inputs are copied into a buffer of exactly their length (no NUL) before
 * parsing, so ASan catches any read past the len that bp_parse_json was given.
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

/* Public (cerebelum.h); declared here too for a header that does not have it
 * yet. */
CBM_EXTERN int cbm_builder_set(cbm_builder_t *b, const char *step, const char *key,
                               const char *value_json);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static int parse_exact(const char *json, bp_blueprint_t **out, cbm_error_t *err)
{
    size_t len = strlen(json);
    char *buf = malloc(len ? len : 1);
    int rc;
    assert_non_null(buf);
    memcpy(buf, json, len);
    rc = bp_parse_json(buf, len, out, err);
    free(buf);
    return rc;
}

static bp_blueprint_t *parse_ok(const char *json)
{
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    int rc = parse_exact(json, &bp, &err);
    if (rc != 0) fail_msg("parse failed: %s: %s\n  input: %s", cbm_err_name(rc), err.message, json);
    assert_non_null(bp);
    assert_int_equal(strlen(bp->version), 64);
    assert_non_null(bp->canonical_json);
    return bp;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (needle != NULL && strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/* Parse must fail with code; the message must contain want1 and want2. */
static void expect_error(const char *json, int code, const char *want1, const char *want2)
{
    bp_blueprint_t *bp = (bp_blueprint_t *)&bp; /* must be reset to NULL */
    cbm_error_t err = {0};
    int rc = parse_exact(json, &bp, &err);
    if (rc != code)
        fail_msg("expected %s, got %s (%s)\n  input: %s", cbm_err_name(code), cbm_err_name(rc),
                 err.message, json);
    assert_null(bp);
    assert_int_equal(err.code, code);
    assert_contains(err.message, want1);
    assert_contains(err.message, want2);
}

static void expect_message(const char *json, const char *message)
{
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    int rc = parse_exact(json, &bp, &err);
    if (rc == 0) fail_msg("parse succeeded, expected \"%s\"\n  input: %s", message, json);
    assert_null(bp);
    assert_string_equal(err.message, message);
}

static void version_of(const char *json, char version[65])
{
    bp_blueprint_t *bp = parse_ok(json);
    memcpy(version, bp->version, 65);
    bp_destroy(bp);
}

static void assert_same_version(const char *a, const char *b)
{
    bp_blueprint_t *x = parse_ok(a), *y = parse_ok(b);
    if (strcmp(x->canonical_json, y->canonical_json) != 0)
        fail_msg("canonical JSON differs:\n  %s\n  %s", x->canonical_json, y->canonical_json);
    assert_string_equal(x->version, y->version);
    bp_destroy(x);
    bp_destroy(y);
}

static void assert_other_version(const char *a, const char *b)
{
    char va[65], vb[65];
    version_of(a, va);
    version_of(b, vb);
    assert_string_not_equal(va, vb);
}

/* Parsing the canonical JSON again gives the same canonical JSON. */
static void assert_fixed_point(const char *json)
{
    bp_blueprint_t *a = parse_ok(json);
    bp_blueprint_t *b = parse_ok(a->canonical_json);
    assert_string_equal(a->canonical_json, b->canonical_json);
    assert_string_equal(a->version, b->version);
    bp_destroy(a);
    bp_destroy(b);
}

static void assert_deps(const bp_blueprint_t *bp, const char *step, const size_t *want, size_t n)
{
    int i = bp_step_index(bp, step);
    assert_true(i >= 0);
    const bp_step_t *s = &bp->steps[i];
    if (s->ndeps != n) fail_msg("step '%s': %zu deps, expected %zu", step, s->ndeps, n);
    for (size_t k = 0; k < n; k++) assert_int_equal(s->deps[k], want[k]);
}

#define ONE_STEP "\"steps\":[{\"name\":\"a\"}]"
/* A blueprint of one step 'a' with the given extra fields. */
#define STEP(fields) "{\"name\":\"x\",\"steps\":[{\"name\":\"a\"," fields "}]}"

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
        "{\"name\":\"d\",\"kind\":\"deliberation\"}]}");
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

    /* A NUL inside len ends the text, as a C string would. */
    const char with_nul[] = "{\"name\":\"x\"," ONE_STEP "}\n";
    assert_int_equal(bp_parse_json(with_nul, sizeof(with_nul), &bp, &err), 0);
    bp_destroy(bp);

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
                   "depends_on, timeout_ms, retry, heartbeat_timeout_ms, requires, diverge, branch)");
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

/* ------------------------------------------------------------------------ */
/* RFC 3339 times                                                           */
/* ------------------------------------------------------------------------ */

static int64_t time_ok(const char *text)
{
    int64_t us = -7;
    const char *why = "unset";
    int rc = bp_parse_time(text, &us, &why);
    if (rc != 0) fail_msg("'%s' refused: %s", text, why);
    assert_null(why);
    return us;
}

static void time_bad(const char *text, const char *reason)
{
    int64_t us = -7;
    const char *why = NULL;
    if (bp_parse_time(text, &us, &why) != CBM_EINVAL) fail_msg("'%s' accepted", text);
    assert_int_equal(us, -7);
    assert_non_null(why);
    assert_string_equal(why, reason);
}

static void test_time_parse(void **state)
{
    (void)state;
    /* UTC, offsets, fractions. */
    assert_int_equal(time_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(time_ok("2026-12-01T10:00:00Z"), INT64_C(1796119200000000));
    assert_int_equal(time_ok("2026-12-01t10:00:00z"), INT64_C(1796119200000000));
    assert_int_equal(time_ok("2026-12-01T11:30:00.25+01:30"), INT64_C(1796119200250000));
    assert_int_equal(time_ok("2026-12-01T09:00:00-01:00"), INT64_C(1796119200000000));
    assert_int_equal(time_ok("2026-12-01T10:00:00+00:00"), INT64_C(1796119200000000));
    assert_int_equal(time_ok("2026-12-01T10:00:00-00:00"), INT64_C(1796119200000000));
    assert_int_equal(time_ok("1970-01-01T01:00:00+01:00"), 0);
    assert_int_equal(time_ok("2024-02-29T23:59:59.999999-00:30"), INT64_C(1709252999999999));
    /* Beyond the microsecond: truncated. */
    assert_int_equal(time_ok("2026-12-01T10:00:00.1234567891Z"), INT64_C(1796119200123456));
    assert_int_equal(time_ok("2026-12-01T10:00:00.000001Z"), INT64_C(1796119200000001));
    /* Leap years: every 4, not every 100, every 400. */
    assert_int_equal(time_ok("2000-02-29T12:00:00Z"), INT64_C(951825600000000));
    time_ok("2024-02-29T00:00:00Z");
    time_bad("2100-02-29T00:00:00Z", "day out of range for the month");
    time_bad("2025-02-29T00:00:00Z", "day out of range for the month");
    time_bad("2026-02-30T10:00:00Z", "day out of range for the month");
    time_bad("2026-04-31T10:00:00Z", "day out of range for the month");
    time_bad("2026-01-00T10:00:00Z", "day out of range for the month");
    time_bad("2026-01-32T10:00:00Z", "day out of range for the month");
    time_ok("2026-01-31T10:00:00Z");
    time_bad("2026-13-01T10:00:00Z", "month out of range");
    time_bad("2026-00-01T10:00:00Z", "month out of range");
    time_bad("2026-12-01T24:00:00Z", "hour out of range");
    time_bad("2026-12-01T10:60:00Z", "minute out of range");
    time_bad("2026-12-31T23:59:60Z", "second out of range (leap seconds are not supported)");
    time_bad("2026-12-01T10:00:00+24:00", "offset out of range");
    time_bad("2026-12-01T10:00:00+01:60", "offset out of range");
    time_bad("1969-12-31T23:59:59Z", "before 1970-01-01T00:00:00Z");
    time_bad("1970-01-01T00:30:00+01:00", "before 1970-01-01T00:00:00Z");
    time_bad("0000-01-01T00:00:00Z", "before 1970-01-01T00:00:00Z");
    assert_int_equal(time_ok("9999-12-31T23:59:59.999999Z"), INT64_C(253402300799999999));
    time_bad("9999-12-31T23:00:00-01:00", "after 9999-12-31T23:59:59Z");
    /* Syntax. */
    static const char *const syntax[] = {
        "", "2026-12-01", "2026-12-01T10:00:00", "2026-12-01 10:00:00Z", "2026-12-1T10:00:00Z",
        "26-12-01T10:00:00Z", "2026-12-01T10:00Z", "2026-12-01T10:00:00.Z",
        "2026-12-01T10:00:00ZZ", "2026-12-01T10:00:00+0100", "2026-12-01T10:00:00+01",
        "2026/12/01T10:00:00Z", " 2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z ",
        "+2026-12-01T10:00:00Z", "2026-12-01T1a:00:00Z", "tomorrow",
    };
    for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
        time_bad(syntax[i],
                 "expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or an offset +HH:MM / -HH:MM");
    int64_t us;
    assert_int_equal(bp_parse_time(NULL, &us, NULL), CBM_EINVAL);
    assert_int_equal(bp_parse_time("2026-12-01T10:00:00Z", NULL, NULL), CBM_EINVAL);
}

static void test_time_format(void **state)
{
    (void)state;
    char buf[32];
    bp_format_time(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    bp_format_time(INT64_C(1796119200000000), buf);
    assert_string_equal(buf, "2026-12-01T10:00:00Z");
    bp_format_time(INT64_C(1796119200250000), buf);
    assert_string_equal(buf, "2026-12-01T10:00:00.25Z");
    bp_format_time(INT64_C(1709252999999999), buf);
    assert_string_equal(buf, "2024-03-01T00:29:59.999999Z");
    bp_format_time(INT64_C(253402300799999999), buf);
    assert_string_equal(buf, "9999-12-31T23:59:59.999999Z");
    bp_format_time(INT64_C(951825600000001), buf);
    assert_string_equal(buf, "2000-02-29T12:00:00.000001Z");
    /* Round trip over a spread of instants, leap days included. */
    for (int64_t s = 0; s < INT64_C(253402300799); s += INT64_C(86399) * 37 + 11) {
        int64_t us = s * 1000000 + (s % 1000003), back = -1;
        bp_format_time(us, buf);
        assert_int_equal(bp_parse_time(buf, &back, NULL), 0);
        assert_int_equal(back, us);
    }
}

/* ------------------------------------------------------------------------ */
/* Kind-specific fields                                                     */
/* ------------------------------------------------------------------------ */

static void test_sleep(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":30000},"
        "{\"name\":\"wake\",\"kind\":\"sleep\",\"until\":\"2026-12-01T11:30:00.250+01:30\"},"
        "{\"name\":\"now\",\"kind\":\"sleep\",\"duration_ms\":0},"
        "{\"name\":\"t\"}]}");
    assert_int_equal(bp->steps[0].sleep_ms, 30000);
    assert_int_equal(bp->steps[0].sleep_until_us, -1);
    assert_int_equal(bp->steps[1].sleep_ms, -1);
    assert_int_equal(bp->steps[1].sleep_until_us, INT64_C(1796119200250000));
    assert_int_equal(bp->steps[2].sleep_ms, 0);
    /* Not a sleep: both -1. */
    assert_int_equal(bp->steps[3].sleep_ms, -1);
    assert_int_equal(bp->steps[3].sleep_until_us, -1);
    /* until is printed in UTC. */
    assert_contains(bp->canonical_json, "\"retry\":{\"max_attempts\":1,\"initial_ms\":1000,"
                                        "\"max_ms\":60000,\"multiplier\":2,\"non_retryable\":[]},"
                                        "\"duration_ms\":30000}");
    assert_contains(bp->canonical_json, "\"until\":\"2026-12-01T10:00:00.25Z\"}");
    assert_contains(bp->canonical_json, "\"duration_ms\":0}");
    bp_destroy(bp);
    /* The same instant in any offset is the same blueprint. */
    assert_same_version(STEP("\"kind\":\"sleep\",\"until\":\"2026-12-01T10:00:00Z\""),
                        STEP("\"kind\":\"sleep\",\"until\":\"2026-12-01T05:00:00.000-05:00\""));
    assert_other_version(STEP("\"kind\":\"sleep\",\"duration_ms\":1"),
                         STEP("\"kind\":\"sleep\",\"duration_ms\":2"));
    bp_destroy(parse_ok(STEP("\"kind\":\"sleep\",\"duration_ms\":315360000000")));

    expect_message(STEP("\"kind\":\"sleep\""), "step 'a': sleep needs duration_ms or until");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":5,\"until\":\"2026-12-01T10:00:00Z\""),
                   "step 'a': sleep takes duration_ms or until, not both");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":-1"),
                   "step 'a': duration_ms must be a non-negative integer");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":0.5"),
                   "step 'a': duration_ms must be a non-negative integer");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":\"30s\""),
                   "step 'a': duration_ms must be a non-negative integer");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":315360000001"),
                   "step 'a': duration_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":1e300"),
                   "step 'a': duration_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"kind\":\"sleep\",\"until\":1796119200"),
                   "step 'a': until must be a string (an RFC 3339 time)");
    expect_message(STEP("\"kind\":\"sleep\",\"until\":\"2026-02-30T10:00:00Z\""),
                   "step 'a': until '2026-02-30T10:00:00Z' is not a valid RFC 3339 time: day out "
                   "of range for the month");
    expect_message(STEP("\"kind\":\"sleep\",\"until\":\"2026-12-01 10:00\""),
                   "step 'a': until '2026-12-01 10:00' is not a valid RFC 3339 time: expected "
                   "YYYY-MM-DDTHH:MM:SS[.fraction] and Z or an offset +HH:MM / -HH:MM");
    expect_message(STEP("\"kind\":\"sleep\",\"until\":\"1960-01-01T00:00:00Z\""),
                   "step 'a': until '1960-01-01T00:00:00Z' is not a valid RFC 3339 time: before "
                   "1970-01-01T00:00:00Z");
    expect_message(STEP("\"until\":\"2026-12-01T10:00:00Z\""), "step 'a': until is only for kind sleep");
    expect_message(STEP("\"kind\":\"approval\",\"duration_ms\":5"),
                   "step 'a': duration_ms is only for kind sleep");
}

static void test_approval_and_signal(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"ok\",\"kind\":\"approval\",\"timeout_ms\":86400000},"
        "{\"name\":\"ok2\",\"kind\":\"approval\",\"approval_type\":\"manager.signoff\"},"
        "{\"name\":\"wait\",\"kind\":\"signal\"},"
        "{\"name\":\"wait2\",\"kind\":\"signal\",\"signal\":\"payment-received\",\"timeout_ms\":0},"
        "{\"name\":\"t\"}]}");
    assert_string_equal(bp->steps[0].approval_type, "ok");
    assert_int_equal(bp->steps[0].timeout_ms, 86400000);
    assert_null(bp->steps[0].signal);
    assert_string_equal(bp->steps[1].approval_type, "manager.signoff");
    assert_string_equal(bp->steps[2].signal, "wait");
    assert_null(bp->steps[2].approval_type);
    assert_string_equal(bp->steps[3].signal, "payment-received");
    assert_null(bp->steps[4].signal);
    assert_null(bp->steps[4].approval_type);
    /* Printed only when they differ from the step's name. */
    assert_contains(bp->canonical_json, "\"approval_type\":\"manager.signoff\"");
    assert_contains(bp->canonical_json, "\"signal\":\"payment-received\"");
    assert_null(strstr(bp->canonical_json, "\"approval_type\":\"ok\""));
    assert_null(strstr(bp->canonical_json, "\"signal\":\"wait\""));
    bp_destroy(bp);
    assert_same_version(STEP("\"kind\":\"approval\""),
                        STEP("\"kind\":\"approval\",\"approval_type\":\"a\""));
    assert_same_version(STEP("\"kind\":\"signal\""), STEP("\"kind\":\"signal\",\"signal\":\"a\""));
    assert_other_version(STEP("\"kind\":\"signal\""), STEP("\"kind\":\"signal\",\"signal\":\"b\""));

    expect_message(STEP("\"kind\":\"approval\",\"approval_type\":\"\""),
                   "step 'a': approval_type must be a non-empty string");
    expect_message(STEP("\"kind\":\"approval\",\"approval_type\":\"two words\""),
                   "step 'a': approval_type 'two words' may only contain letters, digits, '_', '.' "
                   "and '-'");
    expect_message(STEP("\"kind\":\"approval\",\"timeout_ms\":-5"),
                   "step 'a': timeout_ms must be a non-negative integer");
    expect_message(STEP("\"kind\":\"approval\",\"timeout_ms\":400000000000"),
                   "step 'a': timeout_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"kind\":\"signal\",\"signal\":7"),
                   "step 'a': signal must be a non-empty string");
    expect_message(STEP("\"kind\":\"signal\",\"signal\":\"a/b\""),
                   "step 'a': signal 'a/b' may only contain letters, digits, '_', '.' and '-'");
    expect_message(STEP("\"signal\":\"s\""), "step 'a': signal is only for kind signal");
    expect_message(STEP("\"kind\":\"signal\",\"approval_type\":\"s\""),
                   "step 'a': approval_type is only for kind approval");
}

static void test_task_fields(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(STEP(
        "\"queue\":\"gpu\",\"timeout_ms\":60000,\"heartbeat_timeout_ms\":5000,"
        "\"requires\":{\"model\":\"a100\",\"gpu\":\"true\",\"region\":\"\"}"));
    const bp_step_t *s = &bp->steps[0];
    assert_int_equal(s->heartbeat_timeout_ms, 5000);
    assert_int_equal(s->nrequires, 3);
    assert_string_equal(s->requires[0].key, "gpu");
    assert_string_equal(s->requires[0].value, "true");
    assert_string_equal(s->requires[1].key, "model");
    assert_string_equal(s->requires[1].value, "a100");
    assert_string_equal(s->requires[2].key, "region");
    assert_string_equal(s->requires[2].value, "");
    assert_contains(bp->canonical_json, "\"non_retryable\":[]},\"heartbeat_timeout_ms\":5000,"
                                        "\"requires\":{\"gpu\":\"true\",\"model\":\"a100\","
                                        "\"region\":\"\"}}]}");
    bp_destroy(bp);
    /* No deadline: the heartbeat time-out may be anything. */
    bp = parse_ok(STEP("\"heartbeat_timeout_ms\":315360000000"));
    assert_int_equal(bp->steps[0].heartbeat_timeout_ms, BP_MAX_DURATION_MS);
    assert_int_equal(bp->steps[0].nrequires, 0);
    assert_null(bp->steps[0].requires);
    bp_destroy(bp);
    /* requires is a map: order does not matter; {} is none; 0 is the default. */
    assert_same_version(STEP("\"requires\":{\"b\":\"1\",\"a\":\"2\"}"),
                        STEP("\"requires\":{\"a\":\"2\",\"b\":\"1\"}"));
    assert_same_version(STEP("\"requires\":{}"), STEP("\"heartbeat_timeout_ms\":0"));
    assert_same_version(STEP("\"requires\":{}"), "{\"name\":\"x\",\"steps\":[{\"name\":\"a\"}]}");
    assert_other_version(STEP("\"requires\":{\"a\":\"1\"}"), STEP("\"requires\":{\"a\":\"2\"}"));

    expect_message(STEP("\"timeout_ms\":1000,\"heartbeat_timeout_ms\":2000"),
                   "step 'a': heartbeat_timeout_ms (2000) must be at most timeout_ms (1000)");
    expect_message(STEP("\"heartbeat_timeout_ms\":-1"),
                   "step 'a': heartbeat_timeout_ms must be a non-negative integer");
    expect_message(STEP("\"heartbeat_timeout_ms\":315360000001"),
                   "step 'a': heartbeat_timeout_ms must be at most 315360000000 (10 years)");
    expect_message(STEP("\"requires\":[\"gpu\"]"), "step 'a': requires must be an object of strings");
    expect_message(STEP("\"requires\":{\"gpu\":true}"), "step 'a': requires.gpu must be a string");
    expect_message(STEP("\"requires\":{\"\":\"x\"}"), "step 'a': requires: capability name is empty");
    expect_message(STEP("\"requires\":{\"g p u\":\"x\"}"),
                   "step 'a': requires: capability name 'g p u' must be 1 to 128 letters, digits, "
                   "'_', '.' or '-'");
    expect_message(STEP("\"requires\":{\"gpu\":\"a\\u0007\"}"),
                   "step 'a': requires.gpu contains a control character");
    expect_message(STEP("\"requires\":{\"gpu\":\"a\",\"gpu\":\"b\"}"),
                   "step 'a': requires: duplicate capability 'gpu'");
    char json[512];
    snprintf(json, sizeof(json), STEP("\"requires\":{\"k\":\"%0129d\"}"), 3);
    expect_message(json, "step 'a': requires.k is longer than 128 characters");
    expect_message(STEP("\"kind\":\"sleep\",\"duration_ms\":1,\"requires\":{}"),
                   "step 'a': requires is only for kind task");
    expect_message(STEP("\"kind\":\"approval\",\"heartbeat_timeout_ms\":1"),
                   "step 'a': heartbeat_timeout_ms is only for kind task");
}

#define VERSION_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_subworkflow(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"parent\",\"inputs\":{\"topic\":{\"type\":\"string\"}},\"steps\":["
        "{\"name\":\"gen\"},"
        "{\"name\":\"child\",\"kind\":\"subworkflow\",\"depends_on\":[\"gen\"],"
        "\"blueprint\":\"review\",\"version\":\"" VERSION_A "\","
        "\"inputs\":{\"z\":\"$.deps.gen.text\",\"a\":\"$.inputs.topic\",\"all\":\"$.inputs\","
        "\"nested\":{\"y\":[\"$.deps.gen\",\"$.deps.gen.parts[0]\",1],\"x\":\"lit\"},\"cost\":\"$5\"}},"
        "{\"name\":\"latest\",\"kind\":\"subworkflow\",\"blueprint\":\"review\"}]}");
    const bp_step_t *s = &bp->steps[1];
    assert_string_equal(s->sub_blueprint, "review");
    assert_string_equal(s->sub_version, VERSION_A);
    assert_non_null(s->sub_inputs);
    /* Canonical: object keys sorted, at every depth. */
    assert_string_equal(s->sub_inputs_json,
                        "{\"a\":\"$.inputs.topic\",\"all\":\"$.inputs\",\"cost\":\"$5\","
                        "\"nested\":{\"x\":\"lit\",\"y\":[\"$.deps.gen\",\"$.deps.gen.parts[0]\",1]},"
                        "\"z\":\"$.deps.gen.text\"}");
    assert_contains(bp->canonical_json, "\"blueprint\":\"review\",\"version\":\"" VERSION_A
                                        "\",\"inputs\":{\"a\":\"$.inputs.topic\"");
    /* The template builds the child's inputs from the step's input. */
    cJSON *data = cJSON_Parse("{\"inputs\":{\"topic\":\"cats\"},\"deps\":{\"gen\":"
                              "{\"text\":\"t\",\"parts\":[\"p0\"]}}}");
    cJSON *child = NULL;
    assert_int_equal(match_template(s->sub_inputs, data, &child), 0);
    char *text = cJSON_PrintUnformatted(child);
    assert_string_equal(text, "{\"a\":\"cats\",\"all\":{\"topic\":\"cats\"},\"cost\":\"$5\","
                              "\"nested\":{\"x\":\"lit\",\"y\":[{\"text\":\"t\",\"parts\":[\"p0\"]},"
                              "\"p0\",1]},\"z\":\"t\"}");
    cJSON_free(text);
    cJSON_Delete(child);
    cJSON_Delete(data);
    s = &bp->steps[2];
    assert_string_equal(s->sub_blueprint, "review");
    assert_null(s->sub_version);
    assert_null(s->sub_inputs);
    assert_null(s->sub_inputs_json);
    assert_null(bp->steps[0].sub_blueprint);
    bp_destroy(bp);

    /* Without input declarations any $.inputs reference is fine. */
    bp_destroy(parse_ok(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\","
                             "\"inputs\":{\"q\":\"$.inputs.anything[3].x\"}")));
    /* {} is the same as no template. */
    assert_same_version(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{}"),
                        STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\""));
    assert_same_version(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{\"b\":1,\"a\":2}"),
                        STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{\"a\":2,\"b\":1.0}"));

    expect_message(STEP("\"kind\":\"subworkflow\""), "step 'a': subworkflow needs blueprint");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"\""),
                   "step 'a': blueprint must be a non-empty string");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"my child\""),
                   "step 'a': blueprint 'my child' may only contain letters, digits, '_', '.' and "
                   "'-'");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"version\":\"abc\""),
                   "step 'a': version must be a blueprint version (64 lowercase hex digits)");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"version\":"
                        "\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\""),
                   "step 'a': version must be a blueprint version (64 lowercase hex digits)");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":[1]"),
                   "step 'a': inputs must be an object");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{\"k\":1,\"k\":2}"),
                   "step 'a': inputs has a duplicate key 'k'");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{\"k\":[1e999]}"),
                   "step 'a': inputs has a number out of range");
    static const char *const malformed[] = {"$.foo", "$.inputs..x", "$.deps", "$.deps.",
                                            "$.depsx.a", "$.inputsx", "$.inputs[0]", "$.",
                                            "$.deps.a..b"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        char json[512], want[256];
        snprintf(json, sizeof(json),
                 "{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"name\":\"s\",\"kind\":\"subworkflow\","
                 "\"depends_on\":[\"a\"],\"blueprint\":\"c\",\"inputs\":{\"k\":[{\"r\":\"%s\"}]}}]}",
                 malformed[i]);
        snprintf(want, sizeof(want),
                 "step 's': inputs: malformed reference '%s' (expected $.inputs or "
                 "$.deps.<step>, then an optional path)",
                 malformed[i]);
        expect_message(json, want);
    }
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"name\":\"s\",\"kind\":\"subworkflow\","
                   "\"depends_on\":[\"a\"],\"blueprint\":\"c\",\"inputs\":{\"k\":\"$.deps.b.x\"}}]}",
                   "step 's': inputs: reference '$.deps.b.x' names unknown step 'b'");
    expect_message("{\"name\":\"x\",\"steps\":[{\"name\":\"a\"},{\"name\":\"b\",\"depends_on\":[\"a\"]},"
                   "{\"name\":\"s\",\"kind\":\"subworkflow\",\"depends_on\":[\"b\"],\"blueprint\":\"c\","
                   "\"inputs\":{\"k\":\"$.deps.a\"}}]}",
                   "step 's': inputs: reference '$.deps.a' names step 'a', which 's' does not "
                   "depend on");
    expect_message("{\"name\":\"x\",\"inputs\":{\"topic\":{}},\"steps\":[{\"name\":\"s\","
                   "\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{\"k\":\"$.inputs.topc\"}}]}",
                   "step 's': inputs: reference '$.inputs.topc' names undeclared input 'topc'");
    expect_message("{\"name\":\"x\",\"inputs\":{},\"steps\":[{\"name\":\"s\","
                   "\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"inputs\":{\"k\":\"$.inputs.t[0]\"}}]}",
                   "step 's': inputs: reference '$.inputs.t[0]' names undeclared input 't'");
    expect_message(STEP("\"blueprint\":\"c\""), "step 'a': blueprint is only for kind subworkflow");
    expect_message(STEP("\"version\":\"" VERSION_A "\""), "step 'a': version is only for kind subworkflow");
    expect_message(STEP("\"inputs\":{}"), "step 'a': inputs is only for kind subworkflow");
}

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

static const char *const review_loop =
    "{\n"
    "  \"name\": \"review\",\n"
    "  \"inputs\": {\n"
    "    \"topic\": {\"type\": \"string\", \"required\": true},\n"
    "    \"threshold\": {\"type\": \"number\", \"default\": 0.8}\n"
    "  },\n"
    "  \"steps\": [\n"
    "    {\"name\": \"generate\", \"queue\": \"llm\", \"timeout_ms\": 120000,\n"
    "     \"retry\": {\"max_attempts\": 3, \"non_retryable\": [\"bad_prompt\"]}},\n"
    "    {\"name\": \"check\", \"depends_on\": [\"generate\"],\n"
    "     \"diverge\": [\n"
    "       {\"match\": {\"verdict\": \"revise\"}, \"action\": \"back_to\",\n"
    "        \"target\": \"generate\", \"max_iterations\": 3},\n"
    "       {\"match\": {\"kind\": \"timeout\"}, \"on\": \"error\", \"action\": \"retry\",\n"
    "        \"max_iterations\": 2}\n"
    "     ],\n"
    "     \"branch\": [\n"
    "       {\"when\": {\"and\": [{\"path\": \"verdict\", \"op\": \"==\", \"value\": \"pass\"},\n"
    "                           {\"path\": \"score\", \"op\": \">=\", \"value\": 0.8}]},\n"
    "        \"to\": \"publish\"},\n"
    "       {\"otherwise\": \"escalate\"}\n"
    "     ]},\n"
    "    {\"name\": \"publish\", \"depends_on\": [\"check\"]},\n"
    "    {\"name\": \"escalate\", \"kind\": \"approval\", \"depends_on\": [\"check\"],\n"
    "     \"approval_type\": \"editor\", \"timeout_ms\": 86400000},\n"
    "    {\"name\": \"notify\", \"depends_on\": [\"publish\", \"escalate\"]}\n"
    "  ]\n"
    "}\n";

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

/* Every new field in one blueprint: parsing the canonical JSON gives it back. */
static const char *const everything =
    "{\"name\":\"all\",\"inputs\":{\"t\":{\"type\":\"string\",\"required\":true},"
    "\"n\":{\"type\":\"integer\",\"default\":2},\"o\":{\"default\":{\"y\":[1,{\"b\":2,\"a\":1}]}}},"
    "\"steps\":[{\"name\":\"a\",\"queue\":\"gpu\",\"timeout_ms\":9000,\"heartbeat_timeout_ms\":900,"
    "\"requires\":{\"gpu\":\"true\",\"arch\":\"sm90\"},"
    "\"diverge\":[{\"match\":{\"kind\":\"oom\"},\"on\":\"error\",\"action\":\"retry\",\"max_iterations\":2},"
    "{\"match\":{\"skip\":true},\"action\":\"skip_to\",\"target\":\"d\"},"
    "{\"match\":\"_\",\"on\":\"error\",\"action\":\"fail\"}]},"
    "{\"name\":\"b\",\"kind\":\"sleep\",\"depends_on\":[\"a\"],\"until\":\"2030-01-01T00:00:00.5+02:00\"},"
    "{\"name\":\"c\",\"kind\":\"approval\",\"depends_on\":[\"a\"],\"approval_type\":\"boss\",\"timeout_ms\":5},"
    "{\"name\":\"d\",\"kind\":\"signal\",\"depends_on\":[\"b\",\"c\"],\"signal\":\"go\","
    "\"branch\":[{\"when\":{\"or\":[{\"path\":\"x[1].y\",\"op\":\"in\",\"value\":[1,\"2\",null]},"
    "{\"not\":{\"path\":\"z\",\"op\":\"exists\"}}]},\"to\":\"e\"},{\"otherwise\":\"f\"}]},"
    "{\"name\":\"e\",\"kind\":\"subworkflow\",\"depends_on\":[\"d\"],\"blueprint\":\"child\","
    "\"version\":\"" VERSION_A "\",\"inputs\":{\"q\":\"$.inputs.t\",\"r\":[\"$.deps.d.k\",7]},"
    "\"diverge\":[{\"match\":{\"r\":\"_\"},\"action\":\"back_to\",\"target\":\"a\",\"max_iterations\":4}]},"
    "{\"name\":\"f\",\"kind\":\"sleep\",\"depends_on\":[\"d\"],\"duration_ms\":1500},"
    "{\"name\":\"g\",\"kind\":\"deliberation\",\"depends_on\":[\"e\",\"f\"]}]}";

static void test_new_fields_fixed_point(void **state)
{
    (void)state;
    assert_fixed_point(everything);
    bp_blueprint_t *bp = parse_ok(everything);
    assert_int_equal(bp->steps[1].sleep_until_us, INT64_C(1893448800500000));
    assert_contains(bp->canonical_json, "\"until\":\"2029-12-31T22:00:00.5Z\"");
    bp_destroy(bp);
    /* The golden blueprint keeps its version (test_defaults pins it); so does
     * every blueprint that uses none of the new fields, whatever its kinds. */
    bp = parse_ok("{\"name\":\"k\",\"steps\":[{\"name\":\"a\",\"kind\":\"approval\"},"
                  "{\"name\":\"s\",\"kind\":\"signal\"},{\"name\":\"d\",\"kind\":\"deliberation\"}]}");
    assert_string_equal(bp->canonical_json,
                        "{\"name\":\"k\",\"steps\":[{\"name\":\"a\",\"kind\":\"approval\",\"handler\":"
                        "\"a\",\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":{"
                        "\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,"
                        "\"non_retryable\":[]}},{\"name\":\"s\",\"kind\":\"signal\",\"handler\":\"s\","
                        "\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":{"
                        "\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,"
                        "\"non_retryable\":[]}},{\"name\":\"d\",\"kind\":\"deliberation\",\"handler\":"
                        "\"d\",\"queue\":\"local\",\"depends_on\":[],\"timeout_ms\":0,\"retry\":{"
                        "\"max_attempts\":1,\"initial_ms\":1000,\"max_ms\":60000,\"multiplier\":2,"
                        "\"non_retryable\":[]}}]}");
    bp_destroy(bp);
}

/* ------------------------------------------------------------------------ */
/* Builder                                                                  */
/* ------------------------------------------------------------------------ */

static void test_builder(void **state)
{
    (void)state;
    cbm_builder_t *b = cbm_builder_create("order");
    char *json = NULL;
    assert_non_null(b);
    assert_int_equal(cbm_builder_add_step(b, "fetch", "fetch_v2", NULL, 0), 0);
    assert_int_equal(cbm_builder_add_step(b, "price", NULL, (const char *[]){"fetch"}, 1), 0);
    assert_int_equal(cbm_builder_add_step(b, "stock", NULL, (const char *[]){"fetch"}, 1), 0);
    /* Enough steps to grow the builder's array. */
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        assert_int_equal(cbm_builder_add_step(b, name, "noop", NULL, 0), 0);
    }
    assert_int_equal(cbm_builder_add_step(b, "ship", "ship", (const char *[]){"stock", "price"}, 2), 0);
    assert_int_equal(cbm_builder_to_json(b, &json), 0);
    assert_non_null(json);
    assert_contains(json, "{\"name\":\"order\",\"steps\":[{\"name\":\"fetch\",\"handler\":\"fetch_v2\","
                          "\"depends_on\":[]},{\"name\":\"price\",\"handler\":\"price\","
                          "\"depends_on\":[\"fetch\"]}");

    /* The same blueprint written by hand, in another style. */
    char hand[4096];
    size_t used = (size_t)snprintf(hand, sizeof(hand),
        "{\"steps\":[{\"name\":\"fetch\",\"handler\":\"fetch_v2\"},"
        "{\"name\":\"price\",\"depends_on\":[\"fetch\"]},"
        "{\"name\":\"stock\",\"depends_on\":[\"fetch\"],\"queue\":\"local\"}");
    for (int i = 0; i < 20; i++)
        used += (size_t)snprintf(hand + used, sizeof(hand) - used,
                                 ",{\"handler\":\"noop\",\"name\":\"n%d\"}", i);
    snprintf(hand + used, sizeof(hand) - used,
             ",{\"name\":\"ship\",\"depends_on\":[\"price\",\"stock\"]}],\"name\":\"order\"}");
    assert_same_version(json, hand);
    free(json);
    cbm_builder_destroy(b);
}

static void test_builder_is_validated_on_parse(void **state)
{
    (void)state;
    cbm_builder_t *b = cbm_builder_create("loop");
    char *json = NULL;
    assert_non_null(b);
    assert_int_equal(cbm_builder_add_step(b, "a", NULL, (const char *[]){"b"}, 1), 0);
    assert_int_equal(cbm_builder_add_step(b, "b", NULL, (const char *[]){"a"}, 1), 0);
    assert_int_equal(cbm_builder_to_json(b, &json), 0);
    expect_message(json, "dependency cycle: a -> b -> a");
    free(json);
    cbm_builder_destroy(b);

    /* No steps: the builder emits it, registration refuses it. */
    b = cbm_builder_create("empty");
    assert_int_equal(cbm_builder_to_json(b, &json), 0);
    expect_message(json, "blueprint 'empty' has no steps");
    free(json);
    cbm_builder_destroy(b);
}

static void test_builder_set(void **state)
{
    (void)state;
    /* The review loop of the docs, built in C: same version as the text. */
    cbm_builder_t *b = cbm_builder_create("review");
    char *json = NULL;
    assert_non_null(b);
    assert_int_equal(cbm_builder_add_step(b, "generate", NULL, NULL, 0), 0);
    assert_int_equal(cbm_builder_add_step(b, "check", NULL, (const char *[]){"generate"}, 1), 0);
    assert_int_equal(cbm_builder_add_step(b, "publish", NULL, (const char *[]){"check"}, 1), 0);
    assert_int_equal(cbm_builder_add_step(b, "escalate", NULL, (const char *[]){"check"}, 1), 0);
    assert_int_equal(cbm_builder_add_step(b, "notify", NULL, (const char *[]){"publish", "escalate"}, 2), 0);
    assert_int_equal(cbm_builder_set(b, NULL, "inputs",
                                     "{\"topic\":{\"type\":\"string\",\"required\":true},"
                                     "\"threshold\":{\"type\":\"number\",\"default\":0.8}}"), 0);
    assert_int_equal(cbm_builder_set(b, "generate", "queue", "\"llm\""), 0);
    assert_int_equal(cbm_builder_set(b, "generate", "timeout_ms", "1"), 0);
    assert_int_equal(cbm_builder_set(b, "generate", "timeout_ms", " 120000\n"), 0); /* replaces */
    assert_int_equal(cbm_builder_set(b, "generate", "retry",
                                     "{\"max_attempts\":3,\"non_retryable\":[\"bad_prompt\"]}"), 0);
    assert_int_equal(cbm_builder_set(b, "check", "diverge",
                                     "[{\"match\":{\"verdict\":\"revise\"},\"action\":\"back_to\","
                                     "\"target\":\"generate\",\"max_iterations\":3},"
                                     "{\"match\":{\"kind\":\"timeout\"},\"on\":\"error\","
                                     "\"action\":\"retry\",\"max_iterations\":2}]"), 0);
    assert_int_equal(cbm_builder_set(b, "check", "branch",
                                     "[{\"when\":{\"and\":[{\"path\":\"verdict\",\"op\":\"==\","
                                     "\"value\":\"pass\"},{\"path\":\"score\",\"op\":\">=\","
                                     "\"value\":0.8}]},\"to\":\"publish\"},{\"otherwise\":\"escalate\"}]"), 0);
    assert_int_equal(cbm_builder_set(b, "escalate", "kind", "\"approval\""), 0);
    assert_int_equal(cbm_builder_set(b, "escalate", "approval_type", "\"editor\""), 0);
    assert_int_equal(cbm_builder_set(b, "escalate", "timeout_ms", "86400000"), 0);
    assert_int_equal(cbm_builder_to_json(b, &json), 0);
    assert_contains(json, "{\"name\":\"review\",\"inputs\":{\"topic\":");
    assert_contains(json, "{\"name\":\"generate\",\"handler\":\"generate\",\"depends_on\":[],"
                          "\"queue\":\"llm\",\"timeout_ms\":120000,");
    assert_same_version(json, review_loop);
    free(json);

    /* Fields are validated on registration, like any blueprint. */
    assert_int_equal(cbm_builder_set(b, "publish", "duration_ms", "5"), 0);
    assert_int_equal(cbm_builder_to_json(b, &json), 0);
    expect_message(json, "step 'publish': duration_ms is only for kind sleep");
    free(json);

    /* Arguments. */
    assert_int_equal(cbm_builder_set(NULL, "check", "kind", "\"task\""), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, "check", NULL, "1"), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, "check", "kind", NULL), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, "nope", "kind", "\"task\""), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, "check", "name", "\"x\""), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, "check", "handler", "\"x\""), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, "check", "depends_on", "[]"), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, NULL, "name", "\"x\""), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, NULL, "steps", "[]"), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, NULL, "timeline", "[]"), CBM_EINVAL);
    assert_int_equal(cbm_builder_set(b, "check", "kind", "approval"), CBM_EJSON);
    assert_int_equal(cbm_builder_set(b, "check", "kind", ""), CBM_EJSON);
    assert_int_equal(cbm_builder_set(b, "check", "kind", "\"a\" \"b\""), CBM_EJSON);
    cbm_builder_destroy(b);
}

static void test_builder_args(void **state)
{
    (void)state;
    char *json = (char *)"sentinel";
    cbm_builder_t *b = cbm_builder_create("x");
    assert_null(cbm_builder_create(NULL));
    assert_int_equal(cbm_builder_add_step(NULL, "a", NULL, NULL, 0), CBM_EINVAL);
    assert_int_equal(cbm_builder_add_step(b, NULL, NULL, NULL, 0), CBM_EINVAL);
    assert_int_equal(cbm_builder_add_step(b, "a", NULL, NULL, 1), CBM_EINVAL);
    assert_int_equal(cbm_builder_add_step(b, "a", NULL, (const char *[]){"b", NULL}, 2), CBM_EINVAL);
    assert_int_equal(cbm_builder_to_json(NULL, &json), CBM_EINVAL);
    assert_null(json);
    assert_int_equal(cbm_builder_to_json(b, NULL), CBM_EINVAL);
    cbm_builder_destroy(b);
    cbm_builder_destroy(NULL);
}

/* ------------------------------------------------------------------------ */
/* Allocation failures                                                      */
/* ------------------------------------------------------------------------ */

/* cJSON's allocator, which the blueprint and builder code use for all their
 * memory, made to fail at the Nth call. */
static long alloc_countdown = -1;
static void *failing_malloc(size_t n)
{
    if (alloc_countdown == 0) return NULL;
    if (alloc_countdown > 0) alloc_countdown--;
    return malloc(n);
}

static void set_failing_allocator(long fail_at)
{
    cJSON_Hooks hooks = {failing_malloc, free};
    alloc_countdown = fail_at;
    cJSON_InitHooks(&hooks);
}

static void reset_allocator(void)
{
    alloc_countdown = -1;
    cJSON_InitHooks(NULL);
}

/* Fail each allocation of parsing json in turn: every failure is CBM_ENOMEM
 * (or CBM_EJSON inside cJSON's own parser), nothing leaks (ASan), and once
 * allocations stop failing the result is the same. */
static void parse_out_of_memory(const char *json)
{
    char *expected;
    bp_blueprint_t *bp = parse_ok(json);
    expected = strdup(bp->canonical_json);
    bp_destroy(bp);

    long n_enomem = 0;
    for (long fail_at = 0;; fail_at++) {
        cbm_error_t err = {0};
        bp = NULL;
        set_failing_allocator(fail_at);
        int rc = parse_exact(json, &bp, &err);
        reset_allocator();
        if (rc == 0) {
            assert_string_equal(bp->canonical_json, expected);
            bp_destroy(bp);
            break;
        }
        assert_null(bp);
        /* cJSON's parser reports its own allocation failures as bad text. */
        if (rc != CBM_ENOMEM && rc != CBM_EJSON)
            fail_msg("allocation %ld failed: got %s (%s)", fail_at, cbm_err_name(rc), err.message);
        if (rc == CBM_ENOMEM) n_enomem++;
        assert_true(fail_at < 100000);
    }
    assert_true(n_enomem > 10);
    free(expected);
}

static void test_parse_out_of_memory(void **state)
{
    (void)state;
    parse_out_of_memory(
        "{\"name\":\"t\",\"timeline\":[\"a\",\"b\",{\"name\":\"c\",\"handler\":\"h\","
        "\"retry\":{\"non_retryable\":[\"y\",\"x\",\"y\"]},\"depends_on\":[\"x\"]}],"
        "\"steps\":[{\"name\":\"x\",\"depends_on\":[\"a\"]}]}");
    parse_out_of_memory(everything);
    parse_out_of_memory(review_loop);
}

static void test_check_inputs_out_of_memory(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(everything);
    for (long fail_at = 0;; fail_at++) {
        char *out = NULL;
        cbm_error_t err = {0};
        set_failing_allocator(fail_at);
        int rc = bp_check_inputs(bp, "{\"t\":\"x\",\"extra_is_refused\":null}", &out, &err);
        reset_allocator();
        assert_int_not_equal(rc, 0);
        if (rc == CBM_EINVAL) {
            assert_string_equal(err.message, "unknown input 'extra_is_refused' (declared: n, o, t)");
            break;
        }
        assert_null(out);
        assert_true(rc == CBM_ENOMEM || rc == CBM_EJSON);
        assert_true(fail_at < 100000);
    }
    for (long fail_at = 0;; fail_at++) {
        char *out = NULL;
        cbm_error_t err = {0};
        set_failing_allocator(fail_at);
        int rc = bp_check_inputs(bp, "{\"t\":\"x\",\"n\":4}", &out, &err);
        reset_allocator();
        if (rc == 0) {
            assert_string_equal(out, "{\"t\":\"x\",\"n\":4,\"o\":{\"y\":[1,{\"a\":1,\"b\":2}]}}");
            cJSON_free(out);
            break;
        }
        assert_null(out);
        if (rc != CBM_ENOMEM && rc != CBM_EJSON)
            fail_msg("allocation %ld failed: got %s (%s)", fail_at, cbm_err_name(rc), err.message);
        assert_true(fail_at < 100000);
    }
    bp_destroy(bp);
}

static void test_builder_out_of_memory(void **state)
{
    (void)state;
    for (long fail_at = 0;; fail_at++) {
        char *json = NULL;
        int rc = 0;
        set_failing_allocator(fail_at);
        cbm_builder_t *b = cbm_builder_create("x");
        if (b != NULL) {
            for (int i = 0; i < 10 && rc == 0; i++) {
                char name[8];
                snprintf(name, sizeof(name), "s%d", i);
                rc = cbm_builder_add_step(b, name, i % 2 ? "h" : NULL,
                                          (const char *[]){"s0", "s1"}, i > 1 ? 2 : 0);
            }
            if (rc == 0) rc = cbm_builder_set(b, "s3", "retry", "{\"max_attempts\":2}");
            if (rc == 0) rc = cbm_builder_set(b, "s3", "retry", "{\"max_attempts\":3}");
            if (rc == 0) rc = cbm_builder_set(b, NULL, "inputs", "{\"a\":{\"type\":\"string\"}}");
            /* cJSON cannot tell its own out-of-memory from bad text. */
            if (rc == CBM_EJSON) rc = CBM_ENOMEM;
            if (rc == 0) rc = cbm_builder_to_json(b, &json);
        }
        cbm_builder_destroy(b);
        reset_allocator();
        if (b != NULL && rc == 0) {
            assert_non_null(json);
            free(json);
            break;
        }
        assert_null(json);
        if (b != NULL) assert_int_equal(rc, CBM_ENOMEM);
        assert_true(fail_at < 100000);
    }
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
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_sleep),
        cmocka_unit_test(test_approval_and_signal),
        cmocka_unit_test(test_task_fields),
        cmocka_unit_test(test_subworkflow),
        cmocka_unit_test(test_diverge),
        cmocka_unit_test(test_diverge_errors),
        cmocka_unit_test(test_branch),
        cmocka_unit_test(test_branch_errors),
        cmocka_unit_test(test_condition_errors),
        cmocka_unit_test(test_input_declarations),
        cmocka_unit_test(test_check_inputs),
        cmocka_unit_test(test_review_loop),
        cmocka_unit_test(test_new_fields_fixed_point),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_builder_is_validated_on_parse),
        cmocka_unit_test(test_builder_set),
        cmocka_unit_test(test_builder_args),
        cmocka_unit_test(test_parse_out_of_memory),
        cmocka_unit_test(test_check_inputs_out_of_memory),
        cmocka_unit_test(test_builder_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
