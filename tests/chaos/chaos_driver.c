/*
 * chaos_driver - the processes of the chaos test (tests/chaos/chaos.sh),
 * which kills them, the `cerebelum serve` they talk to and PostgreSQL at
 * random and then checks the store against what they logged.
 *
 *   chaos_driver engine URL GEN RUNS ACKED RATE [final]
 *   chaos_driver decide URL GEN
 *   chaos_driver client SERVER ACKED RATE [final]
 *   chaos_driver worker SERVER ID RUNS QUEUE[,QUEUE...] CONCURRENCY
 *
 * engine: an embedded engine on URL with local handlers and the "e_"
 *   blueprints below. Prints "ready" on stdout once started, then starts
 *   RATE executions a second (round robin over e_dag, e_wait, e_parent),
 *   appending each id to ACKED only after its start returned (acknowledged),
 *   until it is killed or sent SIGUSR1. SIGUSR1, or "final" from the start:
 *   it starts nothing more, approves and signals what waits, and exits 0
 *   once nothing in the store is unfinished (3 if $CHAOS_DRAIN_S seconds
 *   pass first).
 *   Each handler run appends "GEN EXECUTION STEP ATTEMPT MS" to RUNS as it
 *   starts (one O_APPEND write(2), whole even when the process is killed)
 *   and returns {"gen": GEN, "t": MS}, so the checks can tell which process's
 *   run the store recorded. GEN grows with every incarnation.
 * decide: a client-only engine (runs nothing) that approves every e_wait
 *   waiting for its approval and signals every one waiting for its signal,
 *   whether or not an engine is up; prints "approved N signalled M".
 * client: a client of `cerebelum serve` at SERVER: registers the "r_"
 *   blueprints, prints "ready", then starts RATE executions a second (round
 *   robin over r_dag, r_wait, r_parent) and, between starts, approves and
 *   signals what waits, until SIGTERM. Each start has an idempotency key and
 *   is repeated with that key until the server acknowledges it, so every
 *   start attempted is acknowledged in the end (unless SIGTERM comes first).
 *   SIGUSR1 or "final": no more starts; decides until nothing is unfinished,
 *   as the engine does.
 * worker: a remote worker (cerebelum/worker.h) with id ID on the given
 *   queues. Each run appends "ID EXECUTION STEP ATTEMPT MS" to RUNS and
 *   returns {"by": ID, "t": MS}. SIGTERM drains it.
 *
 * Every failure that the chaos can cause (a store or server away) is retried
 * after a short pause, never fatal: only bad usage exits non-zero at once.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cerebelum/cerebelum.h>
#include <cerebelum/client.h>
#include <cerebelum/worker.h>

/* ---- blueprints ------------------------------------------------------------- */

/* Embedded: every task step has a local handler that logs its runs. */
static const char *const engine_blueprints[] = {
    "{\"name\":\"e_dag\",\"steps\":["
    "{\"name\":\"a\",\"handler\":\"work\"},"
    "{\"name\":\"b\",\"handler\":\"slow\",\"depends_on\":[\"a\"]},"
    "{\"name\":\"c\",\"handler\":\"work\",\"depends_on\":[\"a\"]},"
    "{\"name\":\"d\",\"handler\":\"work\",\"depends_on\":[\"b\",\"c\"]}]}",
    "{\"name\":\"e_wait\",\"timeline\":["
    "{\"name\":\"a\",\"handler\":\"work\"},"
    "{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":200},"
    "{\"name\":\"f\",\"handler\":\"flaky\",\"retry\":{\"max_attempts\":5,\"initial_ms\":50}},"
    "{\"name\":\"ask\",\"kind\":\"approval\"},"
    "{\"name\":\"go\",\"kind\":\"signal\"},"
    "{\"name\":\"d\",\"handler\":\"work\"}]}",
    "{\"name\":\"e_child\",\"timeline\":["
    "{\"name\":\"x\",\"handler\":\"slow\"},{\"name\":\"y\",\"handler\":\"work\"}]}",
    "{\"name\":\"e_parent\",\"timeline\":["
    "{\"name\":\"a\",\"handler\":\"work\"},"
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"e_child\","
    "\"inputs\":{\"gen\":\"$.deps.a.gen\"}},"
    "{\"name\":\"d\",\"handler\":\"work\"}]}",
};
static const char *const engine_starts[] = {"e_dag", "e_wait", "e_parent"};

