/*
 * bench_sleep - many executions asleep at once: the engine's resident memory
 * while they sleep (hibernated: no execution state in memory), and how late
 * their wake-ups are when they all come due within a few seconds.
 *
 *   CEREBELUM_DATABASE_URL=... bench_sleep [N] [SLEEP_MS]
 *
 * Starts N (100000) executions of one sleep step of SLEEP_MS (20000) ms,
 * reports RSS once all are asleep, waits for all to complete, and reads the
 * lateness of each wake-up from the store: the TimerFired event's time minus
 * the SleepStarted event's until_us (p50/p99/max). Prints figures; asserts
 * nothing about speed.
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

static void noop(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{}");
}

int main(int argc, char **argv)
{
    const char *url = getenv("CEREBELUM_DATABASE_URL");
    int n = argc > 1 ? atoi(argv[1]) : 100000, sleep_ms = argc > 2 ? atoi(argv[2]) : 20000;
    const int batch = 2000;
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t o = {0};
    cbm_error_t err = {0};
    cbm_engine_stats_t st;
    char bp[256], (*ids)[37];
    double t0, t_started, t_done;
    long rss0, rss_asleep, rss_peak = 0;
    PGconn *c;
    PGresult *r;

    if (url == NULL) {
        fprintf(stderr, "bench_sleep: set CEREBELUM_DATABASE_URL (or use bench/run.sh)\n");
        return 2;
    }
    o.database_url = url;
    if (cbm_engine_create(&e, &o, &err) != 0 || cbm_engine_register_step(e, "noop", noop, NULL) != 0 ||
        cbm_engine_start(e, &err) != 0)
        goto fail;
    snprintf(bp, sizeof(bp),
             "{\"name\":\"sleepers\",\"timeline\":[{\"name\":\"z\",\"kind\":\"sleep\","
             "\"duration_ms\":%d}]}",
             sleep_ms);
    if (cbm_engine_register_blueprint(e, bp, NULL, &err) != 0) goto fail;
    rss0 = rss_kb();
    ids = calloc((size_t)batch, sizeof(*ids));
    t0 = now_s();
    for (int done = 0; done < n; done += batch) {
        int k = n - done < batch ? n - done : batch;
        if (cbm_execution_start_many(e, "sleepers", NULL, (size_t)k, ids, &err) != 0) goto fail;
    }
    t_started = now_s();
    for (;;) { /* every one committed its sleep and left memory */
        cbm_engine_get_stats(e, &st);
        if (st.active == 0) break;
        usleep(10000);
    }
    rss_asleep = rss_kb();
    printf("sleep: %d executions started in %.2f s (%.0f/s); all asleep, engine RSS %.1f MB "
           "(%.1f MB before starting)\n",
           n, t_started - t0, n / (t_started - t0), rss_asleep / 1024.0, rss0 / 1024.0);
    fflush(stdout);
    for (;;) {
        long kb = rss_kb();
        cbm_engine_get_stats(e, &st);
        if (kb > rss_peak) rss_peak = kb;
        c = PQconnectdb(url);
        r = PQexec(c, "SELECT count(*) FROM cbm_executions WHERE blueprint = 'sleepers' AND "
                      "status <> 'completed'");
        int left = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
        if (left == 0) break;
        sleep(1);
    }
    t_done = now_s();
    c = PQconnectdb(url);
    r = PQexec(c,
               "WITH s AS (SELECT execution_id, (payload->>'until_us')::float8 AS due FROM "
               "cbm_events WHERE type = 'SleepStarted'), f AS (SELECT execution_id, "
               "extract(epoch FROM recorded_at) * 1e6 AS at FROM cbm_events WHERE type = "
               "'TimerFired'), l AS (SELECT (f.at - s.due) / 1000.0 AS ms FROM s JOIN f USING "
               "(execution_id)) SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
               "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), min(ms) FROM l");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench_sleep: %s", PQerrorMessage(c));
        return 1;
    }
    printf("sleep: all %s woke and completed %.2f s after the last start; wake-up lateness "
           "p50 %.1f ms, p99 %.1f ms, max %.1f ms (min %.1f ms); peak RSS while waking %.1f MB\n",
           PQgetvalue(r, 0, 0), t_done - t_started, atof(PQgetvalue(r, 0, 1)),
           atof(PQgetvalue(r, 0, 2)), atof(PQgetvalue(r, 0, 3)), atof(PQgetvalue(r, 0, 4)),
           rss_peak / 1024.0);
    PQclear(r);
    PQfinish(c);
    free(ids);
    cbm_engine_destroy(e);
    return 0;
fail:
    fprintf(stderr, "bench_sleep: %s: %s\n", cbm_err_name(err.code), err.message);
    cbm_engine_destroy(e);
    return 1;
}
