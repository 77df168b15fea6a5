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
#include "engine/decision.h"
#include "engine/event.h"
#include "engine/json_text.h"
#include "engine/lease.h"
#include "engine/runtime.h"
#include "engine/runtime_internal.h"
#include "engine/state.h"
#include "engine_internal.h"
#include "engine_impl.h"
#include "engine/metrics.h"
#include "engine_remote.h"
#include "pgembed.h"
#include "scheduler/clock.h"
#include "store/store.h"

/* struct cbm_engine: engine_impl.h */

static void lm_poke_cb(void *arg)
{
    lm_poke(arg);
}

/* How long a starting engine waits for another's lock before taking it for
 * alive: a killed engine's session ends within milliseconds on a local
 * socket. */
#define FENCE_GRACE_MS 1000

/* An id that is not a UUID names no execution: CBM_ENOTFOUND, as for any
 * unknown id (cerebelum.h), never a store error. */
int eng_known_id(const char *id, cbm_error_t *err)
{
    uuid_t u;
    if (id == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL execution id");
    if (uuid_parse(id, u) != 0) {
        char shown[64];
        snprintf(shown, sizeof(shown), "%s", id);
        return cbm_error_set(err, CBM_ENOTFOUND, "execution %s not found", shown);
    }
    return 0;
}

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
    e->lease_ms = opts->lease_ms;
    if (e->lease_ms <= 0 && getenv("CEREBELUM_SHARD_LEASE_MS") != NULL)
        e->lease_ms = atoll(getenv("CEREBELUM_SHARD_LEASE_MS"));
    if (e->lease_ms <= 0) e->lease_ms = 5000;
    if (e->lease_ms < 100) e->lease_ms = 100;
    uv_mutex_init(&e->rd_mu);
    ro.max_batch = opts->max_batch;
    ro.client_only = opts->client_only;
    e->client_only = opts->client_only;
    if ((e->url == NULL && e->state_dir == NULL) || rt_create(&e->rt, &ro) != 0) {
        cbm_engine_destroy(e);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    *out = e;
    return 0;
}

int cbm_engine_register_step(cbm_engine_t *e, const char *name, cbm_step_fn fn, void *arg)
{
    if (e == NULL || name == NULL || fn == NULL || *name == '\0') return CBM_EINVAL;
    if (cbm_str_check(name, "handler name", NULL) != 0) return CBM_EINVAL;
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
const bp_blueprint_t *eng_load_blueprint(cbm_engine_t *e, const char *name,
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

/*
 * An engine that runs executions is an incarnation (store.h, "Engines and
 * fencing"): register it, then fence every dead one, waiting out a commit
 * of theirs still in PostgreSQL, before anything is read. Only then is the
 * set of unfinished executions final: a dead engine's late commit has
 * either landed already or can never land. Takes *life (the connection
 * that holds the incarnation's lock).
 */
static int start_incarnation(cbm_engine_t *e, store_t **life, cbm_error_t *err)
{
    int64_t key = 0;
    size_t fenced = 0;
    int rc;

    store_set_role(*life, "life");
    if ((rc = store_engine_register(*life, e->engine_id, &key, err)) != 0 ||
        (rc = store_engine_fence_dead(*life, e->engine_id, FENCE_GRACE_MS, &fenced, err)) != 0) {
        store_close(*life);
        *life = NULL;
        e->engine_id[0] = '\0';
        return rc;
    }
    rt_set_life(e->rt, life, e->engine_id, key);
    return 0;
}

/* A connection opened on a thread of its own while the start does other
 * work: each costs PostgreSQL a backend start, tens of milliseconds on a
 * busy server, and a start needs four. */
typedef struct opener {
    cbm_engine_t *e;
    store_t *s;
    int rc;
    int running;
    cbm_error_t err;
    uv_thread_t thread;
} opener_t;

static void opener_main(void *arg)
{
    opener_t *o = arg;
    o->rc = open_store(o->e, &o->s, &o->err);
}

static void opener_start(opener_t *o, cbm_engine_t *e)
{
    memset(o, 0, sizeof(*o));
    o->e = e;
    o->running = uv_thread_create(&o->thread, opener_main, o) == 0;
    if (!o->running) opener_main(o); /* no thread: open it here */
}

/* Wait for the connection; on success *out takes it. */
static int opener_take(opener_t *o, store_t **out, cbm_error_t *err)
{
    if (o->running) uv_thread_join(&o->thread);
    o->running = 0;
    if (o->rc != 0) {
        if (err != NULL) *err = o->err;
        return o->rc;
    }
    *out = o->s;
    o->s = NULL;
    return 0;
}

int cbm_engine_start(cbm_engine_t *e, cbm_error_t *err)
{
    enum { LIFE, COMMITTER, READER, LEASES, WAKES, NOPEN };
    opener_t open[NOPEN];
    store_t *life = NULL, *wr = NULL, *rdl = NULL, *ls = NULL, *wk = NULL;
    store_unfinished_t u = {0};
    int rc, nopen = 0;
    char threads[16];

    if (e == NULL) return CBM_EINVAL;
    if (e->started) return cbm_error_set(err, CBM_ESTATE, "engine already started");
    /* libuv sizes its pool on first use; respect a value the user set. */
    snprintf(threads, sizeof(threads), "%d", e->threads);
    setenv("UV_THREADPOOL_SIZE", threads, 0);
    if (e->url == NULL) {
        if ((rc = pgembed_start(e->state_dir, &e->pg, &e->url, err)) != 0) return rc;
    }
    /* The other connections open while this one migrates (a client-only
     * engine has no incarnation, so no life connection). */
    memset(open, 0, sizeof(open));
    for (; nopen < NOPEN; nopen++)
        if ((nopen != LIFE && nopen != LEASES && nopen != WAKES) || !e->client_only)
            opener_start(&open[nopen], e);
    if ((rc = open_store(e, &e->rd, err)) != 0 || (rc = store_migrate(e->rd, err)) != 0)
        goto out;
    store_set_role(e->rd, "reads");
    if (!e->client_only && ((rc = opener_take(&open[LIFE], &life, err)) != 0 ||
                            (rc = start_incarnation(e, &life, err)) != 0))
        goto out;
    if ((rc = opener_take(&open[COMMITTER], &wr, err)) != 0) goto out;
    store_set_role(wr, "committer");
    store_set_fence(wr, e->engine_id[0] != '\0' ? e->engine_id : NULL);
    /* An engine runs the executions of the shards it leases (docs/
     * architecture.md, "Shards"): nothing is read here; the lease manager's
     * first round, once the loop runs, takes shards and the loop reads
     * their running executions. What waits is brought in by its timer (the
     * window the loop reads as time advances) or by a decision. */
    if (!e->client_only) {
        int nshards = 0;
        if ((rc = store_shard_count(e->rd, &nshards, err)) != 0) goto out;
        if ((rc = rt_shards_init(e->rt, nshards)) != 0) {
            rc = cbm_error_set(err, rc, "out of memory");
            goto out;
        }
        if ((rc = opener_take(&open[LEASES], &ls, err)) != 0) goto out;
        store_set_role(ls, "leases");
        if ((rc = lm_create(&e->lm, e->rt, &ls, e->engine_id, nshards, e->lease_ms)) != 0) {
            rc = cbm_error_set(err, rc, "out of memory");
            goto out;
        }
        rt_set_on_fenced(e->rt, lm_poke_cb, e->lm);
    }
    for (size_t i = 0; i < u.nexecs; i++) {
        cbm_error_t e2;
        if (eng_load_blueprint(e, u.execs[i].blueprint, u.execs[i].version, 0, &e2) == NULL)
            cbm_log_error("execution %s: cannot load blueprint %s/%s: %s", u.execs[i].id,
                          u.execs[i].blueprint, u.execs[i].version, e2.message);
    }
    if ((rc = opener_take(&open[READER], &rdl, err)) == 0) rc = rt_start(e->rt, &wr, &rdl, &u, err);
    if (rc == 0 && e->lm != NULL) {
        /* The first round now: a lone engine holds every shard (and is
         * reading their running executions) when its start returns. */
        cbm_error_t e2 = {0};
        if (lm_round(e->lm, &e2) != 0)
            cbm_log_warn("engine %s: first lease round: %s (retried)", e->engine_id, e2.message);
        if (lm_start(e->lm) != 0) rc = cbm_error_set(err, CBM_ENOMEM, "cannot start the lease manager");
        /* Wake-ups from other processes (NOTIFY cbm_wake) on a connection
         * of their own; the 1 s refill stays the safety net. */
        if (rc == 0 && (rc = opener_take(&open[WAKES], &wk, err)) == 0) {
            store_set_role(wk, "wake-ups");
            if (lm_listen(e->lm, &wk) != 0)
                rc = cbm_error_set(err, CBM_ENOMEM, "cannot start the wake-up listener");
        }
    }
out:
    for (int i = 0; i < nopen; i++) {
        store_t *s = NULL;
        if (opener_take(&open[i], &s, NULL) == 0) store_close(s);
    }
    store_unfinished_free(&u);
    store_close(life);
    store_close(wr);
    store_close(rdl);
    store_close(ls);
    store_close(wk);
    if (rc == 0) e->started = 1;
    return rc;
}

void cbm_engine_destroy(cbm_engine_t *e)
{
    if (e == NULL) return;
    /* No lease round after this; the loop drains and commits what it has,
     * the incarnation is unregistered, then the shards are given up so the
     * other engines take them at their next round. */
    lm_stop(e->lm);
    rt_destroy(e->rt);
    if (e->started) lm_release_all(e->lm);
    lm_destroy(e->lm);
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

typedef struct engines_read {
    store_engine_row_t *rows;
    size_t n;
} engines_read_t;

static int read_engines(store_t *s, void *arg, cbm_error_t *err)
{
    engines_read_t *r = arg;
    return store_engines_list(s, &r->rows, &r->n, err);
}

int cbm_engine_list_engines(cbm_engine_t *e, cbm_engine_info_t **out, size_t *n, cbm_error_t *err)
{
    engines_read_t r = {0};
    int rc;

    if (out == NULL || n == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL out");
    *out = NULL;
    *n = 0;
    if ((rc = cbm__engine_read(e, read_engines, &r, err)) != 0) return rc;
    if (r.n > 0 && (*out = calloc(r.n, sizeof(**out))) == NULL) {
        store_engine_rows_free(r.rows, r.n);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < r.n; i++) {
        cbm_engine_info_t *x = &(*out)[i];
        memcpy(x->id, r.rows[i].id, sizeof(x->id));
        x->host = r.rows[i].host; /* taken */
        x->shards = r.rows[i].shards;
        r.rows[i].host = r.rows[i].shards = NULL;
        x->pid = r.rows[i].pid;
        x->started_at_us = r.rows[i].started_at_us;
        x->seen_ms_ago = r.rows[i].seen_ms_ago;
        x->nshards = r.rows[i].nshards;
    }
    *n = r.n;
    store_engine_rows_free(r.rows, r.n);
    return 0;
}

void cbm_engine_infos_free(cbm_engine_info_t *info, size_t n)
{
    if (info == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(info[i].host);
        free(info[i].shards);
    }
    free(info);
}

int cbm__engine_read(cbm_engine_t *e, cbm__read_fn fn, void *arg, cbm_error_t *err)
{
    int rc;
    if (e == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL engine");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    WITH_RD(e, rc, fn(e->rd, arg, err));
    return rc;
}

/* cbm__engine_state's work, under rd_mu. */
static int state_of(cbm_engine_t *e, const char *id, char **json, cbm_error_t *err)
{
    store_execution_t *x = NULL;
    store_event_t *evs = NULL;
    size_t n = 0;
    const bp_blueprint_t *bp;
    st_exec_t st;
    int rc = store_load_execution(e->rd, id, &x, &evs, &n, err);

    if (rc != 0) return rc;
    if ((bp = eng_load_blueprint(e, x->blueprint, x->version, 0, err)) == NULL) {
        rc = err != NULL && err->code ? err->code : CBM_ENOTFOUND;
    } else {
        rc = dec_fold(&st, x->id, bp, x->snapshot, evs, n, err);
        if (rc == 0 && (*json = st_to_json(&st)) == NULL)
            rc = cbm_error_set(err, CBM_ENOMEM, "out of memory");
        st_finish(&st);
    }
    store_executions_free(x, 1);
    store_events_free(evs, n);
    return rc;
}

int cbm__engine_state(cbm_engine_t *e, const char *id, char **json, cbm_error_t *err)
{
    int rc;
    *json = NULL;
    if (e == NULL || id == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    if ((rc = eng_known_id(id, err)) != 0) return rc;
    WITH_RD(e, rc, state_of(e, id, json, err));
    return rc;
}

int cbm_engine_put_blueprint(cbm_engine_t *e, const char *json, char version_out[65],
                             bool *created, cbm_error_t *err)
{
    bp_blueprint_t *bp = NULL;
    bool inserted = false;
    int rc;

    if (created != NULL) *created = false;
    if (e == NULL || json == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    if ((rc = bp_parse_json(json, strlen(json), &bp, err)) != 0) return rc;
    WITH_RD(e, rc, store_put_blueprint(e->rd, bp->name, bp->version, bp->canonical_json,
                                       &inserted, err));
    if (rc != 0) {
        bp_destroy(bp);
        return rc;
    }
    if (version_out != NULL) memcpy(version_out, bp->version, 65);
    if (created != NULL) *created = inserted;
    /* Which version is the latest is the store's word (starts ask it); the
     * runtime's copy is only a cache of parsed versions. */
    rt_add_blueprint(e->rt, &bp, inserted);
    return 0;
}

int cbm_engine_register_blueprint(cbm_engine_t *e, const char *json, char version_out[65],
                                  cbm_error_t *err)
{
    return cbm_engine_put_blueprint(e, json, version_out, NULL, err);
}

/*
 * The blueprint a start runs: the version named, or the latest one the
 * STORE knows (not this process's memory: another process may have
 * registered a newer version), parsed once and kept in the runtime.
 */
static const bp_blueprint_t *start_blueprint(cbm_engine_t *e, const char *name,
                                             const char *version, cbm_error_t *err)
{
    const bp_blueprint_t *bp = NULL;
    char *latest = NULL;
    int rc = 0;

    uv_mutex_lock(&e->rd_mu);
    if (version == NULL) {
        rc = store_get_blueprint(e->rd, name, NULL, &latest, NULL, err);
        if (rc == CBM_EUNAVAIL && store_reconnect(e->rd, NULL) == 0)
            rc = store_get_blueprint(e->rd, name, NULL, &latest, NULL, err);
        version = latest;
    }
    if (rc == 0) bp = eng_load_blueprint(e, name, version, 0, err);
    uv_mutex_unlock(&e->rd_mu);
    if (bp == NULL && err != NULL && err->code == CBM_ENOTFOUND) {
        if (latest == NULL && version != NULL)
            cbm_error_set(err, CBM_ENOTFOUND, "blueprint '%s' has no version %s", name, version);
        else
            cbm_error_set(err, CBM_ENOTFOUND, "no blueprint named '%s'", name);
    }
    free(latest);
    return bp;
}

/* Start n executions; keys and codes as rt_start_executions says. */
static int start_common(cbm_engine_t *e, const char *blueprint, const char *version,
                        const char *const *inputs, const char *const *keys, size_t n,
                        char (*ids)[37], int *codes, cbm_error_t *err)
{
    const bp_blueprint_t *bp;
    char **norm;
    int rc = 0;

    if (e == NULL || blueprint == NULL || ids == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    if ((rc = cbm_str_check(blueprint, "blueprint", err)) != 0 ||
        (rc = cbm_str_check(version, "version", err)) != 0)
        return rc;
    if ((bp = start_blueprint(e, blueprint, version, err)) == NULL)
        return err != NULL && err->code != 0 ? err->code : CBM_ENOTFOUND;
    if (!e->client_only && (rc = rt_check_handlers(e->rt, bp, err)) != 0) return rc;
    if ((norm = calloc(n ? n : 1, sizeof(*norm))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *text = inputs != NULL && inputs[i] != NULL ? inputs[i] : "{}";
        uuid_t u;
        /* A JSON object; checked against the blueprint's input declarations
         * (if it has any), with their defaults filled in. */
        rc = bp_check_inputs(bp, text, &norm[i], err);
        uuid_generate_random(u);
        uuid_unparse_lower(u, ids[i]);
    }
    if (rc == 0) rc = rt_start_executions(e->rt, bp, norm, keys, n, ids, codes, err);
    for (size_t i = 0; i < n; i++) cJSON_free(norm[i]);
    free(norm);
    return rc;
}

int cbm_execution_start_many(cbm_engine_t *e, const char *blueprint, const char *const *inputs,
                             size_t n, char (*ids)[37], cbm_error_t *err)
{
    return start_common(e, blueprint, NULL, inputs, NULL, n, ids, NULL, err);
}

int cbm_execution_start(cbm_engine_t *e, const char *blueprint, const char *inputs_json,
                        char id_out[37], cbm_error_t *err)
{
    const char *in[1] = {inputs_json};
    return start_common(e, blueprint, NULL, in, NULL, 1, (char(*)[37])id_out, NULL, err);
}

/* The execution of blueprint holding key: 0 with its id, CBM_ENOTFOUND. */
static int find_by_key(cbm_engine_t *e, const char *blueprint, const char *key, char id_out[37],
                       cbm_error_t *err)
{
    store_execution_t *x = NULL;
    int rc;

    WITH_RD(e, rc, store_find_by_key(e->rd, blueprint, key, &x, err));
    if (rc == 0) memcpy(id_out, x->id, 37);
    store_executions_free(x, x != NULL ? 1 : 0);
    return rc;
}

#define MAX_KEY_BYTES 256

int cbm_execution_start_opts(cbm_engine_t *e, const char *blueprint, const char *inputs_json,
                             const cbm_start_opts_t *opts, char id_out[37], bool *created,
                             cbm_error_t *err)
{
    static const cbm_start_opts_t none = {0};
    const char *in[1] = {inputs_json}, *key;
    int code = 0, rc;

    if (created != NULL) *created = false;
    if (opts == NULL) opts = &none;
    key = opts->idempotency_key;
    if (e == NULL || blueprint == NULL || id_out == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    if (key != NULL && (key[0] == '\0' || strlen(key) > MAX_KEY_BYTES))
        return cbm_error_set(err, CBM_EINVAL, "idempotency key must be 1 to %d bytes, not %zu",
                             MAX_KEY_BYTES, strlen(key));
    if ((rc = cbm_str_check(key, "idempotency key", err)) != 0) return rc;
    if (opts->version != NULL && opts->version[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "empty version (NULL means the latest)");
    /* The common repeat (a retry after a lost reply) needs no start at all. */
    if (key != NULL) {
        rc = find_by_key(e, blueprint, key, id_out, err);
        if (rc != CBM_ENOTFOUND) return rc; /* 0: found, or a store failure */
        cbm_error_clear(err);
    }
    rc = start_common(e, blueprint, opts->version, in, key != NULL ? &key : NULL, 1,
                      (char(*)[37])id_out, &code, err);
    if (rc != 0) return rc;
    if (code == CBM_EEXIST) {
        /* A concurrent start with this key committed first: it is ours. */
        rc = find_by_key(e, blueprint, key, id_out, err);
        if (rc == CBM_ENOTFOUND) /* keys are never released: a bug or a hand edit */
            return cbm_error_set(err, CBM_ESTORE, "idempotency key '%s' was taken, but no "
                                                  "execution holds it now", key);
        return rc;
    }
    if (created != NULL) *created = true;
    return 0;
}

/* For the NATS triggers (engine_internal.h): n keyed starts of one
 * blueprint in one call: the blueprint's version resolved once, no read of
 * the keys first (a trigger's message is new far more often than it is
 * redelivered), the starts committed together; a key taken already
 * (CBM_EEXIST from the unique index) is then looked up. */
int cbm__execution_start_keyed(cbm_engine_t *e, const char *blueprint, const char *const *inputs,
                               const char *const *keys, size_t n, char (*ids)[37], bool *created,
                               cbm_error_t *err)
{
    int *codes;
    int rc;

    if (e == NULL || blueprint == NULL || keys == NULL || ids == NULL || created == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    for (size_t i = 0; i < n; i++) {
        created[i] = false;
        if (keys[i] == NULL || keys[i][0] == '\0' || strlen(keys[i]) > MAX_KEY_BYTES)
            return cbm_error_set(err, CBM_EINVAL, "idempotency key must be 1 to %d bytes",
                                 MAX_KEY_BYTES);
        if ((rc = cbm_str_check(keys[i], "idempotency key", err)) != 0) return rc;
    }
    if (n == 0) return 0;
    if ((codes = calloc(n, sizeof(*codes))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    rc = start_common(e, blueprint, NULL, inputs, keys, n, ids, codes, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (codes[i] != CBM_EEXIST) {
            created[i] = true;
            continue;
        }
        /* Started before (a redelivery), or by a concurrent start. */
        rc = find_by_key(e, blueprint, keys[i], ids[i], err);
        if (rc == CBM_ENOTFOUND)
            rc = cbm_error_set(err, CBM_ESTORE, "idempotency key '%s' was taken, but no "
                                                "execution holds it now", keys[i]);
    }
    free(codes);
    return rc;
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
    info->idempotency_key = x->idempotency_key;
    x->blueprint = x->version = x->status = x->inputs = x->result = x->error = NULL;
    x->idempotency_key = NULL;
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
    free(info->idempotency_key);
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
    if ((rc = eng_known_id(id, err)) != 0) return rc;
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
    if ((rc = eng_known_id(id, err)) != 0) return rc;
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
    if ((rc = eng_known_id(id, err)) != 0) return rc;
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
        f.newest_first = opts->newest_first;
    }
    if ((rc = cbm_str_check(f.status, "status", err)) != 0 ||
        (rc = cbm_str_check(f.blueprint, "blueprint", err)) != 0)
        return rc;
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

void cbm__engine_metrics(cbm_engine_t *e, cbm_engine_stats_t *stats, cbm_metrics_snap_t *m)
{
    rt_get_stats(e->rt, stats);
    rt_get_metrics(e->rt, m);
}

int cbm__engine_ping(cbm_engine_t *e, int timeout_ms)
{
    if (e == NULL || e->rt == NULL) return CBM_EINVAL;
    return rt_ping(e->rt, timeout_ms);
}

/* Internal, for tests (declared in tests): live state of an execution. */
char *cbm__debug_state_json(cbm_engine_t *e, const char *id);
char *cbm__debug_state_json(cbm_engine_t *e, const char *id)
{
    return rt_debug_state_json(e->rt, id);
}

/* Internal, for tests (declared in tests): the engine's clock, before
 * cbm_engine_start (decisions made outside the loop keep the system's). */
void cbm__set_clock(cbm_engine_t *e, const cbm_clock_t *clock);
void cbm__set_clock(cbm_engine_t *e, const cbm_clock_t *clock)
{
    rt_set_clock(e->rt, clock);
}

/* ---------------------------------------------------------- remote tasks */

void cbm__engine_set_tasks_hook(cbm_engine_t *e, rt_tasks_fn fn, void *arg)
{
    rt_set_tasks_hook(e->rt, fn, arg);
}

void cbm__engine_clear_tasks_hook(cbm_engine_t *e)
{
    rt_clear_tasks_hook(e->rt);
}

const char *cbm__engine_url(cbm_engine_t *e)
{
    return e->started ? e->url : NULL;
}

cbm_step_out_t *cbm__step_out_new(void)
{
    return calloc(1, sizeof(struct cbm_step_out));
}

void cbm__step_out_free(cbm_step_out_t *out)
{
    if (out == NULL) return;
    free(out->result);
    free(out->error);
    free(out->type);
    free(out);
}

int cbm__engine_task_result(cbm_engine_t *e, const char *id, const char *step, int attempt,
                            cbm_step_out_t *out, int from_worker, int *accepted, char *reason,
                            size_t cap, cbm_error_t *err)
{
    store_execution_t *x = NULL;
    int rc;

    *accepted = 0;
    if (reason != NULL && cap > 0) reason[0] = '\0';
    if (!e->started) return cbm_error_set(err, CBM_ESTATE, "engine not started");
    {
        /* The runtime takes the outcome's strings; keep *out whole, so the
         * caller can try again with it. */
        struct cbm_step_out copy = *out;
        copy.result = cbm_strdup(out->result);
        copy.error = cbm_strdup(out->error);
        copy.type = cbm_strdup(out->type);
        if ((out->result != NULL && copy.result == NULL) ||
            (out->error != NULL && copy.error == NULL) || (out->type != NULL && copy.type == NULL))
            rc = CBM_ENOMEM;
        else
            rc = rt_task_result(e->rt, id, step, attempt, &copy, from_worker, accepted, reason,
                                cap);
        free(copy.result);
        free(copy.error);
        free(copy.type);
    }
    if (rc != CBM_ENOTFOUND) {
        if (rc != 0)
            return cbm_error_set(err, rc, "execution %s, step %s: %s", id, step, cbm_strerror(rc));
        return 0;
    }
    /* Not in memory: finished, unknown, or to be loaded. */
    WITH_RD(e, rc, store_get_execution(e->rd, id, &x, err));
    if (rc == CBM_ENOTFOUND || rc == CBM_EINVAL) {
        snprintf(reason, cap, "unknown execution");
        cbm_error_clear(err);
        return 0;
    }
    if (rc != 0) return rc;
    if (is_terminal(x->status)) {
        snprintf(reason, cap, "execution %s", x->status);
        store_executions_free(x, 1);
        return 0;
    }
    store_executions_free(x, 1);
    rt_refresh(e->rt, id);
    return cbm_error_set(err, CBM_EUNAVAIL, "execution %s is being loaded; try again", id);
}

int cbm__engine_task_result_async(cbm_engine_t *e, const char *id, const char *step, int attempt,
                                  const cbm_step_out_t *out, int from_worker, cbm__result_fn done,
                                  void *arg)
{
    if (!e->started) return CBM_ESTATE;
    return rt_task_result_async(e->rt, id, step, attempt, out, from_worker, done, arg);
}
