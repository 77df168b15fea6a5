/*
 * bench_outbox - the outbox (docs/outbox.md) on a real PostgreSQL and
 * nats-server -js. Prints figures; asserts nothing about speed.
 *
 *   CEREBELUM_DATABASE_URL=... NATS_URL=nats://... bench_outbox [W1_EXECUTIONS]
 *
 * (bench/run.sh runs it under tests/harness/with-nats.sh.)
 *   W1 cost: W1 (2000 executions x 3 no-op steps, started at once) with the
 *     outbox off, then on (rows written, no publisher): the price of the rows;
 *   lag: W1 with the outbox on and the publisher running; for every event
 *     message, the time from the event's recorded_at (set by the engine as it
 *     decides, before the commit) to its arrival at a plain NATS subscriber,
 *     and from its row's insert (created_at, in the commit's statement) to
 *     that arrival (p50/p99/max over the 5 lifecycle events of each
 *     execution);
 *   drain: 10,000 rows waiting (as after an outage of NATS), then a
 *     publisher starts: time until the outbox is empty; for rows spread over
 *     10,000, 2,000 (5 each) and 1 execution(s) (1,000 rows for the last:
 *     one row per execution per round).
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bus/outbox.h"
#include "cerebelum/cerebelum.h"
#include "store/store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void noop(const cbm_step_call_t *call, cbm_step_out_t *out, void *arg)
{
    (void)call;
    (void)arg;
    cbm_step_ok(out, "{\"ok\":true}");
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static PGconn *pg;

static void sql(const char *q)
{
    PGresult *r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench: %s: %s", q, PQerrorMessage(pg));
        exit(1);
    }
    PQclear(r);
}

static long long sql_int(const char *q)
{
    PGresult *r = PQexec(pg, q);
    long long v;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench: %s: %s", q, PQerrorMessage(pg));
        exit(1);
    }
    v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* What the subscriber saw: msg id and arrival time. */
static struct {
    pthread_mutex_t mu;
    size_t n, cap;
    char (*id)[48];
    int64_t *at;
} seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL, NULL};

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    const char *id = NULL;
    int64_t t = wall_us();
    (void)nc;
    (void)sub;
    (void)closure;
    natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
    pthread_mutex_lock(&seen.mu);
    if (id != NULL && seen.n < seen.cap) {
        snprintf(seen.id[seen.n], sizeof(seen.id[0]), "%s", id);
        seen.at[seen.n++] = t;
    }
    pthread_mutex_unlock(&seen.mu);
    natsMsg_Destroy(m);
}

static double w1(cbm_engine_t *e, int n)
{
    char (*ids)[37] = calloc((size_t)n, sizeof(*ids));
    cbm_engine_stats_t s0, s1;
    cbm_error_t err = {0};
    double t0, t1;

    cbm_engine_get_stats(e, &s0);
    t0 = now_s();
    if (cbm_execution_start_many(e, "w1", NULL, (size_t)n, ids, &err) != 0) {
        fprintf(stderr, "bench: start: %s\n", err.message);
        exit(1);
    }
    for (;;) {
        cbm_engine_get_stats(e, &s1);
        if (s1.steps_run - s0.steps_run >= (uint64_t)n * 3 && s1.active == 0) break;
        usleep(200);
    }
    t1 = now_s();
    free(ids);
    return 3.0 * n / (t1 - t0);
}

static bus_outbox_t *publisher(const char *url, const char *nats_url)
{
    bus_outbox_config_t cfg = {0};
    bus_outbox_t *o = NULL;
    cbm_error_t err = {0};

    cfg.db_url = url;
    cfg.nats_url = nats_url;
    cfg.configure = true;
    if (bus_outbox_start(&cfg, &o, &err) != 0) {
        fprintf(stderr, "bench: publisher: %s\n", err.message);
        exit(1);
    }
    return o;
}

