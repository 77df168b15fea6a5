/*
 * harness.c - see harness.h. The echo handlers live here too: each method's
 * reply is a function of its request that the tests recompute.
 */
#include "harness.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- echo handlers (loop thread) ---------------------------------------- */

#define REPLY(call, msg) rpc_call_reply((call), &(msg).base)

static void on_parked_cancel(rpc_call_t *call, void *data)
{
    parked_t *p = data;
    fx_t *fx = p->fx;
    assert(p->call == call);
    p->call = NULL;
    fx->n_parked--;
    fx->n_cancelled++;
    if (p->timer_open) {
        uv_timer_stop(&p->timer);
    }
}

static void answer_parked(parked_t *p)
{
    Cerebelum__V1__Task t = CEREBELUM__V1__TASK__INIT;
    const Cerebelum__V1__PollTaskRequest *req;
    rpc_call_t *call = p->call;
    (void)req;
    t.task_id = "late-task";
    t.execution_id = "exec-1";
    t.step = "step-a";
    t.attempt = 1;
    t.queue = "default";
    t.input_json = "{\"late\":true}";
    t.lease_ms = 30000;
    p->call = NULL;
    p->fx->n_parked--;
    p->fx->n_answered_late++;
    p->fx->late_reply_rc = REPLY(call, t);
}

static void on_park_timer(uv_timer_t *t)
{
    parked_t *p = t->data;
    if (p->call != NULL)
        answer_parked(p);
}

static void on_timer_closed(uv_handle_t *h)
{
    parked_t *p = h->data;
    p->timer_open = 0;
}

static void h_poll(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    fx_t *fx = ud;
    const Cerebelum__V1__PollTaskRequest *r = (const void *)msg;
    if (fx->park_polls) {
        for (int i = 0; i < FX_MAX_PARKED; i++) {
            parked_t *p = &fx->parked[i];
            if (p->call != NULL || p->timer_open)
                continue;
            p->call = call;
            p->fx = fx;
            fx->n_parked++;
            rpc_call_on_cancel(call, on_parked_cancel, p);
            if (fx->answer_after_ms > 0) {
                uv_timer_init(&fx->loop, &p->timer);
                p->timer.data = p;
                p->timer_open = 1;
                uv_timer_start(&p->timer, on_park_timer, (uint64_t)fx->answer_after_ms, 0);
            }
            return;
        }
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many parked polls");
        return;
    }
    Cerebelum__V1__Task t = CEREBELUM__V1__TASK__INIT;
    char id[256];
    if (r->wait_ms == 7) { /* the "nothing to do" answer */
        t.empty = 1;
        REPLY(call, t);
        return;
    }
    snprintf(id, sizeof(id), "task-for-%s", r->worker_id);
    t.task_id = id;
    t.execution_id = "exec-1";
    t.step = "step-a";
    t.attempt = r->wait_ms;
    t.queue = r->n_queues > 0 ? r->queues[0] : "";
    t.input_json = "{\"x\":1}";
    t.lease_ms = 30000;
    t.blueprint = "bp";
    t.timeout_ms = 5000;
    REPLY(call, t);
}

static void h_register_worker(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__RegisterWorkerRequest *r = (const void *)msg;
    Cerebelum__V1__RegisterWorkerResponse rep = CEREBELUM__V1__REGISTER_WORKER_RESPONSE__INIT;
    unsigned sum = 0;
    for (size_t i = 0; i < r->n_capabilities; i++)
        sum += (unsigned)(strlen(r->capabilities[i]->key) + strlen(r->capabilities[i]->value));
    rep.heartbeat_interval_ms = r->max_concurrency * 1000u + (unsigned)r->n_queues;
    rep.max_wait_ms = sum + (unsigned)strlen(r->sdk_version);
    REPLY(call, rep);
}

static void h_heartbeat(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__HeartbeatRequest *r = (const void *)msg;
    Cerebelum__V1__HeartbeatResponse rep = CEREBELUM__V1__HEARTBEAT_RESPONSE__INIT;
    rep.lease_extension_ms = 1000u * (unsigned)r->n_task_ids;
    rep.n_cancel_task_ids = r->n_task_ids > 0 ? 1 : 0;
    rep.cancel_task_ids = r->task_ids; /* the first one */
    rep.unknown_worker = strcmp(r->worker_id, "stranger") == 0;
    REPLY(call, rep);
}

