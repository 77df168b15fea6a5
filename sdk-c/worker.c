/*
 * worker.c - the remote worker of cerebelum/worker.h: WorkerService's client
 * side (docs/protocol.md).
 *
 * Threads, all plain blocking code (the worker has no event loop of its
 * own; the gRPC transport client is blocking and thread-safe):
 *   - N slot threads (N = concurrency). Each registers if needed, long-polls,
 *     runs the task's handler itself, and submits the outcome. So at most N
 *     handlers run at once and there is never a task without a thread.
 *   - one heartbeat thread: every min(heartbeat_interval_ms, lease_ms / 3)
 *     it sends the ids of the tasks running now, marks the ones the server
 *     lists in cancel_task_ids (their results are dropped), and registers
 *     again when the server answers unknown_worker.
 *
 * Two channels: polls go on their own, so that cbm_worker_stop() can cancel
 * every poll out (rpc_client_cancel_all) while handlers that are still
 * running submit their results on the other.
 *
 * Failures: a call that fails because the server is away is retried after
 * an exponential back-off with jitter (BACKOFF_MIN_MS doubling to
 * BACKOFF_MAX_MS, times 0.5 to 1.5), waited on the worker's condition so a
 * stop cuts it short. After a failed poll the worker registers again before
 * the next one: a server that restarted has forgotten it (its polls say
 * FAILED_PRECONDITION), and registering is idempotent.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <uuid/uuid.h>
#include <uv.h>

#include "cbm_internal.h"
#include "cerebelum/worker.h"
#include "engine/step_out.h" /* struct cbm_step_out, without the runtime */
#include "grpc_transport.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CALL_TIMEOUT_MS 10000
#define SUBMIT_GIVE_UP_MS 60000
#define SUBMIT_DRAIN_MS 10000
#define MAX_CONCURRENCY 256
#define SDK_VERSION "cerebelum-c/0.1.0"

typedef struct handler {
    char *name;
    cbm_step_fn fn;
    void *arg;
} handler_t;

/* A task being run (or its result submitted), on the worker's list. */
typedef struct running {
    cbm_cancel_slot_t slot;    /* first: cbm_step_on_cancel() lands here */
    cbm_worker_t *w;
    const char *task_id;       /* the Task's, which outlives this entry */
    int cancelled;             /* the server said stop: do not submit */
    cbm_cancel_fn cancel_fn;   /* the handler's, while it runs (under w->mu) */
    void *cancel_arg;
    struct running *prev, *next;
} running_t;

struct cbm_worker {
    /* options, copied */
    char *server, *token, *root_pem, *cert_pem, *key_pem, *server_name, *id;
    char **queues;
    size_t nqueues;
    char **cap_keys, **cap_vals;
    size_t ncaps;
    int concurrency, wait_ms;
    handler_t *handlers;
    size_t nhandlers;

    rpc_client_t *poll_rpc, *ctl_rpc;
    uv_thread_t *slots;
    uv_thread_t hb_thread;

    uv_mutex_t mu;             /* guards what follows */
    uv_cond_t cv;              /* stop, drain, task list changes */
    int started, stopping, slots_done, drained, registered_once;
    running_t *running;
    int64_t hb_interval_ms, min_lease_ms, max_wait_ms;

    uv_mutex_t reg_mu;         /* one RegisterWorker at a time */
    atomic_int registered;     /* the server knows us (as far as we know) */

    atomic_uint_fast64_t st_registrations, st_tasks, st_submitted, st_ignored, st_cancelled,
        st_heartbeats, st_errors;
};

/* ---------------------------------------------------------------- helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep a back-off step (with jitter); doubles *backoff. A stop cuts the
 * sleep short, unless even_stopping: a submit retried during the drain
 * must still pause between tries, or it would spin against a dead server. */
static void backoff_wait(cbm_worker_t *w, int *backoff, unsigned *seed, int even_stopping)
{
    int64_t ms = *backoff / 2 + (int64_t)(rand_r(seed) % (unsigned)(*backoff + 1));
    int64_t until = now_ms() + ms;
    uv_mutex_lock(&w->mu);
    while ((even_stopping || !w->stopping) && now_ms() < until)
        uv_cond_timedwait(&w->cv, &w->mu, (uint64_t)(until - now_ms()) * 1000000u);
    uv_mutex_unlock(&w->mu);
    *backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
}

