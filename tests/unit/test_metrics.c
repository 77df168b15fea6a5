/*
 * test_metrics.c - the engine's metrics (engine/metrics.h): histogram
 * buckets and sums, committed events by type, and the LLM usage counted
 * from completed calls' results (one call's usage counted, a
 * deliberation's summed usage not counted twice, other steps ignored).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engine/metrics.h"

static void test_hist(void **state)
{
    static cbm_hist_t h;
    static const int64_t bounds[] = {1, 10, 100};
    cbm_hist_snap_t s;
    (void)state;

    cbm_hist_observe(&h, bounds, 3, 0);
    cbm_hist_observe(&h, bounds, 3, 1);
    cbm_hist_observe(&h, bounds, 3, 2);
    cbm_hist_observe(&h, bounds, 3, 100);
    cbm_hist_observe(&h, bounds, 3, 1000);
    cbm_hist_observe(&h, bounds, 3, -5); /* a negative lateness: first bucket, adds 0 */
    cbm_hist_snap(&h, &s);
    assert_int_equal(s.count, 6);
    assert_int_equal(s.sum, 0 + 1 + 2 + 100 + 1000);
    assert_int_equal(s.bucket[0], 3); /* 0, 1, -5 */
    assert_int_equal(s.bucket[1], 1); /* 2 */
    assert_int_equal(s.bucket[2], 1); /* 100 */
    assert_int_equal(s.bucket[3], 1); /* +Inf: 1000 */
}

static void test_events_and_usage(void **state)
{
    static cbm_commit_metrics_t m;
    store_event_t evs[] = {
        {.type = "StepScheduled", .payload = "{\"step\":\"a\",\"attempt\":1}"},
        {.type = "StepCompleted",
         .payload = "{\"step\":\"g1\",\"attempt\":1,\"result\":{\"agent\":\"dev-1\",\"phase\":\"generate\","
                    "\"usage\":{\"prompt_tokens\":812,\"completion_tokens\":377,\"cached_tokens\":5}}}"},
        {.type = "StepCompleted",
         .payload = "{\"step\":\"g2\",\"attempt\":1,\"result\":{\"usage\":{\"prompt_tokens\":100,"
                    "\"completion_tokens\":20}}}"},
        /* a deliberation's result: the sum of its calls, already counted */
        {.type = "StepCompleted",
         .payload = "{\"step\":\"d\",\"attempt\":1,\"result\":{\"winner\":\"x\",\"usage\":{\"calls\":2,"
                    "\"prompt_tokens\":912,\"completion_tokens\":397,\"cached_tokens\":5}}}"},
        /* a plain step that mentions the word in its data, not a call */
        {.type = "StepCompleted",
         .payload = "{\"step\":\"e\",\"attempt\":1,\"result\":{\"note\":\"\\\"prompt_tokens\\\"\"}}"},
        /* a failed call is not a completed one */
        {.type = "StepFailed",
         .payload = "{\"step\":\"f\",\"attempt\":1,\"error\":{\"usage\":{\"prompt_tokens\":9}}}"},
        {.type = "NoSuchEvent", .payload = "{}"},
    };
    (void)state;

    cbm_commit_metrics_events(&m, evs, sizeof(evs) / sizeof(evs[0]));
    assert_int_equal(m.events[EV_STEP_SCHEDULED], 1);
    assert_int_equal(m.events[EV_STEP_COMPLETED], 4);
    assert_int_equal(m.events[EV_STEP_FAILED], 1);
    assert_int_equal(m.events[EV_UNKNOWN], 1);
    assert_int_equal(m.llm_calls, 2);
    assert_int_equal(m.llm_prompt_tokens, 912);
    assert_int_equal(m.llm_completion_tokens, 397);
    assert_int_equal(m.llm_cached_tokens, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist),
        cmocka_unit_test(test_events_and_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
