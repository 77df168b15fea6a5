/*
 * bench_shards - several engines on one database (issue 13). Engines are
 * processes (this program run again as "engine URL"); executions are
 * started, approved and watched from a client-only engine. Prints figures;
 * asserts nothing about speed.
 *
 *   bench_shards SERVER_URL [W1_EXECUTIONS] [TAKEOVER_EXECUTIONS]
 *
 * SERVER_URL names a PostgreSQL server's "postgres" database; each part
 * creates a database of its own beside it (bench/run.sh starts a private
 * server and runs this).
 *   W1 with 1, 2, 3 engines: W1_EXECUTIONS (2000) executions of 3
 *     sequential no-op steps, started at once from the client (so each is
 *     reached by its owner's wake-up), until all completed;
 *   cross-process wake-up: 200 executions waiting for an approval, each
 *     approved from the client one after another; the latency from the
 *     approval's decision to the owning engine's decision that follows it
 *     (both recorded_at, one clock), p50/p90/p99;
 *   takeover: 3 engines, TAKEOVER_EXECUTIONS (3000) executions in flight
 *     (some asleep), kill -9 of one: time until every shard it held is held
 *     by another, and until every execution of those shards has committed
 *     a decision after the kill (or completed).
 */
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerebelum/cerebelum.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void noop(const cbm_step_call_t *c, cbm_step_out_t *out, void *arg)
{
    (void)c;
    (void)arg;
    cbm_step_ok(out, "{\"ok\":true}");
}

static int engine_main(const char *url)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    o.database_url = url;
    if (cbm_engine_create(&e, &o, &err) != 0) return 2;
    cbm_engine_register_step(e, "noop", noop, NULL);
    if (cbm_engine_start(e, &err) != 0) {
        fprintf(stderr, "engine: %s\n", err.message);
        return 2;
    }
    sigwait(&set, &sig);
    cbm_engine_destroy(e);
    return 0;
}

static char server[512];

static void make_db(const char *name, char *url, size_t cap)
{
    char sql[128];
    PGconn *c = PQconnectdb(server);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    PQclear(PQexec(c, sql));
    PQfinish(c);
    snprintf(url, cap, "%.*s/%s", (int)(strrchr(server, '/') - server), server, name);
}