static int stopping(cbm_worker_t *w)
{
    int s;
    uv_mutex_lock(&w->mu);
    s = w->stopping;
    uv_mutex_unlock(&w->mu);
    return s;
}

/* protobuf-c holds non-const char pointers for strings it only reads. */
#define STR(s) ((char *)(uintptr_t)((s) != NULL ? (s) : ""))

static const handler_t *find_handler(const cbm_worker_t *w, const char *name)
{
    for (size_t i = 0; i < w->nhandlers; i++)
        if (strcmp(w->handlers[i].name, name) == 0) return &w->handlers[i];
    return NULL;
}

/* ------------------------------------------------------------ registration */

static int do_register(cbm_worker_t *w)
{
    Cerebelum__V1__RegisterWorkerRequest req = CEREBELUM__V1__REGISTER_WORKER_REQUEST__INIT;
    Cerebelum__V1__RegisterWorkerResponse *rep = NULL;
    Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry *ents = NULL, **pents = NULL;
    rpc_status_t st = {0};
    int rc;

    req.worker_id = w->id;
    req.queues = w->queues;
    req.n_queues = w->nqueues;
    req.max_concurrency = (uint32_t)w->concurrency;
    req.sdk_version = STR(SDK_VERSION);
    if (w->ncaps > 0) {
        ents = calloc(w->ncaps, sizeof(*ents));
        pents = calloc(w->ncaps, sizeof(*pents));
        if (ents == NULL || pents == NULL) {
            free(ents);
            free(pents);
            return CBM_ENOMEM;
        }
        for (size_t i = 0; i < w->ncaps; i++) {
            Cerebelum__V1__RegisterWorkerRequest__CapabilitiesEntry e =
                CEREBELUM__V1__REGISTER_WORKER_REQUEST__CAPABILITIES_ENTRY__INIT;
            e.key = w->cap_keys[i];
            e.value = w->cap_vals[i];
            ents[i] = e;
            pents[i] = &ents[i];
        }
        req.capabilities = pents;
        req.n_capabilities = w->ncaps;
    }
    rc = rpc_client_call(w->ctl_rpc, RPC_REGISTER_WORKER, &req.base, (ProtobufCMessage **)&rep,
                         CALL_TIMEOUT_MS, &st);
    free(ents);
    free(pents);
    if (rc != 0) {
        atomic_fetch_add(&w->st_errors, 1);
        cbm_log_warn("worker %s: RegisterWorker: %s: %s", w->id, rpc_status_name(st.code),
                     st.message);
        return rc;
    }
    uv_mutex_lock(&w->mu);
    w->hb_interval_ms = rep->heartbeat_interval_ms > 0 ? rep->heartbeat_interval_ms : 10000;
    w->max_wait_ms = rep->max_wait_ms > 0 ? rep->max_wait_ms : 60000;
    w->registered_once = 1;
    uv_cond_broadcast(&w->cv); /* the heartbeat thread's interval changed */
    uv_mutex_unlock(&w->mu);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    atomic_store(&w->registered, 1);
    atomic_fetch_add(&w->st_registrations, 1);
    cbm_log_info("worker %s: registered", w->id);
    return 0;
}

/* Register unless registered: one thread calls, the others wait for it. */
static int ensure_registered(cbm_worker_t *w)
{
    int rc = 0;
    if (atomic_load(&w->registered)) return 0;
    uv_mutex_lock(&w->reg_mu);
    if (!atomic_load(&w->registered)) rc = do_register(w);
    uv_mutex_unlock(&w->reg_mu);
    return rc;
}

/* ---------------------------------------------------------------- results */

static void running_add(cbm_worker_t *w, running_t *r)
{
    uv_mutex_lock(&w->mu);
    r->prev = NULL;
    r->next = w->running;
    if (w->running != NULL) w->running->prev = r;
    w->running = r;
    uv_mutex_unlock(&w->mu);
}

