/*
 * test_blueprint_builder.c - the C builder (cbm_builder_*), and allocation failures
 * everywhere: parsing, checking inputs, building.
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
