/*
 * bench_sleep - many executions asleep at once: how late they wake up, how
 * much memory the engine holds meanwhile, and how fast an engine that
 * restarts with them all asleep is ready. Prints figures beside the raw
 * PostgreSQL ceiling measured in the same run; asserts nothing about speed.
 *
 *   CEREBELUM_DATABASE_URL=... bench_sleep [N] [SLEEP_MS]
 *   CEREBELUM_DATABASE_URL=... bench_sleep restart [N] [SLEEP_MS]
 *
 * Wake-ups (the first form). N (100000) executions of one sleep step of
 * SLEEP_MS (20000) ms, started 2000 at a time; the engine's RSS once all
 * are asleep (hibernated), and its peak, sampled every 100 ms, until all
 * have completed. Lateness, read from the store, two ways: decided, the
 * TimerFired event's time minus the SleepStarted event's until_us (when
 * the engine decided the wake-up), and durable, the projection's
 * updated_at (stamped by the commit that ended the execution) minus
 * until_us. Wake-ups committed per second against timers coming due per
 * second (overall, and in the best second: the engine cannot wake before
 * a timer is due, so only the best second shows how far above the arrival
 * rate it can go). The raw ceiling: multi-row inserts (rows/s), single-row
 * commits (per second, and the latency of one: durable lateness cannot be
 * below it). BENCH_MAX_BATCH=N sets the engine's max_batch (512).
 *
 * Restart (the second form). A child process starts N executions of a
 * (a step) -> z (sleep SLEEP_MS, 90000) -> b (a step), waits until all
 * sleep (every a ran and every execution left memory) and kills itself
 * with SIGKILL (a crash). Then a fresh process starts an engine on the same
 * database: process start -> cbm_engine_start returned ("ready"), its RSS
 * asleep, and it runs until every execution has completed. Duplicate step
 * runs: handler runs of a in the second process, runs of b beyond one per
 * execution, and StepCompleted events in the store beyond one per
 * (execution, step). The raw ceilings beside them: a process that connects
 * and runs one query, timed from its start the same way, and reading back
 * every unfinished execution with its events (what a start did before it
 * loaded only the running ones).
 */
#include <libpq-fe.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerebelum/cerebelum.h>

#include "raw.h"

extern char **environ;

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    if (f != NULL) fclose(f);
    return kb;
}

static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void noop(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{}");
}

static int fail(const char *what, const cbm_error_t *err)
{
    fprintf(stderr, "bench_sleep: %s: %s: %s\n", what, cbm_err_name(err->code), err->message);
    return 1;
}

/* Executions of blueprint bp not completed yet (a fresh connection each
 * time: a poll every second or so). */
static long left(const char *url, const char *bp)
{
    char sql[160];
    PGconn *c = PQconnectdb(url);
    long n;
    if (PQstatus(c) != CONNECTION_OK) bench_die_pq(c, "connect");
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM cbm_executions WHERE blueprint = '%s' AND status <> 'completed'",
             bp);
    n = (long)bench_query_double(c, sql);
    PQfinish(c);
    return n;
}

/* Lateness of the wake-ups of blueprint bp, from the store. */
static void lateness(const char *url, const char *bp, long *count, double p[6])
{
    char sql[1600];
    PGconn *c = PQconnectdb(url);
    PGresult *r;
    if (PQstatus(c) != CONNECTION_OK) bench_die_pq(c, "connect");
    snprintf(sql, sizeof(sql),
             "WITH s AS (SELECT e.execution_id, (e.payload->>'until_us')::float8 AS due FROM "
             "cbm_events e JOIN cbm_executions x ON x.id = e.execution_id WHERE x.blueprint = '%s' "
             "AND e.type = 'SleepStarted'), f AS (SELECT e.execution_id, extract(epoch FROM "
             "e.recorded_at) * 1e6 AS at FROM cbm_events e JOIN cbm_executions x ON x.id = "
             "e.execution_id WHERE x.blueprint = '%s' AND e.type = 'TimerFired'), d AS (SELECT "
             "id AS execution_id, extract(epoch FROM updated_at) * 1e6 AS at FROM cbm_executions "
             "WHERE blueprint = '%s'), l AS (SELECT (f.at - s.due) / 1000.0 AS ms, (d.at - s.due) "
             "/ 1000.0 AS dms FROM s JOIN f USING (execution_id) JOIN d USING (execution_id)) "
             "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
             "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), "
             "percentile_cont(0.5) WITHIN GROUP (ORDER BY dms), "
             "percentile_cont(0.99) WITHIN GROUP (ORDER BY dms), max(dms) FROM l",
             bp, bp, bp);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) bench_die_pq(c, "lateness");
    *count = atol(PQgetvalue(r, 0, 0));
    for (int i = 0; i < 6; i++) p[i] = atof(PQgetvalue(r, 0, i + 1));
    PQclear(r);
    PQfinish(c);
}

