/*
 * engine_api.c - the public engine API (cerebelum.h) over the runtime and the
 * store port. Calls here run on the caller's thread: reads go to the store on
 * a connection of their own (serialised by a mutex), and everything that
 * changes an execution goes through the runtime's loop thread.
 */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>
#include <uv.h>

#include "cbm_internal.h"
#include "cerebelum/cerebelum.h"
#include "engine/blueprint.h"
#include "engine/runtime.h"
#include "pgembed.h"
#include "scheduler/clock.h"
#include "store/store.h"

struct cbm_engine {
    rt_t *rt;
    char *url;                /* resolved store URL (after start) */
    char *state_dir;          /* embedded store, when url was not given */
    pgembed_t *pg;
    int connect_timeout_ms;
    int threads;
    int started;
    uv_mutex_t rd_mu;         /* guards rd */
    store_t *rd;              /* reads and blueprint writes */
};

int cbm_engine_create(cbm_engine_t **out, const cbm_engine_opts_t *opts, cbm_error_t *err)
{
    cbm_engine_opts_t none = {0};
    cbm_engine_t *e;
    const char *url, *dir;
    rt_opts_t ro = {0};

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "out is NULL");
    if (opts == NULL) opts = &none;
    if ((e = calloc(1, sizeof(*e))) == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    url = opts->database_url != NULL ? opts->database_url : getenv("CEREBELUM_DATABASE_URL");
    if (url != NULL && *url != '\0') {
        e->url = strdup(url);
    } else {
        dir = opts->state_dir != NULL ? opts->state_dir : getenv("CEREBELUM_STATE_DIR");
        e->state_dir = strdup(dir != NULL && *dir != '\0' ? dir : ".cerebelum");
    }
    e->connect_timeout_ms = opts->connect_timeout_ms != 0 ? opts->connect_timeout_ms : 30000;
    e->threads = opts->threads > 0 ? opts->threads : 4;
    uv_mutex_init(&e->rd_mu);
    ro.max_batch = opts->max_batch;
    if ((e->url == NULL && e->state_dir == NULL) || rt_create(&e->rt, &ro) != 0) {
        cbm_engine_destroy(e);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    *out = e;
    return 0;
}

int cbm_engine_register_step(cbm_engine_t *e, const char *name, cbm_step_fn fn, void *arg)
{
    if (e == NULL || name == NULL || fn == NULL) return CBM_EINVAL;
    return rt_register_handler(e->rt, name, fn, arg);
}

/* Connect, retrying with back-off until connect_timeout_ms has passed. */
static int open_store(cbm_engine_t *e, store_t **out, cbm_error_t *err)
{
    int64_t deadline = e->connect_timeout_ms < 0 ? -1 : clock_mono_us() +
                                                        (int64_t)e->connect_timeout_ms * 1000;
    int backoff = 100, attempt = 0;

    for (;;) {
        int rc = store_open(e->url, out, err);
        if (rc == 0) return 0;
        if (rc != CBM_EUNAVAIL) return rc;
        attempt++;
        if (deadline >= 0 && clock_mono_us() + backoff * 1000 > deadline) {
            char msg[sizeof(err->message)];
            snprintf(msg, sizeof(msg), "%s", err != NULL ? err->message : "");
            return cbm_error_set(err, CBM_EUNAVAIL,
                                 "database unreachable after %d attempts: %s", attempt, msg);
        }
        cbm_log_warn("database unreachable (attempt %d), retrying in %d ms: %s", attempt,
                     backoff, err != NULL ? err->message : "");
        {
            struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
}

/* Make sure blueprint (name, version) is in the runtime, loading it from the
 * store if needed. version NULL: latest. Caller holds rd_mu. */
static const bp_blueprint_t *load_blueprint(cbm_engine_t *e, const char *name,
                                            const char *version, int latest, cbm_error_t *err)
{
    const bp_blueprint_t *bp = rt_find_blueprint(e->rt, name, version);
    char *v = NULL, *json = NULL;
    bp_blueprint_t *parsed = NULL;

    if (bp != NULL) return bp;
    if (store_get_blueprint(e->rd, name, version, &v, &json, err) != 0) return NULL;
    if (bp_parse_json(json, strlen(json), &parsed, err) == 0) {
        char want[65];
        snprintf(want, sizeof(want), "%s", v);
        rt_add_blueprint(e->rt, &parsed, latest);
        bp = rt_find_blueprint(e->rt, name, want);
    }
    free(v);
    free(json);
    return bp;
}

int cbm_engine_start(cbm_engine_t *e, cbm_error_t *err)
{
    store_t *wr = NULL;
    store_unfinished_t u = {0};
    int rc;
    char threads[16];

    if (e == NULL) return CBM_EINVAL;
    if (e->started) return cbm_error_set(err, CBM_ESTATE, "engine already started");
    /* libuv sizes its pool on first use; respect a value the user set. */
    snprintf(threads, sizeof(threads), "%d", e->threads);
    setenv("UV_THREADPOOL_SIZE", threads, 0);
    if (e->url == NULL) {
        if ((rc = pgembed_start(e->state_dir, &e->pg, &e->url, err)) != 0) return rc;
    }
    if ((rc = open_store(e, &e->rd, err)) != 0) return rc;
    if ((rc = store_migrate(e->rd, err)) != 0) return rc;
    if ((rc = open_store(e, &wr, err)) != 0) return rc;
    if ((rc = store_load_unfinished(e->rd, &u, err)) != 0) {
        store_close(wr);
        return rc;
    }
    for (size_t i = 0; i < u.nexecs; i++) {
        cbm_error_t e2;
        if (load_blueprint(e, u.execs[i].blueprint, u.execs[i].version, 0, &e2) == NULL)
            cbm_log_error("execution %s: cannot load blueprint %s/%s: %s", u.execs[i].id,
                          u.execs[i].blueprint, u.execs[i].version, e2.message);
    }
    rc = rt_start(e->rt, &wr, &u, err);
    store_unfinished_free(&u);
    store_close(wr);
    if (rc == 0) e->started = 1;
    return rc;
}

void cbm_engine_destroy(cbm_engine_t *e)
{
    if (e == NULL) return;
    rt_destroy(e->rt);
    store_close(e->rd);
    pgembed_stop(e->pg);
    uv_mutex_destroy(&e->rd_mu);
    free(e->url);
    free(e->state_dir);
    free(e);
}

/* Run a read under rd_mu, reconnecting once if the connection was lost. */
#define WITH_RD(e, rc, call)                                               \
    do {                                                                   \
        uv_mutex_lock(&(e)->rd_mu);                                        \
        (rc) = (call);                                                     \
        if ((rc) == CBM_EUNAVAIL && store_reconnect((e)->rd, NULL) == 0)   \
            (rc) = (call);                                                 \
        uv_mutex_unlock(&(e)->rd_mu);                                      \
    } while (0)

int cbm_engine_register_blueprint(cbm_engine_t *e, const char *json, char version_out[65],
                                  cbm_error_t *err)
{
    bp_blueprint_t *bp = NULL;
    int rc;

    if (e == NULL || json == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    if ((rc = bp_parse_json(json, strlen(json), &bp, err)) != 0) return rc;
    WITH_RD(e, rc, store_put_blueprint(e->rd, bp->name, bp->version, bp->canonical_json, err));
    if (rc != 0) {
        bp_destroy(bp);
        return rc;
    }
    if (version_out != NULL) memcpy(version_out, bp->version, 65);
    rt_add_blueprint(e->rt, &bp, 1);
    return 0;
}

int cbm_execution_start_many(cbm_engine_t *e, const char *blueprint, const char *const *inputs,
                             size_t n, char (*ids)[37], cbm_error_t *err)
{
    const bp_blueprint_t *bp;
    char **norm;
    int rc = 0;

    if (e == NULL || blueprint == NULL || ids == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    uv_mutex_lock(&e->rd_mu);
    bp = load_blueprint(e, blueprint, NULL, 1, err);
    uv_mutex_unlock(&e->rd_mu);
    if (bp == NULL) {
        if (err != NULL && err->code == CBM_ENOTFOUND)
            return cbm_error_set(err, CBM_ENOTFOUND, "no blueprint named '%s'", blueprint);
        return err != NULL && err->code != 0 ? err->code : CBM_ENOTFOUND;
    }
    if ((rc = rt_check_handlers(e->rt, bp, err)) != 0) return rc;
    if ((norm = calloc(n ? n : 1, sizeof(*norm))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *text = inputs != NULL && inputs[i] != NULL ? inputs[i] : "{}";
        cJSON *j = cJSON_Parse(text);
        uuid_t u;
        if (j == NULL)
            rc = cbm_error_set(err, CBM_EJSON, "inputs are not valid JSON (near byte %ld)",
                               (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - text : 0));
        else if (!cJSON_IsObject(j))
            rc = cbm_error_set(err, CBM_EINVAL, "inputs must be a JSON object");
        else if ((norm[i] = cJSON_PrintUnformatted(j)) == NULL)
            rc = cbm_error_set(err, CBM_ENOMEM, "out of memory");
        cJSON_Delete(j);
        uuid_generate_random(u);
        uuid_unparse_lower(u, ids[i]);
    }
    if (rc == 0) rc = rt_start_executions(e->rt, bp, norm, n, ids, err);
    for (size_t i = 0; i < n; i++) free(norm[i]);
    free(norm);
    return rc;
}

int cbm_execution_start(cbm_engine_t *e, const char *blueprint, const char *inputs_json,
                        char id_out[37], cbm_error_t *err)
{
    const char *in[1] = {inputs_json};
    return cbm_execution_start_many(e, blueprint, in, 1, (char(*)[37])id_out, err);
}

static int info_from(store_execution_t *x, cbm_execution_info_t *info)
{
    memcpy(info->id, x->id, sizeof(info->id));
    info->blueprint = x->blueprint;
    info->version = x->version;
    info->status = x->status;
    info->inputs = x->inputs;
    info->result = x->result;
    info->error = x->error;
    info->last_seq = x->last_seq;
    info->created_at_us = x->created_at_us;
    info->updated_at_us = x->updated_at_us;
    x->blueprint = x->version = x->status = x->inputs = x->result = x->error = NULL;
    return 0;
}

static void info_clear(cbm_execution_info_t *info)
{
    free(info->blueprint);
    free(info->version);
    free(info->status);
    free(info->inputs);
    free(info->result);
    free(info->error);
}

void cbm_execution_info_free(cbm_execution_info_t *info)
{
    if (info == NULL) return;
    info_clear(info);
    free(info);
}

void cbm_execution_infos_free(cbm_execution_info_t *infos, size_t n)
{
    if (infos == NULL) return;
    for (size_t i = 0; i < n; i++) info_clear(&infos[i]);
    free(infos);
}

int cbm_execution_get(cbm_engine_t *e, const char *id, cbm_execution_info_t **out,
                      cbm_error_t *err)
{
    store_execution_t *x = NULL;
    cbm_execution_info_t *info;
    int rc;

    if (e == NULL || id == NULL || out == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    WITH_RD(e, rc, store_get_execution(e->rd, id, &x, err));
    if (rc != 0) return rc;
    if ((info = calloc(1, sizeof(*info))) == NULL) {
        store_executions_free(x, 1);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    info_from(x, info);
    store_executions_free(x, 1);
    *out = info;
    return 0;
}

static int is_terminal(const char *status)
{
    return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

int cbm_execution_wait(cbm_engine_t *e, const char *id, int timeout_ms,
                       cbm_execution_info_t **out, cbm_error_t *err)
{
    int64_t deadline = timeout_ms < 0 ? -1 : clock_mono_us() + (int64_t)timeout_ms * 1000;
    rt_waiter_t *w;
    int rc;

    if (e == NULL || id == NULL || out == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    /* Register first, then look: a completion between the two is not missed. */
    if ((w = rt_wait_begin(e->rt, id)) == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    for (;;) {
        if ((rc = cbm_execution_get(e, id, out, err)) != 0) break;
        if (is_terminal((*out)->status)) break;
        cbm_execution_info_free(*out);
        *out = NULL;
        /* Wake at least every second: another process may finish it. */
        {
            int64_t step = clock_mono_us() + 1000000;
            int64_t until = deadline < 0 || step < deadline ? step : deadline;
            rt_wait_until(e->rt, w, until);
        }
        if (deadline >= 0 && clock_mono_us() >= deadline) {
            if ((rc = cbm_execution_get(e, id, out, err)) != 0) break;
            if (is_terminal((*out)->status)) break;
            cbm_execution_info_free(*out);
            *out = NULL;
            rc = cbm_error_set(err, CBM_ETIMEDOUT, "execution %s still running after %d ms", id,
                               timeout_ms);
            break;
        }
    }
    rt_wait_end(e->rt, w);
    return rc;
}

int cbm_execution_history(cbm_engine_t *e, const char *id, int64_t from_seq, cbm_event_t **events,
                          size_t *n, cbm_error_t *err)
{
    store_event_t *ev = NULL;
    size_t m = 0;
    cbm_event_t *out;
    int rc;

    if (e == NULL || id == NULL || events == NULL || n == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    WITH_RD(e, rc, store_read_history(e->rd, id, from_seq, &ev, &m, err));
    if (rc != 0) return rc;
    if ((out = calloc(m ? m : 1, sizeof(*out))) == NULL) {
        store_events_free(ev, m);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m; i++) {
        out[i].seq = ev[i].seq;
        out[i].type = ev[i].type;
        out[i].payload = ev[i].payload;
        out[i].recorded_at_us = ev[i].recorded_at_us;
        ev[i].type = ev[i].payload = NULL;
    }
    store_events_free(ev, m);
    *events = out;
    *n = m;
    return 0;
}

void cbm_events_free(cbm_event_t *events, size_t n)
{
    if (events == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(events[i].type);
        free(events[i].payload);
    }
    free(events);
}

int cbm_execution_list(cbm_engine_t *e, const cbm_list_opts_t *opts, cbm_execution_info_t **out,
                       size_t *n, cbm_error_t *err)
{
    store_list_filter_t f = {0};
    store_execution_t *x = NULL;
    size_t m = 0;
    cbm_execution_info_t *infos;
    int rc;

    if (e == NULL || out == NULL || n == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    if (opts != NULL) {
        f.status = opts->status;
        f.blueprint = opts->blueprint;
        f.after_id = opts->after;
        f.limit = opts->limit;
    }
    WITH_RD(e, rc, store_list_executions(e->rd, &f, &x, &m, err));
    if (rc != 0) return rc;
    if ((infos = calloc(m ? m : 1, sizeof(*infos))) == NULL) {
        store_executions_free(x, m);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m; i++) info_from(&x[i], &infos[i]);
    store_executions_free(x, m);
    *out = infos;
    *n = m;
    return 0;
}

void cbm_engine_get_stats(cbm_engine_t *e, cbm_engine_stats_t *out)
{
    if (e == NULL || out == NULL) return;
    rt_get_stats(e->rt, out);
}

/* Internal, for tests (declared in tests): live state of an execution. */
char *cbm__debug_state_json(cbm_engine_t *e, const char *id);
char *cbm__debug_state_json(cbm_engine_t *e, const char *id)
{
    return rt_debug_state_json(e->rt, id);
}