/* Removes r; returns whether the server cancelled it meanwhile. */
static int running_remove(cbm_worker_t *w, running_t *r)
{
    int cancelled;
    uv_mutex_lock(&w->mu);
    if (r->prev != NULL) r->prev->next = r->next;
    else w->running = r->next;
    if (r->next != NULL) r->next->prev = r->prev;
    cancelled = r->cancelled;
    uv_mutex_unlock(&w->mu);
    return cancelled;
}

/* cbm_step_on_cancel() for a task of this worker. Called on the handler's
 * thread; a cancel that came first is passed on at once. */
static void cancel_set(cbm_cancel_slot_t *slot, cbm_cancel_fn fn, void *arg)
{
    running_t *r = (running_t *)slot;
    uv_mutex_lock(&r->w->mu);
    r->cancel_fn = fn;
    r->cancel_arg = arg;
    if (r->cancelled && fn != NULL) {
        r->cancel_fn = NULL;
        fn(arg);
    }
    uv_mutex_unlock(&r->w->mu);
}

/* The handler returned: its callback's argument may be gone. */
static void cancel_clear(cbm_worker_t *w, running_t *r)
{
    uv_mutex_lock(&w->mu);
    r->cancel_fn = NULL;
    uv_mutex_unlock(&w->mu);
}

/* Under w->mu: the server cancelled r. Its handler hears it once. */
static void cancel_mark(running_t *r)
{
    cbm_cancel_fn fn = r->cancel_fn;
    r->cancelled = 1;
    r->cancel_fn = NULL;
    if (fn != NULL) fn(r->cancel_arg);
}

static int is_cancelled(cbm_worker_t *w, running_t *r)
{
    int c;
    uv_mutex_lock(&w->mu);
    c = r->cancelled;
    uv_mutex_unlock(&w->mu);
    return c;
}

/* Fill req from the handler's outcome. Strings point into out or err_doc,
 * which must live until the request is sent. */
static void result_request(const Cerebelum__V1__Task *t, const struct cbm_step_out *out,
                           cJSON *err_doc, Cerebelum__V1__SubmitResultRequest *req,
                           Cerebelum__V1__TaskError *te, Cerebelum__V1__SleepRequest *sl,
                           Cerebelum__V1__ApprovalRequest *ap)
{
    req->task_id = t->task_id;
    req->attempt = t->attempt;
    switch (out->kind) {
    case CBM_OUT_OK:
        req->status = CEREBELUM__V1__TASK_STATUS__SUCCESS;
        req->result_json = STR(out->result);
        break;
    case CBM_OUT_SLEEP:
        req->status = CEREBELUM__V1__TASK_STATUS__SLEEP;
        sl->duration_ms = out->ms > 0 ? (uint64_t)out->ms : 0;
        sl->data_json = STR(out->result);
        req->sleep = sl;
        break;
    case CBM_OUT_APPROVAL:
        req->status = CEREBELUM__V1__TASK_STATUS__APPROVAL;
        ap->type = STR(out->type);
        ap->data_json = STR(out->result);
        ap->timeout_ms = out->ms > 0 ? (uint64_t)out->ms : 0;
        req->approval = ap;
        break;
    default: { /* CBM_OUT_FAILED (or NONE, which cannot reach here); cbm_step_fail's JSON {"kind","message","retryable"} */
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(err_doc, "kind");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(err_doc, "message"), *ra;
        req->status = CEREBELUM__V1__TASK_STATUS__FAILED;
        te->kind = STR(cJSON_IsString(k) ? k->valuestring : "error");
        te->message = STR(cJSON_IsString(m) ? m->valuestring : "");
        te->retryable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(err_doc, "retryable"));
        ra = cJSON_GetObjectItemCaseSensitive(err_doc, "retry_after_ms");
        if (te->retryable && cJSON_IsNumber(ra) && ra->valuedouble > 0)
            te->retry_after_ms = (uint64_t)ra->valuedouble;
        req->error = te;
        break;
    }
    }
}

/* Submit until the server answers, the server cancels the task, or it is
 * hopeless (a refusal, or SUBMIT_GIVE_UP_MS of failures). Returns 1 when the
 * server answered (accepted or ignored), else 0. */