static void h_submit(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__SubmitResultRequest *r = (const void *)msg;
    Cerebelum__V1__SubmitResultResponse rep = CEREBELUM__V1__SUBMIT_RESULT_RESPONSE__INIT;
    char why[512];
    switch (r->status) {
    case CEREBELUM__V1__TASK_STATUS__SUCCESS:
        snprintf(why, sizeof(why), "success:%s:%s:%u", r->task_id, r->result_json, r->attempt);
        break;
    case CEREBELUM__V1__TASK_STATUS__FAILED:
        snprintf(why, sizeof(why), "failed:%s:%s:%d:%s", r->error ? r->error->kind : "-",
                 r->error ? r->error->message : "-", r->error ? r->error->retryable : -1,
                 r->error ? r->error->details_json : "-");
        break;
    case CEREBELUM__V1__TASK_STATUS__SLEEP:
        snprintf(why, sizeof(why), "sleep:%llu:%s",
                 r->sleep ? (unsigned long long)r->sleep->duration_ms : 0ull,
                 r->sleep ? r->sleep->data_json : "-");
        break;
    case CEREBELUM__V1__TASK_STATUS__APPROVAL:
        snprintf(why, sizeof(why), "approval:%s:%s:%llu", r->approval ? r->approval->type : "-",
                 r->approval ? r->approval->data_json : "-",
                 r->approval ? (unsigned long long)r->approval->timeout_ms : 0ull);
        break;
    default:
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "status %d", (int)r->status);
        return;
    }
    rep.accepted = r->status == CEREBELUM__V1__TASK_STATUS__SUCCESS;
    rep.ignored_reason = why;
    REPLY(call, rep);
}

static void h_unregister(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__UnregisterWorkerRequest *r = (const void *)msg;
    Cerebelum__V1__UnregisterWorkerResponse rep = CEREBELUM__V1__UNREGISTER_WORKER_RESPONSE__INIT;
    rep.released_tasks = (unsigned)(strlen(r->worker_id) + strlen(r->reason));
    REPLY(call, rep);
}

static void h_register_blueprint(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__RegisterBlueprintRequest *r = (const void *)msg;
    Cerebelum__V1__RegisterBlueprintResponse rep = CEREBELUM__V1__REGISTER_BLUEPRINT_RESPONSE__INIT;
    if (r->blueprint_json[0] != '{') {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "blueprint: not a JSON object");
        return;
    }
    rep.name = r->blueprint_json;
    rep.version = "v-sha";
    rep.created = 1;
    REPLY(call, rep);
}

static void h_start(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__StartExecutionRequest *r = (const void *)msg;
    Cerebelum__V1__StartExecutionResponse rep = CEREBELUM__V1__START_EXECUTION_RESPONSE__INIT;
    char id[512];
    snprintf(id, sizeof(id), "%s/%s/%s", r->blueprint, r->idempotency_key, r->inputs_json);
    rep.execution_id = id;
    rep.created = r->idempotency_key[0] == '\0';
    rep.version = r->version[0] ? r->version : "latest";
    REPLY(call, rep);
}

static void h_get_execution(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__GetExecutionRequest *r = (const void *)msg;
    Cerebelum__V1__GetExecutionResponse rep = CEREBELUM__V1__GET_EXECUTION_RESPONSE__INIT;
    Cerebelum__V1__Execution e = CEREBELUM__V1__EXECUTION__INIT;
    char *huge = NULL;
    if (strcmp(r->execution_id, "missing") == 0) {
        rpc_call_fail(call, GRPC_STATUS_NOT_FOUND, "execution %s not found", r->execution_id);
        return;
    }
    e.execution_id = r->execution_id;
    e.blueprint = "bp";
    e.version = "v-sha";
    e.status = CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_COMPLETED;
    e.result_json = "{\"ok\":true}";
    e.started_at_ms = 1700000000000LL;
    e.finished_at_ms = 1700000000500LL;
    e.last_seq = 42;
    rep.execution = &e;
    rep.state_json = "{}";
    if (strcmp(r->execution_id, "huge") == 0) { /* a reply over the 4 MiB cap */
        size_t n = 5u << 20;
        huge = malloc(n + 1);
        assert(huge != NULL);
        memset(huge, 'x', n);
        huge[n] = '\0';
        rep.state_json = huge;
    }
    int rc = REPLY(call, rep);
    if (huge != NULL) {
        assert(rc == CBM_EINVAL);
        free(huge);
    }
}

