/*
 * worker_service.c - WorkerService and ListWorkers (worker_service.h).
 *
 * Loop thread: every handler, the worker registry, parked polls, timers.
 * Thread pool: every store call (claims, heartbeats, unclaims, the expiry
 * scan) and every engine call (results), each on a connection taken from a
 * small pool. A job that outlives its call (client gone) still finishes;
 * a task claimed for a poll that is gone is given back (unclaimed).
 */
#include "ws_internal.h"
#include "http.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cbm_internal.h"
#include "engine/step_out.h"
#include "engine_remote.h"
#include "workflow_service.h"
#include "store/store.h"

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- store pool (any thread) ----------------------------------------------- */

static store_t *pool_get(wsvc_t *ws, int *slot)
{
    uv_mutex_lock(&ws->pool_mu);
    while (ws->nfree == 0) uv_cond_wait(&ws->pool_cv, &ws->pool_mu);
    *slot = --ws->nfree;
    store_t *s = ws->pool[*slot];
    ws->pool[*slot] = NULL;
    uv_mutex_unlock(&ws->pool_mu);
    if (!store_ok(s) && store_reconnect(s, NULL) == 0) store_tasks_relaxed(s, NULL);
    return s;
}

static void pool_put(wsvc_t *ws, store_t *s)
{
    uv_mutex_lock(&ws->pool_mu);
    ws->pool[ws->nfree++] = s;
    uv_cond_signal(&ws->pool_cv);
    uv_mutex_unlock(&ws->pool_mu);
}

/* ---- jobs -------------------------------------------------------------------- */

static void job_work(uv_work_t *req)
{
    wjob_t *j = req->data;
    int slot;
    store_t *s;
    if (j->no_store) {
        /* Engine calls only: the connections stay free for claims. */
        j->work(j, NULL);
        return;
    }
    s = pool_get(j->ws, &slot);
    j->work(j, s);
    pool_put(j->ws, s);
}

void job_free(wjob_t *j)
{
    store_claimed_clear(&j->task);
    free(j->ids);
    if (j->tids != NULL)
        for (size_t i = 0; i < j->nids; i++) free(j->tids[i]);
    free(j->tids);
    free(j->held);
    free(j->worker_id);
    free(j->execution_id);
    free(j->step);
    cbm__step_out_free(j->out);
    store_tasks_free(j->expired, j->nexpired);
    free(j);
}

static void job_after(uv_work_t *req, int status)
{
    wjob_t *j = req->data;
    svc_t *svc = j->ws->svc;
    if (status != 0 && j->rc == 0) j->rc = CBM_ESHUTDOWN;
    j->done(j);
    job_free(j);
    svc_job_end(svc);
}

static void on_job_call_gone(rpc_call_t *call, void *data)
{
    wjob_t *j = data;
    (void)call;
    j->call = NULL;
}

wjob_t *job_new(wsvc_t *ws, wjob_fn work, wjob_done done)
{
    wjob_t *j = calloc(1, sizeof(*j));
    if (j == NULL) return NULL;
    j->req.data = j;
    j->ws = ws;
    j->work = work;
    j->done = done;
    return j;
}

/* j is in flight for call (NULL: none): the server's stop waits for it, and
 * a call that goes away first is forgotten. */
static void job_hold(wjob_t *j, rpc_call_t *call)
{
    j->call = call;
    if (call != NULL) rpc_call_on_cancel(call, on_job_call_gone, j);
    svc_job_begin(j->ws->svc);
}

/* Queue j; with call, the call is answered by done (or forgotten if it goes
 * away first). On failure j is freed and call answered. */
int job_queue(wjob_t *j, rpc_call_t *call)
{
    int rc = uv_queue_work(j->ws->loop, &j->req, job_work, job_after);
    if (rc != 0) {
        if (call != NULL)
            rpc_call_fail(call, GRPC_STATUS_INTERNAL, "cannot queue the work: %s", uv_strerror(rc));
        job_free(j);
        return -1;
    }
    job_hold(j, call);
    return 0;
}

