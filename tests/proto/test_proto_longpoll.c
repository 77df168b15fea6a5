/*
 * test_proto_longpoll.c - parked calls: PollTask handlers that keep the call
 * and answer later from the loop (a timer, or a command from the test);
 * parked calls whose client deadline passes or that the client cancels
 * (the handler is told through its cancel callback and sends nothing); a
 * server shut down with calls parked; many parked calls at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

typedef struct poller {
    rpc_client_t *cl;
    int64_t timeout_ms;
    uv_thread_t thread;
    int rc;
    rpc_status_t st;
    char task_id[64];
    uint64_t elapsed_ms;
} poller_t;

static void poll_main(void *arg)
{
    poller_t *p = arg;
    Cerebelum__V1__PollTaskRequest r = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
    Cerebelum__V1__Task *t = NULL;
    uint64_t t0 = uv_hrtime();
    r.worker_id = "w-1";
    r.wait_ms = 60000;
    p->rc = rpc_client_call(p->cl, RPC_POLL_TASK, &r.base, (ProtobufCMessage **)&t,
                            p->timeout_ms, &p->st);
    p->elapsed_ms = (uv_hrtime() - t0) / 1000000u;
    p->task_id[0] = '\0';
    if (t != NULL) {
        snprintf(p->task_id, sizeof(p->task_id), "%s", t->task_id);
        protobuf_c_message_free_unpacked(&t->base, NULL);
    }
}

static void start_poller(poller_t *p, rpc_client_t *cl, int64_t timeout_ms)
{
    memset(p, 0, sizeof(*p));
    p->cl = cl;
    p->timeout_ms = timeout_ms;
    assert_int_equal(uv_thread_create(&p->thread, poll_main, p), 0);
}

static int parked_1(fx_t *fx) { return fx->n_parked == 1; }
static int parked_5(fx_t *fx) { return fx->n_parked == 5; }
static int parked_50(fx_t *fx) { return fx->n_parked == 50; }
static int cancelled_1(fx_t *fx) { return fx->n_cancelled == 1 && fx->n_parked == 0; }

static void setup_parking(fx_t *fx, int answer_after_ms)
{
    fx_init(fx, "127.0.0.1:0");
    fx->park_polls = 1;
    fx->answer_after_ms = answer_after_ms;
    assert_int_equal(fx_start(fx), 0);
}

/* A timer on the loop answers the parked call 200 ms later. */
static void test_parked_answered_by_timer(void **state)
{
    fx_t fx;
    poller_t p;
    setup_parking(&fx, 200);
    rpc_client_t *cl = fx_client(&fx, NULL);
    start_poller(&p, cl, 5000);
    uv_thread_join(&p.thread);
    if (p.rc != 0)
        fprintf(stderr, "poll: %s \"%s\"\n", rpc_status_name(p.st.code), p.st.message);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.task_id, "late-task");
    fprintf(stderr, "answered after %llu ms (timer at 200 ms)\n", (unsigned long long)p.elapsed_ms);
    assert_true(p.elapsed_ms >= 190 && p.elapsed_ms < 2000);
    assert_int_equal(fx.n_answered_late, 1);
    assert_int_equal(fx.late_reply_rc, 0);
    rpc_client_destroy(cl);
    fx_stop(&fx);
    assert_int_equal(fx.n_cancelled, 0);
}

typedef struct remaining {
    int64_t ms;
} remaining_t;

static void read_remaining(fx_t *fx, void *arg)
{
    remaining_t *r = arg;
    for (int i = 0; i < FX_MAX_PARKED; i++)
        if (fx->parked[i].call != NULL)
            r->ms = rpc_call_remaining_ms(fx->parked[i].call);
}

/* The test (through the loop) answers the parked call when it chooses. */
static void test_parked_answered_from_loop(void **state)
{
    fx_t fx;
    poller_t p;
    remaining_t rem = {-1};
    setup_parking(&fx, 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    start_poller(&p, cl, 3000);
    assert_true(fx_wait(&fx, parked_1, 2000));
    fx_run(&fx, read_remaining, &rem);
    fprintf(stderr, "remaining of a 3000 ms deadline while parked: %lld ms\n", (long long)rem.ms);
    assert_true(rem.ms > 1000 && rem.ms <= 3000);
    uv_sleep(100);
    fx_run(&fx, fx_answer_parked, NULL);
    uv_thread_join(&p.thread);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.task_id, "late-task");
    assert_true(p.elapsed_ms >= 100);
    rpc_client_destroy(cl);
    fx_stop(&fx);
    assert_int_equal(fx.n_answered_late, 1);
    assert_int_equal(fx.n_cancelled, 0);
}

