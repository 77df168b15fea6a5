/* raw.c - see raw.h. */
#include "raw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_die_pq(PGconn *c, const char *what)
{
    fprintf(stderr, "bench: %s: %s", what, PQerrorMessage(c));
    exit(1);
}

void bench_exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        bench_die_pq(c, sql);
    PQclear(r);
}

double bench_query_double(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    double v;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) bench_die_pq(c, sql);
    v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atof(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bench_raw_ceiling(const char *url, bench_raw_t *out)
{
    PGconn *c = PQconnectdb(url);
    const int rows = 500;
    char *ids, *seqs, *types, *payloads;
    const char *params[4];
    double t0, t, *lat;
    long n = 0, batch = 0, cap = 1 << 16;

    if (PQstatus(c) != CONNECTION_OK) bench_die_pq(c, "connect");
    bench_exec_ok(c, "DROP TABLE IF EXISTS bench_events");
    bench_exec_ok(c, "CREATE TABLE bench_events (execution_id uuid, seq bigint, type text, payload json, "
                     "recorded_at timestamptz DEFAULT clock_timestamp(), PRIMARY KEY (execution_id, seq))");
    if (PQprepare(c, "multi",
                  "INSERT INTO bench_events(execution_id, seq, type, payload) SELECT * FROM "
                  "unnest($1::uuid[], $2::int8[], $3::text[], $4::json[])",
                  4, NULL) == NULL)
        bench_die_pq(c, "prepare");
    ids = malloc((size_t)rows * 40 + 3);
    seqs = malloc((size_t)rows * 24 + 3);
    types = malloc((size_t)rows * 20 + 3);
    payloads = malloc((size_t)rows * 64 + 3);
    lat = malloc((size_t)cap * sizeof(*lat));
    if (ids == NULL || seqs == NULL || types == NULL || payloads == NULL || lat == NULL) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    t0 = bench_now_s();
    while ((t = bench_now_s()) - t0 < 2.0) {
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
        if (PQresultStatus(r) != PGRES_COMMAND_OK) bench_die_pq(c, "multi insert");
        PQclear(r);
        n += rows;
        batch++;
    }
    out->rows_s = (double)n / (t - t0);

    if (PQprepare(c, "single",
                  "INSERT INTO bench_events(execution_id, seq, type, payload) VALUES "
                  "('00000000-0000-4000-8000-ffffffffffff', $1, 'StepCompleted', "
                  "'{\"step\":\"s\",\"attempt\":1,\"result\":{}}')",
                  1, NULL) == NULL)
        bench_die_pq(c, "prepare");
    n = 0;
    t0 = bench_now_s();
    while ((t = bench_now_s()) - t0 < 2.0 && n < cap) {
        char seq[24];
        double s = t;
        PGresult *r;
        snprintf(seq, sizeof(seq), "%ld", n + 1);
        params[0] = seq;
        r = PQexecPrepared(c, "single", 1, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) bench_die_pq(c, "single insert");
        PQclear(r);
        lat[n++] = (bench_now_s() - s) * 1e3;
    }
    out->commits_s = (double)n / (t - t0);
    qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
    out->commit_p50_ms = n > 0 ? lat[n / 2] : 0;
    out->commit_p99_ms = n > 0 ? lat[(n * 99) / 100] : 0;
    bench_exec_ok(c, "DROP TABLE bench_events");
    free(ids);
    free(seqs);
    free(types);
    free(payloads);
    free(lat);
    PQfinish(c);
}