static void h_list_executions(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__ListExecutionsRequest *r = (const void *)msg;
    Cerebelum__V1__ListExecutionsResponse rep = CEREBELUM__V1__LIST_EXECUTIONS_RESPONSE__INIT;
    Cerebelum__V1__Execution e[5], *pe[5];
    char ids[5][32], next[300];
    size_t n = r->limit < 5 ? r->limit : 5;
    for (size_t i = 0; i < n; i++) {
        cerebelum__v1__execution__init(&e[i]);
        snprintf(ids[i], sizeof(ids[i]), "e%zu", i);
        e[i].execution_id = ids[i];
        e[i].blueprint = r->blueprint;
        e[i].status = r->status;
        pe[i] = &e[i];
    }
    snprintf(next, sizeof(next), "%s+", r->after);
    rep.n_executions = n;
    rep.executions = pe;
    rep.next_after = next;
    REPLY(call, rep);
}

static void h_history(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__GetHistoryRequest *r = (const void *)msg;
    Cerebelum__V1__GetHistoryResponse rep = CEREBELUM__V1__GET_HISTORY_RESPONSE__INIT;
    Cerebelum__V1__Event ev[3], *pev[3];
    static char *types[3] = {"ExecutionStarted", "StepScheduled", "StepCompleted"};
    for (int i = 0; i < 3; i++) {
        cerebelum__v1__event__init(&ev[i]);
        ev[i].seq = r->after_seq + (uint64_t)i + 1;
        ev[i].type = types[i];
        ev[i].payload_json = r->execution_id;
        ev[i].recorded_at_ms = 1700000000000LL + i;
        pev[i] = &ev[i];
    }
    rep.n_events = 3;
    rep.events = pev;
    rep.more = r->limit == 3;
    REPLY(call, rep);
}

static void h_approve(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__ApproveRequest *r = (const void *)msg;
    Cerebelum__V1__ApproveResponse rep = CEREBELUM__V1__APPROVE_RESPONSE__INIT;
    rep.seq = strlen(r->execution_id) + strlen(r->step) + strlen(r->data_json) + strlen(r->actor);
    REPLY(call, rep);
}

static void h_reject(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__RejectRequest *r = (const void *)msg;
    Cerebelum__V1__RejectResponse rep = CEREBELUM__V1__REJECT_RESPONSE__INIT;
    if (strcmp(r->execution_id, "done") == 0) {
        rpc_call_fail(call, GRPC_STATUS_FAILED_PRECONDITION, "not awaiting approval");
        return;
    }
    rep.seq = 100 + strlen(r->reason);
    REPLY(call, rep);
}

static void h_signal(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__SignalRequest *r = (const void *)msg;
    Cerebelum__V1__SignalResponse rep = CEREBELUM__V1__SIGNAL_RESPONSE__INIT;
    rep.seq = 200 + strlen(r->name) + strlen(r->data_json);
    REPLY(call, rep);
}

static void h_cancel(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__CancelRequest *r = (const void *)msg;
    Cerebelum__V1__CancelResponse rep = CEREBELUM__V1__CANCEL_RESPONSE__INIT;
    rep.seq = 300 + strlen(r->reason);
    REPLY(call, rep);
}