/* ---------------------------------------------------------------- wake-ups */

static int wake_main(const char *url, int n, int sleep_ms)
{
    const int batch = 2000;
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    cbm_engine_stats_t st;
    bench_raw_t raw;
    char bp[256], (*ids)[37];
    double t0, t_started, t_done, t_first = 0, t_last = 0, p[6];
    long rss0, rss_asleep, rss_peak = 0, woke;
    uint64_t d0, win[11] = {0}, best = 0;

    bench_raw_ceiling(url, &raw);
    printf("raw PostgreSQL: multi-row insert %.0f rows/s; single-row commits %.0f/s, one takes "
           "p50 %.2f ms, p99 %.2f ms\n",
           raw.rows_s, raw.commits_s, raw.commit_p50_ms, raw.commit_p99_ms);
    o.database_url = url;
    o.max_batch = getenv("BENCH_MAX_BATCH") != NULL ? atoi(getenv("BENCH_MAX_BATCH")) : 0;
    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_register_step(e, "noop", noop, NULL) != 0 ||
        cbm_engine_start(e, &err) != 0)
        return fail("start", &err);
    snprintf(bp, sizeof(bp),
             "{\"name\":\"sleepers\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\","
             "\"duration_ms\":%d}]}",
             sleep_ms);
    if (cbm_engine_register_blueprint(e, bp, NULL, &err) != 0) return fail("blueprint", &err);
    rss0 = rss_kb();
    ids = calloc((size_t)batch, sizeof(*ids));
    t0 = bench_now_s();
    for (int done = 0; done < n; done += batch) {
        int k = n - done < batch ? n - done : batch;
        if (cbm_execution_start_many(e, "sleepers", NULL, (size_t)k, ids, &err) != 0)
            return fail("start_many", &err);
    }
    t_started = bench_now_s();
    for (;;) { /* every one committed its sleep and left memory */
        cbm_engine_get_stats(e, &st);
        if (st.active == 0) break;
        usleep(10000);
    }
    rss_asleep = rss_kb();
    printf("sleep: %d executions started in %.2f s (%.0f/s: timers come due at that rate); all "
           "asleep, engine RSS %.1f MB (%.1f MB before starting)\n",
           n, t_started - t0, n / (t_started - t0), rss_asleep / 1024.0, rss0 / 1024.0);
    fflush(stdout);
    cbm_engine_get_stats(e, &st);
    d0 = st.decisions;
    for (int i = 0;; i++) {
        long kb = rss_kb();
        if (kb > rss_peak) rss_peak = kb;
        cbm_engine_get_stats(e, &st);
        /* Decisions committed in the last second, every 100 ms. */
        win[i % 11] = st.decisions;
        if (i >= 10 && win[i % 11] - win[(i + 1) % 11] > best) best = win[i % 11] - win[(i + 1) % 11];
        if (t_first == 0 && st.decisions > d0) t_first = bench_now_s();
        if (t_last == 0 && st.decisions - d0 >= (uint64_t)n) t_last = bench_now_s();
        if (t_last != 0 && i % 10 == 0 && left(url, "sleepers") == 0) break;
        usleep(100000);
    }
    t_done = bench_now_s();
    lateness(url, "sleepers", &woke, p);
    printf("sleep: all %ld woke and completed %.2f s after the last start; %.0f wake-ups "
           "committed/s from the first to the last, %llu in the best second (%.2f x the %.0f/s "
           "they came due); peak RSS while waking %.1f MB\n",
           woke, t_done - t_started, n / (t_last - t_first), (unsigned long long)best,
           best / (n / (t_started - t0)), n / (t_started - t0), rss_peak / 1024.0);
    printf("sleep: wake-up lateness, decided: p50 %.1f ms, p99 %.1f ms, max %.1f ms; durable "
           "(committed): p50 %.1f ms, p99 %.1f ms, max %.1f ms (raw single-row commit p99 %.2f ms)\n",
           p[0], p[1], p[2], p[3], p[4], p[5], raw.commit_p99_ms);
    free(ids);
    cbm_engine_destroy(e);
    return 0;
}