/* Remote: task steps on queues q1 and q2 (workers), a few local "echo"
 * steps (serve --demo-handlers). A remote attempt whose worker dies fails
 * with lease_expired after heartbeat_timeout_ms and is retried. */
#define RSTEP(name, queue, handler, deps)                                                    \
    "{\"name\":\"" name "\",\"queue\":\"" queue "\",\"handler\":\"" handler "\","            \
    "\"heartbeat_timeout_ms\":2000,"                                                          \
    "\"retry\":{\"max_attempts\":100,\"initial_ms\":50,\"max_ms\":1000}" deps "}"
static const char *const remote_blueprints[] = {
    "{\"name\":\"r_dag\",\"steps\":[" RSTEP("a", "q1", "rwork", "") ","
    "{\"name\":\"b\",\"handler\":\"echo\",\"depends_on\":[\"a\"]},"
    RSTEP("c", "q2", "rslow", ",\"depends_on\":[\"a\"]") ","
    RSTEP("d", "q1", "rwork", ",\"depends_on\":[\"b\",\"c\"]") "]}",
    "{\"name\":\"r_wait\",\"timeline\":[" RSTEP("a", "q2", "rwork", "") ","
    "{\"name\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":200},"
    RSTEP("f", "q1", "rflaky", "") ","
    "{\"name\":\"ask\",\"kind\":\"approval\"},"
    "{\"name\":\"go\",\"kind\":\"signal\"},"
    "{\"name\":\"d\",\"handler\":\"echo\"}]}",
    "{\"name\":\"r_child\",\"timeline\":[" RSTEP("x", "q2", "rslow", "") ","
    "{\"name\":\"y\",\"handler\":\"echo\"}]}",
    "{\"name\":\"r_parent\",\"timeline\":[" RSTEP("a", "q1", "rwork", "") ","
    "{\"name\":\"sub\",\"kind\":\"subworkflow\",\"blueprint\":\"r_child\"},"
    RSTEP("d", "q2", "rwork", "") "]}",
};
static const char *const remote_starts[] = {"r_dag", "r_wait", "r_parent"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- run log ---------------------------------------------------------------- */

static const char *who = "?"; /* GEN (engine) or worker id */
static int runs_fd = -1;
static volatile sig_atomic_t stopping; /* SIGTERM (client): stop now */
static volatile sig_atomic_t draining; /* SIGUSR1: no more starts; drain */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

static void sleep_ms(long ms)
{
    sleep_us(ms * 1000);
}

/* Log a run as it starts (a run cut short by a kill counts too); returns
 * its start time, which goes into the result. */
static long long log_run(const cbm_step_call_t *call)
{
    char line[200];
    long long t = now_ms();
    int n = snprintf(line, sizeof(line), "%s %s %s %d %lld\n", who, call->execution_id,
                     call->step, call->attempt, t);
    if (n <= 0 || n >= (int)sizeof(line) || write(runs_fd, line, (size_t)n) != n) abort();
    return t;
}

/* A run's result: {"gen": GEN, "t": MS} from the engine, {"by": "ID", ...}
 * from a worker. */
static void finish_ok(cbm_step_out_t *out, long long t, bool remote)
{
    char res[160];
    if (remote)
        snprintf(res, sizeof(res), "{\"by\": \"%s\", \"t\": %lld}", who, t);
    else
        snprintf(res, sizeof(res), "{\"gen\": %s, \"t\": %lld}", who, t);
    cbm_step_ok(out, res);
}

/* A run: log it, pause for [0, max_us), end it. */
static void run_for(const cbm_step_call_t *call, cbm_step_out_t *out, bool remote, long max_us,
                    bool flaky)
{
    long long t = log_run(call);
    sleep_us(rand() % max_us);
    if (flaky && call->attempt == 1) {
        cbm_step_fail(out, "flaky", "first attempts fail", true);
        return;
    }
    finish_ok(out, t, remote);
}

static void h_work(const cbm_step_call_t *c, cbm_step_out_t *o, void *a)
{
    run_for(c, o, a != NULL, 2000, false);
}
static void h_slow(const cbm_step_call_t *c, cbm_step_out_t *o, void *a)
{
    /* Slow enough that a kill nearly always finds one running. */
    run_for(c, o, a != NULL, a != NULL ? 300000 : 30000, false);
}
static void h_flaky(const cbm_step_call_t *c, cbm_step_out_t *o, void *a)
{
    run_for(c, o, a != NULL, 2000, true);
}

/* ---- one API over an engine or a client ------------------------------------- */

typedef struct api {
    cbm_engine_t *e;
    cbm_client_t *c;
} api_t;

static int api_list(api_t *a, const cbm_list_opts_t *o, cbm_execution_info_t **out, size_t *n,
                    cbm_error_t *err)
{
    return a->c ? cbm_client_list(a->c, o, out, n, err) : cbm_execution_list(a->e, o, out, n, err);
}

/* Decide every execution waiting in @p status: approve step "ask" or send
 * signal "go". A decision another process made first is refused: fine.
 * Returns how many were accepted, or -1 if the list failed. */
static int decide_all(api_t *a, const char *status, const char *by)
{
    cbm_list_opts_t lo = {0};
    char after[37] = "", resp[64];
    int n_ok = 0;

    snprintf(resp, sizeof(resp), "{\"by\": \"%s\"}", by);
    lo.status = status;
    lo.limit = 200;
    for (;;) {
        cbm_execution_info_t *page = NULL;
        size_t n = 0;
        cbm_error_t err = {0};
        lo.after = after[0] ? after : NULL;
        if (api_list(a, &lo, &page, &n, &err) != 0) return -1;
        if (n == 0) {
            cbm_execution_infos_free(page, n);
            break;
        }
        for (size_t i = 0; i < n && !stopping; i++) {
            int rc;
            if (strcmp(status, "awaiting_approval") == 0)
                rc = a->c ? cbm_client_approve(a->c, page[i].id, "ask", resp, by, &err)
                          : cbm_execution_approve(a->e, page[i].id, "ask", resp, by, &err);
            else
                rc = a->c ? cbm_client_signal(a->c, page[i].id, "go", resp, &err)
                          : cbm_execution_signal(a->e, page[i].id, "go", resp, &err);
            if (rc == 0) n_ok++;
        }
        snprintf(after, sizeof(after), "%s", page[n - 1].id);
        cbm_execution_infos_free(page, n);
        if (n < lo.limit || stopping) break;
    }
    return n_ok;
}

/* Executions not finished, or -1 if a list failed. The server's protocol
 * has no status for a parent waiting for its child (awaiting_child; it lists
 * no such filter), so through a client those are seen only by their child,
 * which is unfinished meanwhile; a parent left waiting for a finished child
 * would end the drain early and fail the checks. */
static long unfinished(api_t *a)
{
    static const char *const st[] = {"running", "sleeping", "awaiting_approval",
                                     "awaiting_signal", "awaiting_child"};
    long total = 0;
    for (size_t i = 0; i < NELEM(st) - (a->c != NULL); i++) {
        cbm_list_opts_t lo = {0};
        cbm_execution_info_t *page = NULL;
        size_t n = 0;
        cbm_error_t err = {0};
        lo.status = st[i];
        lo.limit = 1;
        if (api_list(a, &lo, &page, &n, &err) != 0) {
            fprintf(stderr, "list %s: %s: %s\n", st[i], cbm_err_name(err.code), err.message);
            return -1;
        }
        cbm_execution_infos_free(page, n);
        total += (long)n;
    }
    return total;
}

/* Final phase: decide until nothing is unfinished (twice in a row, a second
 * apart, so a child started by a completing step is seen). Returns 0, or 3
 * if $CHAOS_DRAIN_S seconds passed first (unset: no deadline). */
static int drain(api_t *a, const char *by)
{
    const char *env = getenv("CHAOS_DRAIN_S");
    long deadline_s = env != NULL ? atol(env) : 0;
    long long until = deadline_s > 0 ? now_ms() + deadline_s * 1000 : 0;
    int quiet = 0;
    while (!stopping) {
        if (until != 0 && now_ms() > until) {
            fprintf(stderr, "%s: not finished within %ld s\n", by, deadline_s);
            return 3;
        }
        decide_all(a, "awaiting_approval", by);
        decide_all(a, "awaiting_signal", by);
        long left = unfinished(a);
        quiet = left == 0 ? quiet + 1 : 0;
        if (quiet >= 2) return 0;
        sleep_ms(left == 0 ? 1000 : 200);
    }
    return 1;
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        draining = 1;
    else
        stopping = 1;
}

/* ---- engine ----------------------------------------------------------------- */

static int engine_main(int argc, char **argv)
{
    cbm_engine_opts_t o = {0};
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    api_t a = {0};
    FILE *acked;
    double rate;
    int rc;

    if (argc < 7) return 2;
    o.database_url = argv[2];
    who = argv[3];
    runs_fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
    acked = fopen(argv[5], "a");
    rate = atof(argv[6]);
    if (argc > 7 && strcmp(argv[7], "final") == 0) draining = 1;
    if (runs_fd < 0 || acked == NULL || rate <= 0) return 2;

    if (cbm_engine_create(&e, &o, &err) != 0 ||
        cbm_engine_register_step(e, "work", h_work, NULL) != 0 ||
        cbm_engine_register_step(e, "slow", h_slow, NULL) != 0 ||
        cbm_engine_register_step(e, "flaky", h_flaky, NULL) != 0 || cbm_engine_start(e, &err) != 0)
        goto fail;
    for (size_t i = 0; i < NELEM(engine_blueprints); i++)
        while (cbm_engine_register_blueprint(e, engine_blueprints[i], NULL, &err) != 0) {
            if (err.code != CBM_EUNAVAIL && err.code != CBM_EIO) goto fail;
            sleep_ms(200);
        }
    printf("ready\n");
    fflush(stdout);
    a.e = e;
    for (unsigned long k = 0; !draining; k++) {
        char id[37];
        const char *bp = engine_starts[k % NELEM(engine_starts)];
        long long t0 = now_ms();
        if (cbm_execution_start(e, bp, "{}", id, &err) == 0) {
            fprintf(acked, "%s\n", id);
            fflush(acked);
        } else {
            fprintf(stderr, "engine %s: start %s: %s: %s\n", who, bp, cbm_err_name(err.code),
                    err.message);
            sleep_ms(100);
        }
        long wait = (long)(1000.0 / rate) - (long)(now_ms() - t0);
        if (wait > 0 && !draining) sleep_ms(wait);
    }
    fclose(acked);
    rc = drain(&a, "engine");
    cbm_engine_destroy(e);
    return rc;
fail:
    fprintf(stderr, "engine %s: %s: %s\n", who, cbm_err_name(err.code), err.message);
    cbm_engine_destroy(e);
    return 1;
}

static int decide_main(int argc, char **argv)
{
    cbm_engine_opts_t o = {0};
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    api_t a = {0};
    int na, ns;

    if (argc != 4) return 2;
    o.database_url = argv[2];
    o.client_only = true;
    o.connect_timeout_ms = 10000;
    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_start(e, &err) != 0) {
        fprintf(stderr, "decide %s: %s: %s\n", argv[3], cbm_err_name(err.code), err.message);
        cbm_engine_destroy(e);
        return 1;
    }
    a.e = e;
    na = decide_all(&a, "awaiting_approval", argv[3]);
    ns = decide_all(&a, "awaiting_signal", argv[3]);
    printf("approved %d signalled %d\n", na, ns);
    cbm_engine_destroy(e);
    return na < 0 || ns < 0;
}