/* No deadline: rpc_call_remaining_ms says INT64_MAX. */
static void test_no_deadline(void **state)
{
    fx_t fx;
    poller_t p;
    remaining_t rem = {-1};
    setup_parking(&fx, 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    start_poller(&p, cl, 0);
    assert_true(fx_wait(&fx, parked_1, 2000));
    fx_run(&fx, read_remaining, &rem);
    assert_true(rem.ms == INT64_MAX);
    fx_run(&fx, fx_answer_parked, NULL);
    uv_thread_join(&p.thread);
    assert_int_equal(p.rc, 0);
    rpc_client_destroy(cl);
    fx_stop(&fx);
}

/* The handler ignores the deadline: the client gives up, the handler is told
 * through its cancel callback, and nothing is ever sent. */
static void test_parked_deadline_passes(void **state)
{
    fx_t fx;
    poller_t p;
    setup_parking(&fx, 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    start_poller(&p, cl, 300);
    uv_thread_join(&p.thread);
    fprintf(stderr, "poll with 300 ms deadline -> %s after %llu ms\n",
            rpc_status_name(p.st.code), (unsigned long long)p.elapsed_ms);
    assert_string_equal(rpc_status_name(p.st.code), "DEADLINE_EXCEEDED");
    assert_int_equal(p.rc, CBM_ETIMEDOUT);
    assert_true(fx_wait(&fx, cancelled_1, 2000));
    rpc_client_destroy(cl);
    fx_stop(&fx);
    assert_int_equal(fx.n_cancelled, 1);
    assert_int_equal(fx.n_answered_late, 0);
}

/* rpc_client_cancel_all from another thread ends a long poll at once. */
static void test_client_cancel_all(void **state)
{
    fx_t fx;
    poller_t p;
    setup_parking(&fx, 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    start_poller(&p, cl, 30000);
    assert_true(fx_wait(&fx, parked_1, 2000));
    rpc_client_cancel_all(cl);
    uv_thread_join(&p.thread);
    assert_string_equal(rpc_status_name(p.st.code), "CANCELLED");
    assert_true(p.elapsed_ms < 5000);
    assert_true(fx_wait(&fx, cancelled_1, 2000));
    /* Later calls fail at once. */
    start_poller(&p, cl, 30000);
    uv_thread_join(&p.thread);
    assert_int_equal(p.rc, CBM_ESHUTDOWN);
    rpc_client_destroy(cl);
    fx_stop(&fx);
}

/* Shutting the server down with five parked calls: every handler is told,
 * every client gets an error status, shutdown finishes, nothing leaks. */
static void test_shutdown_with_parked(void **state)
{
    fx_t fx;
    poller_t p[5];
    setup_parking(&fx, 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    for (int i = 0; i < 5; i++)
        start_poller(&p[i], cl, 30000);
    assert_true(fx_wait(&fx, parked_5, 5000));
    uint64_t t0 = uv_hrtime();
    fx_stop(&fx);
    fprintf(stderr, "shutdown with 5 parked calls took %.1f ms\n",
            (double)(uv_hrtime() - t0) / 1e6);
    assert_int_equal(fx.n_cancelled, 5);
    assert_int_equal(fx.n_parked, 0);
    assert_int_equal(fx.n_answered_late, 0);
    for (int i = 0; i < 5; i++) {
        uv_thread_join(&p[i].thread);
        fprintf(stderr, "client %d: %s \"%s\"\n", i, rpc_status_name(p[i].st.code), p[i].st.message);
        assert_int_not_equal(p[i].rc, 0);
        assert_true(p[i].elapsed_ms < 10000);
    }
    rpc_client_destroy(cl);
}

/* Fifty parked polls on one channel, then all answered. */
static void test_many_parked(void **state)
{
    enum { N = 50 };
    fx_t fx;
    poller_t *p = calloc(N, sizeof(*p));
    assert_non_null(p);
    setup_parking(&fx, 0);
    rpc_client_t *cl = fx_client(&fx, NULL);
    for (int i = 0; i < N; i++)
        start_poller(&p[i], cl, 30000);
    assert_true(fx_wait(&fx, parked_50, 10000));
    uint64_t t0 = uv_hrtime();
    fx_run(&fx, fx_answer_parked, NULL);
    for (int i = 0; i < N; i++) {
        uv_thread_join(&p[i].thread);
        assert_int_equal(p[i].rc, 0);
        assert_string_equal(p[i].task_id, "late-task");
    }
    fprintf(stderr, "50 parked polls answered in %.1f ms\n", (double)(uv_hrtime() - t0) / 1e6);
    rpc_client_destroy(cl);
    fx_stop(&fx);
    assert_int_equal(fx.n_answered_late, N);
    assert_int_equal(fx.n_cancelled, 0);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parked_answered_by_timer),
        cmocka_unit_test(test_parked_answered_from_loop),
        cmocka_unit_test(test_no_deadline),
        cmocka_unit_test(test_parked_deadline_passes),
        cmocka_unit_test(test_client_cancel_all),
        cmocka_unit_test(test_shutdown_with_parked),
        cmocka_unit_test(test_many_parked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
