/*
 * test_worker_sdk.c - the C worker SDK (cerebelum/worker.h) against a real
 * `cerebelum serve` (spawned from argv[1]) on a fresh database of the test
 * PostgreSQL, over loopback TCP:
 *   - end to end: steps on two queues, every outcome a handler can give
 *     (ok, a retryable failure and its retry, sleep, approval), many
 *     executions, results accepted once;
 *   - the server SIGKILLed while tasks run and restarted on the same port:
 *     the worker re-registers, results of steps that ran during the outage
 *     are submitted after it, everything completes, and the worker's error
 *     count shows back-off, not a hot loop;
 *   - drain: cbm_worker_stop while a handler runs waits for it and submits
 *     its result, and starts nothing new;
 *   - cancel: an attempt the server ended while the handler runs (its
 *     timeout_ms passed, or the execution was cancelled) is listed in
 *     cancel_task_ids and its result dropped.
 * Skips (77) without CEREBELUM_TEST_DATABASE_URL.
 */
#include <arpa/inet.h>
#include <cJSON.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>
#include <fcntl.h>

#include "cerebelum/client.h"
#include "cerebelum/worker.h"
#include "tests/harness/testdb.h"

extern char **environ;

static char url[512];
static const char *cerebelum_exe;
static char tmpdir[64];

/* ---- a server process -------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    int port;
    char addr[64];
    char log[128];
} server_t;

/* Servers still running, killed by the teardown if a test fails. */
static pid_t live[8];

static void track(pid_t pid, int on)
{
    for (int i = 0; i < 8; i++) {
        if (on && live[i] == 0) {
            live[i] = pid;
            return;
        }
        if (!on && live[i] == pid) {
            live[i] = 0;
            return;
        }
    }
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 8; i++) {
        if (live[i] != 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
    }
    return 0;
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0), port;
    assert_true(s >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(s);
    return port;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start `cerebelum serve` on port (0: a free one) and wait for its line. */
static void server_start(server_t *s, int port)
{
    static int n;
    char listen[64], dburl[600], line[256];
    char *argv[] = {(char *)cerebelum_exe, "serve", "--listen", listen, NULL};
    posix_spawn_file_actions_t fa;
    char *env[] = {dburl, "CEREBELUM_LOG=error", "GRPC_VERBOSITY=ERROR",
                   "ASAN_OPTIONS=detect_leaks=1", NULL};
    int64_t until = now_ms() + 30000;

    s->port = port != 0 ? port : free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
    snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", s->port);
    snprintf(dburl, sizeof(dburl), "CEREBELUM_DATABASE_URL=%s", url);
    snprintf(s->log, sizeof(s->log), "%s/serve-%d.err", tmpdir, n++);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(posix_spawn(&s->pid, cerebelum_exe, &fa, NULL, argv, env), 0);
    posix_spawn_file_actions_destroy(&fa);
    track(s->pid, 1);
    for (;;) {
        FILE *f = fopen(s->log, "r");
        int ready = 0;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            ready |= strstr(line, "serving on") != NULL;
        if (f != NULL) fclose(f);
        if (ready) return;
        if (now_ms() > until || waitpid(s->pid, NULL, WNOHANG) == s->pid)
            fail_msg("serve did not start (log %s)", s->log);
        sleep_ms(50);
    }
}

static void server_kill(server_t *s, int sig)
{
    int st = 0;
    kill(s->pid, sig);
    waitpid(s->pid, &st, 0);
    track(s->pid, 0);
    if (sig == SIGTERM && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fail_msg("serve exited with status %d (log %s)", st, s->log);
}

/* ---- handlers ------------------------------------------------------------------ */

static atomic_int entered, finished;

/* A number from the step's execution inputs (default dflt). */
static int input_int(const cbm_step_call_t *call, const char *key, int dflt)
{
    cJSON *in = cJSON_Parse(call->input_json);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "inputs"), key);
    int r = cJSON_IsNumber(v) ? v->valueint : dflt;
    cJSON_Delete(in);
    return r;
}

static void h_up(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    char buf[128];
    (void)arg;
    snprintf(buf, sizeof(buf), "{\"step\": \"%s\", \"attempt\": %d}", call->step, call->attempt);
    cbm_step_ok(out, buf);
}

static void h_flaky(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    if (call->attempt == 1) cbm_step_fail(out, "transient", "first attempt fails", true);
    else cbm_step_ok(out, "\"second time lucky\"");
}

