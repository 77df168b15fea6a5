/*
 * test_proto_interop.c - a different gRPC stack against our server: Python
 * grpcio (interop.py, path in argv[1]) sends raw protobuf bytes and checks
 * OK, UNAUTHENTICATED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED.
 * Skipped when /usr/bin/python3 has no grpc module.
 *
 * Also measures sequential and concurrent unary calls through the whole
 * path (client -> core -> CQ thread -> uv loop -> handler -> reply); the
 * figures are printed, and only sanity (every call OK) is asserted.
 *
 * The Python process is started with posix_spawn (exec at once: allowed
 * after grpc_init, unlike a bare fork).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

extern char **environ;
static const char *script;

static void test_python_client(void **state)
{
    fx_t fx;
    pid_t pid;
    int status = 0;
    if (script == NULL || access("/usr/bin/python3", X_OK) != 0)
        skip();
    fx_init(&fx, "127.0.0.1:0");
    fx.opts.token = "tok";
    assert_int_equal(fx_start(&fx), 0);
    char *argv[] = {"/usr/bin/python3", (char *)(uintptr_t)script, fx.target, "tok", NULL};
    assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, argv, environ), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fx_stop(&fx);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

typedef struct bench {
    rpc_client_t *cl;
    int calls;
    uv_thread_t thread;
    int failures;
    uint64_t *lat_ns;
} bench_t;

static void bench_main(void *arg)
{
    bench_t *b = arg;
    Cerebelum__V1__SubmitResultRequest r = CEREBELUM__V1__SUBMIT_RESULT_REQUEST__INIT;
    r.worker_id = "w-1";
    r.task_id = "t-1";
    r.attempt = 1;
    r.status = CEREBELUM__V1__TASK_STATUS__SUCCESS;
    r.result_json = "{\"ok\":true}";
    for (int i = 0; i < b->calls; i++) {
        Cerebelum__V1__SubmitResultResponse *rep = NULL;
        rpc_status_t st;
        uint64_t t0 = uv_hrtime();
        int rc = rpc_client_call(b->cl, RPC_SUBMIT_RESULT, &r.base,
                                 (ProtobufCMessage **)&rep, 5000, &st);
        if (b->lat_ns != NULL)
            b->lat_ns[i] = uv_hrtime() - t0;
        if (rc != 0 || rep == NULL || !rep->accepted)
            b->failures++;
        if (rep != NULL)
            protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_throughput(void **state)
{
    enum { SEQ = 2000, THREADS = 4, PER_THREAD = 1000 };
    fx_t fx;
    fx_init(&fx, "127.0.0.1:0");
    assert_int_equal(fx_start(&fx), 0);
    rpc_client_t *cl = fx_client(&fx, NULL);

    bench_t warm = {.cl = cl, .calls = 200};
    bench_main(&warm);
    assert_int_equal(warm.failures, 0);

    uint64_t *lat = calloc(SEQ, sizeof(*lat));
    assert_non_null(lat);
    bench_t seq = {.cl = cl, .calls = SEQ, .lat_ns = lat};
    uint64_t t0 = uv_hrtime();
    bench_main(&seq);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    assert_int_equal(seq.failures, 0);
    qsort(lat, SEQ, sizeof(*lat), cmp_u64);
    fprintf(stderr, "sequential unary SubmitResult, 1 thread: %.0f calls/s, "
            "p50 %.0f us, p99 %.0f us\n", SEQ / secs, (double)lat[SEQ / 2] / 1e3,
            (double)lat[SEQ * 99 / 100] / 1e3);
    free(lat);

    bench_t par[THREADS];
    t0 = uv_hrtime();
    for (int i = 0; i < THREADS; i++) {
        par[i] = (bench_t){.cl = cl, .calls = PER_THREAD};
        assert_int_equal(uv_thread_create(&par[i].thread, bench_main, &par[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        uv_thread_join(&par[i].thread);
    secs = (double)(uv_hrtime() - t0) / 1e9;
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(par[i].failures, 0);
    fprintf(stderr, "unary SubmitResult, %d threads on one channel: %.0f calls/s\n",
            THREADS, THREADS * PER_THREAD / secs);

    rpc_client_destroy(cl);
    fx_stop(&fx);
}

int main(int argc, char **argv)
{
    script = argc > 1 ? argv[1] : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_client),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
