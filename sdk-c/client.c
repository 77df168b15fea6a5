/*
 * client.c - the public C client of WorkflowService (cerebelum/client.h),
 * a thin layer over the blocking gRPC transport client.
 *
 * Each function builds the request message on the stack (protobuf-c structs
 * pointing at the caller's strings; nothing is copied for sending), makes one
 * blocking call with the client's deadline, and converts the reply into the
 * engine API's own types, so a program can switch between the embedded
 * engine and a server with the same free functions.
 *
 * Errors: the transport maps gRPC statuses to CBM_E* codes
 * (rpc_status_to_cbm); here the server's message goes into cbm_error_t. For
 * statuses that have no CBM_E* code of their own (they map to CBM_EIO) the
 * status name leads the message, so "UNAUTHENTICATED: ..." is not mistaken
 * for a local I/O failure.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"
#include "cerebelum/client.h"
#include "grpc_transport.h"

struct cbm_client {
    rpc_client_t *rpc;
    atomic_int timeout_ms;
};

/* ExecutionStatus <-> the engine's status names. Index = enum value. */
static const char *const status_names[] = {
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_UNSPECIFIED] = "unknown",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_RUNNING] = "running",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_SLEEPING] = "sleeping",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_APPROVAL] = "awaiting_approval",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_SIGNAL] = "awaiting_signal",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_COMPLETED] = "completed",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_FAILED] = "failed",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_CANCELLED] = "cancelled",
    [CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_AWAITING_CHILD] = "awaiting_child",
};
#define NSTATUS (sizeof(status_names) / sizeof(status_names[0]))