/* A held job (job_hold) run on the pool after all; on failure it is done. */
static void job_requeue(wjob_t *j)
{
    int rc = uv_queue_work(j->ws->loop, &j->req, job_work, job_after);
    if (rc != 0) {
        j->rc = cbm_error_set(&j->err, CBM_EIO, "cannot queue the work: %s", uv_strerror(rc));
        svc_t *svc = j->ws->svc;
        j->done(j);
        job_free(j);
        svc_job_end(svc);
    }
}

static void fail_call(rpc_call_t *call, int rc, const cbm_error_t *err)
{
    svc_fail(call, rc, err != NULL ? err->message : NULL);
}

/* ---- registry ------------------------------------------------------------------ */

worker_t *worker_find(wsvc_t *ws, const char *id)
{
    for (worker_t *w = ws->workers; w != NULL; w = w->next)
        if (strcmp(w->id, id) == 0) return w;
    return NULL;
}

void strv_free(char **v, size_t n)
{
    if (v == NULL) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void worker_free(worker_t *w)
{
    free(w->id);
    strv_free(w->queues, w->nqueues);
    strv_free(w->capk, w->ncaps);
    strv_free(w->capv, w->ncaps);
    free(w->caps_json);
    free(w->sdk);
    free(w);
}

bool worker_serves(const worker_t *w, const char *queue)
{
    for (size_t i = 0; i < w->nqueues; i++)
        if (strcmp(w->queues[i], queue) == 0) return true;
    return false;
}

char **strv_dup(char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++)
        if ((out[i] = strdup(v[i])) == NULL) {
            strv_free(out, i);
            return NULL;
        }
    return out;
}

static sticky_t *sticky_slot(wsvc_t *ws, const char *execution_id)
{
    return &ws->sticky[cbm_hash_str(execution_id) % STICKY_BUCKETS];
}

const char *sticky_worker(wsvc_t *ws, const char *execution_id)
{
    sticky_t *e = sticky_slot(ws, execution_id);
    return strcmp(e->execution_id, execution_id) == 0 ? e->worker_id : NULL;
}

static void sticky_set(wsvc_t *ws, const char *execution_id, const char *worker_id)
{
    sticky_t *e = sticky_slot(ws, execution_id);
    if (strlen(execution_id) != 36 || strlen(worker_id) >= sizeof(e->worker_id)) return;
    memcpy(e->execution_id, execution_id, 37);
    snprintf(e->worker_id, sizeof(e->worker_id), "%s", worker_id);
}

/* A name as the protocol allows it: non-empty, printable, not too long. */
static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