static void h_nap(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_sleep(out, "\"rested\"", 200);
}

static void h_ask(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_approval(out, "sign_off", "{\"amount\": 5}", 0);
}

static void h_slow(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    atomic_fetch_add(&entered, 1);
    sleep_ms(input_int(call, "slow_ms", 300));
    cbm_step_ok(out, "\"slept\"");
    atomic_fetch_add(&finished, 1);
}

/* First attempt: rate limited, "come back in 1.5 s". */
static void h_limited(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    if (call->attempt == 1) cbm_step_fail_after(out, "llm_rate_limited", "429", 1500);
    else cbm_step_ok(out, "\"served\"");
}

/* Waits (up to 20 s) for the server's cancel, heard through
 * cbm_step_on_cancel. */
typedef struct {
    uv_mutex_t mu;
    uv_cond_t cv;
    int heard;
} hear_t;
static hear_t hear;

static void on_cancel(void *arg)
{
    hear_t *h = arg;
    uv_mutex_lock(&h->mu);
    h->heard++;
    uv_cond_signal(&h->cv);
    uv_mutex_unlock(&h->mu);
}

static void h_listen(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    int64_t until = now_ms() + 20000;
    (void)call;
    (void)arg;
    atomic_fetch_add(&entered, 1);
    cbm_step_on_cancel(out, on_cancel, &hear);
    uv_mutex_lock(&hear.mu);
    while (hear.heard == 0 && now_ms() < until) uv_cond_timedwait(&hear.cv, &hear.mu, 50000000);
    uv_mutex_unlock(&hear.mu);
    cbm_step_fail(out, "stopped", "the server cancelled the attempt", false);
    atomic_fetch_add(&finished, 1);
}

static cbm_worker_t *worker(const char *addr, int concurrency)
{
    static const char *queues[] = {"q1", "q2"};
    cbm_worker_opts_t o = {0};
    cbm_worker_t *w = NULL;
    cbm_error_t err = {0};

    o.server = addr;
    o.queues = queues;
    o.nqueues = 2;
    o.concurrency = concurrency;
    o.poll_wait_ms = 2000;
    if (cbm_worker_create(&w, &o, &err) != 0) fail_msg("worker: %s", err.message);
    assert_int_equal(cbm_worker_register_handler(w, "up", h_up, NULL), 0);
    assert_int_equal(cbm_worker_register_handler(w, "flaky", h_flaky, NULL), 0);
    assert_int_equal(cbm_worker_register_handler(w, "nap", h_nap, NULL), 0);
    assert_int_equal(cbm_worker_register_handler(w, "ask", h_ask, NULL), 0);
    assert_int_equal(cbm_worker_register_handler(w, "slow", h_slow, NULL), 0);
    assert_int_equal(cbm_worker_register_handler(w, "limited", h_limited, NULL), 0);
    assert_int_equal(cbm_worker_register_handler(w, "listen", h_listen, NULL), 0);
    assert_int_equal(cbm_worker_register_handler(w, "up", h_up, NULL), CBM_EEXIST);
    if (cbm_worker_start(w, &err) != 0) fail_msg("worker start: %s", err.message);
    return w;
}

static cbm_client_t *client(const char *addr)
{
    cbm_client_t *c = NULL;
    cbm_error_t err = {0};
    if (cbm_client_connect(&c, addr, NULL, &err) != 0) fail_msg("client: %s", err.message);
    return c;
}

static void put(cbm_client_t *c, const char *json)
{
    cbm_error_t err = {0};
    if (cbm_client_register_blueprint(c, json, NULL, &err) != 0) fail_msg("register: %s", err.message);
}

/* Start, retrying while the server is away (a restart). */
static void start(cbm_client_t *c, const char *bp, const char *inputs, char id[37])
{
    cbm_error_t err = {0};
    int64_t until = now_ms() + 30000;
    int rc;
    while ((rc = cbm_client_start(c, bp, inputs, NULL, id, &err)) == CBM_EUNAVAIL && now_ms() < until)
        sleep_ms(100);
    if (rc != 0) fail_msg("start %s: %s", bp, err.message);
}

