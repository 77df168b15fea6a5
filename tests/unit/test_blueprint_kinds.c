/*
 * test_blueprint_kinds.c - kind-specific step fields (sleep, approval, signal, task,
 * subworkflow) and RFC 3339 times.
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


static void test_task_args(void **state)
{
    (void)state;
    bp_blueprint_t *bp = parse_ok(
        "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"args\":{\"z\":1,\"phase\":\"generate\","
        "\"nested\":{\"y\":[true,null],\"x\":\"$.inputs.not_a_reference\"}},"
        "\"branch\":[{\"otherwise\":\"b\"}]},"
        "{\"name\":\"b\",\"depends_on\":[\"a\"],\"args\":{}},{\"name\":\"c\"}]}");
    /* Canonical: keys sorted at every depth; "$." strings are plain text. */
    assert_string_equal(bp->steps[0].args_json,
                        "{\"nested\":{\"x\":\"$.inputs.not_a_reference\",\"y\":[true,null]},"
                        "\"phase\":\"generate\",\"z\":1}");
    assert_non_null(bp->steps[0].args);
    /* Written last, after the routing fields; {} is set, and printed. */
    assert_contains(bp->canonical_json, "\"branch\":[{\"otherwise\":\"b\"}],\"args\":{\"nested\"");
    assert_contains(bp->canonical_json, "\"non_retryable\":[]},\"args\":{}}");
    assert_string_equal(bp->steps[1].args_json, "{}");
    assert_null(bp->steps[2].args);
    assert_null(bp->steps[2].args_json);
    assert_null(strstr(strstr(bp->canonical_json, "\"name\":\"c\""), "args"));
    bp_destroy(bp);
    assert_fixed_point("{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"queue\":\"llm\","
                       "\"args\":{\"b\":[1,2.5,\"s\"],\"a\":{\"d\":null,\"c\":false}}}]}");
    assert_same_version(STEP("\"args\":{\"b\":1,\"a\":{\"y\":2,\"x\":1}}"),
                        STEP("\"args\":{\"a\":{\"x\":1,\"y\":2.0},\"b\":1}"));
    assert_other_version(STEP("\"args\":{}"), "{\"name\":\"x\",\"steps\":[{\"name\":\"a\"}]}");
    assert_other_version(STEP("\"args\":{\"a\":1}"), STEP("\"args\":{\"a\":2}"));

    expect_message(STEP("\"args\":[1]"), "step 'a': args must be an object");
    expect_message(STEP("\"args\":\"x\""), "step 'a': args must be an object");
    expect_message(STEP("\"args\":null"), "step 'a': args must be an object");
    expect_message(STEP("\"args\":{\"k\":1,\"k\":2}"), "step 'a': args has a duplicate key 'k'");
    expect_message(STEP("\"args\":{\"k\":[1e999]}"), "step 'a': args has a number out of range");
    expect_message(STEP("\"kind\":\"approval\",\"args\":{}"), "step 'a': args is only for kind task");
    expect_message(STEP("\"kind\":\"subworkflow\",\"blueprint\":\"c\",\"args\":{}"),
                   "step 'a': args is only for kind task");

    /* At most 64 KiB as canonical JSON: {"s":"<n x>"} is n + 8 bytes. */
    size_t n = BP_MAX_ARGS_BYTES - 8;
    char *big = malloc(n + 128);
    assert_non_null(big);
    int len = snprintf(big, 128, "{\"name\":\"x\",\"steps\":[{\"name\":\"a\",\"args\":{ \"s\" : \"");
    memset(big + len, 'x', n);
    strcpy(big + len + n, "\"}}]}");
    bp = parse_ok(big);
    assert_int_equal(strlen(bp->steps[0].args_json), BP_MAX_ARGS_BYTES);
    bp_destroy(bp);
    memset(big + len, 'x', n + 1);
    strcpy(big + len + n + 1, "\"}}]}");
    expect_message(big, "step 'a': args is larger than 65536 bytes (as canonical JSON)");
    free(big);
}

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_sleep),
        cmocka_unit_test(test_approval_and_signal),
        cmocka_unit_test(test_task_fields),
        cmocka_unit_test(test_task_args),
        cmocka_unit_test(test_subworkflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