int cbm_client_connect(cbm_client_t **out, const char *target, const cbm_client_opts_t *opts,
                       cbm_error_t *err)
{
    cbm_client_opts_t none = {0};
    rpc_client_options_t ro = {0};
    cbm_client_t *c;
    int rc;

    if (out == NULL) return cbm_error_set(err, CBM_EINVAL, "out is NULL");
    *out = NULL;
    if (target == NULL || target[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "no server address given");
    if (opts == NULL) opts = &none;
    if ((opts->tls_cert_pem == NULL) != (opts->tls_key_pem == NULL))
        return cbm_error_set(err, CBM_EINVAL, "tls_cert_pem and tls_key_pem go together");
    if ((c = calloc(1, sizeof(*c))) == NULL) return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    ro.target = target;
    ro.token = opts->token;
    ro.tls = opts->tls;
    ro.tls_root_pem = opts->tls_root_pem;
    ro.tls_server_name = opts->tls_server_name;
    ro.tls_cert_pem = opts->tls_cert_pem;
    ro.tls_key_pem = opts->tls_key_pem;
    if ((rc = rpc_client_create(&ro, &c->rpc, err)) != 0) {
        free(c);
        return rc;
    }
    atomic_init(&c->timeout_ms, opts->timeout_ms > 0 ? opts->timeout_ms
                                                     : CBM_CLIENT_DEFAULT_TIMEOUT_MS);
    *out = c;
    return 0;
}

void cbm_client_destroy(cbm_client_t *c)
{
    if (c == NULL) return;
    rpc_client_destroy(c->rpc);
    free(c);
}

void cbm_client_set_timeout(cbm_client_t *c, int timeout_ms)
{
    if (c == NULL) return;
    atomic_store(&c->timeout_ms, timeout_ms > 0 ? timeout_ms : CBM_CLIENT_DEFAULT_TIMEOUT_MS);
}

/* One call with the client's deadline; on failure fill err from the status. */
static int call(cbm_client_t *c, rpc_method_t m, const ProtobufCMessage *req,
                ProtobufCMessage **reply, cbm_error_t *err)
{
    rpc_status_t st = {0};
    int timeout = atomic_load(&c->timeout_ms);
    int rc = rpc_client_call(c->rpc, m, req, reply, timeout, &st);

    if (rc == 0) return 0;
    switch (st.code) {
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return cbm_error_set(err, rc, "no answer within %d ms", timeout);
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_UNAVAILABLE:
        if (st.message[0] != '\0') return cbm_error_set(err, rc, "%s", st.message);
        return cbm_error_set(err, rc, "%s", rpc_status_name(st.code));
    default:
        if (st.message[0] != '\0')
            return cbm_error_set(err, rc, "%s: %s", rpc_status_name(st.code), st.message);
        return cbm_error_set(err, rc, "%s", rpc_status_name(st.code));
    }
}

/* The request's strings are only read during the call; protobuf-c's structs
 * hold non-const pointers, hence the casts. */
#define STR(s) ((char *)(uintptr_t)((s) != NULL ? (s) : ""))

int cbm_client_put_blueprint(cbm_client_t *c, const char *json, char version_out[65],
                             bool *created, cbm_error_t *err)
{
    Cerebelum__V1__RegisterBlueprintRequest req = CEREBELUM__V1__REGISTER_BLUEPRINT_REQUEST__INIT;
    Cerebelum__V1__RegisterBlueprintResponse *rep = NULL;
    int rc;

    if (created != NULL) *created = false;
    if (c == NULL || json == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.blueprint_json = STR(json);
    rc = call(c, RPC_REGISTER_BLUEPRINT, &req.base, (ProtobufCMessage **)&rep, err);
    if (rc != 0) return rc;
    if (version_out != NULL) snprintf(version_out, 65, "%s", rep->version);
    if (created != NULL) *created = rep->created;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

int cbm_client_register_blueprint(cbm_client_t *c, const char *json, char version_out[65],
                                  cbm_error_t *err)
{
    return cbm_client_put_blueprint(c, json, version_out, NULL, err);
}

int cbm_client_start_opts(cbm_client_t *c, const char *blueprint, const char *inputs_json,
                          const cbm_start_opts_t *opts, char id_out[37], bool *created,
                          char version_out[65], cbm_error_t *err)
{
    Cerebelum__V1__StartExecutionRequest req = CEREBELUM__V1__START_EXECUTION_REQUEST__INIT;
    Cerebelum__V1__StartExecutionResponse *rep = NULL;
    int rc;

    if (created != NULL) *created = false;
    if (c == NULL || blueprint == NULL || id_out == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.blueprint = STR(blueprint);
    req.inputs_json = STR(inputs_json);
    if (opts != NULL) {
        req.idempotency_key = STR(opts->idempotency_key);
        req.version = STR(opts->version);
    }
    rc = call(c, RPC_START_EXECUTION, &req.base, (ProtobufCMessage **)&rep, err);
    if (rc != 0) return rc;
    snprintf(id_out, 37, "%s", rep->execution_id);
    if (created != NULL) *created = rep->created;
    if (version_out != NULL) snprintf(version_out, 65, "%s", rep->version);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

int cbm_client_start(cbm_client_t *c, const char *blueprint, const char *inputs_json,
                     const char *idempotency_key, char id_out[37], cbm_error_t *err)
{
    cbm_start_opts_t o = {0};
    o.idempotency_key = idempotency_key;
    return cbm_client_start_opts(c, blueprint, inputs_json, &o, id_out, NULL, NULL, err);
}

_Static_assert(CBM_CLIENT_MAX_START_BATCH == RPC_MAX_START_BATCH,
               "the public batch limit is the protocol's");

/* One result of StartExecutions into the caller's struct. */
static void result_from(const Cerebelum__V1__StartExecutionResult *r,
                        cbm_client_start_result_t *out)
{
    memset(out, 0, sizeof(*out));
    if (r->error != NULL && r->error->code != GRPC_STATUS_OK) {
        out->status = r->error->code;
        out->code = rpc_status_to_cbm((grpc_status_code)r->error->code);
        if (out->code == 0) out->code = CBM_EIO;
        snprintf(out->message, sizeof(out->message), "%s", r->error->message);
        return;
    }
    snprintf(out->id, sizeof(out->id), "%s", r->execution_id);
    snprintf(out->version, sizeof(out->version), "%s", r->version);
    out->created = r->created;
}

int cbm_client_start_many(cbm_client_t *c, const cbm_client_start_item_t *items, size_t n,
                          cbm_client_start_result_t *results, cbm_error_t *err)
{
    Cerebelum__V1__StartExecutionsRequest req = CEREBELUM__V1__START_EXECUTIONS_REQUEST__INIT;
    Cerebelum__V1__StartExecutionsResponse *rep = NULL;
    Cerebelum__V1__StartExecutionRequest *msgs = NULL, **ptrs = NULL;
    int rc;

    if (c == NULL || (n > 0 && (items == NULL || results == NULL)))
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    if (n > 0 && ((msgs = calloc(n, sizeof(*msgs))) == NULL ||
                  (ptrs = calloc(n, sizeof(*ptrs))) == NULL)) {
        free(msgs);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        msgs[i] = (Cerebelum__V1__StartExecutionRequest)CEREBELUM__V1__START_EXECUTION_REQUEST__INIT;
        msgs[i].blueprint = STR(items[i].blueprint);
        msgs[i].inputs_json = STR(items[i].inputs_json);
        msgs[i].idempotency_key = STR(items[i].idempotency_key);
        msgs[i].version = STR(items[i].version);
        ptrs[i] = &msgs[i];
    }
    req.n_items = n;
    req.items = ptrs;
    rc = call(c, RPC_START_EXECUTIONS, &req.base, (ProtobufCMessage **)&rep, err);
    free(ptrs);
    free(msgs);
    if (rc != 0) return rc;
    if (rep->n_results != n) {
        size_t got = rep->n_results;
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return cbm_error_set(err, CBM_EIO, "the server answered %zu results for %zu items", got, n);
    }
    for (size_t i = 0; i < n; i++) result_from(rep->results[i], &results[i]);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

/* Move an Execution into an info; strings are copied (the reply is freed
 * by the caller). Returns CBM_ENOMEM with the info half-filled. */
static int info_from(const Cerebelum__V1__Execution *x, cbm_execution_info_t *info)
{
    unsigned s = (unsigned)x->status < NSTATUS ? (unsigned)x->status : 0;

    snprintf(info->id, sizeof(info->id), "%s", x->execution_id);
    info->blueprint = strdup(x->blueprint);
    info->version = strdup(x->version);
    info->status = strdup(status_names[s]);
    info->inputs = strdup(x->inputs_json[0] != '\0' ? x->inputs_json : "{}");
    info->result = x->result_json[0] != '\0' ? strdup(x->result_json) : NULL;
    info->error = x->error_json[0] != '\0' ? strdup(x->error_json) : NULL;
    info->last_seq = (int64_t)x->last_seq;
    info->created_at_us = x->started_at_ms * 1000;
    info->updated_at_us = x->updated_at_ms * 1000;
    if (x->idempotency_key[0] != '\0' && (info->idempotency_key = strdup(x->idempotency_key)) == NULL)
        return CBM_ENOMEM;
    if (info->blueprint == NULL || info->version == NULL || info->status == NULL ||
        info->inputs == NULL || (x->result_json[0] != '\0' && info->result == NULL) ||
        (x->error_json[0] != '\0' && info->error == NULL))
        return CBM_ENOMEM;
    return 0;
}

int cbm_client_get(cbm_client_t *c, const char *id, cbm_execution_info_t **out,
                   char **state_json, cbm_error_t *err)
{
    Cerebelum__V1__GetExecutionRequest req = CEREBELUM__V1__GET_EXECUTION_REQUEST__INIT;
    Cerebelum__V1__GetExecutionResponse *rep = NULL;
    cbm_execution_info_t *info = NULL;
    char *state = NULL;
    int rc;

    if (c == NULL || id == NULL || out == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *out = NULL;
    if (state_json != NULL) *state_json = NULL;
    req.execution_id = STR(id);
    rc = call(c, RPC_GET_EXECUTION, &req.base, (ProtobufCMessage **)&rep, err);
    if (rc != 0) return rc;
    if (rep->execution == NULL) {
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return cbm_error_set(err, CBM_EIO, "the server's reply has no execution");
    }
    if ((info = calloc(1, sizeof(*info))) == NULL || info_from(rep->execution, info) != 0 ||
        (state_json != NULL &&
         (state = strdup(rep->state_json[0] != '\0' ? rep->state_json : "{}")) == NULL)) {
        cbm_execution_info_free(info);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    *out = info;
    if (state_json != NULL) *state_json = state;
    return 0;
}

/* The status filter as the wire enum; CBM_EINVAL for a name we do not know. */
static int status_from_name(const char *name, Cerebelum__V1__ExecutionStatus *out,
                            cbm_error_t *err)
{
    *out = CEREBELUM__V1__EXECUTION_STATUS__EXECUTION_STATUS_UNSPECIFIED;
    if (name == NULL || name[0] == '\0') return 0;
    for (unsigned i = 1; i < NSTATUS; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (Cerebelum__V1__ExecutionStatus)i;
            return 0;
        }
    }
    return cbm_error_set(err, CBM_EINVAL,
                         "unknown status '%s' (one of running, sleeping, awaiting_approval, "
                         "awaiting_signal, awaiting_child, completed, failed, cancelled)", name);
}

int cbm_client_list(cbm_client_t *c, const cbm_list_opts_t *opts, cbm_execution_info_t **out,
                    size_t *n, cbm_error_t *err)
{
    Cerebelum__V1__ListExecutionsRequest req = CEREBELUM__V1__LIST_EXECUTIONS_REQUEST__INIT;
    Cerebelum__V1__ListExecutionsResponse *rep = NULL;
    cbm_execution_info_t *infos;
    int rc;

    if (c == NULL || out == NULL || n == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *out = NULL;
    *n = 0;
    if (opts != NULL) {
        if ((rc = status_from_name(opts->status, &req.status, err)) != 0) return rc;
        req.blueprint = STR(opts->blueprint);
        req.after = STR(opts->after);
        req.limit = opts->limit > UINT32_MAX ? UINT32_MAX : (uint32_t)opts->limit;
    }
    rc = call(c, RPC_LIST_EXECUTIONS, &req.base, (ProtobufCMessage **)&rep, err);
    if (rc != 0) return rc;
    if ((infos = calloc(rep->n_executions ? rep->n_executions : 1, sizeof(*infos))) == NULL) {
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < rep->n_executions; i++) {
        if (info_from(rep->executions[i], &infos[i]) != 0) {
            cbm_execution_infos_free(infos, i + 1);
            protobuf_c_message_free_unpacked(&rep->base, NULL);
            return cbm_error_set(err, CBM_ENOMEM, "out of memory");
        }
    }
    *out = infos;
    *n = rep->n_executions;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

/* Append a page of events to *all (capacity *cap, count *n). */
static int append_events(cbm_event_t **all, size_t *n, size_t *cap,
                         const Cerebelum__V1__GetHistoryResponse *rep)
{
    if (*n + rep->n_events > *cap) {
        size_t want = *cap ? *cap : 64;
        cbm_event_t *grown;
        while (want < *n + rep->n_events) want *= 2;
        if ((grown = realloc(*all, want * sizeof(*grown))) == NULL) return CBM_ENOMEM;
        *all = grown;
        *cap = want;
    }
    for (size_t i = 0; i < rep->n_events; i++) {
        const Cerebelum__V1__Event *src = rep->events[i];
        cbm_event_t *ev = &(*all)[*n];
        ev->seq = (int64_t)src->seq;
        ev->recorded_at_us = src->recorded_at_ms * 1000;
        ev->type = strdup(src->type);
        ev->payload = strdup(src->payload_json[0] != '\0' ? src->payload_json : "{}");
        (*n)++; /* counted before the check, so cbm_events_free frees it */
        if (ev->type == NULL || ev->payload == NULL) return CBM_ENOMEM;
    }
    return 0;
}

int cbm_client_history(cbm_client_t *c, const char *id, int64_t from_seq, cbm_event_t **events,
                       size_t *n, cbm_error_t *err)
{
    Cerebelum__V1__GetHistoryRequest req = CEREBELUM__V1__GET_HISTORY_REQUEST__INIT;
    cbm_event_t *all = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;

    if (c == NULL || id == NULL || events == NULL || n == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *events = NULL;
    *n = 0;
    req.execution_id = STR(id);
    req.after_seq = from_seq > 1 ? (uint64_t)(from_seq - 1) : 0;
    for (;;) {
        Cerebelum__V1__GetHistoryResponse *rep = NULL;
        int more;

        if ((rc = call(c, RPC_GET_HISTORY, &req.base, (ProtobufCMessage **)&rep, err)) != 0) break;
        if (append_events(&all, &count, &cap, rep) != 0) {
            protobuf_c_message_free_unpacked(&rep->base, NULL);
            rc = cbm_error_set(err, CBM_ENOMEM, "out of memory");
            break;
        }
        /* A page that says "more" but brings nothing would loop forever. */
        more = rep->more && rep->n_events > 0;
        if (more) req.after_seq = rep->events[rep->n_events - 1]->seq;
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        if (!more) break;
    }
    if (rc != 0) {
        cbm_events_free(all, count);
        return rc;
    }
    if (all == NULL && (all = calloc(1, sizeof(*all))) == NULL)
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    *events = all;
    *n = count;
    return 0;
}

/* The four decisions: the reply only says where the event landed. */
static int decide(cbm_client_t *c, rpc_method_t m, const ProtobufCMessage *req, cbm_error_t *err)
{
    ProtobufCMessage *rep = NULL;
    int rc = call(c, m, req, &rep, err);
    if (rc == 0) protobuf_c_message_free_unpacked(rep, NULL);
    return rc;
}

int cbm_client_approve(cbm_client_t *c, const char *id, const char *step,
                       const char *response_json, const char *who, cbm_error_t *err)
{
    Cerebelum__V1__ApproveRequest req = CEREBELUM__V1__APPROVE_REQUEST__INIT;

    if (c == NULL || id == NULL || step == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.execution_id = STR(id);
    req.step = STR(step);
    req.data_json = STR(response_json);
    req.actor = STR(who);
    return decide(c, RPC_APPROVE, &req.base, err);
}

int cbm_client_reject(cbm_client_t *c, const char *id, const char *step, const char *reason,
                      const char *who, cbm_error_t *err)
{
    Cerebelum__V1__RejectRequest req = CEREBELUM__V1__REJECT_REQUEST__INIT;

    if (c == NULL || id == NULL || step == NULL)
        return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.execution_id = STR(id);
    req.step = STR(step);
    req.reason = STR(reason);
    req.actor = STR(who);
    return decide(c, RPC_REJECT, &req.base, err);
}

int cbm_client_signal(cbm_client_t *c, const char *id, const char *name,
                      const char *payload_json, cbm_error_t *err)
{
    Cerebelum__V1__SignalRequest req = CEREBELUM__V1__SIGNAL_REQUEST__INIT;

    if (c == NULL || id == NULL || name == NULL || name[0] == '\0')
        return cbm_error_set(err, CBM_EINVAL, "NULL argument or empty signal name");
    req.execution_id = STR(id);
    req.name = STR(name);
    /* Empty means "none" on the wire; a JSON null is what the engine records. */
    req.data_json = STR(payload_json != NULL ? payload_json : "null");
    return decide(c, RPC_SIGNAL, &req.base, err);
}

int cbm_client_cancel(cbm_client_t *c, const char *id, const char *reason, cbm_error_t *err)
{
    Cerebelum__V1__CancelRequest req = CEREBELUM__V1__CANCEL_REQUEST__INIT;

    if (c == NULL || id == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.execution_id = STR(id);
    req.reason = STR(reason);
    return decide(c, RPC_CANCEL, &req.base, err);
}

/* ---------------------------------------------------------------- workers */

void cbm_worker_infos_free(cbm_worker_info_t *w, size_t n)
{
    if (w == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(w[i].worker_id);
        for (size_t k = 0; k < w[i].nqueues; k++) free(w[i].queues[k]);
        free(w[i].queues);
        for (size_t k = 0; k < w[i].ncaps; k++) {
            free(w[i].cap_keys[k]);
            free(w[i].cap_values[k]);
        }
        free(w[i].cap_keys);
        free(w[i].cap_values);
        free(w[i].sdk_version);
    }
    free(w);
}

static int worker_from(const Cerebelum__V1__Worker *m, cbm_worker_info_t *w)
{
    w->worker_id = strdup(m->worker_id);
    w->sdk_version = strdup(m->sdk_version);
    w->queues = calloc(m->n_queues + 1, sizeof(char *));
    w->cap_keys = calloc(m->n_capabilities + 1, sizeof(char *));
    w->cap_values = calloc(m->n_capabilities + 1, sizeof(char *));
    if (w->worker_id == NULL || w->sdk_version == NULL || w->queues == NULL ||
        w->cap_keys == NULL || w->cap_values == NULL)
        return CBM_ENOMEM;
    for (size_t k = 0; k < m->n_queues; k++, w->nqueues++)
        if ((w->queues[k] = strdup(m->queues[k])) == NULL) return CBM_ENOMEM;
    for (size_t k = 0; k < m->n_capabilities; k++) {
        w->cap_keys[k] = strdup(m->capabilities[k]->key);
        w->cap_values[k] = strdup(m->capabilities[k]->value);
        w->ncaps++;
        if (w->cap_keys[k] == NULL || w->cap_values[k] == NULL) return CBM_ENOMEM;
    }
    w->max_concurrency = m->max_concurrency;
    w->active_tasks = m->active_tasks;
    w->registered_at_ms = m->registered_at_ms;
    w->last_seen_at_ms = m->last_seen_at_ms;
    w->alive = m->alive;
    return 0;
}

int cbm_client_workers(cbm_client_t *c, const char *queue, cbm_worker_info_t **out, size_t *n,
                       cbm_error_t *err)
{
    Cerebelum__V1__ListWorkersRequest req = CEREBELUM__V1__LIST_WORKERS_REQUEST__INIT;
    Cerebelum__V1__ListWorkersResponse *rep = NULL;
    cbm_worker_info_t *ws;
    int rc;

    if (c == NULL || out == NULL || n == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *out = NULL;
    *n = 0;
    req.queue = STR(queue);
    if ((rc = call(c, RPC_LIST_WORKERS, &req.base, (ProtobufCMessage **)&rep, err)) != 0) return rc;
    if ((ws = calloc(rep->n_workers ? rep->n_workers : 1, sizeof(*ws))) == NULL) {
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < rep->n_workers; i++) {
        if (worker_from(rep->workers[i], &ws[i]) != 0) {
            cbm_worker_infos_free(ws, i + 1);
            protobuf_c_message_free_unpacked(&rep->base, NULL);
            return cbm_error_set(err, CBM_ENOMEM, "out of memory");
        }
    }
    *out = ws;
    *n = rep->n_workers;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

/* ---- health ------------------------------------------------------------------ */

void cbm_health_free(cbm_health_t *h)
{
    if (h == NULL) return;
    for (size_t i = 0; i < h->n; i++) {
        free(h->checks[i].name);
        free(h->checks[i].detail);
    }
    free(h->checks);
    free(h);
}

int cbm_client_health(cbm_client_t *c, int64_t outbox_threshold_ms, cbm_health_t **out,
                      cbm_error_t *err)
{
    Cerebelum__V1__GetHealthRequest req = CEREBELUM__V1__GET_HEALTH_REQUEST__INIT;
    Cerebelum__V1__GetHealthResponse *rep = NULL;
    cbm_health_t *h;
    int rc;

    if (c == NULL || out == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *out = NULL;
    if (outbox_threshold_ms < 0)
        return cbm_error_set(err, CBM_EINVAL, "outbox threshold: a negative time");
    req.outbox_threshold_ms = outbox_threshold_ms;
    if ((rc = call(c, RPC_GET_HEALTH, &req.base, (ProtobufCMessage **)&rep, err)) != 0) return rc;
    if ((h = calloc(1, sizeof(*h))) == NULL ||
        (h->checks = calloc(rep->n_checks ? rep->n_checks : 1, sizeof(*h->checks))) == NULL) {
        free(h);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    h->ok = rep->ok;
    for (size_t i = 0; i < rep->n_checks; i++, h->n++) {
        cbm_health_check_t *x = &h->checks[i];
        x->ok = rep->checks[i]->ok;
        x->name = strdup(rep->checks[i]->name);
        x->detail = strdup(rep->checks[i]->detail);
        if (x->name == NULL || x->detail == NULL) {
            h->n++;
            cbm_health_free(h);
            protobuf_c_message_free_unpacked(&rep->base, NULL);
            return cbm_error_set(err, CBM_ENOMEM, "out of memory");
        }
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    *out = h;
    return 0;
}

/* ---- councils -------------------------------------------------------------- */

int cbm_client_council_put(cbm_client_t *c, const char *json, char version_out[65],
                           bool *created, cbm_error_t *err)
{
    Cerebelum__V1__PutCouncilRequest req = CEREBELUM__V1__PUT_COUNCIL_REQUEST__INIT;
    Cerebelum__V1__PutCouncilResponse *rep = NULL;
    int rc;

    if (created != NULL) *created = false;
    if (c == NULL || json == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.council_json = STR(json);
    if ((rc = call(c, RPC_PUT_COUNCIL, &req.base, (ProtobufCMessage **)&rep, err)) != 0) return rc;
    if (version_out != NULL) snprintf(version_out, 65, "%s", rep->version);
    if (created != NULL) *created = rep->created;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

int cbm_client_council_get(cbm_client_t *c, const char *name, const char *version,
                           char **json_out, char version_out[65], cbm_error_t *err)
{
    Cerebelum__V1__GetCouncilRequest req = CEREBELUM__V1__GET_COUNCIL_REQUEST__INIT;
    Cerebelum__V1__GetCouncilResponse *rep = NULL;
    char *json = NULL;
    int rc;

    if (json_out != NULL) *json_out = NULL;
    if (c == NULL || name == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.name = STR(name);
    req.version = STR(version);
    if ((rc = call(c, RPC_GET_COUNCIL, &req.base, (ProtobufCMessage **)&rep, err)) != 0) return rc;
    if (json_out != NULL && (json = strdup(rep->council_json)) == NULL) {
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    if (version_out != NULL) snprintf(version_out, 65, "%s", rep->version);
    if (json_out != NULL) *json_out = json;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

int cbm_client_council_list(cbm_client_t *c, cbm_council_info_t **out, size_t *n,
                            cbm_error_t *err)
{
    Cerebelum__V1__ListCouncilsRequest req = CEREBELUM__V1__LIST_COUNCILS_REQUEST__INIT;
    Cerebelum__V1__ListCouncilsResponse *rep = NULL;
    cbm_council_info_t *cs = NULL;
    size_t k = 0;
    int rc;

    if (c == NULL || out == NULL || n == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    *out = NULL;
    *n = 0;
    if ((rc = call(c, RPC_LIST_COUNCILS, &req.base, (ProtobufCMessage **)&rep, err)) != 0)
        return rc;
    if (rep->n_councils > 0 && (cs = calloc(rep->n_councils, sizeof(*cs))) == NULL)
        rc = CBM_ENOMEM;
    for (k = 0; rc == 0 && k < rep->n_councils; k++) {
        const Cerebelum__V1__Council *m = rep->councils[k];
        cs[k].name = strdup(m->name);
        cs[k].version = strdup(m->version);
        cs[k].role = strdup(m->role);
        cs[k].agents = (int)m->agents;
        cs[k].created_at_us = m->created_at_ms * 1000;
        if (cs[k].name == NULL || cs[k].version == NULL || cs[k].role == NULL) rc = CBM_ENOMEM;
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (rc != 0) {
        cbm_council_infos_free(cs, k);
        return cbm_error_set(err, CBM_ENOMEM, "out of memory");
    }
    *out = cs;
    *n = k;
    return 0;
}

int cbm_client_council_delete(cbm_client_t *c, const char *name, cbm_error_t *err)
{
    Cerebelum__V1__DeleteCouncilRequest req = CEREBELUM__V1__DELETE_COUNCIL_REQUEST__INIT;
    Cerebelum__V1__DeleteCouncilResponse *rep = NULL;
    int rc;

    if (c == NULL || name == NULL) return cbm_error_set(err, CBM_EINVAL, "NULL argument");
    req.name = STR(name);
    if ((rc = call(c, RPC_DELETE_COUNCIL, &req.base, (ProtobufCMessage **)&rep, err)) != 0)
        return rc;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}