/* ---- client ----------------------------------------------------------------- */

static int client_main(int argc, char **argv)
{
    cbm_client_opts_t co = {0};
    cbm_client_t *c = NULL;
    cbm_error_t err = {0};
    api_t a = {0};
    FILE *acked;
    double rate;
    int rc = 0;

    if (argc < 5) return 2;
    acked = fopen(argv[3], "a");
    rate = atof(argv[4]);
    if (argc > 5 && strcmp(argv[5], "final") == 0) draining = 1;
    if (acked == NULL || rate <= 0) return 2;
    co.timeout_ms = 5000;
    if (cbm_client_connect(&c, argv[2], &co, &err) != 0) goto fail;
    a.c = c;
    for (size_t i = 0; i < NELEM(remote_blueprints) && !stopping; i++)
        while (cbm_client_register_blueprint(c, remote_blueprints[i], NULL, &err) != 0) {
            if (err.code == CBM_EINVAL || stopping) goto fail;
            sleep_ms(200);
        }
    printf("ready\n");
    fflush(stdout);
    long long last_decide = 0;
    for (unsigned long k = 0; !stopping && !draining; k++) {
        char id[37], key[64];
        const char *bp = remote_starts[k % NELEM(remote_starts)];
        long long t0 = now_ms();
        snprintf(key, sizeof(key), "chaos-%d-%lu", (int)getpid(), k);
        /* The same key until acknowledged: a start whose answer was lost
         * is found again, not started twice. */
        /* A drain waits for this start: its key may already have started. */
        while (!stopping && cbm_client_start(c, bp, "{}", key, id, &err) != 0) {
            fprintf(stderr, "client: start %s: %s: %s\n", key, cbm_err_name(err.code),
                    err.message);
            sleep_ms(200);
        }
        if (stopping) break;
        fprintf(acked, "%s\n", id);
        fflush(acked);
        if (now_ms() - last_decide > 500) {
            decide_all(&a, "awaiting_approval", "client");
            decide_all(&a, "awaiting_signal", "client");
            last_decide = now_ms();
        }
        long wait = (long)(1000.0 / rate) - (long)(now_ms() - t0);
        if (wait > 0 && !draining) sleep_ms(wait);
    }
    fclose(acked);
    if (draining && !stopping) rc = drain(&a, "client");
    cbm_client_destroy(c);
    return rc;
fail:
    fprintf(stderr, "client: %s: %s\n", cbm_err_name(err.code), err.message);
    cbm_client_destroy(c);
    return 1;
}

