/*
 * bench_trigger - NATS trigger → execution started (docs/bus.md), on an
 * embedded engine with a no-op step and a bus in the same process. Prints
 * figures; asserts nothing about speed.
 *
 *   CEREBELUM_DATABASE_URL=... CEREBELUM_NATS_URL=... bench_trigger [SECONDS] [MAX_N]
 *
 * Latency: messages are published at 1, 100 and 1000 msg/s (batch 10, the
 * default; and 1000 msg/s with batch 100) for SECONDS (10;
 * at least 20 messages at 1 msg/s) each on its own trigger's subject, each
 * carrying its publish time (wall clock, µs); the latency of a message is
 * its execution's created_at (written by the start's transaction, so the
 * start committed within a few ms after it) minus that time: p50, p99, max.
 * Throughput: MAX_N (5000) messages are published first, then their trigger
 * is put: starts/s = MAX_N / (last created_at - first created_at), for
 * batch 10 (the default) and batch 100.
 */
#include <libpq-fe.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cerebelum/bus.h>
#include <cerebelum/cerebelum.h>

static cbm_engine_t *engine;
static PGconn *pg;
static jsCtx *js;
static int pid;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_trigger: %s: %s\n", what, why);
    exit(1);
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
    cbm_step_ok(out, "{}");
}

static double q1(const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    double v;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) die(sql, PQerrorMessage(pg));
    v = PQgetisnull(r, 0, 0) ? -1 : atof(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void put_trigger(const char *name, int batch)
{
    char json[1024];
    cbm_error_t err = {0};
    snprintf(json, sizeof(json),
             "{\"name\": \"%s\", \"stream\": \"BT%d\", \"stream_subjects\": [\"bt%d.>\"],"
             " \"consumer\": \"%s\", \"subject\": \"bt%d.%s\", \"blueprint\": \"bench_trig\","
             " \"key\": \"$.msg.data.k\", \"inputs\": {\"t\": \"$.msg.data.t\"}, \"batch\": %d}",
             name, pid, pid, name, pid, name, batch);
    if (cbm_trigger_put(engine, json, NULL, NULL, &err) != 0) die("trigger put", err.message);
}

static void publish(const char *name, int i, bool async)
{
    char subj[64], data[128];
    jsErrCode jerr = 0;
    natsStatus s;
    snprintf(subj, sizeof(subj), "bt%d.%s", pid, name);
    snprintf(data, sizeof(data), "{\"k\": \"%s-%d\", \"t\": %lld}", name, i, (long long)wall_us());
    s = async ? js_PublishAsync(js, subj, data, (int)strlen(data), NULL)
              : js_Publish(NULL, js, subj, data, (int)strlen(data), NULL, &jerr);
    if (s != NATS_OK) die("publish", natsStatus_GetText(s));
}

static double count(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM cbm_executions WHERE idempotency_key LIKE 'trig:%s:%%'", name);
    return q1(sql);
}

static void wait_count(const char *name, int n, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        if (count(name) >= n) return;
        usleep(100 * 1000);
    }
    fprintf(stderr, "bench_trigger: %s: %.0f of %d executions after %d s\n", name, count(name), n,
            timeout_s);
    exit(1);
}