/* ----------------------------------------------------------------- restart */

static const char RESTART_BP[] =
    "{\"name\":\"restarted\",\"timeline\":[{\"name\":\"a\",\"handler\":\"a\"},{\"name\":\"z\","
    "\"kind\":\"sleep\",\"duration_ms\":%d},{\"name\":\"b\",\"handler\":\"b\"}]}";

static _Atomic long runs_a, runs_b;

static void step_a(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    atomic_fetch_add(&runs_a, 1);
    cbm_step_ok(out, "{}");
}

/* Step b's runs, per execution: an open-addressing set of ids. */
static char (*seen_ids)[37];
static size_t seen_cap;
static _Atomic long dup_b;
static _Atomic int seen_lock;

static void seen_add(const char *id)
{
    size_t h = 1469598103u;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    while (atomic_exchange(&seen_lock, 1)) /* handlers are short: a spin lock */
        ;
    for (size_t i = h % seen_cap;; i = (i + 1) % seen_cap) {
        if (seen_ids[i][0] == '\0') {
            memcpy(seen_ids[i], id, 37);
            break;
        }
        if (strcmp(seen_ids[i], id) == 0) {
            atomic_fetch_add(&dup_b, 1);
            break;
        }
    }
    atomic_store(&seen_lock, 0);
}

static void step_b(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)arg;
    atomic_fetch_add(&runs_b, 1);
    seen_add(call->execution_id);
    cbm_step_ok(out, "{}");
}

static int engine_up(const char *url, cbm_engine_t **e, cbm_error_t *err)
{
    cbm_engine_opts_t o = {0};
    o.database_url = url;
    if (cbm_engine_create(e, &o, err) != 0 || cbm_engine_register_step(*e, "a", step_a, NULL) != 0 ||
        cbm_engine_register_step(*e, "b", step_b, NULL) != 0)
        return 1;
    return cbm_engine_start(*e, err) != 0;
}

/* The first process: start them all, wait until all sleep, crash. */
static int fill_main(const char *url, int n, int sleep_ms)
{
    const int batch = 2000;
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    cbm_engine_stats_t st;
    char bp[512], (*ids)[37] = calloc((size_t)batch, sizeof(*ids));
    double t0 = bench_now_s();

    if (engine_up(url, &e, &err) != 0) return fail("start", &err);
    snprintf(bp, sizeof(bp), RESTART_BP, sleep_ms);
    if (cbm_engine_register_blueprint(e, bp, NULL, &err) != 0) return fail("blueprint", &err);
    for (int done = 0; done < n; done += batch) {
        int k = n - done < batch ? n - done : batch;
        if (cbm_execution_start_many(e, "restarted", NULL, (size_t)k, ids, &err) != 0)
            return fail("start_many", &err);
    }
    for (;;) { /* every a ran, every execution sleeps and left memory */
        cbm_engine_get_stats(e, &st);
        if (st.active == 0 && atomic_load(&runs_a) >= n) break;
        usleep(10000);
    }
    printf("asleep %ld %.2f %.1f\n", atomic_load(&runs_a), bench_now_s() - t0, rss_kb() / 1024.0);
    fflush(stdout);
    raise(SIGKILL); /* a crash: no goodbye to the store */
    return 1;
}

/* The second process: ready as soon as the engine started; then run to
 * the end. */