/* ---- worker ----------------------------------------------------------------- */

/* SIGTERM and SIGINT are blocked in every thread; this one waits for them and
 * drains the worker (as examples/remote does). */
static void *signal_thread(void *arg)
{
    sigset_t set;
    int sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigwait(&set, &sig);
    cbm_worker_stop(arg);
    return NULL;
}

static int worker_main(int argc, char **argv)
{
    cbm_worker_opts_t o = {0};
    cbm_worker_t *w = NULL;
    cbm_error_t err = {0};
    const char *queues[4];
    sigset_t set;
    pthread_t sig;
    int rc;

    if (argc != 7) return 2;
    o.server = argv[2];
    o.worker_id = who = argv[3];
    runs_fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
    for (char *q = strtok(argv[5], ","); q != NULL && o.nqueues < 4; q = strtok(NULL, ","))
        queues[o.nqueues++] = q;
    o.queues = queues;
    o.concurrency = atoi(argv[6]);
    o.poll_wait_ms = 5000;
    if (runs_fd < 0 || o.nqueues == 0) return 2;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (cbm_worker_create(&w, &o, &err) != 0) {
        fprintf(stderr, "worker %s: %s\n", who, err.message);
        return 1;
    }
    cbm_worker_register_handler(w, "rwork", h_work, w);
    cbm_worker_register_handler(w, "rslow", h_slow, w);
    cbm_worker_register_handler(w, "rflaky", h_flaky, w);
    pthread_create(&sig, NULL, signal_thread, w);
    rc = cbm_worker_run(w, &err);
    if (rc != 0) {
        fprintf(stderr, "worker %s: %s\n", who, err.message);
        pthread_kill(sig, SIGTERM);
    }
    pthread_join(sig, NULL);
    cbm_worker_destroy(w);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct sigaction sa;

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    /* Before any thread exists. The worker blocks SIGTERM and SIGINT
     * itself and waits for them on a thread of its own. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    if (argc >= 2 && strcmp(argv[1], "client") == 0) {
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
    }
    if (argc >= 2 && strcmp(argv[1], "engine") == 0) return engine_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "decide") == 0) return decide_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "client") == 0) return client_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "worker") == 0) return worker_main(argc, argv);
    fprintf(stderr, "usage: chaos_driver engine URL GEN RUNS ACKED RATE [final]\n"
                    "       chaos_driver decide URL GEN\n"
                    "       chaos_driver client SERVER ACKED RATE [final]\n"
                    "       chaos_driver worker SERVER ID RUNS QUEUES CONCURRENCY\n");
    return 2;
}