static void on_register(rpc_call_t *call, const Cerebelum__V1__RegisterWorkerRequest *rq,
                        wsvc_t *ws)
{
    Cerebelum__V1__RegisterWorkerResponse rp = CEREBELUM__V1__REGISTER_WORKER_RESPONSE__INIT;
    worker_t *w, *old;
    cJSON *caps;

    if (!name_ok(rq->worker_id, 127)) {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                      "worker_id is required (1 to 127 printable bytes)");
        return;
    }
    if (rq->n_queues == 0) {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "queues: at least one queue is required");
        return;
    }
    for (size_t i = 0; i < rq->n_queues; i++)
        if (!name_ok(rq->queues[i], 128) || strcmp(rq->queues[i], "local") == 0) {
            rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                          "queues[%zu]: '%.64s' is not a remote queue name", i, rq->queues[i]);
            return;
        }
    if ((w = calloc(1, sizeof(*w))) == NULL || (caps = cJSON_CreateObject()) == NULL) {
        free(w);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->id = strdup(rq->worker_id);
    w->queues = strv_dup(rq->queues, rq->n_queues);
    w->nqueues = rq->n_queues;
    w->capk = calloc(rq->n_capabilities + 1, sizeof(char *));
    w->capv = calloc(rq->n_capabilities + 1, sizeof(char *));
    w->sdk = strdup(rq->sdk_version);
    for (size_t i = 0; w->capk != NULL && w->capv != NULL && i < rq->n_capabilities; i++) {
        w->capk[i] = strdup(rq->capabilities[i]->key);
        w->capv[i] = strdup(rq->capabilities[i]->value);
        w->ncaps++;
        cJSON_DeleteItemFromObjectCaseSensitive(caps, rq->capabilities[i]->key);
        cJSON_AddStringToObject(caps, rq->capabilities[i]->key, rq->capabilities[i]->value);
    }
    w->caps_json = cJSON_PrintUnformatted(caps);
    cJSON_Delete(caps);
    w->max_concurrency = rq->max_concurrency ? rq->max_concurrency : 1;
    w->registered_ms = w->last_seen_ms = now_ms();
    if (w->id == NULL || w->queues == NULL || w->capk == NULL || w->capv == NULL ||
        w->sdk == NULL || w->caps_json == NULL) {
        worker_free(w);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    /* Registering again replaces the entry (same id: a restarted worker). */
    if ((old = worker_find(ws, w->id)) != NULL) {
        w->registered_ms = old->registered_ms;
        w->active = old->active;
        for (worker_t **p = &ws->workers; *p != NULL; p = &(*p)->next)
            if (*p == old) {
                *p = old->next;
                break;
            }
        worker_free(old);
    }
    w->next = ws->workers;
    ws->workers = w;
    rp.heartbeat_interval_ms = (uint32_t)(ws->lease_ms / 3);
    rp.max_wait_ms = MAX_WAIT_MS;
    rpc_call_reply(call, &rp.base);
}

/* ---- heartbeats ------------------------------------------------------------------ */

static void heartbeat_work(wjob_t *j, store_t *s)
{
    j->rc = store_task_heartbeat(s, j->worker_id, j->ids, j->nids, j->ws->lease_ms, &j->held,
                                 &j->nheld, &j->err);
}

static void heartbeat_done(wjob_t *j)
{
    Cerebelum__V1__HeartbeatResponse rp = CEREBELUM__V1__HEARTBEAT_RESPONSE__INIT;
    char **cancel;
    size_t nc = 0;

    if (j->call == NULL) return;
    if (j->rc != 0) {
        fail_call(j->call, j->rc, &j->err);
        return;
    }
    cancel = calloc(j->nids + 1, sizeof(*cancel));
    if (cancel == NULL) {
        rpc_call_fail(j->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < j->nids; i++) {
        bool held = false;
        for (size_t k = 0; k < j->nheld && !held; k++) held = j->held[k] == j->ids[i];
        if (!held) cancel[nc++] = j->tids[i];
    }
    rp.lease_extension_ms = (uint32_t)j->ws->lease_ms;
    rp.n_cancel_task_ids = nc;
    rp.cancel_task_ids = cancel;
    rpc_call_reply(j->call, &rp.base);
    free(cancel);
}

static void on_heartbeat(rpc_call_t *call, const Cerebelum__V1__HeartbeatRequest *rq, wsvc_t *ws)
{
    Cerebelum__V1__HeartbeatResponse rp = CEREBELUM__V1__HEARTBEAT_RESPONSE__INIT;
    worker_t *w;
    wjob_t *j;

    if (rq->worker_id[0] == '\0') {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "worker_id is required");
        return;
    }
    if ((w = worker_find(ws, rq->worker_id)) == NULL) {
        rp.unknown_worker = 1;
        rpc_call_reply(call, &rp.base);
        return;
    }
    w->last_seen_ms = now_ms();
    if (rq->n_task_ids == 0) {
        rp.lease_extension_ms = (uint32_t)ws->lease_ms;
        rpc_call_reply(call, &rp.base);
        return;
    }
    if ((j = job_new(ws, heartbeat_work, heartbeat_done)) == NULL ||
        (j->ids = calloc(rq->n_task_ids, sizeof(*j->ids))) == NULL ||
        (j->tids = calloc(rq->n_task_ids, sizeof(*j->tids))) == NULL ||
        (j->worker_id = strdup(rq->worker_id)) == NULL) {
        if (j != NULL) job_free(j);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < rq->n_task_ids; i++) {
        char *end;
        j->tids[j->nids] = strdup(rq->task_ids[i]);
        if (j->tids[j->nids] == NULL) break;
        /* An id that is not ours names no task: it is in cancel. */
        j->ids[j->nids] = strtoll(rq->task_ids[i], &end, 10);
        if (end == rq->task_ids[i] || *end != ':') j->ids[j->nids] = -1;
        j->nids++;
    }
    job_queue(j, call);
}

/* ---- results --------------------------------------------------------------------- */

/* The engine may be loading the execution: try again a few times. */
static int engine_result(wjob_t *j, int from_worker)
{
    int rc = CBM_EUNAVAIL;
    for (int i = 0; i < 40 && rc == CBM_EUNAVAIL; i++) {
        if (i > 0) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        rc = cbm__engine_task_result(j->ws->engine, j->execution_id, j->step, j->attempt, j->out,
                                     from_worker, &j->accepted, j->reason, sizeof(j->reason),
                                     &j->err);
    }
    return rc;
}

static void result_work(wjob_t *j, store_t *s)
{
    (void)s;
    j->rc = engine_result(j, 1);
}

static void result_done(wjob_t *j)
{
    Cerebelum__V1__SubmitResultResponse rp = CEREBELUM__V1__SUBMIT_RESULT_RESPONSE__INIT;
    worker_t *w = worker_find(j->ws, j->worker_id);

    if (j->rc == 0 && w != NULL && w->active > 0) w->active--;
    if (j->call == NULL) return;
    if (j->rc != 0) {
        fail_call(j->call, j->rc, &j->err);
        return;
    }
    rp.accepted = j->accepted != 0;
    rp.ignored_reason = j->accepted ? (char *)"" : j->reason;
    rpc_call_reply(j->call, &rp.base);
}

/* Engine thread: the outcome is decided (or could not be, here). */
static void result_decided(void *arg, int rc, int accepted, const char *reason)
{
    wjob_t *j = arg;
    j->rc = rc;
    j->accepted = accepted;
    snprintf(j->reason, sizeof(j->reason), "%s", reason != NULL ? reason : "");
    cbm_mailbox_post(&j->ws->results, &j->mail);
}

/* Server loop: answer the SubmitResults the engine decided. One it could not
 * decide in memory (an execution the store no longer holds as unfinished,
 * or one dropped meanwhile) goes to the pool, where cbm__engine_task_result
 * reads the store for the reason or tries again. */
static void on_results(cbm_mailbox_t *mb, cbm_mail_t *mail)
{
    (void)mb;
    while (mail != NULL) {
        wjob_t *j = CBM_MAIL_OWNER(mail, wjob_t, mail);
        svc_t *svc = j->ws->svc;
        mail = mail->next;
        if (j->rc == CBM_ENOTFOUND || j->rc == CBM_EUNAVAIL || j->rc == CBM_ECONFLICT) {
            j->rc = 0;
            job_requeue(j);
            continue;
        }
        if (j->rc != 0) cbm_error_set(&j->err, j->rc, "%s", cbm_strerror(j->rc));
        result_done(j);
        job_free(j);
        svc_job_end(svc);
    }
}

/* task_id "<row>:<execution>:<attempt>:<step>" -> its parts. */
static int parse_task_id(const char *tid, char exec[37], int *attempt, const char **step)
{
    const char *a = strchr(tid, ':'), *b, *c;
    char *end;
    long v;
    if (a == NULL || (b = strchr(a + 1, ':')) == NULL || b - a - 1 != 36 ||
        (c = strchr(b + 1, ':')) == NULL || c[1] == '\0')
        return -1;
    memcpy(exec, a + 1, 36);
    exec[36] = '\0';
    v = strtol(b + 1, &end, 10);
    if (end != c || v < 1 || v > 1000000000) return -1;
    *attempt = (int)v;
    *step = c + 1;
    return 0;
}

static void on_submit(rpc_call_t *call, const Cerebelum__V1__SubmitResultRequest *rq, wsvc_t *ws)
{
    char exec[37];
    const char *step;
    int attempt, rc = 0;
    wjob_t *j;
    cbm_step_out_t *out;

    if (rq->worker_id[0] == '\0' || rq->task_id[0] == '\0') {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "worker_id and task_id are required");
        return;
    }
    if (parse_task_id(rq->task_id, exec, &attempt, &step) != 0) {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "task_id '%.80s' is not a task id",
                      rq->task_id);
        return;
    }
    if (rq->attempt != 0 && (int)rq->attempt != attempt) {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                      "attempt %u does not match task_id's attempt %d", rq->attempt, attempt);
        return;
    }
    if ((out = cbm__step_out_new()) == NULL) {
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    switch (rq->status) {
    case CEREBELUM__V1__TASK_STATUS__SUCCESS:
    {
        /* Refused with the reason (not JSON, \u0000), never recorded. */
        cbm_error_t e2 = {0};
        rc = outcome_ok_checked(out, rq->result_json[0] ? rq->result_json : "null",
                                "result_json", &e2);
        if (rc != 0) {
            rpc_call_fail(call, rc == CBM_ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                                 : GRPC_STATUS_INVALID_ARGUMENT,
                          "%s", e2.message);
            goto bad;
        }
        break;
    }
    case CEREBELUM__V1__TASK_STATUS__FAILED:
        if (rq->error == NULL || rq->error->kind[0] == '\0') {
            rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "FAILED needs error.kind");
            goto bad;
        }
        if (rq->error->retryable && rq->error->retry_after_ms > 0)
            rc = cbm_step_fail_after(out, rq->error->kind, rq->error->message,
                                     rq->error->retry_after_ms > INT64_MAX
                                         ? INT64_MAX
                                         : (int64_t)rq->error->retry_after_ms);
        else
            rc = cbm_step_fail(out, rq->error->kind, rq->error->message, rq->error->retryable);
        break;
    case CEREBELUM__V1__TASK_STATUS__SLEEP:
        if (rq->sleep == NULL) {
            rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "SLEEP needs sleep");
            goto bad;
        }
        rc = cbm_step_sleep(out, rq->sleep->data_json[0] ? rq->sleep->data_json : "null",
                            rq->sleep->duration_ms > INT64_MAX ? INT64_MAX
                                                               : (int64_t)rq->sleep->duration_ms);
        if (rc != 0) {
            rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                          "sleep: data_json must be JSON and duration_ms at most 10 years");
            goto bad;
        }
        break;
    case CEREBELUM__V1__TASK_STATUS__APPROVAL:
        if (rq->approval == NULL) {
            rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "APPROVAL needs approval");
            goto bad;
        }
        rc = cbm_step_approval(out, rq->approval->type,
                               rq->approval->data_json[0] ? rq->approval->data_json : "null",
                               rq->approval->timeout_ms > INT64_MAX
                                   ? INT64_MAX
                                   : (int64_t)rq->approval->timeout_ms);
        if (rc != 0) {
            rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                          "approval: data_json must be JSON and timeout_ms at most 10 years");
            goto bad;
        }
        break;
    default:
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                      "status must be SUCCESS, FAILED, SLEEP or APPROVAL");
        goto bad;
    }
    if (rc != 0) {
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto bad;
    }
    if ((j = job_new(ws, result_work, result_done)) == NULL ||
        (j->worker_id = strdup(rq->worker_id)) == NULL ||
        (j->execution_id = strdup(exec)) == NULL || (j->step = strdup(step)) == NULL) {
        if (j != NULL) job_free(j);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto bad;
    }
    j->attempt = attempt;
    j->out = out;
    j->no_store = 1;
    /* The next step of this execution may be committed (and its task
     * offered to parked polls) before this call returns: prefer this worker
     * from now on. */
    sticky_set(ws, exec, rq->worker_id);
    /* Into the engine's inbox; answered from the commit (result_decided),
     * with no thread waiting. */
    job_hold(j, call);
    if (cbm__engine_task_result_async(ws->engine, exec, step, attempt, out, 1, result_decided, j) !=
        0)
        job_requeue(j); /* the blocking way, which reports the error */
    return;
