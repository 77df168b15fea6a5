/*
 * http_metrics.c - /metrics (Prometheus text format 0.0.4), /readyz, and
 * the blueprint routes: what is read from the store with SQL of this
 * file's own, on one connection of its own (http_db: libpq, behind a
 * mutex, reconnected when lost, connect_timeout 2 s), so that a scrape or a
 * health check never waits in the engine's queues and keeps answering
 * (with the reason) while the store is away.
 *
 * What the engine counts itself (commits, decisions, committed events by
 * type, histograms, in-memory executions) comes from its counters
 * (cbm__engine_metrics: atomic loads); what the database knows for every
 * engine (executions by blueprint and status, timers, task queues) from
 * one query each at scrape time; workers from the server's loop. The
 * executions query counts the whole table (an index-only scan at best): fine
 * for millions of rows, a cost to watch past that.
 */
#include "http.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cbm_internal.h"
#include "engine/metrics.h"
#include "engine_internal.h"

extern const char *const store_migrations[][2];
extern const size_t store_migrations_count;

struct http_db {
    uv_mutex_t mu;
    char *url;
    PGconn *conn;
};

int http_db_create(http_db_t **out, const char *url)
{
    http_db_t *db = calloc(1, sizeof(*db));
    if (db == NULL || (db->url = strdup(url)) == NULL) {
        free(db);
        return CBM_ENOMEM;
    }
    uv_mutex_init(&db->mu);
    *out = db;
    return 0;
}

void http_db_destroy(http_db_t *db)
{
    if (db == NULL) return;
    if (db->conn != NULL) PQfinish(db->conn);
    uv_mutex_destroy(&db->mu);
    free(db->url);
    free(db);
}

/* Connected, or why not. Under mu. */
static int db_connect(http_db_t *db, char *msg, size_t cap)
{
    static const char *const keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {db->url, "2", "cerebelum-http", NULL};

    if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK) return 0;
    if (db->conn != NULL) PQfinish(db->conn);
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK) return 0;
    snprintf(msg, cap, "%s", db->conn != NULL ? PQerrorMessage(db->conn) : "out of memory");
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    return CBM_EUNAVAIL;
}

int http_db_run(http_db_t *db, http_db_fn fn, void *arg, char *msg, size_t cap)
{
    int rc;
    uv_mutex_lock(&db->mu);
    if ((rc = db_connect(db, msg, cap)) == 0) {
        rc = fn(db->conn, arg, msg, cap);
        /* A lost connection: once more on a new one (the reads are safe to
         * repeat). */
        if (rc == CBM_EUNAVAIL && PQstatus(db->conn) != CONNECTION_OK &&
            (rc = db_connect(db, msg, cap)) == 0)
            rc = fn(db->conn, arg, msg, cap);
    }
    uv_mutex_unlock(&db->mu);
    return rc;
}

/* Run sql with params; a result of tuples or an error code with msg. */
static int query(PGconn *c, const char *sql, int n, const char *const *params, PGresult **out,
                 char *msg, size_t cap)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK) {
        *out = r;
        return 0;
    }
    snprintf(msg, cap, "%s", PQerrorMessage(c));
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    PQclear(r);
    *out = NULL;
    return PQstatus(c) != CONNECTION_OK ? CBM_EUNAVAIL : CBM_ESTORE;
}

/* ---- /metrics --------------------------------------------------------------- */

typedef struct text {
    char *s;
    size_t len, cap;
    int oom;
} text_t;

static void tprintf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tprintf(text_t *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (t->oom) return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        {
            size_t cap = (t->cap + (size_t)n + 1) * 2;
            char *b = realloc(t->s, cap);
            if (b == NULL) {
                t->oom = 1;
                return;
            }
            t->s = b;
            t->cap = cap;
        }
    }
}

