/*
 * bench_delib - deliberations end to end: a `cerebelum serve` process, two
 * `cerebelum-llm-worker` processes and the OpenAI-compatible stub
 * (tests/llmstub/llmstub.py), all spawned here on loopback, driven through
 * the public client (cerebelum/client.h). Prints figures; asserts nothing
 * about speed.
 *
 *   CEREBELUM_DATABASE_URL=... bench_delib CEREBELUM LLM_WORKER STUB [RUNS]
 *
 *   overhead: a one-call deliberation (1 agent, no critique, no scoring),
 *       RUNS (30) times in a row for stub service times T = 0, 50 and 500 ms
 *       (time to first token; the rest of the answer is instant): the
 *       parent's wall time (ExecutionStarted to ExecutionCompleted, the
 *       store's clock) minus T, p50/p99. What is left is the engine's cost
 *       of one LLM call: the child's start, the task's dispatch to a worker,
 *       the HTTP round trip to the stub, the result's commit, the local
 *       selection step and the parent's completion.
 *   critical path: a 3-agent ring deliberation with a judge (12 calls in 4
 *       dependent layers) at T = 500 ms: wall time against 4 x 500 ms.
 *   load: 100 deliberations at once (1,200 calls) on the two workers with 32
 *       slots each, T = 0 with 400 tokens/s: calls/s, the workers' CPU time
 *       per call (from /proc), and history bytes per call (the events of
 *       the whole run in the store, parents included, divided by the calls).
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <cerebelum/client.h>

extern char **environ;

static const char *cbm_exe, *worker_exe, *stub_py;
static char tmp[64] = "/tmp/cbm-bench-delib.XXXXXX";
static pid_t stub_pid, serve_pid, workers[2];
static int stub_port;
static char addr[64];

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

static void stop_all(void)
{
    pid_t all[] = {workers[0], workers[1], serve_pid, stub_pid};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i] > 0) {
            kill(all[i], SIGKILL);
            waitpid(all[i], NULL, 0);
        }
}

static void die(const char *fmt, const char *what)
{
    fprintf(stderr, "bench_delib: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, " (logs in %s)\n", tmp);
    stop_all();
    exit(1);
}

static pid_t spawn(char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    char path[128];
    pid_t pid;

    snprintf(path, sizeof(path), "%s/%s", tmp, log);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) die("cannot spawn %s", argv[0]);
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* (Re)start the stub on its port with time to first token ttft_ms. */
static void stub_start(int ttft_ms, int tps)
{
    char port[16], ttft[16], rate[16], pf[128], journal[128];
    FILE *f;

    if (stub_pid > 0) {
        kill(stub_pid, SIGKILL);
        waitpid(stub_pid, NULL, 0);
    }
    snprintf(port, sizeof(port), "%d", stub_port);
    snprintf(ttft, sizeof(ttft), "%d", ttft_ms);
    snprintf(rate, sizeof(rate), "%d", tps);
    snprintf(pf, sizeof(pf), "%s/stub.port", tmp);
    snprintf(journal, sizeof(journal), "%s/journal.jsonl", tmp);
    unlink(pf);
    {
        char *argv[] = {"python3", (char *)stub_py, "--port", port, "--port-file", pf,
                        "--models", "bench-model", "--ttft-ms", ttft, "--tps", rate, NULL};
        stub_pid = spawn(argv, "stub.err");
    }
    for (int i = 0; i < 200; i++) {
        if ((f = fopen(pf, "r")) != NULL) {
            int p = 0;
            if (fscanf(f, "%d", &p) == 1 && p > 0) {
                fclose(f);
                stub_port = p;
                return;
            }
            fclose(f);
        }
        usleep(50000);
    }
    die("%s", "the stub did not start");
}

static void serve_start(void)
{
    char *argv[] = {(char *)cbm_exe, "serve", "--listen", "127.0.0.1:0", NULL};
    char path[128], line[256];
    snprintf(path, sizeof(path), "%s/serve.err", tmp);
    serve_pid = spawn(argv, "serve.err");
    for (int i = 0; i < 600; i++) {
        FILE *f = fopen(path, "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            if (sscanf(line, "cerebelum: serving on %63s", addr) == 1) {
                fclose(f);
                return;
            }
        if (f != NULL) fclose(f);
        usleep(50000);
    }
    die("%s", "serve did not start");
}

static void workers_start(void)
{
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d/v1", stub_port);
    for (int i = 0; i < 2; i++) {
        char log[16];
        char *argv[] = {(char *)worker_exe, "--server", addr,    "--base-url", base,
                        "--model",          "bench-model", "--queue", "llm",
                        "--concurrency",    "32",          NULL};
        snprintf(log, sizeof(log), "llm-%d.err", i);
        workers[i] = spawn(argv, log);
    }
}