static int submit(cbm_worker_t *w, const Cerebelum__V1__Task *t, running_t *r,
                   const struct cbm_step_out *out, unsigned *seed)
{
    Cerebelum__V1__SubmitResultRequest req = CEREBELUM__V1__SUBMIT_RESULT_REQUEST__INIT;
    Cerebelum__V1__TaskError te = CEREBELUM__V1__TASK_ERROR__INIT;
    Cerebelum__V1__SleepRequest sl = CEREBELUM__V1__SLEEP_REQUEST__INIT;
    Cerebelum__V1__ApprovalRequest ap = CEREBELUM__V1__APPROVAL_REQUEST__INIT;
    cJSON *err_doc = out->kind == CBM_OUT_FAILED ? cJSON_Parse(out->error) : NULL;
    int64_t give_up = now_ms() + SUBMIT_GIVE_UP_MS;
    int backoff = BACKOFF_MIN_MS, answered = 0;

    req.worker_id = w->id;
    result_request(t, out, err_doc, &req, &te, &sl, &ap);
    for (;;) {
        Cerebelum__V1__SubmitResultResponse *rep = NULL;
        rpc_status_t st = {0};
        int rc;

        if (is_cancelled(w, r)) break;
        rc = rpc_client_call(w->ctl_rpc, RPC_SUBMIT_RESULT, &req.base, (ProtobufCMessage **)&rep,
                             CALL_TIMEOUT_MS, &st);
        if (rc == 0) {
            if (rep->accepted) {
                atomic_fetch_add(&w->st_submitted, 1);
            } else {
                atomic_fetch_add(&w->st_ignored, 1);
                cbm_log_info("worker %s: result of %s/%s attempt %u ignored: %s", w->id,
                             t->execution_id, t->step, t->attempt, rep->ignored_reason);
            }
            protobuf_c_message_free_unpacked(&rep->base, NULL);
            answered = 1;
            break;
        }
        atomic_fetch_add(&w->st_errors, 1);
        if ((rc != CBM_EUNAVAIL && rc != CBM_ETIMEDOUT && rc != CBM_EIO) || now_ms() > give_up) {
            /* The lease will run out and the attempt fail as retryable. */
            cbm_log_error("worker %s: giving up submitting %s/%s attempt %u: %s: %s", w->id,
                          t->execution_id, t->step, t->attempt, rpc_status_name(st.code),
                          st.message);
            break;
        }
        /* A drain keeps trying (the result matters), but not for long: a
         * stop should not wait a minute for a server that is gone. */
        if (stopping(w) && give_up > now_ms() + SUBMIT_DRAIN_MS) give_up = now_ms() + SUBMIT_DRAIN_MS;
        backoff_wait(w, &backoff, seed, 1);
    }
    cJSON_Delete(err_doc);
    return answered;
}

static void run_task(cbm_worker_t *w, const Cerebelum__V1__Task *t, unsigned *seed)
{
    const char *hname = t->handler[0] != '\0' ? t->handler : t->step;
    const handler_t *h = find_handler(w, hname);
    struct cbm_step_out out = {0};
    cbm_step_call_t call;
    running_t r = {.slot.set = cancel_set, .w = w, .task_id = t->task_id};
    int answered = 0;

    atomic_fetch_add(&w->st_tasks, 1);
    running_add(w, &r);
    call.execution_id = t->execution_id;
    call.step = t->step;
    call.attempt = (int)t->attempt;
    call.input_json = t->input_json[0] != '\0' ? t->input_json : "null";
    if (h == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "worker %s has no handler '%s'", w->id, hname);
        cbm_step_fail(&out, "no_handler", msg, false);
    } else {
        out.cancel = &r.slot;
        h->fn(&call, &out, h->arg);
        cancel_clear(w, &r);
        out.cancel = NULL;
        if (out.kind == CBM_OUT_NONE) cbm_step_fail(&out, "no_result", "handler returned no outcome", false);
    }
    if (out.kind != CBM_OUT_NONE) answered = submit(w, t, &r, &out, seed);
    /* A heartbeat that raced the submit may name a task whose result the
     * server just took (its row is gone): only an unanswered result was
     * dropped. */
    if (running_remove(w, &r) && !answered) {
        atomic_fetch_add(&w->st_cancelled, 1);
        cbm_log_info("worker %s: %s/%s attempt %u cancelled by the server; result dropped",
                     w->id, t->execution_id, t->step, t->attempt);
    }
    free(out.result);
    free(out.error);
    free(out.type);
}