static int resume_main(const char *url, int n)
{
    cbm_engine_t *e = NULL;
    cbm_error_t err = {0};
    cbm_engine_stats_t st;
    long rss_ready, rss_peak = 0;

    seen_cap = (size_t)n * 2 + 1;
    if ((seen_ids = calloc(seen_cap, sizeof(*seen_ids))) == NULL) return 1;
    if (engine_up(url, &e, &err) != 0) return fail("start", &err);
    printf("ready %lld\n", mono_us());
    fflush(stdout);
    rss_ready = rss_kb();
    cbm_engine_get_stats(e, &st);
    printf("resumed %llu %.1f\n", (unsigned long long)st.resumed, rss_ready / 1024.0);
    fflush(stdout);
    for (int i = 1;; i++) {
        long kb = rss_kb();
        if (kb > rss_peak) rss_peak = kb;
        if (i % 10 == 0 && left(url, "restarted") == 0) break;
        usleep(100000);
    }
    printf("done %ld %ld %ld %.1f\n", atomic_load(&runs_a), atomic_load(&runs_b),
           atomic_load(&dup_b), rss_peak / 1024.0);
    fflush(stdout);
    cbm_engine_destroy(e);
    free(seen_ids);
    return 0;
}

/* The floor of any start: a process that connects and runs one query. */
static int raw_start_main(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) bench_die_pq(c, "connect");
    bench_query_double(c, "SELECT count(*) FROM cbm_executions WHERE status = 'running'");
    printf("ready %lld\n", mono_us());
    fflush(stdout);
    PQfinish(c);
    return 0;
}

/* Run this program again with args; *out reads its stdout. */
static pid_t spawn_self(char *const args[], FILE **out)
{
    posix_spawn_file_actions_t fa;
    int fds[2];
    pid_t pid;
    if (pipe(fds) != 0) return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    *out = fdopen(fds[0], "r");
    return pid;
}