/* CPU seconds (user + system) a process has used. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL) return 0;
    if (fgets(buf, sizeof(buf), f) == NULL) buf[0] = '\0';
    fclose(f);
    if ((p = strrchr(buf, ')')) == NULL) return 0;
    /* after the name: state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void check(int rc, const cbm_error_t *err, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "bench_delib: %s: %s\n", what, err->message);
        stop_all();
        exit(1);
    }
}

static void put_council(void)
{
    char path[128];
    FILE *f;
    int status;
    pid_t pid;
    snprintf(path, sizeof(path), "%s/council.json", tmp);
    if ((f = fopen(path, "w")) == NULL) die("%s", "cannot write the council");
    fputs("{\"name\": \"bench\", \"role\": \"developer\", \"queue\": \"llm\","
          " \"model\": {\"name\": \"bench-model\", \"max_tokens\": 64},"
          " \"system_prompt\": \"You are {{agent}}, {{persona}}.\","
          " \"prompts\": {\"generate\": \"Solve: {{task}}\", \"critique\": \"Critique: {{proposal}}\","
          " \"revise\": \"Revise {{proposal}} given {{critiques}}\","
          " \"score\": \"Score {{proposal}} on {{rubric}}\"},"
          " \"rubric\": {\"correctness\": {\"weight\": 1, \"description\": \"it is right\"}},"
          " \"agents\": [{\"id\": \"a1\", \"persona\": \"careful\"}, {\"id\": \"a2\", \"persona\": \"quick\"},"
          " {\"id\": \"a3\", \"persona\": \"sceptical\"}]}\n", f);
    fclose(f);
    {
        char *argv[] = {(char *)cbm_exe, "council", "put", path, "--server", addr, NULL};
        pid = spawn(argv, "cli.err");
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s", "cerebelum council put failed");
}

/* Poll (every 2 ms) until id is terminal; its info (the caller frees). */
static cbm_execution_info_t *wait_done(cbm_client_t *c, const char *id)
{
    double until = now_s() + 600;
    for (;;) {
        cbm_execution_info_t *x = NULL;
        cbm_error_t err = {0};
        check(cbm_client_get(c, id, &x, NULL, &err), &err, "get");
        if (strcmp(x->status, "completed") == 0 || strcmp(x->status, "failed") == 0 ||
            strcmp(x->status, "cancelled") == 0)
            return x;
        cbm_execution_info_free(x);
        if (now_s() > until) die("%s is not done after 600 s", id);
        usleep(2000);
    }
}

/* Start one execution of bp and wait for it; its wall time in the store's
 * clock (ExecutionStarted to the terminal event), in seconds. */
static double run_one(cbm_client_t *c, const char *bp, int i)
{
    char id[37], input[64];
    cbm_execution_info_t *x = NULL;
    cbm_event_t *ev = NULL;
    size_t n = 0;
    cbm_error_t err = {0};
    double wall;

    snprintf(input, sizeof(input), "{\"task\": \"problem %d\"}", i);
    check(cbm_client_start(c, bp, input, NULL, id, &err), &err, "start");
    x = wait_done(c, id);
    if (strcmp(x->status, "completed") != 0) die("a deliberation did not complete: %s", x->error);
    cbm_execution_info_free(x);
    check(cbm_client_history(c, id, 1, &ev, &n, &err), &err, "history");
    wall = (double)(ev[n - 1].recorded_at_us - ev[0].recorded_at_us) / 1e6;
    cbm_events_free(ev, n);
    return wall;
}

static void register_bp(cbm_client_t *c, const char *json)
{
    cbm_error_t err = {0};
    check(cbm_client_register_blueprint(c, json, NULL, &err), &err, "register");
}