static void latency(int rate, int batch, int seconds)
{
    char name[32], sql[512];
    int n = rate * seconds < 20 ? 20 : rate * seconds;
    int64_t t0;
    double p50, p99, mx;

    snprintf(name, sizeof(name), "r%db%d", rate, batch);
    t0 = wall_us();
    for (int i = 0; i < n; i++) {
        int64_t due = t0 + (int64_t)i * 1000000 / rate, now = wall_us();
        if (due > now) usleep((useconds_t)(due - now));
        publish(name, i, false);
    }
    wait_count(name, n, 60);
    snprintf(sql, sizeof(sql),
             "SELECT %%s FROM (SELECT (extract(epoch FROM created_at) * 1e6 - (inputs->>'t')::float8)"
             " / 1000 AS ms FROM cbm_executions WHERE idempotency_key LIKE 'trig:%s:%%%%') q",
             name);
    {
        char s50[600], s99[600], smx[600];
        snprintf(s50, sizeof(s50), sql, "percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)");
        snprintf(s99, sizeof(s99), sql, "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)");
        snprintf(smx, sizeof(smx), sql, "max(ms)");
        p50 = q1(s50);
        p99 = q1(s99);
        mx = q1(smx);
    }
    printf("  %5d msg/s x %5d messages, batch %3d: publish -> started  p50 %7.2f ms  p99 %8.2f ms"
           "  max %8.2f ms\n", rate, n, batch, p50, p99, mx);
    fflush(stdout);
}

static void throughput(int n, int batch)
{
    char name[32], sql[256];
    double span;

    snprintf(name, sizeof(name), "max%d", batch);
    for (int i = 0; i < n; i++) publish(name, i, true);
    if (js_PublishAsyncComplete(js, NULL) != NATS_OK) die("publish", "async completion");
    put_trigger(name, batch);
    wait_count(name, n, 300);
    snprintf(sql, sizeof(sql),
             "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM cbm_executions"
             " WHERE idempotency_key LIKE 'trig:%s:%%'", name);
    span = q1(sql);
    printf("  one trigger, batch %3d: %d starts in %.2f s = %.0f starts/s\n", batch, n, span,
           span > 0 ? n / span : 0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 10, max_n = argc > 2 ? atoi(argv[2]) : 5000;
    const char *db = getenv("CEREBELUM_DATABASE_URL"), *url = getenv("CEREBELUM_NATS_URL");
    cbm_engine_opts_t eo = {0};
    cbm_bus_opts_t bo = {0};
    cbm_bus_t *bus = NULL;
    cbm_error_t err = {0};
    natsConnection *nc = NULL;
    static const int rates[] = {1, 100, 1000, 1000}, batches[] = {10, 10, 10, 100};

    if (db == NULL || url == NULL) die("usage", "set CEREBELUM_DATABASE_URL and CEREBELUM_NATS_URL");
    pid = (int)getpid();
    if ((pg = PQconnectdb(db)) == NULL || PQstatus(pg) != CONNECTION_OK) die("psql", db);
    eo.database_url = db;
    if (cbm_engine_create(&engine, &eo, &err) != 0 ||
        cbm_engine_register_step(engine, "noop", noop, NULL) != 0 ||
        cbm_engine_start(engine, &err) != 0 ||
        cbm_engine_register_blueprint(engine,
                                      "{\"name\": \"bench_trig\", \"steps\": [{\"name\": \"a\","
                                      " \"handler\": \"noop\"}]}",
                                      NULL, &err) != 0)
        die("engine", err.message);
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "r%db%d", rates[i], batches[i]);
        put_trigger(name, batches[i]);
    }
    bo.url = url;
    if (cbm_bus_create(&bus, engine, &bo, &err) != 0) die("bus", err.message);
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        die("nats", url);
    /* The bus creates the stream and consumers: wait for them to fetch. */
    for (int i = 0; i < 100; i++) {
        char *h = NULL;
        int fetching = 0;
        if (cbm_bus_health(bus, &h) == 0)
            for (const char *p = h; (p = strstr(p, "\"state\":\"fetching\"")) != NULL; p++) fetching++;
        free(h);
        if (fetching == (int)(sizeof(rates) / sizeof(rates[0]))) break;
        usleep(100 * 1000);
    }
    printf("bench_trigger: a no-op one-step blueprint, trigger and engine in one process\n");
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
        latency(rates[i], batches[i], seconds);
    throughput(max_n, 10);
    throughput(max_n, 100);
    cbm_bus_destroy(bus);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    cbm_engine_destroy(engine);
    PQfinish(pg);
    return 0;
}
