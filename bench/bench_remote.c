/*
 * bench_remote - W1 and W2 with every step run by a remote worker over gRPC
 * on loopback: a `cerebelum serve` process (spawned from argv[1]), a worker
 * of this process (cerebelum/worker.h) and a client (cerebelum/client.h).
 * Prints figures; asserts nothing about speed.
 *
 *   CEREBELUM_DATABASE_URL=... bench_remote CEREBELUM [W1_EXECUTIONS] [W2_RUNS] [W1B_EXECUTIONS]
 *
 *   W1: W1_EXECUTIONS (1000) executions of 3 sequential no-op steps on one
 *       queue, started by 8 client threads, run by one worker with 32 polls
 *       out: steps/s from the first start to the last step's handler;
 *   W1 batch: the same with W1B_EXECUTIONS (2000) executions started by one
 *       client thread with StartExecutions, 500 a call (the form);
 *   W2: one execution of 10 sequential no-op steps, W2_RUNS (100) times in a
 *       row: start call to completion seen by the client, p50/p99;
 *   dispatch: in W2, (a) start returned -> first step's handler starts (the
 *       start's commit wrote the task), and (b) a step's handler returned ->
 *       the next step's handler starts (submit, commit of the result and of
 *       the next task, long-poll wake-up, delivery), p50/p99.
 * The worker and the client share this process's monotonic clock.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include <cerebelum/client.h>
#include <cerebelum/worker.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[(size_t)(p * (double)(n - 1))];
}

/* ---- handlers: count, and time each step ---------------------------------- */

static atomic_long w1_last;           /* W1 last steps run */
static double w1_end;
static atomic_long w1b_last;          /* W1 batch: last steps run */
static double w1b_end;
static uv_mutex_t mu;
static uv_cond_t cv;
/* W2: per step, when its handler started and returned (this run). */
static double w2_in[11], w2_out[11];
static int w2_done;

static void w1_step(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    cbm_step_ok(out, "{\"ok\":true}");
    if (strcmp(call->step, "c") == 0) {
        long n = atomic_fetch_add(&w1_last, 1) + 1;
        if (n == (long)(intptr_t)arg) w1_end = now_s();
    }
}

static void w1b_step(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    cbm_step_ok(out, "{\"ok\":true}");
    if (strcmp(call->step, "c") == 0) {
        long n = atomic_fetch_add(&w1b_last, 1) + 1;
        if (n == (long)(intptr_t)arg) w1b_end = now_s();
    }
}

static void w2_step(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    int k = atoi(call->step + 1); /* s1..s10 */
    double t = now_s();
    (void)arg;
    cbm_step_ok(out, "{\"ok\":true}");
    uv_mutex_lock(&mu);
    if (k >= 1 && k <= 10) {
        w2_in[k] = t;
        w2_out[k] = now_s();
    }
    if (k == 10) {
        w2_done = 1;
        uv_cond_signal(&cv);
    }
    uv_mutex_unlock(&mu);
}

/* ---- the server ---------------------------------------------------------------- */

static pid_t serve(const char *exe, char addr[64])
{
    char *argv[] = {(char *)exe, "serve", "--listen", "127.0.0.1:0", NULL};
    char log[] = "/tmp/cbm-bench-remote.XXXXXX", line[256];
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int fd = mkstemp(log);

    if (fd < 0) exit(1);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    setenv("CEREBELUM_LOG", "error", 0);
    setenv("GRPC_VERBOSITY", "ERROR", 0);
    if (posix_spawn(&pid, exe, &fa, NULL, argv, environ) != 0) {
        perror("bench: spawn serve");
        exit(1);
    }
    posix_spawn_file_actions_destroy(&fa);
    close(fd);
    for (int i = 0; i < 600; i++) {
        FILE *f = fopen(log, "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            if (sscanf(line, "cerebelum: serving on %63s", addr) == 1) {
                fclose(f);
                unlink(log);
                return pid;
            }
        }
        if (f != NULL) fclose(f);
        usleep(50000);
    }
    fprintf(stderr, "bench: serve did not start (log %s)\n", log);
    kill(pid, SIGKILL);
    exit(1);
}

