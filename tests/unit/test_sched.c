/*
 * test_sched.c - the timer heap: due order, ties first-in first-out,
 * duplicates held once, and many random timers coming out sorted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/clock.h"
#include "scheduler/sched.h"

static void test_order_and_ties(void **state)
{
    sched_t *s = sched_create();
    sched_entry_t e;
    (void)state;
    assert_null(sched_peek(s));
    assert_int_equal(sched_pop(s, &e), -1);
    sched_push(s, "00000000-0000-4000-8000-000000000003", "sleep:c", 300);
    sched_push(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 100);
    sched_push(s, "00000000-0000-4000-8000-000000000002", "retry:b", 100); /* tie: after a */
    sched_push(s, "00000000-0000-4000-8000-000000000004", "sleep:d", 50);
    assert_int_equal(sched_size(s), 4);
    assert_int_equal(sched_peek(s)->due_us, 50);
    const char *want[] = {"sleep:d", "sleep:a", "retry:b", "sleep:c"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sched_pop(s, &e), 0);
        assert_string_equal(e.key, want[i]);
        free(e.key);
    }
    assert_int_equal(sched_size(s), 0);
    sched_destroy(s);
}

static void test_duplicates_held_once(void **state)
{
    sched_t *s = sched_create();
    sched_entry_t e;
    (void)state;
    sched_push(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 100);
    sched_push(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 100); /* same: ignored */
    sched_push(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 200); /* re-set: kept */
    assert_int_equal(sched_size(s), 2);
    assert_true(sched_contains(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 200));
    assert_false(sched_contains(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 300));
    assert_false(sched_contains(s, "00000000-0000-4000-8000-000000000001", "sleep:b", 100));
    assert_int_equal(sched_pop(s, &e), 0);
    free(e.key);
    assert_false(sched_contains(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 100));
    /* Once popped it may be pushed again (a refill after a fire). */
    sched_push(s, "00000000-0000-4000-8000-000000000001", "sleep:a", 100);
    assert_int_equal(sched_size(s), 2);
    sched_destroy(s); /* frees what is left */
}

static void test_many_random_sorted(void **state)
{
    enum { N = 20000 };
    sched_t *s = sched_create();
    sched_entry_t e;
    int64_t last = -1;
    uint64_t last_seq = 0;
    (void)state;
    srand(7);
    for (int i = 0; i < N; i++) {
        char id[37], key[32];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
        snprintf(key, sizeof(key), "sleep:s%d", i % 7);
        assert_int_equal(sched_push(s, id, key, rand() % 5000), 0);
    }
    assert_int_equal(sched_size(s), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sched_pop(s, &e), 0);
        assert_true(e.due_us >= last);
        if (e.due_us == last) assert_true(e.seq > last_seq);
        last = e.due_us;
        last_seq = e.seq;
        free(e.key);
    }
    sched_destroy(s);
}

static void test_fake_clock(void **state)
{
    clock_fake_t f;
    (void)state;
    clock_fake_init(&f, 1000);
    assert_int_equal(clock_now_us(&f.clock), 1000);
    clock_fake_advance(&f, 2500);
    assert_int_equal(clock_now_us(&f.clock), 3500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_ties),
        cmocka_unit_test(test_duplicates_held_once),
        cmocka_unit_test(test_many_random_sorted),
        cmocka_unit_test(test_fake_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