bad:
    cbm__step_out_free(out);
}

/* ---- leases that ran out, workers that left -------------------------------------- */

/* Fail each attempt in j->expired with kind `kind`, through the engine. */
static void fail_expired(wjob_t *j, const char *kind, const char *why)
{
    for (size_t i = 0; i < j->nexpired; i++) {
        store_task_t *t = &j->expired[i];
        char msg[200];
        int rc;
        free(j->execution_id);
        free(j->step);
        cbm__step_out_free(j->out);
        j->execution_id = strdup(t->execution_id);
        j->step = strdup(t->step);
        j->out = cbm__step_out_new();
        j->attempt = t->attempt;
        if (j->execution_id == NULL || j->step == NULL || j->out == NULL) continue;
        snprintf(msg, sizeof(msg), "%s (queue %s, attempt %d)", why, t->queue, t->attempt);
        cbm_step_fail(j->out, kind, msg, true);
        rc = engine_result(j, 0);
        if (rc != 0)
            cbm_log_warn("serve: failing task %s/%s#%d (%s): %s; the scan tries again",
                         t->execution_id, t->step, t->attempt, kind, j->err.message);
        else
            cbm_log_info("serve: %s/%s#%d: %s%s%s", t->execution_id, t->step, t->attempt, kind,
                         j->accepted ? "" : ", ignored: ", j->accepted ? "" : j->reason);
    }
}

