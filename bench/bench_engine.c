/*
 * bench_engine - throughput and latency of the embedded engine with
 * in-process no-op steps, next to the raw PostgreSQL ceiling measured on the
 * same server in the same run. Prints figures; asserts nothing about speed.
 *
 *   CEREBELUM_DATABASE_URL=... bench_engine [W1_EXECUTIONS] [W2_RUNS]
 *
 * (bench/run.sh starts a private PostgreSQL and runs this.)
 *   raw ceiling: multi-row INSERT ... unnest of event-sized rows (rows/s) and
 *                single-row autocommit INSERTs (commits/s), 2 s each;
 *   W1: W1_EXECUTIONS (2000) executions of 3 sequential steps started at once;
 *   W2: one execution of 10 sequential steps, W2_RUNS (200) times in a row.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cerebelum/cerebelum.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void noop(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"ok\":true}");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die_pq(PGconn *c, const char *what)
{
    fprintf(stderr, "bench: %s: %s", what, PQerrorMessage(c));
    exit(1);
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) die_pq(c, sql);
    PQclear(r);
}

/* The raw ceiling: what this PostgreSQL does with no engine in the way. */
static void raw_ceiling(const char *url, double *rows_s, double *commits_s)
{
    PGconn *c = PQconnectdb(url);
    const int rows = 500;
    char *ids, *seqs, *types, *payloads;
    const char *params[4];
    double t0, t;
    long n = 0, batch = 0;

    if (PQstatus(c) != CONNECTION_OK) die_pq(c, "connect");
    exec_ok(c, "DROP TABLE IF EXISTS bench_events");
    exec_ok(c, "CREATE TABLE bench_events (execution_id uuid, seq bigint, type text, payload json, "
               "recorded_at timestamptz DEFAULT clock_timestamp(), PRIMARY KEY (execution_id, seq))");
    if (PQprepare(c, "multi",
                  "INSERT INTO bench_events(execution_id, seq, type, payload) SELECT * FROM "
                  "unnest($1::uuid[], $2::int8[], $3::text[], $4::json[])",
                  4, NULL) == NULL)
        die_pq(c, "prepare");
    ids = malloc((size_t)rows * 40 + 3);
    seqs = malloc((size_t)rows * 24 + 3);
    types = malloc((size_t)rows * 20 + 3);
    payloads = malloc((size_t)rows * 64 + 3);
    t0 = now_s();
    while ((t = now_s()) - t0 < 2.0) {
        char *pi = ids, *ps = seqs, *pt = types, *pp = payloads;
        PGresult *r;
        *pi++ = *ps++ = *pt++ = *pp++ = '{';
        for (int i = 0; i < rows; i++) {
            const char *sep = i + 1 < rows ? "," : "";
            pi += sprintf(pi, "00000000-0000-4000-8000-%012ld%s", batch, sep);
            ps += sprintf(ps, "%d%s", i + 1, sep);
            pt += sprintf(pt, "StepCompleted%s", sep);
            pp += sprintf(pp, "\"{\\\"step\\\":\\\"s%d\\\",\\\"attempt\\\":1,\\\"result\\\":{}}\"%s", i, sep);
        }
        strcpy(pi, "}");
        strcpy(ps, "}");
        strcpy(pt, "}");
        strcpy(pp, "}");
        params[0] = ids;
        params[1] = seqs;
        params[2] = types;
        params[3] = payloads;
        r = PQexecPrepared(c, "multi", 4, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) die_pq(c, "multi insert");
        PQclear(r);
        n += rows;
        batch++;
    }
    *rows_s = (double)n / (t - t0);

    if (PQprepare(c, "single",
                  "INSERT INTO bench_events(execution_id, seq, type, payload) VALUES "
                  "('00000000-0000-4000-8000-ffffffffffff', $1, 'StepCompleted', "
                  "'{\"step\":\"s\",\"attempt\":1,\"result\":{}}')",
                  1, NULL) == NULL)
        die_pq(c, "prepare");
    n = 0;
    t0 = now_s();
    while ((t = now_s()) - t0 < 2.0) {
        char seq[24];
        PGresult *r;
        snprintf(seq, sizeof(seq), "%ld", n + 1);
        params[0] = seq;
        r = PQexecPrepared(c, "single", 1, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) die_pq(c, "single insert");
        PQclear(r);
        n++;
    }
    *commits_s = (double)n / (t - t0);
    exec_ok(c, "DROP TABLE bench_events");
    free(ids);
    free(seqs);
    free(types);
    free(payloads);
    PQfinish(c);
}

