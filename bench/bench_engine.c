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

#include "raw.h"

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
    bench_raw_t raw;
    int bad = 0;

    if (url == NULL) {
        fprintf(stderr, "bench: set CEREBELUM_DATABASE_URL (or use bench/run.sh)\n");
        return 2;
    }
    bench_raw_ceiling(url, &raw);
    rows_s = raw.rows_s;
    commits_s = raw.commits_s;
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
    t0 = bench_now_s();
    if (cbm_execution_start_many(e, "w1", NULL, (size_t)w1, ids, &err) != 0) goto fail;
    for (;;) {
        cbm_engine_get_stats(e, &s1);
        if (s1.steps_run - s0.steps_run >= (uint64_t)w1 * 3 && s1.active == 0) break;
        usleep(200);
    }
    t1 = bench_now_s();
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
        double a = bench_now_s();
        if (cbm_execution_start(e, "w2", "{}", id, &err) != 0) goto fail;
        if (cbm_execution_wait(e, id, 30000, &info, &err) != 0) goto fail;
        lat[i] = (bench_now_s() - a) * 1000.0;
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