static void reap_work(wjob_t *j, store_t *s)
{
    if (!j->ws->graced) {
        size_t n = 0;
        if ((j->rc = store_task_grace(s, j->ws->lease_ms, GRACE_EXTRA_MS, &n, &j->err)) != 0)
            return;
        j->ws->graced = 1; /* read on the loop only after this job is done */
        if (n > 0)
            cbm_log_info("serve: %zu leases held across the restart run one more lease", n);
    }
    j->rc = store_task_expired(s, NULL, REAP_LIMIT, &j->expired, &j->nexpired, &j->err);
    if (j->rc == 0) {
        atomic_fetch_add(&j->ws->leases_expired, j->nexpired);
        fail_expired(j, "lease_expired", "the worker's lease ran out");
    }
}

static void reap_done(wjob_t *j)
{
    j->ws->reaping = 0;
    if (j->rc != 0 && j->rc != CBM_ESHUTDOWN)
        cbm_log_warn("serve: lease expiry scan failed: %s", j->err.message);
}

static void on_reap(uv_timer_t *t)
{
    wsvc_t *ws = t->data;
    wjob_t *j;
    if (ws->reaping || ws->draining) return;
    if ((j = job_new(ws, reap_work, reap_done)) == NULL) return;
    ws->reaping = 1;
    if (job_queue(j, NULL) != 0) ws->reaping = 0;
}