/* Wait for status; returns the info (caller frees). */
static cbm_execution_info_t *wait_status(cbm_client_t *c, const char *id, const char *status)
{
    int64_t until = now_ms() + 30000;
    cbm_execution_info_t *x = NULL;
    for (;;) {
        cbm_error_t err = {0};
        if (cbm_client_get(c, id, &x, NULL, &err) == 0) {
            if (strcmp(x->status, status) == 0) return x;
            if (strcmp(x->status, "failed") == 0 && strcmp(status, "failed") != 0)
                fail_msg("%s failed: %s", id, x->error);
            if (now_ms() > until) fail_msg("%s is %s, never %s", id, x->status, status);
            cbm_execution_info_free(x);
        } else if (now_ms() > until) {
            fail_msg("get %s: %s", id, err.message);
        }
        sleep_ms(50);
    }
}

/* Types of an execution's events, space-separated (malloc'd). */
static char *event_types(cbm_client_t *c, const char *id)
{
    cbm_event_t *ev = NULL;
    size_t n = 0, len = 1;
    cbm_error_t err = {0};
    char *s;
    if (cbm_client_history(c, id, 1, &ev, &n, &err) != 0) fail_msg("history: %s", err.message);
    for (size_t i = 0; i < n; i++) len += strlen(ev[i].type) + 1;
    s = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        strcat(s, ev[i].type);
        strcat(s, " ");
    }
    cbm_events_free(ev, n);
    return s;
}

/* ---- tests --------------------------------------------------------------------- */