static int restart_main(const char *url, int n, int sleep_ms)
{
    char ns[24], ms[24], line[256];
    char *fill_args[] = {"bench_sleep", "restart-fill", ns, ms, NULL};
    char *resume_args[] = {"bench_sleep", "restart-resume", ns, NULL};
    char *raw_args[] = {"bench_sleep", "raw-start", NULL};
    long long t0, raw_t0, ready = 0, raw_ready = 0;
    long a1 = 0, a2 = -1, b2 = -1, dups = -1, resumed = -1, woke;
    double fill_s = 0, rss_fill = 0, rss_ready = 0, rss_peak = 0, unfinished_ms, extra, p[6];
    FILE *out;
    pid_t pid;
    int status;
    PGconn *c;

    snprintf(ns, sizeof(ns), "%d", n);
    snprintf(ms, sizeof(ms), "%d", sleep_ms);
    /* 1. Fill and crash. */
    if ((pid = spawn_self(fill_args, &out)) < 0) return 1;
    while (fgets(line, sizeof(line), out) != NULL)
        sscanf(line, "asleep %ld %lf %lf", &a1, &fill_s, &rss_fill);
    fclose(out);
    waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        fprintf(stderr, "bench_sleep: the first engine did not get as far as the crash\n");
        return 1;
    }
    printf("restart: %d executions started, each ran a and sleeps %d ms; all asleep after %.2f s "
           "(RSS %.1f MB); the engine killed (SIGKILL)\n",
           n, sleep_ms, fill_s, rss_fill);
    /* 2. The raw ceilings, on the same database as it is now. */
    raw_t0 = mono_us();
    if ((pid = spawn_self(raw_args, &out)) < 0) return 1;
    while (fgets(line, sizeof(line), out) != NULL) sscanf(line, "ready %lld", &raw_ready);
    fclose(out);
    waitpid(pid, &status, 0);
    c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) bench_die_pq(c, "connect");
    {
        double s = bench_now_s();
        /* store_load_unfinished's two queries, as a start ran them. */
        bench_exec_ok(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        bench_exec_ok(c, "SET LOCAL jit = off");
        bench_exec_ok(c, "SELECT x.id, x.blueprint, x.version, x.status, x.inputs::text, "
                         "x.result::text, x.error::text, x.last_seq, sn.state::text, sn.seq FROM "
                         "cbm_executions x LEFT JOIN cbm_snapshots sn ON sn.execution_id = x.id "
                         "WHERE x.status NOT IN ('completed', 'failed', 'cancelled') ORDER BY x.id");
        bench_exec_ok(c, "SELECT v.execution_id, v.seq, v.type, v.payload FROM cbm_executions x "
                         "LEFT JOIN cbm_snapshots sn ON sn.execution_id = x.id CROSS JOIN LATERAL "
                         "(SELECT e.execution_id, e.seq, e.type, e.payload FROM cbm_events e WHERE "
                         "e.execution_id = x.id AND e.seq > coalesce(sn.seq, 0) ORDER BY e.seq "
                         "OFFSET 0) v WHERE x.status NOT IN ('completed', 'failed', 'cancelled') "
                         "ORDER BY x.id, v.seq");
        bench_exec_ok(c, "COMMIT");
        unfinished_ms = (bench_now_s() - s) * 1e3;
    }
    PQfinish(c);
    /* 3. A fresh process takes over. */
    t0 = mono_us();
    if ((pid = spawn_self(resume_args, &out)) < 0) return 1;
    while (fgets(line, sizeof(line), out) != NULL) {
        if (sscanf(line, "ready %lld", &ready) == 1) {
            printf("restart: process start -> ready %.1f ms\n", (ready - t0) / 1e3);
            fflush(stdout);
        }
        sscanf(line, "resumed %ld %lf", &resumed, &rss_ready);
        sscanf(line, "done %ld %ld %ld %lf", &a2, &b2, &dups, &rss_peak);
    }
    fclose(out);
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || b2 < 0) {
        fprintf(stderr, "bench_sleep: the second engine failed\n");
        return 1;
    }
    c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) bench_die_pq(c, "connect");
    extra = bench_query_double(c, "SELECT coalesce(sum(k - 1), 0) FROM (SELECT count(*) AS k FROM "
                                  "cbm_events WHERE type = 'StepCompleted' GROUP BY execution_id, "
                                  "payload->>'step') s WHERE k > 1");
    PQfinish(c);
    lateness(url, "restarted", &woke, p);
    printf("restart: process start -> ready %.1f ms (raw: a process that connects and runs one "
           "query, %.1f ms; reading back every unfinished execution with its events, %.0f ms); "
           "%ld executions resumed at start; RSS %.1f MB when ready\n",
           (ready - t0) / 1e3, (raw_ready - raw_t0) / 1e3, unfinished_ms, resumed, rss_ready);
    printf("restart: all %ld completed; duplicate step runs %ld (a ran %ld times in the first "
           "process and %ld in the second, b %ld times for %d executions, %ld of them again); "
           "StepCompleted beyond one per step in the store: %.0f; peak RSS %.1f MB\n",
           woke, (a1 - n) + a2 + dups, a1, a2, b2, n, dups, extra, rss_peak);
    printf("restart: wake-up lateness after the restart, decided: p50 %.1f ms, p99 %.1f ms, max "
           "%.1f ms; due -> execution completed (b run and committed): p50 %.1f ms, p99 %.1f ms, "
           "max %.1f ms\n",
           p[0], p[1], p[2], p[3], p[4], p[5]);
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = getenv("CEREBELUM_DATABASE_URL");
    const char *mode = argc > 1 && (argv[1][0] < '0' || argv[1][0] > '9') ? argv[1] : "";
    int a = mode[0] != '\0' ? 2 : 1;
    int n = argc > a ? atoi(argv[a]) : 100000;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (url == NULL) {
        fprintf(stderr, "bench_sleep: set CEREBELUM_DATABASE_URL (or use bench/run.sh)\n");
        return 2;
    }
    if (strcmp(mode, "restart") == 0)
        return restart_main(url, n, argc > a + 1 ? atoi(argv[a + 1]) : 90000);
    if (strcmp(mode, "restart-fill") == 0) return fill_main(url, n, atoi(argv[a + 1]));
    if (strcmp(mode, "restart-resume") == 0) return resume_main(url, n);
    if (strcmp(mode, "raw-start") == 0) return raw_start_main(url);
    return wake_main(url, n, argc > a + 1 ? atoi(argv[a + 1]) : 20000);
}