static void head(text_t *t, const char *name, const char *type, const char *help)
{
    tprintf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format wants (\\, \", \n). */
static void label(text_t *t, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\') tprintf(t, "\\\\");
        else if (*v == '"') tprintf(t, "\\\"");
        else if (*v == '\n') tprintf(t, "\\n");
        else tprintf(t, "%c", *v);
    }
}

/* A histogram of integer observations in units of 1/scale (scale 1e6 for
 * microseconds shown as seconds, 1 for counts). */
static void hist(text_t *t, const char *name, const char *help, const cbm_hist_snap_t *h,
                 const int64_t *bounds, size_t nb, double scale)
{
    uint64_t cum = 0;
    head(t, name, "histogram", help);
    for (size_t i = 0; i < nb; i++) {
        cum += h->bucket[i];
        tprintf(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bounds[i] / scale, cum);
    }
    cum += h->bucket[nb];
    /* +Inf is the count (a scrape may see the count a little ahead of the
     * buckets while a commit lands: take the larger). */
    tprintf(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum > h->count ? cum : h->count);
    tprintf(t, "%s_sum %.6f\n", name, (double)h->sum / scale);
    tprintf(t, "%s_count %" PRIu64 "\n", name, cum > h->count ? cum : h->count);
}

typedef struct store_counts {
    PGresult *execs;   /* blueprint, status, count */
    PGresult *queues;  /* queue, depth, oldest age (s) */
    long long timers;
} store_counts_t;

static int read_counts(void *conn, void *arg, char *msg, size_t cap)
{
    store_counts_t *sc = arg;
    PGresult *r = NULL;
    int rc;

    PQclear(sc->execs);
    PQclear(sc->queues);
    sc->execs = sc->queues = NULL;
    if ((rc = query(conn, "SELECT blueprint, status, count(*) FROM cbm_executions "
                          "GROUP BY 1, 2 ORDER BY 1, 2", 0, NULL, &sc->execs, msg, cap)) != 0)
        return rc;
    if ((rc = query(conn, "SELECT queue, count(*), COALESCE(GREATEST(0, extract(epoch FROM "
                          "clock_timestamp() - min(available_at))), 0) FROM cbm_tasks "
                          "WHERE lease_owner IS NULL GROUP BY queue ORDER BY queue",
                    0, NULL, &sc->queues, msg, cap)) != 0)
        return rc;
    if ((rc = query(conn, "SELECT count(*) FROM cbm_timers", 0, NULL, &r, msg, cap)) != 0)
        return rc;
    sc->timers = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static long long rss_bytes(void)
{
    long long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    if (fscanf(f, "%lld %lld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* The counter of one execution status, by blueprint, from the rows. */
static void by_blueprint(text_t *t, const PGresult *r, const char *name, const char *help,
                         const char *status)
{
    head(t, name, "counter", help);
    for (int i = 0, n = PQntuples(r); i < n;) {
        const char *bp = PQgetvalue(r, i, 0);
        long long sum = 0;
        int k = i;
        for (; k < n && strcmp(PQgetvalue(r, k, 0), bp) == 0; k++)
            if (status == NULL || strcmp(PQgetvalue(r, k, 1), status) == 0)
                sum += atoll(PQgetvalue(r, k, 2));
        tprintf(t, "%s{blueprint=\"", name);
        label(t, bp);
        tprintf(t, "\"} %lld\n", sum);
        i = k;
    }
}

int http_metrics(const http_req_t *r, http_reply_t *rp, char **out)
{
    static const struct { ev_type_t type; const char *status; } steps[] = {
        {EV_STEP_SCHEDULED, "scheduled"}, {EV_STEP_STARTED, "started"},
        {EV_STEP_COMPLETED, "completed"}, {EV_STEP_FAILED, "failed"},
        {EV_STEP_RETRY_SCHEDULED, "retry_scheduled"},
    };
    cbm_engine_stats_t st;
    cbm_metrics_snap_t m;
    store_counts_t sc = {0};
    text_t t = {0};
    char msg[400];
    size_t nworkers = 0, nalive = 0;
    long long unfinished = 0, rss;
    int rc;

    *out = NULL;
    rc = http_db_run(http_db_of(r->srv), read_counts, &sc, msg, sizeof(msg));
    if (rc != 0) {
        PQclear(sc.execs);
        PQclear(sc.queues);
        return http_error_rc(rp, rc, msg), -1;
    }
    cbm__engine_metrics(http_engine(r->srv), &st, &m);

    by_blueprint(&t, sc.execs, "cerebelum_executions_started_total",
                 "Executions started, by blueprint (store: every engine on this database).", NULL);
    by_blueprint(&t, sc.execs, "cerebelum_executions_completed_total",
                 "Executions completed, by blueprint (store).", "completed");
    by_blueprint(&t, sc.execs, "cerebelum_executions_failed_total",
                 "Executions failed, by blueprint (store).", "failed");
    by_blueprint(&t, sc.execs, "cerebelum_executions_cancelled_total",
                 "Executions cancelled, by blueprint (store).", "cancelled");
    for (int i = 0; i < PQntuples(sc.execs); i++) {
        const char *s = PQgetvalue(sc.execs, i, 1);
        if (strcmp(s, "completed") != 0 && strcmp(s, "failed") != 0 && strcmp(s, "cancelled") != 0)
            unfinished += atoll(PQgetvalue(sc.execs, i, 2));
    }

    head(&t, "cerebelum_steps_total", "counter",
         "Step events committed by this process, by the status they record.");
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        tprintf(&t, "cerebelum_steps_total{status=\"%s\"} %" PRIu64 "\n", steps[i].status,
                m.events[steps[i].type]);
    head(&t, "cerebelum_decisions_total", "counter", "Execution decisions committed by this process.");
    tprintf(&t, "cerebelum_decisions_total %" PRIu64 "\n", st.decisions);
    head(&t, "cerebelum_commits_total", "counter", "Store transactions committed by this process.");
    tprintf(&t, "cerebelum_commits_total %" PRIu64 "\n", st.commits);
    head(&t, "cerebelum_store_errors_total", "counter", "Failed store attempts (retried).");
    tprintf(&t, "cerebelum_store_errors_total %" PRIu64 "\n", st.store_errors);
    hist(&t, "cerebelum_commit_batch_size", "Decisions per store transaction.", &m.batch,
         cbm_batch_bounds, cbm_batch_nbounds, 1);
    hist(&t, "cerebelum_commit_duration_seconds", "Duration of one store transaction.",
         &m.commit_us, cbm_commit_bounds_us, cbm_commit_nbounds, 1e6);

    head(&t, "cerebelum_timers_pending", "gauge", "Durable timers in the store.");
    tprintf(&t, "cerebelum_timers_pending %lld\n", sc.timers);
    head(&t, "cerebelum_timers_fired_total", "counter", "Durable timers that came due here.");
    tprintf(&t, "cerebelum_timers_fired_total %" PRIu64 "\n", m.timers_fired);
    hist(&t, "cerebelum_timer_lateness_seconds", "How late a timer fired after its due time.",
         &m.lateness_us, cbm_lateness_bounds_us, cbm_lateness_nbounds, 1e6);

    head(&t, "cerebelum_executions_in_memory", "gauge", "Executions held in this engine's memory.");
    tprintf(&t, "cerebelum_executions_in_memory %" PRIu64 "\n", st.active);
    head(&t, "cerebelum_executions_hibernated", "gauge",
         "Unfinished executions in the store not in this engine's memory.");
    tprintf(&t, "cerebelum_executions_hibernated %lld\n",
            unfinished > (long long)st.active ? unfinished - (long long)st.active : 0);

    head(&t, "cerebelum_task_queue_depth", "gauge", "Remote tasks waiting for a worker, by queue.");
    for (int i = 0; i < PQntuples(sc.queues); i++) {
        tprintf(&t, "cerebelum_task_queue_depth{queue=\"");
        label(&t, PQgetvalue(sc.queues, i, 0));
        tprintf(&t, "\"} %s\n", PQgetvalue(sc.queues, i, 1));
    }
    head(&t, "cerebelum_task_queue_oldest_age_seconds", "gauge",
         "Age of the oldest waiting remote task, by queue.");
    for (int i = 0; i < PQntuples(sc.queues); i++) {
        tprintf(&t, "cerebelum_task_queue_oldest_age_seconds{queue=\"");
        label(&t, PQgetvalue(sc.queues, i, 0));
        tprintf(&t, "\"} %s\n", PQgetvalue(sc.queues, i, 2));
    }
    PQclear(sc.execs);
    PQclear(sc.queues);

    if (http_workers_of(r->srv) != NULL &&
        http_workers_ask(http_workers_of(r->srv), NULL, NULL, &nworkers, &nalive, 2000) == 0) {
        head(&t, "cerebelum_workers", "gauge", "Remote workers registered with this server.");
        tprintf(&t, "cerebelum_workers{alive=\"true\"} %zu\n", nalive);
        tprintf(&t, "cerebelum_workers{alive=\"false\"} %zu\n", nworkers - nalive);
        head(&t, "cerebelum_leases_expired_total", "counter",
             "Remote task leases that ran out (the attempt failed as lease_expired).");
        tprintf(&t, "cerebelum_leases_expired_total %" PRIu64 "\n",
                wsvc_leases_expired(http_workers_of(r->srv)->ws));
    }
    head(&t, "cerebelum_llm_calls_total", "counter",
         "LLM calls completed (steps whose result carries one call's usage), by this process.");
    tprintf(&t, "cerebelum_llm_calls_total %" PRIu64 "\n", m.llm_calls);
    head(&t, "cerebelum_llm_tokens_total", "counter",
         "Tokens of the completed LLM calls, by kind, as the model server reported them.");
    tprintf(&t, "cerebelum_llm_tokens_total{kind=\"prompt\"} %" PRIu64 "\n", m.llm_prompt_tokens);
    tprintf(&t, "cerebelum_llm_tokens_total{kind=\"completion\"} %" PRIu64 "\n",
            m.llm_completion_tokens);
    tprintf(&t, "cerebelum_llm_tokens_total{kind=\"cached\"} %" PRIu64 "\n", m.llm_cached_tokens);
    if ((rss = rss_bytes()) >= 0) {
        head(&t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        tprintf(&t, "process_resident_memory_bytes %lld\n", rss);
    }
    if (t.oom) {
        free(t.s);
        return http_error(rp, 500, "out of memory"), -1;
    }
    *out = t.s;
    return 0;
}

/* ---- /readyz ---------------------------------------------------------------- */

static int migration_number(const char *name)
{
    return atoi(name);
}

static int read_schema(void *conn, void *arg, char *msg, size_t cap)
{
    PGresult *r = NULL;
    int rc = query(conn, "SELECT COALESCE(max(version), 0) FROM cbm_schema_version", 0, NULL, &r,
                   msg, cap);
    if (rc == 0) *(long long *)arg = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

int http_readyz(const http_req_t *r, http_reply_t *rp)
{
    cJSON *checks;
    char msg[400], why[700] = "", text[500];
    long long have = -1;
    int want = store_migrations_count > 0
                   ? migration_number(store_migrations[store_migrations_count - 1][0])
                   : 0;
    int rc;

    if ((rp->json = cJSON_CreateObject()) == NULL) return http_error(rp, 500, "out of memory");
    checks = cJSON_CreateObject();
    rc = http_db_run(http_db_of(r->srv), read_schema, &have, msg, sizeof(msg));
    if (rc != 0) {
        snprintf(text, sizeof(text), "unreachable: %s", msg);
        cJSON_AddStringToObject(checks, "store", text);
        cJSON_AddStringToObject(checks, "migrations", "unknown");
        snprintf(why, sizeof(why), "store: %s", text);
    } else {
        cJSON_AddStringToObject(checks, "store", "ok");
        if (have != want) {
            snprintf(text, sizeof(text), "the database is at version %lld, this build wants %d",
                     have, want);
            cJSON_AddStringToObject(checks, "migrations", text);
            snprintf(why, sizeof(why), "migrations: %s", text);
        } else {
            cJSON_AddStringToObject(checks, "migrations", "ok");
        }
    }
    rc = cbm__engine_ping(http_engine(r->srv), 1000);
    if (rc != 0) {
        snprintf(text, sizeof(text), "%s", rc == CBM_ETIMEDOUT
                 ? "the engine's loop did not run a no-op within 1 s" : cbm_strerror(rc));
        cJSON_AddStringToObject(checks, "engine_loop", text);
        if (why[0] == '\0') snprintf(why, sizeof(why), "engine_loop: %s", text);
    } else {
        cJSON_AddStringToObject(checks, "engine_loop", "ok");
    }
    cJSON_AddStringToObject(rp->json, "status", why[0] == '\0' ? "ready" : "not_ready");
    if (why[0] != '\0') cJSON_AddStringToObject(rp->json, "reason", why);
    if (checks != NULL) cJSON_AddItemToObject(rp->json, "checks", checks);
    rp->status = why[0] == '\0' ? 200 : 503;
    return 0;
}

/* ---- blueprints --------------------------------------------------------------- */

typedef struct bp_q {
    const char *name, *version;
    PGresult *res;
} bp_q_t;

static int read_blueprints(void *conn, void *arg, char *msg, size_t cap)
{
    bp_q_t *q = arg;
    const char *params[2] = {q->name, q->version};
    PQclear(q->res);
    q->res = NULL;
    if (q->name == NULL)
        return query(conn,
                     "SELECT name, (array_agg(version ORDER BY created_at DESC))[1], count(*), "
                     "(extract(epoch FROM max(created_at)) * 1000)::bigint "
                     "FROM cbm_blueprints GROUP BY name ORDER BY name",
                     0, NULL, &q->res, msg, cap);
    if (q->version == NULL)
        return query(conn,
                     "SELECT version, (extract(epoch FROM created_at) * 1000)::bigint "
                     "FROM cbm_blueprints WHERE name = $1 ORDER BY created_at DESC, version",
                     1, params, &q->res, msg, cap);
    return query(conn, "SELECT definition::text FROM cbm_blueprints WHERE name = $1 AND version = $2",
                 2, params, &q->res, msg, cap);
}

int http_blueprints(const http_req_t *r, const char *name, const char *version, http_reply_t *rp)
{
    bp_q_t q = {name, version, NULL};
    char msg[400];
    cJSON *arr;
    int rc = http_db_run(http_db_of(r->srv), read_blueprints, &q, msg, sizeof(msg));
    int n;

    if (rc != 0) return http_error_rc(rp, rc, msg);
    n = PQntuples(q.res);
    if (name != NULL && n == 0) {
        PQclear(q.res);
        if (version != NULL)
            return http_error(rp, 404, "blueprint %s has no version %s", name, version);
        return http_error(rp, 404, "no blueprint named %s", name);
    }
    if ((rp->json = cJSON_CreateObject()) == NULL) goto oom;
    if (name == NULL) {
        if ((arr = cJSON_AddArrayToObject(rp->json, "blueprints")) == NULL) goto oom;
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            if (o == NULL) goto oom;
            cJSON_AddItemToArray(arr, o);
            cJSON_AddStringToObject(o, "name", PQgetvalue(q.res, i, 0));
            cJSON_AddStringToObject(o, "latest_version", PQgetvalue(q.res, i, 1));
            cJSON_AddNumberToObject(o, "versions", atof(PQgetvalue(q.res, i, 2)));
            cJSON_AddNumberToObject(o, "updated_at_ms", atof(PQgetvalue(q.res, i, 3)));
        }
    } else if (version == NULL) {
        cJSON_AddStringToObject(rp->json, "name", name);
        if ((arr = cJSON_AddArrayToObject(rp->json, "versions")) == NULL) goto oom;
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            if (o == NULL) goto oom;
            cJSON_AddItemToArray(arr, o);
            cJSON_AddStringToObject(o, "version", PQgetvalue(q.res, i, 0));
            cJSON_AddNumberToObject(o, "created_at_ms", atof(PQgetvalue(q.res, i, 1)));
            cJSON_AddBoolToObject(o, "latest", i == 0);
        }
    } else {
        cJSON *def = cJSON_Parse(PQgetvalue(q.res, 0, 0));
        cJSON_AddStringToObject(rp->json, "name", name);
        cJSON_AddStringToObject(rp->json, "version", version);
        if (def == NULL) goto oom;
        cJSON_AddItemToObject(rp->json, "blueprint", def);
    }
    PQclear(q.res);
    return 0;
oom:
    PQclear(q.res);
    return http_error(rp, 500, "out of memory");
}