static void test_end_to_end(void **state)
{
    enum { N = 12 };
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char ids[N][37], aid[37];
    cbm_worker_stats_t st;
    cbm_error_t err = {0};
    (void)state;

    server_start(&s, 0);
    c = client(s.addr);
    w = worker(s.addr, 4);
    put(c, "{\"name\":\"sdk_e2e\",\"steps\":["
           "{\"name\":\"a\",\"queue\":\"q1\",\"handler\":\"up\"},"
           "{\"name\":\"b\",\"queue\":\"q2\",\"handler\":\"flaky\",\"depends_on\":[\"a\"],"
           " \"retry\":{\"max_attempts\":3,\"initial_ms\":10}},"
           "{\"name\":\"c\",\"queue\":\"q1\",\"handler\":\"nap\",\"depends_on\":[\"b\"]},"
           "{\"name\":\"d\",\"queue\":\"q2\",\"handler\":\"up\",\"depends_on\":[\"c\"]}]}");
    put(c, "{\"name\":\"sdk_ask\",\"steps\":[{\"name\":\"ask\",\"queue\":\"q1\",\"handler\":\"ask\"}]}");
    for (int i = 0; i < N; i++) start(c, "sdk_e2e", NULL, ids[i]);
    start(c, "sdk_ask", NULL, aid);
    for (int i = 0; i < N; i++) {
        cbm_execution_info_t *x = wait_status(c, ids[i], "completed");
        char *types = event_types(c, ids[i]);
        assert_non_null(strstr(x->result, "\"d\""));
        /* b failed once (retryable), then ran again; c slept. */
        assert_non_null(strstr(types, "StepFailed"));
        assert_non_null(strstr(types, "StepRetryScheduled"));
        cbm_execution_info_free(x);
        free(types);
    }
    cbm_execution_info_free(wait_status(c, aid, "awaiting_approval"));
    assert_int_equal(cbm_client_approve(c, aid, "ask", "{\"ok\": true}", "tester", &err), 0);
    {
        cbm_execution_info_t *x = wait_status(c, aid, "completed");
        assert_non_null(strstr(x->result, "ok"));
        cbm_execution_info_free(x);
    }
    cbm_worker_get_stats(w, &st);
    /* a, b twice, c, d per execution, and the approval step. */
    assert_int_equal(st.tasks, N * 5 + 1);
    assert_int_equal(st.submitted, N * 5 + 1);
    assert_int_equal(st.ignored, 0);
    assert_int_equal(st.cancelled, 0);
    assert_true(st.registrations >= 1);
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

static void test_server_restart(void **state)
{
    enum { N = 6 };
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char ids[2 * N][37];
    cbm_worker_stats_t st;
    int port;
    int64_t down;
    (void)state;

    server_start(&s, 0);
    port = s.port;
    c = client(s.addr);
    w = worker(s.addr, 3);
    put(c, "{\"name\":\"sdk_rc\",\"steps\":["
           "{\"name\":\"a\",\"queue\":\"q1\",\"handler\":\"slow\"},"
           "{\"name\":\"b\",\"queue\":\"q2\",\"handler\":\"up\",\"depends_on\":[\"a\"]}]}");
    atomic_store(&entered, 0);
    for (int i = 0; i < N; i++) start(c, "sdk_rc", "{\"slow_ms\": 700}", ids[i]);
    while (atomic_load(&entered) == 0) sleep_ms(10);
    /* Handlers are running: the server dies under them. */
    server_kill(&s, SIGKILL);
    down = now_ms();
    sleep_ms(1500);
    server_start(&s, port);
    down = now_ms() - down;
    for (int i = N; i < 2 * N; i++) start(c, "sdk_rc", "{\"slow_ms\": 10}", ids[i]);
    for (int i = 0; i < 2 * N; i++) cbm_execution_info_free(wait_status(c, ids[i], "completed"));
    cbm_worker_get_stats(w, &st);
    printf("# restart: down %lld ms, %llu registrations, %llu failed calls, %llu tasks, "
           "%llu accepted, %llu ignored\n",
           (long long)down, (unsigned long long)st.registrations, (unsigned long long)st.errors,
           (unsigned long long)st.tasks, (unsigned long long)st.submitted,
           (unsigned long long)st.ignored);
    assert_true(st.registrations >= 2);
    assert_true(st.errors >= 1);
    /* Back-off: 3 slots and a heartbeat over ~2 s of outage make a few
     * dozen failed calls at most; a hot loop would make thousands. */
    assert_true(st.errors < 100);
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

static void test_drain(void **state)
{
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char id[37];
    cbm_worker_stats_t st;
    int64_t t0, took;
    char *types;
    (void)state;

    server_start(&s, 0);
    c = client(s.addr);
    w = worker(s.addr, 2);
    put(c, "{\"name\":\"sdk_drain\",\"steps\":["
           "{\"name\":\"a\",\"queue\":\"q1\",\"handler\":\"slow\"},"
           "{\"name\":\"b\",\"queue\":\"q1\",\"handler\":\"up\",\"depends_on\":[\"a\"]}]}");
    atomic_store(&entered, 0);
    atomic_store(&finished, 0);
    start(c, "sdk_drain", "{\"slow_ms\": 1000}", id);
    while (atomic_load(&entered) == 0) sleep_ms(10);
    t0 = now_ms();
    cbm_worker_stop(w);
    cbm_worker_stop(w); /* idempotent */
    cbm_worker_wait(w);
    took = now_ms() - t0;
    assert_int_equal(atomic_load(&finished), 1);
    assert_true(took >= 500); /* it waited for the handler */
    cbm_worker_get_stats(w, &st);
    assert_int_equal(st.tasks, 1); /* b was not taken: polling had stopped */
    assert_int_equal(st.submitted, 1);
    types = event_types(c, id);
    assert_non_null(strstr(types, "StepCompleted"));
    free(types);
    cbm_worker_destroy(w);
    /* A new worker carries on with b. */
    w = worker(s.addr, 1);
    cbm_execution_info_free(wait_status(c, id, "completed"));
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

/* The server stops an attempt that the worker still runs: here the step's
 * timeout_ms passes. The worker learns it from cancel_task_ids on its next
 * heartbeat and drops the handler's late result. */
static void test_cancel_drops_result(void **state)
{
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char id[37];
    cbm_worker_stats_t st;
    (void)state;

    server_start(&s, 0);
    c = client(s.addr);
    w = worker(s.addr, 1);
    /* A short lease makes the worker heartbeat every 150 ms. */
    put(c, "{\"name\":\"sdk_cancel\",\"steps\":[{\"name\":\"a\",\"queue\":\"q1\",\"handler\":\"slow\","
           "\"timeout_ms\":500,\"heartbeat_timeout_ms\":450}]}");
    atomic_store(&entered, 0);
    atomic_store(&finished, 0);
    start(c, "sdk_cancel", "{\"slow_ms\": 1500}", id);
    while (atomic_load(&entered) == 0) sleep_ms(10);
    {
        cbm_execution_info_t *x = wait_status(c, id, "failed");
        assert_non_null(strstr(x->error, "timeout"));
        cbm_execution_info_free(x);
    }
    while (atomic_load(&finished) == 0) sleep_ms(10);
    sleep_ms(300);
    cbm_worker_get_stats(w, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.submitted, 0);
    assert_int_equal(st.ignored, 0);
    assert_true(st.heartbeats >= 2);
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

/* Cancelling the execution while its remote step runs ends the attempt
 * too: the next heartbeat lists it and the result is dropped. */
static void test_cancel_execution(void **state)
{
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char id[37];
    cbm_worker_stats_t st;
    cbm_error_t err = {0};
    char *types;
    (void)state;

    server_start(&s, 0);
    c = client(s.addr);
    w = worker(s.addr, 1);
    put(c, "{\"name\":\"sdk_cancel_x\",\"steps\":[{\"name\":\"a\",\"queue\":\"q1\","
           "\"handler\":\"slow\",\"heartbeat_timeout_ms\":600}]}");
    atomic_store(&entered, 0);
    atomic_store(&finished, 0);
    start(c, "sdk_cancel_x", "{\"slow_ms\": 1500}", id);
    while (atomic_load(&entered) == 0) sleep_ms(10);
    assert_int_equal(cbm_client_cancel(c, id, "test", &err), 0);
    cbm_execution_info_free(wait_status(c, id, "cancelled"));
    while (atomic_load(&finished) == 0) sleep_ms(10);
    sleep_ms(300);
    cbm_worker_get_stats(w, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.submitted, 0);
    assert_int_equal(st.ignored, 0);
    types = event_types(c, id);
    assert_null(strstr(types, "StepCompleted"));
    free(types);
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

/* A handler that asked to hear of cancels is told when the execution is
 * cancelled: it returns long before its 20 s wait would end. */
static void test_cancel_callback(void **state)
{
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char id[37];
    cbm_worker_stats_t st;
    cbm_error_t err = {0};
    int64_t t0;
    (void)state;

    server_start(&s, 0);
    c = client(s.addr);
    w = worker(s.addr, 1);
    put(c, "{\"name\":\"sdk_cancel_cb\",\"steps\":[{\"name\":\"a\",\"queue\":\"q1\","
           "\"handler\":\"listen\",\"heartbeat_timeout_ms\":600}]}");
    atomic_store(&entered, 0);
    atomic_store(&finished, 0);
    hear.heard = 0;
    start(c, "sdk_cancel_cb", "{}", id);
    while (atomic_load(&entered) == 0) sleep_ms(10);
    t0 = now_ms();
    assert_int_equal(cbm_client_cancel(c, id, "test", &err), 0);
    cbm_execution_info_free(wait_status(c, id, "cancelled"));
    while (atomic_load(&finished) == 0 && now_ms() - t0 < 30000) sleep_ms(10);
    assert_int_equal(atomic_load(&finished), 1);
    assert_int_equal(hear.heard, 1);
    sleep_ms(300);
    cbm_worker_get_stats(w, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.submitted, 0);
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

/* cbm_step_fail_after from a worker: the retry waits the 1.5 s asked for,
 * not the policy's 10 ms (the due time recorded in StepRetryScheduled). */
static void test_retry_after(void **state)
{
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char id[37];
    cbm_event_t *ev = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    int64_t failed_at = 0, due = 0;
    (void)state;

    server_start(&s, 0);
    c = client(s.addr);
    w = worker(s.addr, 1);
    put(c, "{\"name\":\"sdk_retry_after\",\"steps\":[{\"name\":\"a\",\"queue\":\"q1\","
           "\"handler\":\"limited\",\"retry\":{\"max_attempts\":3,\"initial_ms\":10}}]}");
    start(c, "sdk_retry_after", "{}", id);
    cbm_execution_info_free(wait_status(c, id, "completed"));
    if (cbm_client_history(c, id, 1, &ev, &n, &err) != 0) fail_msg("history: %s", err.message);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ev[i].type, "StepFailed") == 0) {
            failed_at = ev[i].recorded_at_us;
            assert_non_null(strstr(ev[i].payload, "\"retry_after_ms\":1500"));
        } else if (strcmp(ev[i].type, "StepRetryScheduled") == 0) {
            cJSON *p = cJSON_Parse(ev[i].payload);
            due = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(p, "due_us"));
            cJSON_Delete(p);
        }
    }
    cbm_events_free(ev, n);
    assert_true(failed_at > 0 && due > 0);
    if (due - failed_at < 1400000)
        fail_msg("retry due %lld us after the failure; Retry-After asked 1.5 s",
                 (long long)(due - failed_at));
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

/* The server dies while a worker runs a long step, and stays down longer
 * than the step's lease: the restarted server gives held leases one lease
 * of grace (store_task_grace), so the worker re-registers, heartbeats and
 * submits; the step is not failed as lease_expired and runs once. */
static void test_lease_grace(void **state)
{
    server_t s;
    cbm_worker_t *w;
    cbm_client_t *c;
    char id[37];
    int port;
    char *types;
    (void)state;

    server_start(&s, 0);
    port = s.port;
    c = client(s.addr);
    w = worker(s.addr, 1);
    put(c, "{\"name\":\"sdk_grace\",\"steps\":[{\"name\":\"a\",\"queue\":\"q1\","
           "\"handler\":\"slow\",\"heartbeat_timeout_ms\":2000}]}");
    atomic_store(&entered, 0);
    atomic_store(&finished, 0);
    start(c, "sdk_grace", "{\"slow_ms\": 6000}", id);
    while (atomic_load(&entered) == 0) sleep_ms(10);
    server_kill(&s, SIGKILL);
    sleep_ms(3000); /* the 2 s lease runs out while no server runs */
    server_start(&s, port);
    {
        cbm_execution_info_t *x = wait_status(c, id, "completed");
        cbm_execution_info_free(x);
    }
    assert_int_equal(atomic_load(&entered), 1);
    types = event_types(c, id);
    assert_null(strstr(types, "StepFailed"));
    free(types);
    cbm_worker_destroy(w);
    cbm_client_destroy(c);
    server_kill(&s, SIGTERM);
}

static void test_bad_options(void **state)
{
    cbm_worker_opts_t o = {0};
    cbm_worker_t *w = NULL;
    cbm_error_t err = {0};
    const char *q[] = {"q1"}, *empty[] = {""};
    cbm_worker_label_t bad = {NULL, "x"};
    (void)state;

    assert_int_equal(cbm_worker_create(&w, &o, &err), CBM_EINVAL);
    o.server = "127.0.0.1:1";
    assert_int_equal(cbm_worker_create(&w, &o, &err), CBM_EINVAL);
    assert_non_null(strstr(err.message, "queue"));
    o.queues = empty;
    o.nqueues = 1;
    assert_int_equal(cbm_worker_create(&w, &o, &err), CBM_EINVAL);
    o.queues = q;
    o.capabilities = &bad;
    o.ncapabilities = 1;
    assert_int_equal(cbm_worker_create(&w, &o, &err), CBM_EINVAL);
    o.ncapabilities = 0;
    o.concurrency = 100000;
    assert_int_equal(cbm_worker_create(&w, &o, &err), CBM_EINVAL);
    o.concurrency = 0;
    assert_int_equal(cbm_worker_create(&w, &o, &err), 0);
    assert_non_null(cbm_worker_id(w));
    /* No handlers: nothing to run. */
    assert_int_equal(cbm_worker_start(w, &err), CBM_EINVAL);
    /* A server that is not there: start works, stop is prompt. */
    assert_int_equal(cbm_worker_register_handler(w, "up", h_up, NULL), 0);
    assert_int_equal(cbm_worker_start(w, &err), 0);
    assert_int_equal(cbm_worker_start(w, &err), CBM_ESTATE);
    sleep_ms(300);
    {
        int64_t t0 = now_ms();
        cbm_worker_destroy(w);
        assert_true(now_ms() - t0 < 3000);
    }
    cbm_worker_destroy(NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test_teardown(test_end_to_end, teardown),
        cmocka_unit_test_teardown(test_drain, teardown),
        cmocka_unit_test_teardown(test_cancel_drops_result, teardown),
        cmocka_unit_test_teardown(test_cancel_execution, teardown),
        cmocka_unit_test_teardown(test_cancel_callback, teardown),
        cmocka_unit_test_teardown(test_retry_after, teardown),
        cmocka_unit_test_teardown(test_lease_grace, teardown),
        cmocka_unit_test_teardown(test_server_restart, teardown),
    };
    if (uv_mutex_init(&hear.mu) != 0 || uv_cond_init(&hear.cv) != 0) return 1;
    int rc;

    if (argc < 2) {
        fprintf(stderr, "usage: test_worker_sdk CEREBELUM\n");
        return 2;
    }
    cerebelum_exe = argv[1];
    if (testdb_create(url, sizeof(url)) != 0) return TESTDB_SKIP;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cbm-worker-sdk.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) return 1;
    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(url);
    if (rc == 0) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0) rc = 1;
    } else {
        fprintf(stderr, "server logs kept in %s\n", tmpdir);
    }
    return rc;
}