/* ------------------------------------------------------------------ slots */

static void slot_main(void *arg)
{
    cbm_worker_t *w = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed ^ (unsigned)now_ms();
    int backoff = BACKOFF_MIN_MS;

    while (!stopping(w)) {
        Cerebelum__V1__PollTaskRequest req = CEREBELUM__V1__POLL_TASK_REQUEST__INIT;
        Cerebelum__V1__Task *t = NULL;
        rpc_status_t st = {0};
        int64_t wait;
        int rc;

        if (ensure_registered(w) != 0) {
            backoff_wait(w, &backoff, &seed, 0);
            continue;
        }
        uv_mutex_lock(&w->mu);
        wait = w->wait_ms < w->max_wait_ms ? w->wait_ms : w->max_wait_ms;
        uv_mutex_unlock(&w->mu);
        req.worker_id = w->id;
        req.wait_ms = (uint32_t)wait;
        /* The server answers "empty" shortly before our deadline. */
        rc = rpc_client_call(w->poll_rpc, RPC_POLL_TASK, &req.base, (ProtobufCMessage **)&t,
                             wait + 5000, &st);
        if (rc != 0) {
            if (rc == CBM_ESHUTDOWN || stopping(w)) break; /* cancelled by a stop */
            atomic_fetch_add(&w->st_errors, 1);
            /* Not registered (a restarted server), or the server is away:
             * register again first, after a pause. */
            atomic_store(&w->registered, 0);
            cbm_log_warn("worker %s: PollTask: %s: %s", w->id, rpc_status_name(st.code),
                         st.message);
            backoff_wait(w, &backoff, &seed, 0);
            continue;
        }
        backoff = BACKOFF_MIN_MS;
        if (!t->empty) {
            uv_mutex_lock(&w->mu);
            if (t->lease_ms > 0 && (w->min_lease_ms == 0 || t->lease_ms < w->min_lease_ms)) {
                w->min_lease_ms = t->lease_ms;
                uv_cond_broadcast(&w->cv);
            }
            uv_mutex_unlock(&w->mu);
            /* Claimed for us: run it even if a stop came meanwhile. */
            run_task(w, t, &seed);
        }
        protobuf_c_message_free_unpacked(&t->base, NULL);
    }
}

/* -------------------------------------------------------------- heartbeat */