int main(int argc, char **argv)
{
    int runs = argc > 4 ? atoi(argv[4]) : 30;
    cbm_client_t *c = NULL;
    cbm_error_t err = {0};
    static const int T[] = {0, 50, 500};
    double *v;

    if (argc < 4 || getenv("CEREBELUM_DATABASE_URL") == NULL) {
        fprintf(stderr, "usage: CEREBELUM_DATABASE_URL=... bench_delib CEREBELUM LLM_WORKER STUB [RUNS]\n");
        return 2;
    }
    cbm_exe = argv[1];
    worker_exe = argv[2];
    stub_py = argv[3];
    if (mkdtemp(tmp) == NULL) return 1;
    setenv("CEREBELUM_LOG", "error", 0);
    setenv("GRPC_VERBOSITY", "ERROR", 0);
    v = calloc((size_t)(runs > 100 ? runs : 100), sizeof(*v));

    stub_start(0, 0);
    serve_start();
    workers_start();
    check(cbm_client_connect(&c, addr, NULL, &err), &err, "connect");
    put_council();
    register_bp(c, "{\"name\": \"delib1\", \"steps\": [{\"name\": \"d\", \"kind\": \"deliberation\","
                   " \"council\": \"bench\", \"task\": \"$.inputs.task\", \"agents\": 1, \"rounds\": 0,"
                   " \"topology\": \"none\", \"scoring\": {\"mode\": \"none\"},"
                   " \"selection\": {\"rule\": \"all\"}}]}");
    register_bp(c, "{\"name\": \"delib3\", \"steps\": [{\"name\": \"d\", \"kind\": \"deliberation\","
                   " \"council\": \"bench\", \"task\": \"$.inputs.task\", \"agents\": 3, \"rounds\": 1,"
                   " \"topology\": \"ring\", \"scoring\": {\"mode\": \"judge\"},"
                   " \"selection\": {\"rule\": \"top_score\"}}]}");
    run_one(c, "delib1", -1); /* warm: connections, prepared statements */

    printf("overhead of one LLM call (one-call deliberation wall time minus the stub's time "
           "to first token), %d runs each:\n", runs);
    for (size_t k = 0; k < sizeof(T) / sizeof(T[0]); k++) {
        int n = T[k] >= 500 ? (runs < 10 ? runs : 10) : runs;
        stub_start(T[k], 0);
        run_one(c, "delib1", -2); /* the workers reconnect to the new stub */
        for (int i = 0; i < n; i++) v[i] = (run_one(c, "delib1", i) - T[k] / 1000.0) * 1000.0;
        printf("  T = %3d ms: overhead p50 %.2f ms, p99 %.2f ms (n = %d)\n", T[k],
               pct(v, (size_t)n, 0.5), pct(v, (size_t)n, 0.99), n);
    }

    stub_start(500, 0);
    run_one(c, "delib3", -3);
    {
        double wall = run_one(c, "delib3", 0);
        printf("critical path: 3-agent ring with a judge at T = 500 ms: %.3f s against 4 x 0.5 s "
               "= 2.000 s (%.3fx)\n", wall, wall / 2.0);
    }

    stub_start(0, 400);
    {
        enum { N = 100 };
        char ids[N][37];
        double t0, t1, cpu0 = cpu_s(workers[0]) + cpu_s(workers[1]), cpu1;
        PGconn *pg;
        PGresult *r;
        t0 = now_s();
        for (int i = 0; i < N; i++) {
            char input[64];
            snprintf(input, sizeof(input), "{\"task\": \"load %d\"}", i);
            check(cbm_client_start(c, "delib3", input, NULL, ids[i], &err), &err, "start");
        }
        for (int i = 0; i < N; i++) {
            cbm_execution_info_t *x = NULL;
            x = wait_done(c, ids[i]);
            if (strcmp(x->status, "completed") != 0) die("a deliberation did not complete: %s", x->error);
            cbm_execution_info_free(x);
        }
        t1 = now_s();
        cpu1 = cpu_s(workers[0]) + cpu_s(workers[1]);
        printf("load: 100 deliberations (1,200 calls) on 2 workers x 32 slots: %.1f s, %.0f calls/s, "
               "worker CPU %.2f ms per call\n", t1 - t0, 1200.0 / (t1 - t0),
               (cpu1 - cpu0) * 1000.0 / 1200.0);
        pg = PQconnectdb(getenv("CEREBELUM_DATABASE_URL"));
        r = PQexec(pg, "SELECT (SELECT sum(octet_length(payload::text)) FROM cbm_events),"
                       " (SELECT count(*) FROM cbm_events e JOIN cbm_executions x"
                       "   ON x.id = e.execution_id WHERE e.type = 'StepCompleted'"
                       "   AND x.blueprint LIKE '\\_delib.%' AND e.payload::text LIKE '%prompt_sha256%')");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            double bytes = atof(PQgetvalue(r, 0, 0)), calls = atof(PQgetvalue(r, 0, 1));
            printf("history: %.0f bytes of events in all, %.0f LLM calls recorded: %.0f bytes per call\n",
                   bytes, calls, calls > 0 ? bytes / calls : 0);
        } else {
            printf("history: cannot measure (%s)\n", PQerrorMessage(pg));
        }
        PQclear(r);
        PQfinish(pg);
    }
    cbm_client_destroy(c);
    stop_all();
    free(v);
    return 0;
}