static void release_work(wjob_t *j, store_t *s)
{
    j->rc = store_task_expired(s, j->worker_id, 0, &j->expired, &j->nexpired, &j->err);
    if (j->rc == 0) {
        j->released = (uint32_t)j->nexpired;
        fail_expired(j, "worker_left", "the worker unregistered");
    }
}

static void release_done(wjob_t *j)
{
    Cerebelum__V1__UnregisterWorkerResponse rp = CEREBELUM__V1__UNREGISTER_WORKER_RESPONSE__INIT;
    if (j->call == NULL) return;
    if (j->rc != 0) {
        fail_call(j->call, j->rc, &j->err);
        return;
    }
    rp.released_tasks = j->released;
    rpc_call_reply(j->call, &rp.base);
}

static void on_unregister(rpc_call_t *call, const Cerebelum__V1__UnregisterWorkerRequest *rq,
                          wsvc_t *ws)
{
    worker_t *w;
    poll_t *p, *next;
    wjob_t *j;

    if (rq->worker_id[0] == '\0') {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "worker_id is required");
        return;
    }
    if ((w = worker_find(ws, rq->worker_id)) != NULL) {
        for (worker_t **pp = &ws->workers; *pp != NULL; pp = &(*pp)->next)
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        worker_free(w);
    }
    for (p = ws->polls; p != NULL; p = next) {
        next = p->next;
        if (p->parked && strcmp(p->worker_id, rq->worker_id) == 0) poll_answer_empty(p);
    }
    if ((j = job_new(ws, release_work, release_done)) == NULL ||
        (j->worker_id = strdup(rq->worker_id)) == NULL) {
        if (j != NULL) job_free(j);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    job_queue(j, call);
}

uint64_t wsvc_leases_expired(wsvc_t *ws)
{
    return atomic_load(&ws->leases_expired);
}

/* ---- ListWorkers ------------------------------------------------------------------ */