int main(int argc, char **argv)
{
    const char *url = getenv("CEREBELUM_DATABASE_URL");
    int w1 = argc > 1 ? atoi(argv[1]) : 2000, w2 = argc > 2 ? atoi(argv[2]) : 200;
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    cbm_engine_stats_t s0, s1;
    char (*ids)[37];
    double rows_s, commits_s, t0, t1, *lat;
    int bad = 0;

    if (url == NULL) {
        fprintf(stderr, "bench: set CEREBELUM_DATABASE_URL (or use bench/run.sh)\n");
        return 2;
    }
    raw_ceiling(url, &rows_s, &commits_s);
    printf("raw PostgreSQL: multi-row insert %.0f rows/s; single-row commits %.0f/s\n", rows_s,
           commits_s);

    o.database_url = url;
    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_register_step(e, "noop", noop, NULL) != 0 ||
        cbm_engine_start(e, &err) != 0)
        goto fail;
    if (cbm_engine_register_blueprint(
            e, "{\"name\":\"w1\",\"timeline\":[{\"name\":\"s1\",\"handler\":\"noop\"},"
               "{\"name\":\"s2\",\"handler\":\"noop\"},{\"name\":\"s3\",\"handler\":\"noop\"}]}",
            NULL, &err) != 0)
        goto fail;
    if (cbm_engine_register_blueprint(
            e, "{\"name\":\"w2\",\"timeline\":[{\"name\":\"s1\",\"handler\":\"noop\"},"
               "{\"name\":\"s2\",\"handler\":\"noop\"},{\"name\":\"s3\",\"handler\":\"noop\"},"
               "{\"name\":\"s4\",\"handler\":\"noop\"},{\"name\":\"s5\",\"handler\":\"noop\"},"
               "{\"name\":\"s6\",\"handler\":\"noop\"},{\"name\":\"s7\",\"handler\":\"noop\"},"
               "{\"name\":\"s8\",\"handler\":\"noop\"},{\"name\":\"s9\",\"handler\":\"noop\"},"
               "{\"name\":\"s10\",\"handler\":\"noop\"}]}",
            NULL, &err) != 0)
        goto fail;

    /* W1: all started at once; done when every step ran and nothing is left
     * in memory (the last decisions committed). */
    ids = calloc((size_t)w1, sizeof(*ids));
    cbm_engine_get_stats(e, &s0);
    t0 = now_s();
    if (cbm_execution_start_many(e, "w1", NULL, (size_t)w1, ids, &err) != 0) goto fail;
    for (;;) {
        cbm_engine_get_stats(e, &s1);
        if (s1.steps_run - s0.steps_run >= (uint64_t)w1 * 3 && s1.active == 0) break;
        usleep(200);
    }
    t1 = now_s();
    for (int i = 0; i < w1; i++) {
        cbm_execution_info_t *info = NULL;
        if (cbm_execution_get(e, ids[i], &info, &err) != 0) goto fail;
        bad += strcmp(info->status, "completed") != 0;
        cbm_execution_info_free(info);
    }
    printf("W1: %d executions x 3 steps in %.3f s: %.0f executions/s, %.0f steps/s "
           "(%llu commits for %llu decisions, %.1f decisions/commit)%s\n",
           w1, t1 - t0, w1 / (t1 - t0), 3.0 * w1 / (t1 - t0),
           (unsigned long long)(s1.commits - s0.commits),
           (unsigned long long)(s1.decisions - s0.decisions),
           (double)(s1.decisions - s0.decisions) / (double)(s1.commits - s0.commits),
           bad ? " NOT ALL COMPLETED" : "");
    printf("W1 vs raw: %.2f x single-row commits/s; events %.0f/s = %.2f x multi-row rows/s\n",
           3.0 * w1 / (t1 - t0) / commits_s, (double)(s1.events - s0.events) / (t1 - t0),
           (double)(s1.events - s0.events) / (t1 - t0) / rows_s);
    free(ids);

    /* W2: sequential latency of a 10-step execution, start to result. */
    lat = calloc((size_t)w2, sizeof(*lat));
    for (int i = 0; i < w2; i++) {
        char id[37];
        cbm_execution_info_t *info = NULL;
        double a = now_s();
        if (cbm_execution_start(e, "w2", "{}", id, &err) != 0) goto fail;
        if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) goto fail;
        lat[i] = (now_s() - a) * 1000.0;
        bad += strcmp(info->status, "completed") != 0;
        cbm_execution_info_free(info);
    }
    qsort(lat, (size_t)w2, sizeof(*lat), cmp_double);
    printf("W2: %d runs of 10 sequential steps: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", w2,
           lat[w2 / 2], lat[(w2 * 99) / 100 >= w2 ? w2 - 1 : (w2 * 99) / 100], lat[w2 - 1]);
    free(lat);
    cbm_engine_destroy(e);
    return bad ? 1 : 0;
fail:
    fprintf(stderr, "bench: %s: %s\n", cbm_err_name(err.code), err.message);
    cbm_engine_destroy(e);
    return 1;
}