static void check(int rc, const cbm_error_t *err, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "bench: %s: %s\n", what, err->message);
        exit(1);
    }
}

typedef struct starter {
    const char *addr;
    int from, to;
} starter_t;

static void start_thread(void *arg)
{
    starter_t *s = arg;
    cbm_client_t *c = NULL;
    cbm_error_t err = {0};
    char id[37];

    check(cbm_client_connect(&c, s->addr, NULL, &err), &err, "connect");
    for (int i = s->from; i < s->to; i++) check(cbm_client_start(c, "w1", NULL, NULL, id, &err), &err, "start w1");
    cbm_client_destroy(c);
}

int main(int argc, char **argv)
{
    int w1n = argc > 2 ? atoi(argv[2]) : 1000, w2n = argc > 3 ? atoi(argv[3]) : 100;
    int w1bn = argc > 4 ? atoi(argv[4]) : 2000;
    const char *queues[] = {"bench"};
    cbm_worker_opts_t wo = {0};
    cbm_worker_t *w = NULL;
    cbm_client_t *c = NULL;
    cbm_error_t err = {0};
    char addr[64], id[37];
    double t0, *lat, *first, *next;
    size_t nnext = 0;
    pid_t pid;

    if (argc < 2) {
        fprintf(stderr, "usage: bench_remote CEREBELUM [W1_EXECUTIONS] [W2_RUNS] [W1B_EXECUTIONS]\n");
        return 2;
    }
    uv_mutex_init(&mu);
    uv_cond_init(&cv);
    pid = serve(argv[1], addr);
    check(cbm_client_connect(&c, addr, NULL, &err), &err, "connect");
    check(cbm_client_register_blueprint(
              c, "{\"name\":\"w1\",\"timeline\":["
                 "{\"name\":\"a\",\"queue\":\"bench\",\"handler\":\"w1\"},"
                 "{\"name\":\"b\",\"queue\":\"bench\",\"handler\":\"w1\"},"
                 "{\"name\":\"c\",\"queue\":\"bench\",\"handler\":\"w1\"}]}",
              NULL, &err),
          &err, "register w1");
    check(cbm_client_register_blueprint(
              c, "{\"name\":\"w1b\",\"timeline\":["
                 "{\"name\":\"a\",\"queue\":\"bench\",\"handler\":\"w1b\"},"
                 "{\"name\":\"b\",\"queue\":\"bench\",\"handler\":\"w1b\"},"
                 "{\"name\":\"c\",\"queue\":\"bench\",\"handler\":\"w1b\"}]}",
              NULL, &err),
          &err, "register w1b");
    {
        char bp[2048];
        int len = snprintf(bp, sizeof(bp), "{\"name\":\"w2\",\"timeline\":[");
        for (int k = 1; k <= 10; k++)
            len += snprintf(bp + len, sizeof(bp) - (size_t)len,
                            "%s{\"name\":\"s%d\",\"queue\":\"bench\",\"handler\":\"w2\"}",
                            k > 1 ? "," : "", k);
        snprintf(bp + len, sizeof(bp) - (size_t)len, "]}");
        check(cbm_client_register_blueprint(c, bp, NULL, &err), &err, "register w2");
    }
    wo.server = addr;
    wo.queues = queues;
    wo.nqueues = 1;
    wo.concurrency = getenv("BENCH_SLOTS") ? atoi(getenv("BENCH_SLOTS")) : 32;
    check(cbm_worker_create(&w, &wo, &err), &err, "worker");
    cbm_worker_register_handler(w, "w1", w1_step, (void *)(intptr_t)w1n);
    cbm_worker_register_handler(w, "w1b", w1b_step, (void *)(intptr_t)w1bn);
    cbm_worker_register_handler(w, "w2", w2_step, NULL);
    check(cbm_worker_start(w, &err), &err, "worker start");
    usleep(300000); /* registered, polls parked */

    /* W1 */
    {
        enum { T = 8 };
        uv_thread_t th[T];
        starter_t st[T];
        double started;
        t0 = now_s();
        for (int i = 0; i < T; i++) {
            st[i] = (starter_t){addr, w1n * i / T, w1n * (i + 1) / T};
            uv_thread_create(&th[i], start_thread, &st[i]);
        }
        for (int i = 0; i < T; i++) uv_thread_join(&th[i]);
        started = now_s();
        while (atomic_load(&w1_last) < w1n) usleep(1000);
        printf("remote W1: %d executions x 3 steps: %.0f steps/s, %.0f executions/s "
               "(starts alone: %.0f/s over 8 client threads)\n",
               w1n, 3.0 * w1n / (w1_end - t0), w1n / (w1_end - t0), w1n / (started - t0));
    }

    /* W1 with batch starts: one client thread, StartExecutions of 500 */
    if (w1bn > 0) {
        enum { B = 500 };
        cbm_client_start_item_t items[B];
        cbm_client_start_result_t *res = calloc(B, sizeof(*res));
        double started;
        t0 = now_s();
        for (int i = 0; i < w1bn; i += B) {
            int n = w1bn - i < B ? w1bn - i : B;
            for (int k = 0; k < n; k++) items[k] = (cbm_client_start_item_t){.blueprint = "w1b"};
            check(cbm_client_start_many(c, items, (size_t)n, res, &err), &err, "start many w1b");
            for (int k = 0; k < n; k++)
                if (res[k].code != 0) {
                    fprintf(stderr, "bench: start w1b item %d: %s\n", k, res[k].message);
                    exit(1);
                }
        }
        started = now_s();
        free(res);
        while (atomic_load(&w1b_last) < w1bn) usleep(1000);
        printf("remote W1, batch starts: %d executions x 3 steps: %.0f steps/s, %.0f executions/s "
               "(starts alone: %.0f/s, StartExecutions of %d from one thread)\n",
               w1bn, 3.0 * w1bn / (w1b_end - t0), w1bn / (w1b_end - t0), w1bn / (started - t0), B);
    }

    /* W2 */
    lat = calloc((size_t)w2n, sizeof(*lat));
    first = calloc((size_t)w2n, sizeof(*first));
    next = calloc((size_t)w2n * 9, sizeof(*next));
    for (int r = 0; r < w2n; r++) {
        cbm_execution_info_t *x = NULL;
        double s0, s1;
        uv_mutex_lock(&mu);
        w2_done = 0;
        uv_mutex_unlock(&mu);
        s0 = now_s();
        check(cbm_client_start(c, "w2", NULL, NULL, id, &err), &err, "start w2");
        s1 = now_s();
        uv_mutex_lock(&mu);
        while (!w2_done) uv_cond_wait(&cv, &mu);
        uv_mutex_unlock(&mu);
        for (;;) { /* the last result's commit: seen by the client */
            check(cbm_client_get(c, id, &x, NULL, &err), &err, "get");
            if (strcmp(x->status, "completed") == 0) break;
            cbm_execution_info_free(x);
            usleep(200);
        }
        cbm_execution_info_free(x);
        lat[r] = (now_s() - s0) * 1000;
        uv_mutex_lock(&mu);
        first[r] = (w2_in[1] - s1) * 1000;
        for (int k = 2; k <= 10; k++) next[nnext++] = (w2_in[k] - w2_out[k - 1]) * 1000;
        uv_mutex_unlock(&mu);
    }
    printf("remote W2: 10 sequential steps x %d: p50 %.1f ms, p99 %.1f ms\n", w2n,
           pct(lat, (size_t)w2n, 0.5), pct(lat, (size_t)w2n, 0.99));
    printf("remote dispatch, start returned -> first handler: p50 %.2f ms, p99 %.2f ms\n",
           pct(first, (size_t)w2n, 0.5), pct(first, (size_t)w2n, 0.99));
    printf("remote dispatch, handler returned -> next handler: p50 %.2f ms, p99 %.2f ms\n",
           pct(next, nnext, 0.5), pct(next, nnext, 0.99));
    free(lat);
    free(first);
    free(next);
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    uv_mutex_destroy(&mu);
    uv_cond_destroy(&cv);
    return 0;
}
