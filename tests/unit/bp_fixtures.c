/*
 * bp_fixtures.c - see bp_fixtures.h. Inputs are copied into a buffer of
 * exactly their length (no NUL) before parsing, so ASan catches any read past
 * the len that bp_parse_json was given.
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
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

int parse_exact(const char *json, bp_blueprint_t **out, cbm_error_t *err)
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

bp_blueprint_t *parse_ok(const char *json)
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

void assert_contains(const char *haystack, const char *needle)
{
    if (needle != NULL && strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/* Parse must fail with code; the message must contain want1 and want2. */
void expect_error(const char *json, int code, const char *want1, const char *want2)
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

void expect_message(const char *json, const char *message)
{
    bp_blueprint_t *bp = NULL;
    cbm_error_t err = {0};
    int rc = parse_exact(json, &bp, &err);
    if (rc == 0) fail_msg("parse succeeded, expected \"%s\"\n  input: %s", message, json);
    assert_null(bp);
    assert_string_equal(err.message, message);
}

void version_of(const char *json, char version[65])
{
    bp_blueprint_t *bp = parse_ok(json);
    memcpy(version, bp->version, 65);
    bp_destroy(bp);
}

void assert_same_version(const char *a, const char *b)
{
    bp_blueprint_t *x = parse_ok(a), *y = parse_ok(b);
    if (strcmp(x->canonical_json, y->canonical_json) != 0)
        fail_msg("canonical JSON differs:\n  %s\n  %s", x->canonical_json, y->canonical_json);
    assert_string_equal(x->version, y->version);
    bp_destroy(x);
    bp_destroy(y);
}

void assert_other_version(const char *a, const char *b)
{
    char va[65], vb[65];
    version_of(a, va);
    version_of(b, vb);
    assert_string_not_equal(va, vb);
}

/* Parsing the canonical JSON again gives the same canonical JSON. */
void assert_fixed_point(const char *json)
{
    bp_blueprint_t *a = parse_ok(json);
    bp_blueprint_t *b = parse_ok(a->canonical_json);
    assert_string_equal(a->canonical_json, b->canonical_json);
    assert_string_equal(a->version, b->version);
    bp_destroy(a);
    bp_destroy(b);
}

void assert_deps(const bp_blueprint_t *bp, const char *step, const size_t *want, size_t n)
{
    int i = bp_step_index(bp, step);
    assert_true(i >= 0);
    const bp_step_t *s = &bp->steps[i];
    if (s->ndeps != n) fail_msg("step '%s': %zu deps, expected %zu", step, s->ndeps, n);
    for (size_t k = 0; k < n; k++) assert_int_equal(s->deps[k], want[k]);
}


const char *const review_loop =
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

const char *const everything =
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
    "{\"name\":\"g\",\"kind\":\"deliberation\",\"depends_on\":[\"e\",\"f\"],\"council\":\"dev\","
    "\"task\":{\"q\":\"$.inputs.t\",\"from\":\"$.deps.e.r\"},\"context\":[\"$.deps.f\",1],"
    "\"agents\":3,\"rounds\":2,\"topology\":\"all_to_all\","
    "\"scoring\":{\"mode\":\"handler\",\"handler\":\"lint\",\"queue\":\"ci\"},"
    "\"selection\":{\"rule\":\"threshold_first\",\"threshold\":0.75,\"top_k\":2,\"min_proposals\":2},"
    "\"model\":{\"temperature\":0.5,\"top_p\":0.9,\"max_tokens\":512,"
    "\"response_format\":{\"type\":\"json_object\"}},"
    "\"call\":{\"timeout_ms\":60000,\"heartbeat_timeout_ms\":5000,\"retry\":{\"max_attempts\":2}},"
    "\"budget\":{\"max_calls\":100,\"max_completion_tokens\":50000,\"timeout_ms\":600000}},"
    "{\"name\":\"h\",\"args\":{\"phase\":\"x\",\"n\":[1,{\"b\":1,\"a\":2}]},\"depends_on\":[\"g\"]}]}";