static void on_list_workers(rpc_call_t *call, const Cerebelum__V1__ListWorkersRequest *rq,
                            wsvc_t *ws)
{
    Cerebelum__V1__ListWorkersResponse rp = CEREBELUM__V1__LIST_WORKERS_RESPONSE__INIT;
    Cerebelum__V1__Worker *msgs, **ptrs;
    Cerebelum__V1__Worker__CapabilitiesEntry *caps, **capp;
    size_t n = 0, ncap = 0, k = 0, c = 0;
    int64_t now = now_ms();

    for (worker_t *w = ws->workers; w != NULL; w = w->next)
        if (rq->queue[0] == '\0' || worker_serves(w, rq->queue)) {
            n++;
            ncap += w->ncaps;
        }
    msgs = calloc(n + 1, sizeof(*msgs));
    ptrs = calloc(n + 1, sizeof(*ptrs));
    caps = calloc(ncap + 1, sizeof(*caps));
    capp = calloc(ncap + 1, sizeof(*capp));
    if (msgs == NULL || ptrs == NULL || caps == NULL || capp == NULL) {
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto done;
    }
    for (worker_t *w = ws->workers; w != NULL; w = w->next) {
        Cerebelum__V1__Worker init = CEREBELUM__V1__WORKER__INIT;
        Cerebelum__V1__Worker *m = &msgs[k];
        if (rq->queue[0] != '\0' && !worker_serves(w, rq->queue)) continue;
        *m = init;
        m->worker_id = w->id;
        m->n_queues = w->nqueues;
        m->queues = w->queues;
        m->capabilities = &capp[c];
        for (size_t i = 0; i < w->ncaps; i++) {
            Cerebelum__V1__Worker__CapabilitiesEntry e =
                CEREBELUM__V1__WORKER__CAPABILITIES_ENTRY__INIT;
            caps[c] = e;
            caps[c].key = w->capk[i];
            caps[c].value = w->capv[i];
            capp[c] = &caps[c];
            c++;
        }
        m->n_capabilities = w->ncaps;
        m->max_concurrency = w->max_concurrency;
        m->active_tasks = w->active;
        m->registered_at_ms = w->registered_ms;
        m->last_seen_at_ms = w->last_seen_ms;
        m->alive = now - w->last_seen_ms <= 3 * (ws->lease_ms / 3) + MAX_WAIT_MS;
        m->sdk_version = w->sdk;
        ptrs[k++] = m;
    }
    rp.n_workers = k;
    rp.workers = ptrs;
    rpc_call_reply(call, &rp.base);
done:
    free(msgs);
    free(ptrs);
    free(caps);
    free(capp);
}

/* ---- dispatch, lifecycle ------------------------------------------------------------ */

