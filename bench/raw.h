/*
 * raw.h - what the benchmarks share: the clock, libpq helpers, and the raw
 * PostgreSQL ceiling each prints beside its own figures, measured on the
 * same server in the same run.
 */
#ifndef CBM_BENCH_RAW_H
#define CBM_BENCH_RAW_H

#include <libpq-fe.h>

/* CLOCK_MONOTONIC in seconds. */
double bench_now_s(void);

/* Print what failed with the server's message and exit(1). */
void bench_die_pq(PGconn *c, const char *what);

/* Run sql; bench_die_pq unless it succeeds. */
void bench_exec_ok(PGconn *c, const char *sql);

/* The first column of the first row of sql as a double (0 when NULL). */
double bench_query_double(PGconn *c, const char *sql);

typedef struct bench_raw {
    double rows_s;        /* multi-row INSERT ... unnest of event-sized rows,
                             500 a statement, for 2 s */
    double commits_s;     /* single-row autocommit INSERTs, for 2 s */
    double commit_p50_ms; /* and the latency of one of them */
    double commit_p99_ms;
} bench_raw_t;

/* What this PostgreSQL does with no engine in the way (a scratch table,
 * dropped after). */
void bench_raw_ceiling(const char *url, bench_raw_t *out);

#endif