static void h_list_workers(rpc_call_t *call, const ProtobufCMessage *msg, void *ud)
{
    const Cerebelum__V1__ListWorkersRequest *r = (const void *)msg;
    Cerebelum__V1__ListWorkersResponse rep = CEREBELUM__V1__LIST_WORKERS_RESPONSE__INIT;
    Cerebelum__V1__Worker w = CEREBELUM__V1__WORKER__INIT, *pw = &w;
    Cerebelum__V1__Worker__CapabilitiesEntry cap = CEREBELUM__V1__WORKER__CAPABILITIES_ENTRY__INIT;
    Cerebelum__V1__Worker__CapabilitiesEntry *pcap = &cap;
    char *queues[1] = {r->queue};
    cap.key = "gpu";
    cap.value = "a100";
    w.worker_id = "w-1";
    w.n_queues = 1;
    w.queues = queues;
    w.n_capabilities = 1;
    w.capabilities = &pcap;
    w.max_concurrency = 4;
    w.alive = 1;
    w.sdk_version = "cerebelum-c/0.1.0";
    rep.n_workers = 1;
    rep.workers = &pw;
    REPLY(call, rep);
}

static void count_and(rpc_handler_cb h, rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    fx_t *fx = ud;
    atomic_fetch_add(&fx->handled, 1);
    h(call, m, ud);
}

#define WRAP(name)                                                             \
    static void w_##name(rpc_call_t *c, const ProtobufCMessage *m, void *ud)    \
    {                                                                          \
        count_and(name, c, m, ud);                                             \
    }
WRAP(h_register_worker)
WRAP(h_poll)
WRAP(h_heartbeat)
WRAP(h_submit)
WRAP(h_unregister)
WRAP(h_register_blueprint)
WRAP(h_start)
WRAP(h_get_execution)
WRAP(h_list_executions)
WRAP(h_history)
WRAP(h_approve)
WRAP(h_reject)
WRAP(h_signal)
WRAP(h_cancel)
WRAP(h_list_workers)

void fx_init(fx_t *fx, const char *listen_addr)
{
    memset(fx, 0, sizeof(*fx));
    fx->opts.listen_addr = listen_addr;
    fx->opts.user_data = fx;
    fx->opts.handlers[RPC_REGISTER_WORKER] = w_h_register_worker;
    fx->opts.handlers[RPC_POLL_TASK] = w_h_poll;
    fx->opts.handlers[RPC_HEARTBEAT] = w_h_heartbeat;
    fx->opts.handlers[RPC_SUBMIT_RESULT] = w_h_submit;
    fx->opts.handlers[RPC_UNREGISTER_WORKER] = w_h_unregister;
    fx->opts.handlers[RPC_REGISTER_BLUEPRINT] = w_h_register_blueprint;
    fx->opts.handlers[RPC_START_EXECUTION] = w_h_start;
    fx->opts.handlers[RPC_GET_EXECUTION] = w_h_get_execution;
    fx->opts.handlers[RPC_LIST_EXECUTIONS] = w_h_list_executions;
    fx->opts.handlers[RPC_GET_HISTORY] = w_h_history;
    fx->opts.handlers[RPC_APPROVE] = w_h_approve;
    fx->opts.handlers[RPC_REJECT] = w_h_reject;
    fx->opts.handlers[RPC_SIGNAL] = w_h_signal;
    fx->opts.handlers[RPC_CANCEL] = w_h_cancel;
    fx->opts.handlers[RPC_LIST_WORKERS] = w_h_list_workers;
}

/* ---- loop thread plumbing ------------------------------------------------- */

static void on_cmd(uv_async_t *h)
{
    fx_t *fx = h->data;
    uv_mutex_lock(&fx->mu);
    fx_fn fn = fx->fn;
    void *arg = fx->arg;
    fx->fn = NULL;
    uv_mutex_unlock(&fx->mu);
    if (fn == NULL)
        return;
    fn(fx, arg);
    uv_mutex_lock(&fx->mu);
    fx->done = 1;
    uv_cond_broadcast(&fx->cv);
    uv_mutex_unlock(&fx->mu);
}

static void loop_main(void *arg)
{
    fx_t *fx = arg;
    uv_run(&fx->loop, UV_RUN_DEFAULT);
}

void fx_run(fx_t *fx, fx_fn fn, void *arg)
{
    uv_mutex_lock(&fx->run_mu);
    uv_mutex_lock(&fx->mu);
    fx->fn = fn;
    fx->arg = arg;
    fx->done = 0;
    uv_mutex_unlock(&fx->mu);
    uv_async_send(&fx->cmd);
    uv_mutex_lock(&fx->mu);
    while (!fx->done)
        uv_cond_wait(&fx->cv, &fx->mu);
    uv_mutex_unlock(&fx->mu);
    uv_mutex_unlock(&fx->run_mu);
}