static double drain(const char *url, const char *nats_url, const char *what, long rows,
                    const char *insert)
{
    bus_outbox_t *o;
    double t0, t;

    sql("DELETE FROM cbm_outbox");
    sql(insert);
    if (sql_int("SELECT count(*) FROM cbm_outbox") != rows) {
        fprintf(stderr, "bench: drain setup\n");
        exit(1);
    }
    t0 = now_s();
    o = publisher(url, nats_url);
    while (sql_int("SELECT count(*) FROM cbm_outbox") > 0) usleep(2000);
    t = now_s() - t0;
    bus_outbox_stop(o);
    printf("drain: %ld rows over %s: %.3f s (%.0f rows/s), publisher start included\n", rows, what,
           t, (double)rows / t);
    return t;
}

int main(int argc, char **argv)
{
    const char *url = getenv("CEREBELUM_DATABASE_URL"), *nats_url = getenv("NATS_URL");
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    cbm_engine_t *e = NULL;
    cbm_engine_opts_t eo = {0};
    cbm_error_t err = {0};
    store_t *s = NULL;
    bus_outbox_t *o;
    natsConnection *nc = NULL;
    natsSubscription *sub = NULL;
    double off, on;
    int64_t *lag, *lag2 = NULL;
    size_t nl = 0;

    if (url == NULL || nats_url == NULL) {
        fprintf(stderr, "bench: set CEREBELUM_DATABASE_URL and NATS_URL (or use bench/run.sh)\n");
        return 2;
    }
    pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK) return 1;
    eo.database_url = url;
    if (cbm_engine_create(&e, &eo, &err) != 0 || cbm_engine_register_step(e, "noop", noop, NULL) != 0 ||
        cbm_engine_start(e, &err) != 0 ||
        cbm_engine_register_blueprint(
            e, "{\"name\":\"w1\",\"timeline\":[{\"name\":\"s1\",\"handler\":\"noop\"},"
               "{\"name\":\"s2\",\"handler\":\"noop\"},{\"name\":\"s3\",\"handler\":\"noop\"}]}",
            NULL, &err) != 0) {
        fprintf(stderr, "bench: engine: %s\n", err.message);
        return 1;
    }
    if (store_open(url, &s, &err) != 0) return 1;

    /* The price of the rows (after a warm-up run). */
    store_outbox_configure(s, false, NULL, 0, &err);
    w1(e, n);
    for (int r = 0; r < 2; r++) { /* alternated: the tables grow between runs */
        store_outbox_configure(s, false, NULL, 0, &err);
        off = w1(e, n);
        store_outbox_configure(s, true, NULL, 65536, &err);
        on = w1(e, n);
        printf("W1 (%d x 3 steps): outbox off %.0f steps/s, then on (rows written, no publisher) "
               "%.0f steps/s (%.2f x); %lld rows\n",
               n, off, on, on / off, sql_int("SELECT count(*) FROM cbm_outbox"));
    }
    sql("DELETE FROM cbm_outbox");

    /* Lag under W1. */
    seen.cap = (size_t)n * 5 + 16;
    seen.id = calloc(seen.cap, sizeof(*seen.id));
    seen.at = calloc(seen.cap, sizeof(*seen.at));
    /* Each row's created_at (clock_timestamp() in the commit's statement),
     * kept by a trigger of this benchmark's database only, to split the
     * lag into before and after the commit. */
    sql("CREATE TABLE IF NOT EXISTS bench_outbox_at (msg_id text PRIMARY KEY, at timestamptz)");
    sql("CREATE OR REPLACE FUNCTION bench_outbox_at() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO bench_outbox_at VALUES (NEW.msg_id, NEW.created_at); RETURN NEW; END$$");
    sql("DROP TRIGGER IF EXISTS bench_outbox_at ON cbm_outbox");
    sql("CREATE TRIGGER bench_outbox_at AFTER INSERT ON cbm_outbox FOR EACH ROW"
        " EXECUTE FUNCTION bench_outbox_at()");
    o = publisher(url, nats_url);
    if (natsConnection_ConnectTo(&nc, nats_url) != NATS_OK ||
        natsConnection_Subscribe(&sub, nc, "cerebelum.execution.>", on_msg, NULL) != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK) {
        fprintf(stderr, "bench: subscribe\n");
        return 1;
    }
    sleep(1); /* stream ensured, lock taken */
    w1(e, n);
    for (int i = 0; i < 300 && sql_int("SELECT count(*) FROM cbm_outbox") > 0; i++) usleep(10000);
    usleep(100000);
    lag = calloc(seen.cap, sizeof(*lag));
    {
        /* recorded_at of each message's event, in one query. */
        size_t len = seen.n * 48 + 16, pos = 0;
        char *arr = malloc(len);
        const char *vals[1];
        PGresult *r;
        pthread_mutex_lock(&seen.mu);
        arr[pos++] = '{';
        for (size_t i = 0; i < seen.n; i++)
            pos += (size_t)snprintf(arr + pos, len - pos, "%s\"%s\"", i ? "," : "", seen.id[i]);
        arr[pos++] = '}';
        arr[pos] = '\0';
        vals[0] = arr;
        r = PQexecParams(pg,
                         "SELECT (extract(epoch FROM e.recorded_at) * 1000000)::int8,"
                         " (extract(epoch FROM a.at) * 1000000)::int8 FROM"
                         " unnest($1::text[]) WITH ORDINALITY AS u(id, i) JOIN cbm_events e ON"
                         " e.execution_id = split_part(u.id, ':', 1)::uuid AND"
                         " e.seq = split_part(u.id, ':', 2)::int8"
                         " JOIN bench_outbox_at a ON a.msg_id = u.id ORDER BY u.i",
                         1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || (size_t)PQntuples(r) != seen.n) {
            fprintf(stderr, "bench: lag query: %s", PQerrorMessage(pg));
            return 1;
        }
        lag2 = calloc(seen.cap, sizeof(*lag2));
        for (size_t i = 0; i < seen.n; i++) {
            lag2[nl] = seen.at[i] - atoll(PQgetvalue(r, (int)i, 1));
            lag[nl++] = seen.at[i] - atoll(PQgetvalue(r, (int)i, 0));
        }
        PQclear(r);
        pthread_mutex_unlock(&seen.mu);
        free(arr);
    }
    qsort(lag, nl, sizeof(*lag), cmp_i64);
    qsort(lag2, nl, sizeof(*lag2), cmp_i64);
    if (nl > 0)
        printf("lag under W1 (%d x 3 steps, publisher on): %zu messages (expected %d)\n"
               "  decision (recorded_at) to subscriber: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n"
               "  row insert (in the commit) to subscriber: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
               n, nl, n * 5, lag[nl / 2] / 1000.0, lag[nl * 99 / 100] / 1000.0,
               lag[nl - 1] / 1000.0, lag2[nl / 2] / 1000.0, lag2[nl * 99 / 100] / 1000.0,
               lag2[nl - 1] / 1000.0);
    sql("DROP TRIGGER bench_outbox_at ON cbm_outbox");
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    bus_outbox_stop(o);
    cbm_engine_destroy(e);

    /* Drains. */
    drain(url, nats_url, "10,000 executions", 10000,
          "INSERT INTO cbm_outbox (execution_id, seq, subject, msg_id, payload)"
          " SELECT x.id, 1, 'cerebelum.execution.drain.started', x.id || ':1', '{\"seq\":1}'"
          " FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 10000)) x");
    drain(url, nats_url, "2,000 executions (5 each)", 10000,
          "INSERT INTO cbm_outbox (execution_id, seq, subject, msg_id, payload)"
          " SELECT x.id, q, 'cerebelum.execution.drain.step_completed', x.id || ':' || q,"
          " '{\"step\":\"s\"}' FROM generate_series(1, 5) q,"
          " (SELECT gen_random_uuid() AS id FROM generate_series(1, 2000)) x ORDER BY q");
    drain(url, nats_url, "1 execution", 1000,
          "INSERT INTO cbm_outbox (execution_id, seq, subject, msg_id, payload)"
          " SELECT '00000000-0000-4000-8000-0000000000aa', q,"
          " 'cerebelum.execution.drain.step_completed', '00000000-0000-4000-8000-0000000000aa:' || q,"
          " '{\"step\":\"s\"}' FROM generate_series(1, 1000) q");

    store_close(s);
    PQfinish(pg);
    free(lag);
    free(lag2);
    free(seen.id);
    free(seen.at);
    nats_Close();
    return 0;
}