static void heartbeat_once(cbm_worker_t *w)
{
    Cerebelum__V1__HeartbeatRequest req = CEREBELUM__V1__HEARTBEAT_REQUEST__INIT;
    Cerebelum__V1__HeartbeatResponse *rep = NULL;
    rpc_status_t st = {0};
    char **ids = NULL;
    size_t n = 0;
    int rc;

    uv_mutex_lock(&w->mu);
    for (running_t *r = w->running; r != NULL; r = r->next) n++;
    if (n > 0 && (ids = calloc(n, sizeof(*ids))) != NULL) {
        size_t i = 0;
        for (running_t *r = w->running; r != NULL; r = r->next) ids[i++] = strdup(r->task_id);
    }
    uv_mutex_unlock(&w->mu);
    if (n > 0 && ids == NULL) return; /* out of memory: try next time */
    req.worker_id = w->id;
    req.task_ids = ids;
    req.n_task_ids = n;
    for (size_t i = 0; i < n; i++)
        if (ids[i] == NULL) req.n_task_ids = 0; /* OOM: a liveness ping only */
    rc = rpc_client_call(w->ctl_rpc, RPC_HEARTBEAT, &req.base, (ProtobufCMessage **)&rep,
                         CALL_TIMEOUT_MS, &st);
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    if (rc != 0) {
        atomic_fetch_add(&w->st_errors, 1);
        cbm_log_debug("worker %s: Heartbeat: %s: %s", w->id, rpc_status_name(st.code),
                      st.message);
        return;
    }
    atomic_fetch_add(&w->st_heartbeats, 1);
    if (rep->n_cancel_task_ids > 0) {
        uv_mutex_lock(&w->mu);
        for (size_t i = 0; i < rep->n_cancel_task_ids; i++)
            for (running_t *r = w->running; r != NULL; r = r->next)
                if (strcmp(r->task_id, rep->cancel_task_ids[i]) == 0 && !r->cancelled)
                    cancel_mark(r);
        uv_mutex_unlock(&w->mu);
    }
    if (rep->unknown_worker) {
        /* Slots busy with long handlers would not notice: register here. */
        cbm_log_info("worker %s: the server does not know this worker; registering again", w->id);
        atomic_store(&w->registered, 0);
        if (!stopping(w)) ensure_registered(w);
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
}

static void heartbeat_main(void *arg)
{
    cbm_worker_t *w = arg;

    uv_mutex_lock(&w->mu);
    while (!w->slots_done) {
        int64_t every = w->hb_interval_ms > 0 ? w->hb_interval_ms : 1000;
        if (w->min_lease_ms > 0 && w->min_lease_ms / 3 < every) every = w->min_lease_ms / 3;
        if (every < 50) every = 50;
        uv_cond_timedwait(&w->cv, &w->mu, (uint64_t)every * 1000000u);
        /* Woken early (a stop, a new interval): wait out the rest only if
         * nothing runs; with tasks running, an early beat does no harm. */
        if (w->slots_done) break;
        if (!w->registered_once) continue;
        uv_mutex_unlock(&w->mu);
        heartbeat_once(w);
        uv_mutex_lock(&w->mu);
    }
    uv_mutex_unlock(&w->mu);
}

/* -------------------------------------------------------------- lifecycle */

static char *dup_opt(const char *s, int *bad)
{
    char *d;
    if (s == NULL) return NULL;
    if ((d = strdup(s)) == NULL) *bad = 1;
    return d;
}

static void free_strv(char **v, size_t n)
{
    if (v == NULL) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void worker_free(cbm_worker_t *w)
{
    rpc_client_destroy(w->poll_rpc);
    rpc_client_destroy(w->ctl_rpc);
    free(w->server);
    free(w->token);
    free(w->root_pem);
    free(w->cert_pem);
    free(w->key_pem);
    free(w->server_name);
    free(w->id);
    free_strv(w->queues, w->nqueues);
    free_strv(w->cap_keys, w->ncaps);
    free_strv(w->cap_vals, w->ncaps);
    for (size_t i = 0; i < w->nhandlers; i++) free(w->handlers[i].name);
    free(w->handlers);
    free(w->slots);
    uv_mutex_destroy(&w->mu);
    uv_mutex_destroy(&w->reg_mu);
    uv_cond_destroy(&w->cv);
    free(w);
}

static char *default_id(void)
{
    char host[128] = "worker", buf[200];
    uuid_t u;
    char us[37];

    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    uuid_generate_random(u);
    uuid_unparse_lower(u, us);
    snprintf(buf, sizeof(buf), "%s-%ld-%.8s", host, (long)getpid(), us);
    return strdup(buf);
}

int cbm_worker_create(cbm_worker_t **out, const cbm_worker_opts_t *o, cbm_error_t *err)
{
    rpc_client_options_t ro = {0};
    cbm_worker_t *w;
    int bad = 0, rc;

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "out is NULL");
    *out = NULL;
    if (o == NULL || o->server == NULL || o->server[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "worker: no server address given");
    if (o->nqueues == 0 || o->queues == NULL)
        return cbm_error_set(err, CBM_EINVAL, "worker: at least one queue is required");
    for (size_t i = 0; i < o->nqueues; i++)
        if (o->queues[i] == NULL || o->queues[i][0] == '\0')
            return cbm_error_set(err, CBM_EINVAL, "worker: queue %zu is empty", i);
    if (o->ncapabilities > 0 && o->capabilities == NULL)
        return cbm_error_set(err, CBM_EINVAL, "worker: capabilities is NULL");
    for (size_t i = 0; i < o->ncapabilities; i++)
        if (o->capabilities[i].key == NULL || o->capabilities[i].key[0] == '\0' ||
            o->capabilities[i].value == NULL)
            return cbm_error_set(err, CBM_EINVAL, "worker: capability %zu has no key or value", i);
    if (o->concurrency < 0 || o->concurrency > MAX_CONCURRENCY)
        return cbm_error_set(err, CBM_EINVAL, "worker: concurrency must be 0 to %d, not %d",
                             MAX_CONCURRENCY, o->concurrency);
    if (o->poll_wait_ms < 0)
        return cbm_error_set(err, CBM_EINVAL, "worker: poll_wait_ms must not be negative");
    if ((o->tls_cert_pem == NULL) != (o->tls_key_pem == NULL))
        return cbm_error_set(err, CBM_EINVAL, "worker: mTLS needs both a certificate and a key");
    if (o->worker_id != NULL && o->worker_id[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "worker: empty worker_id (NULL generates one)");

    if ((w = calloc(1, sizeof(*w))) == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    uv_mutex_init(&w->mu);
    uv_mutex_init(&w->reg_mu);
    uv_cond_init(&w->cv);
    w->server = dup_opt(o->server, &bad);
    w->token = dup_opt(o->token, &bad);
    w->root_pem = dup_opt(o->tls_root_pem, &bad);
    w->cert_pem = dup_opt(o->tls_cert_pem, &bad);
    w->key_pem = dup_opt(o->tls_key_pem, &bad);
    w->server_name = dup_opt(o->tls_server_name, &bad);
    w->id = o->worker_id != NULL ? dup_opt(o->worker_id, &bad) : default_id();
    if (w->id == NULL) bad = 1;
    w->concurrency = o->concurrency > 0 ? o->concurrency : 1;
    w->wait_ms = o->poll_wait_ms > 0 ? o->poll_wait_ms : 30000;
    w->max_wait_ms = 60000;
    if ((w->queues = calloc(o->nqueues, sizeof(*w->queues))) == NULL) bad = 1;
    else w->nqueues = o->nqueues;
    for (size_t i = 0; i < w->nqueues; i++) w->queues[i] = dup_opt(o->queues[i], &bad);
    if (o->ncapabilities > 0) {
        w->cap_keys = calloc(o->ncapabilities, sizeof(char *));
        w->cap_vals = calloc(o->ncapabilities, sizeof(char *));
        if (w->cap_keys == NULL || w->cap_vals == NULL) bad = 1;
        else w->ncaps = o->ncapabilities;
        for (size_t i = 0; i < w->ncaps; i++) {
            w->cap_keys[i] = dup_opt(o->capabilities[i].key, &bad);
            w->cap_vals[i] = dup_opt(o->capabilities[i].value, &bad);
        }
    }
    if (bad) {
        worker_free(w);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    ro.target = w->server;
    ro.token = w->token;
    ro.tls_root_pem = w->root_pem;
    ro.tls_cert_pem = w->cert_pem;
    ro.tls_key_pem = w->key_pem;
    ro.tls_server_name = w->server_name;
    /* Come back soon after a server restart: gRPC's own reconnect back-off
     * would otherwise grow to two minutes. */
    ro.max_reconnect_backoff_ms = BACKOFF_MAX_MS;
    if ((rc = rpc_client_create(&ro, &w->poll_rpc, err)) != 0 ||
        (rc = rpc_client_create(&ro, &w->ctl_rpc, err)) != 0) {
        worker_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int cbm_worker_register_handler(cbm_worker_t *w, const char *name, cbm_step_fn fn, void *arg)
{
    handler_t *n;
    if (w == NULL || name == NULL || name[0] == '\0' || fn == NULL) return CBM_EINVAL;
    if (w->started) return CBM_ESTATE;
    if (find_handler(w, name) != NULL) return CBM_EEXIST;
    if ((n = realloc(w->handlers, (w->nhandlers + 1) * sizeof(*n))) == NULL) return CBM_ENOMEM;
    w->handlers = n;
    if ((n[w->nhandlers].name = strdup(name)) == NULL) return CBM_ENOMEM;
    n[w->nhandlers].fn = fn;
    n[w->nhandlers].arg = arg;
    w->nhandlers++;
    return 0;
}

int cbm_worker_start(cbm_worker_t *w, cbm_error_t *err)
{
    int i;
    if (w == NULL) return cbm_error_set(err, CBM_EINVAL, "worker is NULL");
    if (w->started) return cbm_error_set(err, CBM_ESTATE, "worker %s already started", w->id);
    if (w->nhandlers == 0)
        return cbm_error_set(err, CBM_EINVAL, "worker %s has no handlers", w->id);
    if ((w->slots = calloc((size_t)w->concurrency, sizeof(*w->slots))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    if (uv_thread_create(&w->hb_thread, heartbeat_main, w) != 0)
        return cbm_error_set(err, CBM_EIO, "worker: cannot start a thread");
    w->started = 1;
    for (i = 0; i < w->concurrency; i++) {
        if (uv_thread_create(&w->slots[i], slot_main, w) != 0) break;
    }
    if (i < w->concurrency) {
        w->concurrency = i; /* the ones that started are joined on wait */
        cbm_worker_stop(w);
        cbm_worker_wait(w);
        return cbm_error_set(err, CBM_EIO, "worker: cannot start its threads");
    }
    return 0;
}

void cbm_worker_stop(cbm_worker_t *w)
{
    if (w == NULL) return;
    uv_mutex_lock(&w->mu);
    w->stopping = 1;
    uv_cond_broadcast(&w->cv);
    uv_mutex_unlock(&w->mu);
    rpc_client_cancel_all(w->poll_rpc);
}

void cbm_worker_wait(cbm_worker_t *w)
{
    Cerebelum__V1__UnregisterWorkerRequest req = CEREBELUM__V1__UNREGISTER_WORKER_REQUEST__INIT;
    ProtobufCMessage *rep = NULL;
    int must_join;

    if (w == NULL || !w->started) return;
    uv_mutex_lock(&w->mu);
    while (!w->stopping) uv_cond_wait(&w->cv, &w->mu);
    must_join = !w->drained;
    w->drained = 1;
    uv_mutex_unlock(&w->mu);
    if (!must_join) return;
    for (int i = 0; i < w->concurrency; i++) uv_thread_join(&w->slots[i]);
    uv_mutex_lock(&w->mu);
    w->slots_done = 1;
    uv_cond_broadcast(&w->cv);
    uv_mutex_unlock(&w->mu);
    uv_thread_join(&w->hb_thread);
    if (w->registered_once) {
        req.worker_id = w->id;
        req.reason = STR("shutdown");
        if (rpc_client_call(w->ctl_rpc, RPC_UNREGISTER_WORKER, &req.base, &rep, 5000, NULL) == 0)
            protobuf_c_message_free_unpacked(rep, NULL);
    }
    cbm_log_info("worker %s: stopped", w->id);
}

int cbm_worker_run(cbm_worker_t *w, cbm_error_t *err)
{
    int rc = cbm_worker_start(w, err);
    if (rc != 0) return rc;
    cbm_worker_wait(w);
    return 0;
}

const char *cbm_worker_id(const cbm_worker_t *w)
{
    return w != NULL ? w->id : NULL;
}

void cbm_worker_get_stats(cbm_worker_t *w, cbm_worker_stats_t *o)
{
    if (w == NULL || o == NULL) return;
    o->registrations = atomic_load(&w->st_registrations);
    o->tasks = atomic_load(&w->st_tasks);
    o->submitted = atomic_load(&w->st_submitted);
    o->ignored = atomic_load(&w->st_ignored);
    o->cancelled = atomic_load(&w->st_cancelled);
    o->heartbeats = atomic_load(&w->st_heartbeats);
    o->errors = atomic_load(&w->st_errors);
}

void cbm_worker_destroy(cbm_worker_t *w)
{
    if (w == NULL) return;
    if (w->started) {
        cbm_worker_stop(w);
        cbm_worker_wait(w);
    }
    worker_free(w);
}