static void do_create(fx_t *fx, void *arg)
{
    fx->create_rc = rpc_server_create(&fx->loop, &fx->opts, &fx->srv, &fx->err);
}

int fx_start(fx_t *fx)
{
    int rc = uv_loop_init(&fx->loop);
    assert(rc == 0);
    uv_mutex_init(&fx->mu);
    uv_mutex_init(&fx->run_mu);
    uv_cond_init(&fx->cv);
    uv_async_init(&fx->loop, &fx->cmd, on_cmd);
    fx->cmd.data = fx;
    rc = uv_thread_create(&fx->thread, loop_main, fx);
    assert(rc == 0);
    fx_run(fx, do_create, NULL);
    if (fx->create_rc == 0) {
        if (strncmp(fx->opts.listen_addr, "unix:", 5) == 0)
            snprintf(fx->target, sizeof(fx->target), "%s", fx->opts.listen_addr);
        else
            snprintf(fx->target, sizeof(fx->target), "127.0.0.1:%d", rpc_server_port(fx->srv));
    }
    return fx->create_rc;
}

static void on_shut(rpc_server_t *srv, void *data)
{
    fx_t *fx = data;
    fx->shut_done = 1;
}

static void do_shutdown(fx_t *fx, void *arg)
{
    rpc_server_shutdown(fx->srv, on_shut, fx);
}

static int is_shut(fx_t *fx)
{
    return fx->shut_done;
}

static void do_teardown(fx_t *fx, void *arg)
{
    rpc_server_destroy(fx->srv);
    fx->srv = NULL;
    for (int i = 0; i < FX_MAX_PARKED; i++)
        if (fx->parked[i].timer_open)
            uv_close((uv_handle_t *)&fx->parked[i].timer, on_timer_closed);
    uv_close((uv_handle_t *)&fx->cmd, NULL);
}

void fx_stop(fx_t *fx)
{
    if (fx->create_rc == 0) {
        fx_run(fx, do_shutdown, NULL);
        int ok = fx_wait(fx, is_shut, 10000);
        assert(ok && "server shutdown did not finish in 10 s");
        (void)ok;
        fx_run(fx, do_teardown, NULL);
    } else {
        fx_run(fx, do_teardown, NULL);
    }
    uv_thread_join(&fx->thread);
    int rc = uv_loop_close(&fx->loop);
    if (rc != 0) {
        fprintf(stderr, "uv_loop_close: %s (a handle was left open)\n", uv_strerror(rc));
        uv_print_all_handles(&fx->loop, stderr);
    }
    assert(rc == 0);
    uv_mutex_destroy(&fx->mu);
    uv_mutex_destroy(&fx->run_mu);
    uv_cond_destroy(&fx->cv);
}

typedef struct pred_arg {
    int (*pred)(fx_t *fx);
    int result;
} pred_arg_t;

static void eval_pred(fx_t *fx, void *arg)
{
    pred_arg_t *p = arg;
    p->result = p->pred(fx);
}

int fx_wait(fx_t *fx, int (*pred)(fx_t *fx), int ms)
{
    for (int waited = 0;; waited += 5) {
        pred_arg_t p = {pred, 0};
        fx_run(fx, eval_pred, &p);
        if (p.result)
            return 1;
        if (waited >= ms)
            return 0;
        uv_sleep(5);
    }
}

void fx_answer_parked(fx_t *fx, void *arg)
{
    for (int i = 0; i < FX_MAX_PARKED; i++)
        if (fx->parked[i].call != NULL)
            answer_parked(&fx->parked[i]);
}

rpc_client_t *fx_client(fx_t *fx, const char *token)
{
    rpc_client_options_t o = {0};
    rpc_client_t *c = NULL;
    cbm_error_t err = {0};
    o.target = fx->target;
    o.token = token;
    int rc = rpc_client_create(&o, &c, &err);
    if (rc != 0)
        fprintf(stderr, "rpc_client_create: %s\n", err.message);
    assert(rc == 0);
    return c;
}

char *fx_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf != NULL)
        buf[n] = '\0';
    fclose(f);
    return buf;
}