static void on_call(rpc_call_t *call, const ProtobufCMessage *request, void *user_data)
{
    svc_t *svc = user_data;
    wsvc_t *ws = svc->ws;

    if (svc->draining || ws->draining) {
        rpc_call_fail(call, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
        return;
    }
    switch (rpc_call_method(call)) {
    case RPC_REGISTER_WORKER: on_register(call, (const void *)request, ws); break;
    case RPC_POLL_TASK: on_poll(call, (const void *)request, ws); break;
    case RPC_HEARTBEAT: on_heartbeat(call, (const void *)request, ws); break;
    case RPC_SUBMIT_RESULT: on_submit(call, (const void *)request, ws); break;
    case RPC_UNREGISTER_WORKER: on_unregister(call, (const void *)request, ws); break;
    case RPC_LIST_WORKERS: on_list_workers(call, (const void *)request, ws); break;
    default: rpc_call_fail(call, GRPC_STATUS_UNIMPLEMENTED, "method not served"); break;
    }
}

int wsvc_create(uv_loop_t *loop, cbm_engine_t *engine, svc_t *svc, const wsvc_opts_t *o,
                wsvc_t **out, cbm_error_t *err)
{
    wsvc_t *ws = calloc(1, sizeof(*ws));
    const char *env = getenv("CEREBELUM_LEASE_MS");

    if (ws == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    ws->loop = loop;
    ws->engine = engine;
    ws->svc = svc;
    ws->lease_ms = o != NULL && o->lease_ms > 0 ? o->lease_ms : DEFAULT_LEASE_MS;
    if ((o == NULL || o->lease_ms <= 0) && env != NULL && atoll(env) > 0) ws->lease_ms = atoll(env);
    ws->npool = o != NULL && o->pool > 0 ? o->pool : 4;
    if ((ws->pool = calloc((size_t)ws->npool, sizeof(*ws->pool))) == NULL) {
        free(ws);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    if (cbm_mailbox_init(&ws->notes, loop, on_notify, ws) != 0) {
        free(ws->pool);
        free(ws);
        return cbm_error_set(err, CBM_ENOMEM, "cannot create the task notes' mailbox");
    }
    if (cbm_mailbox_init(&ws->results, loop, on_results, ws) != 0) {
        cbm_mailbox_close(&ws->notes, NULL);
        uv_run(loop, UV_RUN_NOWAIT); /* its close callback */
        cbm_mailbox_finish(&ws->notes);
        free(ws->pool);
        free(ws);
        return cbm_error_set(err, CBM_ENOMEM, "cannot create the results' mailbox");
    }
    uv_mutex_init(&ws->pool_mu);
    uv_cond_init(&ws->pool_cv);
    uv_timer_init(loop, &ws->reap_timer);
    uv_timer_init(loop, &ws->sweep_timer);
    ws->reap_timer.data = ws->sweep_timer.data = ws;
    cbm__engine_set_tasks_hook(engine, on_engine_task, ws);
    svc->ws = ws;
    *out = ws;
    return 0;
}

int wsvc_start(wsvc_t *ws, cbm_error_t *err)
{
    const char *url = cbm__engine_url(ws->engine);
    int rc;
    if (url == NULL) return cbm_error_set(err, CBM_ESTATE, "the engine is not started");
    for (int i = 0; i < ws->npool; i++) {
        if ((rc = store_open(url, &ws->pool[i], err)) != 0) return rc;
        if ((rc = store_tasks_relaxed(ws->pool[i], err)) != 0) return rc;
        ws->nfree++;
    }
    ws->started = 1;
    uv_timer_start(&ws->reap_timer, on_reap, REAP_MS, REAP_MS);
    uv_timer_start(&ws->sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
    return 0;
}

void wsvc_install(wsvc_t *ws, rpc_server_options_t *opts)
{
    (void)ws;
    opts->handlers[RPC_REGISTER_WORKER] = on_call;
    opts->handlers[RPC_POLL_TASK] = on_call;
    opts->handlers[RPC_HEARTBEAT] = on_call;
    opts->handlers[RPC_SUBMIT_RESULT] = on_call;
    opts->handlers[RPC_UNREGISTER_WORKER] = on_call;
    opts->handlers[RPC_LIST_WORKERS] = on_call;
}

void wsvc_drain(wsvc_t *ws)
{
    poll_t *p, *next;
    if (ws == NULL || ws->draining) return;
    ws->draining = 1;
    uv_timer_stop(&ws->reap_timer);
    uv_timer_stop(&ws->sweep_timer);
    for (p = ws->polls; p != NULL; p = next) {
        next = p->next;
        if (!p->claiming) poll_answer_empty(p); /* else when its claim ends */
    }
}

void wsvc_close(wsvc_t *ws)
{
    if (ws == NULL) return;
    wsvc_drain(ws);
    /* Engine hooks may still fire until the engine stops; after this they
     * only queue notes, freed by wsvc_destroy. */
    cbm_mailbox_close(&ws->notes, NULL);
    /* Every SubmitResult was answered (the server closes once none is in
     * flight): nothing more comes here. */
    cbm_mailbox_close(&ws->results, NULL);
    uv_close((uv_handle_t *)&ws->reap_timer, NULL);
    uv_close((uv_handle_t *)&ws->sweep_timer, NULL);
}

void wsvc_destroy(wsvc_t *ws)
{
    cbm_mail_t *m;
    if (ws == NULL) return;
    while (ws->workers != NULL) {
        worker_t *w = ws->workers;
        ws->workers = w->next;
        worker_free(w);
    }
    for (m = cbm_mailbox_take(&ws->notes); m != NULL;) {
        note_t *n = CBM_MAIL_OWNER(m, note_t, mail);
        m = m->next;
        free(n->queue);
        free(n->step);
        free(n);
    }
    for (int i = 0; i < ws->nfree; i++) store_close(ws->pool[i]);
    free(ws->pool);
    uv_mutex_destroy(&ws->pool_mu);
    uv_cond_destroy(&ws->pool_cv);
    cbm_mailbox_finish(&ws->notes);
    cbm_mailbox_finish(&ws->results);
    free(ws);
}