static double q(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    double v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? atof(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

static pid_t spawn(const char *url)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "bench_shards", "engine", url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* Until k engines hold shards and all 256 are held. */
static void wait_balanced(PGconn *c, int k)
{
    for (int i = 0; i < 3000; i++) {
        if (q(c, "SELECT count(DISTINCT owner) FROM cbm_shard_leases") >= k &&
            q(c, "SELECT count(owner) FROM cbm_shard_leases") == q(c, "SELECT count(*) FROM cbm_shard_leases"))
            return;
        usleep(10000);
    }
    fprintf(stderr, "engines never balanced\n");
}

static cbm_engine_t *client(const char *url, const char *bp)
{
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    o.database_url = url;
    o.client_only = true;
    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_start(e, &err) != 0 ||
        cbm_engine_register_blueprint(e, bp, NULL, &err) != 0) {
        fprintf(stderr, "client: %s\n", err.message);
        exit(1);
    }
    return e;
}

static void start_many(cbm_engine_t *cl, const char *bp, int n)
{
    char(*ids)[37] = calloc((size_t)n, sizeof(*ids));
    const char **in = calloc((size_t)n, sizeof(*in));
    cbm_error_t err = {0};
    if (cbm_execution_start_many(cl, bp, in, (size_t)n, ids, &err) != 0) {
        fprintf(stderr, "start: %s\n", err.message);
        exit(1);
    }
    free(ids);
    free(in);
}

static const char w1_bp[] = "{\"name\":\"w1\",\"timeline\":[{\"name\":\"a\",\"handler\":\"noop\"},"
                            "{\"name\":\"b\",\"handler\":\"noop\"},{\"name\":\"c\",\"handler\":\"noop\"}]}";

static void bench_w1(int k, int n)
{
    char url[600], name[32];
    pid_t p[3];
    PGconn *c;
    cbm_engine_t *cl;
    double t0, t1;

    snprintf(name, sizeof(name), "shards_w1_%d", k);
    make_db(name, url, sizeof(url));
    cl = client(url, w1_bp);
    c = PQconnectdb(url);
    for (int i = 0; i < k; i++) p[i] = spawn(url);
    wait_balanced(c, k);
    t0 = now_s();
    start_many(cl, "w1", n);
    while (q(c, "SELECT count(*) FROM cbm_executions WHERE status <> 'completed'") > 0) usleep(5000);
    t1 = now_s();
    printf("W1 with %d engine(s): %d executions x 3 steps in %.3f s: %.0f steps/s "
           "(started from a client: each reached by its owner's wake-up)\n",
           k, n, t1 - t0, 3.0 * n / (t1 - t0));
    for (int i = 0; i < k; i++) stop(p[i]);
    PQfinish(c);
    cbm_engine_destroy(cl);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_wakeup(int n)
{
    static const char bp[] = "{\"name\":\"wk\",\"timeline\":[{\"name\":\"p\",\"kind\":\"approval\"},"
                             "{\"name\":\"b\",\"handler\":\"noop\"}]}";
    char url[600], (*ids)[37] = calloc((size_t)n, 37);
    double *lat = calloc((size_t)n, sizeof(*lat));
    pid_t p[2];
    PGconn *c;
    cbm_engine_t *cl;
    cbm_error_t err = {0};
    size_t m = 0;

    make_db("shards_wakeup", url, sizeof(url));
    cl = client(url, bp);
    c = PQconnectdb(url);
    p[0] = spawn(url);
    p[1] = spawn(url);
    wait_balanced(c, 2);
    for (int i = 0; i < n; i++) cbm_execution_start(cl, "wk", NULL, ids[i], &err);
    for (int i = 0; i < n; i++) {
        cbm_execution_approve(cl, ids[i], "p", "{}", "bench", &err);
        usleep(5000); /* one at a time: latency, not throughput */
    }
    while (q(c, "SELECT count(*) FROM cbm_executions WHERE status <> 'completed'") > 0) usleep(5000);
    {
        /* The approval's event, then the owner's next decision (its first
         * event: TimerFired(wake)). */
        PGresult *r = PQexec(c, "SELECT extract(epoch FROM (SELECT n.recorded_at FROM cbm_events n"
                                " WHERE n.execution_id = a.execution_id AND n.seq > a.seq"
                                "  AND n.type = 'TimerFired' ORDER BY n.seq LIMIT 1) - a.recorded_at)"
                                " FROM cbm_events a WHERE a.type = 'ApprovalGranted'");
        for (int i = 0; i < PQntuples(r); i++)
            if (!PQgetisnull(r, i, 0)) lat[m++] = atof(PQgetvalue(r, i, 0)) * 1000.0;
        PQclear(r);
    }
    qsort(lat, m, sizeof(*lat), cmp_d);
    if (m > 0)
        printf("cross-process wake-up (approve from a client -> the owner's decision), %zu: "
               "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms (decision to decision; the owner's commit "
               "adds its own latency)\n",
               m, lat[m / 2], lat[m * 9 / 10], lat[m * 99 / 100]);
    stop(p[0]);
    stop(p[1]);
    PQfinish(c);
    cbm_engine_destroy(cl);
    free(ids);
    free(lat);
}

static void bench_takeover(int n)
{
    static const char bp[] = "{\"name\":\"tk\",\"timeline\":[{\"name\":\"a\",\"handler\":\"noop\"},"
                             "{\"name\":\"z\",\"kind\":\"sleep\",\"duration_ms\":3000},"
                             "{\"name\":\"b\",\"handler\":\"noop\"},"
                             "{\"name\":\"z2\",\"kind\":\"sleep\",\"duration_ms\":3000},"
                             "{\"name\":\"c\",\"handler\":\"noop\"}]}";
    char url[600], sql[512], victim[40] = "";
    pid_t p[3];
    PGconn *c;
    cbm_engine_t *cl;
    double t0, t_lease = 0, t_prog = 0;
    PGresult *r;

    make_db("shards_takeover", url, sizeof(url));
    cl = client(url, bp);
    c = PQconnectdb(url);
    for (int i = 0; i < 3; i++) p[i] = spawn(url);
    wait_balanced(c, 3);
    start_many(cl, "tk", n);
    sleep(2); /* in flight: running, sleeping */
    r = PQexec(c, "SELECT id::text, pid FROM cbm_engines ORDER BY started_at LIMIT 1");
    snprintf(victim, sizeof(victim), "%s", PQgetvalue(r, 0, 0));
    {
        pid_t vp = (pid_t)atoi(PQgetvalue(r, 0, 1));
        PQclear(r);
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE victim AS SELECT shard FROM cbm_shard_leases WHERE owner = '%s'", victim);
        PQclear(PQexec(c, sql));
        t0 = now_s();
        kill(vp, SIGKILL);
        waitpid(vp, NULL, 0);
        for (int i = 0; i < 3; i++)
            if (p[i] == vp) p[i] = 0;
    }
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM cbm_shard_leases WHERE owner = '%s' OR owner IS NULL", victim);
    for (;;) {
        double now = now_s();
        if (t_lease == 0 && q(c, sql) == 0) t_lease = now - t0;
        /* Every unfinished execution of its shards has moved since the kill. */
        {
            char s2[400];
            snprintf(s2, sizeof(s2),
                     "SELECT count(*) FROM cbm_executions x JOIN victim v ON v.shard = x.shard"
                     " WHERE x.status NOT IN ('completed', 'failed', 'cancelled')"
                     "  AND x.updated_at < to_timestamp(%.6f)", t0);
            if (t_lease > 0 && q(c, s2) == 0) {
                t_prog = now - t0;
                break;
            }
        }
        if (now - t0 > 60) break;
        usleep(5000);
    }
    printf("takeover after kill -9 of 1 engine of 3 (%d executions in flight, sleeps of 3 s): its "
           "shards held by the others after %.3f s; every unfinished execution of them moved "
           "after %.3f s (a sleeper moves when its timer comes due)\n",
           n, t_lease, t_prog);
    for (int i = 0; i < 3; i++)
        if (p[i] != 0) stop(p[i]);
    PQfinish(c);
    cbm_engine_destroy(cl);
}

int main(int argc, char **argv)
{
    int w1, tk;
    if (argc == 3 && strcmp(argv[1], "engine") == 0) return engine_main(argv[2]);
    if (argc < 2) {
        fprintf(stderr, "usage: bench_shards SERVER_URL [W1_EXECUTIONS] [TAKEOVER_EXECUTIONS]\n");
        return 2;
    }
    snprintf(server, sizeof(server), "%s", argv[1]);
    w1 = argc > 2 ? atoi(argv[2]) : 2000;
    tk = argc > 3 ? atoi(argv[3]) : 3000;
    setenv("CEREBELUM_LOG", "error", 0);
    for (int k = 1; k <= 3 && w1 > 0; k++) bench_w1(k, w1);
    bench_wakeup(200);
    bench_takeover(tk);
    return 0;
}
